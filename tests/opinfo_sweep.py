"""Run PyTorch's OpInfo database (float32 sample inputs) through ember and compare with eager.

Used two ways: `tests/test_opinfo.py` runs a bounded subset in `make test`, and
`python tests/opinfo_sweep.py [--out FILE]` (or `make opinfo-sweep`) runs every op and prints the
figures recorded in docs/opinfo.md:
  matched  : ember compiled at least one graph and its outputs equal eager's
  lowered  : matched, and no graph of the op needed an ATen extern
  not-captured: Dynamo handed ember no graph (the op ran eagerly); reported apart, and counted
                as *not* matched in the headline percentages
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402


def _call_unseeded(op, *args, **kwargs):
    return op(*args, **kwargs)


def _unwrap_set_seed():
    """OpInfo wraps random ops in `wrapper_set_seed`, whose freeze_rng_state makes Dynamo break the
    graph, so ember would never see them. The sweep seeds before eager and before ember itself,
    so the wrapper is replaced by a plain call in every module that defines op lambdas with it."""
    import sys as _sys
    for name, mod in list(_sys.modules.items()):
        if name.startswith("torch.testing._internal") and hasattr(mod, "wrapper_set_seed"):
            mod.wrapper_set_seed = _call_unseeded


def all_opinfos():
    """OpInfos that run on CPU in float32 (jiterator ops claim CPU dtypes but are CUDA-only)."""
    from torch.testing._internal.common_methods_invocations import op_db
    _unwrap_set_seed()
    return [o for o in op_db if torch.float32 in o.supported_dtypes("cpu") and not o.name.startswith("jiterator")]


def opinfo_id(o) -> str:
    return o.name + (f".{o.variant_test_name}" if o.variant_test_name else "")


# Ops whose output memory is uninitialized: any values are right, so only shape/dtype/device count.
UNINITIALIZED = {"empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted"}


def _meta(t):
    return (tuple(t.shape), t.dtype, t.device.type) if isinstance(t, torch.Tensor) else t


def _clone(obj):
    return torch.utils._pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, obj)


def run_opinfo(o, sample_index: int = 0) -> dict:
    """Compile one OpInfo's sample with ember; return {"id", "status", "externs", "detail"}."""
    import torch._dynamo
    rid = opinfo_id(o)
    try:
        samples = list(o.sample_inputs("cpu", torch.float32))
    except Exception as e:  # noqa: BLE001 - a broken sample generator is not ember's failure
        return {"id": rid, "status": "no-sample", "externs": [], "detail": repr(e)[:200]}
    if not samples:
        return {"id": rid, "status": "no-sample", "externs": [], "detail": ""}
    s = samples[min(sample_index, len(samples) - 1)]

    dump = Path(tempfile.mkdtemp(prefix="ember-opinfo-"))
    try:
        return _compile_and_compare(o, s, rid, dump)
    finally:
        shutil.rmtree(dump, ignore_errors=True)  # only its reports are read, and they are read by now


def _compile_and_compare(o, s, rid: str, dump: Path) -> dict:
    """run_opinfo's compile of one sample, dumping into `dump`, and its comparison with eager."""
    def fn(inp, args, kwargs):
        return o.op(inp, *args, **kwargs)

    torch._dynamo.reset()
    old = os.environ.get("EMBER_DUMP_DIR")
    os.environ["EMBER_DUMP_DIR"] = str(dump)
    try:
        torch.manual_seed(0)
        want = fn(*_clone((s.input, s.args, s.kwargs)))
        compiled = torch.compile(fn, backend="ember", dynamic=False)
        torch.manual_seed(0)
        # Let Dynamo capture data-dependent ops (item, nonzero, unique, ...) instead of breaking
        # the graph, so they reach ember (which must then fall back to ATen correctly).
        with torch._dynamo.config.patch(capture_scalar_outputs=True, capture_dynamic_output_shape_ops=True):
            got = compiled(*_clone((s.input, s.args, s.kwargs)))
    except Exception as e:  # noqa: BLE001
        return {"id": rid, "status": "error", "externs": [], "detail": "".join(
            traceback.format_exception_only(type(e), e))[-400:]}
    finally:
        if old is None:
            os.environ.pop("EMBER_DUMP_DIR", None)
        else:
            os.environ["EMBER_DUMP_DIR"] = old
    reports = [json.loads(p.read_text()) for p in dump.glob("*/report.json")]
    externs = sorted({e.get("target", "?") for r in reports for e in r.get("externs", [])
                      if e.get("op", "extern") == "extern"})
    if not reports:
        return {"id": rid, "status": "not-captured", "externs": [], "detail": "Dynamo compiled no graph"}
    try:
        if o.name in UNINITIALIZED:  # the values are undefined in eager too: compare metadata only
            got, want = (torch.utils._pytree.tree_map(_meta, x) for x in (got, want))
            assert got == want, f"{got} != {want}"
        else:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, equal_nan=True)
    except Exception as e:  # noqa: BLE001
        return {"id": rid, "status": "mismatch", "externs": externs, "detail": str(e)[:400]}
    return {"id": rid, "status": "lowered" if not externs else "fallback", "externs": externs, "detail": ""}


def summarize(results: list[dict]) -> dict:
    n = len(results)
    matched = sum(r["status"] in ("lowered", "fallback") for r in results)
    lowered = sum(r["status"] == "lowered" for r in results)
    by: dict[str, int] = {}
    for r in results:
        by[r["status"]] = by.get(r["status"], 0) + 1
    return {"ops": n, "matched": matched, "matched_pct": 100.0 * matched / max(n, 1),
            "lowered": lowered, "lowered_pct": 100.0 * lowered / max(n, 1), "by_status": by}


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="opinfo_results.json")
    p.add_argument("--only", nargs="*", help="OpInfo ids to run")
    args = p.parse_args(argv)
    ops = all_opinfos()
    if args.only:
        ops = [o for o in ops if opinfo_id(o) in set(args.only)]
    results = []
    t0 = time.time()
    for i, o in enumerate(ops):
        r = run_opinfo(o)
        results.append(r)
        print(f"[{i + 1}/{len(ops)}] {r['id']:40s} {r['status']:12s} {','.join(r['externs'])[:60]}",
              flush=True)
    summary = summarize(results)
    summary["seconds"] = round(time.time() - t0, 1)
    summary["torch"] = torch.__version__
    Path(args.out).write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
