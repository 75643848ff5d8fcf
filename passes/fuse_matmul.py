"""fuse_matmul: a matmul, the cast feeding it and the pointwise ops reading its product become one
`fused` region, which codegen runs as ONE matmul template kernel (codegen/matmul_template.py).

Runs right after `fuse`, whose regions it takes as they are: `fuse` never puts a matmul in a
region (its kernels are pointwise and row kernels), so after it a Linear + bias + GELU is a
matmul followed by a region `add, cast, mul, erf, ...`. Here the two merge: the product never
goes through memory, and the bias, the activation and the final cast run on the accumulator tile.

For each top-level matmul of f32, bf16 or f16 (the template's dtypes), in graph order:
  * epilogue: the first reader of the product, in graph order, that is a pointwise op or a
    pointwise-only `fused` region (no reductions, concat or iota) whose results all have the
    product's shape [.., M, N] and whose other operands broadcast into it (a bias [N], a residual
    [.., M, N], a scale);
  * prologue: per operand, a one-input pointwise op (a cast, typically) that is a top-level op
    whose only reader is this matmul;
  * legal when no path leaves the would-be region and comes back (networkx reachability on the
    dependency graph with every region already made contracted to one node; externs with
    effects are ordering barriers, as in fuse) and no member reads or produces a value an extern
    writes.
The product may have other readers (or be returned): then it is also a result of the region (the
template stores it next to the epilogue's results). Not fused: a reduction reading the product
(`epilogue-reduces`), a consumer over another domain (a view or permute of the product is no
kernel: `not-fusible-op`; a larger broadcast domain: `shape-mismatch`), a reader already taken by
another matmul's region or one that would close a cycle (`would-create-cycle`).

Regions are named `matmul<n>`; the graph is re-ordered (stably) so each sits where its last
member was. Stats: `regions`, `prologues`, `epilogues`, `bytes_saved` (product and prologue
results no longer written and read back). Details: `rejected` (as fuse's, named as this pass's
input prints ops) and `bytes_saved` per region.
"""
from __future__ import annotations

import networkx as nx

from ..ir import Graph, Op, RegionBody, Value
from ..ir.printer import value_names
from ..ir.types import broadcasts_to, shapes_equal
from .context import PassContext
from .effects import mutated_values
from .fuse import dependency_graph, install_ops
from .fuse_groups import nbytes as _nbytes  # fuse's cost model, remembered per type
from .fuse_reasons import op_labeler
from .registry import PassResult, graph_pass

TEMPLATE_DTYPES = ("f32", "bf16", "f16")   # codegen/matmul_template.py's
POINTWISE_KINDS = ("unary", "binary", "ternary", "cast")


def _epilogue_refusal(mm: Op, reader: Op, g: Graph, written: set[Value]) -> tuple[str, str] | None:
    """(reason code, why) when `reader` cannot be `mm`'s epilogue, else None."""
    shape = mm.result.type.shape
    if reader.opdef.kind == "reduction":
        return "epilogue-reduces", "reduces the product"
    if reader.name == "fused":
        body = reader.attrs["body"]
        if any(b.opdef.kind == "reduction" for b in body.ops):
            return "epilogue-reduces", "is a region with reductions"
        bad = next((b for b in body.ops if b.name != "full" and b.opdef.kind not in POINTWISE_KINDS), None)
        if bad is not None:
            return "not-fusible-op", f"holds a {bad.name}, which a matmul epilogue cannot compute"
        inner = list(body.ops)
    elif reader.opdef.kind in POINTWISE_KINDS and len(reader.results) == 1:
        inner = [reader]
    else:
        return "not-fusible-op", f"is a {reader.opdef.kind} op ({reader.name}), not a pointwise epilogue"
    if any(r.type.device != g.device for r in reader.results):
        return "not-fusible-op", "runs on another device"
    if any(v in written for v in (*reader.inputs, *reader.results)):
        return "written-by-extern", "an extern writes one of its values in place"
    for r in reader.results:
        if not shapes_equal(r.type.shape, shape):
            return "shape-mismatch", f"computes a {list(r.type.shape)} result over the {list(shape)} product"
    for b in inner:
        for v in (*b.inputs, *b.results):
            if not broadcasts_to(v.type.shape, shape):
                return "shape-mismatch", f"reads or computes a {list(v.type.shape)} value that does not broadcast into {list(shape)}"
    return None


def _is_prologue(p: Op | None, mm: Op, users: dict[Value, list[Op]], returned: set[Value],
                 written: set[Value], g: Graph) -> bool:
    return (p is not None and p.opdef.kind in ("unary", "cast") and len(p.inputs) == 1
            and len(p.results) == 1 and p.result not in returned and p.result.type.device == g.device
            and all(u is mm for u in users.get(p.result, []))
            and p.result not in written and p.inputs[0] not in written)


class _Contracted:
    """The dependency graph with each region decided so far contracted to one node."""

    def __init__(self, g: Graph):
        self.dag = dependency_graph(g)
        self.rep = {i: i for i in range(len(g.ops))}

    def closes_cycle(self, members: set[int]) -> int | None:
        """An outside node some member reaches and that reaches a member, or None."""
        nodes = {self.rep[i] for i in members}
        below = set().union(*(nx.descendants(self.dag, n) for n in nodes)) - nodes
        above = set().union(*(nx.ancestors(self.dag, n) for n in nodes)) - nodes
        both = below & above
        return min(both) if both else None

    def contract(self, members: set[int]) -> int:
        nodes = sorted({self.rep[i] for i in members})
        head = nodes[0]
        for n in nodes[1:]:
            nx.contracted_nodes(self.dag, head, n, self_loops=False, copy=False)
        for i, r in self.rep.items():
            if r in nodes:
                self.rep[i] = head
        return head


@graph_pass("fuse_matmul", options={},
            description="put a matmul, its operand cast and the pointwise ops reading its product in one fused region")
def fuse_matmul(g: Graph, ctx: PassContext) -> PassResult:
    written = mutated_values(g)
    users = g.users()
    returned = set(g.outputs)
    index = {id(op): i for i, op in enumerate(g.ops)}
    cg = _Contracted(g)
    names = value_names(g)
    label = op_labeler(g, names)
    rejected: list[dict] = []
    taken: set[int] = set()
    plans: list[tuple[list[int], Op]] = []   # member indices (prologues, matmul, epilogue) -> matmul

    def reject(pi: int, ci: int, code: str, why: str) -> None:
        rejected.append({"producer": label(pi), "consumer": label(ci), "reason": code,
                         "detail": f"{label(ci)} {why}"})

    for mi, mm in enumerate(g.ops):
        if mm.name != "matmul" or mm.result.type.dtype not in TEMPLATE_DTYPES or \
                mm.result.type.device != g.device or mm.result in written or \
                any(v in written for v in mm.inputs):
            continue
        members = {mi}
        for v in dict.fromkeys(mm.inputs):
            p = v.producer
            if _is_prologue(p, mm, users, returned, written, g) and index[id(p)] not in taken:
                if cg.closes_cycle(members | {index[id(p)]}) is None:
                    members.add(index[id(p)])
        epilogue = None
        for reader in dict.fromkeys(users.get(mm.result, [])):
            ri = index[id(reader)]
            why = _epilogue_refusal(mm, reader, g, written)
            if why is None and ri in taken:
                why = ("would-create-cycle", "is already part of another matmul's region")
            if why is None:
                via = cg.closes_cycle(members | {ri})
                if via is not None:
                    why = ("would-create-cycle", f"also reads the product through {label(via)}, which stays outside")
            if why is not None:
                reject(mi, ri, *why)
                continue
            epilogue = ri
            break
        if epilogue is not None:
            members.add(epilogue)
        if len(members) == 1:
            continue
        taken |= members
        cg.contract(members)
        plans.append((sorted(members), mm))

    details: dict = {"rejected": rejected, "bytes_saved": {}}
    if not plans:
        return PassResult(changed=False, stats={"regions": 0, "prologues": 0, "epilogues": 0, "bytes_saved": 0},
                          details=details)
    existing = {op.attrs.get("name") for op in g.ops if op.name == "fused"}
    regions: dict[int, tuple[Op, list[Value]]] = {}   # contracted node -> (region, values it replaces)
    copied: set[Op] = set()
    n_pro = n_epi = 0
    for n, (idx, mm) in enumerate(plans):
        name = f"matmul{n}"
        while name in existing:
            name += "_"
        ops = [g.ops[i] for i in idx]
        region, replaced, saved, consts = _build(g, ops, mm, users, returned, written, name)
        copied |= consts
        regions[cg.rep[idx[0]]] = (region, replaced)
        details["bytes_saved"][name] = saved
        n_pro += sum(1 for op in ops if op is not mm and index[id(op)] < index[id(mm)])
        n_epi += sum(1 for op in ops if index[id(op)] > index[id(mm)])
    _reorder(g, cg, regions, copied)
    stats = {"regions": len(plans), "prologues": n_pro, "epilogues": n_epi,
             "bytes_saved": sum(details["bytes_saved"].values())}
    return PassResult(changed=True, stats=stats, details=details)


def _build(g: Graph, ops: list[Op], mm: Op, users: dict[Value, list[Op]], returned: set[Value],
           written: set[Value], name: str) -> tuple[Op, list[Value], int, set[Op]]:
    """The region for `ops` (graph order: prologues, the matmul, the epilogue op or region), the
    outer values its results replace, the bytes the fusion saves and the constants it copied."""
    inside = {id(op) for op in ops}
    constants: set[Op] = set()

    def constant(v: Value) -> Op | None:
        p = v.producer
        if p is None or p.name != "full" or v.type.device != g.device or v in written:
            return None
        constants.add(p)
        return Op("full", [], p.attrs, [v.type])   # a constant costs nothing inside a kernel
    rb = RegionBody(g, inline=constant)

    epilogue_results: list[Value] = []
    saved = 0
    after_mm = False
    for op in ops:
        if op.name == "fused":  # the epilogue region: its body inlined, its operands mapped
            sub = op.attrs["body"]
            local = {v: rb.inner(o) for v, o in zip(sub.inputs, op.inputs)}
            for b in sub.ops:
                new = Op(b.name, [local[v] for v in b.inputs], b.attrs, [r.type for r in b.results])
                rb.body.ops.append(new)
                local.update(zip(b.results, new.results))
            rb.mapping.update((r, local[v]) for r, v in zip(op.results, sub.outputs))
            epilogue_results = list(op.results)
            continue
        rb.copy(op)
        if op is mm:
            after_mm = True
        elif after_mm:
            epilogue_results = [op.result]
        else:
            saved += 2 * _nbytes(op.result)   # a prologue: its result is neither written nor read
    product_escapes = mm.result in returned or any(id(u) not in inside for u in users.get(mm.result, []))
    if epilogue_results:
        saved += _nbytes(mm.result) * (1 if product_escapes else 2)
    escaping = ([mm.result] if product_escapes or not epilogue_results else []) + epilogue_results
    return rb.finish(escaping, name), escaping, saved, constants


def _reorder(g: Graph, cg: _Contracted, regions: dict[int, tuple[Op, list[Value]]], copied: set[Op]) -> None:
    """Each region replaces its members, at a stable topological position of the contracted graph
    (where its last member was); readers of replaced values read the region's results."""
    members: dict[int, list[int]] = {}
    for i, r in cg.rep.items():
        members.setdefault(r, []).append(i)
    position = {r: max(idx) for r, idx in members.items()}
    subst: dict[Value, Value] = {}
    for region, replaced in regions.values():
        subst.update(zip(replaced, region.results))
    new_ops: list[Op] = []
    for node in nx.lexicographical_topological_sort(cg.dag, key=lambda r: position[r]):
        if node in regions:
            new_ops.append(regions[node][0])
        else:
            new_ops.extend(g.ops[i] for i in sorted(members[node]))
    install_ops(g, new_ops, subst, copied)
