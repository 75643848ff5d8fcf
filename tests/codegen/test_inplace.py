"""Elementwise kernels writing over a convolution's result they read last (codegen/inplace.py):
when it is allowed, that the result stays right, and when it must not happen."""
import torch
import torch.nn.functional as F

from ember.codegen import compile_graph
from ember.codegen.runtime import inplace_or_empty
from ember.ir import parse

from codegen_check import check_graph, random_tensor

CONV = 'extern[target="aten.convolution.default", args=[#0, #1, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1], outputs=(0,)]'


def _inputs():
    return [random_tensor((2, 4, 6, 6), torch.float32), random_tensor((8, 4, 1, 1), torch.float32),
            random_tensor((8, 1, 1), torch.float32)]


def test_scale_and_relu_write_over_the_convolution():
    g = parse(f"""
func @f(%x: f32[2,4,6,6], %w: f32[8,4,1,1], %s: f32[8,1,1]) -> (f32[2,8,6,6]) [device="cpu"] {{
  %0: f32[2,8,6,6] = {CONV} %x, %w
  %1: f32[2,8,6,6] = fused[name="bn_relu"] %0, %s {{
    ^(%in0: f32[2,8,6,6], %in1: f32[8,1,1]):
    %0: f32[2,8,6,6] = mul %in0, %in1
    %1: f32[2,8,6,6] = relu %0
    yield %1
  }}
  return %1
}}""")
    compiled = check_graph(g, _inputs(), lambda x, w, s: torch.relu(F.conv2d(x, w) * s))
    assert "buf1 = inplace_or_empty(buf0, (2, 8, 6, 6), torch.float32)" in compiled.wrapper_source
    assert compiled.memory["buffers"] == 0   # nothing left for the plan: the result is conv's storage
    x, w, s = _inputs()
    (out,) = compiled([x, w, s])
    torch.testing.assert_close(out, torch.relu(F.conv2d(x, w) * s))


def test_a_later_reader_of_the_convolution_keeps_it_intact():
    # %2 reads the convolution after %1: %1 must not write over it.
    g = parse(f"""
func @f(%x: f32[2,4,6,6], %w: f32[8,4,1,1], %s: f32[8,1,1]) -> (f32[2,8,6,6]) [device="cpu"] {{
  %0: f32[2,8,6,6] = {CONV} %x, %w
  %1: f32[2,8,6,6] = mul %0, %s
  %2: f32[2,8,6,6] = add %1, %0
  return %2
}}""")
    compiled = check_graph(g, _inputs(), lambda x, w, s: F.conv2d(x, w) * s + F.conv2d(x, w))
    src = compiled.wrapper_source
    assert "buf1 = inplace_or_empty" not in src
    assert "buf2 = inplace_or_empty(buf0," in src   # the add is its last reader


def test_a_second_view_of_the_convolution_in_the_same_kernel_blocks_it():
    # The add reads the convolution twice, once transposed: writing over it would let one
    # program overwrite what another still reads.
    g = parse(f"""
func @f(%x: f32[2,4,6,6], %w: f32[8,4,1,1]) -> (f32[2,8,6,6]) [device="cpu"] {{
  %0: f32[2,8,6,6] = {CONV} %x, %w
  %1: f32[2,8,6,6] = permute[dims=(0, 1, 3, 2)] %0
  %2: f32[2,8,6,6] = add %0, %1
  return %2
}}""")
    compiled = check_graph(g, _inputs()[:2], lambda x, w: F.conv2d(x, w) + F.conv2d(x, w).transpose(2, 3))
    assert "inplace_or_empty" not in compiled.wrapper_source


def test_externs_that_may_return_a_view_are_never_written_over():
    g = parse("""
func @f(%x: f32[8,16]) -> (f32[8,16]) [device="cpu"] {
  %0: f32[8,16] = extern[target="aten.alias.default", args=[#0], outputs=(0,)] %x
  %1: f32[8,16] = relu %0
  return %1
}""")
    x = random_tensor((8, 16), torch.float32)
    keep = x.clone()
    compiled = check_graph(g, [x], torch.relu)
    assert "inplace_or_empty" not in compiled.wrapper_source
    torch.testing.assert_close(x, keep)   # the input is untouched


def test_inplace_or_empty_only_hands_back_a_contiguous_match():
    t = torch.randn(4, 6)
    assert inplace_or_empty(t, (4, 6), torch.float32) is t
    for other in (t.t(), t[:, :3]):
        got = inplace_or_empty(other, tuple(other.shape), torch.float32)
        assert got is not other and got.is_contiguous() and got.untyped_storage().data_ptr() != t.data_ptr()
    assert inplace_or_empty(t, (4, 6), torch.float64).dtype == torch.float64


def test_resnet_style_block_matches_eager(tmp_path):
    torch.manual_seed(0)
    conv1, bn1 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8)
    conv2, bn2 = torch.nn.Conv2d(8, 8, 1, bias=False), torch.nn.BatchNorm2d(8)
    for bn in (bn1, bn2):
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    block = torch.nn.Sequential(conv1, bn1, torch.nn.ReLU(), conv2, bn2).eval()

    def f(x):
        return torch.relu(block(x) + x)

    torch._dynamo.reset()
    compiled = torch.compile(f, backend="ember", options={"dump_dir": str(tmp_path)})
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), f(x), atol=1e-4, rtol=1e-4)
    (wrapper,) = tmp_path.rglob("wrapper.py")
    # Both batch norms (the second with the residual add and ReLU) write over their convolution.
    assert wrapper.read_text().count("inplace_or_empty(") == 2
