"""Where a *cold* ember compile spends its time: cProfile of the first call of one model.

    python -m bench.compile_profile gpt2 [--budget 10] [--cache-dir DIR]

Both caches start empty (ember's and Triton's, in a fresh temporary folder each), so this is what
a user pays on a new machine. With --cache-dir, both live in DIR instead: run twice with the same
DIR to profile a warm compile (the second run). Prints the wall time of the first call, the
tuner's counters and the functions with the most cumulative time. Run it as a module from the repo root (see bench/gpu_kernels.py for why).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import tempfile
import time

TOP = 45


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--budget", type=float, default=None, help="autotune_budget_s")
    parser.add_argument("--cache-dir", default=None, help="keep both caches here (default: a new temporary folder)")
    args = parser.parse_args()
    tmp = args.cache_dir or tempfile.mkdtemp(prefix="ember-cold-")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(tmp, "triton")  # before triton is imported
    import torch

    from .gpu_kernels import CASES
    from .workload import Config

    w = CASES[args.case](Config())
    options = {"cache_dir": os.path.join(tmp, "ember")}
    if args.budget is not None:
        options["autotune_budget_s"] = args.budget
    fn = torch.compile(w.target, backend="ember", options=options)
    prof = cProfile.Profile()
    start = time.perf_counter()
    with torch.no_grad() if not w.train else torch.enable_grad():
        prof.enable()
        out = fn(*w.args, **w.kwargs)
        if w.train:
            w.pick(out).backward()
        torch.cuda.synchronize()
        prof.disable()
    wall = time.perf_counter() - start
    from ember.autotune import STATS

    from .cpu_profile import top_functions
    print(f"== {args.case}: first call {wall:.1f} s (profiled; tuning cache hits {STATS.hits}, "
          f"misses {STATS.misses}, candidates timed {STATS.benchmarks})", flush=True)
    # Only this thread is profiled: compiles on precompile's thread pool show up as the time
    # spent waiting for them (bench.compile_phases gives the stages).
    print(top_functions(prof, "cumulative", TOP), flush=True)

if __name__ == "__main__":
    main()
