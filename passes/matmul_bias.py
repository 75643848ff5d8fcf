"""matmul_bias: fold a bias add that stayed a kernel of its own into the library matmul call.

After fuse, `add(matmul(a, b), bias)` over a 2-d matmul is left alone when nothing else the add
could fuse with follows it (the query/key/value projections of an attention layer, whose results
are reshaped into heads: a view is no kernel to fuse into). That add is then one more launch and
one more round trip of the whole product through memory. cuBLAS adds a bias in its epilogue for
free, so the pair becomes one `extern[aten.addmm.default]` call, as eager runs `nn.Linear`.

Conditions: the matmul is 2-d ([m,k] @ [k,n]), its result has no other reader and is not returned,
the bias is [n] or [1,n] of the same dtype and device, and the add is a top-level op (one fuse
did not put in a region). The bias is then added in f32 before the product is rounded, where the
unfolded graph rounds the product first: one rounding fewer, as in eager.

This is a stopgap until ember's own matmul template takes epilogues (then fuse will place the
add there); stats: `folded`.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from ..ir.externs import ExternArg
from ..ir.types import dims_equal
from .context import PassContext
from .registry import PassResult, graph_pass

REASON = "matmul + bias: cuBLAS adds the bias in its epilogue (until ember's matmul template)"


def _bias_of(add: Op, mm: Value) -> Value | None:
    other = add.inputs[1] if add.inputs[0] is mm else add.inputs[0]
    n = mm.type.shape[1]
    t = other.type
    ok_shape = (t.rank == 1 and dims_equal(t.shape[0], n)) or \
        (t.rank == 2 and dims_equal(t.shape[0], 1) and dims_equal(t.shape[1], n))
    return other if ok_shape and t.dtype == mm.type.dtype and t.device == mm.type.device else None


@graph_pass("matmul_bias", options={},
            description="turn a 2-d matmul whose only reader is a bias add into one aten.addmm call")
def matmul_bias(g: Graph, ctx: PassContext) -> PassResult:
    users = g.users()
    returned = set(g.outputs)
    replace: dict[Op, Op] = {}
    dropped: set[Op] = set()
    for op in g.ops:
        if op.name != "add" or op.result.type.rank != 2:
            continue
        for mm in op.inputs:
            p = mm.producer
            if p is None or p.name != "matmul" or p in dropped or mm in returned \
                    or len(users.get(mm, [])) != 1 or mm.type.rank != 2 or op.inputs[0] is op.inputs[1]:
                continue
            if p.inputs[0].type.rank != 2 or p.inputs[1].type.rank != 2 or op.result.type != mm.type:
                continue
            bias = _bias_of(op, mm)
            if bias is None:
                continue
            a, b = p.inputs
            replace[op] = Op("extern", [bias, a, b],
                             {"target": "aten.addmm.default", "args": [ExternArg(0), ExternArg(1), ExternArg(2)],
                              "kwargs": {}, "outputs": (0,), "reason": REASON}, [op.result.type])
            dropped.add(p)
            break
    if not replace:
        return PassResult(changed=False, stats={"folded": 0})
    subst: dict[Value, Value] = {}
    new_ops = []
    for op in g.ops:
        if op in dropped:
            continue
        new = replace.get(op)
        if new is not None:
            subst[op.result] = new.result
            op = new
        op.inputs = [subst.get(v, v) for v in op.inputs]
        new_ops.append(op)
    g.ops = new_ops
    g.outputs = [subst.get(v, v) for v in g.outputs]
    return PassResult(changed=True, stats={"folded": len(replace)})
