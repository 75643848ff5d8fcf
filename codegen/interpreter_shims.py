"""Stand-ins, computed with torch, for what Triton's CPU interpreter lacks or gets wrong.

- libdevice: Triton's `libdevice` functions are calls into CUDA's math library, which the interpreter
  (TRITON_INTERPRET=1) cannot run (they return None). Kernels for CPU graphs get this module under
  the name `libdevice` instead (runtime.libdevice_for). Using torch means CPU results match eager
  torch exactly; on the GPU the real libdevice (accurate to an ulp or two) is used.
- Loop bounds: the interpreter hands a kernel its integer arguments as 1-element arrays, and
  `range(0, n, ...)` over one fails with numpy >= 2.5 (int() of a 1-d array); python_int unwraps it.
- Rounding casts: the interpreter converts f32 to bf16 by truncation, and its fp8 rounding mishandles
  ties and mantissa carries; triton_helpers routes those casts here when interpreting.

Each function takes the interpreter's block values (numpy arrays inside `tl.tensor` handles), applies
the torch function of the same meaning, and wraps the result back.

This relies on the interpreter's value representation (`tensor.handle.data` is a numpy array,
`TensorHandle(data, dtype)` builds one), which is internal to Triton: if an upgrade breaks it, the
failure is loud (every CPU math test), not silent.
"""
from __future__ import annotations

import numpy as np
import torch
import triton.language as tl
from triton.runtime.interpreter import TensorHandle


def _as_torch(arg, like: np.ndarray) -> torch.Tensor:
    if isinstance(arg, tl.tensor):
        return torch.from_numpy(np.array(arg.handle.data))
    if isinstance(arg, tl.constexpr):
        arg = arg.value
    return torch.tensor(arg, dtype=torch.from_numpy(like[:0].reshape(-1)).dtype)


def _elementwise(torch_fn):
    def apply(*args):
        tensors = [a for a in args if isinstance(a, tl.tensor)]
        first = max(tensors, key=lambda t: len(t.shape))
        data = first.handle.data
        out = torch_fn(*[_as_torch(a, data) for a in args]).numpy().astype(data.dtype)
        scalar = first.handle.dtype.scalar
        ty = tl.block_type(scalar, list(out.shape)) if out.ndim else scalar
        return tl.tensor(TensorHandle(out, scalar), ty)

    apply.__name__ = getattr(torch_fn, "__name__", "libdevice_fn")
    return apply


exp = _elementwise(torch.exp)
exp2 = _elementwise(torch.exp2)
expm1 = _elementwise(torch.expm1)
log = _elementwise(torch.log)
log2 = _elementwise(torch.log2)
log10 = _elementwise(torch.log10)
log1p = _elementwise(torch.log1p)
sqrt = _elementwise(torch.sqrt)
rsqrt = _elementwise(torch.rsqrt)
sin = _elementwise(torch.sin)
cos = _elementwise(torch.cos)
tan = _elementwise(torch.tan)
asin = _elementwise(torch.asin)
acos = _elementwise(torch.acos)
atan = _elementwise(torch.atan)
sinh = _elementwise(torch.sinh)
cosh = _elementwise(torch.cosh)
tanh = _elementwise(torch.tanh)
asinh = _elementwise(torch.asinh)
acosh = _elementwise(torch.acosh)
atanh = _elementwise(torch.atanh)
erf = _elementwise(torch.erf)
erfc = _elementwise(torch.erfc)
erfinv = _elementwise(torch.erfinv)
lgamma = _elementwise(torch.lgamma)
floor = _elementwise(torch.floor)
ceil = _elementwise(torch.ceil)
trunc = _elementwise(torch.trunc)
nearbyint = _elementwise(torch.round)  # round half to even, like nearbyint in the default mode
fmod = _elementwise(torch.fmod)
pow = _elementwise(torch.pow)
atan2 = _elementwise(torch.atan2)
hypot = _elementwise(torch.hypot)
copysign = _elementwise(torch.copysign)


def rounding_cast(torch_dtype: torch.dtype, tl_dtype):
    """x.to(tl_dtype) with round-to-nearest-even, as the GPU (and torch) convert. The interpreter
    stores bf16 and fp8 values as their raw bits (uint16 / uint8 arrays)."""
    bits = {1: np.uint8, 2: np.uint16}[torch.empty(0, dtype=torch_dtype).element_size()]

    def cast(x):
        src = torch.from_numpy(np.array(x.handle.data))
        out = src.to(torch_dtype).view(torch.int8 if bits is np.uint8 else torch.int16).numpy().view(bits)
        ty = tl.block_type(tl_dtype, list(out.shape)) if out.ndim else tl_dtype
        return tl.tensor(TensorHandle(out, tl_dtype), ty)

    return cast


def python_int(n) -> int:
    """A runtime integer kernel argument as a Python int (for `range` bounds)."""
    data = n.handle.data if isinstance(n, tl.tensor) else n
    return int(np.asarray(data).reshape(-1)[0])
