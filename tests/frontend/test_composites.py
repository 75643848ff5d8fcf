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


def test_eval_batch_norm_is_one_kernel_with_its_relu(check):
    # The running-stat copies fold (canonicalize) and the [C] statistics chain moves below its
    # unsqueeze (hoist_views), so it broadcasts into the normalization's kernel.
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.normal_(), bn.bias.normal_()

    def f(x):
        return torch.relu(bn(conv(x)))
    with torch.no_grad():
        (report,) = check(f, r(2, 4, 5, 5), strict=False, rtol=1e-5, atol=1e-5)
    assert report["kernel_count"] == 1, report["fusion"]


def test_statistic_unsqueezed_back_is_one_row_kernel(check):
    # mean(-1) drops the dim and unsqueeze puts it back: the reduction takes keepdim instead.
    (report,) = check(lambda x: (x - x.mean(-1).unsqueeze(-1)) * 2, r(6, 16))
    assert report["kernel_count"] == 1, report["fusion"]


def test_attention_math_casts_meet_their_readers(check):
    # SDPA's math path in bf16 (BERT on a GPU): K is cast, transposed and scaled, the output
    # cast, permuted heads -> hidden and reshaped. The attention pass makes the whole of it one
    # SDPA op on the bf16 q, k, v (as eager's SDPA runs: bf16 rounding, hence atol), which codegen
    # runs as its attention template here (the interpreter's choice): one kernel, no library call,
    # and the output's permute + reshape stays a view: no other kernel is left.
    def f(q, k, v):
        q, k, v = (t.view(2, 8, 2, 16).transpose(1, 2) for t in (q, k, v))
        s = (q.float() * 0.5) @ (k.float().transpose(-1, -2) * 0.5)
        o = (s.softmax(-1) @ v.float()).to(torch.bfloat16)
        return o.transpose(1, 2).reshape(2, 8, 32)
    args = [r(2, 8, 32, dtype=torch.bfloat16) for _ in range(3)]
    (report,) = check(f, *args, atol=1e-2, rtol=1.6e-2)
    assert report["externs"] == []
    assert [d["choice"].startswith("flash_") for d in report["autotune"]] == [True]
    assert report["kernel_count"] == 1, report["fusion"]


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
