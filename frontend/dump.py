"""The per-graph dump folder: `<dump_dir>/<graph name>/`.

    fx_graph.py        the post-AOT FX graph ember was given (for debugging a lowering)
    00.input.ir        the IR as lowered, before any pass
    <after each pass>  written by the passes' DumpIR instrument
    final.ir           the IR codegen compiled
    kernels/<name>.py  each generated kernel
    wrapper.py         the Python wrapper that launches them
    report.json        graph name, op and kernel counts, every extern and why, the pass records,
                       every fused region (its ops, operand and result counts, the bytes the
                       fuse cost model estimates it saves), and every pair
                       fuse left unfused with its reason (`fusion_rejected`), and the wrapper's
                       memory plan (`memory`: peak bytes with and without buffer reuse, buffers
                       allocated, buffers reused; null when nothing was compiled), and
                       every template choice (`autotune`: op, chosen implementation, whether
                       from the cache, timing or the heuristic, and the times measured)
    fusion.txt         the same fusion report as tables (frontend/fusion_report.py)

Every .ir file is canonical IR text that `ember.ir.parse` reads back to an equal graph. With no
dump dir configured every method is a no-op, so callers never check.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..atomic_io import write_text_atomic
from ..ir import print_graph
from .fusion_report import bytes_saved_of, fusion_text, rejected_of


def _record(rec: Any) -> dict:
    """A pass record (dataclass, object or dict) as JSON-able fields."""
    if isinstance(rec, dict):
        get = rec.get
    else:
        get = lambda k, d=None: getattr(rec, k, d)  # noqa: E731
    return {"name": get("name"), "changed": get("changed"), "stats": get("stats") or {},
            "seconds": get("seconds")}


def externs_of(graph, compiled=None) -> list[dict]:
    """The ATen calls the wrapper makes: the graph's externs, less those codegen ran as its own
    kernels (an SDPA extern for which the attention template was chosen)."""
    if compiled is not None and hasattr(compiled, "externs"):
        return [{"target": e["target"], "reason": e.get("reason", "")}
                for e in compiled.externs if e.get("op") == "extern"]
    return [{"target": op.attrs["target"], "reason": op.attrs.get("reason", "")}
            for op in graph.ops if op.name == "extern"]


def regions_of(graph) -> list[dict]:
    """The fusion report: one entry per `fused` region, with its ops in body order."""
    return [{"name": op.attrs.get("name", ""), "ops": [b.name for b in op.attrs["body"].ops],
             "inputs": len(op.inputs), "outputs": len(op.results)}
            for op in graph.ops if op.name == "fused"]


class Dump:
    def __init__(self, dump_dir: str | None, name: str):
        self.enabled = bool(dump_dir)
        self.path = Path(dump_dir or ".") / name
        if self.enabled:
            self.path.mkdir(parents=True, exist_ok=True)

    def write_text(self, rel: str, text: str) -> None:
        if not self.enabled:
            return
        write_text_atomic(self.path / rel, text)  # never leave a half-written file behind

    def write_ir(self, rel: str, graph) -> None:
        if self.enabled:
            self.write_text(rel, print_graph(graph))

    def write_code(self, compiled) -> None:
        if not self.enabled:
            return
        for kname, source in (getattr(compiled, "kernels", None) or {}).items():
            self.write_text(f"kernels/{kname}.py", source)
        self.write_text("wrapper.py", getattr(compiled, "wrapper_source", "") or "")

    def write_report(self, *, name: str, graph=None, input_ops: int | None = None, compiled=None,
                     records=(), skipped=(), fallback: str | None = None, seconds: float = 0.0) -> None:
        if not self.enabled:
            return
        regions = regions_of(graph) if graph is not None else []
        saved = bytes_saved_of(records)
        for r in regions:
            r["bytes_saved"] = saved.get(r["name"])  # the fuse cost model's estimate
        rejected = rejected_of(records)
        report = {
            "graph": name,
            "fallback": fallback,  # why the graph ran eagerly, or null
            "device": graph.device if graph is not None else None,
            "symbols": [str(s) for s in graph.symbols] if graph is not None else [],
            "op_count": len(graph.ops) if graph is not None else 0,
            "input_op_count": input_ops,
            "kernel_count": getattr(compiled, "num_kernels", 0) if compiled is not None else 0,
            "memory": getattr(compiled, "memory", None),
            "autotune": getattr(compiled, "autotune", []) if compiled is not None else [],
            # Whether calls replay a captured CUDA graph, or why not (codegen/cuda_graphs.py).
            "cuda_graphs": getattr(compiled, "cuda_graphs_status", None),
            "externs": externs_of(graph, compiled) if graph is not None else [],
            "fusion": regions,
            "fusion_rejected": rejected,
            "passes": [_record(r) for r in records],
            "skipped_nodes": list(skipped),
            "compile_seconds": round(seconds, 4),
        }
        self.write_text("report.json", json.dumps(report, indent=2, default=_json_default) + "\n")
        if graph is not None:  # a graph that fell back before the passes has nothing to report
            self.write_text("fusion.txt", fusion_text(name, regions, rejected))


def _json_default(o):
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    return str(o)
