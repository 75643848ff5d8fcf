"""How a compiled graph meets its runtime arguments, and how its outputs become AOT's outputs.

AOTAutograd calls a compiled graph with a flat list: tensors, and (with dynamic shapes) plain ints
for the SymInt placeholders. The IR graph takes only tensors plus a dict of symbol values, and may
return fewer things than the FX graph did (ints, SymInts and None are not IR values). The plan is
built once, at lowering time, and applied on every call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import sympy
import torch


class BindingError(RuntimeError):
    pass


@dataclass
class BindingPlan:
    # Per IR input: ("arg", index into the runtime args) or ("const", a tensor from a get_attr).
    inputs: list[tuple[str, Any]] = field(default_factory=list)
    # (symbol, arg index, dim): the symbol's value is args[i].shape[dim], or args[i] itself (dim None).
    symbols: list[tuple[sympy.Symbol, int, int | None]] = field(default_factory=list)
    # Per FX output: ("ir", k) the k-th IR output, ("expr", e) a symbolic int, ("value", v) a constant.
    outputs: list[tuple[str, Any]] = field(default_factory=list)
    # Generated kernels take every input's strides, so strided inputs (a transposed tangent, a
    # sliced view) are passed as they are; set this for a backend that needs row-major inputs.
    contiguous_inputs: bool = False
    _exprs: dict = field(default_factory=dict, repr=False)

    def finalize(self, graph) -> None:
        """Check every graph symbol has a source; precompile the output expressions."""
        sourced = {s for s, _, _ in self.symbols}
        missing = [s for s in graph.symbols if s not in sourced]
        if missing:
            from .fx_to_ir import GraphUnsupported
            raise GraphUnsupported(f"symbols {sorted(map(str, missing))} cannot be bound from the inputs")
        syms = [s for s, _, _ in self.symbols]
        for kind, e in self.outputs:
            if kind == "expr":
                self._exprs[e] = sympy.lambdify(syms, e, modules="math")

    def bind(self, args: Sequence[Any]) -> tuple[list[torch.Tensor], dict[sympy.Symbol, int]]:
        env: dict[sympy.Symbol, int] = {}
        for s, i, d in self.symbols:
            a = args[i]
            env[s] = int(a) if d is None else int(a.shape[d])
        inputs = []
        for kind, x in self.inputs:
            t = args[x] if kind == "arg" else x
            if not isinstance(t, torch.Tensor):
                raise BindingError(f"expected a tensor argument, got {type(t).__name__}")
            inputs.append(t.contiguous() if self.contiguous_inputs else t)
        return inputs, env

    def build_outputs(self, ir_outputs: Sequence[torch.Tensor], env: dict[sympy.Symbol, int]) -> list:
        out = []
        values = [env[s] for s, _, _ in self.symbols]
        for kind, x in self.outputs:
            if kind == "ir":
                out.append(ir_outputs[x])
            elif kind == "expr":
                r = self._exprs[x](*values)
                out.append(int(r) if x.is_integer else float(r))
            else:
                out.append(x)
        return out
