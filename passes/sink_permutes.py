"""sink_permutes: run a pointwise op in the layout of its permuted operands.

`f(permute(a, P), b)` reads `a` across its memory order and writes a result laid out in the
permuted order; the next convolution then gets an NCHW tensor made from NHWC data. ConvNeXt is
built this way: each block permutes its NHWC activations back to NCHW and adds the shortcut, and on
an H100 the depthwise convolution that reads the result ran ATen's generic NCHW kernel (3.6 ms per
call) where eager, whose add keeps the channels-last strides of its first operand, runs cuDNN's
NHWC kernel (1.3 ms). The rewrite computes in `a`'s order and permutes the result (a view):

    f(permute(a, P), b)  ->  permute(f(a, permute(b, P^-1)), P)

so reads of `a` and the write are in memory order, and the result has `a`'s layout, which readers
down the line (a convolution, the next block's add, whose operands are then both permutes by P and
sink again) inherit. An operand that is a permute by another order is read through one composed permute.

Taken when at least one full-size operand is a permute by P and no more full-size operands are
something else (those are read through the inverse permute instead: the majority decides the
order; operands of lower rank get their leading 1s first), and every reader of the result
accepts a permuted layout: pointwise ops, permutes, externs, or the graph's outputs. Not when a
reshape, slice or expand reads it (a reshape of a permuted layout is a copy: hoist_views moves
permutes the other way for exactly that), nor reductions (their axes are in the result's order).
Stats: `sunk`.
"""
from __future__ import annotations

from collections import Counter

from ..ir import Graph, Op, Value
from ..ir.types import TensorType, shapes_equal
from .context import PassContext
from .fuse_domains import is_pointwise
from .hoist_views import is_one, padded, shape_attr, unit_reshape_map
from .registry import PassResult, graph_pass

_LAYOUT_AGNOSTIC_READERS = ("permute", "extern")


def _inverse(dims: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(dims)
    for i, d in enumerate(dims):
        inv[d] = i
    return tuple(inv)


def permute_op(v: Value, dims) -> Op:
    """`permute[dims] v` with its result type (not yet placed in a graph)."""
    t = v.type
    return Op("permute", [v], {"dims": tuple(dims)},
              [TensorType(t.dtype, tuple(t.shape[d] for d in dims), t.device)])


def _reshape(v: Value, shape: tuple, new_ops: list[Op]) -> Op:
    op = Op("reshape", [v], {"shape": shape}, [TensorType(v.type.dtype, shape, v.type.device)])
    new_ops.append(op)
    return op


def readers_accept(v: Value, users: dict, returned: set) -> bool:
    for u in users.get(v, []):
        if not (is_pointwise(u) or u.name in _LAYOUT_AGNOSTIC_READERS):
            return False
    return bool(users.get(v)) or v in returned


def _dominant_permute(op: Op) -> tuple[int, ...] | None:
    """The permutation P to sink through `op`, or None."""
    if not is_pointwise(op) or op.name in ("iota", "copy") or len(op.results) != 1:
        return None  # a copy exists to lay its result out (conv_layout's input copy): keep it
    shape = op.result.type.shape
    rank = len(shape)
    if rank < 2:
        return None
    perms: Counter = Counter()
    others = 0
    for v in op.inputs:
        if v.type.rank > rank:
            return None
        if v.type.rank < rank or not shapes_equal(v.type.shape, shape):
            continue  # scalars and same-rank broadcasts follow whichever order is chosen
        p = v.producer
        if p is not None and p.name == "permute":
            perms[tuple(p.attrs["dims"])] += 1
        else:
            others += 1
    if not perms:
        return None
    dims, count = perms.most_common(1)[0]
    return dims if count >= others + sum(perms.values()) - count else None


@graph_pass("sink_permutes", options={},
            description="compute pointwise ops in the memory order of their permuted operands")
def sink_permutes(g: Graph, ctx: PassContext) -> PassResult:
    users = g.users()
    returned = set(g.outputs)
    subst: dict[Value, Value] = {}
    new_ops: list[Op] = []
    sunk = 0
    for op in g.ops:
        op.inputs = [subst.get(v, v) for v in op.inputs]
        dims = _dominant_permute(op)
        if dims is None or not readers_accept(op.result, users, returned):
            new_ops.append(op)
            continue
        inv = _inverse(dims)
        operands = []
        for v in op.inputs:
            p = v.producer
            if v.type.rank == 0:
                operands.append(v)
                continue
            if v.type.rank < len(dims):
                # A smaller operand broadcasting from the right ([C,1,1] into [N,C,H,W]): padded
                # with leading 1s and permuted it is [1,1,1,C], i.e. [C]. When its non-1 dims keep
                # their order that is one size-1 reshape (which hoist_views can move up the
                # operand's own chain); otherwise pad it (a view) and permute like the others.
                full = padded(v.type.shape, len(dims))
                moved = [full[d] for d in inv]
                while moved and is_one(moved[0]):
                    moved.pop(0)
                if unit_reshape_map(v.type.shape, moved) is not None:
                    shape = shape_attr(moved)
                    operands.append(v if shape == shape_attr(v.type.shape) else _reshape(v, shape, new_ops).result)
                    continue
                pad = _reshape(v, shape_attr(full), new_ops)
                v, p = pad.result, pad
            if p is not None and p.name == "permute" and tuple(p.attrs["dims"]) == dims:
                operands.append(p.inputs[0])
            else:
                src, by = v, inv
                if p is not None and p.name == "permute":  # permute(permute(c, Q), inv) = one permute of c
                    src, by = p.inputs[0], tuple(p.attrs["dims"][j] for j in inv)
                if by == tuple(range(len(by))):
                    operands.append(src)
                    continue
                view = permute_op(src, by)
                new_ops.append(view)
                operands.append(view.result)
        t = op.result.type
        inner = Op(op.name, operands, dict(op.attrs), [TensorType(t.dtype, tuple(t.shape[d] for d in inv), t.device)])
        outer = permute_op(inner.result, dims)
        new_ops += [inner, outer]
        subst[op.result] = outer.result
        # Readers of the old result now read `outer`, itself a permute by `dims`: pointwise
        # readers later in the walk see it and may sink the same permutation.
        users[outer.result] = users.pop(op.result, [])
        sunk += 1
    if not sunk:
        return PassResult(changed=False, stats={"sunk": 0})
    # Permutes whose only readers were rewritten are dead now; drop them here so the wrapper
    # does not build unused views on every call.
    read = {v for op in new_ops for v in op.inputs} | {subst.get(v, v) for v in g.outputs}
    new_ops = [op for op in new_ops if op.name != "permute" or op.result in read]
    g.ops = new_ops
    g.outputs = [subst.get(v, v) for v in g.outputs]
    return PassResult(changed=True, stats={"sunk": sunk})
