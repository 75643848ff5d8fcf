"""What kernels need to know about IR dtypes: Triton spellings, compute types, literals.

Inside a kernel every value lives in its *compute* dtype: low-precision floats (f16, bf16, f8) are
upcast to f32 right after the load and cast back on the store, everything else computes in its own
type. Only an explicit `cast` op rounds a value to a low-precision type mid-kernel, so a fused region
keeps f32 intermediates (that is the point of fusing) while casts keep their meaning.
"""
from __future__ import annotations

import math

from ..ir import dtypes

TRITON_DTYPE = {
    "f64": "tl.float64",
    "f32": "tl.float32",
    "f16": "tl.float16",
    "bf16": "tl.bfloat16",
    "f8e4m3": "tl.float8e4nv",
    "f8e5m2": "tl.float8e5",
    "i64": "tl.int64",
    "i32": "tl.int32",
    "i16": "tl.int16",
    "i8": "tl.int8",
    "u8": "tl.uint8",
    "b1": "tl.int1",
}

BITS = {"i64": 64, "i32": 32, "i16": 16, "i8": 8, "u8": 8, "b1": 1}
_INT_RANGE = {"i64": (-2**63, 2**63 - 1), "i32": (-2**31, 2**31 - 1), "i16": (-2**15, 2**15 - 1),
              "i8": (-128, 127), "u8": (0, 255), "b1": (0, 1)}


class UnsupportedDtype(NotImplementedError):
    """A dtype Triton kernels cannot handle (complex); the frontend keeps such ops as externs."""


def tl_dtype(dtype: str) -> str:
    try:
        return TRITON_DTYPE[dtype]
    except KeyError:
        raise UnsupportedDtype(f"no Triton kernel for dtype {dtype}") from None


def compute_dtype(dtype: str) -> str:
    tl_dtype(dtype)  # rejects complex early
    return "f32" if dtypes.is_low_precision(dtype) else dtype


def is_float(dtype: str) -> bool:
    return dtypes.is_float(dtype)


def is_signed_int(dtype: str) -> bool:
    return dtype in ("i64", "i32", "i16", "i8")


# Casts that must go through a rounding helper (triton_helpers.to_bf16, ...) instead of `.to`.
ROUNDING_CAST_HELPER = {"bf16": "to_bf16", "f8e4m3": "to_f8e4m3", "f8e5m2": "to_f8e5m2"}


def convert(expr: str, dtype: str) -> str:
    """`expr` converted to `dtype` (both float or int; b1 targets are handled by the callers)."""
    if dtype in ROUNDING_CAST_HELPER:
        return f"helpers.{ROUNDING_CAST_HELPER[dtype]}({expr})"
    return f"{expr}.to({tl_dtype(dtype)})"


def literal(value, dtype: str) -> str:
    """A Python literal for `value` as a scalar of `dtype` (Triton reads it as a constexpr)."""
    if dtype == "b1":
        return "True" if bool(value) else "False"
    if is_float(dtype):
        value = float(value)
        if math.isnan(value):
            return 'float("nan")'
        if math.isinf(value):
            return 'float("inf")' if value > 0 else 'float("-inf")'
        return repr(value)
    return str(int(value))


def lowest(dtype: str) -> str:
    """The identity of max: -inf for floats, the smallest integer otherwise."""
    return literal(-math.inf, dtype) if is_float(dtype) else str(_INT_RANGE[dtype][0])


def highest(dtype: str) -> str:
    return literal(math.inf, dtype) if is_float(dtype) else str(_INT_RANGE[dtype][1])
