"""The view and layout ops of the op table (reshape, permute, expand, slice, concat, pad).

ir/ops.py is the table; this module registers these ops in it, at the point of ops.py that
imports it (so the table keeps its order). Same conventions as ops.py: a type rule, a torch
reference, attributes.
"""
from __future__ import annotations

import sympy
import torch

from .types import TensorType, dims_equal, as_dim
from .ops import Attr, OpDef, _fail, _register, _same_device


def _reshape_rule(ts, attrs):
    shape = tuple(as_dim(d) for d in attrs["shape"])
    src = TensorType(ts[0].dtype, shape, ts[0].device)
    if not dims_equal(src.numel, ts[0].numel):
        _fail(f"reshape changes the element count: {ts[0].numel} -> {src.numel}")
    return [src]


_register(OpDef("reshape", "view", 1, _reshape_rule,
                lambda xs, a, r: xs[0].reshape(a["shape"]),
                attrs={"shape": Attr("the new shape")}))


def _permute_rule(ts, attrs):
    dims = list(attrs["dims"])
    if sorted(dims) != list(range(ts[0].rank)):
        _fail(f"permute dims {tuple(dims)} are not a permutation of rank {ts[0].rank}")
    return [ts[0].with_shape([ts[0].shape[d] for d in dims])]


_register(OpDef("permute", "view", 1, _permute_rule,
                lambda xs, a, r: xs[0].permute(a["dims"]),
                attrs={"dims": Attr("output dim i is input dim dims[i]")}))


def _expand_rule(ts, attrs):
    shape = tuple(as_dim(d) for d in attrs["shape"])
    t = ts[0]
    if len(shape) < t.rank:
        _fail("expand cannot lower the rank")
    for i, d in enumerate(t.shape):
        o = shape[len(shape) - t.rank + i]
        if d != 1 and not dims_equal(d, o):
            _fail(f"cannot expand dim of size {d} to {o}")
    return [t.with_shape(shape)]


_register(OpDef("expand", "view", 1, _expand_rule,
                lambda xs, a, r: xs[0].expand(a["shape"]),
                attrs={"shape": Attr("the broadcast shape")}))


def _slice_rule(ts, attrs):
    t = ts[0]
    dim, start, end, step = attrs["dim"], as_dim(attrs["start"]), as_dim(attrs["end"]), attrs["step"]
    if not 0 <= dim < t.rank:
        _fail(f"slice dim {dim} out of range for rank {t.rank}")
    if not isinstance(step, int) or step < 1:
        _fail(f"slice step must be a positive int, got {step!r}")
    # start <= end is a precondition (the frontend normalizes bounds), so no Max(0, ...): a Max
    # would make dynamic slices such as x[:, 2:-1] disagree with torch's simpler size expression.
    if (end - start).is_number and (end - start) < 0:
        _fail(f"slice end {end} is before start {start}")
    length = sympy.simplify(sympy.floor((end - start + step - 1) / step))
    shape = list(t.shape)
    shape[dim] = length
    return [t.with_shape(shape)]


_register(OpDef("slice", "view", 1, _slice_rule,
                lambda xs, a, r: xs[0].narrow(a["dim"], 0, xs[0].shape[a["dim"]])[
                    (slice(None),) * a["dim"] + (slice(a["start"], a["end"], a["step"]),)],
                attrs={"dim": Attr("sliced dim"), "start": Attr("first index, 0 <= start <= size"),
                       "end": Attr("one past the last index, start <= end <= size"),
                       "step": Attr("positive stride")}))


def _concat_rule(ts, attrs):
    d = attrs["dim"]
    base = ts[0]
    if not 0 <= d < base.rank:
        _fail(f"concat dim {d} out of range for rank {base.rank}")
    total = sympy.Integer(0)
    for t in ts:
        if t.dtype != base.dtype or t.rank != base.rank:
            _fail("concat operands must share dtype and rank")
        for i in range(base.rank):
            if i != d and not dims_equal(t.shape[i], base.shape[i]):
                _fail(f"concat operands differ in dim {i}")
        total += t.shape[d]
    shape = list(base.shape)
    shape[d] = total
    return [TensorType(base.dtype, shape, _same_device(ts))]


_register(OpDef("concat", "view", None, _concat_rule,
                lambda xs, a, r: torch.cat(xs, dim=a["dim"]), attrs={"dim": Attr("joined dim")}))


def _pad_rule(ts, attrs):
    t = ts[0]
    pads = attrs["pads"]
    if len(pads) != t.rank:
        _fail(f"pad needs one (low, high) pair per dim, got {len(pads)} for rank {t.rank}")
    shape = [d + lo + hi for d, (lo, hi) in zip(t.shape, pads)]
    return [t.with_shape(shape)]


def _pad_ref(xs, a, r):
    flat = []
    for lo, hi in reversed(a["pads"]):
        flat += [lo, hi]
    return torch.constant_pad_nd(xs[0], flat, a["value"])


_register(OpDef("pad", "view", 1, _pad_rule, _pad_ref,
                attrs={"pads": Attr("((low, high), ...) per dim, non-negative"),
                       "value": Attr("fill value outside the input")}))
