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

The specialization key mirrors what Triton specializes a compiled kernel on (triton 3.x,
`native_specialize_impl`): for a tensor, whether its data pointer is 16-byte aligned; for an int,
whether it equals 1 (then it is compiled in as a constant), whether it is a multiple of 16, and
whether it fits int32. Dtypes need no place in the key: every launch site's tensors have the dtypes
of its IR values, which CompiledGraph checks on entry. A kernel compiled under one key is therefore
exactly the one `JITFunction.run` would pick. When any of this cannot hold (the interpreter, a
Triton without the attributes used here, a launch hook installed by a profiler) every launch takes
the ordinary path.
"""
from __future__ import annotations

import functools

import torch
import triton

_INT32_MIN, _INT32_MAX = -2**31, 2**31 - 1


def specialization(arg) -> object:
    """The part of Triton's specialization key an argument decides (see the module docstring)."""
    if isinstance(arg, torch.Tensor):
        return arg.data_ptr() & 15 == 0
    return 1 if arg == 1 else (arg & 15 == 0, _INT32_MIN <= arg <= _INT32_MAX)


def _active(hook) -> bool:
    # triton 3.6 installs empty HookChains by default; only a chain with calls (or a plain
    # function) means someone, e.g. a profiler, wants to see each launch.
    return hook is not None and bool(getattr(hook, "calls", True))


def _launch_hooks_installed() -> bool:
    runtime = triton.knobs.runtime
    return _active(runtime.launch_enter_hook) or _active(runtime.launch_exit_hook)


class Launcher:
    """Launches `fn` over a 1-d grid with fixed block sizes (`XBLOCK=`, `RBLOCK=`, in the kernel's
    signature order) and `num_warps`; the call passes the runtime arguments positionally and the
    INDEX_64 flag by keyword:

        launch_k0_relu = Launcher(k0_relu, DEVICE, num_warps=4, XBLOCK=1024)
        launch_k0_relu(cdiv(d0, 1024), x, buf0, d0, INDEX_64=False)
    """

    def __init__(self, fn, device: torch.device, num_warps: int, **blocks: int):
        self.fn = fn
        self.num_warps = num_warps
        self.blocks = blocks
        self._block_values = tuple(blocks.values())
        # Interpreted kernels (CPU tensors) have no compiled launcher to call.
        self.fast = (device.type == "cuda" and isinstance(fn, triton.runtime.JITFunction))
        if self.fast:
            index = device.index if device.index is not None else torch.cuda.current_device()
            self._stream = functools.partial(torch._C._cuda_getCurrentRawStream, index)
        self._compiled: dict[tuple, tuple] = {}   # specialization key -> (run, function, metadata)

    def __call__(self, programs: int, *args, INDEX_64: bool = False) -> None:
        key = None
        if self.fast and not _launch_hooks_installed():
            key = (INDEX_64, *map(specialization, args))
            entry = self._compiled.get(key)
            if entry is not None:
                run, function, metadata = entry
                run(programs, 1, 1, self._stream(), function, metadata, None, None, None,
                    *args, *self._block_values, INDEX_64)
                return
        kernel = self.fn[(programs,)](*args, **self.blocks, INDEX_64=INDEX_64, num_warps=self.num_warps)
        if key is not None:
            self._remember(key, kernel)

    def _remember(self, key: tuple, kernel) -> None:
        try:
            entry = (kernel.run, kernel.function, kernel.packed_metadata)
        except AttributeError:  # a Triton whose compiled kernels look different: stay on the slow path
            self.fast = False
            return
        if entry[1] is not None:
            self._compiled[key] = entry
