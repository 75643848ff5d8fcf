"""Reproducer files: when a pass fails, the IR it was given plus the pipeline, in one `.ir` file.

    // ember reproducer: ember.passes.run_reproducer("<this file>") re-runs the failing pass
    // pipeline: canonicalize,cse,my-pass{k=1},dce
    // failing pass: my-pass{k=1}
    // cause: ValueError: ...
    func @forward(...) ... {

The `//` lines are comments to the IR parser, so the file is also a plain IR file
(``python -m ember ir check FILE`` works on it). File names are content-addressed: the same
failure on the same input overwrites one file instead of piling up copies.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..atomic_io import write_text_atomic
from ..ir import Graph, parse

_HEADER = re.compile(r"^//\s*(pipeline|failing pass|cause):\s?(.*)$")


def default_reproducer_dir(options=None) -> Path:
    if options is None:
        from ..options import Options
        options = Options()
    return Path(options.cache_dir) / "reproducers"


def write_reproducer(directory: str | os.PathLike, graph_name: str, ir_text: str, pipeline: str,
                     failing_pass: str, cause: str) -> Path:
    cause_line = " | ".join(cause.strip().splitlines()) or "(no message)"
    text = (f"// ember reproducer: ember.passes.run_reproducer(path) re-runs the failing pass\n"
            f"// pipeline: {pipeline}\n"
            f"// failing pass: {failing_pass}\n"
            f"// cause: {cause_line}\n"
            f"{ir_text}")
    digest = hashlib.sha256(f"{failing_pass}\n{ir_text}".encode()).hexdigest()[:12]
    safe_pass = re.sub(r"[^A-Za-z0-9_.\-]", "_", failing_pass.split("{")[0])
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{graph_name}.{safe_pass}.{digest}.ir"
    # Atomic: a reader (or a concurrent failure in another process) never sees half a file.
    return write_text_atomic(path, text)


@dataclass
class Reproducer:
    graph: Graph
    pipeline: str
    failing_pass: str
    cause: str


def read_reproducer(path: str | os.PathLike) -> Reproducer:
    text = Path(path).read_text()
    fields = {"pipeline": "", "failing pass": "", "cause": ""}
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return Reproducer(parse(text), fields["pipeline"], fields["failing pass"], fields["cause"])


def run_reproducer(path: str | os.PathLike, ctx=None):
    """Re-run the failing pass of a reproducer on its IR (raises PassFailedError again if the
    bug is still there); returns the PipelineReport otherwise."""
    from .manager import run_pipeline
    rep = read_reproducer(path)
    return run_pipeline(rep.graph, rep.failing_pass, ctx)
