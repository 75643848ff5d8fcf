"""Identifiers in the generated wrapper: unique, valid Python, named after what they hold.

IR values keep their IR names (`%x` -> `x`, `%3` -> `buf3`); symbolic sizes are the symbols
themselves (`s0`) or, for compound expressions, `d0 = 64*s0` computed once at the top of `call`.
"""
from __future__ import annotations

import keyword
import re

import sympy

from .size_printer import size_to_python

# Names the generated module defines or imports at module level.
MODULE_NAMES = ("torch", "triton", "tl", "cdiv", "helpers", "libdevice", "needs_int64", "view_or_none",
                "extern_results", "helpers_for", "libdevice_for", "INTERPRET", "DEVICE", "call",
                "inputs", "max", "min", "abs", "float", "range")


class Namer:
    def __init__(self, reserved=()):
        self.used: set[str] = set(MODULE_NAMES) | set(keyword.kwlist) | set(reserved)

    def claim(self, want: str) -> str:
        base = re.sub(r"\W", "_", want) or "v"
        if base[0].isdigit():
            base = "v" + base
        name, n = base, 1
        while name in self.used:
            name = f"{base}_{n}"
            n += 1
        self.used.add(name)
        return name


class SizeNames:
    """Python expressions for sizes inside `call`; compound ones are hoisted into named locals."""

    def __init__(self, namer: Namer, symbols: list[sympy.Symbol]):
        self.namer = namer
        self.symbol_names = {s: str(s) for s in symbols}
        self.definitions: list[tuple[str, str]] = []   # (name, python expression), in first-use order
        self._named: dict[sympy.Expr, str] = {}

    def ref(self, expr) -> str:
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return str(int(expr))
        if expr in self.symbol_names:
            return self.symbol_names[expr]
        if expr not in self._named:
            name = self.namer.claim(f"d{len(self._named)}")
            self._named[expr] = name
            self.definitions.append((name, size_to_python(expr)))
        return self._named[expr]

    def shape(self, dims) -> str:
        parts = [self.ref(d) for d in dims]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
