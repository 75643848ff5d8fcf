"""Cold and warm compiles in new processes: does a second process find every tuning decision in
ember's cache, time nothing, and compile in a fraction of the cold time?

    python -m bench.compile_cache gpt2 bert-base

For each case: a fresh, empty cache folder; process 1 compiles and runs the model once with ember
(cold: every matmul and attention is tuned), process 2 does the same with that folder (warm).
TorchInductor's cold compile (its own fresh cache folder) is timed the same way for comparison.
Each line: seconds from torch.compile to the first result, the tuner's counters (cache hits,
misses, candidates timed) and the graph cache's (graphs stored cold, loaded warm: a loaded graph
asks the tuner nothing, so its hits are 0). Run it as a module from the repo root.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, sys, time, torch
from bench.gpu_kernels import CASES
from bench.workload import Config
from ember.autotune import STATS
from ember.frontend.graph_cache import STATS as GRAPHS
w = CASES[sys.argv[1]](Config())
start = time.perf_counter()
fn = torch.compile(w.target, backend=sys.argv[2]) if sys.argv[2] == "ember" else torch.compile(w.target)
with torch.no_grad():
    fn(*w.args, **w.kwargs)
torch.cuda.synchronize()
print("RESULT " + json.dumps({"seconds": time.perf_counter() - start, "hits": STATS.hits,
      "misses": STATS.misses, "timed": STATS.benchmarks, "heuristic": STATS.heuristic,
      "graph_hits": GRAPHS.hits, "graphs_stored": GRAPHS.stored, "graphs_bypassed": GRAPHS.bypassed}))
"""


def child(case: str, backend: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, case, backend], capture_output=True, text=True,
                         env=env, timeout=900)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{case} {backend} failed:\n{out.stderr[-3000:]}")


def main(argv: list[str]) -> None:
    from .gpu_kernels import CASES
    unknown = [n for n in argv if n not in CASES]
    if not argv or unknown:
        raise SystemExit(f"usage: python -m bench.compile_cache CASE...; cases: {', '.join(CASES)}")
    for case in argv:
        with tempfile.TemporaryDirectory() as ember_dir, tempfile.TemporaryDirectory() as inductor_dir:
            # Triton's compiled kernels go to each backend's folder too, so a cold run compiles
            # every kernel and the warm one finds them.
            env = dict(os.environ, EMBER_CACHE_DIR=ember_dir, TRITON_CACHE_DIR=os.path.join(ember_dir, "triton"))
            cold = child(case, "ember", env)
            warm = child(case, "ember", env)
            ind = child(case, "inductor", dict(os.environ, TORCHINDUCTOR_CACHE_DIR=inductor_dir,
                                               TRITON_CACHE_DIR=os.path.join(inductor_dir, "triton")))
            ratio = warm["seconds"] / cold["seconds"]
            print(f"{case}: ember cold {cold['seconds']:.1f} s (timed {cold['timed']}, misses "
                  f"{cold['misses']}, graphs stored {cold['graphs_stored']}, bypassed "
                  f"{cold['graphs_bypassed']}), warm {warm['seconds']:.1f} s (graphs loaded "
                  f"{warm['graph_hits']}; tuning hits {warm['hits']}, timed {warm['timed']}, misses "
                  f"{warm['misses']}) = {ratio:.2f} of cold; TorchInductor cold {ind['seconds']:.1f} s",
                  flush=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main(sys.argv[1:])
    print(f"({time.perf_counter() - start:.0f} s)")
