"""The matmul template's persistent TMA variant (codegen/matmul_tma.py) in Triton's interpreter,
which builds and checks TMA descriptors as the GPU does (16-byte strides and alignment, zero
padding past the edges): numerics against eager for each operand layout, ragged sizes (tiles
and a K step cut by the edges, more tiles than programs), prologues whose f(0) is not 0, fused
epilogues, descriptor and pointer stores, and the launch guard's fallback to the tiled kernel."""
import pytest
import torch
import torch.nn.functional as F

from ember.codegen import runtime
from ember.codegen.matmul_emit import FixedChoice
from ember.codegen.matmul_tma import INTERPRETER_SMS
from ember.ir import parse
from ember.passes import run_pipeline

from codegen_check import check_graph, erf_gelu_bf16_ir, exp_prologue_case, random_tensor

SMALL_TMA = "mm_16x16x32_g8_w2_s3_tma"   # 16x16 tiles: many per program; K steps of 32
TOL = dict(atol=2e-2, rtol=2e-2)


def _linear(m: int, n: int, k: int, dt: str = "bf16") -> str:
    return f"""
func @f(%x: {dt}[{m},{k}], %w: {dt}[{n},{k}], %b: {dt}[{n}]) -> ({dt}[{m},{n}]) {{
  %0: {dt}[{k},{n}] = permute[dims=(1, 0)] %w
  %1: {dt}[{m},{n}] = matmul %x, %0
  %2: {dt}[{m},{n}] = add %1, %b
  %3: {dt}[{m},{n}] = tanh %2
  return %3
}}"""


@pytest.mark.parametrize("dt", ["bf16", "f16"])
def test_linear_bias_tanh_with_a_transposed_weight(dt):
    # 40x56 in 16x16 tiles: 12 tiles on 3 programs; K=80: two whole K steps and a half one.
    g = parse(_linear(40, 56, 80, dt))
    run_pipeline(g, "fuse,fuse_matmul")
    torch_dt = {"bf16": torch.bfloat16, "f16": torch.float16}[dt]
    x, w, b = (random_tensor(s, torch_dt) for s in [(40, 80), (56, 80), (56,)])
    compiled = check_graph(g, [x, w, b], lambda x, w, b: torch.tanh(F.linear(x, w, b)),
                           chooser=FixedChoice("cpu", SMALL_TMA), **TOL)
    assert compiled.num_kernels == 1 and compiled.externs == []
    (kernel,) = [s for s in compiled.kernels.values() if "persistent TMA" in s]
    # The weight [56, 80] is read as it is stored (dim 0 of the [80, 56] operand contiguous) and
    # transposed in registers; the output goes out through masked pointer stores.
    assert "shape=[N, K], strides=[in1_stride1, 1], block_shape=[BLOCK_N, BLOCK_K]" in kernel
    assert ".load([off_n, k]).T" in kernel and "tl.store(out0_ptr + rm2 * N + rn2" in kernel
    assert "tma_ready(" in compiled.wrapper_source and f"NUM_SMS={INTERPRETER_SMS}" in compiled.module_source
    assert f"launch_k1_matmul0_tma({INTERPRETER_SMS}," in compiled.wrapper_source.replace("fused", "matmul0")


def test_linear_bias_gelu_rounded_to_bf16_computes_the_cheaper_gelu():
    # The decomposed erf GELU, cast to bf16: gelu_bf16 folds it, the kernel calls the helper
    # (no erf left), the kernel is marked as a GELU epilogue (the wide tile's search space), and
    # the result matches eager at bf16's tolerance.
    g = parse(_linear(40, 56, 80).replace("  %3: bf16[40,56] = tanh %2\n  return %3", erf_gelu_bf16_ir(2, "40,56")))
    report = run_pipeline(g, "fuse,fuse_matmul,gelu_bf16")
    assert report.records[-1].stats == {"folded": 1}
    x, w, b = (random_tensor(s, torch.bfloat16) for s in [(40, 80), (56, 80), (56,)])
    compiled = check_graph(g, [x, w, b], lambda x, w, b: F.gelu(F.linear(x, w, b)),
                           chooser=FixedChoice("cpu", SMALL_TMA), **TOL)
    (kernel,) = [s for s in compiled.kernels.values() if "persistent TMA" in s]
    assert "helpers.gelu_bf16(" in kernel and "erf" not in kernel
    from ember.codegen.matmul_template import matmul_kernel
    region = next(op for op in g.ops if op.name == "fused")
    body = region.attrs["body"]
    assert matmul_kernel(body.ops, body.outputs, interpret=True).gelu_epilogue
    tanh = parse(_linear(40, 56, 80))
    run_pipeline(tanh, "fuse,fuse_matmul")
    body = next(op for op in tanh.ops if op.name == "fused").attrs["body"]
    assert not matmul_kernel(body.ops, body.outputs, interpret=True).gelu_epilogue


@pytest.mark.parametrize("k, even", [(64, True), (72, False)])
def test_prologue_that_does_not_map_zero_to_zero(k, even):
    """TMA pads a partial K step with zeros; exp(0) = 1 must not reach the product."""
    g, inputs, eager = exp_prologue_case(k)
    compiled = check_graph(g, inputs, eager, chooser=FixedChoice("cpu", SMALL_TMA), **TOL)
    assert f"EVEN_K={even}" in compiled.module_source
    (kernel,) = [s for s in compiled.kernels.values() if "persistent TMA" in s]
    assert "tl.where(k_left[None, :]" in kernel   # the re-zeroing, in the partial-step branch


def test_column_major_a_and_an_f32_cast_prologue():
    """A stored transposed (a timing run states its layout), B cast from f32 by a prologue."""
    g = parse("""
func @f(%a: bf16[36,48], %b: f32[48,20]) -> (bf16[36,20]) {
  %0: bf16[36,20] = fused[name="matmul0"] %a, %b {
    ^(%in0: bf16[36,48], %in1: f32[48,20]):
    %0: bf16[48,20] = cast[dtype="bf16"] %in1
    %1: bf16[36,20] = matmul %in0, %0
    yield %1
  }
  return %0
}""")
    a = random_tensor((48, 36), torch.bfloat16).t()
    # The runtime guard needs 16-byte rows of b: 20 f32 columns are 80 bytes.
    b = random_tensor((48, 20), torch.float32)
    chooser = FixedChoice("cpu", SMALL_TMA)
    chooser.input_layouts = {"a": (1, 0)}
    compiled = check_graph(g, [a, b], lambda a, b: torch.matmul(a, b.bfloat16()), chooser=chooser, **TOL)
    (kernel,) = [s for s in compiled.kernels.values() if "persistent TMA" in s]
    assert "shape=[K, M], strides=[in0_stride1, 1], block_shape=[BLOCK_K, BLOCK_M]" in kernel
    assert ".load([k, off_m]).T" in kernel


def test_an_operand_laid_out_otherwise_runs_the_tiled_kernel():
    """Built for a row-major x, given a column-major one: the guard sends the launch to the
    tiled kernel, and the result is still right."""
    g = parse(_linear(40, 56, 80))
    run_pipeline(g, "fuse,fuse_matmul")
    eager = lambda x, w, b: torch.tanh(F.linear(x, w, b))  # noqa: E731
    x = random_tensor((80, 40), torch.bfloat16).t()
    w, b = random_tensor((56, 80), torch.bfloat16), random_tensor((56,), torch.bfloat16)
    compiled = check_graph(g, [x, w, b], eager, chooser=FixedChoice("cpu", SMALL_TMA), **TOL)
    assert len(compiled.kernels) == 2   # the TMA kernel and the tiled fallback
    answers = []

    def spy(t, dim):
        answers.append(runtime.tma_ready(t, dim))
        return answers[-1]
    compiled._call.__globals__["tma_ready"] = spy
    for x in [random_tensor((80, 40), torch.bfloat16).t(), random_tensor((40, 80), torch.bfloat16)]:
        (got,) = compiled([x, w, b])
        torch.testing.assert_close(got, eager(x, w, b), **TOL)
    assert answers[0] is False and answers[1:] == [True, True]   # x, then x and w


def test_tma_ready():
    x = torch.empty(8, 24, dtype=torch.bfloat16)
    assert runtime.tma_ready(x, 1) and not runtime.tma_ready(x, 0)
    assert runtime.tma_ready(x.t(), 0)
    assert not runtime.tma_ready(torch.empty(8, 20, dtype=torch.bfloat16), 1)   # 40-byte rows
    assert not runtime.tma_ready(torch.empty(8, 25, dtype=torch.bfloat16)[:, 1:], 1)  # start +2 bytes


def test_search_space():
    from ember.codegen.matmul_tma import tma_search_space
    big = tma_search_space(8192, 8192, 8192, interpret=False)
    assert big and all(c.TMA for c in big)
    assert tma_search_space(16, 4096, 4096, interpret=False) == []       # thin: the tiled kernel's
    assert tma_search_space("s0", 4096, 4096, interpret=False) == []     # nothing timed there
    # The 128x256 tile (the longest compile) only for deep reductions.
    assert [c.name for c in tma_search_space(8192, 4096, 768, interpret=False)] == ["mm_128x128x64_g8_w8_s4_tma"]
    # ... or under a GELU epilogue (the library is two kernels there), whatever the depth.
    assert [c.name for c in tma_search_space(8192, 3072, 768, interpret=False, gelu_epilogue=True)] == \
        ["mm_128x256x64_g8_w8_s3_tma", "mm_128x128x64_g8_w8_s4_tma"]
    assert "mm_128x256x64_g8_w8_s3_tma" in [c.name for c in big]
    cfg = big[0]
    from ember.codegen.matmul_template import MatmulConfig
    assert MatmulConfig.from_dict(cfg.as_dict()) == cfg
    assert "TMA" not in MatmulConfig(64, 64, 32).as_dict()   # decisions cached before TMA read back
