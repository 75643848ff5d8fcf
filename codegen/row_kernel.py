"""Row kernels: one Triton kernel for a fused region that holds reductions (passes/fuse_domains.py).

The region walks a domain: a shape S whose reduced axes A all its reductions share. A program
takes XBLOCK *rows* (the kept dims of S, enumerated by `xindex`) and walks the reduced extent
(`rindex`). Values have one of three roles: full values are [XBLOCK, RBLOCK] tiles, row values
(reduction results and the pointwise ops over them, with the reduced dims kept as 1 or dropped)
are [XBLOCK, 1] columns that broadcast back over a tile. Two strategies:

- persistent (the reduced extent fits one block): every input is loaded once, every op runs once
  in region order, and each full value lives in registers from its definition to its last use:
  softmax reads x once and writes y once;
- looped: the reductions are grouped into stages (a reduction that needs another's result, such
  as the variance after the mean, runs in a later stage); each stage is one loop over the reduced
  extent that recomputes the full values its reductions read from the inputs, folding them into
  [XBLOCK, RBLOCK] accumulators. Row ops run between stages; each full output is stored by
  the first loop that can compute it (a last loop for those that read the last reductions). Inputs are re-read once per loop (from L2 for all but the first pass) and no
  intermediate reaches memory. A softmax's max and sum of exp(x - max) share one loop (online
  softmax), and so do a variance's sum and sum of squared deviations (Welford): a looped softmax
  or layer_norm reads x twice, not three times.

Low-precision inputs are upcast to f32 when loaded, reductions accumulate like the single-op
reduction kernel (codegen/reduction.py), and masked lanes of a reduction hold its identity.
"""
from __future__ import annotations

from typing import Sequence

import sympy

from ..ir import Graph, Op, Value
from ..ir.types import TensorType
from ..passes.fuse_domains import Domain, is_row_reduction
from .kernel_writer import Coord, Kernel, KernelWriter, is_one
from .launch_heuristics import choose_launch, keeps_innermost
from .pointwise import can_lower, emit_rounded, rounded
from .reduction import BIG_INDEX, _acc_dtype, _combine, _identity, lane_index
from .triton_types import compute_dtype, tl_dtype

_BLOCK = {"full": "[XBLOCK, RBLOCK]", "bcast": "[XBLOCK, RBLOCK]", "row": "[XBLOCK, 1]", "rowdrop": "[XBLOCK, 1]"}
_MASK = {"full": "mask", "bcast": "mask", "row": "xmask", "rowdrop": "xmask"}
_PER_ELEMENT = ("full", "bcast")   # roles computed as tiles (bcast: a smaller value, recomputed)


def region_domain(body: Graph) -> Domain | None:
    """The domain of a region body whose ops a row kernel can run, else None."""
    reductions = [op for op in body.ops if op.opdef.kind == "reduction"]
    if not reductions or not all(is_row_reduction(r) for r in reductions):
        return None
    first = reductions[0]
    dom = Domain(tuple(first.inputs[0].type.shape), tuple(first.attrs["axes"]))
    for r in reductions:
        if tuple(r.attrs["axes"]) != dom.axes or dom.role(r.inputs[0].type.shape) != "full":
            return None
    outs = list(body.outputs)
    if len(set(outs)) != len(outs) or any(v.producer is None or v.producer.name == "full"
                                          or dom.role(v.type.shape) == "bcast" for v in outs):
        return None
    for op in body.ops:
        if op.name == "full":
            continue
        if op.opdef.kind != "reduction" and (not can_lower(op) or len(op.results) != 1):
            return None
        if dom.role(op.result.type.shape) is None:
            return None
    return dom


def fused_row_kernel(body: Graph) -> Kernel | None:
    dom = region_domain(body)
    return None if dom is None else RowKernel(body, dom).build()


class RowKernel:
    def __init__(self, body: Graph, dom: Domain):
        self.body = body
        self.dom = dom
        self.shape = dom.shape
        self.kept = [d for d in range(len(self.shape)) if d not in dom.axes]
        self.xnumel = TensorType("f32", [self.shape[d] for d in self.kept]).numel
        self.rnumel = TensorType("f32", [self.shape[d] for d in dom.axes]).numel
        self.config = choose_launch("reduction", self.xnumel, self.rnumel,
                                    outer=keeps_innermost(self.shape, dom.axes))
        kinds = ", ".join(op.name for op in body.ops if op.name != "full")
        strategy = "persistent" if self.config.persistent else "looped"
        self.w = KernelWriter("reduction", f"{kinds} over rows of {dom}, {strategy}", axes=("x", "r"))
        self.role: dict[Value, str] = {}
        for op in body.ops:
            if op.name != "full":
                self.role[op.result] = dom.role(op.result.type.shape)
        self.xcoords: dict[int, Coord] = {}

    # ------------------------------------------------------------------ structure
    def build(self) -> Kernel:
        w = self.w
        self.xn = w.size(self.xnumel, "xnumel")
        self.rn = w.size(self.rnumel, "rnumel")
        start = w.program_start()
        w.line(f"xindex = {start} + tl.arange(0, XBLOCK)[:, None]")
        w.line(f"xmask = xindex < {self.xn}")
        self.xcoords = w.decompose("xindex", [(d, self.shape[d]) for d in self.kept], "x", "x", "xsize")
        w.line("rbase = tl.arange(0, RBLOCK)[None, :]")
        w.line("if INDEX_64:")
        w.line("    rbase = rbase.to(tl.int64)")
        if self.config.persistent:
            self._persistent()
        else:
            self._looped()
        return w.finish(self.config, self.xnumel)

    def _open_tile(self, rindex: str) -> dict[int, Coord]:
        w = self.w
        w.line(f"rmask = {rindex} < {self.rn}")
        rcoords = w.decompose(rindex, [(d, self.shape[d]) for d in self.dom.axes], "r", "r", "rsize")
        w.line("mask = xmask & rmask")
        return {**self.xcoords, **rcoords}

    def _persistent(self) -> None:
        coords = self._open_tile("rbase")
        env: dict[Value, str] = {}
        loads: dict[tuple[Value, str], str] = {}
        for op in self.body.ops:
            if op.opdef.kind == "reduction":
                x = op.inputs[0]
                v = self._masked(op, self._read(x, x.type.shape, "full", env, loads, coords))
                env[op.result] = self._finish_reduction(op, v, "rbase")
            else:
                env[op.result] = self._emit(op, env, loads, coords)
        for v in self.body.outputs:
            self._store(v, env[v], coords)

    def _looped(self) -> None:
        w = self.w
        ops = self.body.ops
        softmax = self._online_softmax_pairs()
        online = {**softmax, **{v: s1 for v, s1 in self._welford_pairs().items() if s1 not in softmax}}
        stage = self._stages(online)
        last = max((stage[op.result] for op in ops if op.opdef.kind == "reduction"), default=0)
        env: dict[Value, str] = {}
        loads: dict[tuple[Value, str], str] = {}   # row-role loads, outside every loop
        bound = self.rn if self.rn.isdigit() else f"helpers.loop_bound({self.rn})"
        for op in ops:
            if op.name == "full":  # [1, 1] constants broadcast into tiles and rows alike
                env[op.result] = self._emit(op, env, loads, self.xcoords)
        for k in range(1, last + 2):
            # Row ops whose inputs are ready before this loop (all of stage k - 1).
            for op in ops:
                if op.name != "full" and self.role[op.result] not in _PER_ELEMENT \
                        and op.opdef.kind != "reduction" and stage[op.result] == k - 1:
                    env[op.result] = self._emit(op, env, loads, self.xcoords)
            reds = [op for op in ops if op.opdef.kind == "reduction" and stage[op.result] == k]
            # A full output is stored in the first loop that can compute it: the loop after the
            # row values it reads. One that reads none (a gradient stored beside its column sum)
            # rides the first reduction's loop instead of a loop of its own that reads every
            # input again.
            stores = [v for v in self.body.outputs if self.role[v] == "full" and stage[v] == k - 1]
            if not reds and not stores:
                continue
            accs = {}
            for red in reds:
                accs[red] = self._init_acc(red)
            welford = {first: self._init_welford() for first in
                       dict.fromkeys(online[r] for r in reds if r in online and online[r].name == "reduce_sum")}
            partner: dict[Op, list[Op]] = {}   # a max or sum -> the reductions riding its loop
            for r in reds:
                if r in online:
                    partner.setdefault(online[r], []).append(r)
            w.line(f"for roffset in range(0, {bound}, RBLOCK):")
            with w.indented():
                w.line("rindex = roffset + rbase")
                coords = self._open_tile("rindex")
                tile_env = dict(env)
                tile_loads: dict[tuple[Value, str], str] = dict(loads)
                needed = self._full_cone([r.inputs[0] for r in reds if r not in online] + stores)
                for op in ops:
                    if op in needed and op.name != "full":
                        tile_env[op.result] = self._emit(op, tile_env, tile_loads, coords)
                for red in reds:
                    if red in online:
                        continue  # accumulated with its max, below
                    x = red.inputs[0]
                    v = self._read(x, x.type.shape, "full", tile_env, tile_loads, coords)
                    if red in partner and red.name == "reduce_max":
                        (total,) = partner[red]  # one sum per max (_online_softmax_pairs)
                        self._accumulate_online(accs[red][0], accs[total][0], self._masked(red, v))
                    elif red in partner:
                        self._accumulate(red, accs[red], self._masked(red, v))
                        self._accumulate_welford(welford[red], v)
                    else:
                        self._accumulate(red, accs[red], self._masked(red, v))
                for v in stores:
                    self._store(v, tile_env[v], coords)
            for red in reds:
                if red in partner and red.name == "reduce_max":
                    (total,) = partner[red]
                    env[red.result], env[total.result] = self._finish_online(accs[red][0], accs[total][0])
                elif red in partner:
                    env[red.result] = self._finish_acc(red, accs[red])
                    m2 = self._finish_welford(welford[red])
                    for second in partner[red]:
                        env[second.result] = m2
                elif red not in online:
                    env[red.result] = self._finish_acc(red, accs[red])
        for v in self.body.outputs:
            if self.role[v] != "full":
                self._store(v, env[v], self.xcoords)

    def _stages(self, online: dict[Op, Op]) -> dict[Value, int]:
        """For each value: the loop after which it is available. Full values are recomputed in
        every loop that needs them; their stage is that of the row values they read. A sum in
        `online` is accumulated in its max's loop, so it shares the max's stage."""
        stage: dict[Value, int] = {}
        for op in self.body.ops:
            ins = max((stage.get(v, 0) for v in op.inputs), default=0)
            stage[op.result] = ins + 1 if op.opdef.kind == "reduction" else ins
            if op in online:
                stage[op.result] = stage[online[op].result]
        return stage

    def _online_softmax_pairs(self) -> dict[Op, Op]:
        """sum -> max for each `reduce_sum(exp(x - reduce_max(x)))` in f32 (softmax, log_softmax):
        one loop can carry both, a running max per lane and a sum rescaled whenever the max grows
        (`_accumulate_online`), where staging would read x once for the max and again for the sum.
        Only f32 ops: a low-precision exp rounds each term, which a rescaled sum cannot repeat."""
        pairs: dict[Op, Op] = {}
        for op in self.body.ops:
            e = op.inputs[0].producer if op.name == "reduce_sum" else None
            t = e.inputs[0].producer if e is not None and e.name == "exp" else None
            if t is None or t.name != "sub":
                continue
            x, m = t.inputs
            mx = m.producer
            if mx is None or mx.name != "reduce_max" or mx.inputs[0] is not x or self.role[m] != "row":
                continue
            # One sum per max: the running max moves as it is folded in, so a second sum's rescaling
            # would be computed against the already-moved max.
            if all(v.type.dtype == "f32" for v in (x, m, t.result, e.result, op.result)) \
                    and mx not in pairs.values():
                pairs[op] = mx
        return pairs

    def _full_cone(self, targets: Sequence[Value]) -> set[Op]:
        """The full-role ops computing `targets` from region inputs and already available row
        values (which stop the walk)."""
        ops: set[Op] = set()
        todo = [v for v in targets if v.producer is not None]
        while todo:
            v = todo.pop()
            op = v.producer
            if op in ops or op.opdef.kind == "reduction":
                continue
            if op.name == "full" or self.role[v] not in _PER_ELEMENT:
                continue
            ops.add(op)
            todo.extend(u for u in op.inputs if u.producer is not None)
        return ops

    # ------------------------------------------------------------------ ops
    def _emit(self, op: Op, env: dict[Value, str], loads: dict, coords: dict[int, Coord]) -> str:
        """Emit one pointwise op (or constant) of the region; region inputs it reads are loaded
        on first use, once per role (a bias read by full ops and by row ops is two loads)."""
        w = self.w
        if op.name == "full":
            expr = emit_rounded(w, op, env, coords)
            return w.assign("c", expr.replace(w.block_shape, "[1, 1]", 1), "constant")
        role = self.role[op.result]
        local = {v: self._read(v, op.result.type.shape, role, env, loads, coords) for v in op.inputs}
        if op.name == "iota":
            c = self._coords_for(op.result.type.shape, op.result.type.shape, role, coords)[op.attrs["dim"]]
            cdt = tl_dtype(compute_dtype(op.result.type.dtype))
            expr = f"tl.full({_BLOCK[role]}, 0, {cdt})" if c is None or c.expr == "0" else \
                f"tl.broadcast_to({c.expr}, {_BLOCK[role]}).to({cdt})"
            return w.assign("t", rounded(expr, op.result.type.dtype), "iota")
        return w.assign("t", emit_rounded(w, op, local, coords), op.name)

    def _read(self, v: Value, oshape, role: str, env: dict[Value, str], loads: dict,
              coords: dict[int, Coord]) -> str:
        """A value computed in the kernel, or a region input loaded (once per role)."""
        if v in env:
            return env[v]
        if (v, role) not in loads:
            loads[(v, role)] = self._load(v, oshape, role, coords)
        return loads[(v, role)]

    def _coords_for(self, vshape, oshape, role: str, coords: dict[int, Coord]) -> list[Coord | None]:
        """Coordinates for each dim of a value of shape `vshape` read by an op whose result
        `oshape` has `role`: numpy broadcasting into `oshape`, then `oshape`'s dims onto S."""
        rank = len(self.shape)
        if role in _PER_ELEMENT:  # broadcasting is transitive: align `vshape` with S directly
            oshape, to_s = self.shape, list(range(rank))
        elif role == "row":
            to_s = [d if d not in self.dom.axes else None for d in range(rank)]
        else:
            to_s = list(self.kept)
        lead = len(oshape) - len(vshape)
        out: list[Coord | None] = []
        for d in range(len(vshape)):
            s = to_s[lead + d]
            out.append(None if s is None else coords.get(s))
        return out

    def _load(self, v: Value, oshape, role: str, coords: dict[int, Coord]) -> str:
        dim_coords = self._coords_for(v.type.shape, oshape, role, coords)
        return self.w.load(v, dim_coords, _MASK[role], axes=("x", "r") if role in _PER_ELEMENT else ("x",))

    def _masked(self, red: Op, value: str) -> str:
        acc = _acc_dtype(red.inputs[0].type.dtype)
        if acc != compute_dtype(red.inputs[0].type.dtype):
            value = self.w.assign("v", f"{value}.to({tl_dtype(acc)})")
        ident = _identity(red.name, acc)
        return self.w.assign("v", f"tl.where(mask, {value}, {ident})", f"{red.name}: masked lanes hold the identity")

    def _finish_reduction(self, red: Op, v: str, rindex: str) -> str:
        w = self.w
        if red.name in ("argmax", "argmin"):
            i = w.assign("i", lane_index(rindex))
            name = w.fresh("red")
            w.line(f"_, {name} = tl.reduce(({v}, {i}), 1, helpers.{red.name}_combine, keep_dims=True)")
            return name
        return self._cast_result(red, w.assign("red", f"tl.reduce({v}, 1, {_combine(red.name)}, keep_dims=True)", red.name))

    def _cast_result(self, red: Op, name: str) -> str:
        acc = _acc_dtype(red.inputs[0].type.dtype)
        want = compute_dtype(red.result.type.dtype)
        if acc != want:  # e.g. an i8 sum accumulated in i32 wraps back to i8 like torch's
            name = self.w.assign("red", f"{name}.to({tl_dtype(want)})")
        if want != red.result.type.dtype:  # a bf16 sum is a bf16 value, as in eager
            name = self.w.assign("red", rounded(name, red.result.type.dtype))
        return name

    def _init_acc(self, red: Op) -> tuple[str, str | None]:
        w = self.w
        acc = _acc_dtype(red.inputs[0].type.dtype)
        name = w.fresh("acc")
        w.line(f"{name} = tl.full([XBLOCK, RBLOCK], {_identity(red.name, acc)}, {tl_dtype(acc)})")
        index = None
        if red.name in ("argmax", "argmin"):
            index = w.fresh("acc_index")
            w.line(f"{index} = tl.full([XBLOCK, RBLOCK], {BIG_INDEX}, tl.int64)")
        return name, index

    def _accumulate(self, red: Op, acc: tuple[str, str | None], v: str) -> None:
        w = self.w
        name, index = acc
        if index is not None:
            i = w.assign("i", lane_index("rindex"))
            w.line(f"{name}, {index} = helpers.{red.name}_combine({name}, {index}, {v}, {i})")
        elif red.name == "reduce_sum":
            w.line(f"{name} = {name} + {v}")
        else:
            w.line(f"{name} = {_combine(red.name)}({name}, {v})")

    def _welford_pairs(self) -> dict[Op, Op]:
        """sum of squares -> sum for each variance written as `reduce_sum(d * d)` with
        `d = x - reduce_sum(x) / n`, n the reduced extent, all f32 (layer_norm, var): Welford's
        running (mean, sum of squared deviations, count) per lane carries the second sum in the
        first one's loop, where staging would read x again after the mean."""
        pairs: dict[Op, Op] = {}
        rnumel = sympy.sympify(self.rnumel)
        for op in self.body.ops:
            sq = op.inputs[0].producer if op.name == "reduce_sum" else None
            if sq is None or sq.name != "mul" or sq.inputs[0] is not sq.inputs[1]:
                continue
            d = sq.inputs[0].producer
            if d is None or d.name != "sub" or self.role.get(d.result) != "full":
                continue
            x, mean = d.inputs
            div = mean.producer
            if div is None or div.name != "div" or self.role[mean] != "row":
                continue
            total, count = div.inputs
            s1 = total.producer
            if s1 is None or s1.name != "reduce_sum" or s1.inputs[0] is not x or \
                    count.producer is None or count.producer.name != "full" or \
                    sympy.sympify(count.producer.attrs["value"]) - rnumel != 0:  # 24.0 is 24
                continue
            if all(v.type.dtype == "f32" for v in (x, total, mean, d.result, sq.result, op.result)):
                pairs[op] = s1
        return pairs

    def _init_welford(self) -> tuple[str, str, str]:
        w = self.w
        names = tuple(w.fresh(p) for p in ("wmean", "wm2", "wn"))
        for n in names:
            w.line(f"{n} = tl.zeros([XBLOCK, RBLOCK], tl.float32)")
        return names

    def _accumulate_welford(self, acc: tuple[str, str, str], v: str) -> None:
        """Welford's update per lane; masked lanes (past the row's end) leave it unchanged."""
        w = self.w
        mean, m2, n = acc
        w.line(f"{n} = {n} + tl.where(mask, 1.0, 0.0)")
        delta = w.assign("d", f"{v} - {mean}", "Welford: running mean and squared deviations")
        w.line(f"{mean} = tl.where(mask, {mean} + delta_over_n, {mean})".replace(
            "delta_over_n", f"{delta} / tl.where(mask, {n}, 1.0)"))
        w.line(f"{m2} = tl.where(mask, {m2} + {delta} * ({v} - {mean}), {m2})")

    def _finish_welford(self, acc: tuple[str, str, str]) -> str:
        """The row's sum of squared deviations from its mean, merging the lanes' partials."""
        w = self.w
        mean, m2, n = acc
        out = w.fresh("red")
        w.line(f"_, {out}, _ = tl.reduce(({mean}, {m2}, {n}), 1, helpers.welford_combine, keep_dims=True)")
        return out

    def _accumulate_online(self, m_acc: str, s_acc: str, v: str) -> None:
        """Fold a tile `v` (masked lanes -inf) into per-lane running max `m_acc` and sum of
        exp(x - max) `s_acc`: the sum so far is rescaled by exp(old max - new max). A lane whose
        max is still -inf has seen nothing (or only -inf) and keeps a sum of 0, where the formula
        would compute exp(-inf - -inf) = NaN; a NaN in x still propagates through both."""
        w = self.w
        m_new = w.assign("m", f"helpers.maximum({m_acc}, {v})", "online softmax: running max")
        empty = w.assign("e", f"{m_new} == float('-inf')")
        w.line(f"{s_acc} = tl.where({empty}, 0.0, {s_acc} * libdevice.exp({m_acc} - {m_new}) "
               f"+ libdevice.exp({v} - {m_new}))")
        w.line(f"{m_acc} = {m_new}")

    def _finish_online(self, m_acc: str, s_acc: str) -> tuple[str, str]:
        """Row max and row sum of exp(x - max) from the per-lane accumulators."""
        w = self.w
        m = w.assign("red", f"tl.reduce({m_acc}, 1, helpers.maximum, keep_dims=True)", "reduce_max")
        scaled = w.assign("v", f"tl.where({m} == float('-inf'), 0.0, {s_acc} * libdevice.exp({m_acc} - {m}))")
        return m, w.assign("red", f"tl.reduce({scaled}, 1, helpers.add, keep_dims=True)", "reduce_sum")

    def _finish_acc(self, red: Op, acc: tuple[str, str | None]) -> str:
        w = self.w
        name, index = acc
        if index is not None:
            out = w.fresh("red")
            w.line(f"_, {out} = tl.reduce(({name}, {index}), 1, helpers.{red.name}_combine, keep_dims=True)")
            return out
        return self._cast_result(red, w.assign("red", f"tl.reduce({name}, 1, {_combine(red.name)}, keep_dims=True)", red.name))

    def _store(self, v: Value, expr: str, coords: dict[int, Coord]) -> None:
        """Outputs are contiguous: a full value goes to its row-major index in S, a row value to
        its row's index."""
        role = self.role[v]
        index = self._contiguous_index(coords) if role == "full" else "xindex"
        self.w.store(v, index, expr, compute_dtype(v.type.dtype), _MASK[role])

    def _contiguous_index(self, coords: dict[int, Coord]) -> str:
        terms: list[str] = []
        literal, symbolic = 1, []   # product of the sizes of the dims inside the current one
        for d in range(len(self.shape) - 1, -1, -1):
            n = self.shape[d]
            if is_one(n):
                continue
            factors = ([str(literal)] if literal != 1 else []) + symbolic
            if coords[d].expr != "0":
                terms.append(" * ".join([coords[d].expr] + factors))
            if sympy.sympify(n).is_Integer:
                literal *= int(n)
            else:
                symbolic.append(self.w.size(n, f"size{d}"))
        return " + ".join(reversed(terms)) or "0"
