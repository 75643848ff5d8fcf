"""Python's cyclic garbage collector in the harness: what it costs, and keeping it from growing.

The harness collects between rows (the GPU memory of a compiled model is often held by a reference
cycle, and each row's memory figures start from a clean allocator), and Dynamo, AOTAutograd and
both compilers allocate enough to trigger full collections of their own. A full collection walks
every object the process holds: torch, transformers, timm and torchvision, and whatever each case
left in long-lived caches. In the whole suite on the H100 (da090f6) the collector ran 147 s of a
423-s run, in 211 full collections, about 0.7 s each by the kernel rows.

So the suite freezes the heap (gc.freeze: the survivors move to a generation the collector never
walks) before the first case and again after each one. A collection then walks what the current
case made, as it would in a process of its own, and a compile pays for its own objects only,
not for the imports and earlier cases. Nothing that is garbage is frozen: each freeze follows a
full collection. Freed later by reference counting, a frozen object goes as any other; only a
frozen reference cycle that became garbage afterwards would stay, and what is frozen is the
harness's own state and the libraries' module-level caches.
"""
from __future__ import annotations

import contextlib
import gc
import time
from typing import Iterator


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze what is alive now (after a full collection); unfreeze on the way out, so a caller
    in the same process (the tests) gets its collector back as it was. gc.unfreeze() thaws
    everything, so where something was frozen before, it all stays frozen (never collected by
    the cycle collector, still freed by reference counting)."""
    thaw = gc.get_freeze_count() == 0
    freeze_survivors()
    try:
        yield
    finally:
        if thaw:
            gc.unfreeze()


def freeze_survivors() -> None:
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def gc_clock(into: dict) -> Iterator[None]:
    """Sums the seconds the collector runs while inside into into["gc_s"], and counts its full
    collections in into["gc_full"]."""
    into.setdefault("gc_s", 0.0)
    into.setdefault("gc_full", 0)
    started: list[float] = []

    def callback(stage: str, info: dict) -> None:
        if stage == "start":
            started.append(time.perf_counter())
        elif started:
            into["gc_s"] += time.perf_counter() - started.pop()
            into["gc_full"] += info.get("generation") == 2

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)
