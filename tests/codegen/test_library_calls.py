"""matmul (torch.matmul when the library is chosen) and extern ops (ATen calls) in the wrapper, listed in `externs`."""
import torch

from ember.ir import Builder, ExternArg, TensorType, parse, symbol

from ember.codegen.matmul_emit import FixedChoice

from codegen_check import check_graph, parse_on, random_tensor


def test_matmul_is_a_library_call_when_chosen(device):
    g = parse_on(device, """
func @f[s0](%x: f32[s0,8], %w: f32[8,5], %b: f32[5]) -> (f32[s0,5]) [device="cpu"] {
  %0: f32[s0,5] = matmul %x, %w
  %1: f32[s0,5] = add %0, %b
  return %1
}
""")
    ins = [random_tensor((3, 8), torch.float32, device=device), random_tensor((8, 5), torch.float32, device=device),
           random_tensor((5,), torch.float32, device=device)]
    compiled = check_graph(g, ins, lambda x, w, b: x @ w + b, chooser=FixedChoice(g.device, "library"))
    assert compiled.externs == [{"op": "matmul", "target": "aten.matmul",
                                 "reason": "the library was chosen over ember's template"}]
    assert "torch.mm(x, w, out=buf0)" in compiled.wrapper_source   # into a buffer it allocates
    assert compiled.num_kernels == 1
    # The template's untimed choice (the interpreter, symbolic sizes): no library call at all.
    compiled = check_graph(g, ins, lambda x, w, b: x @ w + b, chooser=FixedChoice(g.device, "template"))
    assert compiled.externs == [] and compiled.num_kernels == 2


def test_batched_matmul_f16(device):
    b = Builder("bmm", device=device)
    x = b.input("x", TensorType("f16", (2, 3, 4), device))
    y = b.input("y", TensorType("f16", (2, 4, 6), device))
    g = b.build([b.op("matmul", x, y)])
    check_graph(g, [random_tensor((2, 3, 4), torch.float16, device=device), random_tensor((2, 4, 6), torch.float16, device=device)],
                torch.matmul)


def test_extern_with_kwargs_and_dtype_argument(device):
    s0 = symbol("s0")
    b = Builder("ext", device=device)
    x = b.input("x", TensorType("f32", (s0, 6), device))
    y = b.op("extern", x, result_types=[TensorType("f64", (s0, 6), device)], target="aten.cumsum.default",
             args=(ExternArg(0), 1), kwargs={"dtype": torch.float64}, reason="no scan kernel yet")
    g = b.build([b.op("exp", y)])
    compiled = check_graph(g, [random_tensor((4, 6), torch.float32, device=device)],
                           lambda t: torch.exp(torch.cumsum(t, 1, dtype=torch.float64)))
    assert compiled.externs == [{"op": "extern", "target": "aten.cumsum.default",
                                 "reason": "no scan kernel yet"}]
    assert "torch.ops.aten.cumsum.default(x, 1, dtype=torch.float64)" in compiled.wrapper_source


def test_extern_with_several_outputs(device):
    b = Builder("topk", device=device)
    x = b.input("x", TensorType("f32", (4, 9), device))
    vals, idx = b.op_multi("extern", x, result_types=[TensorType("f32", (4, 3), device), TensorType("i64", (4, 3), device)],
                           target="aten.topk.default", args=(ExternArg(0), 3), outputs=(0, 1), reason="sort")
    g = b.build([b.op("neg", vals), idx])
    check_graph(g, [random_tensor((4, 9), torch.float32, device=device)],
                lambda t: (-torch.topk(t, 3).values, torch.topk(t, 3).indices))


def test_extern_picking_one_of_several_outputs(device):
    b = Builder("sort", device=device)
    x = b.input("x", TensorType("f32", (3, 7), device))
    idx = b.op("extern", x, result_types=[TensorType("i64", (3, 7), device)], target="aten.sort.default",
               args=(ExternArg(0),), outputs=(1,), reason="sort")
    g = b.build([idx])
    compiled = check_graph(g, [random_tensor((3, 7), torch.float32, device=device)], lambda t: torch.sort(t).indices)
    assert "extern_results(" in compiled.wrapper_source


def test_extern_arguments_of_every_ir_kind(device):
    # Every attribute kind the IR can print has a Python spelling in the wrapper.
    s0 = symbol("s0")
    b = Builder("full_like", device=device)
    x = b.input("x", TensorType("f32", (s0, 3), device))
    y = b.op("extern", x, result_types=[TensorType("f16", (s0, 3), device)], target="aten.full_like.default",
             args=(ExternArg(0), float("-inf")),
             kwargs={"dtype": torch.float16, "layout": torch.strided, "device": torch.device(device),
                     "pin_memory": False, "memory_format": torch.preserve_format}, reason="test")
    z = b.op("extern", x, result_types=[TensorType("f32", (2 * s0, 3), device)], target="aten.new_zeros.default",
             args=(ExternArg(0), [2 * s0, 3]), reason="test")
    g = b.build([y, z])
    compiled = check_graph(g, [random_tensor((4, 3), torch.float32, device=device)],
                           lambda t: (torch.full_like(t, float("-inf"), dtype=torch.float16), t.new_zeros(8, 3)))
    assert f"torch.device({device!r})" in compiled.wrapper_source and "[d0, 3]" in compiled.wrapper_source
