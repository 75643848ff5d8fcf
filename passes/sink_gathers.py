"""sink_gathers: gather before a pointwise op instead of after it, so the op runs on the gathered
elements only and its full-size result need not exist.

A cross-entropy loss picks one log-probability per row: `gather(x - max - log(sum), target)`.
Written that way, the whole log_softmax, [tokens, vocabulary] in f32 (823 MB for GPT-2 at 8x512),
is written to memory to be read at one element per row. Gathering first,

    gather(f(a, r), dim, idx)  ->  f(gather(a, dim, idx), r)

leaves the row kernel only its max and sum to compute: it reads the logits once and writes two
numbers per row, and f runs on [tokens, 1].

Each operand of f either has f's full shape (it is gathered the same way) or has size 1 along
`dim` (a row value such as the max: it broadcasts over the index as it did over the row). The
index must span the input in every other dim (torch.gather allows it to be smaller; then a row
value would need slicing, so that case stays). f is pointwise with at least one operand (an iota
or constant is not gathered). Repeated, so a chain of pointwise ops sinks the gather to its
sources: the logits' upcast and the subtractions all move, and the gather reads the bf16 input.
f's result may have other readers (the exp for the sum reads `x - max`): gathering adds a few
elements of work, and the full value is then only kept if another kernel needs it.
Stats: `sunk`.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from ..ir.types import TensorType, dims_equal, shapes_equal
from .context import PassContext
from .fuse_domains import is_pointwise
from .hoist_views import is_one, padded
from .registry import PassResult, graph_pass


def _sinkable(gather: Op) -> Op | None:
    """The pointwise producer the gather can move above, or None."""
    f = gather.inputs[0].producer
    if f is None or not is_pointwise(f) or not f.inputs or f.name in ("iota", "copy") or len(f.results) != 1:
        return None
    dim, shape, idx_shape = gather.attrs["dim"], f.result.type.shape, gather.inputs[1].type.shape
    if not all(dims_equal(a, b) for d, (a, b) in enumerate(zip(shape, idx_shape)) if d != dim):
        return None
    for v in f.inputs:
        s = padded(v.type.shape, len(shape))
        if not (shapes_equal(v.type.shape, shape) or is_one(s[dim])):
            return None
    return f


@graph_pass("sink_gathers", options={},
            description="gather the operands of a pointwise op instead of its result")
def sink_gathers(g: Graph, ctx: PassContext) -> PassResult:
    sunk = 0
    while True:
        subst: dict[Value, Value] = {}
        new_ops: list[Op] = []
        for op in g.ops:
            op.inputs = [subst.get(v, v) for v in op.inputs]
            f = _sinkable(op) if op.name == "gather" else None
            if f is None:
                new_ops.append(op)
                continue
            idx = op.inputs[1]
            operands = []
            for v in f.inputs:
                if shapes_equal(v.type.shape, f.result.type.shape):
                    inner = Op("gather", [v, idx], dict(op.attrs),
                               [TensorType(v.type.dtype, idx.type.shape, v.type.device)])
                    new_ops.append(inner)
                    v = inner.result
                operands.append(v)
            t = f.result.type
            moved = Op(f.name, operands, dict(f.attrs), [TensorType(t.dtype, idx.type.shape, t.device)])
            new_ops.append(moved)
            subst[op.result] = moved.result
            sunk += 1
        if not subst:
            break
        g.outputs = [subst.get(v, v) for v in g.outputs]
        # f itself stays for its other readers; dce drops it where the gather was the only one.
        g.ops = _without_dead_pointwise(new_ops, g.outputs)
    return PassResult(changed=sunk > 0, stats={"sunk": sunk})


def _without_dead_pointwise(ops: list[Op], outputs: list[Value]) -> list[Op]:
    live = set(outputs)
    kept = []
    for op in reversed(ops):
        if any(r in live for r in op.results) or not is_pointwise(op):
            kept.append(op)
            live.update(op.inputs)
    return kept[::-1]
