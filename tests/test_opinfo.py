"""OpInfo (float32) through ember vs eager: a cross-section that must all match, and the whole sweep
against the issue's targets (it takes about a minute on CPU, so `make test` runs it too)."""
import pytest

pytest.importorskip("expecttest", reason="torch's OpInfo database needs expecttest (a dev dependency)")

from opinfo_sweep import all_opinfos, opinfo_id, run_opinfo, summarize  # noqa: E402

# A fixed cross-section: pointwise, reductions, views, indexing, matmul, norms, and an op that must
# go through the ATen fallback. Each must match eager.
SUBSET = ["abs", "add", "atan2", "clamp", "div.no_rounding_mode", "div.floor_rounding", "where",
          "sigmoid", "nn.functional.gelu", "nn.functional.silu", "sum", "mean", "amax", "argmax",
          "var", "softmax", "log_softmax", "nn.functional.layer_norm", "permute", "reshape", "cat",
          "narrow", "select", "index_select", "gather", "nn.functional.embedding", "masked_fill",
          "mm", "bmm", "nn.functional.pad.constant", "tril", "sort", "cumsum"]

_BY_ID = {opinfo_id(o): o for o in all_opinfos()}


@pytest.mark.parametrize("op_id", SUBSET)
def test_opinfo_subset_matches_eager(op_id):
    r = run_opinfo(_BY_ID[op_id])
    assert r["status"] in ("lowered", "fallback"), r


def test_opinfo_full_sweep_meets_targets():
    results = [run_opinfo(o) for o in all_opinfos()]
    s = summarize(results)
    assert s["matched_pct"] >= 95.0, s
    assert s["lowered_pct"] >= 60.0, s
