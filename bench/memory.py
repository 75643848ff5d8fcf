"""Peak CUDA memory of one call, and ember's against eager's.

One extra call per model row, after the check, the timing and the profiling (never inside
do_bench, so times are untouched): gc.collect() and empty_cache(), synchronize, note what is
allocated, reset the peak, call, synchronize, read torch.cuda.max_memory_allocated(). Allocated,
not reserved: the caching allocator keeps freed blocks reserved, so "reserved" would report
whatever the earlier backends and do_bench's L2-flush buffer left behind.

Three figures per row, in bytes:
  mem_before_bytes  allocated just before the call
  mem_peak_bytes    the absolute peak during the call
  mem_call_bytes    peak - before: what the call itself needed (activations, workspaces, outputs;
                    for training also the gradients, which are cleared before the call)

The call figure is the headline and the fair comparison: "before" is mostly harness state that
every backend shares (weights, inputs, and eager's outputs, kept alive as the reference the
compiled rows are checked against), which dilutes absolute figures: with a GB of weights and
reference logits live, a backend needing twice the working memory may move the absolute peak by
only a few percent. The absolute peak is kept too: as the harness keeps the same tensors alive
for every row, the "befores" should differ only by what a compiled function holds between calls
(folded constants, caches, pools), which the call figure cannot see. So a row is flagged when
ember's call figure OR its absolute peak is above eager's.

Between backends the harness frees torch's cuBLAS workspaces (release_cublas_workspaces), so each
backend's figures count the workspaces it makes itself.

On CPU (the smoke run) there is no CUDA caching allocator: the figures are None, never 0, and the
extra call is not made.
"""
from __future__ import annotations

import gc
from typing import Callable

import torch

MiB = 1 << 20
KEYS = ("mem_before_bytes", "mem_peak_bytes", "mem_call_bytes")
# Differences below this are not flagged: the allocator rounds every block up to 512 bytes, and a
# compiled function may keep a few small tensors (indices, scalars) that no reader would call a
# regression. The JSON keeps exact bytes for a stricter reading.
SLACK_BYTES = MiB


def peak_memory(fn: Callable, device: str, held: Callable[[], dict] | None = None
                ) -> dict[str, int | None]:
    """The three figures for one call of fn; all None when the device has no CUDA allocator.

    `held`: for a backend that keeps memory between calls where the allocator's peak cannot see
    it (ember's CUDA graphs: a replay allocates nothing; its intermediates and outputs live in an
    arena allocated before capture, what else it allocates in a private pool reserved at
    capture), a function returning that memory as {"pool_reserved", "pool_allocated",
    "input_buffers", "arenas"} bytes. The call figure then counts the whole pool, the arenas and
    the input buffers (what a call needs, its outputs included, as eager's call figure does), the
    absolute peak the pool's idle part (the rest, the arenas and the buffers are already
    allocated)."""
    if not device.startswith("cuda"):
        return dict.fromkeys(KEYS)
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()  # the result is dropped on return: its allocation is already in the peak
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    rec = {"mem_before_bytes": before, "mem_peak_bytes": peak, "mem_call_bytes": peak - before}
    return add_held(rec, held()) if held is not None else rec


def release_cublas_workspaces(device: str) -> bool:
    """Free the cuBLAS workspaces (32 MiB each on an H100, one per stream cuBLAS ran on, kept by
    torch for the process's life) once a backend is done, so the next backend's absolute peak
    counts the workspaces it makes itself, not those of the backends before it. Without it the
    first case's eager row ran without ember's capture-stream workspace and every later row
    with it. Not while an ember CUDA graph is alive: a captured graph keeps the address of its
    stream's workspace. Returns whether they were freed."""
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if not device.startswith("cuda") or clear is None:
        return False
    from ember.codegen import cuda_graphs
    gc.collect()
    if cuda_graphs.any_captured():
        return False
    torch.cuda.synchronize(device)
    clear()
    return True


def add_held(rec: dict, held: dict) -> dict:
    """rec with memory kept between calls counted in (see peak_memory), and kept as `mem_held`."""
    kept = held["pool_reserved"] + held["input_buffers"] + held["arenas"]
    if not kept:
        return rec
    return dict(rec, mem_held=held,
                mem_call_bytes=rec["mem_call_bytes"] + kept,
                mem_peak_bytes=rec["mem_peak_bytes"] + held["pool_reserved"] - held["pool_allocated"])


def compare(eager: dict | None, rec: dict, flag: bool) -> None:
    """Sets rec's mem_ratio (call / eager's call) and, with flag, mem_above_eager: why its peak is
    above eager's (empty list: it is not). Leaves rec alone when either side was not measured."""
    if not eager or eager.get("mem_call_bytes") is None or rec.get("mem_call_bytes") is None:
        return
    if eager["mem_call_bytes"] > 0:
        rec["mem_ratio"] = rec["mem_call_bytes"] / eager["mem_call_bytes"]
    if not flag:
        return
    above = []
    for key, what in (("mem_call_bytes", "call"), ("mem_peak_bytes", "absolute")):
        if rec[key] - eager[key] > SLACK_BYTES:
            above.append(f"{what} {mib(rec[key])} vs eager {mib(eager[key])} MiB")
    rec["mem_above_eager"] = above


def mib(value: int | None) -> str:
    """Bytes as MiB for the tables; "—" when not measured (CPU), never 0."""
    if value is None:
        return "—"
    m = value / MiB
    return f"{m:.0f}" if m >= 100 else f"{m:.1f}"
