"""Symbolic sizes (sympy expressions over the graph's symbols) as Python integer code.

sympy's own Python printer turns floor(s0/2) into math.floor(s0/2), going through floats; sizes
must stay exact integers, so floor/ceiling/Mod become //, -(-a // b) and %, and any remaining
rational expression (sizes are integers, so its division is exact) becomes one integer division.
"""
from __future__ import annotations

import sympy
from sympy.printing.str import StrPrinter


def _split(expr: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    return sympy.fraction(sympy.together(expr))


class _IntPrinter(StrPrinter):
    def _print_floor(self, e):
        n, d = _split(e.args[0])
        return self._print(n) if d == 1 else f"(({self._print(n)}) // ({self._print(d)}))"

    def _print_ceiling(self, e):
        n, d = _split(e.args[0])
        return self._print(n) if d == 1 else f"(-((-({self._print(n)})) // ({self._print(d)})))"

    def _print_Mod(self, e):
        return f"(({self._print(e.args[0])}) % ({self._print(e.args[1])}))"

    def _print_Max(self, e):
        return "max(" + ", ".join(self._print(a) for a in e.args) + ")"

    def _print_Min(self, e):
        return "min(" + ", ".join(self._print(a) for a in e.args) + ")"

    def _print_Abs(self, e):
        return f"abs({self._print(e.args[0])})"

    def _print_Rational(self, e):
        raise ValueError(f"size expression has a fraction {e} that is not an integer division")


def size_to_python(expr) -> str:
    """Python source computing the integer value of `expr` from variables named like its symbols."""
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return str(int(expr))
    n, d = _split(expr)
    printer = _IntPrinter()
    if d != 1:
        return f"({printer.doprint(n)}) // ({printer.doprint(d)})"
    return printer.doprint(expr)
