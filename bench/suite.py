"""The whole run, once the CLI has decided what to run: ceilings, every case, anchors, outputs.

Kept apart from run.py (argument parsing, environment variables, the device gate) so the timed
path can be exercised on CPU with a stand-in timer by the tests.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from . import anchors, env, heap, kernels, plots, report, runner, timing
from .backends import Backend
from .workload import Config


def run(cfg: Config, backends: list[Backend], cases: list, out: Path, config: dict, anchor_rows: list[dict],
        comparable: bool, ceilings: Callable[[Config], dict] = kernels.measure_ceilings,
        log: Callable[[str], None] = print) -> tuple[dict, list[Path]]:
    """Runs everything; returns the results and the files written under out."""
    t_start = time.perf_counter()
    timed = cfg.timer is not None
    results = {"env": env.collect(cfg.device), "config": config, "ceilings": {}, "cases": []}
    e = results["env"]
    log(f"ember bench: {e.get('gpu') or 'CPU'}, torch {e['torch']}, triton {e['triton']}, {config['dtype']}, "
        f"backends {config['backends']}" + (" (SMOKE: correctness only, nothing timed)" if config["smoke"] else ""))

    if timed:
        results["cpu_loop_ms"] = {"start": timing.cpu_loop_ms()}
        try:
            t_ceilings = time.perf_counter()
            results["ceilings"] = ceilings(cfg)
            results["ceilings_s"] = time.perf_counter() - t_ceilings
            for c in results["ceilings"].values():
                log(f"  ceiling {c['what']}: {c['value']:.0f} ({c['status']})")
        except Exception as exc:  # noqa: BLE001 - the cases still run; percentages are left out
            results["ceilings_error"] = f"{type(exc).__name__}: {exc}"
            log(f"  ceilings failed: {results['ceilings_error']}")
        if comparable:
            results["anchor_ceilings"] = anchors.ceilings(anchor_rows)
            results["anchor_env"] = anchors.env_of(anchor_rows)
    values = {k: c["value"] for k, c in results["ceilings"].items() if c.get("status") == "ok"}

    with heap.frozen_heap():
        for case in cases:
            log(f"== {case.name} ({case.group})")
            with heap.gc_clock(results):
                record = runner.run_case(case, backends, cfg, log=log)
            heap.freeze_survivors()
            _finish_case(record, cfg, values, comparable, anchor_rows, results, out, log)

    if timed:
        results["cpu_loop_ms"]["end"] = timing.cpu_loop_ms()
    results["wall_s"] = time.perf_counter() - t_start
    report.write_json(results, out / "results.json")
    (out / "results.md").write_text(report.markdown(results))
    written = [out / "results.json", out / "results.md"]
    if timed:
        for name, draw in (("speedup.png", plots.speedups), ("roofline.png", plots.roofline)):
            try:
                if draw(results, out / name):
                    written.append(out / name)
            except Exception as exc:  # noqa: BLE001 - a plot never costs the numbers
                log(f"plot {name} failed: {type(exc).__name__}: {exc}")
    return results, written


def _finish_case(record: dict, cfg: Config, values: dict, comparable: bool, anchor_rows: list[dict],
                 results: dict, out: Path, log: Callable[[str], None]) -> None:
    runner.apply_ceilings(record, values)
    # Anchors only mean something at the anchor's configuration (bf16, default batch).
    if comparable and record["name"] not in cfg.batch and "*" not in cfg.batch:
        anchors.attach(record, anchor_rows)
    if record["status"] != "done":
        log(f"  {record['status']}: {record.get('reason') or record.get('exception')}")
    else:
        log(f"  [{record['shape']}, {record['wall_s']:.1f} s]")
    results["cases"].append(record)
    report.write_json(results, out / "results.json")  # partial results survive a crash or timeout


def failures(results: dict) -> list[str]:
    """Every failed case and every WRONG or failed row (for --strict)."""
    bad = []
    for r in results["cases"]:
        if r.get("status") == "error":
            bad.append(f"{r['name']}: {r.get('exception')}")
        for name, rec in {**r.get("backends", {}), **r.get("refs", {})}.items():
            if rec.get("status") in ("WRONG", "error"):
                bad.append(f"{r['name']}/{name} {rec['status']}")
    return bad
