"""Shared checks for codegen tests: compile a graph, run it, compare with the reference interpreter
and with eager torch."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ember.codegen import compile_graph
from ember.ir import Graph, interpret, parse, verify


def random_tensor(shape, dtype: torch.dtype, low=None, high=None, device="cpu") -> torch.Tensor:
    """Fresh random values: normal floats (or uniform in [low, high)), integers in [low, high)."""
    return _random(shape, dtype, low, high).to(device)


def _random(shape, dtype, low, high) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.rand(shape) < 0.5
    if dtype.is_floating_point:
        if low is None:
            return torch.randn(shape).to(dtype)
        return (torch.rand(shape, dtype=torch.float64) * (high - low) + low).to(dtype)
    info = torch.iinfo(dtype)
    lo = info.min if low is None else max(low, info.min)
    hi = info.max if high is None else min(high, info.max)
    return torch.randint(lo, hi, shape, dtype=dtype)


def assert_same(actual: torch.Tensor, expected: torch.Tensor, what: str = "", **tol) -> None:
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(actual, expected, equal_nan=True, msg=lambda m: f"{what}: {m}", **tol)


def check_graph(g: Graph, inputs: Sequence[torch.Tensor], eager: Callable | None = None,
                symbols=None, chooser=None, outputs_in_arena=None, **tol):
    """Compile `g` (with `chooser` deciding library or template per matmul, if given), run it on
    `inputs`, compare every output with interpret() and with `eager` (a function of the inputs
    returning the outputs), and return the compiled graph."""
    verify(g)
    inputs = [t if t.device.type == g.device.split(":")[0] else t.to(g.device) for t in inputs]
    compiled = compile_graph(g, chooser=chooser, outputs_in_arena=outputs_in_arena)
    got = compiled(list(inputs), symbols)
    ref = interpret(g, list(inputs), symbols)
    assert len(got) == len(ref)
    for i, (a, r) in enumerate(zip(got, ref)):
        assert tuple(a.shape) == tuple(r.shape), f"output {i}: shape {tuple(a.shape)} != {tuple(r.shape)}"
        assert_same(a, r, f"output {i} vs interpreter", **tol)
    if eager is not None:
        expected = eager(*inputs)
        expected = list(expected) if isinstance(expected, (tuple, list)) else [expected]
        for i, (a, e) in enumerate(zip(got, expected)):
            assert_same(a, e.to(a.device), f"output {i} vs eager", **tol)
    return compiled


def parse_on(device: str, text: str) -> Graph:
    """Parse IR text written for the CPU as a graph on `device`."""
    return parse(text.replace('[device="cpu"]', f'[device="{device}"]'))


def exp_prologue_case(k: int):
    """A matmul region whose prologue is `exp` (which does not map 0 to 0, so a K step cut short
    must re-zero it), with x [20, k] and w [k, 24] bf16 operands: (graph, inputs, eager)."""
    g = parse(f"""
func @f(%x: bf16[20,{k}], %w: bf16[{k},24]) -> (bf16[20,24]) {{
  %0: bf16[20,24] = fused[name="matmul0"] %x, %w {{
    ^(%in0: bf16[20,{k}], %in1: bf16[{k},24]):
    %0: bf16[20,{k}] = exp %in0
    %1: bf16[20,24] = matmul %0, %in1
    yield %1
  }}
  return %0
}}""")
    x = random_tensor((20, k), torch.bfloat16) * 0.1
    w = random_tensor((k, 24), torch.bfloat16)
    return g, [x, w], lambda x, w: torch.matmul(torch.exp(x), w)


def erf_gelu_bf16_ir(src: int, shape: str) -> str:
    """The frontend's exact GELU of bf16 value %<src> (torch._decomp: upcast, erf arithmetic, cast
    back), as IR lines numbered from %<src + 1>, ending in `return` of the bf16 result."""
    n = src
    return f"""  %{n + 1}: f32[{shape}] = cast[dtype="f32"] %{n}
  %{n + 2}: f32[] = full[value=0.5]
  %{n + 3}: f32[{shape}] = mul %{n + 1}, %{n + 2}
  %{n + 4}: f32[] = full[value=0.7071067811865476]
  %{n + 5}: f32[{shape}] = mul %{n + 1}, %{n + 4}
  %{n + 6}: f32[{shape}] = erf %{n + 5}
  %{n + 7}: f32[] = full[value=1.0]
  %{n + 8}: f32[{shape}] = add %{n + 6}, %{n + 7}
  %{n + 9}: f32[{shape}] = mul %{n + 3}, %{n + 8}
  %{n + 10}: bf16[{shape}] = cast[dtype="bf16"] %{n + 9}
  return %{n + 10}"""
