"""Iteration domains: which ops can share one kernel, and what each member computes per element.

A kernel made from a `fused` region walks one *domain*: a shape `S` and the axes `A` of `S` its
reductions reduce (empty for a pointwise region). Every member of a region computes values of one
of three *roles* in that domain:

- ``full``: a value of shape `S`, one per element (pointwise ops over `S`, reduction inputs);
- ``row``: a value with one element per output row, i.e. of `S` reduced over `A`, either with the
  reduced dims kept as size 1 (`[n,1]`, which broadcasts back over `S` in a full op) or dropped
  (`[n]`); reductions produce these, and pointwise ops over them (`rsqrt(var + eps)`) are row ops;
- ``bcast``: a value of a smaller shape that broadcasts into `S` (a bias cast to f32): computed
  per element like a full value, i.e. recomputed for every row, which costs a few instructions
  and saves a kernel; such a value must have no reader outside the region (fuse_groups checks);
- a reduction itself, whose input is ``full`` and whose result is ``row``.

codegen turns a domain with reductions into a row kernel (codegen/row_kernel.py): a program holds a
block of rows, loops (or not) over the reduced extent, and keeps every row value in registers.
Shapes and axes compare with sympy, so symbolic sizes fuse when they are provably equal.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..ir import Op
from ..ir.types import Dim, broadcasts_to, dims_equal, shapes_equal

POINTWISE_KINDS = ("unary", "binary", "ternary", "cast")


@dataclass(frozen=True)
class Domain:
    shape: tuple[Dim, ...]
    axes: tuple[int, ...] = ()      # reduced axes of `shape`; () for a pointwise domain

    @property
    def reduces(self) -> bool:
        return bool(self.axes)

    def row_shape(self, keepdim: bool) -> tuple[Dim, ...]:
        if keepdim:
            return tuple(1 if i in self.axes else d for i, d in enumerate(self.shape))
        return tuple(d for i, d in enumerate(self.shape) if i not in self.axes)

    def role(self, shape) -> str | None:
        """"full", "row" (keepdim form), "rowdrop" (reduced dims dropped), "bcast" (broadcasts
        into the full shape), or None if a value of `shape` has no place in this domain."""
        return _role(self, tuple(shape))

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"[{dims}]" + (f" reducing axes {self.axes}" if self.axes else "")


@lru_cache(maxsize=16384)
def _role(dom: Domain, shape: tuple) -> str | None:
    # Remembered: fuse_groups asks for the roles of every member's values again at each merge
    # attempt (a merge can change them), ~70,000 questions on GPT-2 over a few hundred shapes.
    if shapes_equal(shape, dom.shape):
        return "full"
    if dom.reduces:
        if shapes_equal(shape, dom.row_shape(True)):
            return "row"
        if shapes_equal(shape, dom.row_shape(False)):
            return "rowdrop"
        if len(shape) <= len(dom.shape) and all(dims_equal(d, 1) for d in shape):
            # One value for everything (a loss's 1/count): the same in every row, so a row
            # value, which row ops may read too; as bcast it could only feed full ops.
            return "row"
    return "bcast" if broadcasts_to(shape, dom.shape) else None


def is_pointwise(op: Op) -> bool:
    return op.opdef.kind in POINTWISE_KINDS or op.name == "iota"


def is_row_reduction(op: Op) -> bool:
    """A reduction that can be a row kernel's member: it reduces some axes, none provably of size
    1 (then a row value and a full value would have the same shape and roles would be ambiguous;
    canonicalize removes such reductions anyway)."""
    if op.opdef.kind != "reduction" or len(op.results) != 1:
        return False
    axes = tuple(op.attrs["axes"])
    shape = op.inputs[0].type.shape
    return bool(axes) and all(not dims_equal(shape[a], 1) for a in axes)


def domain_of(op: Op) -> Domain:
    """The domain an op spans when it is alone in a group."""
    if op.opdef.kind == "reduction":
        return Domain(tuple(op.inputs[0].type.shape), tuple(op.attrs["axes"]))
    return Domain(tuple(op.result.type.shape))


def merge(a: Domain, b: Domain) -> Domain | None:
    """The domain of a group holding the ops of both, or None when no kernel can walk both.

    Two pointwise domains merge when their shapes are equal or one broadcasts into the other (the
    larger one is the domain). A pointwise domain joins a reducing one when its shape is the full
    shape, a row shape or broadcasts into the full shape. Two reducing domains must agree on
    shape and axes."""
    if not a.reduces and not b.reduces:
        if broadcasts_to(a.shape, b.shape):
            return b
        return a if broadcasts_to(b.shape, a.shape) else None
    if a.reduces and b.reduces:
        same = shapes_equal(a.shape, b.shape) and a.axes == b.axes
        return a if same else None
    red, pw = (a, b) if a.reduces else (b, a)
    return red if red.role(pw.shape) is not None else None
