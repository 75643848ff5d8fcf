"""Seeded random graphs for fuzzing passes: DAGs of pointwise, reduction, view and cast ops over
a few inputs, salted with what the built-in passes look for (constants, x*1, x+(-0.0), double
negations, cast round trips, view chains, duplicated ops, dead ops)."""
from __future__ import annotations

import random

from ember.ir import Builder, Graph, TensorType, Value, broadcast_shapes, symbol

_UNARY = ("neg", "abs", "exp", "tanh", "sigmoid", "relu", "copy", "floor")
_BINARY = ("add", "sub", "mul", "maximum", "minimum")
_CONSTANTS = (0.0, -0.0, 1.0, 2.0, -1.5, 0.5)


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.b = Builder(f"rand{seed}")
        rows = symbol("s0") if self.rng.random() < 0.3 else self.rng.choice([2, 3, 4])
        self.shape = (rows, self.rng.choice([3, 4, 5]))
        self.pool: list[Value] = []

    def pick(self) -> Value:
        # Prefer recent values so graphs are deep rather than wide.
        k = min(len(self.pool), 4)
        return self.rng.choice(self.pool[-k:]) if self.rng.random() < 0.7 else self.rng.choice(self.pool)

    def pick_pair(self) -> tuple[Value, Value]:
        for _ in range(20):
            a, c = self.pick(), self.pick()
            try:
                broadcast_shapes(a.type.shape, c.type.shape)
                return a, c
            except ValueError:
                continue
        a = self.pick()
        return a, a

    def const(self, like: Value, value: float | None = None) -> Value:
        shape = () if self.rng.random() < 0.6 else like.type.shape
        return self.b.op("full", result_types=[TensorType(like.type.dtype, shape)],
                         value=self.rng.choice(_CONSTANTS) if value is None else value)

    def step(self) -> None:
        b, rng = self.b, self.rng
        kind = rng.choice(["unary", "binary", "binary", "const", "involution", "dup", "cast",
                           "reduce", "view", "where", "dead", "unit"])
        x = self.pick()
        if kind == "unary":
            out = b.op(rng.choice(_UNARY), x)
        elif kind == "binary":
            out = b.op(rng.choice(_BINARY), *self.pick_pair())
        elif kind == "const":  # x op constant, in either order; sometimes both constant
            name = rng.choice(("add", "sub", "mul", "div"))
            identity = {"add": -0.0, "sub": 0.0, "mul": 1.0, "div": 1.0}[name]
            c = self.const(x, identity if rng.random() < 0.5 else None)
            other = self.const(x) if rng.random() < 0.3 else x
            args = (other, c) if rng.random() < 0.7 else (c, other)
            out = b.op(name, *args)
        elif kind == "involution":
            out = b.op("neg", b.op("neg", x))
        elif kind == "dup":  # the same op twice: cse fodder
            name = rng.choice(_UNARY)
            out = b.op("add", b.op(name, x), b.op(name, x))
        elif kind == "cast":
            mid = rng.choice(("f64", "f64", "i32", "f16"))
            out = b.op("cast", b.op("cast", x, dtype=mid), dtype="f32")
        elif kind == "reduce":
            axis = rng.randrange(x.type.rank) if x.type.rank else None
            if axis is None:
                out = b.op("neg", x)
            else:
                out = b.op(rng.choice(("reduce_sum", "reduce_max")), x, axes=(axis,), keepdim=True)
        elif kind == "view":
            out = self.view(x)
        elif kind == "unit":  # a size-1 dim in and out around pointwise ops (BatchNorm's unsqueeze)
            out = self.unit_dims(x)
        elif kind == "where":
            a, c = self.pick_pair()
            out = b.op("where", b.op("gt", a, c), a, c)
        else:  # dead: computed, never used
            b.op("exp", x)
            return
        self.pool.append(out)

    def unit_dims(self, x: Value) -> Value:
        """Views between pointwise ops (what hoist_views moves): x reshaped to gain a size-1 dim,
        a pointwise op (with a constant, itself or a second chain) and back; a reduction that
        drops its dim, gets it back and meets x; a transpose around pointwise ops; an expand
        read by a reduction; rotary's cat(-x2, x1), maybe repeated; an iota unsqueezed and
        expanded into a mask."""
        b, rng, shape = self.b, self.rng, list(x.type.shape)
        pick = rng.random()
        if shape and pick < 0.2:
            axis = rng.randrange(len(shape))
            r = b.op(rng.choice(("reduce_sum", "reduce_max")), b.op("exp", x), axes=(axis,), keepdim=False)
            r = b.op("neg", r)
            r = b.op("reshape", r, shape=tuple(1 if i == axis else d for i, d in enumerate(shape)))
            return b.op(rng.choice(_BINARY), x, r)  # x normalized by its own statistic
        if len(shape) == 2 and pick < 0.4:
            t = b.op("permute", b.op("tanh", x), dims=(1, 0))
            t = b.op(rng.choice(_BINARY), t, self.const(t) if rng.random() < 0.5 else t)
            return b.op("permute", b.op("sigmoid", t), dims=(1, 0))
        if len(shape) == 2 and pick < 0.55:
            e = b.op("reshape", b.op("neg", x), shape=(shape[0], 1, shape[1]))
            e = b.op("exp", b.op("expand", e, shape=(shape[0], 2, shape[1])))
            return b.op("reshape", b.op("reduce_sum", e, axes=(1,), keepdim=True), shape=tuple(shape))
        if len(shape) == 2 and shape[1] in (4, 5) and pick < 0.6:  # rotary's rotate_half
            k = shape[1] // 2
            lo = b.op("slice", x, dim=1, start=0, end=k, step=1)
            hi = b.op("neg", b.op("slice", x, dim=1, start=k, end=shape[1], step=1))
            rot = b.op("concat", hi, lo, dim=1)
            rot = b.op("expand", b.op("reshape", rot, shape=(shape[0], 1, shape[1])), shape=(shape[0], 2, shape[1])) \
                if rng.random() < 0.3 else rot
            y = b.op("mul", rot, self.const(rot)) if rng.random() < 0.5 else b.op("tanh", rot)
            return y if y.type.rank == 2 else b.op("reduce_max", y, axes=(1,), keepdim=False)
        if len(shape) == 2 and pick < 0.7:
            i = b.op("iota", result_types=[TensorType("i64", (shape[1],))], dim=0)
            i = b.op("expand", b.op("reshape", i, shape=(1, shape[1])), shape=tuple(shape))
            return b.op("add", x, b.op("cast", i, dtype=x.type.dtype))
        at = rng.randrange(len(shape) + 1)
        wide = tuple(shape[:at] + [1] + shape[at:])
        y = b.op("reshape", b.op("tanh", x), shape=wide)
        pick = rng.random()
        other = self.const(y) if pick < 0.4 else y if pick < 0.6 else \
            b.op("reshape", b.op("abs", x), shape=wide)  # a second chain meeting this one
        y = b.op(rng.choice(_BINARY), y, other)
        return b.op("reshape", b.op("sigmoid", y), shape=tuple(shape))

    def view(self, x: Value) -> Value:
        b, rng, shape = self.b, self.rng, x.type.shape
        choice = rng.choice(["permute2", "reshape2", "slice", "expand"])
        if choice == "permute2" and len(shape) == 2:
            return b.op("permute", b.op("permute", x, dims=(1, 0)), dims=(1, 0))
        if choice == "reshape2" and len(shape) >= 1:
            flat = b.op("reshape", x, shape=(x.type.numel,))
            return b.op("reshape", flat, shape=shape)
        if choice == "slice" and len(shape) >= 1:
            return b.op("slice", x, dim=0, start=0, end=shape[0], step=1)
        if choice == "expand" and len(shape) == 2 and shape[1] == 1:
            return b.op("expand", x, shape=(shape[0], self.shape[1]))
        return b.op("expand", x, shape=shape)

    def build(self) -> Graph:
        n_inputs = self.rng.randint(1, 3)
        for i in range(n_inputs):
            shape = self.shape if i == 0 or self.rng.random() < 0.6 else (self.shape[1],)
            self.pool.append(self.b.input(f"x{i}", TensorType("f32", shape)))
        for _ in range(self.rng.randint(4, 16)):
            self.step()
        # The last value is always returned, so most of the graph is live.
        extra = [self.rng.choice(self.pool) for _ in range(self.rng.randint(0, 2))]
        outs = list(dict.fromkeys([self.pool[-1], *extra]))
        return self.b.build(outs)


def random_graph(seed: int) -> Graph:
    return _Gen(seed).build()
