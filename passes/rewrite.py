"""A small rule-table rewriter (tinygrad's graph_rewrite, MLIR's greedy pattern driver).

A rule is a function ``rule(op, rw) -> Value | None``: it looks at one single-result op (whose
operands are already rewritten) and returns a value to use instead of the op's result, or None.
It may build new ops with ``rw.create(...)``; they are placed just before the op. The driver
sweeps the graph, applying the first matching rule to each op, until a sweep changes nothing.

The replaced op is dropped (its result has no uses left). Ops a rule leaves behind unused, such as
the inner op of a folded chain, stay: removing dead code is DCE's job.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import sympy
import torch

from ..ir import Graph, Op, TensorType, Value
from ..ir.dtypes import itemsize
from ..ir.graph import infer_result_types
from ..ir.ops import attrs_with_defaults, get_op
from ..ir.types import shapes_equal
from . import effects

Rule = Callable[[Op, "Rewriter"], "Value | None"]

# Ops whose result may share storage with their operand once lowered (codegen makes them views).
VIEW_OPS = frozenset({"reshape", "permute", "expand", "slice"})


class RuleError(RuntimeError):
    """A rule produced a replacement of another type: a bug in the rule."""


class Rewriter:
    def __init__(self, g: Graph):
        self.graph = g
        self._subst: dict[Value, Value] = {}
        self._out: list[Op] = []
        self._written = effects.mutated_values(g)
        self._users = g.users()  # by the operands as the sweep starts (see viewers)

    # ------------------------------------------------------------------ queries for rules
    def resolve(self, v: Value) -> Value:
        while v in self._subst:
            v = self._subst[v]
        return v

    def producer(self, v: Value, name: str | None = None) -> Op | None:
        """The op defining `v` (None for graph inputs), if it is called `name` (when given)."""
        op = v.producer
        return op if op is not None and (name is None or op.name == name) else None

    def chained(self, op: Op, names) -> Op | None:
        """For `f(g(x))` chains: the op producing `op`'s first operand, when `op` is named in
        `names` (a str or a collection) and that producer has the same name as `op`."""
        if op.name != names and op.name not in (() if isinstance(names, str) else names):
            return None
        return self.producer(op.inputs[0], op.name)

    def constant(self, v: Value) -> Any:
        """The fill value of a `full` op, rounded as its dtype stores it (so full[value=1.5] of
        i32 is 1, and a value that rounds to 1.0 in f16 is 1.0); None if `v` is not a `full`
        or its value is symbolic (full[value=s0])."""
        op = self.producer(v, "full")
        if op is None or self.is_written(v):  # an extern changes it: not a constant
            return None
        dtype = _torch_dtype(v.type.dtype)
        value = op.attrs["value"]
        if isinstance(value, sympy.Expr):  # full[value=s0]: a size, known only at run time
            if not value.is_Number:
                return None
            value = int(value) if value.is_Integer else float(value)
        if dtype is None or not isinstance(value, (bool, int, float)):
            return None
        return torch.full((), value, dtype=dtype).item()

    def is_written(self, v: Value) -> bool:
        """Does some extern write to `v`? (Stable during a sweep: the driver never replaces a
        written value, so no extern's written operand changes mid-sweep.)"""
        return v in self._written

    def is_output(self, v: Value) -> bool:
        return any(self.resolve(o) is v for o in self.graph.outputs)

    def storage_roots(self, v: Value) -> set[Value]:
        """The values whose buffer `v` may be (part of) once lowered: `v` itself, or where its
        chain of views starts (every operand of an extern that may return an alias)."""
        v = self.resolve(v)
        p = v.producer
        if p is not None and p.name in VIEW_OPS:
            return self.storage_roots(p.inputs[0])
        if p is not None and effects.returns_alias(p):
            return set().union(*(self.storage_roots(x) for x in p.inputs)) or {v}
        return {v}

    def viewers(self, v: Value) -> set[Value]:
        """`v` and every value that may be a view of it. Only asked about the result of the op
        being rewritten, whose readers all come later in the sweep and still name it."""
        seen, todo = {v}, [v]
        while todo:
            x = todo.pop()
            for u in self._users.get(x, ()):
                if (u.name in VIEW_OPS and u.inputs[0] is x) or effects.returns_alias(u):
                    fresh = [r for r in u.results if r not in seen]
                    seen.update(fresh)
                    todo += fresh
        return seen

    def may_forward(self, op: Op, new: Value) -> bool:
        """May uses of `op.result` read the existing value `new` instead?

        Forwarding makes `op.result` and all its views share `new`'s buffer. Values are
        immutable in the IR, except where an extern writes to one: a write to either side (or a
        view of it) would then show through the other. And a graph output, or a view of one,
        must not come to share a buffer with a graph input or another output, where eager
        returned a fresh tensor: the caller could then write through one and see it in the other."""
        old, roots = self.viewers(op.result), self.storage_roots(new)
        if any(self.is_written(v) for v in old) or any(self.storage_roots(w) & roots for w in self._written):
            return False
        if any(self.is_output(v) for v in old):
            if any(r.is_input for r in roots) or any(self.storage_roots(o) & roots for o in self.graph.outputs):
                return False
            if self._pins_larger(op.result, new, roots):
                return False
        return True

    def _pins_larger(self, old: Value, new: Value, roots: set[Value]) -> bool:
        """Would returning `new` instead of `old` keep alive a buffer provably larger than `new`
        that `old` did not? A copy of a slice returned in place of the slice frees the sliced
        buffer when its other readers are done; forwarded, the caller's output pins all of it
        (GPT-2's returned keys, a third of each layer's QKV product, held all twelve products)."""
        held = self.storage_roots(old)
        size = _nbytes(new)
        return any(r not in held and (_nbytes(r) - size).is_positive for r in roots)

    # ------------------------------------------------------------------ building
    def create(self, name: str, inputs: Sequence[Value], attrs: dict | None = None,
               result_types: Sequence[TensorType] | None = None) -> Value:
        attrs = attrs_with_defaults(get_op(name), attrs or {})
        op = Op(name, inputs, attrs, infer_result_types(name, inputs, attrs, result_types))
        self._out.append(op)
        return op.result


def _nbytes(v: Value) -> sympy.Expr:
    return sympy.expand(v.type.numel * itemsize(v.type.dtype))


def _torch_dtype(name: str):
    from ..ir import to_torch
    try:
        dtype = to_torch(name)
    except ValueError:
        return None
    # Complex and fp8 constants have no exact attribute spelling / full support: not folded.
    return None if dtype.is_complex or (dtype.is_floating_point and dtype.itemsize == 1) else dtype


def rule_name(rule: Rule) -> str:
    """Stats key: the function name without a leading underscore, dashes for underscores."""
    return getattr(rule, "rule_name", None) or rule.__name__.lstrip("_").replace("_", "-")


def apply_rules(g: Graph, rules: Iterable[Rule], *, max_sweeps: int = 50) -> dict[str, int]:
    """Apply `rules` to a fixpoint, in place; returns how often each rule fired (fired ones only)."""
    rules = list(rules)
    stats: dict[str, int] = {}
    for _ in range(max_sweeps):
        rw = Rewriter(g)
        changed = False
        for op in list(g.ops):
            op.inputs = [rw.resolve(v) for v in op.inputs]
            replacement = None
            if len(op.results) == 1 and not rw.is_written(op.result):
                for rule in rules:
                    mark = len(rw._out)
                    new = rule(op, rw)
                    fresh = new is not None and any(new.producer is o for o in rw._out[mark:])
                    if new is not None and new is not op.result and (fresh or rw.may_forward(op, new)):
                        _check_type(rule, op, new)
                        stats[rule_name(rule)] = stats.get(rule_name(rule), 0) + 1
                        replacement = new
                        break
                    del rw._out[mark:]  # ops built by a rule that did not fire
            if replacement is None:
                rw._out.append(op)
            else:
                rw._subst[op.result] = rw.resolve(replacement)
                changed = True
        g.ops = rw._out
        g.outputs = [rw.resolve(v) for v in g.outputs]
        if not changed:
            return stats
    raise RuntimeError(f"rewrite rules did not reach a fixpoint in {max_sweeps} sweeps "
                       f"(two rules undo each other?); fired so far: {stats}")


def _check_type(rule: Rule, op: Op, new: Value) -> None:
    a, b = op.result.type, new.type
    if a.dtype != b.dtype or a.device != b.device or not shapes_equal(a.shape, b.shape):
        raise RuleError(f"rule {rule_name(rule)!r} replaced {op.name} of type {a} by a value of type {b}")
