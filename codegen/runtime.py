"""What generated modules use at import and run time: the execution-mode switch, helper modules,
and the few small functions the wrapper calls between kernel launches.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from contextvars import ContextVar
from typing import Callable, Sequence

import torch
from torch._subclasses.fake_tensor import FakeTensor
# Import Triton now, in whatever mode the environment asks for, never inside interpret_mode below:
# triton.language's own @jit library functions (tl.sum, tl.zeros, ...) are built at its first
# import, and Triton later asserts that they match the mode it runs in. Generated kernels call
# none of them (only builtins and triton_helpers), so either mode serves both kinds of kernel.
import triton.language  # noqa: F401

_HELPERS_FILE = Path(__file__).with_name("triton_helpers.py")
_lock = threading.RLock()  # re-entered: a generated module loads the helpers while it is imported

# A kernel's index math runs in int32 unless a tensor it touches spans this many elements; the
# margin keeps `program_id * XBLOCK + arange` of the last, partly masked block in range too.
INT32_INDEX_LIMIT = 2**31 - 2**20


@contextlib.contextmanager
def interpret_mode(interpret: bool):
    """Set TRITON_INTERPRET while the body runs, then restore it.

    triton 3.6 reads `triton.knobs.runtime.interpret` (env TRITON_INTERPRET, read at access time)
    inside `triton.jit` when the decorator runs: the decision between an interpreted and a compiled
    kernel is made at import of the module that defines it, not at launch. CPU graphs must run in
    the interpreter even when the user never set the variable, and CUDA graphs must compile even when
    a test session set it, so each generated module is imported under the mode its device needs.
    """
    with _lock:
        old = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
        try:
            yield
        finally:
            if old is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = old


def helpers_for(interpret: bool) -> ModuleType:
    """triton_helpers.py, loaded for one execution mode (interpreted and compiled jit functions
    cannot call each other, so each mode gets its own copy of the module)."""
    name = f"{__package__}.triton_helpers_{'interpreted' if interpret else 'compiled'}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, _HELPERS_FILE)
        module = importlib.util.module_from_spec(spec)
        with interpret_mode(interpret):
            spec.loader.exec_module(module)
        sys.modules[name] = module
    return module


def libdevice_for(interpret: bool) -> ModuleType:
    if interpret:
        from . import interpreter_shims
        return interpreter_shims
    from triton.language.extra import libdevice
    return libdevice


def kernel_from(module_file: str, digest: str, name: str, interpret: bool):
    """The kernel `name` from its own file `<digest>.py` next to the generated module that asks
    (code_cache.write_generated wrote both; see code_cache's docstring for why a file each)."""
    from .code_cache import load_module
    return getattr(load_module(Path(module_file).with_name(f"{digest}.py"), interpret), name)


def _max_offset(t: torch.Tensor) -> int:
    return sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()) if n > 0)


def needs_int64(*tensors: torch.Tensor) -> bool:
    """True when some element of some tensor lies too far from its base pointer for int32 math."""
    return any(_needs_int64(t) for t in tensors)


def _needs_int64(t: torch.Tensor) -> bool:
    if t.is_contiguous():  # the common case, one C call: the farthest element is numel - 1 away
        return t.numel() >= INT32_INDEX_LIMIT
    return t.numel() >= INT32_INDEX_LIMIT or _max_offset(t) >= INT32_INDEX_LIMIT


def mm_aligned(a: torch.Tensor, b: torch.Tensor, m_pad: int, k_pad: int, n_pad: int,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """a [M, K] @ b [K, N] with M, K, N rounded up to m_pad, k_pad, n_pad (the wrapper picks them:
    multiples of 16 bytes where a size is not), as a view of the result's first M rows and N
    columns. `out`: a contiguous [m_pad, n_pad] buffer to write the padded product into (the
    wrapper's, from its arena); None: a new one. cuBLAS has only slow unaligned kernels when a size or leading dimension is not a
    multiple of 16 bytes (GPT-2's 50257-word vocabulary: 3.3 ms instead of 0.45 on an H100).
    Padding along K must be zeros (it is summed over); rows and columns past M and N are left
    uninitialized, since each only reaches result rows and columns that are cut off."""
    m, k = a.shape
    n = b.shape[1]
    if a.stride(1) == 1:  # row-major a: M is no leading dimension, its rows need no padding
        m_pad = m
    per = max(1, 16 // a.element_size())
    if k_pad == k and n_pad != n and _leading_dim_aligned(b, per):
        return _mm_split_columns(a if m_pad == m else _padded_copy(a, m_pad, k), b, m, n, n_pad, per, out)
    if (m_pad, k_pad) != (m, k):
        a = _padded_copy(a, m_pad, k_pad, zero_cols=k_pad != k)
    if (k_pad, n_pad) != (k, n):
        b = _padded_copy(b, k_pad, n_pad, zero_rows=k_pad != k)
    product = torch.mm(a, b) if out is None else torch.mm(a, b, out=out[:a.shape[0]])
    return product if (m_pad, n_pad) == (m, n) else product[:m, :n]


def tma_ready(t: torch.Tensor, contiguous_dim: int) -> bool:
    """Can a TMA descriptor built for a 2-d tensor whose dim `contiguous_dim` is contiguous read
    `t` (matmul_tma.py)? That dim's stride 1, the other's a multiple of 16 bytes, the start
    16-byte aligned."""
    return (t.stride(contiguous_dim) == 1 and _aligned16(t)
            and t.stride(1 - contiguous_dim) * t.element_size() % 16 == 0)


def _aligned16(t: torch.Tensor) -> bool:
    # A fake tensor (the first call's dry run, precompile.py) has no data pointer; its storage
    # offset is what decides, storage being allocated 512-byte aligned.
    if isinstance(t, FakeTensor):
        return t.storage_offset() * t.element_size() % 16 == 0
    return t.data_ptr() % 16 == 0


def _leading_dim_aligned(t: torch.Tensor, per: int) -> bool:
    """Is t [r, c] row- or column-major with a leading dimension of a multiple of `per` elements
    (16 bytes) and a 16-byte aligned start?"""
    if not _aligned16(t):
        return False
    return (t.stride(1) == 1 and t.stride(0) % per == 0) or (t.stride(0) == 1 and t.stride(1) % per == 0)


def _mm_split_columns(a: torch.Tensor, b: torch.Tensor, m: int, n: int, n_pad: int, per: int,
                      out: torch.Tensor | None) -> torch.Tensor:
    """a @ b where only N is unaligned and b's leading dimension is not (GPT-2's tied LM head reads
    the [50257, 768] embedding as a column-major b): no padded copy of b, which would hold a
    second copy of the weight (77 MiB for GPT-2) during the call. The columns up to the last
    multiple of `per` go through one GEMM whose sizes and leading dimensions are all aligned, into
    the padded rows; the last n % per columns through a second, narrow one."""
    rows = a.shape[0]
    result = torch.empty((rows, n_pad), dtype=a.dtype, device=a.device) if out is None else out[:rows]
    main = n - n % per
    torch.mm(a, b[:, :main], out=result[:, :main])
    torch.mm(a, b[:, main:], out=result[:, main:n])
    return result[:m, :n]


def _padded_copy(t: torch.Tensor, rows: int, cols: int, zero_rows: bool = False,
                 zero_cols: bool = False) -> torch.Tensor:
    """t [r, c] copied into a [rows, cols] buffer of the same orientation (a transposed weight
    stays column-major), with the padding past r / c zeroed where asked."""
    r, c = t.shape
    if t.stride(0) == 1 and t.stride(1) != 1:
        padded = torch.empty((cols, rows), dtype=t.dtype, device=t.device).t()
    else:
        padded = torch.empty((rows, cols), dtype=t.dtype, device=t.device)
    padded[:r, :c].copy_(t)
    if zero_rows and rows > r:
        padded[r:].zero_()
    if zero_cols and cols > c:
        padded[:, c:].zero_()
    return padded


# Where a wrapper's arena comes from: None, a fresh torch.empty; codegen/cuda_graphs.py sets a
# source around a capture so that the arena lives outside the graph's private pool.
_arena_source: ContextVar = ContextVar("ember_arena_source", default=None)


def new_arena(nbytes: int, device: torch.device) -> torch.Tensor:
    """The memory plan's arena for one call of a wrapper (memory_plan.py): `nbytes` bytes."""
    source = _arena_source.get()
    if source is None:
        return torch.empty((nbytes,), dtype=torch.uint8, device=device)
    return source(nbytes, device)


@contextlib.contextmanager
def arenas_from(source: Callable[[int, torch.device], torch.Tensor]):
    """Within the block, wrappers of this thread take their arenas from `source(nbytes, device)`."""
    token = _arena_source.set(source)
    try:
        yield
    finally:
        _arena_source.reset(token)


def inplace_or_empty(t: torch.Tensor, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """`t` itself as the result buffer of an elementwise kernel that reads it last (codegen/inplace.py)
    when it is contiguous with this shape and dtype (the layout a kernel writes), else a new one."""
    if t.is_contiguous() and t.dtype == dtype and tuple(t.shape) == tuple(shape):
        return t
    return torch.empty(shape, dtype=dtype, device=t.device)


def view_or_none(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor | None:
    """`t.view(shape)` when t's strides allow it, else None (the wrapper then copies first)."""
    try:
        return t.view(shape)
    except (RuntimeError, ValueError):  # a fake tensor (precompile's dry run) raises ValueError
        return None


def extern_results(out, outputs: Sequence[int]) -> list[torch.Tensor]:
    """The results an extern op keeps: elements `outputs` of a tuple result, or the one tensor."""
    if isinstance(out, (tuple, list)):
        return [out[i] for i in outputs]
    assert tuple(outputs) == (0,), f"extern returned one tensor but outputs={tuple(outputs)}"
    return [out]
