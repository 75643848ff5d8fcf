"""Timing a race's candidate the way a compiled graph runs it: replayed from a CUDA graph.

A candidate is its op alone in a generated wrapper (matmul_emit / attention_emit make them), and
do_bench times one call of that wrapper between two events: the call's Python (an arena, views,
a launch or two, a TMA layout test) runs while the GPU waits on it. For a 0.1-ms product that
host time is of the same order as the kernels, and it moves with whatever else the process does
(on the H100, BERT-base's MLP product: the library path timed 0.105 ms in one process and 0.189
in another; the persistent TMA kernel, whose launch does the most on the host, lost races it
wins by 20% on the GPU). With `cuda_graphs` on, a compiled graph replays a CUDA graph, and no host
time is ever paid between its kernels; so a race is timed on replays too:

  1. one call on the capture stream (cuda_graphs.capture_stream: the stream graphs are captured
     on, whose cuBLAS workspace already exists), which also sets up libraries on it;
  2. one call captured and replayed, to estimate its time;
  3. enough calls to fill REPLAY_MS captured in one graph, replayed REPLAYS times; the median
     replay over the number of calls is the time.

The start and end events are recorded inside the captured graphs (event record nodes), not
around their replays on the host: races are timed while another thread of the process may still
be busy (compile_races' dry run of the module written before the races, ~0.4 s of Python that
can outlast the first batch), and a wait for the GIL between recording a start event and
launching the replay (Python's switch interval is 5 ms) would add to the time. Inside the graph,
nothing the host does can come between them.

Consecutive calls are not separated by an L2 flush (do_bench flushes before each call): in a
model, a product's activations were just written by the kernel before it. A candidate that cannot
be captured is timed by do_bench instead (logged at debug level): the race still has a time.
"""
from __future__ import annotations

import logging
import statistics
import warnings
from typing import Any, Callable

import torch

from ..autotune.tuner import do_bench_median
from .cuda_graphs import on_capture_stream

log = logging.getLogger(__name__)

REPLAY_MS = 5.0  # GPU time captured in one graph
REPLAYS = 7      # timed replays of it
MAX_CALLS = 64   # calls captured in one graph, whatever their time (each holds its own launches)
# A call this long or longer is first replayed for SUSTAIN_MS untimed. At ~1.5 ms a call (8192^3
# products) the 7 replays hold ~20 calls, short enough that the GPU still runs at the clocks it
# had while idle during the compiles: the races of mm_8192's template (H100, at 8fc63ee-f7be887)
# put its three configs within 2% of each other (1.53-1.65 ms) where do_bench's 350 ms
# (the harness's) measured 1.51 ms for the 128x256 TMA tile and 1.77 for the 128x128 tiled one,
# and the race picked the slower one in 2 of 4 runs. Models' kernels (0.01-0.3 ms) never wait.
SUSTAIN_FROM_MS = 0.5
SUSTAIN_MS = 100.0


def replay_median(fn: Callable[[], Any]) -> float:
    """Milliseconds per call of `fn` replayed from a CUDA graph (see the module docstring)."""
    try:
        return _replay_median(fn)
    except Exception as e:  # noqa: BLE001 - a candidate the capture refuses is still timed
        log.debug("ember: a race candidate could not be timed as a CUDA graph (%s: %s); do_bench instead",
                  type(e).__name__, e)
        return do_bench_median(fn)


def _replay_median(fn: Callable[[], Any]) -> float:
    # external: recorded as nodes of the graph being captured (see the module docstring).
    start = torch.cuda.Event(enable_timing=True, external=True)
    end = torch.cuda.Event(enable_timing=True, external=True)

    def timed(graph: torch.cuda.CUDAGraph) -> float:
        graph.replay()
        end.synchronize()
        return start.elapsed_time(end)

    with on_capture_stream():
        fn()
        one = _capture(fn, 1, (start, end))
        one.replay()
        estimate = min(timed(one) for _ in range(3))
        del one
        calls = max(1, min(MAX_CALLS, int(REPLAY_MS / max(estimate, 1e-3))))
        many = _capture(fn, calls, (start, end))
        many.replay()
        if estimate >= SUSTAIN_FROM_MS:
            for _ in range(max(1, int(SUSTAIN_MS / (estimate * calls)))):
                many.replay()
        times = [timed(many) / calls for _ in range(REPLAYS)]
        del many
    return statistics.median(times)


def _capture(fn: Callable[[], Any], calls: int,
             events: tuple[torch.cuda.Event, torch.cuda.Event]) -> torch.cuda.CUDAGraph:
    """`calls` calls of fn captured on the current stream between the two events' records. Not
    `torch.cuda.graph`: it synchronizes and empties the allocator's cache at each capture, two per
    candidate. Thread-local capture: a compile thread allocating meanwhile does not invalidate it."""
    graph = torch.cuda.CUDAGraph()
    graph.capture_begin(capture_error_mode="thread_local")
    try:
        events[0].record()
        for _ in range(calls):
            fn()  # results are dropped: their memory is the graph's pool, reused by the next call
        events[1].record()
    except BaseException:
        _end_failed_capture(graph)
        raise
    graph.capture_end()
    return graph


def _end_failed_capture(graph: torch.cuda.CUDAGraph) -> None:
    """End a capture that `fn` broke (a host read invalidates it). Its capture_end fails before
    PyTorch's CUDA generators leave capture mode, and every later random op in the process would
    then fail ("Offset increment outside graph capture"); an empty capture, begun and ended, takes
    them out of it."""
    try:
        graph.capture_end()
    except Exception:  # noqa: BLE001 - expected: the capture was invalidated
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the CUDA graph is empty": that is the point
        empty = torch.cuda.CUDAGraph()
        empty.capture_begin(capture_error_mode="thread_local")
        empty.capture_end()
