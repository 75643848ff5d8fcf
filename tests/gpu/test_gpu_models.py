"""The model tests on CUDA (fp32 and bf16), run on the lent H100 with EMBER_TEST_GPU=1."""
import pytest
import torch

from model_zoo import MODELS, outputs_of, token_ids

TOL = {torch.float32: dict(rtol=1e-3, atol=1e-3), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_on_cuda_matches_eager(name, dtype):
    torch._dynamo.reset()
    model = MODELS[name]().to("cuda", dtype).eval()
    ids = token_ids(4, 32, device="cuda")
    with torch.no_grad():
        want = outputs_of(name, model(ids))
        got = outputs_of(name, torch.compile(model, backend="ember")(ids))
    for g, w in zip(got, want):
        assert g.is_cuda and g.dtype == w.dtype
        torch.testing.assert_close(g, w, **TOL[dtype])


@pytest.mark.gpu
def test_gpt2_training_step_on_cuda():
    torch._dynamo.reset()
    eager = MODELS["gpt2"]().cuda().train()
    comp = MODELS["gpt2"]().cuda().train()
    comp.load_state_dict(eager.state_dict())
    ids = token_ids(2, 16, device="cuda")
    eager(ids, labels=ids).loss.backward()
    torch.compile(comp, backend="ember")(ids, labels=ids).loss.backward()
    for (n, a), (_, b) in zip(eager.named_parameters(), comp.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-3, msg=lambda m: f"{n}: {m}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pointwise_and_reduction_kernels_on_cuda(dtype):
    torch._dynamo.reset()

    def f(x, b):
        y = torch.nn.functional.gelu(x + b)
        return y.softmax(-1), y.sum(0), x.t().amax(1)
    x, b = torch.randn(257, 1000, device="cuda", dtype=dtype), torch.randn(1000, device="cuda", dtype=dtype)
    want = f(x, b)
    got = torch.compile(f, backend="ember")(x, b)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tol)
