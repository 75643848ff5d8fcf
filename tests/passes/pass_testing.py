"""Helpers for golden pass tests: IR text in, one pass, exact IR text out, same values."""
from __future__ import annotations

from textwrap import dedent

import sympy
import torch

from ember.ir import Graph, interpret, parse, print_graph, to_torch
from ember.passes import PassContext, PassRecord, run_pipeline
from ember.passes.rewrite import VIEW_OPS

SYMBOL_SIZE = 3  # every symbolic dim is bound to this when making inputs


def random_inputs(g: Graph, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs for `g`: randn for floats, nonzero ints, random bools; never all zeros."""
    gen = torch.Generator().manual_seed(seed)
    env = {s: SYMBOL_SIZE for s in g.symbols}
    out = []
    for v in g.inputs:
        shape = tuple(int(sympy.sympify(d).subs(env)) for d in v.type.shape)
        dtype = to_torch(v.type.dtype)
        if dtype.is_floating_point:
            t = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        elif dtype == torch.bool:
            t = torch.rand(shape, generator=gen) > 0.5
        else:
            mag = torch.randint(1, 10, shape, generator=gen)
            sign = torch.where(torch.rand(shape, generator=gen) > 0.5, 1, -1)
            t = (mag * (sign if dtype != torch.uint8 else 1)).to(dtype)
        out.append(t)
    return out


def shared_buffers(g: Graph) -> set[tuple]:
    """Which outputs may share a buffer once lowered (view ops make views): ("input", i) when
    output i is an input or a view of one, (i, j) when outputs i and j share one."""
    def root(v):
        while v.producer is not None and v.producer.name in VIEW_OPS:
            v = v.producer.inputs[0]
        return v
    roots = [root(v) for v in g.outputs]
    out = {("input", i) for i, r in enumerate(roots) if r.is_input}
    return out | {(i, j) for i in range(len(roots)) for j in range(i + 1, len(roots)) if roots[i] is roots[j]}


def assert_same_values(before: Graph, after: Graph, seeds=(0, 1)) -> None:
    for seed in seeds:
        inputs = random_inputs(before, seed)
        want = interpret(before, inputs)
        got = interpret(after, inputs)
        assert len(want) == len(got)
        for w, o in zip(want, got):
            assert w.dtype == o.dtype and w.shape == o.shape
            torch.testing.assert_close(o, w, equal_nan=True)


def run_golden(pass_name: str, text: str, expected: str | None, *, semantics: bool = True) -> PassRecord:
    """Run one pass (or a pipeline: its first pass's record is returned) on `text`; the printed
    result must be `expected` exactly (None: unchanged, and the pass must say it changed nothing).
    Also checks round trip and values."""
    g = parse(dedent(text))
    before = g.copy()
    report = run_pipeline(g, pass_name, PassContext(verify=True))
    got = print_graph(g)
    record = report.records[0]
    if expected is None:
        assert got == print_graph(before), f"expected no change, got:\n{got}"
        assert record.changed is False
    else:
        assert got == dedent(expected).lstrip("\n"), f"got:\n{got}"
        assert any(r.changed is True for r in report.records)  # a pipeline: some pass changed it
    assert print_graph(parse(got)) == got
    assert shared_buffers(g) <= shared_buffers(before), "a returned value now shares a buffer"
    if semantics:
        assert_same_values(before, g)
    return record

