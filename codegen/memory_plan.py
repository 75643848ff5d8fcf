"""Memory planning for the wrapper: which kernel-output buffers can take the storage of dead ones.

The wrapper allocates every kernel's result with `torch.empty` and keeps it in a local until `call`
returns. This module walks the ops in the order the wrapper emits them and gives a buffer the
storage of one that is already dead, so `call` holds fewer bytes at its peak.

Storage roots. Each value maps to the set of wrapper-allocated buffers whose storage it may share:
a kernel result is its own root; a view (reshape/permute/expand/slice) has its input's roots; an
extern may return its inputs or views of them, so its results get the roots of all its inputs
(conservative: its schema's alias annotations could say more); matmul's result is torch's own
(aten::matmul has no alias annotation: it never shares its inputs' storage), unless the matmul
template computes it (then it is a kernel result); a `fused` region emitted op by op is walked
through, its body's values standing for the region's operands and results (a matmul region left
to the library: its library body, prologue kernels, the library call and one epilogue kernel).

Live range. A buffer is live from the op that allocates it to the last op that reads any value
rooted in it (so a view read later keeps its base alive). Buffers rooted by a graph output never
die. A buffer that dies at op n is free only after op n: op n may read it while writing its own
results in any order, so only ops strictly later may take it. The one exception is an elementwise
kernel writing over the operand it reads last, at the very same bytes (`_in_place`).

Placement. Only buffers the wrapper allocates are planned; inputs and the results of externs
without an out= form belong to torch. A buffer of concrete size on the graph's device gets a slot in
one arena, a byte range of a single allocation made at the top of `call`: buffers whose live ranges
overlap get disjoint ranges, the others may share bytes (placement.py picks the offsets). One
allocation instead of one per buffer is what keeps a captured CUDA graph's private pool small: the
caching allocator cannot merge the separate blocks of a pool, so a pool serving many buffers of
different sizes grows to far more than the bytes ever live at once (ResNet-50: 562 MiB against
eager's 344). A graph output joins the arena only when `outputs_in_arena` (a graph replayed as a
CUDA graph, whose pool keeps everything anyway); otherwise it gets its own `torch.empty`, so a
caller holding it pins nothing else. Buffers of symbolic size fall back to reuse: one takes a
dead buffer's storage when both have provably the same byte size (sympy: equal after `expand`) on
the same device; dtype and shape may differ, the wrapper reinterprets with `.view`. Of several free
candidates the most recently freed is taken.

Bytes. `peak_bytes_unplanned` is the sum over every planned-for buffer (what `call` would hold if
nothing were shared; concrete sizes rounded up to 512 bytes, as torch's allocator rounds them),
`peak_bytes_planned` the arena plus every buffer that still calls `torch.empty`. Both count graph outputs the wrapper allocates; a reshape's conditional copy is not
counted. They are ints for concrete shapes and sympy expression strings (e.g. "1024*s0") when
sizes are symbolic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy

from ..ir import Graph, Op, Value, to_torch
from ..ir.types import shapes_equal
from .placement import Interval, aligned, place

# How the wrapper emits an op; WrapperBuilder.lowering is the one source of these.
# the wrapper allocates the results, then one kernel (or a library call's out= form) writes them
ALLOCATES = ("kernel", "region", "library_out")
ALIASES = ("view", "extern")       # results may share their inputs' storage
# torch allocates the results (a library matmul), or they are an operand's storage that nothing
# else reads again (inplace.py): either way no planned buffer's
FRESH = ("matmul", "inplace")
UNFUSED = "unfused"                # a fused region whose body is emitted op by op


@dataclass(frozen=True)
class Reuse:
    donor: Value        # the dead buffer whose storage this one takes
    dead_after: str     # the op that last used the donor, as "%n" (the IR name of its result)


@dataclass
class MemoryPlan:
    buffers: list[Value] = field(default_factory=list)      # wrapper-allocated, in allocation order
    slots: dict[Value, int] = field(default_factory=dict)   # arena buffers -> byte offset
    arena_bytes: int = 0
    reuses: dict[Value, Reuse] = field(default_factory=dict)  # symbolic sizes: a dead buffer's storage
    in_place: dict[Value, Value] = field(default_factory=dict)  # arena buffer -> the one whose bytes it takes
    live: dict[Value, tuple[int, int | None]] = field(default_factory=dict)  # step range; None: returned
    bytes_unplanned: sympy.Expr = sympy.Integer(0)
    bytes_planned: sympy.Expr = sympy.Integer(0)

    @property
    def peak_bytes_planned(self) -> int | str:
        return _report_bytes(self.bytes_planned)

    @property
    def peak_bytes_unplanned(self) -> int | str:
        return _report_bytes(self.bytes_unplanned)

    def summary(self) -> dict:
        return {"peak_bytes_planned": self.peak_bytes_planned,
                "peak_bytes_unplanned": self.peak_bytes_unplanned,
                "buffers": len(self.buffers), "arena_bytes": self.arena_bytes,
                "in_arena": len(self.slots), "reused": len(self.reuses)}


def nbytes(v: Value) -> sympy.Expr:
    return sympy.expand(v.type.numel * to_torch(v.type.dtype).itemsize)


@dataclass
class _Step:
    label: str
    reads: frozenset[Value]   # buffers (roots) this op may read
    allocs: list[Value]       # buffers this op allocates
    op: Op | None = None
    operands: list[Value | None] = field(default_factory=list)  # each operand's buffer, if it is one (no view)


class _Walk:
    """The wrapper's op sequence as steps, with each value's storage roots."""

    def __init__(self, lowering: Callable[[Op], str], body_of: Callable[[Op], Graph]):
        self.lowering = lowering
        self.body_of = body_of
        self.roots: dict[Value, frozenset[Value]] = {}
        self.whole: dict[Value, Value] = {}   # value -> the buffer it is, as allocated (not a view of it)
        self.steps: list[_Step] = []

    def roots_of(self, v: Value) -> frozenset[Value]:
        return self.roots.get(v, frozenset())  # graph inputs: torch's storage, never planned

    def walk(self, ops: list[Op], suffix: str = "") -> None:
        n = 0  # values are numbered over results, as the printer and the wrapper's comments do
        for i, op in enumerate(ops):
            label = (f"%{n}" if op.results else f"{op.name} #{i}") + suffix
            n += len(op.results)
            kind = self.lowering(op)
            if kind == UNFUSED:
                self.walk_region(op, label)
                continue
            reads = frozenset().union(*(self.roots_of(v) for v in op.inputs))
            if kind in ALLOCATES:
                for r in op.results:
                    self.roots[r] = frozenset([r])
                    self.whole[r] = r
                self.steps.append(_Step(label, reads, list(op.results), op,
                                        [self.whole.get(v) for v in op.inputs]))
            elif kind in ALIASES or kind in FRESH:
                for r in op.results:
                    self.roots[r] = reads if kind in ALIASES else frozenset()
                self.steps.append(_Step(label, reads, []))
            else:
                raise ValueError(f"unknown lowering {kind!r} for op {op.name}")

    def walk_region(self, op: Op, label: str) -> None:
        body = self.body_of(op)
        for v, outer in zip(body.inputs, op.inputs):
            self.roots[v] = self.roots_of(outer)
            if outer in self.whole:
                self.whole[v] = self.whole[outer]
        self.walk(body.ops, suffix=f" in {label}")
        for v, r in zip(body.outputs, op.results):
            self.roots[r] = self.roots_of(v)
            if v in self.whole:
                self.whole[r] = self.whole[v]


def plan_memory(graph: Graph, lowering: Callable[[Op], str],
                body_of: Callable[[Op], Graph] = lambda op: op.attrs["body"],
                outputs_in_arena: bool = False,
                storage_bytes: Callable[[Value], sympy.Expr | None] = lambda v: None,
                elementwise: Callable[[Op], bool] = lambda op: False) -> MemoryPlan:
    """Plan `graph`'s wrapper-allocated buffers; `lowering(op)` says how the wrapper emits `op`
    (one of ALLOCATES, ALIASES, FRESH or UNFUSED) and `body_of(op)` which ops an UNFUSED region
    runs (its body, or for a matmul region left to the library, its library body).
    `storage_bytes(v)`: the bytes v's buffer needs where that is more than its type says (a
    library product written into padded rows); None: its type's. `elementwise(op)`: is `op` one
    kernel reading every operand at the index it writes (its result may then take the bytes of an
    operand buffer it reads last: see _in_place)."""
    w = _Walk(lowering, body_of)
    w.walk(graph.ops)
    returned = frozenset().union(*(w.roots_of(v) for v in graph.outputs))

    start: dict[Value, int] = {}
    last: dict[Value, int] = {}
    for i, step in enumerate(w.steps):
        for b in step.allocs:
            start[b] = last[b] = i
        for b in step.reads:
            last[b] = max(last[b], i)
    dies_at: dict[int, list[Value]] = {}
    for b, i in last.items():
        if b not in returned:
            dies_at.setdefault(i, []).append(b)

    plan = MemoryPlan()
    arena: list[Interval] = []
    free: dict[tuple, list[tuple[Value, str]]] = {}   # (device, nbytes) -> dead buffers, newest last
    end = len(w.steps)   # a returned buffer is live past the last step
    for i, step in enumerate(w.steps):
        for b in step.allocs:
            plan.buffers.append(b)
            plan.live[b] = (start[b], None if b in returned else last[b])
            size = storage_bytes(b)
            size = nbytes(b) if size is None else sympy.expand(size)
            # Concrete sizes as torch's caching allocator rounds them (to placement.ALIGN, as the
            # arena does): the two figures then compare like for like.
            plan.bytes_unplanned += aligned(int(size)) if size.is_Integer else size
            if (size.is_Integer and size > 0 and b.type.device == graph.device
                    and (b not in returned or outputs_in_arena)):
                arena.append(Interval(b, int(size), start[b], end if b in returned else last[b]))
                continue
            pool = free.get((b.type.device, size)) if b not in returned and size != 0 else None
            if pool:
                donor, label = pool.pop()
                plan.reuses[b] = Reuse(donor, label)
            else:
                plan.bytes_planned += size
        for b in dies_at.get(i, ()):  # after this op's own allocations: reuse is strictly later
            size = storage_bytes(b)
            size = nbytes(b) if size is None else sympy.expand(size)
            if size != 0 and not size.is_Integer:
                free.setdefault((b.type.device, size), []).append((b, step.label))
    group = _in_place(w, arena, last, returned, storage_bytes, elementwise)
    merged: dict[Value, Interval] = {}
    for it in arena:
        g = merged.get(group.get(it.key, it.key))
        merged[group.get(it.key, it.key)] = it if g is None else Interval(
            g.key, max(g.nbytes, it.nbytes), min(g.first, it.first), max(g.last, it.last))
    offsets, plan.arena_bytes = place([Interval(k, it.nbytes, it.first, it.last) for k, it in merged.items()])
    plan.slots = {it.key: offsets[group.get(it.key, it.key)] for it in arena}
    plan.in_place = {t: d for t, d in group.items() if t is not d}
    plan.bytes_planned += plan.arena_bytes
    return plan


def _in_place(w: _Walk, arena: list[Interval], last: dict[Value, int], returned: frozenset[Value],
              storage_bytes: Callable[[Value], sympy.Expr | None],
              elementwise: Callable[[Op], bool]) -> dict[Value, Value]:
    """Buffer -> the first buffer of the chain whose bytes it takes. An elementwise kernel's result
    takes the bytes of an operand buffer when the kernel is that buffer's last reader, reads it as
    allocated (no view) and through no other operand, and both have one dtype and shape and are
    allocated contiguous (not the attention template's [B,S,H,D] memory, not padded rows): each
    element is then loaded and stored at one address by one program, the load first. A library
    matmul's product and the epilogue kernel after it (GELU) then hold one activation, not two."""
    in_arena = {it.key for it in arena}
    group: dict[Value, Value] = {}
    for i, step in enumerate(w.steps):
        if step.op is None or len(step.allocs) != 1 or step.allocs[0] not in in_arena or not elementwise(step.op):
            continue
        t = step.allocs[0]
        for d in step.operands:
            if (d is not None and d in in_arena and last[d] == i and d not in returned
                    and d.producer is not None and d.producer.name != "extern"
                    and storage_bytes(d) is None and storage_bytes(t) is None
                    and d.type.dtype == t.type.dtype and shapes_equal(d.type.shape, t.type.shape)
                    and sum(d in w.roots_of(v) for v in step.op.inputs) == 1):
                group[t] = group.get(d, d)
                break
    return group


def dead_after_ops(g: Graph, body_of: Callable[[Op], Graph], plan: MemoryPlan) -> dict[int, list[Value]]:
    """Op index -> the values whose local names `call` can drop after that op: values no
    later op reads, that are not returned and that no later buffer takes the storage of. The
    values inside a region run op by op (a library matmul and its epilogue kernel) die with
    the region; its results live on under the region's own names. Without the `del`
    every intermediate lives until `call` returns and a model's peak memory is the sum of all
    of them (ViT: 2.4 GiB per call against eager's 0.2). Dropping a name frees nothing a
    view still holds: a view keeps its base's storage alive."""
    index = {op: i for i, op in enumerate(g.ops)}
    for i, op in enumerate(g.ops):  # a region emitted op by op allocates inside its body
        if op.name == "fused":
            index.update((inner, i) for inner in body_of(op).ops)
    last: dict[Value, int] = {}
    for i, op in enumerate(g.ops):
        for r in op.results:
            last.setdefault(r, i)
        for v in op.inputs:
            last[v] = i
        if op.name == "fused":
            for inner in body_of(op).ops:
                for r in inner.results:
                    last.setdefault(r, i)
    for taker, reuse in plan.reuses.items():
        at = index.get(taker.producer)
        if at is not None:  # `bufN = <donor>` names the donor when bufN is allocated
            last[reuse.donor] = max(last.get(reuse.donor, at), at)
    keep = set(g.outputs) | set(g.inputs)
    out: dict[int, list[Value]] = {}
    for v, i in last.items():
        if v not in keep:
            out.setdefault(i, []).append(v)
    return out


def _report_bytes(e: sympy.Expr) -> int | str:
    e = sympy.expand(e)
    return int(e) if e.is_Integer else str(e)
