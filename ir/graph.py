"""A graph of SSA values: inputs, a topologically ordered list of ops, outputs.

Values are objects; names exist only in text (the printer numbers them). Passes edit a graph through
the small mutation API here (`replace_all_uses`, `erase`, `insert_op`) and ask `users()` for def-use
information, which is recomputed on demand rather than kept in sync.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import sympy

from .ops import OpDef, get_op, attrs_with_defaults
from .types import TensorType


class Value:
    __slots__ = ("type", "producer", "result_index", "name")

    def __init__(self, type: TensorType, producer: "Op | None" = None, result_index: int = 0,
                 name: str | None = None):
        self.type = type
        self.producer = producer
        self.result_index = result_index
        self.name = name  # graph inputs keep their name; op results are numbered by the printer

    @property
    def is_input(self) -> bool:
        return self.producer is None

    def __repr__(self) -> str:
        who = self.name or (self.producer.name if self.producer else "?")
        return f"Value({who}: {self.type})"


class Op:
    __slots__ = ("name", "inputs", "attrs", "results")

    def __init__(self, name: str, inputs: Sequence[Value], attrs: dict[str, Any],
                 result_types: Sequence[TensorType]):
        self.name = name
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.results = [Value(t, self, i) for i, t in enumerate(result_types)]

    @property
    def opdef(self) -> OpDef:
        return get_op(self.name)

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]

    def __repr__(self) -> str:
        return f"Op({self.name}, attrs={self.attrs})"


def infer_result_types(name: str, inputs: Sequence[Value], attrs: dict,
                       result_types: Sequence[TensorType] | None) -> list[TensorType]:
    opdef = get_op(name)
    inferred = opdef.type_rule([v.type for v in inputs], attrs)
    if inferred is None:
        if result_types is None:
            raise ValueError(f"op {name} needs explicit result types")
        return list(result_types)
    return inferred


class Graph:
    def __init__(self, name: str = "forward", device: str = "cpu"):
        self.name = name
        self.device = device
        self.symbols: list[sympy.Symbol] = []
        self.inputs: list[Value] = []
        self.ops: list[Op] = []
        self.outputs: list[Value] = []

    # ------------------------------------------------------------------ construction
    def add_symbol(self, sym: sympy.Symbol) -> sympy.Symbol:
        if sym not in self.symbols:
            self.symbols.append(sym)
        return sym

    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(type, None, 0, name)
        self.inputs.append(v)
        for s in sorted(type.free_symbols, key=str):
            self.add_symbol(s)
        return v

    def create_op(self, name: str, inputs: Sequence[Value], attrs: dict | None = None,
                  result_types: Sequence[TensorType] | None = None, index: int | None = None) -> Op:
        """Build an op (type-checked by the op table) and insert it at `index` (default: the end)."""
        attrs = attrs_with_defaults(get_op(name), attrs or {})
        op = Op(name, inputs, attrs, infer_result_types(name, inputs, attrs, result_types))
        self.ops.insert(len(self.ops) if index is None else index, op)
        return op

    # ------------------------------------------------------------------ queries
    def users(self) -> dict[Value, list[Op]]:
        uses: dict[Value, list[Op]] = {}
        for op in self.ops:
            for v in op.inputs:
                uses.setdefault(v, []).append(op)
        return uses

    def values(self) -> Iterable[Value]:
        yield from self.inputs
        for op in self.ops:
            yield from op.results

    # ------------------------------------------------------------------ mutation
    def replace_all_uses(self, old: Value, new: Value) -> None:
        for op in self.ops:
            op.inputs = [new if v is old else v for v in op.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def erase(self, op: Op) -> None:
        self.ops.remove(op)

    def index_of(self, op: Op) -> int:
        for i, o in enumerate(self.ops):
            if o is op:
                return i
        raise ValueError(f"{op} is not in graph {self.name}")

    def copy(self) -> "Graph":
        """A deep copy (new Value/Op objects, same attrs): passes may mutate it freely."""
        g = Graph(self.name, self.device)
        g.symbols = list(self.symbols)
        mapping: dict[Value, Value] = {}
        for v in self.inputs:
            mapping[v] = g.add_input(v.name, v.type)
        for op in self.ops:
            attrs = {k: (v.copy() if isinstance(v, Graph) else v) for k, v in op.attrs.items()}  # region bodies
            new = Op(op.name, [mapping[v] for v in op.inputs], attrs, [r.type for r in op.results])
            g.ops.append(new)
            for a, b in zip(op.results, new.results):
                mapping[a] = b
        g.outputs = [mapping[v] for v in self.outputs]
        return g

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __eq__(self, other) -> bool:  # structural: same canonical text
        return isinstance(other, Graph) and str(self) == str(other)

    __hash__ = None  # mutable


class RegionBody:
    """Builds the body of a `fused` op from outer ops (fuse, fuse_matmul, codegen's epilogue
    regions):

        rb = RegionBody(g, inline=lambda v: ...)   # optional: an op to copy in instead of reading v
        for op in ops: rb.copy(op)
        fused = rb.finish(outputs, name)

    Each outer value the copied ops read becomes a body input `in0, in1, ...` (and the region's
    operand), in first-read order, unless `inline(v)` returns an op computing it, which goes into
    the body instead (a constant costs nothing inside a kernel)."""

    def __init__(self, outer: "Graph", inline=None):
        self.body = Graph(outer.name, outer.device)
        self.body.symbols = outer.symbols
        self.mapping: dict[Value, Value] = {}
        self.operands: list[Value] = []
        self._inline = inline

    def inner(self, v: Value) -> Value:
        """The body value standing for outer value v."""
        if v not in self.mapping:
            op = self._inline(v) if self._inline is not None else None
            if op is not None:
                self.body.ops.append(op)
                self.mapping[v] = op.results[0]
            else:
                self.mapping[v] = Value(v.type, None, 0, f"in{len(self.operands)}")
                self.body.inputs.append(self.mapping[v])
                self.operands.append(v)
        return self.mapping[v]

    def copy(self, op: Op) -> Op:
        """Append a copy of outer `op` reading body values; its results map to the copy's."""
        new = Op(op.name, [self.inner(v) for v in op.inputs], op.attrs, [r.type for r in op.results])
        self.body.ops.append(new)
        self.mapping.update(zip(op.results, new.results))
        return new

    def finish(self, outputs: Sequence[Value], name: str) -> Op:
        """The `fused` op returning the body values of outer `outputs`."""
        self.body.outputs = [self.mapping[v] for v in outputs]
        return Op("fused", self.operands, {"body": self.body, "name": name}, [v.type for v in outputs])


class Builder:
    """Convenience front for building graphs in code and tests:

        b = Builder("f")
        x = b.input("x", TensorType("f32", (s0, 64)))
        y = b.op("relu", x)
        g = b.build([y])
    """

    def __init__(self, name: str = "forward", device: str = "cpu"):
        self.graph = Graph(name, device)

    def input(self, name: str, type: TensorType) -> Value:
        return self.graph.add_input(name, type)

    def symbol(self, sym: sympy.Symbol) -> sympy.Symbol:
        return self.graph.add_symbol(sym)

    def op(self, name: str, *inputs: Value, result_types: Sequence[TensorType] | None = None,
           **attrs) -> Value:
        op = self.graph.create_op(name, inputs, attrs, result_types)
        return op.results[0] if len(op.results) == 1 else op.results  # type: ignore[return-value]

    def op_multi(self, name: str, *inputs: Value, result_types: Sequence[TensorType] | None = None,
                 **attrs) -> list[Value]:
        return self.graph.create_op(name, inputs, attrs, result_types).results

    def build(self, outputs: Sequence[Value]) -> Graph:
        self.graph.outputs = list(outputs)
        return self.graph
