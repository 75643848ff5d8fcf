"""Pointwise kernels: a region of pointwise ops (plus `full`, `iota` and `concat`) over one iteration shape.

The region is a list of ops in graph order; values produced outside it are loaded (broadcast to the
iteration shape), the listed `outputs` are stored. compile_graph passes one op at a time today; a
fusion pass will pass several, and nothing here changes.
"""
from __future__ import annotations

import sympy

from typing import Sequence

from ..ir import Op, Value
from ..ir.types import TensorType, broadcasts_to, shapes_equal
from .kernel_writer import Coord, Kernel, KernelWriter, is_one
from .launch_heuristics import choose_launch
from .pointwise_ops import lower_pointwise
from .triton_types import compute_dtype, convert, literal, tl_dtype

REGION_OPS = ("full", "iota")  # non-pointwise-kind ops a pointwise region can hold


def can_lower(op: Op) -> bool:
    return op.opdef.is_pointwise or op.name in REGION_OPS


def iteration_prelude(w: KernelWriter, shape) -> dict[int, Coord]:
    """pid, xindex, xmask and one coordinate per output dim (over the whole output shape)."""
    numel = w.size(TensorType("f32", shape).numel, "xnumel")
    start = w.program_start()
    w.line(f"xindex = {start} + tl.arange(0, XBLOCK)")
    w.line(f"xmask = xindex < {numel}")
    return w.decompose("xindex", list(enumerate(shape)), "x", "x", "xsize")


def broadcast_coords(value: Value, coords: dict[int, Coord], rank: int) -> list[Coord | None]:
    """Coordinates for each dim of `value` read in an iteration space of `rank` dims
    (numpy broadcasting: `value`'s dims align with the trailing ones)."""
    lead = rank - value.type.rank
    return [coords[lead + d] for d in range(value.type.rank)]


def region_inputs(ops: Sequence[Op]) -> list[Value]:
    produced = {r for op in ops for r in op.results}
    seen: list[Value] = []
    for op in ops:
        for v in op.inputs:
            if v not in produced and v not in seen:
                seen.append(v)
    return seen


def concat_value(w: KernelWriter, op: Op, c: dict[int, Coord], mask: str = "xmask",
                 env: dict[Value, str] | None = None) -> str:
    """A `concat` over the block whose coordinates `c` index its result: each element comes
    from the operand whose range along `dim` covers it, loaded at the shifted coordinate and
    masked to that range (a read outside it must not happen). An operand already in `env` (a
    constant of a fused region) needs no load: it is the same everywhere."""
    d = op.attrs["dim"]
    pos = c[d].expr
    start = 0
    pieces: list[tuple[str, str]] = []
    for k, v in enumerate(op.inputs):
        if sympy.sympify(v.type.shape[d]) == 0:
            continue  # an empty piece covers nothing
        end = start + v.type.shape[d]
        lo, hi = w.size(start, f"start{k}"), w.size(end, f"end{k}")
        inside = w.assign("inside", f"({pos} >= {lo}) & ({pos} < {hi})")
        if env is not None and v in env:
            pieces.append((inside, env[v]))
        else:
            shifted = Coord(pos if lo == "0" else f"({pos} - {lo})", c[d].axis)
            coords = [shifted if k2 == d else c[k2] for k2 in range(v.type.rank)]
            pieces.append((inside, w.load(v, coords, f"{mask} & {inside}")))
        start = end
    value = pieces[-1][1]
    for inside, loaded in reversed(pieces[:-1]):
        value = f"tl.where({inside}, {loaded}, {value})"
    return w.assign("t", value, "concat")


def emit_op(w: KernelWriter, op: Op, env: dict[Value, str], coords: dict[int, Coord]) -> str:
    """The Triton expression for one pointwise op (or `full`/`iota`) over the writer's block,
    whose dims `coords` index (a reduction prologue has [XBLOCK, RBLOCK] blocks)."""
    out = op.results[0].type
    cdt = tl_dtype(compute_dtype(out.dtype))
    block = w.block_shape
    if op.name == "full":
        value = op.attrs["value"]
        if isinstance(value, sympy.Expr) and not value.is_Number:
            # full[value=s0] (e.g. mean over a dynamic dim divides by its size): a runtime argument.
            return f"tl.full({block}, 0, {cdt}) + {w.size(value, 'fill')}"
        return f"tl.full({block}, {literal(value, out.dtype)}, {cdt})"
    if op.name == "iota":
        # An iota smaller than the block broadcasts into it (its dims align with the trailing
        # ones); along a dim of size 1 it is 0 everywhere.
        dim = op.attrs["dim"]
        c = "0" if is_one(out.shape[dim]) else coords[dim + len(coords) - out.rank].expr
        return f"tl.full({block}, 0, {cdt})" if c == "0" else f"{c}.to({cdt})"
    data = op.inputs[1:] if op.name == "where" else op.inputs
    return lower_pointwise(op.name, [env[v] for v in op.inputs], data[0].type.dtype, op.attrs)


def rounded(expr: str, dtype: str) -> str:
    """A value computed in f32 for a low-precision op, rounded to the op's dtype and back.

    An IR op of dtype bf16 yields a bf16 value (what the interpreter and eager compute); inside a
    fused kernel nothing goes through memory, so the rounding that a store would do is done here.
    Without it a fused bf16 chain is *more* precise than eager, and a later cancellation (a sum of
    values of both signs) turns that one-ulp difference into a visible error."""
    cdt = compute_dtype(dtype)
    return expr if cdt == dtype else f"{convert(expr, dtype)}.to({tl_dtype(cdt)})"


def emit_rounded(w: KernelWriter, op: Op, env: dict[Value, str], coords: dict[int, Coord]) -> str:
    """emit_op with the result rounded to its dtype (casts round themselves)."""
    expr = emit_op(w, op, env, coords)
    return expr if op.name == "cast" else rounded(expr, op.result.type.dtype)


def pointwise_kernel(ops: Sequence[Op], outputs: Sequence[Value] | None = None) -> Kernel:
    outputs = list(outputs) if outputs is not None else [r for op in ops[-1:] for r in op.results]
    shape = outputs[0].type.shape
    w = KernelWriter("pointwise", "pointwise: " + ", ".join(op.name for op in ops))
    coords = iteration_prelude(w, shape)
    env: dict[Value, str] = {}
    # A concat loads its own operands, at shifted coordinates (concat_value); other readers of an
    # input load it at the element's own.
    direct = {v for op in ops if op.name != "concat" for v in op.inputs}
    for v in region_inputs(ops):
        if v in direct:
            env[v] = w.load(v, broadcast_coords(v, coords, len(shape)), "xmask")
    for op in ops:
        if op.name == "concat":
            env[op.results[0]] = concat_value(w, op, coords, env=env)
        else:
            env[op.results[0]] = w.assign("t", emit_rounded(w, op, env, coords), op.name)
    for v in outputs:
        w.store(v, "xindex", env[v], compute_dtype(v.type.dtype), "xmask")
    numel = TensorType("f32", shape).numel
    return w.finish(choose_launch("pointwise", numel), numel)


def fused_pointwise_kernel(body) -> Kernel | None:
    """One kernel for a region body (ir `fused` op) that is a pointwise chain over one iteration
    space: every op lowerable here with one result of the outputs' shape, every output computed
    by the body (not a parameter passed through) and yielded once. None otherwise: the wrapper
    then emits the body op by op."""
    outs = list(body.outputs)
    if not outs or not body.ops or len(set(outs)) != len(outs) or any(v.producer is None for v in outs):
        return None
    shape = outs[0].type.shape
    if not all(shapes_equal(v.type.shape, shape) for v in outs):
        return None
    # A constant only a concat reads is one of its pieces: its shape need not broadcast.
    readers: dict[Value, set[str]] = {}
    for op in body.ops:
        for v in op.inputs:
            readers.setdefault(v, set()).add(op.name)
    for op in body.ops:
        if op.name == "full" and readers.get(op.result) == {"concat"}:
            continue
        concat = op.name == "concat"
        if not (can_lower(op) or concat) or len(op.results) != 1:
            return None
        # A concat reads its operands from memory (or constants) at shifted coordinates: none may
        # be computed in the body.
        if concat and any(v.producer is not None and v.producer.name != "full" for v in op.inputs):
            return None
        # An op of a smaller shape that broadcasts into the iteration space (a bias cast to f32)
        # is recomputed per element: its operands broadcast into the space the same way (numpy
        # broadcasting is transitive); so is an iota (emit_op aligns its dim). A concat's
        # coordinates are those of its own shape, so it must span the space exactly.
        if not shapes_equal(op.result.type.shape, shape) and \
                (concat or not broadcasts_to(op.result.type.shape, shape)):
            return None
    return pointwise_kernel(body.ops, outs)
