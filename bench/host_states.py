"""The launch-bound model rows against the host's speed, in one process:

    python -m bench.host_states [--seconds 60]      # on the GPU
    python -m bench.host_states --cpu --seconds 2   # no GPU: tiny models, wall-clock medians

Times eager BERT, TorchInductor GPT-2 kv and eager GPT-2 kv in turn, again and again for
--seconds. Each time is a do_bench median with the harness's budgets, taken between two host
probes (timing.host_loop_ms). Then it splits the samples by the host's state and prints each
row's median per state beside its anchor:
- fast: both probes within FAST of the run's fastest probe;
- slow: both over SLOW times it;
- mixed: the rest.

Why: these rows run at the speed of the CPU that launches their kernels, and on the lent H100
that speed flips between two states about 1.8x apart every few seconds, below the guest. On
2026-11-23 the anchor file's eager GPT-2 kv matched the fast state and its eager BERT the slow
one (docs/benchmarks.md, the 5223aa3 section). --cpu runs the same loop on the CPU with
smoke-sized models, Dynamo's eager backend for TorchInductor's row and a wall-clock timer: it
checks the tool, and its times mean nothing. Run it as a module from the repo root (see
bench/gpu_kernels.py for why).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from . import anchors, models
from .timing import Timer, host_loop_ms, wall
from .workload import Config

ROWS = (("bert-base", "eager"), ("gpt2-kv", "inductor"), ("gpt2-kv", "eager"))
BUILDERS = {"bert-base": models.bert, "gpt2-kv": models.gpt2_kv}
FAST, SLOW = 1.2, 1.4
STATES = ("fast", "slow", "mixed")


def state_of(probes: tuple[float, float], fastest: float) -> str:
    if max(probes) <= FAST * fastest:
        return "fast"
    if min(probes) > SLOW * fastest:
        return "slow"
    return "mixed"


def split_by_state(samples: list[dict]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(case, backend): {state: [ms, ...]}} over samples {"row": (case, backend), "ms", "probes"}."""
    fastest = min(min(s["probes"]) for s in samples)
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for s in samples:
        out.setdefault(tuple(s["row"]), {k: [] for k in STATES})[state_of(s["probes"], fastest)].append(s["ms"])
    return out


def table(samples: list[dict], anchor_rows: list[dict]) -> list[str]:
    """A Markdown table: each row's median per host state, with its ratio to the anchor."""
    fastest = min(min(s["probes"]) for s in samples)
    lines = [f"Host probe (a fixed Python loop): fastest {fastest:.1f} ms; fast <= {FAST}x, slow > {SLOW}x.", "",
             "| row | " + " | ".join(f"{k} host ms (n)" for k in STATES) + " | anchor ms | "
             + " | ".join(f"{k} / anchor" for k in STATES) + " |",
             "|---" * (2 * len(STATES) + 2) + "|"]
    for (case, backend), by_state in split_by_state(samples).items():
        medians = {k: statistics.median(v) if v else None for k, v in by_state.items()}
        anchor = (anchors.for_case(anchor_rows, case) or {}).get(backend)
        cells = [f"{medians[k]:.3f} ({len(by_state[k])})" if medians[k] else "— (0)" for k in STATES]
        ratios = [f"{medians[k] / anchor:.2f}" if medians[k] and anchor else "—" for k in STATES]
        lines.append(f"| {backend} {case} | " + " | ".join(cells) + f" | {f'{anchor:.2f}' if anchor else '—'} | "
                     + " | ".join(ratios) + " |")
    return lines


def _wall_median(fn: Callable, reps: int = 5) -> float:
    return statistics.median(wall(fn, "cpu")[1] * 1e3 for _ in range(reps))


def sample(calls: dict[tuple[str, str], Callable], seconds: float, timer: Callable[[Callable], float]) -> list[dict]:
    """Times each row in turn until `seconds` have passed, each between two host probes."""
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for row, call in calls.items():
            before = host_loop_ms()
            ms = timer(call)
            samples.append({"row": row, "ms": ms, "probes": (before, host_loop_ms())})
    return samples


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.host_states", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to sample (default 60)")
    parser.add_argument("--cpu", action="store_true", help="smoke-sized models on the CPU: checks the tool only")
    args = parser.parse_args(argv)
    cfg = Config(device="cpu", dtype=torch.float32, smoke=True) if args.cpu else Config()
    works = {case: build(cfg) for case, build in BUILDERS.items()}
    calls = {}
    with torch.no_grad():
        for case, backend in ROWS:
            w = works[case]
            compiler = "eager" if args.cpu else "inductor"  # Dynamo alone on the CPU: no C++ compile
            fn = w.target if backend == "eager" else torch.compile(w.target, backend=compiler)
            calls[(case, backend)] = lambda fn=fn, w=w: w.call(fn)
        for call in calls.values():
            call()  # the compile, outside the sampling
        if args.cpu:
            timer = _wall_median
        else:
            # The suite's model timer: a long first warm-up for each row, then the short one.
            timer = Timer(warmup_ms=25, rep_ms=100)
            for call in calls.values():
                timer(call, warmup_ms=1500)
        samples = sample(calls, args.seconds, timer)
    print("\n".join(table(samples, [] if args.cpu else anchors.load())))  # smoke sizes have no anchor
    return samples


if __name__ == "__main__":
    main()
