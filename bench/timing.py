"""Timing and kernel counting on the GPU.

Times are triton.testing.do_bench medians (CUDA events, L2 flushed before each repetition), the
method the anchor figures were taken with, so the two are comparable. Kernel counts come from
torch.profiler's CUDA device events for one call.
"""
from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from typing import Callable, Iterator

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def wall(fn: Callable, device: str):
    """(result, seconds) for one call, synchronised so queued GPU work is included."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


class Timer:
    """do_bench with warm-up and repetition budgets (ms), median of the repetitions.

    do_bench derives the repetition count from a 5-call estimate (n = rep / estimate), so a
    budget of 100 ms gives ~12 repetitions of an 8 ms model and hundreds of a 0.1 ms kernel. A
    slow call (a 30 ms training step) would get only a few, so the budget is stretched to at
    least `min_reps` calls; that costs a fraction of a second against the minutes of compiling.
    """

    def __init__(self, warmup_ms: int, rep_ms: int, min_reps: int = 10):
        self.warmup_ms, self.rep_ms, self.min_reps = warmup_ms, rep_ms, min_reps

    def __call__(self, fn: Callable, grad_to_none: list[torch.Tensor] | None = None,
                 warmup_ms: int | None = None) -> float:
        from triton.testing import do_bench
        if grad_to_none:
            # do_bench clears gradients before each timed repetition, not in its estimate and
            # warm-up calls: those summed into the last call's gradients, which is a different
            # program (gradient accumulation), and held the gradients of two steps at once (ember
            # captured a second instance of the backward for it). Every call here ends the way a
            # training step followed by optimizer.zero_grad() does: the host drops the gradients
            # while the GPU still runs the backward.
            step = fn

            def fn():
                step()
                for t in grad_to_none:
                    t.grad = None
        # Not `_, one = wall(...)`: `_` would hold the call's outputs through do_bench, and a
        # backend whose outputs live in a CUDA graph's pool (ember) would then need two pools.
        one = wall(fn, "cuda")[1]
        rep = max(self.rep_ms, self.min_reps * one * 1e3)
        # Python's cyclic GC pausing inside the timed loop shows up as launch gaps in CPU-bound
        # models (eager GPT-2 is one); collect once, then keep it off while timing.
        gc.collect()
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return float(do_bench(fn, warmup=warmup_ms or self.warmup_ms, rep=rep, grad_to_none=grad_to_none,
                                  return_mode="median"))
        finally:
            if was_enabled:
                gc.enable()


class Phases:
    """Seconds spent in each named phase of one row (compile, check, time, ...), summed over
    repeats: where the run's wall time goes, recorded next to the row as `phase_s`."""

    def __init__(self, into: dict):
        self.seconds: dict[str, float] = into

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


HOST_LOOP = 500_000


def host_loop_ms() -> float:
    """Milliseconds for a fixed pure-Python loop: how fast the host runs Python at this moment.
    A launch-bound row (eager and TorchInductor on the transformers; eager ResNet-50) runs at
    that speed, and it is not fixed: in one process on the H100 host, 2M iterations took 72 to
    133 ms, and eager BERT's do_bench median went 5.3 -> 6.8 -> 10.3 ms in three back-to-back
    calls. Recorded next to each timed model row (runner._measure) so that a row timed on a
    slow host shows it."""
    start = time.perf_counter()
    total = 0
    for i in range(HOST_LOOP):
        total += i
    return (time.perf_counter() - start) * 1e3


def cpu_loop_ms(samples: int = 3) -> dict[str, float]:
    """host_loop_ms on each CPU this process may run on, pinned there in turn (the median of
    `samples` loops), keyed by the CPU's number; the thread's affinity is restored after.

    The lent H100's host is a KVM guest whose vCPUs each flip between two speeds about 1.8x
    apart every few seconds, pinned or not, with no steal time reported (a probe on 2026-11-23:
    at any one moment 5 to 10 of its 16 vCPUs ran this loop in 26-39 ms, the others in 18-25,
    and a different set a second later). The hypervisor shares the cores. Taken at the
    run's start and end, so a reader sees that state beside the launch-bound rows; {} where a
    thread's CPUs cannot be set (not Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return {}
    allowed = os.sched_getaffinity(0)
    speeds = {}
    try:
        for cpu in sorted(allowed):
            os.sched_setaffinity(0, {cpu})
            speeds[str(cpu)] = round(statistics.median(host_loop_ms() for _ in range(samples)), 1)
    finally:
        os.sched_setaffinity(0, allowed)
    return speeds


_COPY_PREFIXES = ("Memcpy", "Memset", "memcpy", "memset")


def count_kernels(fn: Callable, device: str) -> dict[str, int] | None:
    """CUDA kernels (and, separately, memcpy/memset operations) launched by one call of fn.

    Counted from the profiler's device-side events, so library kernels (cuBLAS, cuDNN, flash
    attention) and Triton kernels count alike, and a kernel launched from Python or C++ counts the
    same. The call is made after warm-up, so compilation and autotuning launches are not included.
    """
    if not device.startswith("cuda"):
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        sync(device)
    kernels = copies = 0
    for ev in prof.events():
        if ev.device_type != DeviceType.CUDA:
            continue
        # Newer torch tags each event with kineto's activity type ("kernel", "gpu_memcpy",
        # "gpu_memset", "cuda_sync", ...); older ones only give names, so fall back to those.
        kind = str(getattr(ev, "activity_type", None) or "").lower()
        if "memcpy" in kind or "memset" in kind or ev.name.startswith(_COPY_PREFIXES):
            copies += 1
        elif kind and "kernel" not in kind:
            continue  # synchronisation and other device-side markers are not launches
        elif not kind and "sync" in ev.name.lower():
            continue
        else:
            kernels += 1
    return {"kernels": kernels, "copies": copies}
