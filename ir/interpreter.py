"""The reference interpreter: evaluate any graph with torch ops.

This is how passes are tested semantically without codegen: run a graph before and after a pass on
the same random inputs and compare. It is also the oracle codegen is checked against.
"""
from __future__ import annotations

from typing import Sequence

import sympy
import torch

from .dtypes import to_torch
from .graph import Graph, Value
from .ops import get_op


def bind_symbols(g: Graph, inputs: Sequence[torch.Tensor], given: dict | None = None) -> dict[sympy.Symbol, int]:
    """Symbol values from the input shapes (any dim that is exactly a symbol), plus `given`."""
    env: dict[sympy.Symbol, int] = {}
    for k, v in (given or {}).items():
        env[sympy.Symbol(k, integer=True, positive=True) if isinstance(k, str) else k] = int(v)
    for v, t in zip(g.inputs, inputs):
        if not isinstance(t, torch.Tensor):
            continue
        for d, n in zip(v.type.shape, t.shape):
            if isinstance(d, sympy.Symbol):
                if d in env and env[d] != n:
                    raise ValueError(f"symbol {d} is bound to both {env[d]} and {n}")
                env[d] = int(n)
    missing = [s for s in g.symbols if s not in env]
    if missing:
        raise ValueError(f"cannot bind symbols {missing} from the input shapes; pass them explicitly")
    return env


def concretize(obj, env):
    if isinstance(obj, sympy.Expr):
        val = obj.subs(env)
        if not val.is_number:
            raise ValueError(f"expression {obj} has unbound symbols")
        return int(val)
    if isinstance(obj, list):
        return [concretize(o, env) for o in obj]
    if isinstance(obj, tuple):
        return tuple(concretize(o, env) for o in obj)
    if isinstance(obj, dict):
        return {k: concretize(v, env) for k, v in obj.items()}
    return obj


def check_input(v: Value, t, env) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"input %{v.name} must be a tensor, got {type(t).__name__}")
    want = concretize(tuple(v.type.shape), env)
    if tuple(t.shape) != want or t.dtype != to_torch(v.type.dtype):
        raise ValueError(f"input %{v.name}: expected {v.type} = {want}, got {tuple(t.shape)} {t.dtype}")


def interpret(g: Graph, inputs: Sequence[torch.Tensor], symbols: dict | None = None) -> list[torch.Tensor]:
    if len(inputs) != len(g.inputs):
        raise ValueError(f"@{g.name} takes {len(g.inputs)} inputs, got {len(inputs)}")
    env = bind_symbols(g, inputs, symbols)
    vals: dict[Value, torch.Tensor] = {}
    for v, t in zip(g.inputs, inputs):
        check_input(v, t, env)
        vals[v] = t
    for op in g.ops:
        results = [(to_torch(r.type.dtype), concretize(tuple(r.type.shape), env), r.type.device)
                   for r in op.results]
        if op.name == "fused":  # a region: run its body with the function's symbol values
            out = tuple(interpret(op.attrs["body"], [vals[v] for v in op.inputs], env))
        else:
            out = get_op(op.name).reference([vals[v] for v in op.inputs], concretize(op.attrs, env), results)
        outs = out if isinstance(out, tuple) else (out,)
        if len(outs) != len(op.results):
            raise RuntimeError(f"{op.name} produced {len(outs)} results, expected {len(op.results)}")
        for r, t in zip(op.results, outs):
            vals[r] = t
    return [vals[v] for v in g.outputs]
