"""index / gather / concat / pad kernels, and view ops (no kernel, except a reshape that needs a copy)."""
import pytest
import torch

from ember.codegen import compile_graph
from ember.ir import Builder, TensorType, parse, symbol

from codegen_check import check_graph, parse_on, random_tensor


def test_embedding_lookup_with_negative_indices(device):
    b = Builder("embed", device=device)
    w = b.input("w", TensorType("f32", (10, 6), device))
    ids = b.input("ids", TensorType("i64", (3, 4), device))
    g = b.build([b.op("index", w, ids, dim=0)])
    idx = random_tensor((3, 4), torch.int64, -10, 10, device=device)
    compiled = check_graph(g, [random_tensor((10, 6), torch.float32, device=device), idx], lambda w_, i: w_[i])
    assert compiled.num_kernels == 1


@pytest.mark.parametrize("idx_dtype", ["i32", "i64"])
def test_index_middle_dim(idx_dtype, device):
    b = Builder("index", device=device)
    x = b.input("x", TensorType("f16", (3, 7, 5), device))
    ids = b.input("ids", TensorType(idx_dtype, (4,), device))
    g = b.build([b.op("index", x, ids, dim=1)])
    idx = random_tensor((4,), torch.int64, -7, 7, device=device).to(torch.int32 if idx_dtype == "i32" else torch.int64)
    check_graph(g, [random_tensor((3, 7, 5), torch.float16, device=device), idx], lambda t, i: t[:, i])


@pytest.mark.parametrize("dim", [0, 1])
def test_gather(dim, device):
    b = Builder("gather", device=device)
    x = b.input("x", TensorType("f32", (5, 6), device))
    ids = b.input("ids", TensorType("i64", (4, 3), device))
    g = b.build([b.op("gather", x, ids, dim=dim)])
    idx = random_tensor((4, 3), torch.int64, 0, 5 if dim == 0 else 6, device=device)
    x_t = random_tensor((5, 6), torch.float32, device=device).t().contiguous().t()  # column-major input
    check_graph(g, [x_t, idx], lambda t, i: torch.gather(t, dim, i))


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_concat(dim, device):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for k, n in enumerate((1, 5, 2)):
        shapes[k][dim] = n
    b = Builder("cat", device=device)
    ins = [b.input(f"x{k}", TensorType("bf16", s, device)) for k, s in enumerate(shapes)]
    g = b.build([b.op("concat", *ins, dim=dim)])
    check_graph(g, [random_tensor(s, torch.bfloat16, device=device) for s in shapes], lambda *ts: torch.cat(ts, dim))


def test_concat_symbolic(device):
    s0 = symbol("s0")
    b = Builder("cat", device=device)
    x = b.input("x", TensorType("i64", (s0, 3), device))
    y = b.input("y", TensorType("i64", (4, 3), device))
    g = b.build([b.op("concat", x, y, x, dim=0)])
    compiled = compile_graph(g)
    for n in (2, 5):
        xs, ys = random_tensor((n, 3), torch.int64, device=device), random_tensor((4, 3), torch.int64, device=device)
        torch.testing.assert_close(compiled([xs, ys])[0], torch.cat([xs, ys, xs]))


@pytest.mark.parametrize("dtype,value", [("f32", 0.0), ("f32", -1.5), ("f16", float("-inf")), ("i32", 7)])
def test_pad(dtype, value, device):
    b = Builder("pad", device=device)
    x = b.input("x", TensorType(dtype, (3, 4), device))
    g = b.build([b.op("pad", x, pads=((1, 2), (0, 3)), value=value)])
    t = random_tensor((3, 4), {"f32": torch.float32, "f16": torch.float16, "i32": torch.int32}[dtype], device=device)
    check_graph(g, [t], lambda u: torch.constant_pad_nd(u, [0, 3, 1, 2], value))


def test_views_need_no_kernel(device):
    g = parse_on(device, """
func @views(%x: f32[4,6]) -> (f32[6,4], f32[3,4,6], f32[2,6], f32[24]) [device="cpu"] {
  %0: f32[6,4] = permute[dims=(1, 0)] %x
  %1: f32[3,4,6] = expand[shape=(3, 4, 6)] %x
  %2: f32[2,6] = slice[dim=0, end=4, start=1, step=2] %x
  %3: f32[24] = reshape[shape=(24,)] %x
  return %0, %1, %2, %3
}
""")
    x = random_tensor((4, 6), torch.float32, device=device)
    compiled = check_graph(g, [x], lambda t: (t.t(), t.expand(3, 4, 6), t[1:4:2], t.reshape(24)))
    assert compiled.num_kernels == 0
    out = compiled([x])
    assert all(o.data_ptr() == x.data_ptr() or o.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
               for o in out)


def test_kernel_reads_a_view_without_copying(device):
    g = parse_on(device, """
func @f(%x: f32[4,6]) -> (f32[3,6]) [device="cpu"] {
  %0: f32[6,4] = permute[dims=(1, 0)] %x
  %1: f32[6,3] = slice[dim=1, end=4, start=1, step=1] %0
  %2: f32[3,6] = permute[dims=(1, 0)] %1
  %3: f32[3,6] = exp %2
  return %3
}
""")
    compiled = check_graph(g, [random_tensor((4, 6), torch.float32, device=device)], lambda t: torch.exp(t[1:4]))
    assert compiled.num_kernels == 1


def test_reshape_that_needs_a_copy(device):
    g = parse_on(device, """
func @f(%x: f32[4,6]) -> (f32[24], f32[24]) [device="cpu"] {
  %0: f32[6,4] = permute[dims=(1, 0)] %x
  %1: f32[24] = reshape[shape=(24,)] %0
  %2: f32[24] = neg %1
  return %1, %2
}
""")
    compiled = check_graph(g, [random_tensor((4, 6), torch.float32, device=device)],
                           lambda t: (t.t().reshape(24), -t.t().reshape(24)))
    assert "view_or_none" in compiled.wrapper_source and "k1_copy" in compiled.wrapper_source
    # The same module on an input whose layout makes the reshape a view: no copy needed.
    x = random_tensor((6, 4), torch.float32, device=device).t()
    out = compiled([x])
    assert out[0].data_ptr() == x.data_ptr()
    torch.testing.assert_close(out[1], -x.t().reshape(24))


def test_reshape_symbolic(device):
    g = parse_on(device, """
func @f[s0](%x: f32[s0,6]) -> (f32[s0,2,3]) [device="cpu"] {
  %0: f32[6,s0] = permute[dims=(1, 0)] %x
  %1: f32[s0,6] = permute[dims=(1, 0)] %0
  %2: f32[s0,2,3] = reshape[shape=(s0, 2, 3)] %1
  return %2
}
""")
    compiled = compile_graph(g)
    for n in (2, 5):
        x = random_tensor((n, 6), torch.float32, device=device)
        torch.testing.assert_close(compiled([x])[0], x.reshape(n, 2, 3))
        x_nc = random_tensor((6, n), torch.float32, device=device).t()   # same values layout-wise transposed
        torch.testing.assert_close(compiled([x_nc])[0], x_nc.reshape(n, 2, 3))
