"""The frontend on CUDA: device placement, CPU scalars mixed into CUDA graphs, training, dynamic
shapes, externs. Run on the lent H100: EMBER_TEST_GPU=1 pytest -m gpu tests/frontend."""
import pytest
import torch

pytestmark = pytest.mark.gpu
F = torch.nn.functional


def test_cuda_pointwise_reductions_and_cpu_scalar(check):
    def f(x, y, s):
        return (x * s + y).softmax(-1), (x.half() @ y.half().t()).float().sum(0), torch.where(x > 0, x, s), x.cumsum(1)
    check(f, torch.randn(4, 8, device="cuda"), torch.randn(4, 8, device="cuda"), torch.tensor(0.5))


def test_cuda_training(check_grads):
    def mlp(x, w1, w2, g):
        return F.linear(F.layer_norm(F.gelu(F.linear(x, w1)), (32,), g), w2).log_softmax(-1)
    p = lambda *s: (torch.randn(*s, device="cuda") * 0.2).requires_grad_()  # noqa: E731
    check_grads(mlp, torch.randn(8, 16, device="cuda"), p(32, 16), p(10, 32), p(32))


def test_cuda_dynamic_and_extern(check):
    def f(x):
        return torch.sort(x.relu() * 2, -1).values, x[:, 1:].amax(-1)
    check(f, torch.randn(3, 7, device="cuda"), dynamic=True, strict=False)


def test_cuda_gpt2_forward(dump_dir):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
    from model_zoo import MODELS, token_ids
    torch._dynamo.reset()
    model = MODELS["gpt2"]().cuda().eval()
    ids = token_ids(2, 16, device="cuda")
    with torch.no_grad():
        want = model(ids).logits
        got = torch.compile(model, backend="ember")(ids).logits
    torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-3)
