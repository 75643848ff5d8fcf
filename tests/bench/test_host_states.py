"""bench.host_states: samples split by the host's state, and the tool end to end on the CPU."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import test_bench_harness  # noqa: F401 - importing it imports bench/ the way bench/run.py does

from bench import host_states  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_samples_are_split_by_both_probes_against_the_fastest():
    samples = [{"row": ("bert-base", "eager"), "ms": 5.0, "probes": (18.0, 20.0)},   # fast: both <= 1.2x
               {"row": ("bert-base", "eager"), "ms": 9.0, "probes": (30.0, 32.0)},   # slow: both > 1.4x
               {"row": ("bert-base", "eager"), "ms": 7.0, "probes": (18.0, 32.0)},   # mixed
               {"row": ("gpt2-kv", "inductor"), "ms": 3.0, "probes": (21.5, 19.0)}]  # within 1.2x: fast
    split = host_states.split_by_state(samples)
    assert split[("bert-base", "eager")] == {"fast": [5.0], "slow": [9.0], "mixed": [7.0]}
    assert split[("gpt2-kv", "inductor")] == {"fast": [3.0], "slow": [], "mixed": []}
    anchor_rows = [{"kind": "model", "model": "bert-base", "eager_ms": 10.0, "inductor_ms": 4.0}]
    lines = host_states.table(samples, anchor_rows)
    assert "fastest 18.0 ms" in lines[0]
    bert = next(line for line in lines if line.startswith("| eager bert-base"))
    assert bert == "| eager bert-base | 5.000 (1) | 9.000 (1) | 7.000 (1) | 10.00 | 0.50 | 0.90 | 0.70 |"
    gpt2 = next(line for line in lines if line.startswith("| inductor gpt2-kv"))
    assert "— (0)" in gpt2 and gpt2.count("—") == 6  # no gpt2 anchor given: no ratios


def test_the_tool_runs_on_the_cpu():
    pytest.importorskip("transformers")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "bench.host_states", "--cpu", "--seconds", "0.5"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for row in ("eager bert-base", "inductor gpt2-kv", "eager gpt2-kv"):
        line = next(x for x in run.stdout.splitlines() if x.startswith(f"| {row} |"))
        counts = [int(n) for n in re.findall(r"\((\d+)\)", line)]
        assert sum(counts) >= 1 and line.split(" | ")[4] == "—"  # timed at least once; no anchor on the CPU
