"""Element types of ember's IR and their mapping to torch dtypes.

The IR names dtypes by short, jaxpr-like spellings (``f32``, ``bf16``, ``b1``); this module is
the only place that knows how those names map to torch.
"""
from __future__ import annotations

import torch

# Ordered: the printer and docs list dtypes in this order.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "f64": torch.float64,
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "f8e4m3": torch.float8_e4m3fn,
    "f8e5m2": torch.float8_e5m2,
    "i64": torch.int64,
    "i32": torch.int32,
    "i16": torch.int16,
    "i8": torch.int8,
    "u8": torch.uint8,
    "b1": torch.bool,
    "c64": torch.complex64,
    "c128": torch.complex128,
}
_NAMES = {v: k for k, v in TORCH_DTYPES.items()}

FLOAT_DTYPES = frozenset({"f64", "f32", "f16", "bf16", "f8e4m3", "f8e5m2"})
INT_DTYPES = frozenset({"i64", "i32", "i16", "i8", "u8"})
COMPLEX_DTYPES = frozenset({"c64", "c128"})


def to_torch(name: str) -> torch.dtype:
    try:
        return TORCH_DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(TORCH_DTYPES)}") from None


def from_torch(dtype: torch.dtype) -> str:
    try:
        return _NAMES[dtype]
    except KeyError:
        raise ValueError(f"torch dtype {dtype} has no ember IR name") from None


def is_float(name: str) -> bool:
    return name in FLOAT_DTYPES


def is_int(name: str) -> bool:
    return name in INT_DTYPES


def is_low_precision(name: str) -> bool:
    """Float types that kernels upcast to f32 for arithmetic."""
    return name in ("f16", "bf16", "f8e4m3", "f8e5m2")


def itemsize(name: str) -> int:
    """Bytes per element (bool counts as one byte, as torch stores it)."""
    return to_torch(name).itemsize
