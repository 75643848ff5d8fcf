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
