"""A post-AOTAutograd FX graph -> an IR Graph plus the plan that binds it to runtime arguments.

Placeholders that are tensors become graph inputs (named after the FX placeholder); SymInt
placeholders and symbolic tensor dims become sympy symbols. Each `call_function` node goes through
the lowering table; a node without a lowering, or whose lowering fails, becomes an `extern` op that
calls the ATen op itself, with the reason recorded. Scalar nodes (SymInt arithmetic, sym_size) are
not IR ops: they are sympy expressions, evaluated where they are used.

What cannot be expressed at all (data-dependent "unbacked" sizes, scalars the IR cannot spell,
arguments that do not print) raises `GraphUnsupported`; the caller then runs the graph eagerly.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
import torch.fx

from ..ir import ExternArg, Graph, Value
from ..ir.ops import TypeError_
from ..ir.printer import format_attr
from ..ir.types import normalize_expr, shapes_equal
from .binding import BindingPlan
from .lowering import LoweringContext, Unsupported, lookup, no_lowering_reason, tensor_type


class GraphUnsupported(Exception):
    """The graph as a whole cannot become IR; it runs eagerly (reported in the dump)."""


class LoweringError(RuntimeError):
    """A node failed to lower under `strict_lowering`."""


@dataclass
class _Opaque:
    """A scalar the IR cannot express; an error only if something needs its value."""
    reason: str


@dataclass
class Lowered:
    graph: Graph
    plan: BindingPlan
    skipped: list[str] = field(default_factory=list)  # nodes with no value (asserts), for the report


_SYM_TYPES = (torch.SymInt, torch.SymFloat, torch.SymBool)


def _scalar_value(val):
    """A scalar meta value as an int/float/bool or a normalized sympy expression."""
    if isinstance(val, _SYM_TYPES):
        try:
            expr = normalize_expr(val.node.expr)
        except ValueError as e:
            return _Opaque(str(e))
        return int(expr) if expr.is_Integer else expr
    return val


def _touches_complex(node: torch.fx.Node) -> bool:
    vals = [node.meta.get("val")] + [a.meta.get("val") for a in node.all_input_nodes]
    flat = [v for x in vals for v in (x if isinstance(x, (list, tuple)) else [x])]
    return any(isinstance(v, torch.Tensor) and v.is_complex() for v in flat)


def _sanitize(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name) or "arg"
    if base[0].isdigit():
        base = "_" + base
    out, i = base, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def _graph_device(gm: torch.fx.GraphModule) -> str:
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            return str(val.device)
    return "cpu"


class _Converter:
    def __init__(self, gm: torch.fx.GraphModule, name: str, strict: bool):
        self.gm, self.strict = gm, strict
        self.graph = Graph(name, _graph_device(gm))
        self.ctx = LoweringContext(self.graph)
        self.env: dict[torch.fx.Node, Any] = {}
        self.plan = BindingPlan()
        self.bound: set[sympy.Symbol] = set()
        self.names: set[str] = set()
        self.skipped: list[str] = []

    # ------------------------------------------------------------------ inputs
    def placeholder(self, node: torch.fx.Node, argi: int) -> None:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            t = self._checked_type(val, binding=True)
            v = self.graph.add_input(_sanitize(node.name, self.names), t)
            for d, dim in enumerate(t.shape):
                if isinstance(dim, sympy.Symbol) and dim not in self.bound:
                    self.bound.add(dim)
                    self.plan.symbols.append((dim, argi, d))
            self.plan.inputs.append(("arg", argi))
            self.env[node] = v
        elif isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            s = _scalar_value(val)
            if isinstance(s, sympy.Symbol) and isinstance(val, torch.SymInt) and s not in self.bound:
                self.bound.add(s)
                self.graph.add_symbol(s)
                self.plan.symbols.append((s, argi, None))
            self.env[node] = s
        else:
            self.env[node] = val  # a static Python value (or None)

    def get_attr(self, node: torch.fx.Node) -> None:
        obj = self.gm
        for part in node.target.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, torch.Tensor) and obj.dim() == 0 and not obj.requires_grad \
                and obj.device.type != "meta" and not obj.dtype.is_complex:
            # A 0-d constant the trace lifted (`torch.tensor(0.0)` in model code, e.g. the value a
            # mask keeps) is a `full`: passes can then see its value (the attention pass proves
            # masks finite or causal only from constants).
            self.env[node] = self.ctx.full(obj.item(), tensor_type(obj).dtype)
        elif isinstance(obj, torch.Tensor) and obj.numel() == 0 and obj.device.type != "meta":
            # An empty constant (transformers' KV cache starts as `torch.tensor([])` and concatenates
            # onto it) holds no data: as an op rather than an input, the graph binds nothing
            # extra and stays eligible for the graph cache.
            self.env[node] = self.ctx.full(0, tensor_type(obj).dtype, obj.shape)
        elif isinstance(obj, torch.Tensor):
            self.env[node] = self.graph.add_input(_sanitize(node.name, self.names), tensor_type(obj))
            self.plan.inputs.append(("const", obj))
        else:
            self.env[node] = obj

    def _scalar(self, val):
        """A scalar result; one that depends on tensor data (an unbacked symbol from `.item()`,
        say) cannot be computed from the bound sizes, so any use of it makes the graph unsupported."""
        s = _scalar_value(val)
        if isinstance(s, sympy.Expr) and s.free_symbols - self.bound:
            return _Opaque(f"data-dependent value {s}")
        return s

    def _checked_type(self, val: torch.Tensor, binding: bool = False):
        try:
            t = tensor_type(val)
        except ValueError as e:  # sizes the IR cannot express, or a dtype it has no name for
            raise GraphUnsupported(str(e)) from None
        if not binding:
            unbound = t.free_symbols - self.bound
            if unbound:
                raise GraphUnsupported(f"data-dependent sizes {sorted(map(str, unbound))}")
        return t

    # ------------------------------------------------------------------ nodes
    def call_function(self, node: torch.fx.Node) -> None:
        if node.target is operator.getitem:
            base = self.env[node.args[0]]
            if not isinstance(base, (list, tuple)):
                raise GraphUnsupported(f"getitem on {type(base).__name__}")
            self.env[node] = base[node.args[1]]
            return
        val = node.meta.get("val")
        if val is None:
            self.skipped.append(f"{node.name} ({node.target})")  # asserts and other effect-only nodes
            return
        if not isinstance(val, (torch.Tensor, list, tuple)):
            self.env[node] = self._scalar(val)
            return
        self.env[node] = self._lower_or_extern(node)

    def _lower_or_extern(self, node: torch.fx.Node):
        fn = lookup(node.target)
        mark = len(self.graph.ops)
        try:
            if fn is None:
                raise Unsupported(no_lowering_reason(node.target))
            if _touches_complex(node):
                raise Unsupported("complex dtypes: codegen has no complex arithmetic")
            args = [self._arg(a) for a in node.args]
            kwargs = {k: self._arg(a) for k, a in node.kwargs.items()}
            self.ctx.node = node
            return self._check(node, fn(self.ctx, *args, **kwargs))
        except GraphUnsupported:
            raise
        except Exception as e:  # noqa: BLE001 - any failure becomes an extern, with its reason
            del self.graph.ops[mark:]  # drop what the failed lowering had built
            reason = str(e) if isinstance(e, (Unsupported, TypeError_)) else f"lowering failed: {type(e).__name__}: {e}"
            if self.strict:
                raise LoweringError(f"{node.format_node()}: {reason}") from e
            return self._extern(node, reason)

    def _arg(self, a):
        if isinstance(a, torch.fx.Node):
            v = self.env[a]
            if isinstance(v, _Opaque):
                raise Unsupported(v.reason)
            return v
        if isinstance(a, (list, tuple)):
            return [self._arg(x) for x in a]
        return a

    def _check(self, node, out):
        """Compare the lowering's result(s) with torch's meta value: cast a dtype, reject a shape."""
        val = node.meta["val"]
        if isinstance(val, torch.Tensor):
            return self._check_one(out, val)
        if not isinstance(out, (list, tuple)) or len(out) != len(val):
            raise Unsupported(f"lowering returned {out!r} for a {len(val)}-tuple")
        return [self._check_one(o, v) if isinstance(v, torch.Tensor) else self._scalar(v)
                for o, v in zip(out, val)]

    def _check_one(self, v, val: torch.Tensor) -> Value:
        want = self._checked_type(val)
        if not isinstance(v, Value):
            raise Unsupported(f"lowering returned {type(v).__name__}, not a Value")
        if v.type.device != want.device or not shapes_equal(v.type.shape, want.shape):
            raise Unsupported(f"lowering produced {v.type}, torch says {want} (lowering bug)")
        return self.ctx.cast(v, want.dtype)

    # ------------------------------------------------------------------ externs
    def _extern(self, node: torch.fx.Node, reason: str):
        if not isinstance(node.target, torch._ops.OpOverload):
            raise GraphUnsupported(f"{node.target} is not an ATen op and has no lowering ({reason})")
        operands: list[Value] = []

        def conv(a):
            if isinstance(a, torch.fx.Node):
                v = self.env[a]
                if isinstance(v, Value):
                    if not any(o is v for o in operands):
                        operands.append(v)
                    return ExternArg(next(i for i, o in enumerate(operands) if o is v))
                if isinstance(v, _Opaque):
                    raise GraphUnsupported(f"{node.name}: argument {a.name}: {v.reason}")
                if isinstance(v, sympy.Expr) and not v.is_integer:
                    raise GraphUnsupported(f"{node.name}: non-integer symbolic argument {v}")
                if isinstance(v, (list, tuple)):
                    raise GraphUnsupported(f"{node.name}: a whole tuple result as an argument")
                return v
            if isinstance(a, (list, tuple)):
                return [conv(x) for x in a]
            try:
                format_attr(a)
            except TypeError:
                raise GraphUnsupported(f"{node.name}: argument {a!r} has no IR spelling") from None
            return a

        args = [conv(a) for a in node.args]
        kwargs = {k: conv(a) for k, a in node.kwargs.items()}
        val = node.meta["val"]
        vals = [val] if isinstance(val, torch.Tensor) else list(val)
        outputs = tuple(i for i, t in enumerate(vals) if isinstance(t, torch.Tensor))
        attrs = {"target": str(node.target), "args": args, "kwargs": kwargs, "reason": reason}
        if not isinstance(val, torch.Tensor):
            attrs["outputs"] = outputs
        op = self.graph.create_op("extern", operands, attrs,
                                  [self._checked_type(vals[i]) for i in outputs])
        if isinstance(val, torch.Tensor):
            return op.results[0]
        results = iter(op.results)
        return [next(results) if isinstance(t, torch.Tensor) else self._scalar(t) for t in vals]

    # ------------------------------------------------------------------ outputs
    def output(self, node: torch.fx.Node) -> None:
        outs = node.args[0]
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for o in outs:
            v = self.env[o] if isinstance(o, torch.fx.Node) else o
            if isinstance(v, Value):
                self.plan.outputs.append(("ir", len(self.graph.outputs)))
                self.graph.outputs.append(v)
            elif isinstance(v, sympy.Expr):
                if v.free_symbols - self.bound:
                    raise GraphUnsupported(f"output {o} depends on unbound symbols")
                self.plan.outputs.append(("expr", v))
            elif isinstance(v, _Opaque):
                raise GraphUnsupported(f"output {o}: {v.reason}")
            else:
                self.plan.outputs.append(("value", v))

    def run(self) -> Lowered:
        argi = 0
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.placeholder(node, argi)
                argi += 1
            elif node.op == "get_attr":
                self.get_attr(node)
            elif node.op == "call_function":
                self.call_function(node)
            elif node.op == "output":
                self.output(node)
            else:
                raise GraphUnsupported(f"FX node kind {node.op!r} ({node.target})")
        self.plan.finalize(self.graph)
        return Lowered(self.graph, self.plan, self.skipped)


def fx_to_ir(gm: torch.fx.GraphModule, name: str, strict: bool = False) -> Lowered:
    return _Converter(gm, name, strict).run()
