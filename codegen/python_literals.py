"""Extern arguments (ints, lists, dtypes, symbolic sizes, operand placeholders, ...) as Python source.

The wrapper spells an ATen call's arguments out so that the call reads like eager code:
`torch.ops.aten.convolution.default(x, w, None, [1, 1], ...)`. The kinds of value handled are the
ones the IR printer can print (ir/printer.py format_attr), so every valid graph has a spelling.
"""
from __future__ import annotations

import math
from typing import Callable

import sympy
import torch

from ..ir.ops import ExternArg


def python_literal(obj, operand: Callable[[int], str], size: Callable[[sympy.Expr], str]) -> str:
    def lit(o) -> str:
        if isinstance(o, ExternArg):
            return operand(o.index)
        if o is None or isinstance(o, (bool, int, str)):
            return repr(o)
        if isinstance(o, float):
            if math.isnan(o):
                return 'float("nan")'
            if math.isinf(o):
                return 'float("inf")' if o > 0 else 'float("-inf")'
            return repr(o)
        if isinstance(o, sympy.Expr):
            return size(o)
        if isinstance(o, (torch.dtype, torch.layout, torch.memory_format)):
            return str(o)  # torch.float32, torch.strided, torch.contiguous_format
        if isinstance(o, torch.device):
            return f"torch.device({str(o)!r})"
        if isinstance(o, list):
            return "[" + ", ".join(lit(x) for x in o) + "]"
        if isinstance(o, tuple):
            inner = ", ".join(lit(x) for x in o)
            return f"({inner},)" if len(o) == 1 else f"({inner})"
        if isinstance(o, dict) and all(isinstance(k, str) for k in o):
            return "{" + ", ".join(f"{k!r}: {lit(v)}" for k, v in o.items()) + "}"
        raise TypeError(f"extern argument {o!r} of type {type(o).__name__} has no Python spelling")

    return lit(obj)
