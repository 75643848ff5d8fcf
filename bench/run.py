"""ember's benchmark harness, the one entry point:

    python bench/run.py                         # the suite, bf16, on the GPU -> bench_out/
    python bench/run.py --cases gpt2,softmax    # pick cases (or groups: models, train, kernels, variants)
    python bench/run.py --smoke                 # CPU, tiny shapes, Triton interpreter, checks only

For each case the inputs are built once; eager runs first and is the reference; then each compiler
is compiled, checked against eager, and only if right, timed (do_bench median) and profiled.
Results: <out>/results.json, results.md, speedup.png, roofline.png, errors/ (tracebacks).
See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

GROUPS = ("models", "train", "kernels", "variants")
# `suite` (the default): the anchor file's cases. `variants` (other configurations of a suite
# model, such as GPT-2 returning only its logits) run when named, or with `all`.
SUITE = ("models", "train", "kernels")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _import_bench():
    """Import this folder as the package `bench` without putting bench/ or the repo root on
    sys.path: bench/kernels.py on the path would shadow the `kernels` package transformers looks
    for, and the repo root would expose ember's subpackages as top-level modules."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if "bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench", HERE / "__init__.py",
                                                      submodule_search_locations=[str(HERE)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="suite",
                   help="comma-separated case names or groups (models, train, kernels, variants; suite: the "
                        "first three, the default; all: every case); see --list")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default bf16 (fp32 with --smoke)")
    p.add_argument("--batch", default="",
                   help="batch size for every model case (e.g. 4) or per case (gpt2=4,resnet50=32)")
    p.add_argument("--out", default="bench_out", help="output folder (default bench_out/, gitignored)")
    p.add_argument("--backends", default=None,
                   help="comma-separated from eager,inductor,inductor_cg,ember,aot_eager; default eager,inductor,ember "
                        "(--smoke: eager,ember, as Inductor on CPU compiles C++, too slow for the smoke budget)")
    p.add_argument("--ember-options", default=None, help="JSON dict passed as torch.compile(options=...) to ember")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, Triton interpreter, correctness only")
    # 250 ms, not do_bench's 25: after a compile the GPU has idled and its clocks dropped; a short
    # warm-up timed the next case's first repetitions at ramping clocks (eager models measured up
    # to 1.6x slow right after a compile, and at the anchor's figures when timed back to back).
    p.add_argument("--warmup", type=int, default=250, help="do_bench warm-up budget, ms (default 250)")
    p.add_argument("--rep", type=int, default=100, help="do_bench repetition budget, ms (default 100)")
    p.add_argument("--rounds", type=int, default=3,
                   help="do_bench medians per model row, the fastest reported (default 3; see runner._time_rounds)")
    p.add_argument("--no-warm", action="store_true", help="skip the second (warm) compile of model cases")
    p.add_argument("--no-profile", action="store_true", help="skip kernel counting with torch.profiler")
    p.add_argument("--keep-caches", action="store_true",
                   help="use the existing Inductor/Triton/ember caches (default: fresh ones, so cold is cold)")
    p.add_argument("--anchors", default="default", help="anchor .jsonl to compare with ('none' to skip)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any compiled row is WRONG or failed")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p.parse_args(argv)


def parse_batch(text: str) -> dict[str, int]:
    """'8' -> {'*': 8}; 'gpt2=4,resnet50=32' -> per case."""
    out: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.rpartition("=")
        out[name or "*"] = int(value)
    return out


def select(cases: list, spec: str) -> list:
    wanted = [t.strip() for t in spec.split(",") if t.strip()] or ["suite"]
    names = {c.name for c in cases}
    bad = [w for w in wanted if w not in names and w not in GROUPS and w not in ("suite", "all")]
    if bad:
        raise SystemExit(f"unknown case(s) {bad}; cases: {sorted(names)}; groups: {list(GROUPS)}, suite, all")
    return [c for c in cases if "all" in wanted or c.name in wanted or c.group in wanted
            or ("suite" in wanted and c.group in SUITE)]


def _fresh_caches() -> str:
    """Point Inductor, Triton and ember at empty cache dirs (before they are imported), so the cold
    compile time is a true cold start even on a machine that ran the suite before."""
    root = tempfile.mkdtemp(prefix="ember-bench-caches-")
    for var, sub in (("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("TRITON_CACHE_DIR", "triton"),
                     ("EMBER_CACHE_DIR", "ember")):
        os.environ[var] = os.path.join(root, sub)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # must precede the first triton import
    cache_root = None if args.keep_caches else _fresh_caches()
    try:
        return _run(args, argv)
    finally:
        if cache_root:
            shutil.rmtree(cache_root, ignore_errors=True)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    import json

    import torch

    _import_bench()
    from bench import anchors, kernels, models, suite
    from bench.backends import make_backends
    from bench.timing import Timer
    from bench.workload import Config

    all_cases = models.CASES + kernels.CASES
    if args.list:
        for c in all_cases:
            print(f"{c.group:<8} {c.name}")
        return 0
    cases = select(all_cases, args.cases)
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: the timed suite needs a GPU; use --smoke for the CPU correctness run", file=sys.stderr)
        return 2
    dtype = getattr(torch, DTYPES[args.dtype or ("fp32" if args.smoke else "bf16")])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend_names = (args.backends or ("eager,ember" if args.smoke else "eager,inductor,ember")).split(",")
    backends = make_backends([b.strip() for b in backend_names if b.strip()],
                             json.loads(args.ember_options) if args.ember_options else None)
    timed = not args.smoke
    cfg = Config(device=device, dtype=dtype, smoke=args.smoke, batch=parse_batch(args.batch),
                 timer=Timer(args.warmup, args.rep) if timed else None, warm=timed and not args.no_warm,
                 profile=timed and not args.no_profile, rounds=args.rounds, errors_dir=str(out / "errors"))
    shutil.rmtree(out / "errors", ignore_errors=True)
    anchor_rows = anchors.load(anchors.DEFAULT if args.anchors == "default" else
                               None if args.anchors == "none" else args.anchors)

    config = {"command": "python bench/run.py " + " ".join(shlex.quote(a) for a in argv),
              "smoke": args.smoke, "dtype": str(dtype).replace("torch.", ""), "device": device,
              "backends": [b.name for b in backends], "labels": {b.name: b.label for b in backends},
              "batch": cfg.batch, "warmup_ms": args.warmup if timed else None, "rep_ms": args.rep if timed else None,
              "rounds": args.rounds if timed else None,
              "warm_compile": cfg.warm, "profile": cfg.profile, "fresh_caches": not args.keep_caches,
              "ember_options": next((b.options for b in backends if b.name == "ember"), None)}
    results, written = suite.run(cfg, backends, cases, out, config, anchor_rows,
                                 comparable=timed and dtype == torch.bfloat16, log=lambda s: print(s, flush=True))
    print()
    print((out / "results.md").read_text().split("\nNotes:")[0].rstrip())
    print(f"\nwrote {', '.join(str(p) for p in written)} in {results['wall_s']:.0f} s")
    bad = suite.failures(results)
    if args.strict and bad:
        print("strict: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
