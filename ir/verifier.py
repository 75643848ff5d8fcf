"""Structural and type checks on a Graph; run after every pass.

The parser already rejects malformed text; the verifier catches what passes can break: an operand
used before it is defined, an op missing from the graph, a result type that no longer matches the
op's type rule, symbols used but not declared.
"""
from __future__ import annotations

import re

import sympy

from .graph import Graph, Value
from .ops import OPS, TypeError_
from .type_memo import infer_types
from .types import shapes_equal


class VerificationError(ValueError):
    pass


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _attr_symbols(obj) -> set:
    """The symbols in an attribute value (nested lists, tuples and dicts of sympy expressions).
    A loop, not a recursion building a set per level: verify walks every op's attrs per pass."""
    out: set = set()
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, sympy.Expr):
            if not o.is_Number:
                out |= o.free_symbols
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
    return out


def _types_match(inferred, got) -> bool:
    return len(inferred) == len(got) and all(
        a == b or (a.dtype == b.dtype and a.device == b.device and shapes_equal(a.shape, b.shape))
        for a, b in zip(inferred, got))


def verify(g: Graph) -> None:
    """Raise VerificationError listing every problem found (not only the first)."""
    problems: list[str] = []
    defined: set[int] = set()
    declared = set(g.symbols)
    names: set[str] = set()
    for v in g.inputs:
        if v.producer is not None:
            problems.append(f"input {v!r} has a producer")
        if not v.name or not _NAME.match(v.name):
            problems.append(f"input name {v.name!r} is not an identifier")
        elif v.name in names:
            problems.append(f"input name %{v.name} used twice")
        names.add(v.name or "")
        defined.add(id(v))

    def check_syms(where: str, v: Value):
        extra = v.type.free_symbols - declared
        if extra:
            problems.append(f"{where}: symbols {sorted(map(str, extra))} are not declared")

    for v in g.inputs:
        check_syms(f"input %{v.name}", v)
    for i, op in enumerate(g.ops):
        where = f"op #{i} ({op.name})"
        opdef = OPS.get(op.name)
        if opdef is None:
            problems.append(f"{where}: unknown op")
            continue
        if opdef.arity is not None and len(op.inputs) != opdef.arity:
            problems.append(f"{where}: takes {opdef.arity} operands, has {len(op.inputs)}")
        for k, spec in opdef.attrs.items():
            if spec.required and k not in op.attrs:
                problems.append(f"{where}: missing attribute {k!r}")
        for k in op.attrs:
            if k not in opdef.attrs:
                problems.append(f"{where}: unknown attribute {k!r}")
        for v in op.inputs:
            if id(v) not in defined:
                problems.append(f"{where}: operand {v!r} is used before it is defined (or not in the graph)")
        attr_syms = _attr_symbols(op.attrs) - declared
        if attr_syms:
            problems.append(f"{where}: attributes use undeclared symbols {sorted(map(str, attr_syms))}")
        for r in op.results:
            if r.producer is not op:
                problems.append(f"{where}: result {r!r} does not point back at its op")
            check_syms(where, r)
        try:
            inferred = infer_types(opdef, [v.type for v in op.inputs], op.attrs)
        except (TypeError_, ValueError, KeyError, TypeError) as e:
            problems.append(f"{where}: type rule rejects it: {e}")
            inferred = None
        if inferred is not None:
            got = [r.type for r in op.results]
            if not _types_match(inferred, got):
                problems.append(f"{where}: result types {[str(t) for t in got]} differ from the "
                                f"type rule's {[str(t) for t in inferred]}")
        body = op.attrs.get("body") if opdef.kind == "region" else None
        if body is not None:
            problems += _region_problems(g, body, where)
        for r in op.results:
            defined.add(id(r))
    for v in g.outputs:
        if id(v) not in defined:
            problems.append(f"output {v!r} is not defined in the graph")
    if problems:
        raise VerificationError(f"graph @{g.name} is invalid:\n  " + "\n  ".join(problems))


def _region_problems(g: Graph, body, where: str) -> list[str]:
    """A region body is verified as a graph of its own (isolated from above: an operand from the
    enclosing function is "used before it is defined"), under the function's symbols."""
    if not isinstance(body, Graph):
        return [f"{where}: attribute 'body' is {type(body).__name__}, not a Graph"]
    problems = []
    if body.device != g.device:
        problems.append(f"{where}: body device {body.device!r} differs from the function's {g.device!r}")
    extra = set(body.symbols) - set(g.symbols)
    if extra:
        problems.append(f"{where}: body declares symbols {sorted(map(str, extra))} the function does not")
    try:
        verify(body)
    except VerificationError as e:
        inner = str(e).split("\n", 1)[1] if "\n" in str(e) else str(e)
        problems.append(f"{where}: body is invalid:\n  " + inner.replace("\n", "\n  "))
    return problems
