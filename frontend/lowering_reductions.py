"""Reduction lowerings: sum, prod, amax/amin, max/min with indices, argmax/argmin, any/all.

Sums and products of f16/bf16 accumulate in f32 and cast the result back, as eager does; sums of
integers and bools accumulate in the i64 result dtype torch reports. mean and var are decomposed
(decompositions.py) into sums, so they arrive here as reduce_sum.
"""
from __future__ import annotations

import torch

from ..ir.dtypes import is_low_precision
from .lowering import normalize_dim, register

aten = torch.ops.aten


def axes_of(dims, rank: int) -> tuple[int, ...]:
    """torch's reduction dims (None, [] -> all dims; negatives wrap) as sorted IR axes."""
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return tuple(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return tuple(sorted({normalize_dim(d, rank) for d in dims}))


def reduce(ctx, irop, x, dims, keepdim):
    if x.type.rank == 0:  # reducing a scalar is the identity
        return ctx.op("copy", x)
    return ctx.op(irop, x, axes=axes_of(dims, x.type.rank), keepdim=bool(keepdim))


def _accumulating(irop):
    def lower(ctx, x, dim=None, keepdim=False, *, dtype=None):
        out = ctx.out_dtype
        acc = "f32" if is_low_precision(out) else out
        return ctx.cast(reduce(ctx, irop, ctx.cast(x, acc), dim, keepdim), out)
    return lower


register(aten.sum.dim_IntList, aten.sum.default)(_accumulating("reduce_sum"))
register(aten.prod.dim_int, aten.prod.default)(_accumulating("reduce_prod"))


def _extreme(irop):
    def lower(ctx, x, dim=None, keepdim=False):
        return reduce(ctx, irop, x, dim, keepdim)
    return lower


register(aten.amax.default, aten.max.default)(_extreme("reduce_max"))
register(aten.amin.default, aten.min.default)(_extreme("reduce_min"))


def _arg(irop):
    def lower(ctx, x, dim=None, keepdim=False):
        if x.type.rank == 0:
            return ctx.full(0, "i64")
        if dim is None:  # over the flattened tensor; keepdim then means all-ones dims
            flat = ctx.op("reshape", x, shape=(x.type.numel,))
            r = ctx.op(irop, flat, axes=(0,), keepdim=False)
            return ctx.op("reshape", r, shape=ctx.out_shape) if ctx.out_shape else r
        return ctx.op(irop, x, axes=(normalize_dim(dim, x.type.rank),), keepdim=bool(keepdim))
    return lower


register(aten.argmax.default)(_arg("argmax"))
register(aten.argmin.default)(_arg("argmin"))


def _value_and_index(red, arg):
    def lower(ctx, x, dim, keepdim=False):
        return [reduce(ctx, red, x, dim, keepdim), _arg(arg)(ctx, x, dim, keepdim)]
    return lower


register(aten.max.dim)(_value_and_index("reduce_max", "argmax"))
register(aten.min.dim)(_value_and_index("reduce_min", "argmin"))


def _truth(irop):
    # any = max over truth values, all = min; computed on i32 so codegen needs no b1 reduction.
    def lower(ctx, x, dim=None, keepdim=False):
        b = x if x.type.dtype == "b1" else ctx.op("ne", x, ctx.full(0, x.type.dtype))
        r = reduce(ctx, irop, ctx.cast(b, "i32"), dim, keepdim)
        return ctx.cast(r, "b1")
    return lower


register(aten.any.default, aten.any.dim, aten.any.dims)(_truth("reduce_max"))
register(aten.all.default, aten.all.dim, aten.all.dims)(_truth("reduce_min"))


# Longest scan lowered as a masked reduction: out[i] = sum_j x[j] * (j <= i) costs n^2 per row, fine
# for the position-id and mask cumsums models build (n = sequence length), not for long signals.
MAX_SCAN = 2048


@register(aten.cumsum.default, aten.cumprod.default)
def _cumsum(ctx, x, dim, *, dtype=None):
    from ..ir import TensorType
    from .lowering import Unsupported
    out = ctx.out_dtype
    if x.type.rank == 0:
        return ctx.cast(ctx.op("copy", x), out)
    d = normalize_dim(dim, x.type.rank)
    n = x.type.shape[d]
    if not n.is_Integer or int(n) > MAX_SCAN:
        raise Unsupported(f"scan over {n} elements: the masked-reduction lowering is quadratic")
    acc = "f32" if is_low_precision(out) else out
    v = ctx.cast(x, acc)
    shape = list(v.type.shape)
    # v[..., j, ...] -> [..., i, j, ...]: a new axis i at d, j moves to d + 1.
    wide = shape[:d] + [n] + shape[d:]
    vj = ctx.op("expand", ctx.op("reshape", v, shape=tuple(shape[:d] + [1] + shape[d:])), shape=tuple(wide))
    tri = TensorType("i64", (n, n), ctx.graph.device)
    keep = ctx.op("le", ctx.op("iota", result_types=[tri], dim=1), ctx.op("iota", result_types=[tri], dim=0))
    rest = len(shape) - d - 1
    if rest:
        keep = ctx.op("reshape", keep, shape=(n, n) + (1,) * rest)
    prod = ctx.node.target is aten.cumprod.default
    masked = ctx.op("where", keep, vj, ctx.full(1 if prod else 0, acc))
    red = "reduce_prod" if prod else "reduce_sum"
    return ctx.cast(ctx.op(red, masked, axes=(d + 1,), keepdim=False), out)
