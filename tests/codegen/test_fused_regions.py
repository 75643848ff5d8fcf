"""Codegen of `fused` regions: a pointwise body is ONE kernel; any other body runs op by op."""
import torch

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


def test_non_pointwise_region_runs_op_by_op(device):
    g = parse_on(device, MIXED)
    x, b = random_tensor((6, 16), torch.float32), random_tensor((16,), torch.float32)
    compiled = check_graph(g, [x, b], lambda x, b: (torch.relu(x + b), torch.relu(x + b).sum(1)))
    assert compiled.num_kernels == 3
