"""hoist_views: move views (size-1 reshapes, permutes, expands) above the pointwise ops they read,
so that a pointwise chain and the op reading the view meet in one kernel, or a copy goes away.

A view is never a member of a region, so a chain that ends in one is a kernel of its own:

- eval BatchNorm computes its per-channel scale on [C], `rsqrt(var + eps) * weight`, and
  unsqueezes it to [C,1,1] to broadcast over [N,C,H,W]. Moved above the chain, the reshapes land
  on the graph inputs (free views) and the chain, now on [C,1,1], broadcasts into the
  normalization's kernel (role bcast, fuse_domains.py): one kernel per BatchNorm, not two;
- attention math casts K, then transposes it for the scores: moved above the cast, the transpose
  lets the cast join the scaling kernel that reads it;
- a cast followed by the heads-to-hidden permute and a reshape (which cannot view the permuted
  layout, so the wrapper copies) becomes one cast that reads permuted and writes the reshaped
  layout; a grouped-query K (rotary embedding, size-1 reshape, expand, reshape) likewise computes
  the rotary on the expanded shape and writes the repeated K directly.

    view(f(a, b))  ->  f(view_a(a), view_b(b))

Conditions, for every step:
- The view is a reshape that only inserts or removes size-1 dims (the other dims the same and in
  the same order, compared with sympy), a permute or an expand: views whatever the strides, so a
  moved view never becomes a copy.
- f is pointwise (unary, binary, where, cast); its result has no other reader, is not returned,
  and no extern writes it or its operands.
- It pays: the view's result has one reader and is not returned, and that reader is a pointwise
  op (the moved chain fuses there), a reshape that cannot view the permuted or expanded layout
  (the wrapper would copy; the rebuilt chain writes that layout instead), or another view that
  pays. A chain that would end on its own (before a matmul, say) stays where it is: moving it
  away from a producer it fuses with would cost a kernel.
- Each operand broadcasts into f's result, so it gets the matching view (padded to the result's
  rank where needed): the same size-1 reshape, the same permute; for an expand, operands of f's
  full shape are expanded and smaller ones broadcast as before. A `full` becomes a `full` of the
  new shape (a constant fuse copies into regions, not a view of one), an operand that already
  broadcasts as needed (a 0-d constant) stays, and a view of a view is composed into one.

Where a view lands on a reduction that drops its dims and puts exactly those back, the reduction
takes keepdim=True (`x - x.mean(-1).unsqueeze(-1)` is then one row kernel). A view of an `iota`
whose readers can all fuse it becomes one iota of the view's shape per reader (an iota costs
nothing to build again; built in the view's shape, it broadcasts into the reader's kernel).

A concat is moved through like a pointwise op (each piece takes the view, the joined dim is
renumbered). And rotary embedding's rotate_half, cat(-x2, x1), becomes cat(x2, x1) * sign (see
`unnegate`): the concat then reads only views, and fuse puts it in the rotary's kernel.

Sweeps to a fixpoint; each sweep moves every view one op up. Stats: `hoisted` (ops a view moved
above), `keepdim`, `iota` (views of an iota rebuilt as iotas), `unnegated` (concats).
"""
from __future__ import annotations

import sympy
import torch

from ..ir import Graph, Op, TensorType, Value
from ..ir.dtypes import is_float
from ..ir.ops import TypeError_
from ..ir.types import as_dim, broadcasts_to, dims_equal, shapes_equal
from .context import PassContext
from .effects import mutated_values
from .registry import PassResult, graph_pass

ONE = sympy.Integer(1)
VIEWS = ("reshape", "permute", "expand")


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


def broadcasts_as(shape, new) -> bool:
    """Does a value of `shape` broadcast like one of shape `new` (equal up to leading 1s)?"""
    lead = len(new) - len(shape)
    return lead >= 0 and all(is_one(d) for d in new[:lead]) and shapes_equal(shape, new[lead:])


def shape_attr(shape) -> tuple:
    return tuple(int(d) if d.is_Integer else d for d in shape)


def padded(shape, rank: int) -> list:
    return [ONE] * (rank - len(shape)) + list(shape)


def _concrete(shape) -> list[int]:
    # Symbols get distinct odd sizes (>= 2, like Dynamo's): whether torch can view a layout
    # depends on which dims are 1, not on the values.
    shape = [as_dim(d) for d in shape]
    syms = sorted(set().union(*(d.free_symbols for d in shape)), key=str)
    return [int(d.subs({s: 65 + 2 * i for i, s in enumerate(syms)})) for d in shape]


def needs_copy(view: Op, reshape: Op) -> bool:
    """Would the wrapper copy to reshape `view` of a contiguous value? (torch.Tensor.view on a
    meta tensor of that layout says; the answer only steers the pass, never the values.)"""
    t = torch.empty(_concrete(view.inputs[0].type.shape), device="meta")
    t = t.permute(*view.attrs["dims"]) if view.name == "permute" else t.expand(_concrete(view.attrs["shape"]))
    try:
        t.view(_concrete(reshape.result.type.shape))
    except (RuntimeError, ValueError):  # torch raises either, depending on the layout
        return True
    return False


class _Sweep:
    """One pass over the graph in order: each op whose only reader is a view that may move above
    it is rebuilt, at its own place, on viewed operands; the view's result then names it."""

    def __init__(self, g: Graph):
        self.g = g
        self.users = g.users()
        self.outputs = set(g.outputs)
        self.written = mutated_values(g)
        self.subst: dict[Value, Value] = {}
        self.dropped: set[Op] = set()
        self.out: list[Op] = []
        self.stats = {"hoisted": 0, "keepdim": 0, "iota": 0, "unnegated": 0}
        self.constants: set[Op] = set()  # `full`s replaced by one of another shape somewhere
        self.orphans: set[Op] = set()

    def run(self) -> bool:
        for op in self.g.ops:
            if op in self.dropped:
                continue
            op.inputs = [self.subst.get(v, v) for v in op.inputs]
            if op.name == "concat" and self.unnegate(op):
                continue
            if op.name in VIEWS and self.view_of_iota(op):
                continue
            view = self.movable_view(op)
            if view is not None and self.rebuild(op, view):
                continue
            self.out.append(op)
        # Ops whose only reader a rewrite replaced (a neg under a concat): a kernel each if kept.
        used = {v for o in self.out for v in o.inputs} | set(self.g.outputs)
        self.out = [o for o in self.out if o not in self.orphans or any(r in used for r in o.results)]
        self.g.ops = self.out
        self.g.outputs = [self.subst.get(v, v) for v in self.g.outputs]
        return bool(self.dropped)

    # ------------------------------------------------------------------ when
    def only_reader(self, v: Value) -> Op | None:
        readers = {id(u): u for u in self.users.get(v, [])}  # mul(y, y) is one reader
        if len(readers) != 1 or v in self.outputs or v in self.written:
            return None
        return next(iter(readers.values()))

    def is_movable(self, view: Op) -> bool:
        """A view of a kind that may move (a size-1 reshape, a permute, an expand)."""
        if view.name == "reshape":
            return unit_reshape_map(view.inputs[0].type.shape, view.result.type.shape) is not None
        return view.name in VIEWS

    def pays(self, view: Op) -> bool:
        r = self.only_reader(view.result)
        if r is None:
            return False
        if r.opdef.is_pointwise:
            return True
        if r.name == "reshape" and view.name != "reshape" and needs_copy(view, r):
            return True
        return r.name in VIEWS and self.is_movable(r) and self.pays(r)

    def movable_view(self, op: Op) -> Op | None:
        """The view that may move above `op`, or None."""
        movable = op.opdef.is_pointwise or op.opdef.kind == "reduction" or op.name == "concat"
        if len(op.results) != 1 or not movable:
            return None
        if any(x in self.written for x in op.inputs):
            return None
        view = self.only_reader(op.result)
        if view is None or view.name not in VIEWS or view.result in self.written:
            return None
        if op.opdef.kind == "reduction":  # only a reshape back to keepdim form (rebuild checks)
            ok = view.name == "reshape"
        else:
            ok = self.is_movable(view)
        return view if ok and self.pays(view) else None

    # ------------------------------------------------------------------ how
    def rebuild(self, op: Op, view: Op) -> bool:
        if op.opdef.kind == "reduction":
            attrs, kind = self.keepdim(op, view.result.type.shape), "keepdim"
            args = list(op.inputs)
        else:
            if op.name == "concat":
                plans, attrs = self.concat_plans(op, view)
            else:
                plans, attrs = [self.plan(x, op.result.type.shape, view) for x in op.inputs], op.attrs
            if attrs is None or any(p is None for p in plans) or (view.name == "expand" and not any(plans)):
                return False  # an expand needs some operand of f's full shape to expand
            types = [x.type.with_shape(p[-1][1]) if p else x.type for x, p in zip(op.inputs, plans)]
            try:
                (t,) = op.opdef.type_rule(types, attrs)  # the op table's rule has the last word
            except TypeError_:
                return False
            if not shapes_equal(t.shape, view.result.type.shape):
                return False
            kind = "hoisted"
            args = [self.materialize(x, p) if p else x for x, p in zip(op.inputs, plans)]
        if attrs is None:
            return False
        new = Op(op.name, args, attrs, [view.result.type])
        self.out.append(new)
        self.subst[view.result] = new.result
        self.dropped.add(view)
        self.stats[kind] += 1
        return True

    def plan(self, x: Value, shape, view: Op) -> list[tuple] | None:
        """The views that take operand `x` (broadcasting into `shape`, f's result) to where it
        broadcasts into the view's result: [(name, new shape, permute dims or None), ...], []
        to use `x` as it is, None when there is no such thing."""
        rank, new = len(shape), view.result.type.shape
        pad = padded(x.type.shape, rank)
        if view.name == "expand":
            if shapes_equal(pad, shape):
                return [("expand", tuple(new), None)]
            return [] if broadcasts_to(x.type.shape, new) else None
        if view.name == "reshape":
            where = unit_reshape_map(shape, new)
            target = tuple(pad[i] if i is not None else ONE for i in where)
        else:
            dims = tuple(view.attrs["dims"])
            target = tuple(pad[d] for d in dims)
        if broadcasts_as(x.type.shape, target):
            return []
        if unit_reshape_map(x.type.shape, target) is not None:
            return [("reshape", target, None)]  # the non-1 dims keep their order: one reshape
        if len(x.type.shape) == rank:
            return [("permute", target, dims)]
        return [("reshape", tuple(pad), None), ("permute", target, dims)]

    def concat_plans(self, op: Op, view: Op) -> tuple[list, dict | None]:
        """A view of a concat is the concat of the same view of each operand (sizes along the
        joined dim their own), joined along the dim that dim becomes. Not when that dim has size
        1 (a size-1 reshape could drop it; an expand could widen it)."""
        shape, d, new = op.result.type.shape, op.attrs["dim"], view.result.type.shape
        if is_one(shape[d]):
            return [], None
        if view.name == "permute":
            dims = tuple(view.attrs["dims"])
            nd = dims.index(d)
            plans = [[("permute", tuple(x.type.shape[i] for i in dims), dims)] for x in op.inputs]
        elif view.name == "reshape":
            where = unit_reshape_map(shape, new)
            nd = where.index(d)
            plans = [[("reshape", tuple(x.type.shape[i] if i is not None else ONE for i in where), None)]
                     for x in op.inputs]
        else:
            nd = d + len(new) - len(shape)
            plans = [[("expand", tuple(x.type.shape[d] if j == nd else n for j, n in enumerate(new)), None)]
                     for x in op.inputs]
        return plans, {"dim": nd}

    def unnegate(self, op: Op) -> bool:
        """concat(..., neg(a), ...) -> concat(..., a, ...) * sign, sign -1 over the negated pieces
        and 1 elsewhere, a pointwise function of the position (iota): rotary embedding's
        rotate_half, cat(-x2, x1), then reads only views of x, and fuse can put the concat in
        the kernel that reads it. Floats only (x * -1 is -x exactly, signed zeros and NaNs
        included); when the concat's reader is pointwise or a view that pays."""
        t = op.result.type
        negs = [self.only_reader(x) is op and x.producer is not None and x.producer.name == "neg"
                for x in op.inputs]
        reader = self.only_reader(op.result)
        if not any(negs) or not is_float(t.dtype) or reader is None or \
                not (reader.opdef.is_pointwise or (reader.name in VIEWS and self.is_movable(reader)
                                                   and self.pays(reader))):
            return False

        def emit(name, inputs, attrs, ty):
            o = Op(name, inputs, attrs, [ty])
            self.out.append(o)
            return o.result

        d = op.attrs["dim"]
        joined = emit("concat", [x.producer.inputs[0] if n else x for x, n in zip(op.inputs, negs)],
                      op.attrs, t)
        pos = emit("iota", [], {"dim": d}, TensorType("i64", t.shape, t.device))
        mask, start = None, sympy.Integer(0)
        flag = TensorType("b1", t.shape, t.device)
        for x, n in zip(op.inputs, negs):
            end = start + x.type.shape[d]
            if n:
                bound = []
                for cmp, at in (("ge", start), ("lt", end)):
                    if (cmp == "ge" and at == 0) or (cmp == "lt" and dims_equal(at, t.shape[d])):
                        continue
                    lim = emit("full", [], {"value": int(at) if at.is_Integer else at},
                               TensorType("i64", (), t.device))
                    bound.append(emit(cmp, [pos, lim], {}, flag))
                piece = bound[0] if len(bound) == 1 else emit("logical_and", bound, {}, flag) if bound else \
                    emit("full", [], {"value": True}, flag)
                mask = piece if mask is None else emit("logical_or", [mask, piece], {}, flag)
                self.orphans.add(x.producer)
            start = end
        one = TensorType(t.dtype, (), t.device)
        sign = emit("where", [mask, emit("full", [], {"value": -1.0}, one), emit("full", [], {"value": 1.0}, one)],
                    {}, t)
        self.subst[op.result] = emit("mul", [joined, sign], {}, t)
        self.stats["unnegated"] += 1
        self.dropped.add(op)
        return True

    def materialize(self, x: Value, plan: list[tuple]) -> Value:
        """Apply `plan` to `x`: a `full` of the final shape for a `full`; views otherwise, each
        composed with the view `x` already is when it is one of the same kind."""
        p = x.producer
        if p is not None and p.name == "full":
            new = Op("full", [], p.attrs, [x.type.with_shape(plan[-1][1])])
            self.constants.add(p)
            self.out.append(new)
            return new.result
        for name, shape, dims in plan:
            base = x.producer if x.producer is not None and x.producer.name == name else None
            src = base.inputs[0] if base is not None and name != "expand" else x
            if name == "permute":
                if base is not None:  # permute(permute(y, p), q) = permute(y, p[q])
                    dims = tuple(base.attrs["dims"][i] for i in dims)
                attrs = {"dims": dims}
                same = list(dims) == list(range(len(dims)))
            else:
                attrs = {"shape": shape_attr(shape)}
                same = shapes_equal(src.type.shape, shape)
            if same:
                x = src
                continue
            op = Op(name, [src], attrs, [x.type.with_shape(shape)])
            self.out.append(op)
            x = op.result
        return x

    def keepdim(self, op: Op, dst) -> dict | None:
        """A reduction that drops its dims, read through a reshape that puts exactly those back
        as 1s: the attributes of the same reduction with keepdim=True."""
        if op.attrs["keepdim"]:
            return None
        axes = set(op.attrs["axes"])
        kept = [ONE if i in axes else d for i, d in enumerate(op.inputs[0].type.shape)]
        return {**op.attrs, "keepdim": True} if shapes_equal(kept, dst) else None

    def feeds_fusion(self, view: Op) -> bool:
        """Is every reader of `view` a pointwise op, or a movable view of which that holds?"""
        v = view.result
        readers = {id(u): u for u in self.users.get(v, [])}.values()
        if not readers or v in self.outputs or v in self.written:
            return False
        return all(r.opdef.is_pointwise or (r.name in VIEWS and self.is_movable(r) and self.feeds_fusion(r))
                   for r in readers)

    def view_of_iota(self, view: Op) -> bool:
        """A view of an iota is an iota of the view's shape, one for each op that reads the
        view: an iota costs nothing to build again, and one shared by two kernels would have to
        be stored by one and loaded by the other. Only when every reader can fuse it (built in
        the view's shape, it broadcasts into their kernel), else one shared kernel would become
        one kernel per reader."""
        p = view.inputs[0].producer
        if p is None or p.name != "iota" or not self.is_movable(view) or not self.feeds_fusion(view):
            return False
        attrs = self.iota_dim(p, view)
        if attrs is None:
            return False
        for reader in {id(u): u for u in self.users[view.result]}.values():
            new = Op("iota", [], attrs, [view.result.type])
            self.out.append(new)
            # The readers come later in the graph and still name the view's result.
            reader.inputs = [new.result if x is view.result else x for x in reader.inputs]
            self.users.setdefault(new.result, []).append(reader)
        self.orphans.add(p)
        self.dropped.add(view)
        self.stats["iota"] += 1
        return True

    def iota_dim(self, op: Op, view: Op) -> dict | None:
        """An iota seen through `view`: the iota of the view's shape along the dim its own dim
        becomes, or None where its dim has size 1 (all zeros: not an iota of the new shape)."""
        shape, d = op.result.type.shape, op.attrs["dim"]
        if is_one(shape[d]):
            return None
        if view.name == "reshape":
            where = unit_reshape_map(shape, view.result.type.shape)
            return {"dim": where.index(d)}
        if view.name == "permute":
            return {"dim": list(view.attrs["dims"]).index(d)}
        return {"dim": d + view.result.type.rank - len(shape)}


@graph_pass("hoist_views", options={},
            description="move size-1 reshapes, permutes and expands above pointwise ops, so chains fuse where they are read and copies go")
def hoist_views(g: Graph, ctx: PassContext) -> PassResult:
    stats = {"hoisted": 0, "keepdim": 0, "iota": 0, "unnegated": 0}
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
    return PassResult(changed=sum(stats.values()) > 0, stats=stats)
