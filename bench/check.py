"""Correctness of a backend's outputs against eager's, before anything is timed.

The metric is max|got - want| / max|want| over each compared tensor (computed in fp32), and the
worst tensor decides. Normalising by the largest reference magnitude, not elementwise, keeps
near-zero elements (where bf16 rounding makes elementwise relative error meaningless) from
failing a correct result, while a wrong kernel still shows up as an O(1) error.
"""
from __future__ import annotations

import math

import torch

# Thresholds per (dtype, kind). bf16 keeps 8 mantissa bits (~4e-3 per rounding), and whole models
# round at every layer, so models get more room than single kernels; training compares gradients,
# which pass through twice as many rounded ops (forward and backward).
_TOL = {
    torch.float32: {"kernel": 1e-4, "model": 1e-3, "train": 1e-3},
    torch.float16: {"kernel": 1e-2, "model": 2e-2, "train": 3e-2},
    # bf16 models: 5e-2, because TorchInductor's own BERT-base pooler output differs from eager's
    # by 3.1e-2 on the H100 (a tanh over a 12-layer bf16 stack); a threshold that flags the
    # reference compiler as wrong measures rounding, not bugs. A real bug is O(1).
    torch.bfloat16: {"kernel": 2e-2, "model": 5e-2, "train": 5e-2},
}


def tolerance(dtype: torch.dtype, kind: str) -> float:
    return _TOL.get(dtype, _TOL[torch.float32])[kind]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max|got-want| / max|want|; inf when shapes differ or got has non-finite values want lacks."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return math.inf
    g, w = got.detach().float(), want.detach().float()
    if g.numel() == 0:
        return 0.0
    g_bad, w_bad = ~torch.isfinite(g), ~torch.isfinite(w)
    if not torch.equal(g_bad, w_bad):
        return math.inf
    if bool(w_bad.any()):
        # Same non-finite pattern (e.g. -inf in masked positions): compare the finite rest,
        # and the non-finite values must agree exactly.
        if not torch.equal(g[w_bad], w[w_bad]):
            return math.inf
        g, w = g[~w_bad], w[~w_bad]
        if w.numel() == 0:
            return 0.0
    scale = w.abs().max().item()
    diff = (g - w).abs().max().item()
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


def compare(got: list[tuple[str, torch.Tensor]], want: list[tuple[str, torch.Tensor]]) -> tuple[float, str]:
    """Worst relative error over named tensors, and the name of the worst one."""
    if [n for n, _ in got] != [n for n, _ in want]:
        return math.inf, f"output names differ: {[n for n, _ in got]} vs {[n for n, _ in want]}"
    worst, worst_name = 0.0, ""
    for (name, g), (_, w) in zip(got, want):
        err = relative_error(g, w)
        if err > worst or not worst_name:
            worst, worst_name = err, name
    return worst, worst_name


def describe(err: float, tol: float) -> str:
    verdict = "ok" if err <= tol else "WRONG"
    return f"err {err:.1e} (tol {tol:.0e}) {verdict}"
