"""Why `fuse` left a producer->consumer pair in separate kernels: the fusion report's rejections.

fuse notes a reason at each decision it takes against a pair of candidates (domains, roles,
cycles, the size cap); every other edge that crosses a group boundary is classified afterwards
from the two ops alone (an op that is never fused, a value an extern writes, a reduction's
output). Pairs where neither op could ever be in a region (matmul -> extern) are not candidates
and are not listed, nor are `full` constants (regions copy them in).

Ops are named as the pass's input IR prints them ("%3 = exp"), so a reader can find them in the
dump file written just before fuse ran. Sentences are built only when asked for: most compiles
never read them, and naming values costs a walk of the graph.
"""
from __future__ import annotations

from typing import Callable

from ..ir import Graph, Op, Value
from ..ir.printer import value_names

# code -> what it means; docs/passes.md lists the same codes.
REASONS = {
    "shape-mismatch": "producer and consumer iterate over domains no one kernel walks",
    "role-mismatch": "a value computed once per row would be needed once per element",
    "kernel-size-cap": "the merged kernel would exceed the cap on ops or inputs",
    "would-create-cycle": "a path leaves the would-be region and comes back through another op",
    "not-fusible-op": "one of the two ops is never put in a region (matmul, extern, view, index, ...)",
    "written-by-extern": "an extern writes one of the values in place, so its ops stay unfused",
    "not-considered": "the pass has no rule that fuses along this edge",
    "epilogue-reduces": "a reduction reads a matmul's product (a matmul epilogue is pointwise)",
}

_POINTWISE = ("unary", "binary", "ternary", "cast")

Label = Callable[[int], str]


def _kind_fusible(op: Op) -> bool:
    """Could an op of this kind ever be in a region (ignoring extern writes and devices)?"""
    return op.opdef.kind in _POINTWISE or op.opdef.kind == "reduction" or op.name in ("iota", "concat")


class Rejections:
    """Reasons noted while grouping, keyed by (producer index, consumer index) in g.ops."""

    def __init__(self) -> None:
        self._noted: dict[tuple[int, int], tuple[str, Callable[[Label, dict[Value, str]], str]]] = {}

    def note(self, p: int, c: int, code: str, detail: Callable[[Label, dict[Value, str]], str]) -> None:
        assert code in REASONS, code
        self._noted.setdefault((p, c), (code, detail))

    def report(self, g: Graph, group: dict[int, int], written: set[Value]) -> list[dict[str, str]]:
        """One entry per candidate pair that ended up in different groups, in graph order. Call it
        before the graph is re-ordered: names refer to the pass's input."""
        index = {id(op): i for i, op in enumerate(g.ops)}
        names: dict[Value, str] | None = None
        out: list[dict[str, str]] = []
        seen: set[tuple[int, int]] = set()
        for ci, c in enumerate(g.ops):
            for v in c.inputs:
                p = v.producer
                if p is None or p.name == "full":
                    continue
                pi = index[id(p)]
                if (pi, ci) in seen or group[pi] == group[ci]:
                    continue
                seen.add((pi, ci))
                reason = self._noted.get((pi, ci)) or _classify(g, pi, ci, written)
                if reason is None:
                    continue
                if names is None:
                    names = value_names(g)
                    label = op_labeler(g, names)
                code, detail = reason
                out.append({"producer": label(pi), "consumer": label(ci), "reason": code,
                            "detail": detail(label, names)})
        return out


def op_labeler(g: Graph, names: dict[Value, str]) -> Label:
    """Names ops as `g` prints them: "%3 = exp", "%6 = extern[aten.sort.default]"."""
    def label(i: int) -> str:
        op = g.ops[i]
        what = f"extern[{op.attrs.get('target', '?')}]" if op.name == "extern" else op.name
        return f"{names.get(op.results[0], '%?')} = {what}" if op.results else what
    return label


def _classify(g: Graph, pi: int, ci: int, written: set[Value]):
    """(code, detail) for a pair the grouping never decided on; None if neither op is a candidate."""
    p, c = g.ops[pi], g.ops[ci]
    if not _kind_fusible(p) and not _kind_fusible(c):
        return None
    for i, op in ((pi, p), (ci, c)):
        if not _kind_fusible(op):
            kind = op.opdef.kind
            return "not-fusible-op", lambda L, n, i=i, kind=kind: (
                f"{L(i)} is neither pointwise nor a reduction (kind {kind}); fuse leaves it alone")
    for i, op in ((pi, p), (ci, c)):
        hit = next((v for v in (*op.results, *op.inputs) if v in written), None)
        if hit is not None:
            return "written-by-extern", lambda L, n, i=i, v=hit: (
                f"{n.get(v, '%?')} (used by {L(i)}) is written in place by an extern")
    for i, op in ((pi, p), (ci, c)):
        if len(op.results) != 1:
            return "not-fusible-op", lambda L, n, i=i: f"{L(i)} has {len(g.ops[i].results)} results"
        if op.result.type.device != g.device:
            return "not-fusible-op", lambda L, n, i=i, d=op.result.type.device: (
                f"{L(i)} runs on {d}, not the graph's device {g.device}")
    return "not-considered", lambda L, n: f"no fusion rule covers {L(pi)} feeding {L(ci)}"
