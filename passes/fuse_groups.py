"""Deciding fuse's groups: which ops share a kernel.

Candidates are pointwise ops, `iota`, `concat` (its operands read from memory at shifted positions,
in pointwise kernels only) and reductions over at least one axis (fuse_domains). Groups start as
single ops and merge in two phases, each merge checked by `_try_merge`:

1. vertical, in graph order: an op joins the groups of its candidate producers (pointwise chains,
   a prologue into its reduction, a reduction's consumers into it: softmax, layer_norm, RMSNorm
   become one group each);
2. horizontal: groups that read the same outside value and are independent of each other merge,
   so the value is read once (the three reductions of a layer_norm and a softmax over the same x).

A merge is legal when the domains agree (fuse_domains.merge), every edge between the two groups
is one a kernel can carry inside (a row value feeds a full op by broadcasting; a full value is
never read per row, and a row value with its reduced dims dropped only feeds row ops), a smaller
value recomputed per element (role bcast) has no reader outside the group, no cycle
results (networkx reachability on the graph with groups contracted), and the group stays under the
kernel-size cap. The cost model is bytes: a vertical merge saves the reads (and, when no reader
is left outside, the write) of every value crossing between the two groups; a horizontal one saves
re-reading the shared inputs. Merges that save nothing are not taken. Sizes with symbols count each
symbol as SYMBOL_HINT elements.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import networkx as nx
import sympy

from ..ir import Graph, Op, Value
from ..ir.dtypes import itemsize
from ..ir.types import TensorType
from .fuse_domains import Domain, domain_of, is_pointwise, is_row_reduction, merge
from .fuse_reasons import Rejections
from .rewrite import VIEW_OPS

MAX_GROUP_OPS = 64      # a kernel's body beyond this many ops spills registers / compiles slowly
MAX_GROUP_INPUTS = 16   # distinct tensors a kernel reads (each is a pointer plus strides)
SYMBOL_HINT = 1024      # elements assumed per symbolic dim when estimating bytes


def is_candidate(op: Op, g: Graph, written: set[Value]) -> bool:
    fits = (is_pointwise(op) and len(op.results) == 1) or is_row_reduction(op) or op.name == "concat"
    return (fits and op.result.type.device == g.device and op.result not in written
            and not any(v in written for v in op.inputs))


def nbytes(v: Value) -> int:
    return type_nbytes(v.type)


def _view_root(v: Value) -> Value:
    """The value whose buffer `v` is a view of (itself when it is no view)."""
    while v.producer is not None and v.producer.name in VIEW_OPS:
        v = v.producer.inputs[0]
    return v


@lru_cache(maxsize=8192)
def type_nbytes(t: TensorType) -> int:
    """A value's estimated size (the cost model's unit). Remembered per type: every merge attempt
    re-costs the values crossing it, and sympy's subs is ~20 us even with nothing to substitute."""
    n = sympy.sympify(t.numel).subs({s: SYMBOL_HINT for s in t.free_symbols})
    return int(n) * itemsize(t.dtype)


@dataclass
class Groups:
    """Op index -> group id, each group's members, domain and estimated bytes saved, and the
    dependency graph with every group contracted to one node."""
    group: dict[int, int]
    members: dict[int, list[int]]
    domains: dict[int, Domain]
    cg: nx.DiGraph
    saved: dict[int, int] = field(default_factory=dict)


def merge_creates_cycle(cg: nx.DiGraph, a: int, b: int) -> bool:
    """Would contracting groups a and b close a cycle? With a direct edge a -> b, only if b is also
    reachable from a through some third group; without one, if either reaches the other at all."""
    if not cg.has_edge(a, b):
        return nx.has_path(cg, a, b) or nx.has_path(cg, b, a)
    data = cg.edges[a, b]
    cg.remove_edge(a, b)
    try:
        return nx.has_path(cg, a, b)
    finally:
        cg.add_edge(a, b, **data)


def cycle_via(cg: nx.DiGraph, a: int, b: int) -> int:
    """The first group on a path a -> ... -> b other than the direct edge (for the report)."""
    data = cg.edges[a, b]
    cg.remove_edge(a, b)
    try:
        return nx.shortest_path(cg, a, b)[1]
    finally:
        cg.add_edge(a, b, **data)


class GroupBuilder:
    def __init__(self, g: Graph, dag: nx.DiGraph, written: set[Value], rejected: Rejections):
        self.g = g
        self.written = written
        self.rejected = rejected
        self.index = {id(op): i for i, op in enumerate(g.ops)}
        self.users = g.users()
        self.returned = set(g.outputs)
        n = len(g.ops)
        self.cand = [is_candidate(op, g, written) for op in g.ops]
        self.gr = Groups({i: i for i in range(n)}, {i: [i] for i in range(n)},
                         {i: domain_of(op) for i, op in enumerate(g.ops) if self.cand[i]}, dag.copy())

    # ------------------------------------------------------------------ the two phases
    def build(self) -> Groups:
        for i, op in enumerate(self.g.ops):
            if not self.cand[i]:
                continue
            for v in op.inputs:
                p = v.producer
                if p is not None and self.cand[self.index[id(p)]]:
                    self._try_merge(self.index[id(p)], i, vertical=True)
        self._horizontal()
        return self.gr

    def _horizontal(self) -> None:
        """Merge groups that read a common outside value, most shared bytes first."""
        readers: dict[Value, set[int]] = {}
        for gid in self.gr.members:
            if gid not in self.gr.domains:  # not a candidate
                continue
            for v in self._outside_inputs(gid):  # constants are copied in, not shared reads
                readers.setdefault(v, set()).add(gid)
        pairs = sorted({(a, b) for gids in readers.values() for a in gids for b in gids if a < b},
                       key=lambda ab: (-self._shared_bytes(*ab), ab))
        for a, b in pairs:
            a, b = self.gr.group[a], self.gr.group[b]
            if a != b and self._shared_bytes(a, b) > 0:
                self._try_merge(a, b, vertical=False)
        self._sibling_copies()

    def _sibling_copies(self) -> None:
        """Merge copy-only groups that read views of one buffer (the keys and values a model
        returns, sliced from one QKV product): no byte is read twice, so the cost model sees
        nothing to save, but one kernel writes both and a launch is saved."""
        by_root: dict[Value, list[int]] = {}
        for gid, idx in self.gr.members.items():
            if gid in self.gr.domains and all(self.g.ops[i].name == "copy" for i in idx):
                roots = {_view_root(v) for v in self._outside_inputs(gid)}
                if len(roots) == 1:
                    by_root.setdefault(roots.pop(), []).append(gid)
        for gids in by_root.values():
            for b in gids[1:]:
                a = self.gr.group[gids[0]]
                if a != self.gr.group[b]:
                    self._try_merge(a, self.gr.group[b], vertical=False, launch_only=True)

    # ------------------------------------------------------------------ one merge
    def _try_merge(self, pi: int, ci: int, vertical: bool, launch_only: bool = False) -> bool:
        """Merge the groups of ops (or, horizontally, groups) pi and ci if legal and worth it
        (`launch_only`: worth a launch even when no byte is saved); note why not for a vertical
        candidate pair."""
        gr = self.gr
        a, b = (gr.group[pi], gr.group[ci]) if vertical else (pi, ci)
        if a == b:
            return False
        dom = merge(gr.domains[a], gr.domains[b])
        if dom is None:
            if vertical:
                self._note(pi, ci, "shape-mismatch", lambda L, n, da=gr.domains[a], db=gr.domains[b]: (
                    f"{L(pi)} iterates over {da}, {L(ci)} over {db}"))
            return False
        shifted = self._shifted_read(a, b, dom)
        if shifted is not None:
            if vertical:
                c, why = shifted
                self._note(pi, ci, "shape-mismatch", lambda L, n: f"{L(c)} {why}")
            return False
        bad = self._bad_edge(a, b, dom)
        if bad is not None:
            if vertical:
                p, c = bad
                self._note(pi, ci, "role-mismatch", lambda L, n: (
                    f"{L(p)} computes one value per row; {L(c)} would need it per element of {dom}"))
            return False
        leak = self._escaping_broadcast(a, b, dom)
        if leak is not None:
            if vertical:
                self._note(pi, ci, "shape-mismatch", lambda L, n: (
                    f"{L(leak)} is smaller than {dom} and would be recomputed per element, "
                    f"but its value is also needed outside"))
            return False
        if len(gr.members[a]) + len(gr.members[b]) > MAX_GROUP_OPS or \
                len(self._outside_inputs(a) | self._outside_inputs(b)) > MAX_GROUP_INPUTS:
            if vertical:
                self._note(pi, ci, "kernel-size-cap", lambda L, n: (
                    f"merging would exceed {MAX_GROUP_OPS} ops or {MAX_GROUP_INPUTS} inputs in one kernel"))
            return False
        saved = self._bytes_saved(a, b) if vertical else self._shared_bytes(a, b)
        if saved <= 0 and not launch_only:
            return False
        if merge_creates_cycle(gr.cg, a, b):
            if vertical:
                via = cycle_via(gr.cg, a, b) if gr.cg.has_edge(a, b) else None
                self._note(pi, ci, "would-create-cycle", lambda L, n: (
                    f"{L(pi)} also reaches {L(ci)} through {L(via)}, which stays outside"
                    if via is not None else f"{L(pi)} and {L(ci)} are ordered through other ops"))
            return False
        nx.contracted_nodes(gr.cg, a, b, self_loops=False, copy=False)
        for j in gr.members.pop(b):
            gr.group[j] = a
            gr.members[a].append(j)
        gr.domains[a] = dom
        del gr.domains[b]
        gr.saved[a] = gr.saved.get(a, 0) + gr.saved.pop(b, 0) + saved
        return True

    def _note(self, pi: int, ci: int, code: str, detail) -> None:
        self.rejected.note(pi, ci, code, detail)

    # ------------------------------------------------------------------ legality and cost
    def _bad_edge(self, a: int, b: int, dom: Domain) -> tuple[int, int] | None:
        """A producer -> consumer pair inside the merged group that one kernel of `dom` cannot
        carry, or None. Roles: a value is full, row, rowdrop or bcast in `dom` (fuse_domains).
        Edges already inside a or b are checked again: a merge can change roles (a [1,8,1] mask
        feeding a [1,8,32] op is per element in a pointwise domain, but in a domain reducing a
        [2,8,32] over axis 0 the consumer becomes a row op and the mask a per-element value)."""
        g = self.g
        inside = {*self.gr.members[a], *self.gr.members[b]}
        for ci in inside:
            c = g.ops[ci]
            for v in c.inputs:
                p = v.producer
                if p is None:
                    continue
                pi = self.index[id(p)]
                if pi not in inside:
                    continue
                have = dom.role(v.type.shape)
                want = "full" if c.opdef.kind == "reduction" else dom.role(c.result.type.shape)
                ok = have == want or (have in ("row", "bcast") and want == "full")
                if have is None or want is None or not ok:
                    return pi, ci
        return None

    def _shifted_read(self, a: int, b: int, dom: Domain) -> tuple[int, str] | None:
        """A concat in the merged group that a kernel of `dom` cannot hold, and why: it reads its
        operands at shifted positions, so they must come from memory (not from a member), and
        only pointwise kernels do that (codegen/pointwise.py)."""
        inside = {*self.gr.members[a], *self.gr.members[b]}
        for i in inside:
            op = self.g.ops[i]
            if op.name != "concat":
                continue
            if dom.reduces:
                return i, f"is only fused into pointwise kernels, not one reducing over {dom}"
            for v in op.inputs:
                p = v.producer
                if p is not None and self.index[id(p)] in inside:
                    return i, "reads its operands at shifted positions, so they must come from memory"
        return None

    def _escaping_broadcast(self, a: int, b: int, dom: Domain) -> int | None:
        """A member that `dom` would compute per element although its shape is smaller (role
        bcast) while its value is returned or read outside the merged group; or a concat of that
        kind, or an iota of that kind in a reducing domain (their coordinates are those of their
        own shape; a pointwise kernel aligns an iota's). None when there is none."""
        inside = {id(self.g.ops[i]) for i in (*self.gr.members[a], *self.gr.members[b])}
        for i in (*self.gr.members[a], *self.gr.members[b]):
            op = self.g.ops[i]
            if op.opdef.kind == "reduction" or dom.role(op.result.type.shape) != "bcast":
                continue
            users = self.users.get(op.result, [])
            if op.name == "concat" or (op.name == "iota" and dom.reduces) or op.result in self.returned or \
                    any(id(u) not in inside for u in users):
                return i
        return None

    def _outside_inputs(self, gid: int) -> set[Value]:
        idx = self.gr.members[gid]
        produced = {r for i in idx for r in self.g.ops[i].results}
        return {v for i in idx for v in self.g.ops[i].inputs
                if v not in produced and not (v.producer is not None and v.producer.name == "full")}

    def _bytes_saved(self, a: int, b: int) -> int:
        """Bytes no longer moved when a's values that b reads stay inside one kernel: b's reads,
        plus the write when nothing outside the merged group (and no graph output) needs them."""
        inside = {id(self.g.ops[i]) for i in (*self.gr.members[a], *self.gr.members[b])}
        mine = {id(self.g.ops[i]) for i in self.gr.members[b]}
        saved = 0
        for i in self.gr.members[a]:
            for r in self.g.ops[i].results:
                users = self.users.get(r, [])
                if not any(id(u) in mine for u in users):
                    continue
                saved += nbytes(r)
                if r not in self.returned and all(id(u) in inside for u in users):
                    saved += nbytes(r)
        return saved

    def _shared_bytes(self, a: int, b: int) -> int:
        return sum(nbytes(v) for v in self._outside_inputs(a) & self._outside_inputs(b))
