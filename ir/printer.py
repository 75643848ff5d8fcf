"""Graph -> canonical text.

The text is the contract: `parse(print_graph(g))` gives a graph that prints identically, for every
graph ember builds. Values are numbered in op order (`%0`, `%1`, ...); graph inputs keep their
names; attributes print sorted by key, defaults omitted.

    func @forward[s0](%x: f32[s0,64], %w: f32[64,128]) -> (f32[s0]) {
      %0: f32[s0,128] = matmul %x, %w
      %1: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %0
      return %1
    }
"""
from __future__ import annotations

import json
import math

import sympy
import torch

from .graph import Graph, Value
from .ops import ExternArg, get_op
from .types import format_dim


def format_attr(v) -> str:
    if v is None or isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, ExternArg):
        return f"#{v.index}"
    if isinstance(v, sympy.Expr):
        if v.is_Integer:
            return str(int(v))
        return format_dim(v)
    if isinstance(v, torch.dtype):
        return str(v)  # torch.float32
    if isinstance(v, (torch.layout, torch.memory_format)):
        return str(v)
    if isinstance(v, torch.device):
        return f"device({json.dumps(str(v))})"
    if isinstance(v, tuple):
        inner = ", ".join(format_attr(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {format_attr(x)}" for k, x in sorted(v.items())) + "}"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no IR spelling")


def format_attrs(op_name: str, attrs: dict) -> str:
    spec = get_op(op_name).attrs
    # A region's body is not an attribute value: it prints as a block after the operands.
    shown = {k: v for k, v in attrs.items()
             if not (k in spec and not spec[k].required and v == spec[k].default) and not isinstance(v, Graph)}
    if not shown:
        return ""
    return "[" + ", ".join(f"{k}={format_attr(shown[k])}" for k in sorted(shown)) + "]"


def _print_ops(ops, names: dict[Value, str], dev: str, indent: str) -> list[str]:
    """One line per op (a region's body nested as a block); numbering starts at %0 per block."""
    counter = 0
    lines: list[str] = []

    def ref(v: Value) -> str:
        return names.get(v, "%<undefined>")

    for op in ops:
        lhs = []
        for r in op.results:
            names[r] = f"%{counter}"
            counter += 1
            lhs.append(f"{names[r]}: {r.type.format(dev)}")
        operands = ", ".join(ref(v) for v in op.inputs)
        rhs = op.name + format_attrs(op.name, op.attrs) + (f" {operands}" if operands else "")
        body = op.attrs.get("body") if op.name == "fused" else None
        if body is None:
            lines.append(f"{indent}{', '.join(lhs)} = {rhs}")
            continue
        lines.append(f"{indent}{', '.join(lhs)} = {rhs} {{")
        inner = indent + "  "
        body_names = {v: f"%{v.name}" for v in body.inputs}
        params = ", ".join(f"%{v.name}: {v.type.format(dev)}" for v in body.inputs)
        lines.append(f"{inner}^({params}):")
        lines += _print_ops(body.ops, body_names, dev, inner)
        yields = ", ".join(body_names.get(v, "%<undefined>") for v in body.outputs)
        lines.append(f"{inner}yield {yields}" if yields else f"{inner}yield")
        lines.append(f"{indent}}}")
    return lines


def value_names(g: Graph) -> dict[Value, str]:
    """Each top-level value's name as print_graph writes it ("%12"), so reports (e.g. fuse's
    rejected pairs) can point at lines of the dumped IR. Same numbering code as the printer."""
    names: dict[Value, str] = {v: f"%{v.name}" for v in g.inputs}
    _print_ops(g.ops, names, g.device, "")
    return names


def print_graph(g: Graph) -> str:
    names: dict[Value, str] = {v: f"%{v.name}" for v in g.inputs}
    dev = g.device
    body = _print_ops(g.ops, names, dev, "  ")

    def ref(v: Value) -> str:
        return names.get(v, "%<undefined>")

    body.append("  return " + ", ".join(ref(v) for v in g.outputs) if g.outputs else "  return")
    syms = f"[{', '.join(str(s) for s in g.symbols)}]" if g.symbols else ""
    args = ", ".join(f"%{v.name}: {v.type.format(dev)}" for v in g.inputs)
    rets = ", ".join(v.type.format(dev) for v in g.outputs)
    header = f"func @{g.name}{syms}({args}) -> ({rets}) [device={json.dumps(dev)}] {{"
    return "\n".join([header, *body, "}"]) + "\n"
