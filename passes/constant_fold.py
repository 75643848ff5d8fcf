"""Constant folding: an op whose operands are all `full` ops becomes one `full`.

The value comes from the op table's `reference` (torch itself), evaluated on CPU, so it is what
eager torch computes:
  * pointwise ops are evaluated once on 0-d tensors (elementwise, so any shape, symbolic ones
    included, gives the same value per element; the IR has no mixed-dtype promotion to differ);
  * reshape/permute/expand/slice of a `full` keep its value;
  * any other op (reductions, matmul, concat, pad, index, ...) is evaluated on the real operand
    tensors if every shape is concrete and small, and folded only if the result is uniform, bit
    for bit (so concat of +0.0 and -0.0, or pad with another value, is left alone).
"""
from __future__ import annotations

import torch

from ..ir import Op, Value
from ..ir.interpreter import concretize
from .rewrite import Rewriter, VIEW_OPS, _torch_dtype

# Elements: evaluating larger constants at compile time costs more than it saves.
FOLD_LIMIT = 4096

_NOT_FOLDABLE = frozenset({"full", "iota", "extern", "fused"})  # a region may have several results


def fold_constant(op: Op, rw: Rewriter) -> Value | None:
    if op.name in _NOT_FOLDABLE or not op.inputs:
        return None
    values = [rw.constant(v) for v in op.inputs]
    if any(v is None for v in values):
        return None
    out = op.result.type
    out_dtype = _torch_dtype(out.dtype)
    if out_dtype is None:
        return None
    if op.name in VIEW_OPS:
        value = values[0]
    elif op.opdef.is_pointwise:
        value = _evaluate(op, values, [()] * len(values), (), out_dtype)
    else:
        shapes = [_concrete(v.type.shape) for v in op.inputs] + [_concrete(out.shape)]
        if any(s is None or _numel(s) > FOLD_LIMIT or _numel(s) == 0 for s in shapes):
            return None
        value = _evaluate(op, values, shapes[:-1], shapes[-1], out_dtype)
    if value is None:
        return None
    return rw.create("full", [], {"value": value}, [out])


def _concrete(shape) -> tuple[int, ...] | None:
    return tuple(int(d) for d in shape) if all(d.is_Integer for d in shape) else None


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _evaluate(op: Op, values: list, in_shapes: list, out_shape: tuple, out_dtype: torch.dtype):
    """The op's uniform result value as a Python scalar, or None (not uniform, or torch raised,
    e.g. integer division by zero or an index out of range)."""
    try:
        xs = [torch.full(s, v, dtype=_torch_dtype(x.type.dtype))
              for s, v, x in zip(in_shapes, values, op.inputs)]
        attrs = concretize(op.attrs, {})
        res = op.opdef.reference(xs, attrs, [(out_dtype, out_shape, "cpu")])
        res = res[0] if isinstance(res, tuple) else res
        res = res.to(out_dtype)
    except Exception:  # noqa: BLE001 - whatever torch rejects stays in the graph, unfolded
        return None
    if tuple(res.shape) != tuple(out_shape):
        return None
    flat = res.reshape(-1).contiguous()
    if flat.numel() > 1:
        bits = flat.view(torch.uint8).reshape(flat.numel(), -1)
        if not bool((bits == bits[0]).all()):
            return None
    return flat[0].item()
