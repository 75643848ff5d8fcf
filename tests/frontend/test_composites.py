"""Composite ops that reach ember through the decomposition table."""
import pytest
import torch

F = torch.nn.functional


def r(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_softmax_family(check, dtype):
    def f(x):
        return x.softmax(-1), F.log_softmax(x, 1), x.softmax(0, dtype=torch.float32)
    check(f, r(4, 7, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_norms(check, dtype):
    def f(x, w, b):
        return (F.layer_norm(x, (8,), w, b), F.rms_norm(x, (8,), w, eps=1e-6), F.group_norm(x.view(2, 4, 6), 2),
                F.layer_norm(x, (8,)))
    check(f, r(6, 8, dtype=dtype), r(8, dtype=dtype), r(8, dtype=dtype))


def test_batch_norm_inference(check):
    def f(x, mean, var, w, b):
        return F.batch_norm(x, mean, var, w, b, training=False)
    check(f, r(4, 3, 5), r(3), torch.rand(3) + 0.5, r(3), r(3))


def test_embedding_and_losses(check):
    def f(idx, emb, target):
        h = F.embedding(idx, emb)
        logits = h @ emb.t()
        return F.cross_entropy(logits.view(-1, 6), target), F.mse_loss(h, h.flip(0) if False else h * 0.5)
    check(f, torch.randint(0, 6, (2, 3)), r(6, 4), torch.randint(0, 6, (6,)))


def test_attention_math(check):
    def f(q, k, v, mask):
        s = (q @ k.transpose(-1, -2)) / 2.0
        s = s.masked_fill(mask, float("-inf"))
        return s.softmax(-1) @ v
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    check(f, r(2, 5, 4), r(2, 5, 4), r(2, 5, 4), mask)
