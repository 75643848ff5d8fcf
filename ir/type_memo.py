"""infer_types: an op's type rule, remembered per (op, operand types, attributes).

The verifier runs every op's type rule after every pass, and nearly every op reaches the next pass
unchanged: a GPT-2 graph re-derived the same ~1,500 result types a dozen times per compile (a
fifth of the verifier's time, most of it sympy broadcasting). A type rule is a pure function of
the operand types and the attributes, so its answer for a key it has seen is the answer it would
give again. The key holds only immutable values: operand TensorTypes (frozen) and attributes built
of None, bools, numbers, strings, sympy expressions, torch dtypes/devices and (nested) lists,
tuples and dicts of those. An op with any other attribute (a region's body Graph, an extern's
argument placeholders) is not remembered, its rule simply runs. A rule that raises is not
remembered either: the error is re-raised every time, as before.
"""
from __future__ import annotations

from typing import Any

import sympy
import torch

from .ops import OpDef
from .types import TensorType

MAX_ENTRIES = 1 << 16  # emptied when full: a bound on memory, never a correctness matter

_memo: dict[tuple, list[TensorType] | None] = {}
_ATOMS = (type(None), bool, int, float, str, sympy.Basic, torch.dtype, torch.device, torch.layout,
          torch.memory_format)
_PLAIN = frozenset({type(None), bool, int, float, str, sympy.Integer, torch.dtype})  # the usual ones


_MISS = object()


class _NotMemoizable(Exception):
    pass


def _freeze(v: Any) -> Any:
    # The type goes into the key: 1, 1.0, True and sympy.Integer(1) compare equal but a rule may
    # treat them differently (an int fill value vs a float one).
    t = type(v)
    if t in _PLAIN or isinstance(v, _ATOMS):
        return (t, v)
    if t is tuple or t is list:
        return (t, tuple([_freeze(x) for x in v]))
    if t is dict:
        return (t, tuple([(k, _freeze(x)) for k, x in v.items()]))
    raise _NotMemoizable


def infer_types(opdef: OpDef, types: list[TensorType], attrs: dict) -> list[TensorType] | None:
    """opdef.type_rule(types, attrs), from the memo when this exact question was asked before.
    Callers must not mutate the returned list (the verifier only reads it)."""
    try:
        # The rule function itself, not the op's name: an op table edited at run time (tests
        # register ops) must not be answered from another rule's memo.
        key = (opdef.type_rule, tuple(types), _freeze(attrs))
        hit = _memo.get(key, _MISS)
    except (_NotMemoizable, TypeError):  # TypeError: something unhashable after all
        return opdef.type_rule(types, attrs)
    if hit is not _MISS:
        return hit
    result = opdef.type_rule(types, attrs)
    if len(_memo) >= MAX_ENTRIES:
        _memo.clear()
    _memo[key] = result
    return result
