"""One kernel for any layout and size: broadcasting, non-contiguous inputs, ragged edges, symbolic
sizes (one compiled graph at several sizes), and int64 index math."""
import pytest
import torch

from ember.codegen import compile_graph, runtime
from ember.ir import Builder, TensorType, parse, symbol

from codegen_check import check_graph, random_tensor

s0, s1 = symbol("s0"), symbol("s1")


def _binary(op, dtype, sa, sb, device="cpu"):
    b = Builder("bin", device=device)
    x, y = b.input("x", TensorType(dtype, sa, device)), b.input("y", TensorType(dtype, sb, device))
    return b.build([b.op(op, x, y)])


@pytest.mark.parametrize("sa,sb", [((4, 1, 6), (5, 1)), ((3, 4), ()), ((1,), (2, 3, 4)), ((2, 1, 3, 1), (1, 5, 1, 4))])
def test_broadcasting(sa, sb, device):
    g = _binary("mul", "f32", sa, sb, device)
    check_graph(g, [random_tensor(sa, torch.float32), random_tensor(sb, torch.float32)], torch.mul)


@pytest.mark.parametrize("layout", ["permuted", "sliced", "expanded", "offset"])
def test_non_contiguous_inputs(layout, device):
    base = random_tensor((6, 10), torch.float32, device=device)
    if layout == "permuted":
        x = random_tensor((10, 6), torch.float32, device=device).t()
    elif layout == "sliced":
        x = random_tensor((12, 30), torch.float32, device=device)[::2, 5:25:2]
    elif layout == "expanded":
        x = random_tensor((1, 10), torch.float32, device=device).expand(6, 10)
    else:
        x = random_tensor((70,), torch.float32, device=device)[7:67].view(6, 10)
    assert layout == "offset" or not x.is_contiguous()
    g = _binary("sub", "f32", (6, 10), (6, 10), device)
    check_graph(g, [x, base], torch.sub)


def test_three_dim_permuted_int_input(device):
    x = random_tensor((5, 4, 3), torch.int32, device=device).permute(2, 0, 1)
    y = random_tensor((3, 5, 4), torch.int32, device=device)
    g = _binary("bitwise_xor", "i32", (3, 5, 4), (3, 5, 4), device)
    check_graph(g, [x, y], torch.bitwise_xor)


@pytest.mark.parametrize("shape", [(1,), (37,), (1500,), (3, 509), ()])
def test_ragged_sizes(shape, device):
    # 1500 elements need two 1024-element blocks, the second one mostly masked.
    g = _binary("add", "f32", shape, shape, device)
    check_graph(g, [random_tensor(shape, torch.float32), random_tensor(shape, torch.float32)], torch.add)


def test_symbolic_sizes_one_compile_many_sizes(device):
    g = parse(f"""
func @f[s0, s1](%x: f32[s0,s1], %y: f32[s1]) -> (f32[s0,s1], f32[2*s0,s1]) [device="{device}"] {{
  %0: f32[s0,s1] = mul %x, %y
  %1: f32[s0,s1] = exp %0
  %2: f32[2*s0,s1] = concat[dim=0] %0, %1
  return %1, %2
}}
""")
    compiled = compile_graph(g)
    kernels_before = dict(compiled.kernels)
    for n, m in [(3, 5), (17, 2), (2, 40)]:
        x, y = random_tensor((n, m), torch.float32, device=device), random_tensor((m,), torch.float32, device=device)
        e = torch.exp(x * y)
        out = compiled([x, y])
        torch.testing.assert_close(out[0], e)
        torch.testing.assert_close(out[1], torch.cat([x * y, e]))
    assert compiled.kernels == kernels_before
    # The sizes are runtime arguments computed once at the top of the wrapper.
    assert "d0 = 2*s0" in compiled.wrapper_source or "d0 = s0*s1" in compiled.wrapper_source
    again = compile_graph(g)
    assert again.module_path == compiled.module_path


def test_symbols_passed_explicitly():
    g = parse("""
func @f[s0](%x: f32[s0,3]) -> (f32[s0,3]) [device="cpu"] {
  %0: f32[s0,3] = neg %x
  return %0
}
""")
    x = random_tensor((6, 3), torch.float32)
    check_graph(g, [x], torch.neg, symbols={symbol("s0"): 6})


def test_int64_index_math_path(monkeypatch, device):
    # Force the int64 decision (normally: a tensor spanning >= 2**31 elements) on tiny inputs.
    monkeypatch.setattr(runtime, "INT32_INDEX_LIMIT", 8)
    x = random_tensor((5, 7), torch.float32)
    g = _binary("add", "f32", (5, 7), (7,), device)
    check_graph(g, [x, random_tensor((7,), torch.float32)], torch.add)
    b = Builder("r", device=device)
    xv = b.input("x", TensorType("f32", (5, 7), device))
    g = b.build([b.op("reduce_sum", xv, axes=(1,), keepdim=False)])
    check_graph(g, [x], lambda t: t.sum(1))


def test_needs_int64():
    small = torch.empty(4, 4)
    assert not runtime.needs_int64(small, small.t())
    huge = torch.empty(1).expand(2**31)   # no memory behind it, but 2**31 elements
    assert runtime.needs_int64(small, huge)
    assert not runtime.needs_int64(torch.empty(0))
