"""Kernels that move data by index arithmetic: index (row gather), gather, concat, pad.

Each iterates over its (contiguous) output like a pointwise kernel and computes, per output
element, where to read: through a loaded index (index, gather), through which input covers the
element (concat), or whether the element is inside the input at all (pad). Reads that must not
happen are masked off rather than branched around.
"""
from __future__ import annotations

import sympy

from ..ir import Op
from .kernel_writer import Coord, Kernel, KernelWriter
from .launch_heuristics import choose_launch
from .pointwise import concat_value, iteration_prelude
from .triton_types import compute_dtype, literal, tl_dtype


def _finish(w: KernelWriter, op: Op, value: str) -> Kernel:
    out = op.results[0]
    w.store(out, "xindex", value, compute_dtype(out.type.dtype), "xmask")
    numel = out.type.numel
    return w.finish(choose_launch("pointwise", numel), numel)


def _load_index(w: KernelWriter, idx, coords: list[Coord | None], dim_size) -> tuple[str, str]:
    """Load an index tensor as int64, wrap negative indices, and return (index, in-bounds mask).

    An index out of range reads nothing (the value is then undefined): torch raises there, a kernel
    cannot, and an unmasked read could fault."""
    i = w.load(idx, coords, "xmask")
    size = w.size(dim_size, "index_bound")
    i = w.assign("i", f"{i}.to(tl.int64)")
    i = w.assign("i", f"tl.where({i} < 0, {i} + {size}, {i})", "negative indices count from the end")
    ok = w.assign("ok", f"xmask & ({i} >= 0) & ({i} < {size})")
    return i, ok


def index_kernel(op: Op) -> Kernel:
    """out[a..., j..., b...] = x[a..., idx[j...], b...] along dim d."""
    x, idx = op.inputs
    d = op.attrs["dim"]
    out_shape = op.results[0].type.shape
    w = KernelWriter("index", f"index along dim {d}")
    c = iteration_prelude(w, out_shape)
    m = idx.type.rank
    i, ok = _load_index(w, idx, [c[d + k] for k in range(m)], x.type.shape[d])
    x_coords = ([c[k] for k in range(d)] + [Coord(i, "x")]
                + [c[d + m + k] for k in range(x.type.rank - d - 1)])
    return _finish(w, op, w.load(x, x_coords, ok))


def gather_kernel(op: Op) -> Kernel:
    """torch.gather: out[p] = x[p with dim d replaced by idx[p]]."""
    x, idx = op.inputs
    d = op.attrs["dim"]
    w = KernelWriter("gather", f"gather along dim {d}")
    c = iteration_prelude(w, op.results[0].type.shape)
    i, ok = _load_index(w, idx, [c[k] for k in range(idx.type.rank)], x.type.shape[d])
    x_coords = [Coord(i, "x") if k == d else c[k] for k in range(x.type.rank)]
    return _finish(w, op, w.load(x, x_coords, ok))


def concat_kernel(op: Op) -> Kernel:
    """Each output element comes from the one input whose range along `dim` covers it."""
    w = KernelWriter("concat", f"concat of {len(op.inputs)} along dim {op.attrs['dim']}")
    c = iteration_prelude(w, op.results[0].type.shape)
    return _finish(w, op, concat_value(w, op, c))


def pad_kernel(op: Op) -> Kernel:
    """Read the input at (output coordinate - low pad) where that lies inside it, else `value`."""
    x = op.inputs[0]
    out_dtype = op.results[0].type.dtype
    w = KernelWriter("pad", "constant pad")
    c = iteration_prelude(w, op.results[0].type.shape)
    coords: list[Coord | None] = []
    checks = ["xmask"]
    for k, ((lo, hi), size) in enumerate(zip(op.attrs["pads"], x.type.shape)):
        lo_s = w.size(lo, f"pad_low{k}")
        coord = c[k].expr if lo_s == "0" else f"({c[k].expr} - {lo_s})"
        coords.append(Coord(coord, "x"))
        if sympy.sympify(lo) != 0 or sympy.sympify(hi) != 0:
            checks.append(f"({coord} >= 0) & ({coord} < {w.size(size, f'in_size{k}')})")
    inside = w.assign("inside", " & ".join(checks))
    loaded = w.load(x, coords, inside)
    cdt = compute_dtype(out_dtype)
    fill = literal(op.attrs["value"], out_dtype)
    return _finish(w, op, w.assign("t", f"tl.where({inside}, {loaded}, {fill}).to({tl_dtype(cdt)})"))
