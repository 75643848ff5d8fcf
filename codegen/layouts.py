"""The strides the wrapper knows at compile time, so it can tell which reshapes are views.

A reshape is a torch view when the input's strides allow one, else the wrapper copies the input
contiguous first. For a tensor whose layout only shows at run time (a graph input, an extern's
result) the wrapper asks at run time (`view_or_none`, a copy kernel behind an `if`). For the
buffers it allocates itself, and the views it takes of them, the layout is known when the
wrapper is written: a reshape is then a plain `.view` (attention's q/k/v, slices of the QKV
product split into heads) or a copy every call, with no run-time test in the wrapper's text.

A buffer may also be allocated in another dim order than its shape's (attention writes [B,S,H,D]
memory for its [B,H,S,D] result, so the heads -> hidden permute and reshape after it are views):
`in_order` gives its strides. Strides are sympy expressions in elements; views follow torch's
own rules (`permuted`, `sliced`, `expanded`, and `viewed`, a transcription of ATen's
computeStride). Where a symbolic size leaves the answer open, `viewed` says UNKNOWN and the
wrapper asks at run time, as it does for inputs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Union

import sympy

from ..ir import Op
from ..ir.types import TensorType
from .pointwise import pointwise_kernel

if TYPE_CHECKING:
    from .wrapper import WrapperBuilder

Strides = tuple[sympy.Expr, ...]
NO_VIEW = "no view"      # torch cannot view it: the wrapper copies
UNKNOWN = "unknown"      # symbolic sizes leave it open: the wrapper asks at run time


def _dims(shape: Sequence) -> list[sympy.Expr]:
    return [sympy.sympify(d) for d in shape]


def contiguous(shape: Sequence) -> Strides:
    out, step = [], sympy.Integer(1)
    for d in reversed(_dims(shape)):
        out.append(step)
        step = step * d
    return tuple(reversed(out))


def in_order(shape: Sequence, order: Sequence[int]) -> Strides:
    """Strides of `torch.empty([shape[i] for i in order]).permute(inverse(order))`: the buffer
    of `shape` whose memory holds its dims in `order` (outermost first)."""
    dims = _dims(shape)
    memory = contiguous([dims[i] for i in order])
    out: list[sympy.Expr] = [sympy.Integer(0)] * len(dims)
    for pos, i in enumerate(order):
        out[i] = memory[pos]
    return tuple(out)


def inverse(order: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(range(len(order)), key=lambda i: order[i]))


def is_contiguous(shape: Sequence, strides: Strides) -> bool:
    """torch's is_contiguous: size-1 dims may have any stride."""
    want = contiguous(shape)
    return all(d == 1 or sympy.simplify(s - w) == 0 for d, s, w in zip(_dims(shape), strides, want))


def permuted(strides: Strides, dims: Sequence[int]) -> Strides:
    return tuple(strides[d] for d in dims)


def sliced(strides: Strides, dim: int, step) -> Strides:
    return tuple(s * step if i == dim else s for i, s in enumerate(strides))


def expanded(shape: Sequence, strides: Strides, new_shape: Sequence) -> Strides:
    lead = len(new_shape) - len(shape)
    old = _dims(shape)
    out = [sympy.Integer(0)] * lead
    for i, (d, s) in enumerate(zip(old, strides)):
        out.append(sympy.Integer(0) if d == 1 and sympy.sympify(new_shape[lead + i]) != 1 else s)
    return tuple(out)


def viewed(shape: Sequence, strides: Strides, new_shape: Sequence) -> Union[Strides, str]:
    """The strides of `t.view(new_shape)` for a tensor of `shape` and `strides`, NO_VIEW when
    torch would refuse (the data is not laid out as the new shape needs), UNKNOWN when symbolic
    sizes leave that open. ATen's computeStride, dim by dim from the innermost: each run of
    dims that is contiguous in memory ("chunk") must be exactly covered by new dims."""
    old, new = _dims(shape), _dims(new_shape)
    if is_contiguous(old, strides):
        return contiguous(new)   # always a view, symbolic or not
    values = old + new + [sympy.sympify(s) for s in strides]
    if not all(v.is_Integer for v in values):
        return UNKNOWN
    o, st, n = [int(d) for d in old], [int(s) for s in strides], [int(d) for d in new]
    if 0 in o:
        return contiguous(new)
    out = [0] * len(n)
    view_d = len(n) - 1
    chunk_base = st[-1] if st else 1
    tensor_numel = view_numel = 1
    for tensor_d in range(len(o) - 1, -1, -1):
        tensor_numel *= o[tensor_d]
        if tensor_d == 0 or (o[tensor_d - 1] != 1 and st[tensor_d - 1] != tensor_numel * chunk_base):
            while view_d >= 0 and (view_numel < tensor_numel or n[view_d] == 1):
                out[view_d] = view_numel * chunk_base
                view_numel *= n[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return NO_VIEW
            if tensor_d > 0:
                chunk_base = st[tensor_d - 1]
                tensor_numel = view_numel = 1
    if view_d != -1:
        return NO_VIEW
    return tuple(sympy.Integer(s) for s in out)


# ----------------------------------------------------------------------------- the wrapper's views

def emit_view(b: "WrapperBuilder", op: Op) -> None:
    """One view op in the wrapper `b` writes, its result's strides recorded when known."""
    x = op.inputs[0]
    src, dst = b.names[x], b.names[op.result]
    known = b.strides.get(x)
    a = op.attrs
    if op.name == "permute":
        b.line(f"{dst} = {src}.permute({', '.join(map(str, a['dims']))})")
        new = None if known is None else permuted(known, a["dims"])
    elif op.name == "expand":
        b.line(f"{dst} = {src}.expand({b.sizes.shape(a['shape'])})")
        new = None if known is None else expanded(x.type.shape, known, a["shape"])
    elif op.name == "slice":
        index = ":, " * a["dim"]
        step = f":{a['step']}" if a["step"] != 1 else ""
        b.line(f"{dst} = {src}[{index}{b.sizes.ref(a['start'])}:{b.sizes.ref(a['end'])}{step}]")
        new = None if known is None else sliced(known, a["dim"], a["step"])
    else:
        new = _reshape(b, op, src, dst, known)
    if new is not None:
        b.strides[op.result] = new


def _reshape(b: "WrapperBuilder", op: Op, src: str, dst: str, known: Strides | None) -> Strides | None:
    """A view where the input's layout allows one, else a copy kernel to a contiguous buffer and
    a view of that: decided here when the layout is known, else at run time in the wrapper."""
    x = op.inputs[0]
    shape = b.sizes.shape(op.result.type.shape)
    verdict = UNKNOWN if known is None else viewed(x.type.shape, known, op.result.type.shape)
    if verdict not in (NO_VIEW, UNKNOWN):
        b.line(f"{dst} = {src}.view({shape})")
        return verdict
    copy = Op("copy", [x], {}, [TensorType(x.type.dtype, x.type.shape, x.type.device)])
    indent = 1
    if verdict == UNKNOWN:
        b.line(f"{dst} = view_or_none({src}, {shape})")
        b.line(f"if {dst} is None:  # {src}'s strides allow no view: copy it contiguous, view that")
        indent = 2
    else:
        b.num_kernels += 1   # a copy every call (conditional ones are not counted)
    b.alloc(copy.result, dst, indent=indent)
    b.launch(pointwise_kernel([copy]), "copy", {x: src, copy.result: dst}, indent=indent)
    b.line(f"{dst} = {dst}.view({shape})", indent=indent)
    return None if verdict == UNKNOWN else contiguous(op.result.type.shape)
