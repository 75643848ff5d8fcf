"""Codegen of `fused` regions: a pointwise body or a row domain is ONE kernel; any other body runs
op by op. Row kernels in depth: test_row_kernels.py."""
import sys
from pathlib import Path

import torch

from ember.codegen import compile_graph
from ember.ir import interpret
from ember.passes import run_pipeline

from codegen_check import check_graph, parse_on, random_tensor

POINTWISE = """\
func @f[s0](%x: f32[s0,16], %b: f32[16]) -> (f32[s0,16], f32[s0,16]) [device="cpu"] {
  %0: f32[s0,16], %1: f32[s0,16] = fused[name="fused0"] %x, %b {
    ^(%a: f32[s0,16], %c: f32[16]):
    %0: f32[] = full[value=0.5]
    %1: f32[s0,16] = add %a, %c
    %2: f32[s0,16] = mul %1, %0
    %3: f32[s0,16] = relu %2
    %4: f32[s0,16] = exp %3
    yield %2, %4
  }
  return %1, %0
}
"""

MIXED = """\
func @f[s0](%x: f32[s0,16], %b: f32[16]) -> (f32[s0,16], f32[s0]) [device="cpu"] {
  %0: f32[s0,16], %1: f32[s0] = fused[name="fused0"] %x, %b {
    ^(%a: f32[s0,16], %c: f32[16]):
    %0: f32[s0,16] = add %a, %c
    %1: f32[s0,16] = relu %0
    %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1
    yield %1, %2
  }
  return %0, %1
}
"""


def test_pointwise_region_is_one_kernel(device):
    g = parse_on(device, POINTWISE)
    x, b = random_tensor((5, 16), torch.float32), random_tensor((16,), torch.float32)

    def eager(x, b):
        y = (x + b) * 0.5
        return torch.exp(torch.relu(y)), y

    compiled = check_graph(g, [x, b], eager)
    assert compiled.num_kernels == 1
    assert list(compiled.kernels) == ["k0_fused0"]


def test_pointwise_region_on_strided_inputs(device):
    g = parse_on(device, POINTWISE)
    x = random_tensor((16, 7), torch.float32).t()  # non-contiguous
    check_graph(g, [x, random_tensor((16,), torch.float32)])


def test_region_storing_its_prologue_and_reduction_is_one_kernel(device):
    g = parse_on(device, MIXED)
    x, b = random_tensor((6, 16), torch.float32), random_tensor((16,), torch.float32)
    compiled = check_graph(g, [x, b], lambda x, b: (torch.relu(x + b), torch.relu(x + b).sum(1)))
    assert compiled.num_kernels == 1


WITH_MATMUL = """\
func @f(%x: f64[4,4]) -> (f64[4,4]) [device="cpu"] {
  %0: f64[4,4] = fused[name="fused0"] %x {
    ^(%a: f64[4,4]):
    %0: f64[4,4] = exp %a
    %1: f64[4,4] = matmul %0, %a
    %2: f64[4,4] = relu %1
    yield %2
  }
  return %0
}
"""


def test_region_no_kernel_can_walk_runs_op_by_op(device):
    # The matmul template has no f64: the body runs op by op, the matmul through the library.
    g = parse_on(device, WITH_MATMUL)
    x = random_tensor((4, 4), torch.float64)
    compiled = check_graph(g, [x], lambda x: torch.relu(torch.exp(x) @ x))
    assert compiled.num_kernels == 2  # exp and relu; the matmul is a library call
    assert [e["target"] for e in compiled.externs] == ["aten.matmul"]


CHAIN = """\
func @f[s0](%x: bf16[s0,32], %b: bf16[32], %m: b1[s0,32]) -> (f32[s0,32], bf16[s0]) [device="cpu"] {
  %0: bf16[s0,32] = add %x, %b
  %1: bf16[] = full[value=0.0]
  %2: bf16[s0,32] = maximum %0, %1
  %3: bf16[s0,32] = where %m, %2, %x
  %4: f32[s0,32] = cast[dtype="f32"] %3
  %5: f32[s0,32] = tanh %4
  %6: bf16[s0] = reduce_sum[axes=(1,), keepdim=False] %3
  return %5, %6
}
"""


def test_fuse_pass_output_compiles_to_fewer_kernels(device):
    plain = parse_on(device, CHAIN)
    fused = plain.copy()
    stats = run_pipeline(fused, "fuse")["fuse"].stats
    assert (stats["regions"], stats["ops_fused"]) == (1, 6)
    x, b = random_tensor((7, 32), torch.bfloat16), random_tensor((32,), torch.bfloat16)
    m = random_tensor((7, 32), torch.bool)

    def eager(x, b, m):
        y = torch.where(m, torch.clamp_min(x + b, 0), x)
        return torch.tanh(y.float()), y.sum(1)

    before = check_graph(plain, [x, b, m], eager, atol=1e-2, rtol=1e-2)
    after = check_graph(fused, [x, b, m], eager, atol=1e-2, rtol=1e-2)
    assert (before.num_kernels, after.num_kernels) == (7, 1)
    # Inside one kernel each bf16 op's result is rounded to bf16 as a store would round it, so
    # the fused kernel computes what the unfused ones do: bit for bit on the pointwise output
    # (the sum may differ in accumulation order only).
    inputs = [x.to(device), b.to(device), m.to(device)]
    (f0, s0), (f1, s1) = before(inputs), after(inputs)
    torch.testing.assert_close(f1, f0, atol=0, rtol=0)
    torch.testing.assert_close(s1, s0, atol=1e-2, rtol=1e-2)


def test_fused_random_graphs_match_the_interpreter():
    sys.path.insert(0, str(Path(__file__).parents[1] / "passes"))
    from random_graphs import random_graph
    from pass_testing import random_inputs
    total = 0
    for seed in range(12):
        g = random_graph(seed)
        run_pipeline(g, "canonicalize,cse,dce,hoist_views,fuse")
        total += sum(op.name == "fused" for op in g.ops)
        compiled = compile_graph(g)
        inputs = random_inputs(g, seed)
        for got, want in zip(compiled(inputs), interpret(g, inputs)):
            torch.testing.assert_close(got, want, equal_nan=True, atol=1e-5, rtol=1e-5)
    assert total > 5


PROLOGUE = """\
func @f[s0](%x: f32[s0,40], %b: f32[40]) -> (f32[s0], i64[s0]) [device="cpu"] {
  %0: f32[s0,40] = sub %x, %b
  %1: f32[s0,40] = mul %0, %0
  %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1
  %3: f32[s0,40] = neg %x
  %4: i64[s0] = argmax[axes=(1,), keepdim=False] %3
  return %2, %4
}
"""


def test_pointwise_prologue_and_reduction_are_one_kernel(device):
    g = parse_on(device, PROLOGUE)
    stats = run_pipeline(g, "fuse")["fuse"].stats
    assert (stats["regions"], stats["ops_fused"]) == (1, 5)  # both read x: merged horizontally
    x, b = random_tensor((6, 40), torch.float32), random_tensor((40,), torch.float32)
    compiled = check_graph(g, [x, b], lambda x, b: (((x - b) ** 2).sum(1), (-x).argmax(1)))
    assert compiled.num_kernels == 1


def test_prologue_into_a_looped_reduction(device, monkeypatch):
    from ember.codegen import launch_heuristics
    monkeypatch.setattr(launch_heuristics, "PERSISTENT_REDUCTION_MAX", 4)  # loops in chunks of 4
    g = parse_on(device, PROLOGUE)
    run_pipeline(g, "fuse")
    x, b = random_tensor((5, 40), torch.float32), random_tensor((40,), torch.float32)
    compiled = check_graph(g, [x, b], lambda x, b: (((x - b) ** 2).sum(1), (-x).argmax(1)))
    assert compiled.num_kernels == 1
    assert all("for roffset" in src for src in compiled.kernels.values())


ROTARY = """\
func @f[s0](%x: f32[2,s0,8], %c: f32[s0,8]) -> (f32[2,s0,8]) [device="cpu"] {
  %0: f32[2,s0,3] = slice[dim=2, end=3, start=0, step=1] %x
  %1: f32[2,s0,5] = slice[dim=2, end=8, start=3, step=1] %x
  %2: f32[2,s0,8] = fused[name="fused0"] %1, %0, %x, %c {
    ^(%hi: f32[2,s0,5], %lo: f32[2,s0,3], %a: f32[2,s0,8], %b: f32[s0,8]):
    %0: f32[2,s0,8] = concat[dim=2] %hi, %lo
    %1: f32[2,s0,8] = mul %0, %b
    %2: f32[2,s0,8] = add %1, %a
    yield %2
  }
  return %2
}
"""


def test_a_concat_of_inputs_is_one_kernel_with_its_readers(device):
    # Each element loads from the piece that covers it, at the shifted position (uneven pieces,
    # a symbolic size, strided views of one input).
    g = parse_on(device, ROTARY)
    x, c = random_tensor((2, 5, 8), torch.float32), random_tensor((5, 8), torch.float32)
    compiled = check_graph(g, [x, c], lambda x, c: torch.cat([x[..., 3:], x[..., :3]], -1) * c + x)
    assert compiled.num_kernels == 1


def test_a_concat_with_a_constant_piece(device):
    g = parse_on(device, """\
func @f(%x: f32[4,3]) -> (f32[4,5]) [device="cpu"] {
  %0: f32[4,5] = fused[name="fused0"] %x {
    ^(%a: f32[4,3]):
    %0: f32[4,2] = full[value=-1.5]
    %1: f32[4,5] = concat[dim=1] %0, %a
    %2: f32[4,5] = exp %1
    yield %2
  }
  return %0
}
""")
    x = random_tensor((4, 3), torch.float32)
    compiled = check_graph(g, [x], lambda x: torch.cat([torch.full((4, 2), -1.5, device=x.device), x], 1).exp())
    assert compiled.num_kernels == 1


def test_an_iota_smaller_than_the_kernel_broadcasts_into_it(device):
    # Position indices smaller than the kernel: over [1,4,1] the iota's dim is the kernel's dim
    # 1, over [3] its last dim; along a dim of size 1 ([1,1,3], dim 1) an iota is 0 everywhere.
    g = parse_on(device, """\
func @f(%x: f32[2,4,3]) -> (f32[2,4,3]) [device="cpu"] {
  %0: f32[2,4,3] = fused[name="fused0"] %x {
    ^(%a: f32[2,4,3]):
    %0: i64[1,4,1] = iota[dim=1]
    %1: i64[3] = iota[dim=0]
    %2: i64[1,1,3] = iota[dim=1]
    %3: i64[1,4,3] = add %0, %1
    %4: i64[1,4,3] = add %3, %2
    %5: f32[1,4,3] = cast[dtype="f32"] %4
    %6: f32[2,4,3] = mul %a, %5
    yield %6
  }
  return %0
}
""")
    x = random_tensor((2, 4, 3), torch.float32)
    pos = torch.arange(4).view(1, 4, 1) + torch.arange(3)
    compiled = check_graph(g, [x], lambda x: x * pos.to(x.device).float())
    assert compiled.num_kernels == 1
