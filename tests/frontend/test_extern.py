"""Ops without a lowering run as `extern` ATen calls: still correct, and listed in the report."""
import torch


def _externs(reports):
    return [e for rep in reports for e in rep["externs"]]


def test_sort_and_conv_are_externs(check):
    def f(x, w):
        y = torch.nn.functional.conv2d(x, w, padding=1).relu()
        values, indices = torch.sort(y.flatten(1), dim=-1)
        return values * 2, indices, torch.topk(y.sum((2, 3)), 2).values
    reports = check(f, torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3), strict=False)
    targets = {e["target"] for e in _externs(reports)}
    assert {"aten.convolution.default", "aten.sort.default", "aten.topk.default"} <= targets
    assert all(e["reason"] for e in _externs(reports))


def test_extern_in_training(check_grads):
    # conv's backward is an extern too; index_put (accumulate) is one in forward and backward.
    def f(x, w, idx):
        y = torch.nn.functional.conv2d(x, w).sum((2, 3))
        return y.new_zeros(6, 4).index_put((idx,), y, accumulate=True) * 2
    reports = check_grads(f, torch.randn(2, 3, 5, 5, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True),
                          torch.tensor([1, 4]), strict=False)
    assert any(r["graph"].endswith("_bw") and r["externs"] for r in reports)


def test_strict_lowering_raises():
    import pytest
    from torch._dynamo.exc import BackendCompilerFailed
    torch._dynamo.reset()
    f = torch.compile(lambda x: torch.sort(x).values, backend="ember", options={"strict_lowering": True})
    with pytest.raises(BackendCompilerFailed, match="sorting"):
        f(torch.randn(5))
