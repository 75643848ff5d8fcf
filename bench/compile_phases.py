"""Wall time per phase of one ember compile, from torch.compile to the first result.

    python -m bench.compile_phases gpt2 [--no-precompile] [--workers N]  # cold: fresh caches
    python -m bench.compile_phases gpt2 --cache-dir DIR         # run twice: the second is warm
    python -m bench.compile_phases gpt2 --cpu [--cache-dir DIR] # no GPU: stops at the first call

Prints the total seconds from torch.compile to the first result and the time spent in: Dynamo
(what is left once the backend and the compiled graphs' calls are taken out: tracing, guards,
imports on the way), the graph cache (keying, and loading a stored graph or storing a new one:
a warm run loads, and then AOTAutograd and ember's stages do not run), AOTAutograd (the backend
minus ember's compiles and the graph cache), and ember's own stages:
lowering, the pass pipeline, codegen (with memory planning and the Chooser: tuning-cache lookups or
races), writing and importing the generated module, then on a GPU the races' precompile and
timing, the wrapper's dry run and the compiled graphs' calls. Indented rows nest in the row above,
so rows do not add up. Where bench.compile_profile says which functions cost the most, this says
which stage.

--cache-dir keeps ember's and Triton's caches in DIR, so a second run with the same DIR is a warm
compile in a new process, as bench.compile_cache times it. --cpu builds the case at its full size
on the CPU and stops at the first call of the compiled graph (Triton's interpreter would take
minutes at these sizes): Dynamo, AOTAutograd and ember's compile are measured, the first call is
not; the graph's device is the CPU, so the Chooser times nothing and codegen takes the heuristic
choices. On a GPU three more rows say what Triton costs on the way: hashing its own installation
(once per process), compiling each kernel or finding it in its cache (summed over precompile's
threads), and loading the compiled kernels onto the GPU at their first launch. Run it as a module from the repo root (see bench/gpu_kernels.py for why).
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


class _StopAtFirstCall(Exception):
    """--cpu: raised by the compiled graph's first call, which is not measured there."""


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


# (label, depth) in print order; the Dynamo row is computed, the others are timed.
ROWS = [("Dynamo (the rest)", 1), ("backend (AOTAutograd + ember)", 1),
        ("graph cache: key", 2), ("graph cache: load", 2), ("graph cache: store", 2),
        ("AOTAutograd (backend minus ember)", 2), ("ember compile_fx_graph", 2),
        ("lowering (fx_to_ir)", 3), ("pass pipeline", 3), ("compile_graph", 3), ("codegen", 4),
        ("memory plan + choices", 5), ("Chooser.choose", 6), ("races: precompile", 7),
        ("races: timing (do_bench)", 7), ("write module", 4), ("import module", 4),
        ("compiled graph calls", 1), ("wrapper dry run", 2),
        ("Triton: triton_key (once per process)", 1), ("Triton: compile or cache hit, summed over threads", 1),
        ("Triton: load kernels (_init_handles)", 1)]


def _instrument(stop_at_first_call: bool) -> None:
    from ember.autotune import tuner
    from ember.codegen import choice, compiled_graph, precompile, wrapper
    from ember.frontend import backend
    from ember.frontend import compile as frontend_compile
    from ember.frontend import graph_cache

    _timed(backend, "ember_backend", "backend (AOTAutograd + ember)")
    _timed(graph_cache, "graph_key", "graph cache: key")
    _timed(graph_cache, "load", "graph cache: load")
    _timed(graph_cache, "store", "graph cache: store")
    _timed(backend, "compile_fx_graph", "ember compile_fx_graph")
    _timed(frontend_compile, "fx_to_ir", "lowering (fx_to_ir)")
    _timed(frontend_compile, "run_pipeline", "pass pipeline")
    _timed(frontend_compile, "compile_graph", "compile_graph")
    _timed(compiled_graph, "generate_module", "codegen")
    _timed(wrapper, "plan_memory", "memory plan + choices")
    _timed(compiled_graph, "write_generated", "write module")
    _timed(compiled_graph, "load_module", "import module")
    _timed(choice.Chooser, "choose", "Chooser.choose")
    _timed(choice, "_compile_all", "races: precompile")
    _timed(tuner, "do_bench_median", "races: timing (do_bench)")
    _timed(precompile, "dry_run", "wrapper dry run")
    if stop_at_first_call:
        def stop(self, *args, **kwargs):
            raise _StopAtFirstCall()
        compiled_graph.CompiledGraph.__call__ = stop
    _timed(compiled_graph.CompiledGraph, "__call__", "compiled graph calls")
    _instrument_triton()


def _instrument_triton() -> None:
    """GPU only (the interpreter compiles nothing): Triton's share of a first call. On a warm run
    `compile` is a cache hit: the key (source hashes), the metadata and binary read from disk.
    Compiles run on precompile's threads, so their row sums time that overlaps. A Triton without
    these names just gets no rows."""
    import triton.compiler
    from triton.compiler import compiler as triton_compiler
    from triton.runtime import cache as triton_cache
    try:
        _timed(triton_cache, "triton_key", "Triton: triton_key (once per process)")
        _timed(triton.compiler, "compile", "Triton: compile or cache hit, summed over threads")
        _timed(triton_compiler.CompiledKernel, "_init_handles", "Triton: load kernels (_init_handles)")
    except AttributeError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--no-precompile", action="store_true", help="options={'precompile': False}")
    parser.add_argument("--workers", type=int, default=None,
                        help="options={'compile_workers': N} (0: threads only; default: one per core)")
    parser.add_argument("--cache-dir", default=None,
                        help="keep ember's and Triton's caches here (default: a new temporary folder)")
    parser.add_argument("--cpu", action="store_true",
                        help="build the case on the CPU and stop at the compiled graph's first call")
    args = parser.parse_args()
    tmp = args.cache_dir or tempfile.mkdtemp(prefix="ember-phases-")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(tmp, "triton")  # before triton is imported
    import torch

    from .gpu_kernels import CASES
    from .workload import Config

    _instrument(stop_at_first_call=args.cpu)
    w = CASES[args.case](Config(device="cpu") if args.cpu else Config())
    options = {"cache_dir": os.path.join(tmp, "ember"), "precompile": not args.no_precompile,
               "compile_workers": args.workers}
    start = time.perf_counter()
    fn = torch.compile(w.target, backend="ember", options=options)
    try:
        with torch.no_grad() if not w.train else torch.enable_grad():
            out = fn(*w.args, **w.kwargs)
            if w.train:
                w.pick(out).backward()
    except _StopAtFirstCall:
        pass
    if not args.cpu:
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    SECONDS["AOTAutograd (backend minus ember)"] = (
        SECONDS["backend (AOTAutograd + ember)"] - SECONDS["ember compile_fx_graph"]
        - SECONDS["graph cache: key"] - SECONDS["graph cache: load"] - SECONDS["graph cache: store"])
    SECONDS["Dynamo (the rest)"] = (total - SECONDS["backend (AOTAutograd + ember)"]
                                    - SECONDS["compiled graph calls"])
    what = "to the first call (CPU, not run)" if args.cpu else "to the first result"
    print(f"== {args.case} (precompile {not args.no_precompile}, caches {tmp}): {total:.2f} s {what}",
          flush=True)
    for label, depth in ROWS:
        if label in SECONDS:
            calls = f"  ({CALLS[label]} calls)" if CALLS[label] else ""
            print(f"   {'  ' * (depth - 1)}{label:{44 - 2 * depth}s} {SECONDS[label]:7.2f} s{calls}")
    from ember.codegen import compile_workers
    if compile_workers.STATS["jobs"]:
        print(f"   compile workers: {compile_workers.STATS['jobs']} kernels, "
              f"{compile_workers.STATS['worker_s']:.2f} s of compiling summed over the workers")


if __name__ == "__main__":
    main()
