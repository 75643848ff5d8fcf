"""The benchmark harness end to end on CPU: `python bench/run.py --smoke` (tiny shapes, Triton
interpreter, correctness only) must finish, cover every case it can run here, and write its
outputs. It runs as a subprocess, exactly as a user would start it, so the entry point cannot rot.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"gpt2", "gpt2-kv", "bert-base", "llama-1b-ish", "vit_base_patch16_224", "resnet50", "convnext_tiny", "gpt2-train",
            "softmax", "layer_norm", "rms_norm", "gelu_bias", "mm_4096", "mm_8192", "linear_bias_gelu",
            "linear_bias_gelu_bert", "attention"}
# Runs in ~25 s on 2 cores; the bound only catches a harness that got an order of magnitude slower.
BUDGET_S = 120


def test_smoke_run_checks_every_case(tmp_path):
    out = tmp_path / "bench_out"
    env = dict(os.environ, TRITON_INTERPRET="1")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--cases", "all", "--out", str(out)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert took < BUDGET_S, f"smoke run took {took:.0f} s"

    results = json.loads((out / "results.json").read_text())
    assert results["config"]["smoke"] is True
    assert results["config"]["backends"] == ["eager", "ember"]
    cases = {c["name"]: c for c in results["cases"]}
    assert set(cases) == EXPECTED

    for name, case in cases.items():
        if case["status"] == "skipped":  # only for a library that is not installed
            assert "not installed" in case["reason"], (name, case)
            continue
        assert case["status"] == "done", (name, case.get("exception"))
        eager = case["backends"]["eager"]
        assert eager["status"] == "reference"
        ember = case["backends"]["ember"]
        # ember is checked against eager; whatever the verdict, it is recorded with its error.
        assert ember["status"] in ("ok", "WRONG", "error"), (name, ember)
        if ember["status"] != "error":
            assert ember["err"] is not None
        for rec in list(case["backends"].values()) + list(case["refs"].values()):
            assert rec["ms"] is None and "compile_s" not in rec, "the smoke run must not report timings"
            if case["group"] in ("models", "train") and rec["status"] in ("reference", "ok"):
                # No CUDA allocator on CPU: recorded as not measured, never as 0.
                assert all(rec[k] is None for k in ("mem_before_bytes", "mem_peak_bytes", "mem_call_bytes")), rec
                assert "mem_ratio" not in rec
    for name in ("gpt2", "bert-base", "llama-1b-ish", "gpt2-train"):
        assert cases[name]["status"] == "done", f"{name} needs only transformers, which the venv has"
    assert cases["attention"]["refs"]["SDPA"]["status"] == "ok"

    md = (out / "results.md").read_text()
    assert "Smoke run" in md and "| gpt2 |" in md and "| softmax |" in md
    assert " ms" not in md.split("Notes:")[0], "no time columns in the smoke tables"
    assert "peak memory is not measured" in md and "peak MiB" not in md.split("Notes:")[0]
