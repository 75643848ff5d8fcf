"""View canonicalization rules: views that do nothing, and chains that compose into one view.

Views only move elements, so every rule here is exact for any dtype and value:
  reshape/expand to the operand's own shape -> the operand
  permute by the identity -> the operand
  slice of a whole dim (start 0, end = size, step 1) -> the operand
  reshape(reshape x) -> reshape x (both are row-major reinterpretations)
  permute(permute x, p), q -> permute x by p[q[i]] (or x, when that is the identity)
"""
from __future__ import annotations

from ..ir import Op, Value
from ..ir.types import as_dim, dims_equal, shapes_equal
from .rewrite import Rewriter


def _shape_attr(op: Op):
    return tuple(as_dim(d) for d in op.attrs["shape"])


def view_noop(op: Op, rw: Rewriter) -> Value | None:
    """reshape/expand to the same shape, identity permute, full-range slice."""
    x = op.inputs[0] if op.inputs else None
    if op.name in ("reshape", "expand") and shapes_equal(_shape_attr(op), x.type.shape):
        return x
    if op.name == "permute" and list(op.attrs["dims"]) == list(range(x.type.rank)):
        return x
    if op.name == "slice":
        a = op.attrs
        size = x.type.shape[a["dim"]]
        if a["step"] == 1 and dims_equal(as_dim(a["start"]), as_dim(0)) and dims_equal(as_dim(a["end"]), size):
            return x
    return None


def reshape_chain(op: Op, rw: Rewriter) -> Value | None:
    inner = rw.chained(op, "reshape")
    if inner is None:
        return None
    x = inner.inputs[0]
    if shapes_equal(_shape_attr(op), x.type.shape):
        return x
    return rw.create("reshape", [x], {"shape": op.attrs["shape"]})


def permute_chain(op: Op, rw: Rewriter) -> Value | None:
    inner = rw.chained(op, "permute")
    if inner is None:
        return None
    x = inner.inputs[0]
    p, q = list(inner.attrs["dims"]), list(op.attrs["dims"])
    dims = tuple(p[i] for i in q)  # output dim i = middle dim q[i] = input dim p[q[i]]
    if list(dims) == list(range(len(dims))):
        return x
    return rw.create("permute", [x], {"dims": dims})


VIEW_RULES = (view_noop, reshape_chain, permute_chain)
