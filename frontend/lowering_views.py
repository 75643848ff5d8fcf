"""View and layout lowerings: reshape family, permute, expand, slice/select, cat, pad, scatters.

The IR has value semantics: a "view" is just a new value, and strides do not exist. So every
reshape-like op (view, _unsafe_view, squeeze, unsqueeze, flatten...) lowers to `reshape` with the
shape torch computed, which also resolves -1 and symbolic sizes without re-deriving them here.
"""
from __future__ import annotations

import sympy
import torch

from ..ir import TensorType, Value
from ..ir.types import dims_equal
from .lowering import Unsupported, _python_value, as_attr, normalize_dim, register

aten = torch.ops.aten
prims = torch.ops.prims

_BIG = 2 ** 62  # torch spells "to the end" as sys.maxsize


@register(aten.view.default, aten._unsafe_view.default, aten.reshape.default,
          aten._reshape_alias.default, aten.view_copy.default, aten._reshape_copy.default,
          aten.squeeze, aten.unsqueeze.default, aten.squeeze_copy, aten.unsqueeze_copy.default,
          aten.flatten.using_ints, aten.unflatten.int)
def _reshape(ctx, x, *args, **kwargs):
    shape = ctx.out_shape
    if x.type.rank == len(shape) and all(dims_equal(a, b) for a, b in zip(x.type.shape, shape)):
        return x
    return ctx.op("reshape", x, shape=shape)


@register(aten.alias.default, aten.detach.default, aten.lift_fresh.default)
def _identity(ctx, x, *args):
    return x


@register(aten.permute.default, aten.permute_copy.default)
def _permute(ctx, x, dims):
    dims = tuple(normalize_dim(d, x.type.rank) for d in dims)
    if dims == tuple(range(x.type.rank)):
        return x
    return ctx.op("permute", x, dims=dims)


@register(aten.transpose.int, aten.transpose_copy.int)
def _transpose(ctx, x, d0, d1):
    dims = list(range(x.type.rank))
    if dims:
        d0, d1 = normalize_dim(d0, x.type.rank), normalize_dim(d1, x.type.rank)
        dims[d0], dims[d1] = dims[d1], dims[d0]
    return _permute(ctx, x, dims)


@register(aten.t.default, aten.numpy_T.default)
def _t(ctx, x):
    return _permute(ctx, x, list(reversed(range(x.type.rank))))


@register(aten.expand.default, aten.expand_copy.default)
def _expand(ctx, x, size, implicit=False):
    shape = ctx.out_shape
    if len(shape) == x.type.rank and all(dims_equal(a, b) for a, b in zip(x.type.shape, shape)):
        return x
    return ctx.op("expand", x, shape=shape)


@register(prims.broadcast_in_dim.default)
def _broadcast_in_dim(ctx, x, shape, broadcast_dimensions):
    # Put x's dims where broadcast_dimensions says (size-1 elsewhere), then expand.
    out = ctx.out_shape
    mid = [sympy.Integer(1)] * len(out)
    for src, dst in enumerate(broadcast_dimensions):
        mid[dst] = x.type.shape[src]
    y = ctx.op("reshape", x, shape=tuple(mid)) if x.type.rank != len(out) else x
    return _expand(ctx, y, out)


# ----------------------------------------------------------------------------- slicing

def clamp_index(i, size, *, default):
    """Python slice-index normalization over possibly symbolic sizes."""
    if i is None:
        return default
    if isinstance(i, int):
        if i >= _BIG:
            return size
        if i < 0:
            i = size + i
            return sympy.Max(0, i) if not isinstance(i, sympy.Integer) else sympy.Integer(max(0, int(i)))
        i = sympy.Integer(i)
    i = sympy.sympify(i)
    if (size - i).is_nonnegative:
        return i
    if (size - i).is_negative:
        return size
    # Undecidable (symbolic size vs a constant index): torch guarded on one side; the caller
    # checks the resulting shape against torch's, so a wrong guess raises rather than miscomputes.
    return i


def _unclamped(i, size, default):
    """Python's index arithmetic without the clamping: what torch's guards usually make exact."""
    if i is None:
        return default
    if isinstance(i, int) and i >= _BIG:
        return size
    if isinstance(i, int) and i < 0:
        return size + i
    return sympy.sympify(i)


def slice_value(ctx, x, dim, start, end, step=1, expected=None):
    """x[start:end:step] along dim. With symbolic sizes, the clamped bounds are Max/Min
    expressions; torch has usually guarded them away (its result length is simpler). So when the
    plain bounds give torch's `expected` length, use those, else the clamped ones."""
    rank = x.type.rank
    dim = normalize_dim(dim, rank)
    size = x.type.shape[dim]
    s0, e0 = _unclamped(start, size, sympy.Integer(0)), _unclamped(end, size, size)
    length = sympy.floor((e0 - s0 + step - 1) / step)
    if expected is not None and x.type.free_symbols and dims_equal(length, expected):
        start, end = s0, e0
    else:
        start = clamp_index(start, size, default=sympy.Integer(0))
        end = clamp_index(end, size, default=size)
        if (end - start).is_negative:
            end = start
    if step == 1 and start == 0 and dims_equal(end, size):
        return x
    return ctx.op("slice", x, dim=dim, start=as_attr(start), end=as_attr(end), step=int(step))


@register(aten.slice.Tensor, aten.slice_copy.Tensor)
def _slice(ctx, x, dim=0, start=None, end=None, step=1):
    return slice_value(ctx, x, dim, start, end, step, ctx.out_shape[normalize_dim(dim, x.type.rank)])


@register(aten.narrow.default)
def _narrow(ctx, x, dim, start, length):
    return slice_value(ctx, x, dim, start, start + length)


@register(aten.split_with_sizes.default, aten.split_with_sizes_copy.default)
def _split_with_sizes(ctx, x, sizes, dim=0):
    dim = normalize_dim(dim, x.type.rank)
    out, start = [], sympy.Integer(0)
    for n in sizes:
        out.append(slice_value(ctx, x, dim, start, start + n))
        start = start + n
    return out


@register(aten.select.int, aten.select_copy.int)
def _select(ctx, x, dim, index):
    dim = normalize_dim(dim, x.type.rank)
    if isinstance(index, int) and index < 0:
        index = x.type.shape[dim] + index
    y = ctx.op("slice", x, dim=dim, start=as_attr(index), end=as_attr(index + 1), step=1)
    return ctx.op("reshape", y, shape=ctx.out_shape)


@register(aten.cat.default)
def _cat(ctx, tensors, dim=0):
    dt = ctx.out_dtype
    # Legacy behaviour: 1-d empty tensors are skipped whatever the other ranks.
    vals = [ctx.cast(t, dt) for t in tensors if not (t.type.rank == 1 and t.type.shape[0] == 0)]
    if not vals:
        raise Unsupported("cat of only empty tensors")
    if len(vals) == 1:
        return ctx.op("copy", vals[0])
    return ctx.op("concat", *vals, dim=normalize_dim(dim, vals[0].type.rank))


@register(aten.constant_pad_nd.default)
def _constant_pad(ctx, x, pad, value=0):
    rank = x.type.rank
    pads = [[0, 0] for _ in range(rank)]
    for i in range(len(pad) // 2):
        d = rank - 1 - i
        pads[d] = [pad[2 * i], pad[2 * i + 1]]
    # Negative padding crops: slice first, then pad what is left.
    for d, (lo, hi) in enumerate(pads):
        if not all(isinstance(p, (int, sympy.Integer)) for p in (lo, hi)):
            raise Unsupported("symbolic padding")
        if lo < 0 or hi < 0:
            size = x.type.shape[d]
            x = slice_value(ctx, x, d, max(0, -lo), size - max(0, -hi))
            pads[d] = [max(0, lo), max(0, hi)]
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return ctx.op("copy", x)
    value = _fill(value, x.type.dtype)
    return ctx.op("pad", x, pads=tuple((int(lo), int(hi)) for lo, hi in pads), value=value)


def _fill(value, dtype):
    return _python_value(value, dtype)


@register(aten.as_strided.default, aten.as_strided_copy.default)
def _as_strided(ctx, x, size, stride, storage_offset=None):
    """AOT emits as_strided for outputs that are views of inputs (split/chunk results). An IR value
    is row-major, so when torch also saw the operand as contiguous from offset 0, as_strided is a
    function of the flattened value: slices when the strides are the operand's own, else a gather."""
    src = ctx.node.args[0].meta["val"]
    if not (src.is_contiguous() and src.storage_offset() == 0):
        raise Unsupported("as_strided of a non-contiguous operand")
    offset = storage_offset or 0
    if not all(isinstance(v, int) for v in [*size, *stride, offset]) or x.type.free_symbols:
        raise Unsupported("as_strided with symbolic sizes")
    shape = [int(d) for d in x.type.shape]
    own = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        own[i] = own[i + 1] * shape[i + 1]
    # A size-1 dim's stride addresses nothing: eager strides such as ConvNeXt's pooled
    # [64,768,1,1] at (768, 1, 768, 768) (channels-last) are this value's own, not a gather.
    stride = [own[i] if i < len(own) and n == 1 else st for i, (n, st) in enumerate(zip(size, stride))]
    if len(size) == len(shape) and list(stride) == own[:len(size)]:
        starts, rem = [], offset
        for st in own:
            starts.append(rem // st)
            rem %= st
        if all(s + n <= d for s, n, d in zip(starts, size, shape)):
            v = x
            for d, (s, n) in enumerate(zip(starts, size)):
                v = slice_value(ctx, v, d, s, s + n)
            return v if v is not x else ctx.op("copy", x)
    numel = 1
    for d in shape:
        numel *= d
    if offset + sum((n - 1) * st for n, st in zip(size, stride)) >= numel:
        raise Unsupported("as_strided reads past the operand's elements")
    flat = ctx.op("reshape", x, shape=(numel,))
    idx = ctx.full(offset, "i64")
    for d, st in enumerate(stride):
        io = ctx.op("iota", result_types=[TensorType("i64", tuple(size), ctx.graph.device)], dim=d)
        idx = ctx.op("add", idx, ctx.op("mul", io, ctx.full(st, "i64")))
    if idx.type.rank != len(size):
        idx = ctx.op("expand", idx, shape=tuple(size))
    return ctx.op("index", flat, idx, dim=0)


@register(aten.unfold.default)
def _unfold(ctx, x, dim, size, step):
    """Sliding windows: out[..., w, ..., k] = x[..., w * step + k, ...], the window axis last."""
    if x.type.rank == 0:
        raise Unsupported("unfold of a 0-d tensor")
    d = normalize_dim(dim, x.type.rank)
    n = x.type.shape[d]
    if not n.is_Integer:
        raise Unsupported("unfold of a symbolic dim")
    windows = (int(n) - size) // step + 1
    grid = TensorType("i64", (windows, size), ctx.graph.device)
    pos = ctx.op("add", ctx.op("mul", ctx.op("iota", result_types=[grid], dim=0), ctx.full(step, "i64")),
                 ctx.op("iota", result_types=[grid], dim=1))
    y = ctx.op("index", x, pos, dim=d)  # [..., windows, size, ...rest]
    rank = y.type.rank
    return _permute(ctx, y, [i for i in range(rank) if i != d + 1] + [d + 1])


# ----------------------------------------------------------------------------- scatters into slices

def _in_range_mask(ctx, shape, dim, start, end, step):
    """b1[shape] true where start <= index(dim) < end and (index - start) % step == 0."""
    idx = ctx.op("iota", result_types=[TensorType("i64", shape, ctx.graph.device)], dim=dim)
    mask = ctx.op("logical_and", ctx.op("ge", idx, ctx.full(start, "i64")),
                  ctx.op("lt", idx, ctx.full(end, "i64")))
    if step != 1:
        off = ctx.op("remainder", ctx.op("sub", idx, ctx.full(start, "i64")), ctx.full(step, "i64"))
        mask = ctx.op("logical_and", mask, ctx.op("eq", off, ctx.full(0, "i64")))
    return mask


@register(aten.slice_scatter.default)
def _slice_scatter(ctx, dst, src, dim=0, start=None, end=None, step=1):
    """dst with dst[..., start:end:step, ...] = src: pad src to dst's size, select by a mask."""
    dim = normalize_dim(dim, dst.type.rank)
    size = dst.type.shape[dim]
    start = clamp_index(start, size, default=sympy.Integer(0))
    end = clamp_index(end, size, default=size)
    dt = ctx.out_dtype
    src, dst = ctx.cast(src, dt), ctx.cast(dst, dt)
    if step != 1:
        raise Unsupported("slice_scatter with a step")
    hi = size - end
    if not (start.is_nonnegative and hi.is_nonnegative):
        raise Unsupported("slice_scatter bounds are not provably in range")
    pads = tuple((as_attr(start), as_attr(hi)) if d == dim else (0, 0) for d in range(dst.type.rank))
    base = dst.producer
    if base is not None and base.name == "full" and not isinstance(base.attrs["value"], sympy.Expr):
        # The backward of slicing scatters into zeros: that is just a pad, no mask needed.
        return ctx.op("pad", src, pads=pads, value=_fill(base.attrs["value"], dt))
    padded = ctx.op("pad", src, pads=pads, value=_fill(0, dt))
    mask = _in_range_mask(ctx, dst.type.shape, dim, start, end, 1)
    return ctx.op("where", mask, padded, dst)


@register(aten.select_scatter.default)
def _select_scatter(ctx, dst, src, dim, index):
    dim = normalize_dim(dim, dst.type.rank)
    if isinstance(index, int) and index < 0:
        index = dst.type.shape[dim] + index
    shape = list(src.type.shape)
    shape.insert(dim, 1)
    src = ctx.op("reshape", src, shape=tuple(shape))
    return _slice_scatter(ctx, dst, src, dim, index, index + 1, 1)


@register(aten.scatter.value, aten.scatter.src)
def _scatter_one(ctx, dst, dim, index, src):
    """scatter with one index per row along `dim` (index.shape[dim] == 1, the one-hot pattern of
    nll_loss's backward): no duplicate targets, so it is a select against iota."""
    dim = normalize_dim(dim, dst.type.rank)
    ishape, dshape = index.type.shape, dst.type.shape
    if index.type.rank != dst.type.rank or ishape[dim] != 1 or any(
            not dims_equal(a, b) for i, (a, b) in enumerate(zip(ishape, dshape)) if i != dim):
        raise Unsupported("scatter with several or partial indices per row")
    dt = ctx.out_dtype
    if isinstance(src, Value):
        if src.type.rank != dst.type.rank:
            raise Unsupported("scatter src of another rank")
        src = slice_value(ctx, src, dim, 0, 1)
        if not all(dims_equal(a, b) for a, b in zip(src.type.shape, ishape)):
            raise Unsupported("scatter src shape differs from index shape")
    val = ctx.value(src, dt)
    hit = ctx.op("eq", ctx.op("iota", result_types=[TensorType("i64", dshape, ctx.graph.device)], dim=dim),
                 ctx.cast(index, "i64"))
    return ctx.op("where", hit, val, ctx.cast(dst, dt))
