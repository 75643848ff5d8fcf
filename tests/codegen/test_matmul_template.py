"""The matmul template (codegen/matmul_template.py) in Triton's interpreter: numerics against eager
for 2-d and batched products, f32/bf16/f16, transposed operands, ragged sizes (several tiles, a
partial last K step), a symbolic size, prologue casts and the epilogues fuse_matmul makes."""
import pytest
import torch
import torch.nn.functional as F

from ember.codegen import compile_graph
from ember.codegen.matmul_emit import FixedChoice
from ember.ir import parse
from ember.passes import run_pipeline

from codegen_check import check_graph, erf_gelu_bf16_ir, exp_prologue_case, random_tensor

DT = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
TOL = {"f32": dict(atol=1e-4, rtol=1e-4), "bf16": dict(atol=2e-2, rtol=2e-2), "f16": dict(atol=1e-2, rtol=1e-2)}
# Small configs of the search spaces: 20x24 takes 2x2 (or 2x1) tiles, K=72 two or three K steps.
SMALL = {"f32": "mm_16x32x32_g8_w2_s3", "bf16": "mm_16x16x64_g8_w2_s3", "f16": "mm_16x16x64_g8_w2_s3"}


@pytest.mark.parametrize("dt", ["f32", "bf16", "f16"])
def test_2d_ragged_with_transposed_operands(dt):
    g = parse(f"""
func @f(%a: {dt}[20,72], %b: {dt}[72,24]) -> ({dt}[20,24]) {{
  %0: {dt}[20,24] = matmul %a, %b
  return %0
}}""")
    a = random_tensor((72, 20), DT[dt]).t()           # column-major A
    b = random_tensor((24, 72), DT[dt]).t()           # a Linear's transposed weight
    compiled = check_graph(g, [a, b], torch.matmul, chooser=FixedChoice("cpu", SMALL[dt]), **TOL[dt])
    assert compiled.num_kernels == 1 and compiled.externs == []
    assert "launch_k0_matmul(4," in compiled.wrapper_source or "launch_k0_matmul(2," in compiled.wrapper_source


def test_batched_bias_relu_with_cast_prologue_and_symbolic_rows():
    g = parse("""
func @f[s0](%x: f32[3,s0,40], %w: bf16[3,40,24], %b: bf16[24]) -> (bf16[3,s0,24]) {
  %0: bf16[3,s0,24] = fused[name="matmul0"] %x, %w, %b {
    ^(%in0: f32[3,s0,40], %in1: bf16[3,40,24], %in2: bf16[24]):
    %0: bf16[3,s0,40] = cast[dtype="bf16"] %in0
    %1: bf16[3,s0,24] = matmul %0, %in1
    %2: bf16[3,s0,24] = add %1, %in2
    %3: bf16[3,s0,24] = relu %2
    yield %3
  }
  return %0
}""")
    x = random_tensor((3, 20, 40), torch.float32)
    w = random_tensor((3, 24, 40), torch.bfloat16).transpose(1, 2)
    b = random_tensor((24,), torch.bfloat16)
    eager = lambda x, w, b: torch.relu(torch.matmul(x.bfloat16(), w) + b)  # noqa: E731
    template = check_graph(g, [x, w, b], eager, chooser=FixedChoice("cpu", "mm_16x16x64_g8_w2_s3"), **TOL["bf16"])
    assert template.num_kernels == 1 and template.externs == []
    # The library path: the cast's kernel, torch.matmul, the epilogue as ONE kernel.
    library = check_graph(g, [x, w, b], eager, chooser=FixedChoice("cpu", "library"), **TOL["bf16"])
    assert library.num_kernels == 2
    assert [e["target"] for e in library.externs] == ["aten.matmul"]
    assert "matmul0_epilogue" in library.wrapper_source


def _linear_graph(dt: str, epilogue: str, out: str = None) -> str:
    out = out or dt
    return f"""
func @f(%x: {dt}[20,40], %w: {dt}[24,40], %b: {dt}[24], %r: {dt}[20,24]) -> ({out}[20,24]) {{
  %0: {dt}[40,24] = permute[dims=(1, 0)] %w
  %1: {dt}[20,24] = matmul %x, %0
{epilogue}
}}"""


EPILOGUES = {
    # name: (IR after the product %1, eager of (x, w, b, r))
    "bias_gelu": ("  %2: bf16[20,24] = add %1, %b\n" + erf_gelu_bf16_ir(2, "20,24"), "bf16",
                  lambda x, w, b, r: F.gelu(F.linear(x, w, b))),
    "silu_residual": ("""  %2: f32[20,24] = sigmoid %1
  %3: f32[20,24] = mul %1, %2
  %4: f32[20,24] = add %3, %r
  return %4""", "f32", lambda x, w, b, r: F.silu(x @ w.t()) + r),
    "scale_cast_out": ("""  %2: f16[] = full[value=0.125]
  %3: f16[20,24] = mul %1, %2
  %4: f32[20,24] = cast[dtype="f32"] %3
  return %4""", "f16", lambda x, w, b, r: ((x @ w.t()) * 0.125).float()),
}


@pytest.mark.parametrize("name", sorted(EPILOGUES))
def test_epilogues_fused_by_the_pipeline_are_one_kernel(name):
    body, dt, eager = EPILOGUES[name]
    out = "f32" if name == "scale_cast_out" else dt
    g = parse(_linear_graph(dt, body, out))
    run_pipeline(g, "fuse,fuse_matmul")
    regions = [op for op in g.ops if op.name == "fused"]
    assert len(regions) == 1 and regions[0].attrs["name"] == "matmul0"
    ins = [random_tensor(s, DT[dt]) for s in [(20, 40), (24, 40), (24,), (20, 24)]]
    compiled = check_graph(g, ins, eager, **TOL[dt])   # the default chooser: the template on CPU
    assert compiled.num_kernels == 1 and compiled.externs == []
    assert compiled.autotune[0]["source"] == "heuristic (CPU interpreter)"
    (kernel,) = compiled.kernels.values()
    # A bias is read once per column of the tile ([1, BLOCK_N], masked along N) and broadcast in
    # registers, not loaded at every element of the tile (~13% of a BERT MLP GEMM on an H100).
    assert "tl.load(tl.broadcast_to(" not in kernel
    if name == "bias_gelu":
        assert "tl.broadcast_to(tl.load(in2_ptr + (rn2 * in2_stride0), mask=(rn2 < N))" in kernel


@pytest.mark.parametrize("operand, single", [("%b", True), ("%r", False)])
def test_a_bias_is_added_to_the_accumulator_a_residual_to_the_rounded_product(operand, single):
    # A bf16 Linear: ATen's addmm adds the bias to the f32 accumulator and rounds once, so the
    # template does too (bias_add), where the IR rounds the product first; a residual of the
    # product's shape is an add of its own in eager, after the product was rounded.
    g = parse(_linear_graph("bf16", f"  %2: bf16[20,24] = add {operand}, %1\n  return %2"))
    run_pipeline(g, "fuse,fuse_matmul")
    x, w, b, r = (random_tensor(s, torch.bfloat16) for s in [(20, 40), (24, 40), (24,), (20, 24)])
    other = b if single else r
    compiled = check_graph(g, [x, w, b, r], lambda x, w, b, r: other + x @ w.t(), **TOL["bf16"])
    (kernel,) = compiled.kernels.values()
    assert ("+ acc)" in kernel) == single and ("the product, in its dtype" in kernel) != single
    got = compiled([x, w, b, r], None)[0]
    if single:
        # the same rounding as eager's addmm (accumulation order may still move an element by one ulp)
        assert (got != F.linear(x, w, b)).float().mean() < 0.02


def test_product_and_epilogue_both_stored():
    g = parse("""
func @f(%x: f32[2,20,40], %w: f32[2,40,24]) -> (f32[2,20,24], f32[2,20,24]) {
  %0: f32[2,20,24] = matmul %x, %w
  %1: f32[2,20,24] = tanh %0
  return %1, %0
}""")
    run_pipeline(g, "fuse_matmul")
    ins = [random_tensor((2, 20, 40), torch.float32), random_tensor((2, 40, 24), torch.float32)]
    compiled = check_graph(g, ins, lambda x, w: (torch.tanh(x @ w), x @ w), **TOL["f32"])
    assert compiled.num_kernels == 1


def test_source_holds_no_config_and_records_the_f32_precision():
    text = """
func @f(%a: f32[256,256], %b: f32[256,256]) -> (f32[256,256]) [device="cuda"] {
  %0: f32[256,256] = matmul %a, %b
  return %0
}"""
    from ember.codegen.wrapper import generate_module

    def kernel_of(cfg):
        gen = generate_module(parse(text), FixedChoice("cuda", cfg))
        (source,) = gen.kernels.values()
        return source, gen.source

    small, small_module = kernel_of("mm_64x64x32_g8_w4_s4")
    large, large_module = kernel_of("mm_128x128x32_g8_w8_s3")
    assert small == large and 'input_precision="ieee"' in small   # eager's full f32 by default
    assert "num_stages=3" in large_module and "BLOCK_M=128" in large_module
    before = torch.backends.cuda.matmul.allow_tf32   # a flag torch reads through a property
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        tf32, _ = kernel_of("mm_64x64x32_g8_w4_s4")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert 'input_precision="tf32"' in tf32 and tf32 != small


def test_timing_runners_really_run_each_implementation():
    # On a GPU the chooser times these; here the same runners run in the interpreter.
    from ember.codegen.choice import Implementation
    from ember.codegen.wrapper import WrapperBuilder
    g = parse("""
func @f(%x: f32[20,40], %w: f32[40,24], %b: f32[24]) -> (f32[20,24]) {
  %0: f32[20,24] = fused[name="matmul0"] %x, %w, %b {
    ^(%in0: f32[20,40], %in1: f32[40,24], %in2: f32[24]):
    %0: f32[20,24] = matmul %in0, %in1
    %1: f32[20,24] = add %0, %in2
    yield %1
  }
  return %0
}""")
    builder = WrapperBuilder(g)
    make = builder.matmuls._runner_maker(g.ops[0])
    ins = [random_tensor(s, torch.float32) for s in [(20, 40), (40, 24), (24,)]]
    for impl in [Implementation("library", {}, is_library=True),
                 Implementation("mm_16x32x32_g8_w2_s3", {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32,
                                                         "GROUP_M": 8, "num_warps": 2, "num_stages": 3})]:
        (got,) = make(impl, ins)()
        torch.testing.assert_close(got, torch.addmm(ins[2], ins[0], ins[1]), **TOL["f32"])


def test_search_space_keeps_thin_tiles_for_thin_products_only():
    from ember.codegen.matmul_template import search_space
    long = search_space("bf16", 4096, 768, 768)
    assert long and all(c.BLOCK_M >= 64 and c.BLOCK_N >= 64 for c in long)
    decode = search_space("bf16", 16, 4096, 4096)
    assert any(c.BLOCK_N < 64 for c in decode) and all(c.BLOCK_M == 16 for c in decode)
    assert any(c.BLOCK_M < 64 for c in search_space("bf16", "s0", 4096, 4096))  # symbolic: all kept


def test_search_space_of_a_tiny_product_is_its_two_smallest_tiles():
    """A classifier head (64x1000x768: 98 MFLOP) races the two tiles that give it the most
    programs; the same sizes batched 64 times are no longer tiny, nor is a symbolic batch."""
    from ember.codegen.matmul_template import TINY_FLOPS, search_space
    head = search_space("bf16", 64, 1000, 768)
    assert [c.name for c in head] == ["mm_16x16x64_g8_w2_s3", "mm_16x32x128_g8_w2_s4"]
    assert [c.name for c in search_space("f32", 64, 1024, 64)] == ["mm_16x32x32_g8_w2_s3", "mm_32x32x32_g8_w2_s3"]
    assert len(search_space("bf16", 64, 1000, 768, batch=64)) == 8
    assert len(search_space("bf16", 64, 1000, 768, batch="s0")) == 8
    assert 2 * 64 * 2048 * 1000 < TINY_FLOPS < 2 * 128 * 4096 * 1024   # ResNet-50's head is tiny, a layer is not


@pytest.mark.parametrize("k, even", [(64, True), (72, False)])
def test_k_a_multiple_of_block_k_loads_without_a_mask(k, even):
    """EVEN_K (set at launch from K and BLOCK_K) takes the unmasked K loop; a prologue whose op
    does not map 0 to 0 (exp) is still right in both loops."""
    g, inputs, eager = exp_prologue_case(k)
    compiled = check_graph(g, inputs, eager, chooser=FixedChoice("cpu", "mm_16x16x64_g8_w2_s3"), **TOL["bf16"])
    assert compiled.num_kernels == 1 and f"EVEN_K={even}" in compiled.module_source  # the Launcher
    assert "if EVEN_K:" in next(iter(compiled.kernels.values()))
