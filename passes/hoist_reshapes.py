"""hoist_reshapes: move reshapes that only insert or remove size-1 dims above the pointwise ops
they read, so a chain computed on a small shape broadcasts into the op it feeds and fuses there.

Eval BatchNorm computes its per-channel scale on [C], `rsqrt(var + eps) * weight`, and unsqueezes
it to [C,1,1] to broadcast over [N,C,H,W]. A view is never in a region, so fuse gives the [C]
chain a kernel of its own. Moved above the chain, the reshapes land on the graph inputs (free
views) and the chain, now on [C,1,1], broadcasts into the normalization's kernel (role bcast,
fuse_domains.py): one kernel per BatchNorm instead of two.

    reshape(f(a, b), S')  ->  f(reshape(a, A'), b')

- The reshape only inserts or removes dims of size 1: the other dims are the same, in the same
  order (compared with sympy). That is a view whatever the strides, so a moved reshape never
  becomes a copy.
- f is pointwise (unary, binary, where, cast) and its result has no other reader, is not
  returned, and no extern writes it or its operands.
- Every operand broadcasts into f's result (any pointwise operand does), so it gets the reshape of
  the same dims, A' (a `full` becomes a `full` of that shape, so it stays a constant fuse copies
  into regions), unless it already broadcasts into S' as it is (a 0-d constant).
- The reshape's result has one reader, a pointwise op, and is not returned. The chain then has
  somewhere to fuse once moved: where it would end on its own (say before a matmul), moving it
  away from a producer it could fuse with would cost a kernel.

A reshape that lands on a reduction and puts back exactly the dims it dropped becomes the same
reduction with keepdim=True, which fuse can then group with the chain (a row kernel).

Sweeps to a fixpoint: each sweep moves every reshape one op up. Stats: `hoisted` (ops a reshape
moved above), `keepdim` (reductions that took a reshape).
"""
from __future__ import annotations

import sympy

from ..ir import Graph, Op, TensorType, Value
from ..ir.ops import TypeError_
from ..ir.types import dims_equal, shapes_equal
from .context import PassContext
from .effects import mutated_values
from .registry import PassResult, graph_pass

ONE = sympy.Integer(1)


def is_one(d) -> bool:
    """Provably 1. A symbol never is (Dynamo specializes sizes 0 and 1: ir/types.symbol), so
    only compound expressions need sympy."""
    return d == 1 or (not d.is_number and not d.is_Symbol and dims_equal(d, 1))


def unit_reshape_map(src, dst) -> list[int | None] | None:
    """For a reshape src -> dst that only inserts or removes size-1 dims: for each dim of dst,
    the dim of src it is (None where dst has an inserted 1). None for any other reshape."""
    ps = [i for i, d in enumerate(src) if not is_one(d)]
    pd = [j for j, d in enumerate(dst) if not is_one(d)]
    if len(ps) != len(pd) or not all(dims_equal(src[i], dst[j]) for i, j in zip(ps, pd)):
        return None
    where: list[int | None] = [None] * len(dst)
    for i, j in zip(ps, pd):
        where[j] = i
    return where


def moved_shape(shape, rank: int, where: list[int | None]) -> tuple:
    """The shape an operand of `shape`, broadcast into a result of rank `rank`, takes when the
    result is reshaped by `where` (unit_reshape_map): its dims padded to `rank` with leading 1s,
    then picked as the result's dims are. Its non-1 dims sit where the result's do, so this is
    again a reshape of size-1 dims only."""
    padded = [ONE] * (rank - len(shape)) + list(shape)
    return tuple(padded[i] if i is not None else ONE for i in where)


def broadcasts_as(shape, new) -> bool:
    """Does a value of `shape` broadcast like one of shape `new` (equal up to leading 1s)?"""
    lead = len(new) - len(shape)
    return lead >= 0 and all(is_one(d) for d in new[:lead]) and shapes_equal(shape, new[lead:])


def shape_attr(shape) -> tuple:
    return tuple(int(d) if d.is_Integer else d for d in shape)


class _Sweep:
    """One pass over the graph in order: each pointwise op whose only reader is a movable reshape
    is rebuilt, at its own place, on reshaped operands; the reshape's result then names it."""

    def __init__(self, g: Graph):
        self.g = g
        self.users = g.users()
        self.outputs = set(g.outputs)
        self.written = mutated_values(g)
        self.subst: dict[Value, Value] = {}
        self.dropped: set[Op] = set()
        self.out: list[Op] = []
        self.stats = {"hoisted": 0, "keepdim": 0}
        self.constants: set[Op] = set()  # `full`s replaced by one of another shape somewhere

    def run(self) -> bool:
        for op in self.g.ops:
            if op in self.dropped:
                continue
            op.inputs = [self.subst.get(v, v) for v in op.inputs]
            reshape = self.movable_reshape(op)
            if reshape is not None and self.rebuild(op, reshape):
                continue
            self.out.append(op)
        changed = bool(self.dropped)
        self.g.ops = self.out
        self.g.outputs = [self.subst.get(v, v) for v in self.g.outputs]
        return changed

    def movable_reshape(self, op: Op) -> Op | None:
        """The reshape that may move above `op`, or None."""
        if len(op.results) != 1 or not (op.opdef.is_pointwise or op.opdef.kind == "reduction"):
            return None
        v = op.result
        readers = self.users.get(v, [])
        if len(readers) != 1 or v in self.outputs or v in self.written or \
                any(x in self.written for x in op.inputs):
            return None
        r = readers[0]
        if r.name != "reshape" or r.result in self.outputs or r.result in self.written:
            return None
        after = {id(u): u for u in self.users.get(r.result, [])}  # mul(y, y) is one reader
        if len(after) != 1 or not next(iter(after.values())).opdef.is_pointwise:
            return None
        return r

    def rebuild(self, op: Op, reshape: Op) -> bool:
        src, dst = op.result.type.shape, reshape.result.type.shape
        if op.opdef.kind == "reduction":
            attrs, plan = self.keepdim(op, dst), None
            kind = "keepdim"
        else:
            where = unit_reshape_map(src, dst)
            attrs = op.attrs if where is not None else None
            plan = [moved_shape(x.type.shape, len(src), where) for x in op.inputs] if where else None
            kind = "hoisted"
        if attrs is None:
            return False
        types = [self.planned_type(x, s) for x, s in zip(op.inputs, plan)] if plan is not None else \
            [x.type for x in op.inputs]
        try:
            (t,) = op.opdef.type_rule(types, attrs)  # the op table's rule has the last word
        except TypeError_:
            return False
        if t.dtype != reshape.result.type.dtype or not shapes_equal(t.shape, dst):
            return False
        args = [self.moved(x, s) for x, s in zip(op.inputs, plan)] if plan is not None else list(op.inputs)
        new = Op(op.name, args, attrs, [reshape.result.type])
        self.out.append(new)
        self.subst[reshape.result] = new.result
        self.dropped.add(reshape)
        self.stats[kind] += 1
        return True

    def keepdim(self, op: Op, dst) -> dict | None:
        """A reduction that drops its dims, read through a reshape that puts exactly those back
        as 1s: the attributes of the same reduction with keepdim=True."""
        if op.attrs["keepdim"]:
            return None
        axes = set(op.attrs["axes"])
        kept = [ONE if i in axes else d for i, d in enumerate(op.inputs[0].type.shape)]
        return {**op.attrs, "keepdim": True} if shapes_equal(kept, dst) else None

    @staticmethod
    def planned_type(x: Value, shape) -> TensorType:
        return x.type if broadcasts_as(x.type.shape, shape) else x.type.with_shape(shape)

    def moved(self, x: Value, shape) -> Value:
        """`x` as an operand of the rebuilt op: itself when it already broadcasts as `shape`
        does (a 0-d constant), a `full` of that shape for a `full`, else a reshape (of what `x`
        reshapes, when `x` is a reshape itself: one view, not a chain)."""
        if broadcasts_as(x.type.shape, shape):
            return x
        t = x.type.with_shape(shape)
        p = x.producer
        if p is not None and p.name == "full":
            new = Op("full", [], p.attrs, [t])
            self.constants.add(p)
        else:
            if p is not None and p.name == "reshape":
                x = p.inputs[0]
                if shapes_equal(x.type.shape, shape):
                    return x
            new = Op("reshape", [x], {"shape": shape_attr(shape)}, [t])
        self.out.append(new)
        return new.result


@graph_pass("hoist_reshapes", options={},
            description="move reshapes that only add or drop size-1 dims above pointwise ops, so small chains fuse where they broadcast")
def hoist_reshapes(g: Graph, ctx: PassContext) -> PassResult:
    stats = {"hoisted": 0, "keepdim": 0}
    constants: set[Op] = set()
    while True:
        sweep = _Sweep(g)
        if not sweep.run():
            break
        constants |= sweep.constants
        for k, n in sweep.stats.items():
            stats[k] += n
    # A constant left unread would be a kernel of its own (fuse copies constants into regions).
    used = {v for op in g.ops for v in op.inputs} | set(g.outputs)
    g.ops = [op for op in g.ops if op not in constants or op.result in used]
    return PassResult(changed=stats["hoisted"] + stats["keepdim"] > 0, stats=stats)
