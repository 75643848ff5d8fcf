"""cse: merge ops that compute the same thing; later duplicates use the first one's results.

Two ops are the same when they have the same name, the same operands (after earlier merges),
equal attributes and equal result types. Attributes compare by the printer's spelling
(`format_attr`): it distinguishes what must stay apart (1 vs 1.0, 0.0 vs -0.0) and treats NaN as
equal to NaN, which `==` does not. Never merged: externs that write to an argument or draw random
numbers, any op reading or producing a value some extern writes to (a read before the
write and one after it differ), and a duplicate whose result and the first's are both graph
outputs.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from ..ir.printer import format_attr
from ..ir.types import format_dim
from .context import PassContext
from .effects import is_mutating, is_nondeterministic, mutated_values
from .registry import PassResult, graph_pass


def _key(op: Op, operands: list[Value]) -> tuple:
    attrs = tuple((k, format_attr(v)) for k, v in sorted(op.attrs.items()))
    types = tuple((r.type.dtype, tuple(format_dim(d) for d in r.type.shape), r.type.device)
                  for r in op.results)
    return (op.name, tuple(id(v) for v in operands), attrs, types)


@graph_pass("cse", options={}, description="merge ops with equal name, operands, attributes and result types")
def cse(g: Graph, ctx: PassContext) -> PassResult:
    written = mutated_values(g)
    outputs = set(g.outputs)
    subst: dict[Value, Value] = {}
    seen: dict[tuple, Op] = {}
    kept: list[Op] = []
    for op in g.ops:
        op.inputs = [subst.get(v, v) for v in op.inputs]
        # A region is opaque here: its body is not a comparable attribute, so it is never merged.
        pure = not (is_mutating(op) or is_nondeterministic(op) or op.opdef.kind == "region")
        touches_written = any(v in written for v in op.inputs) or any(r in written for r in op.results)
        if pure and not touches_written:
            key = _key(op, op.inputs)
            first = seen.get(key)
            # Two outputs must stay two tensors (eager returned two; the caller may write one).
            both_outputs = first is not None and any(r in outputs for r in op.results) and \
                any(r in outputs for r in first.results)
            if first is not None and not both_outputs:
                subst.update(zip(op.results, first.results))
                if any(r in outputs for r in op.results):  # first is returned now: no third output joins
                    outputs.update(first.results)
                continue
            seen[key] = op
        kept.append(op)
    merged = len(g.ops) - len(kept)
    if merged:
        g.ops = kept
        g.outputs = [subst.get(v, v) for v in g.outputs]
    return PassResult(changed=merged > 0, stats={"merged": merged})
