"""The pass manager: run a pipeline of registered passes on a graph, in place.

For each pass, in order: skip it if the context disables it; call the instruments' before hooks;
run it; check it returned a PassResult; run the verifier (ctx.verify); record name, changed,
stats, details and seconds; call the after hooks. A pass that raises, returns something else, or leaves a
graph the verifier rejects stops the pipeline with PassFailedError, which names the pass and the
cause, points at a reproducer file, and puts the caller's graph back as it was (so the caller can
fall back, e.g. to eager), with a copy in `err.input_graph`.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gc_pause import gc_paused
from ..ir import Graph, VerificationError, print_graph, verify
from .context import _CURRENT, PassContext
from .pipeline_text import PassSpec, format_pipeline, parse_pipeline
from .registry import PassInfo, PassResult, check_options, get_pass
from .reproducer import default_reproducer_dir, write_reproducer


@dataclass
class PassRecord:
    name: str
    changed: bool
    stats: dict[str, int | float]
    seconds: float
    ir_after: str | None = None
    index: int = 0  # position in the pipeline, from 1 (the dump's NN)
    options: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False  # disabled by the PassContext
    details: dict[str, Any] = field(default_factory=dict)  # the pass's PassResult.details


@dataclass
class PipelineReport:
    records: list[PassRecord]
    graph: Graph
    pipeline: str
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.records)

    def __getitem__(self, name: str) -> PassRecord:
        """The (first) record of the pass called `name`."""
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"no pass {name!r} in pipeline {self.pipeline!r}")

    def summary(self) -> str:
        lines = []
        for r in self.records:
            if r.skipped:
                lines.append(f"{r.index:02d} {r.name}: disabled")
                continue
            stats = ", ".join(f"{k}={v}" for k, v in sorted(r.stats.items()))
            state = "changed" if r.changed else "unchanged"
            lines.append(f"{r.index:02d} {r.name}: {state} in {r.seconds * 1e3:.2f} ms"
                         + (f" ({stats})" if stats else ""))
        return "\n".join(lines)


class PassFailedError(RuntimeError):
    """A pass raised, returned something other than a PassResult, or broke the graph."""

    def __init__(self, message: str, *, pass_name: str, index: int, pipeline: str,
                 reproducer: Path | None, input_graph: Graph, pass_input: Graph):
        super().__init__(message)
        self.pass_name = pass_name
        self.index = index
        self.pipeline = pipeline
        self.reproducer = reproducer  # None if it could not be written
        self.input_graph = input_graph  # the pipeline's input, untouched
        self.pass_input = pass_input  # what the failing pass was given


def _resolve(pipeline: str | list[PassSpec]) -> list[tuple[PassSpec, PassInfo, dict[str, Any]]]:
    specs = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    out = []
    for spec in specs:
        if not isinstance(spec, PassSpec):
            raise TypeError(f"a pipeline is a string or a list of PassSpec, got {spec!r}")
        info = get_pass(spec.name)
        out.append((spec, info, check_options(info, spec.options)))
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, VerificationError):
        return f"the verifier rejects the graph it produced: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _snapshot(g: Graph) -> Graph:
    """g.copy() with the cyclic GC paused: copying allocates an Op/Value cycle per op, which
    triggers collections that scan the whole heap and cost ~5x the copy itself on big graphs.
    (frontend/compile.py pauses it for a whole compile; run_pipeline may also be called alone.)"""
    with gc_paused():
        return g.copy()


def _restore(g: Graph, src: Graph) -> None:
    """Make `g` hold `src`'s contents (callers keep their reference to `g`)."""
    g.name, g.device = src.name, src.device
    g.symbols, g.inputs, g.ops, g.outputs = list(src.symbols), list(src.inputs), list(src.ops), list(src.outputs)


def run_pipeline(g: Graph, pipeline: str | list[PassSpec], ctx: PassContext | None = None) -> PipelineReport:
    """Run `pipeline` on `g` in place under `ctx` (default: the current PassContext)."""
    ctx = ctx if ctx is not None else PassContext.current()
    steps = _resolve(pipeline)
    for name in ctx.disabled:
        get_pass(name)  # a misspelt disabled name would otherwise silently disable nothing
    text = format_pipeline([s for s, _, _ in steps])
    if ctx.verify:
        try:
            verify(g)
        except VerificationError as e:
            raise VerificationError(f"the input of pipeline {text!r} is invalid (the producer of "
                                    f"the graph is at fault, not a pass): {e}") from None
    token = _CURRENT.set(ctx) if _CURRENT.get() is not ctx else None
    try:
        return _run(g, steps, text, ctx)
    finally:
        if token is not None:
            _CURRENT.reset(token)


def _run(g: Graph, steps, text: str, ctx: PassContext) -> PipelineReport:
    original = _snapshot(g)
    start = time.perf_counter()
    records: list[PassRecord] = []
    for inst in ctx.instruments:
        inst.before_pipeline(g, [s for s, _, _ in steps])
    for index, (spec, info, opts) in enumerate(steps, start=1):
        if spec.name in ctx.disabled:
            records.append(PassRecord(spec.name, False, {}, 0.0, None, index, opts, skipped=True))
            continue
        pass_input = _snapshot(g)  # the reproducer's IR, if this pass fails
        for inst in ctx.instruments:
            inst.before_pass(g, spec, index)
        saved = ctx._set_pass(spec.name, opts)
        try:
            t0 = time.perf_counter()
            result = info.fn(g, ctx)
            seconds = time.perf_counter() - t0
            if not isinstance(result, PassResult):
                raise TypeError(f"pass {spec.name!r} returned {result!r}; a pass must return "
                                "PassResult(changed=..., stats=...)")
            if ctx.verify:
                verify(g)
        except Exception as exc:  # noqa: BLE001 - every failure of a pass is reported the same way
            err = _failure(g, spec, index, len(steps), text, exc, original, pass_input, ctx)
            raise err from exc
        finally:
            ctx._restore_pass(saved)
        want_ir = ctx.keep_ir or any(inst.wants_ir(spec.name) for inst in ctx.instruments)
        record = PassRecord(spec.name, result.changed, dict(result.stats), seconds,
                            print_graph(g) if want_ir else None, index, opts, details=dict(result.details))
        records.append(record)
        for inst in ctx.instruments:
            inst.after_pass(g, record)
    report = PipelineReport(records, g, text, time.perf_counter() - start)
    for inst in ctx.instruments:
        inst.after_pipeline(report)
    return report


def _failure(g: Graph, spec: PassSpec, index: int, total: int, text: str, exc: Exception,
             original: Graph, pass_input: Graph, ctx: PassContext) -> PassFailedError:
    cause = _describe(exc)
    directory = ctx.reproducer_dir or default_reproducer_dir(ctx.options)
    try:
        path: Path | None = write_reproducer(directory, pass_input.name, print_graph(pass_input),
                                             text, str(spec), cause)
        where = f"reproducer (the failing pass's input IR): {path}"
    except Exception as write_exc:  # noqa: BLE001 - the pass's failure matters more
        path, where = None, f"no reproducer: writing to {directory} failed: {write_exc}"
    _restore(g, original)
    message = (f"pass {spec.name!r} (#{index} of {total} in pipeline {text!r}) failed: {cause}\n"
               f"{where}\nthe graph given to run_pipeline is restored to its input")
    err = PassFailedError(message, pass_name=spec.name, index=index, pipeline=text, reproducer=path,
                          input_graph=original.copy(), pass_input=pass_input)
    for inst in ctx.instruments:
        try:
            inst.on_failure(g, spec, index, err)
        except Exception:  # noqa: BLE001 - do not let an instrument hide the pass's error
            note = getattr(err, "add_note", None)
            if note:
                note(f"instrument {type(inst).__name__}.on_failure raised:\n{traceback.format_exc()}")
    return err
