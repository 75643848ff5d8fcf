"""Pointwise lowerings: unary and binary math, comparisons, logical/bitwise ops, clamp, where.

Every operand is brought to one dtype with explicit casts (the IR has no implicit promotion):
arithmetic computes in the result dtype torch reports, except that a low-precision result with a
Python scalar computes in f32 and casts back, which is what eager's "opmath" does; comparisons
compute in the promoted operand dtype and yield b1.
"""
from __future__ import annotations

import torch

from ..ir.dtypes import is_float
from .lowering import Unsupported, is_scalar, register

aten = torch.ops.aten

# ----------------------------------------------------------------------------- unary

_UNARY = {
    aten.abs: "abs", aten.neg: "neg", aten.exp: "exp", aten.exp2: "exp2", aten.expm1: "expm1",
    aten.log: "log", aten.log2: "log2", aten.log10: "log10", aten.log1p: "log1p",
    aten.sqrt: "sqrt", aten.rsqrt: "rsqrt", aten.sin: "sin", aten.cos: "cos", aten.tan: "tan",
    aten.asin: "asin", aten.acos: "acos", aten.atan: "atan", aten.sinh: "sinh", aten.cosh: "cosh",
    aten.tanh: "tanh", aten.asinh: "asinh", aten.acosh: "acosh", aten.atanh: "atanh",
    aten.erf: "erf", aten.erfc: "erfc", aten.erfinv: "erfinv", aten.lgamma: "lgamma",
    aten.sigmoid: "sigmoid", aten.relu: "relu", aten.floor: "floor", aten.ceil: "ceil",
    aten.trunc: "trunc", aten.sign: "sign", aten.reciprocal: "reciprocal",
    aten.bitwise_not: "bitwise_not",
}
# Ops whose result is b1 whatever the operand: no cast of the operand.
_PREDICATES = {aten.logical_not: "logical_not", aten.isnan: "isnan", aten.isinf: "isinf"}


def _unary(irop):
    def lower(ctx, x):
        # Float-only ops on integer inputs (exp of an int tensor) compute in the float result dtype.
        return ctx.op(irop, ctx.cast(x, ctx.out_dtype))
    return lower


def _predicate(irop):
    return lambda ctx, x: ctx.op(irop, x)


for _aten, _ir in _UNARY.items():
    register(_aten.default)(_unary(_ir))
for _aten, _ir in _PREDICATES.items():
    register(_aten.default)(_predicate(_ir))


@register(aten.round.default, aten.round.decimals)
def _round(ctx, x, *, decimals=0):
    x = ctx.cast(x, ctx.out_dtype)
    if not decimals:
        return ctx.op("round", x)
    if not is_float(x.type.dtype):
        raise Unsupported("round with decimals of an integer tensor")
    # As eager: scale by 10**|d| with a multiply (d > 0) or divide (d < 0), round half-even, undo.
    scale = ctx.full(10.0 ** abs(decimals), x.type.dtype)
    up, down = ("mul", "div") if decimals > 0 else ("div", "mul")
    return ctx.op(down, ctx.op("round", ctx.op(up, x, scale)), scale)


@register(aten.fmax.default, aten.fmin.default)
def _fmax_fmin(ctx, a, b):
    # NaN-ignoring max/min: a NaN operand yields the other one.
    dt = ctx.out_dtype
    a, b = ctx.value(a, dt), ctx.value(b, dt)
    m = ctx.op("maximum" if ctx.node.target is aten.fmax.default else "minimum", a, b)
    if not is_float(dt):
        return m
    return ctx.op("where", ctx.op("isnan", a), b, ctx.op("where", ctx.op("isnan", b), a, m))


@register(aten.square.default)
def _square(ctx, x):
    x = ctx.cast(x, ctx.out_dtype)
    return ctx.op("mul", x, x)


@register(aten.positive.default)
def _positive(ctx, x):
    return x


# ----------------------------------------------------------------------------- binary arithmetic

def _arith_operands(ctx, a, b):
    """(a, b) as Values of the compute dtype; returns also that dtype."""
    dt = ctx.compute_dtype(a, b)
    return ctx.value(a, dt), ctx.value(b, dt), dt


def _finish(ctx, v):
    return ctx.cast(v, ctx.out_dtype)


def _arith(irop):
    def lower(ctx, a, b):
        a, b, _ = _arith_operands(ctx, a, b)
        return _finish(ctx, ctx.op(irop, a, b))
    return lower


_ARITH = {aten.mul: "mul", aten.remainder: "remainder", aten.fmod: "fmod", aten.atan2: "atan2",
          aten.hypot: "hypot", aten.copysign: "copysign", aten.maximum: "maximum",
          aten.minimum: "minimum", aten.floor_divide: "floordiv",
          aten.bitwise_and: "bitwise_and", aten.bitwise_or: "bitwise_or",
          aten.bitwise_xor: "bitwise_xor", aten.__and__: "bitwise_and", aten.__or__: "bitwise_or",
          aten.__xor__: "bitwise_xor", aten.bitwise_left_shift: "shift_left",
          aten.bitwise_right_shift: "shift_right", aten.__lshift__: "shift_left",
          aten.__rshift__: "shift_right"}
for _aten, _ir in _ARITH.items():
    register(_aten)(_arith(_ir))


def _add_sub(irop):
    def lower(ctx, a, b, alpha=1):
        a, b, dt = _arith_operands(ctx, a, b)
        if alpha != 1:
            b = ctx.op("mul", b, ctx.scalar(alpha, dt))
        return _finish(ctx, ctx.op(irop, a, b))
    return lower


register(aten.add)(_add_sub("add"))
register(aten.sub)(_add_sub("sub"))


@register(aten.rsub)
def _rsub(ctx, a, b, alpha=1):
    return _add_sub("sub")(ctx, b, a, alpha)


@register(aten.div)
def _div(ctx, a, b, *, rounding_mode=None):
    a, b, _ = _arith_operands(ctx, a, b)
    irop = {None: "div", "floor": "floordiv", "trunc": "truncdiv"}[rounding_mode]
    if irop == "div" and not is_float(a.type.dtype):
        raise Unsupported(f"true division in {a.type.dtype}")
    return _finish(ctx, ctx.op(irop, a, b))


@register(aten.true_divide)
def _true_divide(ctx, a, b):
    return _div(ctx, a, b)


# Exponents eager special-cases (ATen's pow_tensor_scalar): matching them keeps results bit-close.
@register(aten.pow)
def _pow(ctx, a, b):
    out = ctx.out_dtype
    if is_scalar(b) and not isinstance(b, bool) and isinstance(b, (int, float)):
        x = ctx.value(a, ctx.compute_dtype(a, b))
        if b == 2:
            return _finish(ctx, ctx.op("mul", x, x))
        if b == 3:
            return _finish(ctx, ctx.op("mul", ctx.op("mul", x, x), x))
        if b == 1:
            return _finish(ctx, ctx.op("copy", x))
        if is_float(x.type.dtype):
            if b == 0.5:
                return _finish(ctx, ctx.op("sqrt", x))
            if b == -0.5:
                return _finish(ctx, ctx.op("rsqrt", x))
            if b == -1:
                return _finish(ctx, ctx.op("reciprocal", x))
            if b == -2:
                return _finish(ctx, ctx.op("reciprocal", ctx.op("mul", x, x)))
    if not is_float(out):
        raise Unsupported(f"integer pow with exponent {b!r}")
    a, b, _ = _arith_operands(ctx, a, b)
    return _finish(ctx, ctx.op("pow", a, b))


# ----------------------------------------------------------------------------- comparisons, logic

def _compare(irop):
    def lower(ctx, a, b):
        _, dt = ctx.promoted(a, b)
        return ctx.op(irop, ctx.value(a, dt), ctx.value(b, dt))
    return lower


for _aten, _ir in {aten.eq: "eq", aten.ne: "ne", aten.lt: "lt", aten.le: "le", aten.gt: "gt",
                   aten.ge: "ge"}.items():
    register(_aten)(_compare(_ir))


def _logical(irop):
    # logical ops read truthiness: casting to b1 is exactly `!= 0`.
    return lambda ctx, a, b: ctx.op(irop, ctx.value(a, "b1"), ctx.value(b, "b1"))


for _aten, _ir in {aten.logical_and: "logical_and", aten.logical_or: "logical_or",
                   aten.logical_xor: "logical_xor"}.items():
    register(_aten)(_logical(_ir))


# ----------------------------------------------------------------------------- clamp, where

@register(aten.clamp)
def _clamp(ctx, x, min=None, max=None):
    # maximum/minimum propagate NaN like torch.clamp; min > max gives max, as in torch.
    dt = ctx.compute_dtype(x, min, max)
    v = ctx.value(x, dt)
    if min is not None:
        v = ctx.op("maximum", v, ctx.value(min, dt))
    if max is not None:
        v = ctx.op("minimum", v, ctx.value(max, dt))
    return _finish(ctx, v if v is not x else ctx.op("copy", v))


@register(aten.clamp_min)
def _clamp_min(ctx, x, min):
    return _clamp(ctx, x, min=min)


@register(aten.clamp_max)
def _clamp_max(ctx, x, max):
    return _clamp(ctx, x, max=max)


@register(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
def _where(ctx, cond, a, b):
    dt = ctx.out_dtype
    return ctx.op("where", ctx.value(cond, "b1"), ctx.value(a, dt), ctx.value(b, dt))


@register(aten.masked_fill)
def _masked_fill(ctx, x, mask, value):
    dt = ctx.out_dtype
    return ctx.op("where", ctx.value(mask, "b1"), ctx.value(value, dt), ctx.value(x, dt))
