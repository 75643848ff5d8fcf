"""fuse: group ops into `fused` regions (ir/ops.py), each of which codegen turns into one kernel.

Every value that stays inside a region is never written to memory. passes/fuse_groups.py decides
the groups (vertical fusion of producer-consumer chains, reductions with their prologues and
epilogues, then horizontal fusion of groups reading the same input), within iteration domains
(passes/fuse_domains.py) and under a bytes-saved cost model with a kernel-size cap. This module
builds the regions:

- `full` constants are not members: each region gets its own copy of the constants it reads (a
  constant costs nothing inside a kernel and a launch outside one).
- A member's value used outside the region (or returned) becomes a region result.
- A reduction alone stays a plain op (codegen's reduction kernel); anything with two or more
  members becomes a region.
- Ops with side effects (mutating or random externs, asserts) are ordering barriers in the
  dependency graph, and ops that read or produce a value an extern writes never fuse.

The pass then re-orders the graph topologically (stable: every op keeps its place unless a region
must move), placing each region where its last member was. Stats: `regions`, `ops_fused`,
`bytes_saved` (the cost model's estimate). Details: `rejected`, every candidate pair left unfused
with a reason code (passes/fuse_reasons.py), and `bytes_saved` per region name.
"""
from __future__ import annotations

import networkx as nx

from ..ir import Graph, Op, RegionBody, Value
from .context import PassContext
from .effects import has_side_effects, is_mutating, is_nondeterministic, mutated_values
from .fuse_groups import GroupBuilder, is_candidate
from .fuse_reasons import Rejections
from .registry import PassResult, graph_pass


def _is_constant(v: Value, g: Graph, written: set[Value]) -> bool:
    return v.producer is not None and v.producer.name == "full" and v.type.device == g.device \
        and v not in written


def _is_barrier(op: Op) -> bool:
    return has_side_effects(op) or is_mutating(op) or is_nondeterministic(op)


def dependency_graph(g: Graph) -> nx.DiGraph:
    """Nodes are op indices; edges are data dependencies plus ordering edges around barriers (every
    op between two barriers stays between them)."""
    index = {id(op): i for i, op in enumerate(g.ops)}
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(g.ops)))
    last_barrier, since = None, []
    for i, op in enumerate(g.ops):
        for v in op.inputs:
            if v.producer is not None:
                dag.add_edge(index[id(v.producer)], i)
        if _is_barrier(op):
            dag.add_edges_from((j, i) for j in since)
            if last_barrier is not None:
                dag.add_edge(last_barrier, i)
            last_barrier, since = i, []
        else:
            since.append(i)
            if last_barrier is not None:
                dag.add_edge(last_barrier, i)
    return dag


def _build_region(g: Graph, ops: list[Op], users: dict[Value, list[Op]], written: set[Value],
                  name: str) -> tuple[Op, list[Value], int] | None:
    """The `fused` op for `ops` (in graph order), the outer values its results replace, and how
    many constants it copied in; None when nothing of it is used (leave it to dce)."""
    inside = {id(op) for op in ops}
    constants = 0

    def constant(v: Value) -> Op | None:
        nonlocal constants
        if not _is_constant(v, g, written):
            return None
        constants += 1
        return Op("full", [], v.producer.attrs, [v.type])
    rb = RegionBody(g, inline=constant)
    for op in ops:
        rb.copy(op)
    returned = set(g.outputs)
    escaping = [op.result for op in ops if op.result in returned
                or any(id(u) not in inside for u in users.get(op.result, []))]
    if not escaping:
        return None
    return rb.finish(escaping, name), escaping, constants


def install_ops(g: Graph, new_ops: list[Op], subst: dict[Value, Value], copied: set[Op]) -> None:
    """Make `new_ops` (regions in place of their members) the graph's ops: readers and outputs
    read the regions' results through `subst`, and constants copied into regions that nothing
    outside reads any more are dropped rather than launched."""
    for op in new_ops:
        op.inputs = [subst.get(v, v) for v in op.inputs]
    g.outputs = [subst.get(v, v) for v in g.outputs]
    used = {v for op in new_ops for v in op.inputs} | set(g.outputs)
    g.ops = [op for op in new_ops if not (op in copied and op.result not in used)]


@graph_pass("fuse", options={}, description="group pointwise chains, reductions with their prologues and epilogues, and independent ops reading the same input into fused regions")
def fuse(g: Graph, ctx: PassContext) -> PassResult:
    written = mutated_values(g)
    dag = dependency_graph(g)
    rejected = Rejections()
    groups = GroupBuilder(g, dag, written, rejected).build()
    group, cg = groups.group, groups.cg
    # Before anything moves: the report names ops as the pass's input prints them.
    details = {"rejected": rejected.report(g, group, written)}
    by_group: dict[int, list[int]] = {}
    for i in range(len(g.ops)):
        by_group.setdefault(group[i], []).append(i)
    users = g.users()
    taken = {op.attrs.get("name") for op in g.ops if op.name == "fused"}
    regions: dict[int, Op] = {}
    subst: dict[Value, Value] = {}
    n_regions = n_fused = 0
    bytes_saved: dict[str, int] = {}
    cloned_from: set[Op] = set()
    for gid in sorted(by_group, key=lambda k: max(by_group[k])):
        idx = by_group[gid]
        ops = [g.ops[i] for i in idx]
        consts = {v.producer for op in ops for v in op.inputs if _is_constant(v, g, written)}
        if not is_candidate(ops[0], g, written) or len(ops) + len(consts) < 2 or \
                (len(ops) == 1 and ops[0].opdef.kind == "reduction"):
            continue
        name = f"fused{n_regions}"
        while name in taken:
            name += "_"
        built = _build_region(g, ops, users, written, name)
        if built is None:
            continue
        fused, escaping, _ = built
        regions[gid] = fused
        subst.update(zip(escaping, fused.results))
        cloned_from |= consts
        bytes_saved[name] = groups.saved.get(gid, 0)
        n_regions += 1
        n_fused += len(ops)
    if not regions:
        return PassResult(changed=False, stats={"regions": 0, "ops_fused": 0, "bytes_saved": 0},
                          details=details)
    # Stable topological order of the contracted graph: each group sits at its last member's place.
    position = {gid: max(i) for gid, i in by_group.items()}
    order = nx.lexicographical_topological_sort(cg, key=lambda gid: position[gid])
    new_ops: list[Op] = []
    for gid in order:
        if gid in regions:
            new_ops.append(regions[gid])
        else:
            new_ops.extend(g.ops[i] for i in sorted(by_group[gid]))
    install_ops(g, new_ops, subst, cloned_from)
    details["bytes_saved"] = bytes_saved
    stats = {"regions": n_regions, "ops_fused": n_fused, "bytes_saved": sum(bytes_saved.values())}
    return PassResult(changed=True, stats=stats, details=details)
