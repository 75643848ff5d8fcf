"""fuse: group producer-consumer chains of pointwise ops into `fused` regions (ir/ops.py).

A region becomes one Triton kernel (codegen/pointwise.py), so every value that stays inside it is
never written to memory. This first version does vertical fusion only:

- Members are pointwise ops (unary, binary, ternary, cast) and `iota`, all with the same result
  shape: that shape is the region's iteration space. Operands may broadcast into it (a bias
  `[128]` read by an `[s0,128]` op is a region input). Shapes compare symbolically.
- `full` constants are not members: each region gets its own copy of the constants it reads (a
  constant costs nothing inside a kernel and a launch outside one).
- A member's value used outside the region (or returned) becomes a region result.
- A reduction joins the group that computes its input when that group feeds nothing else (a
  prologue: the reduction kernel computes its input tile by tile).
- Legality: merging two groups must not create a cycle, i.e. no path may leave the group and
  come back into it (networkx reachability on the graph with groups contracted). Ops with side
  effects (mutating or random externs, asserts) are ordering barriers, and ops that read or produce
  a value an extern writes never fuse.

The pass then re-orders the graph topologically (stable: every op keeps its place unless a region
must move), placing each region where its last member was. Stats: `regions`, `ops_fused`.
Details: `rejected`, every candidate pair left unfused with a reason code (passes/fuse_reasons.py).
"""
from __future__ import annotations

import networkx as nx

from ..ir import Graph, Op, Value
from ..ir.types import shapes_equal
from .context import PassContext
from .effects import has_side_effects, is_mutating, is_nondeterministic, mutated_values
from .fuse_reasons import Rejections
from .registry import PassResult, graph_pass

_MEMBER_KINDS = ("unary", "binary", "ternary", "cast")


def _is_member(op: Op, g: Graph, written: set[Value]) -> bool:
    pointwise = op.opdef.kind in _MEMBER_KINDS or op.name == "iota"
    return (pointwise and len(op.results) == 1 and op.result.type.device == g.device
            and op.result not in written and not any(v in written for v in op.inputs))


def _is_constant(v: Value, g: Graph, written: set[Value]) -> bool:
    return v.producer is not None and v.producer.name == "full" and v.type.device == g.device \
        and v not in written


def _is_barrier(op: Op) -> bool:
    return has_side_effects(op) or is_mutating(op) or is_nondeterministic(op)


def _dependency_graph(g: Graph) -> nx.DiGraph:
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


def _merge_creates_cycle(cg: nx.DiGraph, a: int, b: int) -> bool:
    """Would contracting groups a and b (a feeds b) close a cycle? Only if b is also reachable
    from a through some third group: a path a -> c -> ... -> b. The contracted graph is a DAG, so
    b never reaches a; one search without the direct edge answers it."""
    if not cg.has_edge(a, b):
        return nx.has_path(cg, a, b) or nx.has_path(cg, b, a)  # not a producer-consumer pair
    data = cg.edges[a, b]
    cg.remove_edge(a, b)
    try:
        return nx.has_path(cg, a, b)
    finally:
        cg.add_edge(a, b, **data)


def _cycle_via(cg: nx.DiGraph, a: int, b: int) -> int:
    """The first group on a path a -> ... -> b other than the direct edge (for the report; only
    called when _merge_creates_cycle said there is one)."""
    data = cg.edges[a, b]
    cg.remove_edge(a, b)
    try:
        return nx.shortest_path(cg, a, b)[1]
    finally:
        cg.add_edge(a, b, **data)


def _shape_detail(pi: int, ci: int, p: Op, c: Op, dev: str):
    return lambda L, n: (f"{L(pi)} iterates over {p.result.type.format(dev)}, "
                         f"{L(ci)} over {c.result.type.format(dev)}")


def _cycle_detail(pi: int, ci: int, via: int):
    return lambda L, n: f"{L(pi)} also reaches {L(ci)} through {L(via)}, which stays outside"


def _form_groups(g: Graph, dag: nx.DiGraph, written: set[Value],
                 rejected: Rejections) -> tuple[dict[int, int], nx.DiGraph]:
    """Greedy, in graph order: each member joins its member producers' groups when the shapes
    agree and no cycle results. Returns op index -> group id, and the contracted graph; notes
    why each member pair it turned down stays apart."""
    index = {id(op): i for i, op in enumerate(g.ops)}
    group = {i: i for i in range(len(g.ops))}
    members = {i: [i] for i in range(len(g.ops))}
    cg = dag.copy()
    for i, op in enumerate(g.ops):
        if not _is_member(op, g, written):
            continue
        for v in op.inputs:
            p = v.producer
            if p is None or not _is_member(p, g, written):
                continue
            pi = index[id(p)]
            if not shapes_equal(p.result.type.shape, op.result.type.shape):
                rejected.note(pi, i, "shape-mismatch", _shape_detail(pi, i, p, op, g.device))
                continue
            a, b = group[pi], group[i]
            if a == b:
                continue
            if _merge_creates_cycle(cg, a, b):
                rejected.note(pi, i, "would-create-cycle", _cycle_detail(pi, i, _cycle_via(cg, a, b)))
                continue
            _contract(cg, group, members, a, b)
    _absorb_reductions(g, cg, group, members, written, rejected)
    return group, cg


def _contract(cg: nx.DiGraph, group: dict[int, int], members: dict[int, list[int]], a: int, b: int) -> None:
    nx.contracted_nodes(cg, a, b, self_loops=False, copy=False)
    for j in members.pop(b):
        group[j] = a
        members[a].append(j)


def _absorb_reductions(g: Graph, cg: nx.DiGraph, group: dict[int, int], members: dict[int, list[int]],
                       written: set[Value], rejected: Rejections) -> None:
    """A reduction joins the pointwise group computing its input (its prologue) when that group
    feeds nothing else: the reduction kernel then computes the input tile by tile and it never
    reaches memory. A group whose values are also used elsewhere stays a pointwise region (its
    values would have to be stored from inside the reduction's tiles)."""
    index = {id(op): i for i, op in enumerate(g.ops)}
    users = g.users()
    returned = set(g.outputs)
    for i, op in enumerate(g.ops):
        if op.opdef.kind != "reduction" or len(op.results) != 1 or op.result.type.device != g.device \
                or op.result in written or op.inputs[0] in written:
            continue
        p = op.inputs[0].producer
        if p is None or not _is_member(p, g, written):
            continue
        pi = index[id(p)]
        a, b = group[pi], group[i]
        inside = {id(g.ops[j]) for j in members[a]} | {id(op)}
        escaping = next((r for j in members[a] for r in g.ops[j].results
                         if r in returned or any(id(u) not in inside for u in users.get(r, []))), None)
        if escaping is not None:
            _note_escape(rejected, index, pi, i, escaping, users, inside)
            continue
        if a != b:
            if _merge_creates_cycle(cg, a, b):
                rejected.note(pi, i, "would-create-cycle", _cycle_detail(pi, i, _cycle_via(cg, a, b)))
            else:
                _contract(cg, group, members, a, b)


def _note_escape(rejected: Rejections, index: dict[int, int], pi: int, ci: int,
                 escaping: Value, users: dict[Value, list[Op]], inside: set[int]) -> None:
    """Why a prologue group cannot join reduction ci: one of its values is used outside it. (A
    group never holds two reductions: the first joins only if nothing else reads the group, and a
    second reduction reading it would be such a reader.)"""
    user = next((index[id(u)] for u in users.get(escaping, []) if id(u) not in inside), None)
    where = (lambda L: f"is also read by {L(user)}") if user is not None else (lambda L: "is returned")
    rejected.note(pi, ci, "reduction-has-other-users",
                  lambda L, n: f"{n.get(escaping, '%?')} from the group computing {L(ci)}'s input {where(L)}")


def _build_region(g: Graph, ops: list[Op], users: dict[Value, list[Op]], written: set[Value],
                  name: str) -> tuple[Op, list[Value], int] | None:
    """The `fused` op for `ops` (in graph order), the outer values its results replace, and how
    many constants it copied in; None when nothing of it is used (leave it to dce)."""
    inside = {id(op) for op in ops}
    body = Graph(g.name, g.device)
    body.symbols = g.symbols
    mapping: dict[Value, Value] = {}
    operands: list[Value] = []
    constants = 0
    for op in ops:
        args = []
        for v in op.inputs:
            if v not in mapping:
                if _is_constant(v, g, written):
                    copy = Op("full", [], v.producer.attrs, [v.type])
                    body.ops.append(copy)
                    mapping[v] = copy.result
                    constants += 1
                else:
                    mapping[v] = Value(v.type, None, 0, f"in{len(operands)}")
                    body.inputs.append(mapping[v])
                    operands.append(v)
            args.append(mapping[v])
        new = Op(op.name, args, op.attrs, [r.type for r in op.results])
        body.ops.append(new)
        mapping[op.result] = new.result
    returned = set(g.outputs)
    escaping = [op.result for op in ops if op.result in returned
                or any(id(u) not in inside for u in users.get(op.result, []))]
    if not escaping:
        return None
    body.outputs = [mapping[v] for v in escaping]
    fused = Op("fused", operands, {"body": body, "name": name}, [v.type for v in escaping])
    return fused, escaping, constants


@graph_pass("fuse", options={}, description="group pointwise producer-consumer chains into fused regions")
def fuse(g: Graph, ctx: PassContext) -> PassResult:
    written = mutated_values(g)
    dag = _dependency_graph(g)
    rejected = Rejections()
    group, cg = _form_groups(g, dag, written, rejected)
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
    cloned_from: set[Op] = set()
    for gid in sorted(by_group, key=lambda k: max(by_group[k])):
        idx = by_group[gid]
        ops = [g.ops[i] for i in idx]
        consts = {v.producer for op in ops for v in op.inputs if _is_constant(v, g, written)}
        if not _is_member(ops[0], g, written) or len(ops) + len(consts) < 2:
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
        n_regions += 1
        n_fused += len(ops)
    if not regions:
        return PassResult(changed=False, stats={"regions": 0, "ops_fused": 0}, details=details)
    # Stable topological order of the contracted graph: each group sits at its last member's place.
    position = {gid: max(i) for gid, i in by_group.items()}
    order = nx.lexicographical_topological_sort(cg, key=lambda gid: position[gid])
    new_ops: list[Op] = []
    for gid in order:
        if gid in regions:
            new_ops.append(regions[gid])
        else:
            new_ops.extend(g.ops[i] for i in sorted(by_group[gid]))
    for op in new_ops:
        op.inputs = [subst.get(v, v) for v in op.inputs]
    g.outputs = [subst.get(v, v) for v in g.outputs]
    # Constants copied into regions and now unused outside: drop them rather than launch them.
    used = {v for op in new_ops for v in op.inputs} | set(g.outputs)
    g.ops = [op for op in new_ops if not (op in cloned_from and op.result not in used)]
    return PassResult(changed=True, stats={"regions": n_regions, "ops_fused": n_fused}, details=details)
