"""What an op does besides computing its results: the facts DCE, CSE and canonicalize must respect.

Every IR op is pure except `extern`, which calls an ATen overload. The ATen schema says whether it
writes to an argument (``aten.copy_``: ``Tensor(a!) self``), and the op's tags say whether it draws
random numbers (``Tag.nondeterministic_seeded``). An extern whose target cannot be resolved is
treated as having every effect: wrong guesses here are miscompiles, not missed optimizations.
"""
from __future__ import annotations

import functools

import torch

from ..ir import Graph, Op, Value
from ..ir.ops import ExternArg, resolve_target

# Ops with no mutable schema and no used result that must still run: asserts and friends (the
# same idea as torch.fx's side-effectful function list).
_SIDE_EFFECT_PREFIXES = ("aten._assert", "aten.sym_constrain_range", "aten._print")


@functools.lru_cache(maxsize=None)
def _target(target: str):
    try:
        return resolve_target(target)
    except ValueError:
        return None


def _schema(op: Op):
    fn = _target(op.attrs.get("target", ""))
    return getattr(fn, "_schema", None)


def is_mutating(op: Op) -> bool:
    """An extern that writes to one of its arguments (or that we cannot look up)."""
    if op.name != "extern":
        return False
    schema = _schema(op)
    return schema is None or schema.is_mutable


def is_nondeterministic(op: Op) -> bool:
    """An extern that draws random numbers: two calls with equal operands differ."""
    if op.name != "extern":
        return False
    fn = _target(op.attrs.get("target", ""))
    if fn is None:
        return True
    return torch.Tag.nondeterministic_seeded in getattr(fn, "tags", ())


def has_side_effects(op: Op) -> bool:
    """Must run even when no result is used (DCE keeps it)."""
    if op.name != "extern":
        return False
    return is_mutating(op) or op.attrs.get("target", "").startswith(_SIDE_EFFECT_PREFIXES)


def returns_alias(op: Op) -> bool:
    """An extern whose result may share storage with an operand (``aten.t``: ``Tensor(a)``), or
    that we cannot look up. Views of this kind make two values one buffer, as IR view ops do."""
    if op.name != "extern":
        return False
    schema = _schema(op)
    return schema is None or any(r.alias_info is not None for r in schema.returns)


def written_operands(op: Op) -> set[int]:
    """Indices of the operands a mutating extern writes to (all of them if unsure)."""
    if not is_mutating(op):
        return set()
    schema = _schema(op)
    everything = set(range(len(op.inputs)))
    if schema is None:
        return everything
    out: set[int] = set()
    args = list(op.attrs.get("args", ()))
    kwargs = dict(op.attrs.get("kwargs", {}))
    for i, arg in enumerate(schema.arguments):
        info = arg.alias_info
        if info is None or not info.is_write:
            continue
        given = args[i] if i < len(args) and not arg.kwarg_only else kwargs.get(arg.name)
        found = _extern_args(given)
        if given is not None and not found and not isinstance(given, (int, float, bool, str)):
            return everything  # a written argument we cannot map to an operand: assume the worst
        out |= found
    return out


def _extern_args(obj) -> set[int]:
    if isinstance(obj, ExternArg):
        return {obj.index}
    if isinstance(obj, (list, tuple)):
        return set().union(*(_extern_args(o) for o in obj)) if obj else set()
    if isinstance(obj, dict):
        return set().union(*(_extern_args(o) for o in obj.values())) if obj else set()
    return set()


def mutated_values(g: Graph) -> set[Value]:
    """Values some extern writes to. Passes must not merge, forward or duplicate these: a read
    before the write and a read after it see different data."""
    out: set[Value] = set()
    for op in g.ops:
        for i in written_operands(op):
            if i < len(op.inputs):
                out.add(op.inputs[i])
    return out
