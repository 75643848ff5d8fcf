"""Wall time per phase of one cold ember compile (fresh ember and Triton caches).

    python -m bench.compile_phases gpt2 [--no-precompile]

Prints the total seconds from torch.compile to the first result and the time spent in: ember's
compile_graph (passes, codegen and autotuning), the Chooser's races, compiling the races'
candidates ahead (precompile), timing them (do_bench), the wrapper's dry run, and the compiled
graphs' calls. Phases nest (the races run inside compile_graph), so they do not add up. Where
bench.compile_profile says which functions cost the most, this says which stage. Run it as a
module from the repo root (see bench/gpu_kernels.py for why).
"""
from __future__ import annotations

import argparse
import collections
import functools
import os
import tempfile
import time

SECONDS: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter = collections.Counter()


def _timed(owner, name: str, label: str) -> None:
    """Replace owner.name by a wrapper adding its wall time to SECONDS[label]."""
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - start
            CALLS[label] += 1
    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--no-precompile", action="store_true", help="options={'precompile': False}")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ember-phases-")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(tmp, "triton")  # before triton is imported
    import torch

    from ember.autotune import tuner
    from ember.codegen import choice, compiled_graph, precompile
    from ember.frontend import compile as frontend_compile

    from .gpu_kernels import CASES
    from .workload import Config

    _timed(frontend_compile, "compile_graph", "ember compile_graph (incl. races)")
    _timed(choice.Chooser, "choose", "races (Chooser.choose)")
    _timed(choice, "_compile_all", "precompile of race candidates")
    _timed(tuner, "do_bench_median", "timing candidates (do_bench)")
    _timed(precompile, "dry_run", "wrapper dry run")
    _timed(compiled_graph.CompiledGraph, "__call__", "compiled graph calls")

    w = CASES[args.case](Config())
    options = {"cache_dir": os.path.join(tmp, "ember"), "precompile": not args.no_precompile}
    start = time.perf_counter()
    fn = torch.compile(w.target, backend="ember", options=options)
    with torch.no_grad() if not w.train else torch.enable_grad():
        out = fn(*w.args, **w.kwargs)
        if w.train:
            w.pick(out).backward()
    torch.cuda.synchronize()
    print(f"== {args.case} (precompile {not args.no_precompile}): first result after "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    for label, secs in SECONDS.items():
        print(f"   {label:36s} {secs:7.2f} s  ({CALLS[label]} calls)")


if __name__ == "__main__":
    main()
