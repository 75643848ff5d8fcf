"""Where one compiled call spends its *CPU* time: cProfile of a model call, per backend.

    python -m bench.cpu_profile gpt2-train vit_base_patch16_224

A model whose wall time is well above its GPU busy time (bench.gpu_kernels) is bound by the host:
Python in the wrapper, launches, AOTAutograd's runtime glue. This prints the wall time per call
with the GPU synchronized once at the end (the host-side cost of issuing the work, as long as the
GPU keeps up) and the functions with the most time of their own. Run it as a module from the
repo root (see bench/gpu_kernels.py for why).
"""
from __future__ import annotations

import cProfile
import contextlib
import io
import pstats
import sys
import time

import torch

from .gpu_kernels import CASES
from .workload import Config

CALLS, WARMUP, TOP = 10, 3, 25


def profile_case(name: str, cfg: Config, backends: list[str]) -> None:
    torch._dynamo.reset()
    w = CASES[name](cfg)
    make = {"eager": lambda: w.target, "ember": lambda: torch.compile(w.target, backend="ember"),
            "inductor": lambda: torch.compile(w.target)}

    def step(fn):
        out = fn(*w.args, **w.kwargs)
        if w.train:
            w.pick(out).backward()

    with contextlib.nullcontext() if w.train else torch.no_grad():
        for label in backends:
            fn = make[label]()
            for _ in range(WARMUP):
                step(fn)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(CALLS):
                step(fn)
            issued = (time.perf_counter() - start) / CALLS * 1e3
            torch.cuda.synchronize()
            total = (time.perf_counter() - start) / CALLS * 1e3
            print(f"== {name} {label}: {issued:.2f} ms/call issued on the host, {total:.2f} ms/call "
                  f"with the GPU", flush=True)
            if label == "eager":
                continue
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(CALLS):
                step(fn)
            prof.disable()
            torch.cuda.synchronize()
            print(top_functions(prof, "tottime", TOP), flush=True)


def top_functions(prof: cProfile.Profile, sort: str, n: int) -> str:
    """pstats' table of the n functions first by `sort`, without its blank lines."""
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(n)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    return "\n".join(lines[:n + 8])


def main(argv: list[str]) -> None:
    backends = ["eager", "ember", "inductor"]
    unknown = [n for n in argv if n not in CASES]
    if not argv or unknown:
        raise SystemExit(f"usage: python -m bench.cpu_profile CASE...; cases: {', '.join(CASES)}")
    for name in argv:
        profile_case(name, Config(), backends)


if __name__ == "__main__":
    main(sys.argv[1:])
