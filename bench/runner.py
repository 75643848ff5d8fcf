"""One case across every backend: compile, check against eager, then time, count kernels, peak memory.

Order per backend: torch._dynamo.reset(), compile + first call (the cold compile time), again after
a reset (the warm compile time: Dynamo's caches are gone but the on-disk Inductor/Triton/ember
caches written by the cold compile are still there), compare the outputs with eager's, and only
then time with do_bench, profile one call and (model cases) measure the peak memory of one more
call. A result over tolerance is WRONG: its time is not measured (null in the JSON) and its error
is reported. Any exception is caught and recorded, so one failing backend or case never stops the
suite.
"""
from __future__ import annotations

import contextlib
import gc
import math
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch

from .backends import Backend, extern_summary, settle_dumps
from .check import compare, tolerance
from .memory import KEYS, compare as compare_memory, mib, peak_memory, release_cublas_workspaces
from .timing import Phases, count_kernels, host_loop_ms, wall
from .workload import Config, Skip, Workload


MODEL_WARMUP_MS = 1500
ROUND_WARMUP_MS = 25  # do_bench's default: a round after the first starts warm


def _free(device: str) -> None:
    # Only the GPU run holds enough memory to matter (80 GB, models up to ~1B parameters); a full
    # gc.collect costs ~0.1 s, which the smoke run's many tiny steps would feel.
    if device.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()


def _short(exc: BaseException, limit: int = 400) -> str:
    """One line naming the root cause: Dynamo wraps a backend's exception in BackendCompilerFailed
    (whose own message is just "backend='ember' raised:"), so follow the chain to the bottom."""
    root, seen = exc, set()
    while id(root) not in seen:
        seen.add(id(root))
        nxt = getattr(root, "inner_exception", None) or root.__cause__
        if not isinstance(nxt, BaseException):
            break
        root = nxt
    text = f"{type(root).__name__}: {' '.join(str(root).split())}"
    if root is not exc:
        text = f"{type(exc).__name__} <- {text}"
    return text if len(text) <= limit else text[:limit] + "..."


def _save_traceback(cfg: Config, case: str, who: str) -> str | None:
    if not cfg.errors_dir:
        return None
    path = Path(cfg.errors_dir) / f"{case}.{who}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(traceback.format_exc())
    return str(path)


def _first_call(work: Workload, b: Backend, cfg: Config, dump: bool = True):
    """Compile (if the backend compiles) and run once; returns (fn, outputs, seconds, dump).
    `dump=False`: no report folder (a warm compile: the cold one's report says what was compiled,
    and ember loads nothing from its graph cache while dumping, as a dump describes a compile)."""
    with (b.dumping() if dump else contextlib.nullcontext()) as dump:
        def go():
            fn = b.compile(work.target)
            return fn, work.results(fn)
        (fn, outs), secs = wall(go, cfg.device)
    return fn, outs, secs, dump


def _measure(rec: dict, work: Workload, fn: Callable, cfg: Config,
             held: Callable[[], dict] | None | bool, phase: Phases) -> None:
    """`held`: see memory.peak_memory; False: no memory figures for this backend (None each).
    `phase`: the row's phase clock (timing.Phases)."""
    if cfg.timer is not None:
        grads = work.params() if work.train else None
        whole = work.kind in ("model", "train")
        with phase("time"):
            if whole:
                _time_rounds(rec, lambda: work.call(fn), cfg, grads)
            else:
                rec["ms"] = cfg.timer(lambda: work.call(fn), grad_to_none=grads)
        secs = rec["ms"] * 1e-3
        if work.bytes:
            rec["GBs"] = work.bytes / secs / 1e9
        if work.flops:
            rec["TFLOPs"] = work.flops / secs / 1e12
    if cfg.profile:
        _no_grads(work)  # as in a timed repetition: no gradient accumulation kernels
        with phase("profile"):
            counts = count_kernels(lambda: work.call(fn), cfg.device)
        if counts:
            rec.update(counts)
    if work.kind in ("model", "train") and held is False:
        rec.update(dict.fromkeys(KEYS))
    elif work.kind in ("model", "train"):
        # A call of its own, after timing and profiling (see memory.py). Gradients are cleared
        # before it, so the call allocates them as a timed repetition does, and after it, so the
        # next backend starts from the same harness state (the parameters are shared).
        _no_grads(work)
        try:
            with phase("memory"):
                rec.update(peak_memory(lambda: work.call(fn), cfg.device, held))
        except Exception as exc:  # noqa: BLE001 - a failed measurement never costs the row's time
            rec["mem_error"] = _short(exc)
        finally:
            _no_grads(work)


def _time_rounds(rec: dict, call: Callable, cfg: Config, grads) -> None:
    """A whole model's time: the fastest of cfg.rounds do_bench medians, each round between two
    host probes (timing.host_loop_ms, ~20-50 ms each).

    Launch-bound rows (eager and TorchInductor on the transformers; eager ResNet-50) run at the
    host's speed, and that speed moves within seconds: three back-to-back medians of eager BERT
    in one process read 5.3, 6.8 and 10.3 ms. One median then says as much about the host as
    about the backend, and a speedup compares two host states. The fastest of a few rounds is
    each backend's time on the host at its best, as timeit takes the best of its repeats. Every
    round's median and probes stay in the JSON (`rounds`), and the report names the rows whose
    rounds spread by over 10%. A GPU-bound row's rounds agree to within noise."""
    rounds = []
    for i in range(max(1, cfg.rounds)):
        before = host_loop_ms()
        # The first round's long warm-up: whole models kept getting faster for about a second of
        # back-to-back calls on the H100 (GPT-2 eager: 13.2 -> 12.0 -> 8.2 ms in one process).
        # The later rounds follow it at once.
        ms = cfg.timer(call, grad_to_none=grads, warmup_ms=MODEL_WARMUP_MS if i == 0 else ROUND_WARMUP_MS)
        rounds.append({"ms": ms, "host_loop_ms": [round(before, 1), round(host_loop_ms(), 1)]})
    best = min(rounds, key=lambda r: r["ms"])
    rec["ms"], rec["host_loop_ms"], rec["rounds"] = best["ms"], best["host_loop_ms"], rounds


def _no_grads(work: Workload) -> None:
    for p in work.params():
        p.grad = None


def _check(rec: dict, work: Workload, b: Backend, fn: Callable, outs, ref) -> None:
    """Sets rec's status, err and worst: outs (the first call's) against eager's reference."""
    if ref is None:
        # Eager is the reference; its own check is run-to-run: a second call must agree
        # with the first, or every comparison against it would be noise.
        rec["status"] = "reference"
        rec["err"], rec["worst"] = compare(work.results(fn), outs)
        if rec["err"] > rec["tol"]:
            rec["nondeterministic"] = True
        return
    err, where = compare(outs, ref)
    if b.compiles:
        # The first call may run differently from the rest (ember runs its wrapper then and
        # replays a captured CUDA graph from the second call on): check a third call too, and
        # report the worse of the two.
        work.results(fn)
        later, where_later = compare(work.results(fn), ref)
        if later > err:
            err, where = later, f"{where_later} (third call)"
    rec["err"] = err
    rec["worst"] = where
    rec["status"] = "ok" if err <= rec["tol"] else "WRONG"


def run_backend(work: Workload, b: Backend, ref, cfg: Config, case: str, fn_override=None):
    """Returns (record, outputs). outputs is only kept for eager (it becomes the reference)."""
    rec: dict[str, Any] = {"status": None, "err": None, "tol": tolerance(cfg.dtype, work.kind), "ms": None}
    outs = fn = None
    b.dumps.clear()
    t0 = time.perf_counter()
    phase = Phases(rec.setdefault("phase_s", {}))
    grad_ctx = contextlib.nullcontext() if work.train else torch.no_grad()
    try:
        with grad_ctx:
            torch._dynamo.reset()
            if fn_override is not None:  # an eager reference implementation (e.g. SDPA)
                fn = fn_override
                outs, _ = wall(lambda: work.results(fn), cfg.device)
            else:
                with phase("compile" if b.compiles else "first_call"):
                    fn, outs, secs, dump = _first_call(work, b, cfg)
                if b.compiles and cfg.timer is not None:
                    rec["compile_s"] = secs
                if dump is not None:
                    rec.update(extern_summary(dump) or {})
                if b.compiles and cfg.warm and work.kind != "kernel":
                    fn = outs = None
                    torch._dynamo.reset()
                    with phase("warm_compile"):
                        fn, outs, secs, _ = _first_call(work, b, cfg, dump=False)
                    if cfg.timer is not None:
                        rec["compile_s_warm"] = secs
            with phase("check"):
                _check(rec, work, b, fn, outs, ref)
            if ref is not None:
                outs = None
            if rec["status"] != "WRONG":
                _measure(rec, work, fn, cfg, b.held if b.measures_memory else False, phase)
    except Exception as exc:  # noqa: BLE001 - any failure is data, the suite goes on
        rec["status"] = "error"
        rec["exception"] = _short(exc)
        rec["traceback"] = _save_traceback(cfg, case, b.name if fn_override is None else "ref")
        rec["ms"] = None
        outs = None
    finally:
        fn = None
        cleanup = time.perf_counter()
        failed = rec["status"] in ("WRONG", "error") and cfg.errors_dir
        try:
            kept = settle_dumps(b, Path(cfg.errors_dir) / f"{case}.{b.name}.dump" if failed else None)
            if kept:
                rec["dump"] = kept
        except OSError as exc:  # keeping a dump is a convenience, never a reason to stop
            rec["dump_error"] = str(exc)
        torch._dynamo.reset()
        _free(cfg.device)
        # Whether the cuBLAS workspaces were freed for the next backend (memory.py: not while an
        # ember CUDA graph is alive); the absolute peaks of the rows after it are read with it.
        rec["cublas_workspaces_released"] = release_cublas_workspaces(cfg.device)
        rec["phase_s"]["cleanup"] = time.perf_counter() - cleanup
        rec["wall_s"] = time.perf_counter() - t0  # everything this backend cost the run
    return rec, (outs if ref is None else None)


def run_case(case, backends: list[Backend], cfg: Config, log: Callable[[str], None] = print) -> dict:
    """Build the case's inputs once, then run each backend (eager first) and its reference rows."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"name": case.name, "group": case.group, "backends": {}, "refs": {}}
    torch.manual_seed(0)
    phase = Phases(record.setdefault("phase_s", {}))
    try:
        with phase("build"):
            work = case.build(cfg)
    except Skip as exc:
        record.update(status="skipped", reason=str(exc))
        return record
    except Exception as exc:  # noqa: BLE001
        record.update(status="error", exception=_short(exc), traceback=_save_traceback(cfg, case.name, "build"))
        _free(cfg.device)
        return record
    record.update(status="done", shape=work.shape, dtype=str(cfg.dtype).replace("torch.", ""),
                  bytes=work.bytes, flops=work.flops, ceiling=work.ceiling,
                  metric="GB/s" if work.bytes else "TFLOP/s" if work.flops else None)
    ref = None
    for b in backends:
        rec, outs = run_backend(work, b, ref, cfg, case.name)
        if b.name == "eager":
            if outs is None:  # eager itself failed: nothing to compare against, stop here
                record["backends"][b.name] = rec
                record["status"] = "error"
                record["exception"] = f"eager failed: {rec.get('exception')}"
                break
            ref = outs
        record["backends"][b.name] = rec
        _speedup(record, rec)
        if b.name != "eager":  # the criterion is ember's peak against eager's: flag only ember
            compare_memory(record["backends"].get("eager"), rec, flag=b.name == "ember")
        log(line(b.label, rec, work))
    if ref is not None:
        eager = backends[0]
        for name, fn in work.refs.items():
            rec, _ = run_backend(work, eager, ref, cfg, f"{case.name}.{name}", fn_override=fn)
            record["refs"][name] = rec
            _speedup(record, rec)
            log(line(name, rec, work))
        ember = next((b for b in backends if b.name == "ember"), None)
        for name, extra in (work.variants.items() if ember is not None else ()):
            variant = Backend(ember.name, name, backend=ember.backend,
                              options={**(ember.options or {}), **extra}, reports=True)
            rec, _ = run_backend(work, variant, ref, cfg, f"{case.name}.{name}")
            rec["variant_of"] = "ember"
            record["refs"][name] = rec
            _speedup(record, rec)
            if rec.get("speedup"):
                rec["pct_eager"] = 100.0 * rec["speedup"]   # same work: eager's time over this one's
            log(line(name, rec, work))
    work = ref = None
    with phase("cleanup"):
        _free(cfg.device)
    record["wall_s"] = time.perf_counter() - t0
    return record


def _speedup(record: dict, rec: dict) -> None:
    base = record["backends"].get("eager", {}).get("ms")
    if base and rec.get("ms"):
        rec["speedup"] = base / rec["ms"]


def apply_ceilings(record: dict, ceilings: dict[str, float]) -> None:
    """Percent of the roofline each row reaches: GB/s over the measured copy bandwidth, TFLOP/s
    over measured cuBLAS (mm 8192^3), or over one of the case's reference rows."""
    key = record.get("ceiling")
    if not key:
        return
    value_key = "GBs" if record.get("metric") == "GB/s" else "TFLOPs"
    if key.startswith("ref:"):
        peak = record["refs"].get(key[4:], {}).get(value_key)
    else:
        peak = ceilings.get(key)
    record["ceiling_value"] = peak
    for rec in list(record["backends"].values()) + list(record["refs"].values()):
        if peak and rec.get(value_key):
            rec["pct_ceiling"] = 100.0 * rec[value_key] / peak


def line(label: str, rec: dict, work: Workload) -> str:
    """One console line per backend."""
    parts = [f"  {label:<16}"]
    status = rec.get("status")
    if status == "error":
        return parts[0] + f"ERROR  {rec.get('exception')}"
    if rec.get("err") is not None and status != "reference":
        err = rec["err"]
        parts.append(f"err {err:.1e}" if math.isfinite(err) else "err inf")
        parts.append("ok   " if status == "ok" else "WRONG")
    else:
        parts.append(f"{'(reference)':<18}")
    if rec.get("ms") is not None:
        parts.append(f"{rec['ms']:8.3f} ms")
        if rec.get("speedup") and rec.get("status") != "reference":
            parts.append(f"x{rec['speedup']:.2f}")
        if rec.get("GBs"):
            parts.append(f"{rec['GBs']:7.0f} GB/s")
        if rec.get("TFLOPs"):
            parts.append(f"{rec['TFLOPs']:6.1f} TFLOP/s")
    if rec.get("compile_s") is not None:
        warm = rec.get("compile_s_warm")
        parts.append(f"compile {rec['compile_s']:.1f}s" + (f" (warm {warm:.1f}s)" if warm is not None else ""))
    if rec.get("kernels") is not None:
        parts.append(f"{rec['kernels']} kernels")
    if rec.get("externs") is not None:
        parts.append(f"{rec['externs']} externs")
    if rec.get("choices"):  # which implementation ember's codegen chose (attention: template or SDPA)
        # A model makes the same choice for each of its layers: counted, so a line stays a line
        # (the JSON keeps every decision in order).
        counts = Counter(rec["choices"])
        parts.append("chose " + ", ".join(c if n == 1 else f"{c} x{n}" for c, n in counts.items()))
    if rec.get("mem_call_bytes") is not None:
        parts.append(f"peak +{mib(rec['mem_call_bytes'])} MiB")
    if rec.get("mem_above_eager"):
        parts.append("PEAK MEMORY ABOVE EAGER: " + "; ".join(rec["mem_above_eager"]))
    return " ".join(parts)
