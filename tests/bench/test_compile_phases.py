"""`python -m bench.compile_phases gpt2 --cpu` end to end, as a user starts it: the full-size GPT-2
built on the CPU, compiled up to its first call (not run), twice with one cache folder (the second
is the warm compile), each printing ember's stages next to Dynamo and AOTAutograd."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_cpu_phases_cold_then_warm(tmp_path):
    pytest.importorskip("transformers")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    runs = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-m", "bench.compile_phases", "gpt2", "--cpu",
                              "--cache-dir", str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        runs.append(run.stdout)
    for out, warm in zip(runs, (False, True)):
        assert re.search(r"== gpt2 .*: [\d.]+ s to the first call \(CPU, not run\)", out), out
        rows = dict(re.findall(r"^\s+(\S.*?)\s+([\d.]+) s", out, flags=re.M))
        assert "(1 calls)" in out.split("graph cache: key")[1].splitlines()[0], out
        if warm:  # the graph stored by the first run is loaded: no AOTAutograd, no ember stages
            assert "(1 calls)" in out.split("graph cache: load")[1].splitlines()[0], out
            assert "lowering (fx_to_ir)" not in rows and "pass pipeline" not in rows, out
            continue
        for label in ("Dynamo (the rest)", "AOTAutograd (backend minus ember)", "ember compile_fx_graph",
                      "lowering (fx_to_ir)", "pass pipeline", "codegen", "import module"):
            assert label in rows, (label, out)
        assert float(rows["ember compile_fx_graph"]) >= float(rows["pass pipeline"]) > 0
        assert "(1 calls)" in out.split("ember compile_fx_graph")[1].splitlines()[0]
        assert "(1 calls)" in out.split("graph cache: store")[1].splitlines()[0], out
    # One generated module, written by the first run and found by the second.
    modules = [p for p in (tmp_path / "ember" / "code").glob("*.py") if "kernel_from(" in p.read_text()]
    assert len(modules) == 1
