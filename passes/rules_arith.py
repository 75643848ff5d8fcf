"""Arithmetic canonicalization rules that are exactly value-preserving, IEEE corner cases included.

What is folded and why it is exact (x any value: ±0, ±inf, NaN; the constant is a `full`):
  x + (-0.0) -> x    -0 + -0 = -0 and +0 + -0 = +0.  NOT x + (+0.0): -0 + +0 = +0 != -0.
  x - (+0.0) -> x    the same as x + (-0.0).        NOT x - (-0.0), for the same reason.
  x * 1, 1 * x, x / 1 -> x
  integers and bools: x + 0, 0 + x, x - 0 -> x (no signed zero; bool add is logical or)
  neg(neg x), bitwise_not(bitwise_not x), logical_not(logical_not x) (x bool) -> x
  cast(x) to x's own dtype -> x
  cast(cast(x, B), C) -> cast(x, C) when A -> B is exact (every A value is a B value), since the
    second cast then sees x's own value; not when B is a float and C an integer type, where
    out-of-range conversion is undefined and may differ by path.
  copy x -> x (values are immutable; the driver keeps a copy that keeps a returned value fresh)
A rule only fires when the constant does not broadcast x to a larger shape (the result must
have x's exact type); the driver also refuses forwards that would alias outputs (rewrite.py).
"""
from __future__ import annotations

import math

from ..ir import Op, Value
from ..ir.dtypes import is_float, is_int
from ..ir.types import shapes_equal
from .rewrite import Rewriter


def _same_type(a: Value, b: Value) -> bool:
    return a.type.dtype == b.type.dtype and a.type.device == b.type.device and \
        shapes_equal(a.type.shape, b.type.shape)


def _is_neg_zero(c) -> bool:
    return isinstance(c, float) and c == 0 and math.copysign(1.0, c) < 0


def _is_pos_zero(c) -> bool:
    return isinstance(c, float) and c == 0 and math.copysign(1.0, c) > 0


def _is_int_zero(c, dtype: str) -> bool:
    return (is_int(dtype) or dtype == "b1") and c is not None and not isinstance(c, float) and c == 0


def add_zero(op: Op, rw: Rewriter) -> Value | None:
    if op.name != "add":
        return None
    a, b = op.inputs
    for x, c in ((a, b), (b, a)):
        k = rw.constant(c)
        if (_is_neg_zero(k) or _is_int_zero(k, x.type.dtype)) and _same_type(x, op.result):
            return x
    return None


def sub_zero(op: Op, rw: Rewriter) -> Value | None:
    if op.name != "sub":
        return None
    x, c = op.inputs
    k = rw.constant(c)
    if (_is_pos_zero(k) or _is_int_zero(k, x.type.dtype)) and _same_type(x, op.result):
        return x
    return None


def mul_one(op: Op, rw: Rewriter) -> Value | None:
    if op.name != "mul":
        return None
    a, b = op.inputs
    for x, c in ((a, b), (b, a)):
        k = rw.constant(c)
        if k is not None and k == 1 and _same_type(x, op.result):
            return x
    return None


def div_one(op: Op, rw: Rewriter) -> Value | None:
    if op.name != "div":
        return None
    x, c = op.inputs
    k = rw.constant(c)
    return x if k is not None and k == 1 and _same_type(x, op.result) else None


_INVOLUTIONS = ("neg", "bitwise_not", "logical_not")


def double_involution(op: Op, rw: Rewriter) -> Value | None:
    """f(f(x)) -> x for neg, bitwise_not, and logical_not of a bool."""
    inner = rw.chained(op, _INVOLUTIONS)
    if inner is None:
        return None
    x = inner.inputs[0]
    return x if _same_type(x, op.result) else None


def cast_noop(op: Op, rw: Rewriter) -> Value | None:
    if op.name == "cast" and op.attrs["dtype"] == op.inputs[0].type.dtype:
        return op.inputs[0]
    return None


# For each dtype, the dtypes that hold every one of its values exactly.
_INT_BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}
_FLOAT_WIDER = {"f16": ("f32", "f64"), "bf16": ("f32", "f64"), "f32": ("f64",)}


def exact_cast(src: str, dst: str) -> bool:
    """Is every value of `src` exactly representable in `dst`?"""
    if src == dst:
        return True
    if src == "b1":
        return dst != "b1"  # 0 and 1 exist in every numeric dtype
    if src in _INT_BITS and dst in _INT_BITS:
        return _INT_BITS[dst] >= _INT_BITS[src]
    if src == "u8":
        return dst in ("i16", "i32", "i64") or is_float(dst) and dst not in ("f8e4m3", "f8e5m2")
    if src == "i8":
        return dst in ("f16", "bf16", "f32", "f64")
    if src == "i16":
        return dst in ("f32", "f64")
    if src == "i32":
        return dst == "f64"
    return dst in _FLOAT_WIDER.get(src, ())


def cast_chain(op: Op, rw: Rewriter) -> Value | None:
    inner = rw.chained(op, "cast")
    if inner is None:
        return None
    x = inner.inputs[0]
    src, mid, dst = x.type.dtype, inner.attrs["dtype"], op.attrs["dtype"]
    if not exact_cast(src, mid) or (is_float(mid) and is_int(dst)):
        return None
    if dst == src:
        return x
    return rw.create("cast", [x], {"dtype": dst})


def copy_noop(op: Op, rw: Rewriter) -> Value | None:
    """Values are immutable, so a copy is its operand; the driver keeps the copies that matter (a
    returned copy of an input, or one an extern writes to)."""
    return op.inputs[0] if op.name == "copy" else None


ARITH_RULES = (add_zero, sub_zero, mul_one, div_one, double_involution, cast_noop, cast_chain,
               copy_noop)
