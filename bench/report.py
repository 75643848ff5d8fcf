"""results.json (every figure, the environment, the configuration) and results.md (the tables).

A row whose check failed shows WRONG with its error and no time; a row that raised shows "error"
and its message is listed under the tables. The smoke run's tables carry correctness only.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .anchors import ANCHOR_BAND
from .memory import mib

NOTES = [
    "Times: triton.testing.do_bench medians (CUDA events, L2 flushed before each repetition). A "
    "model row is timed in --rounds rounds (default 3) and reports the fastest round's median; "
    "results.json keeps every round and the host probes around it.",
    "Check: max|out - eager| / max|eager| over the compared tensors (logits; loss and every gradient "
    "for training), computed before timing; over tolerance = WRONG and no time is reported. "
    "Eager (ref) is checked run-to-run: a second call against the first.",
    "Compile: wall time of torch.compile + first call (synchronised), with fresh Inductor/Triton/ember "
    "cache dirs unless --keep-caches. Warm = a second compile in the same process after "
    "torch._dynamo.reset(), reusing the on-disk caches the cold compile wrote. ember's compiles "
    "write dumps (EMBER_DUMP_DIR, a temp dir) for the extern count.",
    "Kernels: CUDA kernel events in torch.profiler for one call (memcpy/memset not counted).",
    "Peak memory (models): torch.cuda.max_memory_allocated() over one more call after timing, "
    "MiB. Call = the peak above what was allocated just before the call (weights, inputs and eager's "
    "reference outputs are live for every backend, so this is the fair comparison); absolute = the "
    "peak itself, which also counts what a compiled function holds between calls. ember / eager is "
    "the call figures' ratio; ABOVE EAGER: ember's call or absolute peak exceeds eager's by > 1 MiB.",
    "Attention TFLOP/s counts 2*B*H*S^2*D for every row: the causal triangle's work, as the "
    "anchors count it.",
    "vs anchor: this run / the recorded H100 anchor, in the row's unit (ms: >1 is slower; GB/s or "
    "TFLOP/s: <1 is slower).",
]


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: write them as strings so the file stays standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(_finite(results), indent=1, allow_nan=False) + "\n")


# ---- cells ---------------------------------------------------------------------------------

def _err(rec: dict) -> str:
    err = rec.get("err")
    if err is None:
        return ""
    return f"{err:.1e}" if isinstance(err, float) and math.isfinite(err) else "inf"


def check_cell(rec: dict | None) -> str:
    if not rec:
        return "—"
    status = rec.get("status")
    if status == "reference":  # eager: its err is run-to-run (second call vs first)
        return "ref" if not rec.get("nondeterministic") else f"ref, rerun differs {_err(rec)}"
    if status == "error":
        return "error"
    return f"{status} {_err(rec)}".strip()


def value_cell(rec: dict | None, unit: str) -> str:
    """A time (ms) or rate (GBs/TFLOPs) with speedup or percent of ceiling; WRONG/error otherwise."""
    if not rec:
        return "—"
    status = rec.get("status")
    if status == "error":
        return "error"
    if status == "WRONG":
        return f"WRONG ({_err(rec)})"
    value = rec.get(unit)
    if value is None:
        return "—"
    if unit == "ms":
        text = f"{value:.3f}"
        if rec.get("speedup") and status != "reference":
            text += f" (x{rec['speedup']:.2f})"
    else:
        text = f"{value:.0f}" if unit == "GBs" else f"{value:.1f}"
        if rec.get("pct_ceiling") is not None:
            text += f" ({rec['pct_ceiling']:.0f}%)"
    if rec.get("vs_anchor") is not None:
        text += f" [{rec['vs_anchor']:.2f}]"
    return text


def _num(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def mem_cell(recs: list[dict | None], key: str) -> str:
    """One figure per backend, "eager / TorchInductor / ember"; "—" where not measured (CPU)."""
    def one(rec: dict | None) -> str:
        status = (rec or {}).get("status")
        return status if status in ("error", "WRONG") else mib((rec or {}).get(key))
    return " / ".join(one(r) for r in recs)


def mem_ratio_cell(rec: dict | None) -> str:
    if not rec or rec.get("mem_ratio") is None:
        return "—"
    return f"{rec['mem_ratio']:.2f}" + (" ABOVE EAGER" if rec.get("mem_above_eager") else "")


def _compile_cell(rec: dict | None) -> str:
    if not rec or rec.get("compile_s") is None:
        return "—"
    if rec.get("status") == "WRONG":  # only right results get figures in the tables (JSON keeps it)
        return "WRONG"
    warm = rec.get("compile_s_warm")
    return f"{rec['compile_s']:.1f} / {warm:.1f}" if warm is not None else f"{rec['compile_s']:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# ---- sections ------------------------------------------------------------------------------

def _header(results: dict) -> list[str]:
    env, conf = results["env"], results["config"]
    ember = env.get("ember") or {}
    commit = (ember.get("commit") or "unknown")[:12] + (" (dirty)" if ember.get("dirty") else "")
    lines = [
        "# ember benchmark results",
        "",
        f"Command: `{conf['command']}`",
        "",
        f"GPU {env.get('gpu') or 'none (CPU)'} · torch {env['torch']} · triton {env['triton']} · "
        f"transformers {env.get('transformers')} · timm {env.get('timm')} · torchvision {env.get('torchvision')} · "
        f"ember {commit} · {env['time_utc']} · dtype {conf['dtype']}",
        "",
    ]
    if conf.get("smoke"):
        lines += ["**Smoke run** (CPU, tiny shapes, Triton interpreter): correctness only, nothing is timed "
                  "and peak memory is not measured (no CUDA allocator).", ""]
    ceil = results.get("ceilings") or {}
    if ceil:
        parts = []
        for key, c in ceil.items():
            anchor = (results.get("anchor_ceilings") or {}).get(key)
            parts.append(f"{c['what']}: **{c['value']:.0f}** ({c['status']})"
                         + (f" [anchor {anchor:.0f}, {c['value'] / anchor:.2f}]" if anchor else ""))
        lines += ["Ceilings measured in this run: " + "; ".join(parts), ""]
    return lines


def _models(results: dict, backends: list[str], labels: dict) -> list[str]:
    recs = [r for r in results["cases"] if r["group"] != "kernels" and r.get("status") == "done"]
    if not recs:
        return []
    smoke = results["config"].get("smoke")
    compiled = [b for b in backends if b != "eager"]
    if smoke:
        header = ["model", "shape"] + [f"{labels[b]} check" for b in backends]
        rows = [[r["name"], r["shape"]] + [check_cell(r["backends"].get(b)) for b in backends] for r in recs]
        return ["## Models (correctness)", ""] + _table(header, rows) + [""]
    names = " / ".join(labels[b] for b in backends)
    ember = ["ember / eager peak"] if "ember" in compiled else []
    header = (["model", "shape"] + [f"{labels[b]} ms" for b in backends]
              + [f"{labels[b]} check" for b in compiled] + [f"peak MiB, call ({names})"] + ember)
    rows = [[r["name"], r["shape"]] + [value_cell(r["backends"].get(b), "ms") for b in backends]
            + [check_cell(r["backends"].get(b)) for b in compiled]
            + [mem_cell([r["backends"].get(b) for b in backends], "mem_call_bytes")]
            + ([mem_ratio_cell(r["backends"].get("ember"))] if ember else []) for r in recs]
    out = ["## Models (ms, speedup over eager; peak memory of one call)", ""] + _table(header, rows) + [""]
    header = (["model"] + [f"{labels[b]} compile s (cold / warm)" for b in compiled]
              + [f"{labels[b]} kernels" for b in backends] + ["ember externs", f"peak MiB, absolute ({names})"])
    rows = [[r["name"]] + [_compile_cell(r["backends"].get(b)) for b in compiled]
            + [_num((r["backends"].get(b) or {}).get("kernels"), "d") for b in backends]
            + [_num((r["backends"].get("ember") or {}).get("externs"), "d")]
            + [mem_cell([r["backends"].get(b) for b in backends], "mem_peak_bytes")] for r in recs]
    anchors = [r for r in recs if r.get("anchor")]
    out += ["## Compile time, kernels launched, externs, absolute peak memory", ""] + _table(header, rows) + [""]
    out += _host_speed(recs, backends, labels)
    if anchors:
        out += ["Anchor (H100, recorded): " + "; ".join(
            f"{r['name']} eager {r['anchor']['eager']:.2f} ms, inductor {r['anchor']['inductor']:.2f} ms"
            + (f" (compile {r['anchor']['inductor_compile_s']:.0f} s)" if r["anchor"].get("inductor_compile_s") else "")
            for r in anchors), ""]
        out += _anchor_band(anchors, labels)
    return out


def _anchor_band(recs: list[dict], labels: dict) -> list[str]:
    """How many eager and TorchInductor model times fall within ANCHOR_BAND of their anchors
    (the benchmark issue's check), and which do not, faster or slower."""
    ratios = [(r["name"], b, rec["vs_anchor"]) for r in recs for b in ("eager", "inductor")
              if (rec := r["backends"].get(b)) and rec.get("vs_anchor")]
    if not ratios:
        return []
    out = [f"{name} {labels.get(b, b)} {x:.2f} ({'faster' if x < 1 else 'slower'})"
           for name, b, x in ratios if abs(x - 1) > ANCHOR_BAND]
    return [f"Model times within {ANCHOR_BAND:.0%} of their anchors: {len(ratios) - len(out)} of {len(ratios)}"
            + (f"; outside: {', '.join(out)}." if out else "."), ""]


def _host_speed(recs: list[dict], backends: list[str], labels: dict) -> list[str]:
    """The host's Python speed around each model row's timing (timing.host_loop_ms): the slowest
    of the two probes, against the fastest probe of the run. Launch-bound rows run at that speed."""
    probes = {(r["name"], b): max(rec["host_loop_ms"]) for r in recs for b in backends
              if (rec := r["backends"].get(b)) and rec.get("host_loop_ms")}
    if not probes:
        return []
    fastest = min(probes.values())
    slow = [f"{name} {labels[b]} x{ms / fastest:.2f}" for (name, b), ms in probes.items() if ms > 1.2 * fastest]
    out = [f"Host Python speed while timing the reported round (a fixed loop, {fastest:.0f} to "
           f"{max(probes.values()):.0f} ms): "
           + ("rows timed on a host over 1.2x slower than its fastest: " + ", ".join(slow) if slow
              else "every row within 1.2x of the fastest."), ""]
    spread = []
    for r in recs:
        for b in backends:
            times = [x["ms"] for x in (r["backends"].get(b) or {}).get("rounds") or []]
            if len(times) > 1 and max(times) > 1.1 * min(times):
                spread.append(f"{r['name']} {labels[b]} " + " / ".join(f"{t:.2f}" for t in times))
    if spread:
        out += ["Rows whose timing rounds (ms, in order) spread by over 10%; the fastest is reported: "
                + "; ".join(spread) + ".", ""]
    return out


def _cpu_speeds(results: dict) -> list[str]:
    """The same loop on each of the host's CPUs, pinned in turn, at the run's start and end
    (timing.cpu_loop_ms): on a host whose cores are shared, some CPUs are slow at any moment,
    and a launch-bound row runs at the speed of the CPU it was on."""
    parts = []
    for when, speeds in (results.get("cpu_loop_ms") or {}).items():
        if speeds:
            ms = list(speeds.values())
            slow = sum(v > 1.2 * min(ms) for v in ms)
            parts.append(f"at the {when} {min(ms):.0f} to {max(ms):.0f} ms, {slow} of {len(ms)} CPUs over 1.2x "
                         "the fastest")
    if not parts:
        return []
    return ["The same loop on each host CPU, pinned in turn: " + "; ".join(parts) + ".", ""]


def _kernels(results: dict, backends: list[str], labels: dict) -> list[str]:
    recs = [r for r in results["cases"] if r["group"] == "kernels" and r.get("status") == "done"]
    if not recs:
        return []
    smoke = results["config"].get("smoke")
    ref_names = sorted({n for r in recs for n in r.get("refs", {})})
    if smoke:
        header = ["kernel", "shape"] + [f"{labels[b]} check" for b in backends] + [f"{n} check" for n in ref_names]
        rows = [[r["name"], r["shape"]] + [check_cell(r["backends"].get(b)) for b in backends]
                + [check_cell(r["refs"].get(n)) for n in ref_names] for r in recs]
        return ["## Kernels (correctness)", ""] + _table(header, rows) + [""]
    # Extra ember rows (the matmul template alone): also as a percent of eager, i.e. of cuBLAS.
    variants = sorted({n for r in recs for n, rec in r.get("refs", {}).items() if rec.get("variant_of")})
    header = (["kernel", "shape", "unit"] + [labels[b] for b in backends] + ref_names
              + [f"{n} % of eager" for n in variants]
              + [f"{labels[b]} check" for b in backends if b != "eager"] + ["kernels (" + "/".join(backends) + ")"])
    rows = []
    for r in recs:
        unit = "GBs" if r.get("metric") == "GB/s" else "TFLOPs"
        rows.append([r["name"], r["shape"], r.get("metric") or ""]
                    + [value_cell(r["backends"].get(b), unit) for b in backends]
                    + [value_cell(r["refs"].get(n), unit) for n in ref_names]
                    + [_num((r["refs"].get(n) or {}).get("pct_eager"), ".0f") for n in variants]
                    + [check_cell(r["backends"].get(b)) for b in backends if b != "eager"]
                    + ["/".join(_num((r["backends"].get(b) or {}).get("kernels"), "d") for b in backends)])
    return (["## Kernels (GB/s or TFLOP/s, percent of the measured ceiling)", "",
             "Ceilings: memory-bound rows vs the d2d copy; matmul rows vs cuBLAS mm 8192^3; attention vs SDPA.",
             ""] + _table(header, rows) + [""])


def _problems(results: dict) -> list[str]:
    lines = []
    for r in results["cases"]:
        if r.get("status") == "skipped":
            lines.append(f"- skipped {r['name']}: {r.get('reason')}")
        elif r.get("status") == "error":
            lines.append(f"- {r['name']}: {r.get('exception')}")
        for name, rec in {**r.get("backends", {}), **r.get("refs", {})}.items():
            where = f" (dump: {rec['dump']})" if rec.get("dump") else ""
            if rec.get("nondeterministic"):
                lines.append(f"- {r['name']} / {name}: two eager calls differ by {_err(rec)} (> tol): "
                             "the reference is not deterministic")
            if rec.get("status") == "error":
                lines.append(f"- {r['name']} / {name}: {rec.get('exception')}{where}")
            elif rec.get("status") == "WRONG":
                lines.append(f"- {r['name']} / {name}: WRONG, error {_err(rec)} > tol {rec.get('tol'):.0e} "
                             f"(worst: {rec.get('worst')}){where}")
            if rec.get("mem_error"):
                lines.append(f"- {r['name']} / {name}: peak memory not measured: {rec['mem_error']}")
            if rec.get("mem_above_eager"):
                lines.append(f"- {r['name']} / {name}: peak memory above eager's: " + "; ".join(rec["mem_above_eager"]))
    return (["## Errors, wrong results, skipped cases, peak memory above eager", ""] + lines + [""]) if lines else []


PHASES = ("build", "first_call", "compile", "warm_compile", "check", "time", "profile", "memory", "cleanup")


def _time_spent(results: dict, backends: list[str], labels: dict) -> list[str]:
    """Where the run's wall time went: each phase's seconds (runner: `phase_s`) summed over the
    cases, per backend; the refs and variant rows (SDPA, template-only) in a column of their own,
    and building the inputs and freeing them after a case in the "case" column."""
    columns = {b: {} for b in backends}
    columns["other rows"], columns["case"] = {}, {}
    for r in results["cases"]:
        rows = [(b, rec) for b, rec in r.get("backends", {}).items() if b in columns]
        rows += [("other rows", rec) for rec in r.get("refs", {}).values()] + [("case", r)]
        for col, rec in rows:
            for name, secs in (rec.get("phase_s") or {}).items():
                columns[col][name] = columns[col].get(name, 0.0) + secs
    columns = {c: v for c, v in columns.items() if v}
    if not columns:
        return []
    names = [n for n in PHASES if any(n in v for v in columns.values())]
    names += sorted({n for v in columns.values() for n in v} - set(names))
    heads = [labels.get(c, c) for c in columns]
    rows = [[n] + [_num(v.get(n), ".1f") for v in columns.values()]
            + [f"{sum(v.get(n, 0.0) for v in columns.values()):.1f}"] for n in names]
    totals = [sum(v.values()) for v in columns.values()]
    phased = sum(totals)
    rows.append(["**total**"] + [f"{t:.1f}" for t in totals] + [f"{phased:.1f}"])
    whole, ceilings = results.get("wall_s"), results.get("ceilings_s") or 0.0
    intro = "compile includes the first call; warm_compile is the second compile, after a Dynamo reset."
    if whole:
        intro = (f"The whole run took {whole:.0f} s: the ceilings {ceilings:.1f} s, the phases below "
                 f"{phased:.1f} s, the rest {whole - ceilings - phased:.1f} s. " + intro)
    if results.get("gc_s") is not None:
        intro += (f" Python's garbage collector ran {results['gc_s']:.1f} s of the cases' time "
                  f"({results.get('gc_full', 0)} full collections).")
    return (["## Where the run's time went (s)", "", intro, ""]
            + _table(["phase"] + heads + ["total"], rows) + [""])


def markdown(results: dict) -> str:
    backends = results["config"]["backends"]
    labels = results["config"]["labels"]
    lines = _header(results) + _models(results, backends, labels) + _cpu_speeds(results)
    lines += _kernels(results, backends, labels)
    lines += _problems(results) + _time_spent(results, backends, labels)
    lines += ["Notes:", ""] + [f"- {n}" for n in NOTES] + [""]
    return "\n".join(lines)
