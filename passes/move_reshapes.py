"""move_reshapes: move a reshape across pointwise ops, toward the side where they have a kernel
to join (one-operand ops toward the side without one; any op toward a row reduction).

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

Into a reduction (a row reduction reads the reshape, directly or through pointwise ops of its
shape): the reshape moves above u whatever u's operands, so u runs in the reduction's shape and
joins its row kernel:

    r = add(y2d, x2d); reshape(r) [B*T,N] -> [B,T,N]; layer_norm
        ->  r' = add(reshape(y2d), reshape(x2d)); layer_norm(r'); r = reshape(r') for other readers

A transformer block's residual add feeds its LayerNorm or RMSNorm. TorchInductor runs that as
addmm (cuBLAS) plus ONE kernel for the residual add and the norm. As the matmul's epilogue
instead, the add (with the norm's f32 upcast) cost an extra epilogue kernel per norm when cuBLAS
was picked, and the epilogue wrote an f32 copy of the sum just for the norm to read. In GPT-2,
BERT, Llama and ViT the add already runs on [B,T,N], after the product's reshape: there down is
simply not taken (below). Where it runs on [B*T,N] and the sum is reshaped for the norm, this
move brings it over. Every full-size operand must be free to view in the new shape: a graph
input, a kernel's result (contiguous) or a reshape of one (composed into one reshape). Each
smaller operand must broadcast the same way in both shapes: its dims lie within the trailing
dims the reshape keeps (a bias [N] when only leading dims merge or split); one-element operands
become 0-d. u's other readers (the next residual add reads the sum) read it back through a
reshape, a view of the reduction kernel's result. The move stops at a matmul's bias add: that
add is the library's addmm, and the matmul keeps it. The pass repeats its sweep until nothing
moves, so a chain (residual add, cast) moves one op per sweep.

Up needs u to have one full-size operand, whose value is no kernel's result; down needs a reshape
of a kernel's result, and is not taken when u feeds a row reduction in its own shape (u joins
the reduction's kernel where it is; into a reduction needs the reduction across the reshape). Each rewrite leaves the others' patterns with the
wrong kind of input, so they never undo each other. Moving up can turn a free view into a copy
only where the input itself is not viewable as the new shape; then the copy reads the narrower
dtype. Stats: `up` (both upward moves), `down`.
"""
from __future__ import annotations

from collections import deque

from ..ir import Graph, Op, Value
from ..ir.types import TensorType, dims_equal, shapes_equal
from .context import PassContext
from .fuse_domains import is_pointwise, is_row_reduction
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


def _kept_suffix(src, dst) -> int:
    """How many trailing dims a reshape src -> dst leaves as they are."""
    n = 0
    while n < min(len(src), len(dst)) and dims_equal(src[-1 - n], dst[-1 - n]):
        n += 1
    return n


def _viewed_source(v: Value) -> Value | None:
    """What to view in another shape instead of `v` so the view is free: `v` itself when it is a
    graph input or a kernel's (contiguous) result, the input of a reshape of such a value (two
    reshapes compose into one), else None (a permute's or an extern's layout may need a copy)."""
    p = v.producer
    if p is not None and p.name == "reshape":
        v, p = p.inputs[0], p.inputs[0].producer
    return v if p is None or _makes_kernel(p) else None


def _is_bias_add(u: Op) -> bool:
    """add(matmul product, smaller operand): the bias a library addmm adds; it stays with the matmul."""
    if u.name != "add":
        return False
    shape = u.result.type.shape
    return any(v.producer is not None and v.producer.name == "matmul" for v in u.inputs) and \
        any(not shapes_equal(v.type.shape, shape) for v in u.inputs)


class _Mover:
    def __init__(self, g: Graph):
        self.g = g
        self.users = g.users()
        self.returned = set(g.outputs)
        self.stats = {"up": 0, "down": 0}

    def feeds_reduction(self, v: Value, limit: int = 32) -> bool:
        """Does a row reduction over v's shape read v, directly or through pointwise ops of that
        shape? (Then a pointwise op computing v has a row kernel to join where it is.)
        Breadth first, nearest readers first: a residual stream is a chain of adds through every
        layer, and a depth-first walk along it spent the limit before it came back to the norm
        reading v itself (an 8-layer Llama's first two residual adds moved away from their norms,
        one extra kernel each)."""
        shape, todo, seen = v.type.shape, deque([v]), set()
        while todo and len(seen) < limit:
            x = todo.popleft()
            for r in self.users.get(x, []):
                if r in seen:
                    continue
                seen.add(r)
                if is_row_reduction(r) and shapes_equal(r.inputs[0].type.shape, shape):
                    return True
                if is_pointwise(r) and len(r.results) == 1 and shapes_equal(r.result.type.shape, shape):
                    todo.append(r.result)
        return False

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
            if op.results and all(r in subst for r in op.results):
                continue  # a reshape an earlier move replaced
            op.inputs = [subst.get(v, v) for v in op.inputs]
            if op.name == "reshape" and self.up(op, subst, new_ops):
                continue
            if self.into_reduction(op, subst, new_ops):
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
        if self.feeds_reduction(u.result):
            return False  # u joins the reduction's kernel here (see into_reduction)
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
        if any(v not in new_main and v.producer is not None and is_pointwise(v.producer) for v in full):
            # Another operand is computed by a pointwise op in u's shape: u fuses with it where it
            # is. Moving u would also let that op's next reader move back (a chain of residual
            # adds in two shapes moved to and fro, one op per sweep, growing the graph each time).
            return False
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


    def into_reduction(self, u: Op, subst: dict, new_ops: list[Op]) -> bool:
        """u(a, b, ...) read by a reshape R that feeds a row reduction -> u(R'(a), R'(b), ...) in
        R's shape, which replaces R (see the module doc)."""
        if not is_pointwise(u) or u.name in ("iota", "copy") or len(u.results) != 1 or _is_bias_add(u):
            return False
        if self.feeds_reduction(u.result):
            return False  # a reduction in u's own shape reads it too: u has its kernel here
        src = u.result.type.shape
        readers = self.users.get(u.result, [])
        reshape = next((r for r in readers if r.name == "reshape" and r.result not in self.returned
                        and self.feeds_reduction(r.result)), None)
        if reshape is None:
            return False
        dst = reshape.result.type.shape
        kept = _kept_suffix(src, dst)
        views: dict[Value, Value] = {}   # u's operand -> what u' reads instead
        pending: list[Op] = []
        scalars = []
        for v in dict.fromkeys(u.inputs):
            shape = v.type.shape
            if shapes_equal(shape, src):
                source = _viewed_source(v)
                if source is None:
                    return False
                if shapes_equal(source.type.shape, dst):
                    views[v] = source
                else:
                    view = Op("reshape", [source], {"shape": shape_attr(dst)}, [_with_shape(v.type, dst)])
                    pending.append(view)
                    views[v] = view.result
            elif all(is_one(d) for d in shape):
                scalars.append(v)
            elif all(is_one(d) for d in shape[:max(0, len(shape) - kept)]):
                if len(shape) <= kept:
                    views[v] = v   # broadcasts into the kept trailing dims as before
                else:
                    trailing = shape[len(shape) - kept:]
                    view = Op("reshape", [v], {"shape": shape_attr(trailing)}, [_with_shape(v.type, trailing)])
                    pending.append(view)
                    views[v] = view.result
            else:
                return False  # it broadcasts along dims the reshape merges or splits
        new_ops += pending
        views.update(self.scalar_operands(u, set(views), new_ops))
        moved = Op(u.name, [views.get(v, v) for v in u.inputs], dict(u.attrs), [_with_shape(u.result.type, dst)])
        new_ops.append(moved)
        subst[reshape.result] = moved.result
        self.users[moved.result] = self.users.pop(reshape.result, [])
        others = [r for r in readers if r is not reshape]
        if others or u.result in self.returned:   # they read the value back in u's shape: a view
            back = Op("reshape", [moved.result], {"shape": shape_attr(src)}, [u.result.type])
            new_ops.append(back)
            subst[u.result] = back.result
            self.users[back.result] = others
        self.stats["up"] += 1
        return True


@graph_pass("move_reshapes", options={},
            description="move reshapes across pointwise ops so those ops fuse (with a matmul or a reduction)")
def move_reshapes(g: Graph, ctx: PassContext) -> PassResult:
    stats = {"up": 0, "down": 0}
    changed = False
    for _ in range(len(g.ops) + 1):   # a chain moves one op per sweep; each sweep moves something
        mover = _Mover(g)
        if not mover.run():
            break
        changed = True
        for k, n in mover.stats.items():
            stats[k] += n
    return PassResult(changed=changed, stats=stats)
