"""ember's matmul template on CUDA (run on the lent H100 with EMBER_TEST_GPU=1): the template
alone (matmul_library=False, autotune off: the heuristic config; and tuned) against torch.matmul
at 512-2048 in bf16, fp16 and f32, plus a Linear + bias + GELU epilogue."""
import pytest
import torch
import torch.nn.functional as F

from ember.codegen import compile_graph
from ember.ir import parse
from ember.options import Options

DT = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
TOL = {"bf16": dict(atol=2e-2, rtol=2e-2), "f16": dict(atol=1e-2, rtol=1e-2), "f32": dict(atol=1e-3, rtol=1e-3)}


def _graph(dt, m, k, n):
    return parse(f"""
func @f(%a: {dt}[{m},{k}], %b: {dt}[{k},{n}]) -> ({dt}[{m},{n}]) [device="cuda"] {{
  %0: {dt}[{m},{n}] = matmul %a, %b
  return %0
}}""")


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "f16", "f32"])
@pytest.mark.parametrize("m,k,n", [(512, 512, 512), (1024, 2048, 768), (2048, 1024, 2048), (1000, 777, 1500)])
@pytest.mark.parametrize("autotune", [False, True])
def test_template_alone_matches_torch(dt, m, k, n, autotune, tmp_path):
    opts = Options(cache_dir=str(tmp_path), matmul_library=False, autotune=autotune, autotune_budget_s=20.0)
    compiled = compile_graph(_graph(dt, m, k, n), opts)
    assert compiled.externs == [] and compiled.num_kernels == 1
    a = torch.randn(m, k, device="cuda", dtype=DT[dt]) * k ** -0.5
    b = torch.randn(n, k, device="cuda", dtype=DT[dt]).t()      # a Linear's transposed weight
    torch.testing.assert_close(compiled([a, b])[0], a @ b, **TOL[dt])


@pytest.mark.gpu
@pytest.mark.parametrize("library", [True, False])
def test_linear_bias_gelu_is_one_kernel_on_cuda(library, tmp_path):
    torch._dynamo.reset()
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
    lin = torch.nn.Linear(1024, 2048, device="cuda", dtype=torch.bfloat16)
    fn = torch.compile(lambda x: F.gelu(lin(x)), backend="ember",
                       options={"matmul_library": library, "cache_dir": str(tmp_path)})
    with torch.no_grad():
        torch.testing.assert_close(fn(x), F.gelu(lin(x)), atol=3e-2, rtol=3e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", ["mm_128x256x64_g8_w8_s3_tma", "mm_128x128x64_g8_w8_s4_tma"])
def test_gelu_bf16_epilogue_matches_torch_and_offers_the_wide_tile(cfg, tmp_path):
    """A Linear + GELU rounded to bf16 (gelu_bf16 folded it) at a shallow, ragged K: the 128x256
    tile is in its search space (a GELU epilogue), and both TMA tiles match eager."""
    from ember.codegen.matmul_emit import FixedChoice
    from ember.passes import run_pipeline
    m, k, n = 1000, 776, 1504
    g = parse(f"""
func @f(%x: bf16[{m},{k}], %w: bf16[{n},{k}], %b: bf16[{n}]) -> (bf16[{m},{n}]) [device="cuda"] {{
  %0: bf16[{k},{n}] = permute[dims=(1, 0)] %w
  %1: bf16[{m},{n}] = matmul %x, %0
  %2: bf16[{m},{n}] = add %1, %b
  %3: f32[{m},{n}] = cast[dtype="f32"] %2
  %4: f32[{m},{n}] = gelu[accuracy="bf16"] %3
  %5: bf16[{m},{n}] = cast[dtype="bf16"] %4
  return %5
}}""")
    run_pipeline(g, "fuse,fuse_matmul")
    region = next(op for op in g.ops if op.name == "fused")
    from ember.codegen.matmul_template import matmul_kernel
    from ember.codegen.matmul_tma import tma_search_space
    body = region.attrs["body"]
    assert matmul_kernel(body.ops, body.outputs, interpret=False).gelu_epilogue
    assert cfg in [c.name for c in tma_search_space(m, n, k, False, gelu_epilogue=True)]
    compiled = compile_graph(g, chooser=FixedChoice("cuda", cfg))
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5
    b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(compiled([x, w, b])[0], F.gelu(F.linear(x, w, b)), atol=3e-2, rtol=3e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", ["mm_128x256x64_g8_w8_s3_tma", "mm_128x128x64_g8_w8_s4_tma"])
@pytest.mark.parametrize("m,k,n", [(1000, 776, 1504), (2048, 1024, 2048)])
def test_tma_kernel_matches_torch_and_really_runs(cfg, m, k, n, tmp_path):
    """Each TMA config of the search space on a Linear's layout (x row-major, the weight read
    transposed), ragged and whole tiles, bias + tanh fused: the guard must take the TMA kernel.
    The 128x256 tile is offered only for K >= DEEP_K: there K is DEEP_K deeper (still ragged,
    or whole, in K steps)."""
    from ember.codegen.matmul_emit import FixedChoice
    from ember.codegen.matmul_tma import DEEP_K
    from ember.passes import run_pipeline
    k += DEEP_K if "128x256" in cfg else 0
    g = parse(f"""
func @f(%x: bf16[{m},{k}], %w: bf16[{n},{k}], %b: bf16[{n}]) -> (bf16[{m},{n}]) [device="cuda"] {{
  %0: bf16[{k},{n}] = permute[dims=(1, 0)] %w
  %1: bf16[{m},{n}] = matmul %x, %0
  %2: bf16[{m},{n}] = add %1, %b
  %3: bf16[{m},{n}] = tanh %2
  return %3
}}""")
    run_pipeline(g, "fuse,fuse_matmul")
    compiled = compile_graph(g, chooser=FixedChoice("cuda", cfg))
    answers = []
    ready = compiled._call.__globals__["tma_ready"]
    compiled._call.__globals__["tma_ready"] = lambda t, d: answers.append(ready(t, d)) or answers[-1]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5
    b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(compiled([x, w, b])[0], torch.tanh(F.linear(x, w, b)), **TOL["bf16"])
    assert answers and all(answers)   # the first call's dry run asks too
