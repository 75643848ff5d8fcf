"""Reduction kernels: reduce_sum/prod/max/min over any set of axes, argmax/argmin over one.

The input's dims split into kept dims (enumerated by `xindex`, one output element each) and reduced
dims (enumerated by `rindex`); a program handles an [XBLOCK, RBLOCK] tile. Two strategies, chosen by
launch_heuristics.reduction_config from the reduced extent:

- persistent: RBLOCK covers the whole reduced extent, one load, one `tl.reduce`;
- looped: walk the extent in RBLOCK chunks, folding each chunk into an [XBLOCK, RBLOCK]
  accumulator elementwise, and reduce the accumulator once at the end.

Low-precision inputs accumulate in f32, f64 in f64, integers in at least int32 (wrapping like torch's
same-dtype sum); bool reductions run on 0/1 integers (sum/max = any, prod/min = all).
"""
from __future__ import annotations

from ..ir import Op
from ..ir.types import TensorType
from .kernel_writer import Coord, Kernel, KernelWriter
from .launch_heuristics import LaunchConfig, choose_launch, keeps_innermost
from .triton_types import compute_dtype, highest, literal, lowest, tl_dtype

BIG_INDEX = 2**62  # the index of a masked-out lane in argmax/argmin: loses every tie


def lane_index(rindex: str) -> str:
    """argmax/argmin: each lane's position along the reduced extent, BIG_INDEX where masked."""
    return f"tl.where(mask, tl.broadcast_to({rindex}, [XBLOCK, RBLOCK]).to(tl.int64), {BIG_INDEX})"


def _acc_dtype(dtype: str) -> str:
    c = compute_dtype(dtype)
    return "i32" if c in ("b1", "i8", "i16", "u8") else c


def _identity(op_name: str, acc: str) -> str:
    return {"reduce_sum": literal(0, acc), "reduce_prod": literal(1, acc),
            "reduce_max": lowest(acc), "reduce_min": highest(acc),
            "argmax": lowest(acc), "argmin": highest(acc)}[op_name]


def _combine(op_name: str) -> str:
    """The elementwise fold used by the looped accumulator and by tl.reduce."""
    return {"reduce_sum": "helpers.add", "reduce_prod": "helpers.multiply", "reduce_max": "helpers.maximum",
            "reduce_min": "helpers.minimum"}[op_name]


def reduction_kernel(op: Op, config: LaunchConfig | None = None) -> Kernel:
    """One reduction op alone. A reduction fused with the ops around it is a row kernel
    (codegen/row_kernel.py), which shares this module's accumulation rules."""
    x = op.inputs[0]
    out = op.results[0]
    shape = x.type.shape
    axes = list(op.attrs["axes"])
    kept = [d for d in range(len(shape)) if d not in axes]
    xnumel = TensorType("f32", [shape[d] for d in kept]).numel
    rnumel = TensorType("f32", [shape[d] for d in axes]).numel
    config = config or choose_launch("reduction", xnumel, rnumel, outer=keeps_innermost(shape, axes))
    is_arg = op.name in ("argmax", "argmin")
    acc = _acc_dtype(x.type.dtype)
    ident = _identity(op.name, acc)

    strategy = "persistent" if config.persistent else "looped"
    w = KernelWriter("reduction", f"{op.name} over axes {tuple(axes)}, {strategy}", axes=("x", "r"))
    xn, rn = w.size(xnumel, "xnumel"), w.size(rnumel, "rnumel")
    start = w.program_start()
    w.line(f"xindex = {start} + tl.arange(0, XBLOCK)[:, None]")
    w.line(f"xmask = xindex < {xn}")
    xcoords = w.decompose("xindex", [(d, shape[d]) for d in kept], "x", "x", "xsize")
    w.line("rbase = tl.arange(0, RBLOCK)[None, :]")
    w.line("if INDEX_64:")
    w.line("    rbase = rbase.to(tl.int64)")

    def load_chunk(rindex: str) -> tuple[str, str]:
        w.line(f"rmask = {rindex} < {rn}")
        rcoords = w.decompose(rindex, [(d, shape[d]) for d in axes], "r", "r", "rsize")
        coords: dict[int, Coord] = {**xcoords, **rcoords}
        w.line("mask = xmask & rmask")
        v = w.load(x, [coords[d] for d in range(len(shape))], "mask")
        if acc != compute_dtype(x.type.dtype):
            v = w.assign("v", f"{v}.to({tl_dtype(acc)})")
        return w.assign("v", f"tl.where(mask, {v}, {ident})", "masked lanes hold the identity"), rindex

    def index_block(rindex: str) -> str:
        return w.assign("i", lane_index(rindex))

    combine = "helpers." + op.name + "_combine" if is_arg else _combine(op.name)
    if config.persistent:
        v, rindex = load_chunk("rbase")
        if is_arg:
            i = index_block(rindex)
            w.line(f"_, result = tl.reduce(({v}, {i}), 1, {combine}, keep_dims=True)")
        else:
            w.line(f"result = {_reduce_call(combine, v)}")
    else:
        w.line(f"acc = tl.full([XBLOCK, RBLOCK], {ident}, {tl_dtype(acc)})")
        if is_arg:
            w.line(f"acc_index = tl.full([XBLOCK, RBLOCK], {BIG_INDEX}, tl.int64)")
        bound = rn if rn.isdigit() else f"helpers.loop_bound({rn})"
        w.line(f"for roffset in range(0, {bound}, RBLOCK):")
        with w.indented():
            w.line("rindex = roffset + rbase")
            v, rindex = load_chunk("rindex")
            if is_arg:
                i = index_block(rindex)
                w.line(f"acc, acc_index = {combine}(acc, acc_index, {v}, {i})")
            elif combine == "helpers.add":
                w.line(f"acc = acc + {v}")
            else:
                w.line(f"acc = {combine}(acc, {v})")
        if is_arg:
            w.line(f"_, result = tl.reduce((acc, acc_index), 1, {combine}, keep_dims=True)")
        else:
            w.line(f"result = {_reduce_call(combine, 'acc')}")
    w.store(out, "xindex", "result", "i64" if is_arg else acc, "xmask")
    return w.finish(config, xnumel)


def _reduce_call(combine: str, value: str) -> str:
    return f"tl.reduce({value}, 1, {combine}, keep_dims=True)"
