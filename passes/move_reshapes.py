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

Down (a kernel's result, then a reshape, then a pointwise op u): the reshape moves below u, so u
joins the kernel that produced its input as an epilogue (the backward writes bf16 directly):

    u(reshape(y), scalars)  ->  reshape(u(y, scalars))

u has one operand of its full shape; its others hold one element (constants, a 0-d loss scale),
which broadcast the same in either shape and become 0-d. The moved-past value must have no
other reader and not be returned. The two directions never undo each other: up needs a
non-kernel input below u, down a kernel result, and each rewrite leaves the other's pattern
with the wrong kind of input. Moving up can turn a free view into a copy only where the input
itself is not viewable as the new shape; then the copy reads the narrower dtype.
Stats: `up`, `down`.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from ..ir.types import TensorType, shapes_equal
from .context import PassContext
from .fuse_domains import is_pointwise
from .hoist_views import is_one
from .registry import PassResult, graph_pass


def _makes_kernel(op: Op | None) -> bool:
    return op is not None and (is_pointwise(op) or op.opdef.kind == "reduction")


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

    def scalar_operands(self, u: Op, main: Value, new_ops: list[Op]) -> dict[Value, Value]:
        """Each one-element operand of u as a 0-d value (it broadcasts into any shape)."""
        out = {}
        for v in u.inputs:
            if v is not main and v.type.rank > 0 and v not in out:
                r = Op("reshape", [v], {"shape": ()}, [_with_shape(v.type, ())])
                new_ops.append(r)
                out[v] = r.result
        return out

    def rebuilt(self, u: Op, main: Value, new_main: Value, shape, new_ops: list[Op]) -> Op:
        scalars = self.scalar_operands(u, main, new_ops)
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
        """u(reshape(y)) -> reshape(u(y)) when y is a kernel's result."""
        main = _main_operand(u)
        reshape = main.producer if main is not None else None
        if reshape is None or reshape.name != "reshape" or self.only_reader(main) is not u:
            return False
        y = reshape.inputs[0]
        if not _makes_kernel(y.producer):
            return False
        moved = self.rebuilt(u, main, y, y.type.shape, new_ops)
        view = Op("reshape", [moved.result], {"shape": reshape.attrs["shape"]},
                  [_with_shape(moved.result.type, reshape.attrs["shape"])])
        new_ops.append(view)
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
