"""move_reshapes: move a reshape across a one-operand pointwise op, toward the side where that op
has no kernel to join, so the op fuses with the kernel on the other side.

A reshape that merges or splits dims is a view, never a region member, so an op on either side
of it is cut off from the kernel across it. GPT-2's loss is built that way, and on its 411 MB of
bf16 logits each cut costs a whole extra pass over them:

    forward:   cast(logits) -> reshape [B,T,V] -> [B*T,V] -> log_softmax ...
    backward:  ... log_softmax backward -> reshape [B*T,V] -> [B,T,V] -> cast to bf16

Up (a graph input, or a view, library call or other non-kernel result, then a pointwise op u,
then a reshape): the reshape moves above u, so u reads the reshaped input and joins the kernel
that reads the reshape (the log_softmax reads bf16 and upcasts in registers):

    reshape(u(x, scalars))  ->  u(reshape(x), scalars)

u has one operand of its full shape; its others hold one element (constants, a 0-d loss scale),
which broadcast the same in either shape and become 0-d. u's result has no other reader and is
not returned.

Down (a kernel's result y, a reshape of it, then a pointwise op u reading the reshape): u moves
above the reshape and joins the kernel that produced y as an epilogue (the loss backward writes
bf16 directly; a Linear's bias add, GELU and residual add on [B,T,N] join the [B*T,N] matmul):

    u(reshape(y), z, scalars)  ->  reshape(u(y, reshape'(z), scalars))

Every full-size operand of u is read in y's shape: a reshape from that shape is undone, any other
(a residual input) is viewed in it. One-element operands become 0-d. The reshape may have other
readers (GELU reads x twice); each pointwise reader moves on its own, and the next op of a chain
then finds its operands reshaped the same way and moves too.

Up needs u to have one full-size operand, whose value is no kernel's result; down needs a reshape
of a kernel's result. Each rewrite leaves the other's pattern with the wrong kind of input, so
the two never undo each other. Moving up can turn a free view into a copy only where the input
itself is not viewable as the new shape; then the copy reads the narrower dtype.
Stats: `up`, `down`.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from ..ir.types import TensorType, shapes_equal
from .context import PassContext
from .fuse_domains import is_pointwise
from .hoist_views import is_one, shape_attr
from .registry import PassResult, graph_pass


def _makes_kernel(op: Op | None) -> bool:
    """Whether op's result comes out of a kernel that a pointwise op could join (a matmul's
    through fuse_matmul's epilogue)."""
    return op is not None and (is_pointwise(op) or op.opdef.kind == "reduction" or op.name == "matmul")


def _main_operand(op: Op) -> Value | None:
    """The one operand of `op`'s full shape when every other operand holds one element."""
    if not is_pointwise(op) or op.name in ("iota", "copy") or len(op.results) != 1:
        return None
    shape = op.result.type.shape
    full = [v for v in op.inputs if shapes_equal(v.type.shape, shape)]
    if len(full) != 1 or not all(v is full[0] or all(is_one(d) for d in v.type.shape) for v in op.inputs):
        return None
    return full[0]


def _with_shape(t: TensorType, shape) -> TensorType:
    return TensorType(t.dtype, tuple(shape), t.device)


class _Mover:
    def __init__(self, g: Graph):
        self.g = g
        self.users = g.users()
        self.returned = set(g.outputs)
        self.stats = {"up": 0, "down": 0}

    def only_reader(self, v: Value) -> Op | None:
        readers = self.users.get(v, [])
        return readers[0] if len(readers) == 1 and v not in self.returned else None

    def scalar_operands(self, u: Op, full, new_ops: list[Op]) -> dict[Value, Value]:
        """Each one-element operand of u (those not in `full`) as a 0-d value (it broadcasts
        into any shape)."""
        out = {}
        for v in u.inputs:
            if v not in full and v.type.rank > 0 and v not in out:
                r = Op("reshape", [v], {"shape": ()}, [_with_shape(v.type, ())])
                new_ops.append(r)
                out[v] = r.result
        return out

    def rebuilt(self, u: Op, main: Value, new_main: Value, shape, new_ops: list[Op]) -> Op:
        scalars = self.scalar_operands(u, {main}, new_ops)
        inputs = [new_main if v is main else scalars.get(v, v) for v in u.inputs]
        op = Op(u.name, inputs, dict(u.attrs), [_with_shape(u.result.type, shape)])
        new_ops.append(op)
        return op

    def run(self) -> bool:
        subst: dict[Value, Value] = {}
        new_ops: list[Op] = []
        for op in self.g.ops:
            op.inputs = [subst.get(v, v) for v in op.inputs]
            if op.name == "reshape" and self.up(op, subst, new_ops):
                continue
            if self.down(op, subst, new_ops):
                continue
            new_ops.append(op)
        if not subst:
            return False
        read = {v for op in new_ops for v in op.inputs} | {subst.get(v, v) for v in self.g.outputs}
        # The moved-past ops and views are dead now (their only reader was rewritten).
        self.g.ops = [op for op in new_ops if any(r in read for r in op.results)
                      or not (is_pointwise(op) or op.name == "reshape")]
        self.g.outputs = [subst.get(v, v) for v in self.g.outputs]
        return True

    def up(self, reshape: Op, subst: dict, new_ops: list[Op]) -> bool:
        """reshape(u(x)) -> u(reshape(x)) when x is no kernel's result and a kernel reads the reshape."""
        u = reshape.inputs[0].producer
        main = _main_operand(u) if u is not None else None
        if main is None or self.only_reader(u.result) is not reshape or _makes_kernel(main.producer):
            return False
        if not any(_makes_kernel(r) for r in self.users.get(reshape.result, [])):
            return False
        shape = reshape.attrs["shape"]
        view = Op("reshape", [main], {"shape": shape}, [_with_shape(main.type, shape)])
        new_ops.append(view)
        moved = self.rebuilt(u, main, view.result, shape, new_ops)
        subst[reshape.result] = moved.result
        self.users[moved.result] = self.users.pop(reshape.result, [])
        self.stats["up"] += 1
        return True

    def down(self, u: Op, subst: dict, new_ops: list[Op]) -> bool:
        """u(reshape(y), ...) -> reshape(u(y, ...)) when y is a kernel's result (see module doc)."""
        if not is_pointwise(u) or u.name in ("iota", "copy") or len(u.results) != 1:
            return False
        shape = u.result.type.shape
        full = [v for v in u.inputs if shapes_equal(v.type.shape, shape)]
        if not all(v in full or all(is_one(d) for d in v.type.shape) for v in u.inputs):
            return False
        reshaped = [v for v in full if v.producer is not None and v.producer.name == "reshape"
                    and _makes_kernel(v.producer.inputs[0].producer)]
        if not reshaped:
            return False
        source = reshaped[0].producer.inputs[0].type.shape
        new_main: dict[Value, Value] = {}
        for v in full:
            p = v.producer
            if p is not None and p.name == "reshape" and shapes_equal(p.inputs[0].type.shape, source):
                new_main[v] = p.inputs[0]  # the reshape undone
        if any(v in self.returned for v in new_main):
            return False  # a returned reshape stays needed: leave such graphs as they are
        for v in full:
            if v not in new_main:  # another full operand is read in the source shape: a view of it
                view = Op("reshape", [v], {"shape": shape_attr(source)}, [_with_shape(v.type, source)])
                new_ops.append(view)
                new_main[v] = view.result
        scalars = self.scalar_operands(u, new_main, new_ops)
        moved = Op(u.name, [new_main.get(v) or scalars.get(v, v) for v in u.inputs], dict(u.attrs),
                   [_with_shape(u.result.type, source)])
        view = Op("reshape", [moved.result], {"shape": shape_attr(shape)}, [_with_shape(moved.result.type, shape)])
        new_ops += [moved, view]
        subst[u.result] = view.result
        self.users[view.result] = self.users.pop(u.result, [])
        self.stats["down"] += 1
        return True


@graph_pass("move_reshapes", options={},
            description="move reshapes across one-operand pointwise ops so those ops fuse")
def move_reshapes(g: Graph, ctx: PassContext) -> PassResult:
    mover = _Mover(g)
    changed = mover.run()
    return PassResult(changed=changed, stats=dict(mover.stats))
