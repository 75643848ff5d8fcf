"""Launching generated Triton kernels with little Python in between.

`kernel[grid](*args, XBLOCK=..., ...)` goes through `JITFunction.run`, which binds the arguments
to the signature, computes a specialization key, looks the kernel up, builds launch metadata and
only then calls the compiled launcher. Measured on an H100 that is ~48 us of CPU per launch, so a
graph of 100 small kernels spends ~5 ms in Python while the GPU idles: the model runs at the speed
of its launches, not of its kernels.

A `Launcher` belongs to one kernel launched with one fixed set of block sizes and warps (one
launch site in a generated wrapper). Its first launch for a given specialization goes through
`JITFunction.run` (which compiles, caches on disk and launches); it keeps the compiled kernel, and
later launches with the same specialization call its launcher directly.

The key a kept kernel is filed under is finer than what Triton specializes a compiled kernel on
(triton 3.x, `native_specialize_impl`: a pointer's 16-byte alignment; an int's equality to 1,
divisibility by 16 and int32 range): each int by its value, each tensor by its pointer's 16-byte
alignment. Two launches with one key are therefore ones `JITFunction.run` would send to the same
compiled kernel. Ints by value cost one entry per distinct size or stride at a launch site (a
handful; the table is emptied past MAX_KEPT), where deriving Triton's properties in Python took
3x as long per launch. Dtypes need no place in the key: every launch site's tensors have the dtypes
of its IR values, which CompiledGraph checks on entry. When any of this cannot hold (the
interpreter, a Triton without the attributes used here, a launch hook installed by a profiler)
every launch takes the ordinary path.
"""
from __future__ import annotations

import functools
import threading

import torch
import triton
from triton.runtime import _allocation

from . import precompile

MAX_KEPT = 256  # kept kernels per launch site before the table starts over


def launch_key(index_64: bool, args: tuple) -> tuple:
    """What a kept kernel is filed under (see the module docstring): ints as they are, tensors by
    whether their data pointer is 16-byte aligned."""
    return (index_64, *[a if type(a) is int else a.data_ptr() & 15 == 0 for a in args])


def _active(hook) -> bool:
    # triton 3.6 installs empty HookChains by default; only a chain with calls (or a plain
    # function) means someone, e.g. a profiler, wants to see each launch.
    return hook is not None and bool(getattr(hook, "calls", True))


def _launch_hooks_installed() -> bool:
    runtime = triton.knobs.runtime
    return _active(runtime.launch_enter_hook) or _active(runtime.launch_exit_hook)


# Scratch for device-built TMA descriptors: one buffer per (GPU, stream), reused by every launch on
# that stream (launches on one stream run one after another, so they never share it at once).
# Not a fresh torch.empty per launch: inside a CUDA graph capture that small allocation opened a
# 2-MiB segment of the graph's private pool, which then stayed reserved (BERT and ViT held 2 MiB
# more per call, ViT above eager). A graph capture's warm-up call runs on the capture stream
# first, so the buffer exists, outside any pool, before capture. A buffer outgrown by a larger
# request is kept alive, never freed: a captured graph may still write to it.
SCRATCH_MIN_BYTES = 64 << 10
_scratch_buffers: dict[tuple[int, int], torch.Tensor] = {}
_outgrown: list[torch.Tensor] = []
_scratch_lock = threading.Lock()


def scratch_allocator(size: int, alignment: int, stream) -> torch.Tensor:
    # torch.empty's memory is 512-byte aligned, more than Triton asks for.
    device = torch.cuda.current_device()
    key = (device, stream or 0)
    with _scratch_lock:
        buf = _scratch_buffers.get(key)
        if buf is None or buf.numel() < size:
            if buf is not None:
                _outgrown.append(buf)
            buf = torch.empty(max(size, SCRATCH_MIN_BYTES), dtype=torch.int8, device=device)
            _scratch_buffers[key] = buf
    return buf


class Launcher:
    """Launches `fn` over a 1-d grid with fixed block sizes (`XBLOCK=`, `RBLOCK=`, ...: the
    kernel's constexpr parameters before INDEX_64, in signature order), `num_warps` and
    optionally `num_stages` (software pipelining depth, for kernels with loops over tl.dot: the
    attention template; None: Triton's default); the call passes the runtime arguments
    positionally and the INDEX_64 flag by keyword:

        launch_k0_relu = Launcher(k0_relu, DEVICE, num_warps=4, XBLOCK=1024)
        launch_k0_relu(cdiv(d0, 1024), x, buf0, d0, INDEX_64=False)
    """

    def __init__(self, fn, device: torch.device, num_warps: int, num_stages: int | None = None,
                 **blocks: int):
        self.fn = fn
        self.num_warps = num_warps
        self.options = {"num_warps": num_warps} | ({"num_stages": num_stages} if num_stages else {})
        self.blocks = blocks
        self._block_values = tuple(blocks.values())
        # Interpreted kernels (CPU tensors) have no compiled launcher to call.
        self.fast = (device.type == "cuda" and isinstance(fn, triton.runtime.JITFunction))
        if self.fast:
            index = device.index if device.index is not None else torch.cuda.current_device()
            self._stream = functools.partial(torch._C._cuda_getCurrentRawStream, index)
        self._compiled: dict[tuple, tuple] = {}   # specialization key -> (run, function, metadata)
        # Descriptors made on the device need scratch memory at every launch (scratch_allocator).
        self.scratch = self.fast and "tl.make_tensor_descriptor" in getattr(fn, "src", "")

    def __call__(self, programs: int, *args, INDEX_64: bool = False) -> None:
        if precompile.active() and self.fast:  # compile on the pool, launch nothing (precompile.py)
            precompile.submit(self.fn, programs, args, {**self.blocks, "INDEX_64": INDEX_64}, self.options)
            return
        if not self.scratch:
            return self._launch(programs, args, INDEX_64)
        # Triton asks the allocator in its ContextVar at each launch. Ours, for this launch only:
        # another one may be set (TorchInductor sets its own, torch.empty per launch, at every
        # launch of its kernels; a user may set one), and it is theirs again after.
        token = _allocation._allocator.set(scratch_allocator)
        try:
            self._launch(programs, args, INDEX_64)
        finally:
            _allocation._allocator.reset(token)

    def _launch(self, programs: int, args: tuple, INDEX_64: bool) -> None:
        key = None
        if self.fast and not _launch_hooks_installed():
            try:
                key = launch_key(INDEX_64, args)
            except AttributeError:  # an argument neither int nor tensor: Triton's path decides
                self.fast = False
            entry = self._compiled.get(key) if key is not None else None
            if entry is not None:
                run, function, metadata = entry
                run(programs, 1, 1, self._stream(), function, metadata, None, None, None,
                    *args, *self._block_values, INDEX_64)
                return
        kernel = self.fn[(programs,)](*args, **self.blocks, INDEX_64=INDEX_64, **self.options)
        if key is not None:
            self._remember(key, kernel)

    def _remember(self, key: tuple, kernel) -> None:
        try:
            entry = (kernel.run, kernel.function, kernel.packed_metadata)
        except AttributeError:  # a Triton whose compiled kernels look different: stay on the slow path
            self.fast = False
            return
        if entry[1] is not None:
            if len(self._compiled) >= MAX_KEPT:
                self._compiled.clear()
            self._compiled[key] = entry
