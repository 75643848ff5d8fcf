"""Instruments: hooks the pass manager calls around every pass (MLIR's pass instrumentation,
TVM's PassInstrument). They observe; they never change the graph.

Hooks, all optional:
  before_pipeline(g, specs)        once, before the first pass
  before_pass(g, spec, index)      index counts from 1 in the pipeline
  after_pass(g, record)            record: PassRecord (name, changed, stats, seconds, ir_after)
  on_failure(g, spec, index, err)  err: the PassFailedError about to be raised
  after_pipeline(report)           once, after the last pass succeeded
An instrument that wants the IR text after a pass says so in `wants_ir(name)`; the manager then
prints the graph once and hands the text to every instrument through `record.ir_after`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable

from ..ir import Graph, print_graph

if TYPE_CHECKING:
    from .manager import PassFailedError, PassRecord, PipelineReport
    from .pipeline_text import PassSpec


class Instrument:
    def wants_ir(self, name: str) -> bool:
        return False

    def before_pipeline(self, g: Graph, specs: "list[PassSpec]") -> None:
        pass

    def before_pass(self, g: Graph, spec: "PassSpec", index: int) -> None:
        pass

    def after_pass(self, g: Graph, record: "PassRecord") -> None:
        pass

    def on_failure(self, g: Graph, spec: "PassSpec", index: int, error: "PassFailedError") -> None:
        pass

    def after_pipeline(self, report: "PipelineReport") -> None:
        pass


class PrintAfter(Instrument):
    """Print the IR after the named passes ("all", one name, or a tuple of names).

    only_if_changed=True is MLIR's --print-ir-after-change: quiet for passes that changed nothing.
    `stream` defaults to sys.stderr as it is when printing (so pytest's capture sees it).
    """

    def __init__(self, passes: str | Iterable[str] = "all", only_if_changed: bool = False,
                 stream: IO[str] | None = None):
        self.passes = passes if passes == "all" else ((passes,) if isinstance(passes, str) else tuple(passes))
        self.only_if_changed = only_if_changed
        self.stream = stream

    def wants_ir(self, name: str) -> bool:
        return self.passes == "all" or name in self.passes

    def after_pass(self, g: Graph, record: "PassRecord") -> None:
        if not self.wants_ir(record.name) or (self.only_if_changed and not record.changed):
            return
        out = self.stream or sys.stderr
        note = "" if record.changed else " (no change)"
        out.write(f"// ----- IR after {record.name}{note} ----- //\n{record.ir_after}")
        out.flush()


class DumpIR(Instrument):
    """Write ``00.input.ir`` before the first pass and ``NN.<pass>.ir`` after pass NN.

    Each file is exactly the printer's text (after one ``//`` comment line), so ``ember.ir.parse``
    reads it back. Use one DumpIR (one directory) per graph: file names repeat across graphs.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.files: list[Path] = []

    def wants_ir(self, name: str) -> bool:
        return True

    def _write(self, filename: str, comment: str, text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / filename
        path.write_text(f"// {comment}\n{text}")
        self.files.append(path)

    def before_pipeline(self, g: Graph, specs: "list[PassSpec]") -> None:
        from .pipeline_text import format_pipeline
        self._write("00.input.ir", f"input of pipeline: {format_pipeline(specs)}", print_graph(g))

    def after_pass(self, g: Graph, record: "PassRecord") -> None:
        state = "changed" if record.changed else "unchanged"
        self._write(f"{record.index:02d}.{record.name}.ir", f"after pass {record.name} ({state})",
                    record.ir_after or print_graph(g))


class PassTiming(Instrument):
    """Collect wall time per pass; `summary()` renders a table, slowest first."""

    def __init__(self):
        self.timings: list[tuple[str, float]] = []

    def after_pass(self, g: Graph, record: "PassRecord") -> None:
        self.timings.append((record.name, record.seconds))

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, s in self.timings:
            out[name] = out.get(name, 0.0) + s
        return out

    def summary(self) -> str:
        totals = sorted(self.totals().items(), key=lambda kv: -kv[1])
        total = sum(s for _, s in totals)
        width = max([len("pass")] + [len(n) for n, _ in totals])
        lines = [f"{'pass':<{width}}  {'seconds':>10}  {'%':>6}"]
        for name, s in totals:
            pct = 100.0 * s / total if total else 0.0
            lines.append(f"{name:<{width}}  {s:>10.6f}  {pct:>6.1f}")
        lines.append(f"{'total':<{width}}  {total:>10.6f}  {100.0 if total else 0.0:>6.1f}")
        return "\n".join(lines)
