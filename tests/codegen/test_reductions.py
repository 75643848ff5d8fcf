"""Reductions: every kind, inner/outer/multiple/all axes, keepdim both ways, persistent and looped
kernels, low-precision accumulation, NaN propagation, argmax/argmin ties and NaN."""
import math

import pytest
import torch

from ember.codegen import compile_graph, launch_heuristics
from ember.ir import Builder, TensorType, symbol, to_torch

from codegen_check import check_graph, random_tensor

SHAPE = (4, 6, 5)

EAGER = {
    "reduce_sum": lambda x, ax, k: torch.sum(x, dim=ax, keepdim=k, dtype=x.dtype),
    "reduce_max": lambda x, ax, k: torch.amax(x, dim=ax, keepdim=k),
    "reduce_min": lambda x, ax, k: torch.amin(x, dim=ax, keepdim=k),
}


def _prod(x, axes, keepdim):
    for ax in sorted(axes, reverse=True):
        x = torch.prod(x, dim=ax, keepdim=keepdim, dtype=x.dtype)
    return x


EAGER["reduce_prod"] = _prod


def _reduce_graph(op, dtype, shape, axes, keepdim, device="cpu"):
    b = Builder(op, device=device)
    x = b.input("x", TensorType(dtype, shape, device))
    return b.build([b.op(op, x, axes=tuple(axes), keepdim=keepdim)])


@pytest.fixture(params=["persistent", "looped"])
def strategy(request, monkeypatch):
    if request.param == "looped":
        # Everything longer than 4 elements loops in chunks of 4 (RBLOCK follows the threshold).
        monkeypatch.setattr(launch_heuristics, "PERSISTENT_REDUCTION_MAX", 4)
    return request.param


@pytest.mark.parametrize("op", sorted(EAGER))
@pytest.mark.parametrize("axes", [(2,), (0,), (0, 2), (0, 1, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduce_f32(op, axes, keepdim, strategy, device):
    x = random_tensor(SHAPE, torch.float32, 0.5, 1.5) if op == "reduce_prod" else random_tensor(SHAPE, torch.float32)
    compiled = check_graph(_reduce_graph(op, "f32", SHAPE, axes, keepdim, device=device), [x],
                           lambda t: EAGER[op](t, list(axes), keepdim))
    source = "".join(compiled.kernels.values())
    rnumel = math.prod(SHAPE[a] for a in axes)
    assert ("for roffset" in source) == (strategy == "looped" and rnumel > 4)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max"])
def test_low_precision_accumulates_in_f32(op, dtype, strategy, device):
    # 600 values: an f16 accumulator would drift visibly; torch accumulates in f32 too.
    x = (random_tensor((3, 600), torch.float32) + 1).to(to_torch(dtype))
    compiled = check_graph(_reduce_graph(op, dtype, (3, 600), (1,), False, device=device), [x],
                           lambda t: EAGER[op](t, [1], False))
    assert "tl.float32" in "".join(compiled.kernels.values())


@pytest.mark.parametrize("dtype", ["i32", "i64", "i8", "u8"])
@pytest.mark.parametrize("op", sorted(EAGER))
def test_integer_reductions_wrap_like_torch(op, dtype, device):
    x = random_tensor((5, 9), to_torch(dtype), -50, 50)
    check_graph(_reduce_graph(op, dtype, (5, 9), (1,), False, device=device), [x], lambda t: EAGER[op](t, [1], False))


@pytest.mark.parametrize("op", sorted(EAGER))
def test_bool_reductions(op, device):
    x = random_tensor((5, 9), torch.bool)
    x[0] = True
    x[1] = False
    check_graph(_reduce_graph(op, "b1", (5, 9), (1,), False, device=device), [x], lambda t: EAGER[op](t, [1], False))


def test_f64_sum(strategy, device):
    x = random_tensor((3, 50), torch.float64)
    check_graph(_reduce_graph("reduce_sum", "f64", (3, 50), (1,), False, device=device), [x], lambda t: t.sum(1))


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
def test_max_min_propagate_nan(op, strategy, device):
    x = random_tensor((4, 10), torch.float32)
    x[1, 3] = math.nan
    x[2, 9] = math.nan
    x[3, :] = -math.inf
    check_graph(_reduce_graph(op, "f32", (4, 10), (1,), True, device=device), [x], lambda t: EAGER[op](t, [1], True))


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_argmax_ties_and_nan(op, axis, keepdim, strategy, device):
    # Few distinct values: many ties, where the first index must win. NaN counts as the extreme.
    x = random_tensor((7, 11), torch.int32, -3, 3).float()
    x[2, 5] = math.nan
    x[2, 8] = math.nan
    x[4, 0] = math.nan
    x[:, 6] = math.nan if axis == 0 else x[:, 6]
    fn = torch.argmax if op == "argmax" else torch.argmin
    check_graph(_reduce_graph(op, "f32", (7, 11), (axis,), keepdim, device=device), [x],
                lambda t: fn(t, dim=axis, keepdim=keepdim))


@pytest.mark.parametrize("dtype", ["i32", "f16", "u8"])
def test_argmax_other_dtypes(dtype, strategy, device):
    x = random_tensor((6, 13), to_torch(dtype), 0, 4)
    check_graph(_reduce_graph("argmax", dtype, (6, 13), (1,), False, device=device), [x], lambda t: torch.argmax(t, 1))


def test_argmax_all_negative_infinity(device):
    x = torch.full((3, 9), -math.inf)
    x[1, 4] = 0.0
    check_graph(_reduce_graph("argmax", "f32", (3, 9), (1,), False, device=device), [x], lambda t: torch.argmax(t, 1))


def test_symbolic_reduced_extent_loops(device):
    s0 = symbol("s0")
    g = _reduce_graph("reduce_sum", "f32", (3, s0), (1,), False, device=device)
    compiled = compile_graph(g)
    assert "for roffset" in "".join(compiled.kernels.values())
    for n in (5, 300):
        x = random_tensor((3, n), torch.float32, device=device)
        torch.testing.assert_close(compiled([x])[0], x.sum(1))


def test_reduction_of_non_contiguous_input(strategy, device):
    x = random_tensor((9, 8, 6), torch.float32, device=device).permute(2, 0, 1)[:, ::2]
    check_graph(_reduce_graph("reduce_sum", "f32", tuple(x.shape), (0, 2), False, device=device), [x],
                lambda t: t.sum((0, 2)))
