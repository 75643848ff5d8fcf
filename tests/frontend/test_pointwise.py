"""Pointwise lowerings against eager: scalars, broadcasting, type promotion, low precision."""
import pytest
import torch

F = torch.nn.functional


def r(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


UNARY = [torch.abs, torch.neg, torch.exp, torch.exp2, torch.expm1, torch.log1p, torch.sin, torch.cos,
         torch.tanh, torch.sigmoid, torch.erf, torch.floor, torch.ceil, torch.trunc, torch.round,
         torch.sign, torch.atan, torch.relu, torch.isnan, torch.logical_not,
         lambda x: torch.sqrt(x.abs() + 0.1), lambda x: torch.rsqrt(x.abs() + 0.1),
         lambda x: torch.log(x.abs() + 0.1), lambda x: torch.reciprocal(x + 3)]


@pytest.mark.parametrize("fn", UNARY, ids=lambda f: getattr(f, "__name__", "lambda"))
def test_unary(check, fn):
    check(fn, r(3, 5))


def test_binary_scalars_broadcast(check):
    def f(x, y):
        return (x + y) * 2.5 - y / 3 + (x - 1) ** 2, torch.maximum(x, y), x.clamp(-0.5, 0.5), x.pow(0.5 + y.abs())
    check(f, r(4, 1, 3), r(5, 3))


def test_int_float_promotion(check):
    def f(i, x, b):
        return i + x, i * 2, i / 2, i // 3, i % 3, x + b, torch.where(b, i, x), (i > 1) & b, i.float().exp()
    check(f, torch.randint(-5, 5, (3, 4)), r(3, 4), torch.rand(3, 4) > 0.5)


def test_comparisons_logical_bitwise(check):
    def f(x, y, i, j):
        return (x < y, x >= 0.1, x == y, x != 0, torch.logical_and(x > 0, y > 0), torch.logical_xor(x > 0, y > 0),
                i & j, i | j, i ^ j, ~i, i << 1, i >> 1, torch.isinf(x / (y - y)))
    check(f, r(6), r(6), torch.randint(0, 8, (6,)), torch.randint(0, 8, (6,)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(check, dtype):
    def f(x, y):
        return x * 0.1 + y, torch.sigmoid(x) * y, (x / 3).to(torch.float32), x.sum(-1), torch.where(x > 0, x, 0.3)
    # The Triton CPU interpreter truncates f32 -> bf16 instead of rounding to nearest, so every
    # output (the f32 one too) gets bf16's usual tolerance.
    tol = {"rtol": 1.6e-2, "atol": 1e-5} if dtype == torch.bfloat16 else {}
    check(f, r(4, 8, dtype=dtype), r(4, 8, dtype=dtype), **tol)


def test_mixed_precision_promotion(check):
    def f(h, x):
        return h + x, h * 2, h.float() - x
    check(f, r(3, 4, dtype=torch.float16), r(3, 4))


def test_where_masked_fill(check):
    def f(x, m):
        return x.masked_fill(m, float("-inf")).softmax(-1), torch.where(m, x, torch.zeros_like(x)), torch.where(m, 1.0, x)
    check(f, r(3, 5), torch.rand(3, 5) > 0.7)


def test_clamp_variants(check):
    def f(x, lo, hi):
        return x.clamp(min=0.0), x.clamp(max=0.2), torch.clamp(x, lo, hi), F.hardtanh(x), F.relu6(x * 4)
    check(f, r(4, 6), r(4, 6) - 1, r(4, 6) + 1)


def test_activations(check):
    def f(x):
        return F.gelu(x), F.gelu(x, approximate="tanh"), F.silu(x), F.leaky_relu(x, 0.1), F.elu(x), F.softplus(x), F.mish(x), F.hardswish(x)
    check(f, r(3, 7))


def test_constants_arange(check):
    def f(x):
        n = x.shape[-1]
        return (x + torch.arange(n), torch.arange(2, 2 + 2 * n, 2, dtype=torch.float32) * x,
                torch.ones_like(x) + torch.full((n,), 3.0), torch.zeros(2, n, dtype=torch.int64) + 1)
    check(f, r(3, 5))


def test_tril_triu(check):
    def f(x):
        return torch.tril(x), torch.triu(x, 1)
    check(f, r(4, 4))
