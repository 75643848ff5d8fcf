"""dce: remove ops none of whose results are used (by a kept op or as a graph output).

One backward walk: an op is kept if it has side effects (an extern that writes to an argument,
or an assert; effects.py) or one of its results is live; a kept op makes its operands live.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from .context import PassContext
from .effects import has_side_effects
from .registry import PassResult, graph_pass


def remove_dead(g: Graph, among: set[Op] | None = None) -> int:
    """Remove the ops (of `among` only, when given) none of whose results are live; returns how
    many went. Passes that replace ops call it on what they replaced, read through or emitted."""
    live: set[Value] = set(g.outputs)
    kept = []
    for op in reversed(g.ops):
        if (among is not None and op not in among) or has_side_effects(op) or any(r in live for r in op.results):
            kept.append(op)
            live.update(op.inputs)
    removed = len(g.ops) - len(kept)
    if removed:
        g.ops = kept[::-1]
    return removed


@graph_pass("dce", options={}, description="remove ops whose results are unused (keeps mutating externs)")
def dce(g: Graph, ctx: PassContext) -> PassResult:
    removed = remove_dead(g)
    return PassResult(changed=removed > 0, stats={"removed": removed})
