"""Running a compiled graph by replaying a captured CUDA graph: one launch of the host instead of one
per kernel.

A generated wrapper spends ~1-30 us of Python per op (a launch, a view, an allocation, a library
call); a model of a few hundred ops then runs at the speed of its host, not of its kernels (GPT-2
on an H100: ~2.6 ms of GPU work, ~5.5 ms of wall time). A CUDA graph records every kernel the
wrapper launches, with its pointers, once, and replays them all with one call.

What a replay needs, and how `CudaGraphRunner` provides it:

* Fixed input addresses. The first call runs the wrapper as usual and notes each input's data
  pointer. From the second on, it captures: an input at the same address (a parameter, a buffer,
  a saved activation that another graph wrote) is read in place; every other input gets a buffer
  of its own that the call's input is copied into before each replay. A call at which an input
  moved for the first time runs the wrapper instead: a capture waits a call to see whether it
  settles (a backward's inputs move once, when its forward's capture moves them). When a
  read-in-place input later moves, the graph is recaptured; an input that was copied but has
  stopped moving becomes read in place at the next capture. An input that is one of this
  runner's own outputs is always copied, so a replay never reads memory it writes.
* Fixed output addresses. Outputs live in the wrapper's arena (memory_plan.py), which the
  warm-up call before the capture allocates and the capture reuses (`CaptureArenas`), or, where a
  library call allocates them, in the graph's private memory pool; the next replay overwrites
  them. Each replay hands out new tensors on that storage, and counts references to it: while
  the caller still holds an output of one captured instance (the previous step's logits, a
  forward's activations saved for the backward), that instance is not replayed; a second
  instance (its own arena and pool) is captured instead, and past MAX_INSTANCES the wrapper runs as usual.
  So no result a caller can still read is ever overwritten. Small outputs the caller sees (a
  loss) are handed out as copies, so holding one pins nothing; an output that is an input, or a
  view of one, is handed out as that view of the caller's input.
* Nothing the capture cannot record. `graph_capture_refusal` keeps graphs off for graphs with
  symbolic sizes (the wrapper computes grids and strides from them on the host), graphs on the
  CPU, and graphs calling an op that waits on the host (a result whose size depends on the data,
  a tensor read into a Python number). Those must be refused before capture, not caught after: a
  host sync invalidates the capture, and PyTorch's CUDA generator is then left in capture mode,
  breaking every later random op in the process. Anything else that raises while recording (a
  Python error, out of memory) turns graphs off for that compiled graph, logged once with the
  reason, and the wrapper runs as before. RNG ops are recorded safely: PyTorch's CUDA generator
  advances its offset at each replay.
* Its memory accounted for. An instance keeps its arenas and its pool between calls;
  `held_bytes()` says how much (arenas, pool segments, copied-input buffers), for the benchmark's
  peak-memory figures.
"""
from __future__ import annotations

import contextlib
import logging
import operator
import threading
import weakref
from typing import Callable, Iterator, Sequence

import torch

from . import runtime

log = logging.getLogger(__name__)

MAX_INSTANCES = 2   # captured copies of one graph, for callers holding the previous outputs
MAX_CAPTURES = 8    # captures per runner before inputs that keep moving turn graphs off
# An input whose address changed at this many calls is always copied, never read in place. Not 1:
# every input of a graph reading another graph's outputs moves when that graph is captured, and
# again each time it is recaptured (a chain of a training step's four graphs settles in turn).
MAX_MOVES = 4
# Caller-visible outputs up to this size are copied out of the pool at each replay, so holding
# one (a training step's loss, while the next step runs) does not pin the whole instance.
COPY_OUT_MAX_BYTES = 1 << 20

# ATen ops that wait on the host (data-dependent sizes, values read back): never captured.
HOST_SYNC_OPS = frozenset({
    "nonzero", "nonzero_static", "_local_scalar_dense", "item", "masked_select", "unique",
    "_unique", "_unique2", "unique_consecutive", "unique_dim", "repeat_interleave", "bincount",
    "histc", "equal", "is_nonzero", "allclose", "_assert_async",
})

_live: "weakref.WeakSet[_Instance]" = weakref.WeakSet()  # captured instances, for held_bytes()


def _use_count(storage: torch.UntypedStorage) -> int:
    return torch._C._storage_Use_Count(storage._cdata)


_capture_streams = threading.local()


def capture_stream() -> torch.cuda.Stream:
    """The stream this thread captures graphs on, for the current GPU: one for every runner, not
    one each. cuBLAS gets a workspace (32 MiB on an H100) for each stream it runs on, kept for the
    process's life, and a captured graph records its address; per-runner streams cost GPT-2's
    training step four of them. Per thread: two threads must never capture on one stream."""
    streams = _capture_streams.__dict__.setdefault("by_device", {})
    device = torch.cuda.current_device()
    if device not in streams:
        streams[device] = torch.cuda.Stream(device)
    return streams[device]


@contextlib.contextmanager
def on_capture_stream(device: "torch.device | None" = None) -> Iterator[torch.cuda.Stream]:
    """Run the block on the capture stream of `device` (None: the current GPU), after the
    caller's stream's queued work; the caller's stream then waits for the block's. Yields the
    caller's stream. ember runs everything it runs on the GPU outside a replay here (a graph's
    calls that are not replayed, its warm-ups and captures, the races' compile runs and timing
    replays): all its cuBLAS calls are then on this one stream, and an ember process keeps one
    cuBLAS workspace (32 MiB on an H100, held for the process's life) for them, as eager keeps
    one for the caller's stream, not two."""
    with torch.cuda.device(device) if device is not None else contextlib.nullcontext():
        stream = capture_stream()
        caller = torch.cuda.current_stream()
        stream.wait_stream(caller)
        try:
            with torch.cuda.stream(stream):
                yield caller
        finally:  # a block that raised may still have queued work the caller's next must follow
            caller.wait_stream(stream)


class CaptureArenas:
    """The arenas of one capture (runtime.new_arena): the warm-up call allocates them, on `stream`
    (the caller's, where replays run: freed with the instance, a block is reused only after the
    replays queued there; None: the current one); the captured call is handed the same ones, in
    the same order."""

    def __init__(self, stream: "torch.cuda.Stream | None" = None):
        self.kept: list[torch.Tensor] = []
        self._stream = stream
        self._handed = 0

    def allocate(self, nbytes: int, device: torch.device) -> torch.Tensor:
        with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
            self.kept.append(torch.empty((nbytes,), dtype=torch.uint8, device=device))
        return self.kept[-1]

    def reuse(self, nbytes: int, device: torch.device) -> torch.Tensor:
        if self._handed >= len(self.kept) or self.kept[self._handed].numel() != nbytes:
            raise RuntimeError(f"the capture asked for an arena of {nbytes} bytes "
                               "that its warm-up call did not")
        self._handed += 1
        return self.kept[self._handed - 1]


class _Instance:
    """One capture: the graph, its pool, the buffers copied inputs go to, and its outputs."""

    def __init__(self, graph: torch.cuda.CUDAGraph, pool, in_place: list[bool],
                 inputs: list[torch.Tensor], outputs: list[torch.Tensor], copy_out: frozenset[int],
                 arenas: list[torch.Tensor] = ()):
        self.graph, self.pool = graph, pool
        # The arenas the graph writes (outside its pool, see CudaGraphRunner._record): kept as
        # long as the graph, and counted in the baseline of the outputs' storages below.
        self.arenas = list(arenas)
        self.arena_bytes = sum(a.numel() for a in self.arenas)
        self.device = inputs[0].device.index if inputs and inputs[0].is_cuda else None
        self.in_place = in_place
        self.in_place_at = operator.itemgetter(*[i for i, p in enumerate(in_place) if p] or [0])
        self.in_place_pointers = self.in_place_at([t.data_ptr() for t in inputs]) if any(in_place) else None
        # Only the buffers copied inputs go to are kept. A caller's tensor read in place is not:
        # that reference would keep it alive, and a forward graph's outputs that a backward graph
        # reads in place would then look held forever.
        self.buffers = [None if keep else t for t, keep in zip(inputs, in_place)]
        self.copied = [i for i, p in enumerate(in_place) if not p]
        # An output that is an input or a view of one (a forward returns the weights its backward
        # needs) is no pool memory: each replay hands out the same view of the caller's input.
        # Only its layout is kept, not the tensor, for the reason above.
        # (Empty tensors all have storage address 0: they alias nothing.)
        in_storage = {t.untyped_storage().data_ptr(): i for i, t in enumerate(inputs)
                      if t.untyped_storage().data_ptr()}
        self.aliases: dict[int, tuple] = {}
        for j, o in enumerate(outputs):
            i = in_storage.get(o.untyped_storage().data_ptr())
            if i is not None:
                self.aliases[j] = (i, tuple(o.shape), o.stride(), o.storage_offset() - inputs[i].storage_offset())
        self.outputs = [None if j in self.aliases else o for j, o in enumerate(outputs)]
        # The output's own bytes, not its storage's: outputs may be views of one arena.
        self.copy_out = [j for j in copy_out if self.outputs[j] is not None
                         and self.outputs[j].numel() * self.outputs[j].element_size() <= COPY_OUT_MAX_BYTES]
        # One reference per storage held here; anything above the baseline is a caller's.
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage()
                    for j, t in enumerate(self.outputs) if t is not None and j not in self.copy_out}
        self.storages = list(storages.values())
        self.baseline = [_use_count(s) for s in self.storages]
        self.buffer_bytes = sum(t.untyped_storage().nbytes()
                                for t, keep in zip(inputs, in_place) if not keep)
        _live.add(self)

    def outputs_alive(self) -> bool:
        return any(_use_count(s) > b for s, b in zip(self.storages, self.baseline))

    def matches(self, pointers: Sequence[int]) -> bool:
        """Do the inputs read in place still live where they did at capture?"""
        return self.in_place_pointers is None or self.in_place_at(pointers) == self.in_place_pointers

    def replay(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        for i in self.copied:
            self.buffers[i].copy_(inputs[i])
        if self.device is None or torch.cuda.current_device() == self.device:
            self.graph.replay()
        else:  # replay goes to the current device's stream: make it the graph's GPU
            with torch.cuda.device(self.device):
                self.graph.replay()
        # New tensor objects each call: a caller's reference is what outputs_alive() counts.
        out = [t.detach() if t is not None else None for t in self.outputs]
        for j in self.copy_out:
            out[j] = self.outputs[j].clone()
        for j, (i, size, stride, offset) in self.aliases.items():
            x = inputs[i]
            out[j] = x.detach().as_strided(size, stride, x.storage_offset() + offset)
        return out

    def output_storages(self) -> set[int]:
        return {s.data_ptr() for s in self.storages}

    def release(self) -> None:
        _live.discard(self)


class CudaGraphRunner:
    """Calls `run(inputs) -> outputs` (a generated wrapper) through captured CUDA graphs where it
    can (see the module docstring). `name` is for the log."""

    def __init__(self, run: Callable[[list[torch.Tensor]], list[torch.Tensor]], name: str,
                 copy_out: Sequence[int] = ()):
        """`copy_out`: indices of outputs the caller sees (not a forward's tensors saved for its
        backward); those of at most COPY_OUT_MAX_BYTES are handed out as copies."""
        self.run, self.name = run, name
        self.copy_out = frozenset(copy_out)
        self.instances: list[_Instance] = []
        self.captures = 0
        self.disabled: str | None = None       # why graphs are off for this runner
        self._last: list[int] | None = None    # input pointers at the previous call
        self._moves: list[int] = []            # per input: calls at which its pointer changed

    def __call__(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.disabled:
            return self.run(inputs)
        pointers = [t.data_ptr() for t in inputs]
        last, self._last = self._last, pointers
        if last is None:
            if not self._device_ok(inputs):
                return self._disable("an input is not a CUDA tensor, or inputs are on several devices", inputs)
            self._moves = [0] * len(inputs)
            return self._run_aside(inputs)  # first call: compiles kernels, initializes libraries
        if pointers != last:
            for i, (p, q) in enumerate(zip(pointers, last)):
                if p != q:
                    self._moves[i] += 1
        for inst in self.instances:
            if inst.outputs_alive():
                continue
            if inst.matches(pointers) and not self._settled(inst, pointers, last):
                return inst.replay(inputs)
            # An input read in place has moved, or a copied one has stopped moving: recapture.
            self.instances.remove(inst)
            inst.release()
            break
        if any(p != q and self._moves[i] == 1 for i, (p, q) in enumerate(zip(pointers, last))):
            # An input moved for the first time. One that another graph's capture moved (a
            # forward's library outputs, now in that graph's pool) stays put from the next call;
            # one the caller makes fresh at each call keeps moving. Capturing now would copy the
            # first kind, and an instance whose outputs the caller keeps for good (gradients
            # accumulated in place) would keep those copies for good: run once more and see.
            return self._run_aside(inputs)
        if len(self.instances) >= MAX_INSTANCES:
            return self._run_aside(inputs)  # every instance's outputs are still held by the caller
        if self.captures >= MAX_CAPTURES:
            return self._disable(f"{MAX_CAPTURES} captures and its inputs still move", inputs)
        return self._capture(inputs, pointers, last)

    def _run_aside(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """A call that is not replayed, run on the capture stream (on_capture_stream: why). Its
        outputs are marked as used on the caller's stream, so the allocator does not hand their
        memory to the capture stream while the caller's later work still reads them."""
        device = inputs[0].device if inputs else None
        with on_capture_stream(device) as caller:
            outputs = self.run(inputs)
        for t in outputs:
            if isinstance(t, torch.Tensor) and t.is_cuda and t.untyped_storage().nbytes():
                t.record_stream(caller)
        return outputs

    def _settled(self, inst: _Instance, pointers: list[int], last: list[int]) -> bool:
        """Has an input this instance copies stayed put for two calls, without having moved
        MAX_MOVES times (a forward's activations move when that forward starts replaying a graph,
        then stay)?"""
        return any(pointers[i] == last[i] and self._moves[i] < MAX_MOVES for i in inst.copied)

    def _device_ok(self, inputs: list[torch.Tensor]) -> bool:
        return all(t.is_cuda for t in inputs) and len({t.device for t in inputs}) <= 1

    def _record(self, static: list[torch.Tensor]
                ) -> tuple[torch.cuda.CUDAGraph, tuple, list[torch.Tensor], list[torch.Tensor]]:
        """Capture one call of the wrapper on `static`: (graph, its pool, the outputs it writes,
        the arenas it writes them to)."""
        device = static[0].device if static else torch.device("cuda", torch.cuda.current_device())
        with torch.cuda.device(device):  # the inputs' GPU, whichever is current
            stream = capture_stream()
            graph = torch.cuda.CUDAGraph()
            pool = torch.cuda.graph_pool_handle()
            caller = torch.cuda.current_stream()
            arenas = CaptureArenas(caller)
            # Warm up on the capture stream first: cuBLAS and cuDNN set up per-stream state (a
            # workspace, a handle) at their first call there, which a capture cannot record.
            # The warm-up's arenas are the captured graph's: allocated before the capture, they
            # live outside its private pool, so the caching allocator's 2-MiB rounding of a
            # pool segment (1.3 MiB on GPT-2's 399-MiB arena) is not held idle by the pool,
            # and the arena counts as the bytes it has.
            with on_capture_stream(), runtime.arenas_from(arenas.allocate):
                self.run(list(static))
            with torch.cuda.graph(graph, pool=pool, stream=stream), runtime.arenas_from(arenas.reuse):
                outputs = self.run(list(static))
        return graph, pool, outputs, arenas.kept

    def _disable(self, why: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        self.disabled = why
        for inst in self.instances:
            inst.release()
        self.instances.clear()
        log.info("ember: %s runs without CUDA graphs: %s", self.name, why)
        return self.run(inputs)

    def _capture(self, inputs: list[torch.Tensor], pointers: list[int], last: list[int]
                 ) -> list[torch.Tensor]:
        ours = set().union(*(inst.output_storages() for inst in self.instances))
        in_place = [p == q and self._moves[i] < MAX_MOVES and t.untyped_storage().data_ptr() not in ours
                    for i, (t, p, q) in enumerate(zip(inputs, pointers, last))]
        static = [t if keep else torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
                  for t, keep in zip(inputs, in_place)]
        for s, t, keep in zip(static, inputs, in_place):
            if not keep:
                s.copy_(t)
        self.captures += 1
        try:
            graph, pool, outputs, arenas = self._record(static)
        except Exception as e:  # noqa: BLE001 - any failure to record means: run without graphs
            return self._disable(f"capture failed: {type(e).__name__}: {str(e).splitlines()[0]}", inputs)
        dtypes = {t.untyped_storage().data_ptr(): t.dtype for t in static if t.untyped_storage().data_ptr()}
        if any(dtypes.get(o.untyped_storage().data_ptr(), o.dtype) != o.dtype for o in outputs):
            # A view of an input under another dtype: as_strided on the caller's input cannot
            # rebuild it.
            return self._disable("an output views an input as another dtype", inputs)
        inst = _Instance(graph, pool, in_place, static, list(outputs), self.copy_out, arenas)
        del outputs, static, arenas
        self.instances.append(inst)
        return inst.replay(inputs)


def graph_capture_refusal(graph, externs: Sequence[dict]) -> str | None:
    """Why a compiled graph must not be captured, or None when it may be."""
    if not graph.device.startswith("cuda"):
        return f"device {graph.device}"
    if graph.symbols:
        return f"symbolic sizes {sorted(map(str, graph.symbols))}"
    for e in externs:
        parts = e["target"].split(".")
        if len(parts) > 1 and parts[1] in HOST_SYNC_OPS:
            return f"{e['target']} waits on the host"
    return None


def any_captured() -> bool:
    """Is some captured instance still alive (its graph keeps the addresses of the memory it
    was captured with, its capture stream's cuBLAS workspace included)?"""
    return len(_live) > 0


def held_bytes(instances: "Sequence[_Instance] | None" = None) -> dict[str, int]:
    """What live instances hold between calls, in bytes: `pool_reserved`, their pools' segments
    (allocated or not: a pool's idle memory serves no one else), `pool_allocated`, the part of
    those in use (outputs a library call allocated), `arenas`, the arenas (intermediates and
    outputs; ordinary allocations, outside the pools), and `input_buffers`, the buffers copied
    inputs go to. `instances`: those to count (default: every live one). For the benchmark's
    memory figures; takes a memory snapshot, so not for hot paths."""
    instances = list(_live) if instances is None else list(instances)
    held = {"pool_reserved": 0, "pool_allocated": 0,
            "input_buffers": sum(i.buffer_bytes for i in instances),
            "arenas": sum(i.arena_bytes for i in instances)}
    pools = {tuple(i.pool) for i in instances}
    if pools and torch.cuda.is_available():
        for seg in torch.cuda.memory_snapshot():
            if tuple(seg.get("segment_pool_id", ())) in pools:
                held["pool_reserved"] += seg["total_size"]
                held["pool_allocated"] += seg["allocated_size"]
    return held
