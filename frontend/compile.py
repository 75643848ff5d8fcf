"""One FX graph from AOTAutograd -> a compiled callable: lower, run the passes, generate code, dump.

    lowered  = fx_to_ir(gm)                     # IR graph + binding plan (externs for the rest)
    report   = run_pipeline(graph, pipeline)    # passes, verified after each one
    compiled = compile_graph(report.graph)      # Triton kernels + a Python wrapper
    return CompiledFxGraph(plan, compiled)      # AOT calls it with a boxed list of args

A graph that cannot become IR at all (see fx_to_ir.GraphUnsupported) runs eagerly as the FX
module itself; the dump's report.json says why.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import torch
from torch.utils._python_dispatch import _disable_current_modes

from ..codegen import compile_graph
from ..gc_pause import gc_paused
from ..passes import DumpIR, PassContext, run_pipeline
from ..options import Options
from .binding import BindingPlan
from .dump import Dump
from .fx_to_ir import GraphUnsupported, fx_to_ir

log = logging.getLogger(__name__)


class CompiledFxGraph:
    """What AOTAutograd runs. `_boxed_call`: AOT passes the argument list itself, not *args.
    It is an instance attribute on purpose: AOT wraps the backward in `torch._dynamo.disable`,
    whose functools.wraps copies the instance __dict__ (a class attribute would be lost)."""

    def __init__(self, name: str, plan: BindingPlan, compiled):
        self.name, self.plan, self.compiled = name, plan, compiled
        self._boxed_call = True

    def __call__(self, args: list) -> list:
        inputs, symbols = self.plan.bind(args)
        outputs = self.compiled(inputs, symbols)
        return self.plan.build_outputs(outputs, symbols)


class EagerFxGraph:
    """The fallback for graphs ember cannot express: run the FX module (ATen ops) as is."""

    def __init__(self, name: str, gm: torch.fx.GraphModule, reason: str):
        self.name, self.gm, self.reason = name, gm, reason
        self._boxed_call = True  # instance attribute: see CompiledFxGraph

    def __call__(self, args: list) -> Any:
        return self.gm(*args)


def _run_passes(graph, options: Options, dump: Dump):
    """-> (graph after the pipeline, pass records). DumpIR writes 00.input.ir and one file per pass."""
    instruments = [DumpIR(str(dump.path))] if dump.enabled else []
    report = run_pipeline(graph, options.pipeline, PassContext(verify=options.verify, instruments=instruments,
                                                               options=options))
    return report.graph, list(report.records)


def compile_fx_graph(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], options: Options,
                     name: str, caller_outputs: int | None = None):
    """Compile one post-AOT FX graph; returns a boxed callable (list of args -> list of outputs).
    `caller_outputs`: how many leading FX outputs reach the caller (None: all; the rest of a
    training forward's are saved for the backward)."""
    # AOTAutograd calls its compilers with its FakeTensorMode still active. ember works on IR, not
    # on fake tensors: a pass folding constants or codegen probing a tensor must get real ones.
    # The cyclic GC is paused for the compile (see gc_pause.py: it scanned the whole heap,
    # Dynamo's graphs included, for a fifth of the compile time); nothing here needs it.
    with _disable_current_modes(), gc_paused():
        return _compile(gm, options, name, caller_outputs)


def _compile(gm: torch.fx.GraphModule, options: Options, name: str, caller_outputs: int | None = None):
    start = time.perf_counter()
    dump = Dump(options.dump_dir, name)
    if dump.enabled:  # AOT's graph modules are lazy: `gm.code` would recompile (~0.05 s) for nothing
        dump.write_text("fx_graph.py", gm.code)
    try:
        lowered = fx_to_ir(gm, name, strict=options.strict_lowering)
    except GraphUnsupported as e:
        if options.strict_lowering:  # debugging: no silent fallback of any kind
            raise
        log.warning("ember: graph %s runs eagerly: %s", name, e)
        dump.write_report(name=name, fallback=str(e), seconds=time.perf_counter() - start)
        return EagerFxGraph(name, gm, str(e))
    graph = lowered.graph  # run_pipeline verifies it first (when options.verify)
    input_ops = len(graph.ops)
    final, records = _run_passes(graph, options, dump)
    seen = [x for i, (kind, x) in enumerate(lowered.plan.outputs)
            if kind == "ir" and (caller_outputs is None or i < caller_outputs)]
    compiled = compile_graph(final, options, copy_out=seen)
    dump.write_ir("final.ir", final)
    dump.write_code(compiled)
    dump.write_report(name=name, graph=final, input_ops=input_ops, compiled=compiled, records=records,
                      skipped=lowered.skipped, seconds=time.perf_counter() - start)
    return CompiledFxGraph(name, lowered.plan, compiled)
