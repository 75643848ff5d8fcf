"""Lowerings of casts and copies, constants (full/empty/arange), indexing, and matmul."""
from __future__ import annotations

import sympy
import torch

from ..ir import TensorType
from ..ir.dtypes import is_float
from .lowering import Unsupported, normalize_dim, register

aten = torch.ops.aten
prims = torch.ops.prims

# ----------------------------------------------------------------------------- casts and copies


@register(aten._to_copy.default)
def _to_copy(ctx, x, *, dtype=None, layout=None, device=None, pin_memory=None,
             non_blocking=False, memory_format=None):
    if ctx.expected_type().device != x.type.device:
        raise Unsupported(f"device copy {x.type.device} -> {ctx.expected_type().device}")
    out = ctx.out_dtype
    # _to_copy always returns a fresh tensor; `copy` keeps that when the dtype does not change,
    # so an output never silently aliases an input.
    return ctx.op("cast", x, dtype=out) if x.type.dtype != out else ctx.op("copy", x)


@register(prims.convert_element_type.default)
def _convert(ctx, x, dtype):
    return ctx.cast(x, ctx.out_dtype)


@register(aten.clone.default, aten.lift_fresh_copy.default, aten.contiguous.default)
def _clone(ctx, x, *, memory_format=None):
    return ctx.op("copy", x)


@register(aten.copy.default)
def _copy(ctx, dst, src, non_blocking=False):
    """The functional copy_: src, cast to dst's dtype and broadcast to dst's shape."""
    v = ctx.cast(src, dst.type.dtype)
    if v.type.rank != dst.type.rank or v.type.shape != dst.type.shape:
        v = ctx.op("expand", v, shape=dst.type.shape)
    return ctx.op("copy", v) if v is src else v


# ----------------------------------------------------------------------------- constants

@register(aten.full.default, aten.full_like.default, aten.new_full.default)
def _full(ctx, *args, **kwargs):
    value = args[1] if ctx.node.target is not aten.new_full.default else args[2]
    t = ctx.expected_type()
    return ctx.full(value, t.dtype, t.shape)


@register(aten.scalar_tensor.default)
def _scalar_tensor(ctx, value, **kwargs):
    return ctx.scalar(value, ctx.out_dtype)


@register(aten.zeros.default, aten.zeros_like.default, aten.new_zeros.default,
          aten.empty.memory_format, aten.empty_like.default, aten.new_empty.default,
          aten.empty_strided.default, aten.new_empty_strided.default, aten.empty_permuted.default)
def _zeros(ctx, *args, **kwargs):
    # empty tensors are uninitialized: any value is correct, and 0 keeps dumps reproducible.
    t = ctx.expected_type()
    return ctx.full(0, t.dtype, t.shape)


@register(aten.ones.default, aten.ones_like.default, aten.new_ones.default)
def _ones(ctx, *args, **kwargs):
    t = ctx.expected_type()
    return ctx.full(1, t.dtype, t.shape)


@register(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(ctx, *args, **kwargs):
    target = ctx.node.target
    if target is aten.arange.default:
        start, step = 0, 1
    elif target is aten.arange.start:
        start, step = args[0], 1
    else:
        start, step = args[0], (args[2] if len(args) > 2 else 1)
    t = ctx.expected_type()
    idx = ctx.op("iota", result_types=[TensorType("i64", t.shape, t.device)], dim=0)
    # Integer arange stays exact in i64; float arange computes start + i * step in the result dtype
    # (f64 for f16/bf16 would be closer to eager's double accumulator, but the error is < 1 ulp).
    dt = t.dtype if not is_float(t.dtype) else ("f32" if t.dtype in ("f16", "bf16") else t.dtype)
    if isinstance(step, float) and not is_float(dt):
        raise Unsupported("integer arange with a float step")
    v = ctx.cast(idx, dt)
    if step != 1:
        v = ctx.op("mul", v, ctx.scalar(step, dt))
    if start != 0:
        v = ctx.op("add", v, ctx.scalar(start, dt))
    return ctx.cast(v, t.dtype)


# ----------------------------------------------------------------------------- indexing

def _index_ops(ctx, x, indices):
    """x[indices] for a list of optional index tensors, when the IR `index` op can express it:
    one index tensor, or several adjacent ones (merged into one flat index over their dims)."""
    pos = [i for i, t in enumerate(indices) if t is not None]
    if not pos:
        return ctx.op("copy", x)
    if any(indices[i].type.dtype in ("b1", "u8") for i in pos):
        raise Unsupported("boolean mask indexing (data-dependent shape)")
    if pos != list(range(pos[0], pos[-1] + 1)):
        raise Unsupported("non-adjacent index tensors (torch moves the indexed dims first)")
    d0 = pos[0]
    if len(pos) == 1:
        return ctx.op("index", x, ctx.cast(indices[d0], "i64"), dim=d0)
    # Several adjacent indices: flat = sum(wrap(idx_k) * stride_k) over the merged dims.
    from ..ir.types import broadcast_shapes
    shape = broadcast_shapes(*[indices[i].type.shape for i in pos])
    flat = None
    for i in pos:
        size = x.type.shape[i]
        idx = ctx.cast(indices[i], "i64")
        neg = ctx.op("lt", idx, ctx.full(0, "i64"))
        idx = ctx.op("where", neg, ctx.op("add", idx, ctx.full(size, "i64")), idx)
        flat = idx if flat is None else ctx.op("add", ctx.op("mul", flat, ctx.full(size, "i64")), idx)
    flat = ctx.op("expand", flat, shape=shape) if flat.type.shape != tuple(shape) else flat
    merged = list(x.type.shape[:d0]) + [sympy.Mul(*x.type.shape[d0:pos[-1] + 1])] + list(x.type.shape[pos[-1] + 1:])
    return ctx.op("index", ctx.op("reshape", x, shape=tuple(merged)), flat, dim=d0)


@register(aten.index.Tensor, aten._unsafe_index.Tensor)
def _index(ctx, x, indices):
    return _index_ops(ctx, x, list(indices))


@register(aten.index_select.default)
def _index_select(ctx, x, dim, index):
    dim = normalize_dim(dim, x.type.rank)
    if x.type.rank == 0:
        raise Unsupported("index_select on a 0-d tensor")
    if index.type.rank == 0:  # a 0-d index selects one element but keeps the dim
        index = ctx.op("reshape", index, shape=(1,))
    return ctx.op("index", x, ctx.cast(index, "i64"), dim=dim)


@register(aten.flip.default)
def _flip(ctx, x, dims):
    dims = sorted({normalize_dim(d, x.type.rank) for d in dims})
    if not dims:
        return ctx.op("copy", x)
    for d in dims:  # reversed positions n-1, ..., 0 along each flipped dim
        n = x.type.shape[d]
        rev = ctx.op("sub", ctx.full(n - 1, "i64"),
                     ctx.op("iota", result_types=[TensorType("i64", (n,), ctx.graph.device)], dim=0))
        x = ctx.op("index", x, rev, dim=d)
    return x


@register(aten.diagonal.default, aten.diagonal_copy.default)
def _diagonal(ctx, x, offset=0, dim1=0, dim2=1):
    """Move dim1, dim2 last, flatten them, and gather the diagonal's flat positions."""
    rank = x.type.rank
    d1, d2 = normalize_dim(dim1, rank), normalize_dim(dim2, rank)
    n1, n2 = x.type.shape[d1], x.type.shape[d2]
    if not (n1.is_Integer and n2.is_Integer):
        raise Unsupported("diagonal of symbolic dims")
    n1, n2 = int(n1), int(n2)
    length = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    if length == 0:
        raise Unsupported("empty diagonal")
    rest = [d for d in range(rank) if d not in (d1, d2)]
    moved = ctx.op("permute", x, dims=tuple(rest + [d1, d2])) if rest + [d1, d2] != list(range(rank)) else x
    flat = ctx.op("reshape", moved, shape=tuple(x.type.shape[d] for d in rest) + (n1 * n2,))
    k = ctx.op("iota", result_types=[TensorType("i64", (length,), ctx.graph.device)], dim=0)
    # element (i, j) = (k + max(0, -offset), k + max(0, offset)) sits at i * n2 + j.
    first = max(0, -offset) * n2 + max(0, offset)
    pos = ctx.op("add", ctx.op("mul", k, ctx.full(n2 + 1, "i64")), ctx.full(first, "i64"))
    return ctx.op("index", flat, pos, dim=len(rest))


@register(aten.gather.default)
def _gather(ctx, x, dim, index, *, sparse_grad=False):
    if x.type.rank == 0:
        raise Unsupported("gather on a 0-d tensor")
    return ctx.op("gather", x, ctx.cast(index, "i64"), dim=normalize_dim(dim, x.type.rank))


# ----------------------------------------------------------------------------- matmul

@register(aten.mm.default, aten.bmm.default)
def _mm(ctx, a, b):
    dt = ctx.out_dtype
    return ctx.op("matmul", ctx.cast(a, dt), ctx.cast(b, dt))
