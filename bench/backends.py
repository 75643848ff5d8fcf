"""The backends a case runs under, and what ember's dumps say about a compile.

eager is the reference. "inductor" is torch.compile's default (mode=None). "aot_eager" (Dynamo +
AOTAutograd, no codegen) is there for checking the harness itself on CPU with --backends; the smoke
run leaves TorchInductor out because on CPU it compiles C++, which alone would blow its budget.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch


@dataclass
class Backend:
    name: str                       # key in the results ("eager", "inductor", "ember", "aot_eager")
    label: str                      # column header
    backend: str | Callable | None = None  # torch.compile backend; None = run eagerly
    options: dict | None = None     # torch.compile(options=...)
    reports: bool = False           # reads ember's report.json dumps (extern counts)
    mode: str | None = None         # torch.compile(mode=...): "reduce-overhead" for Inductor's CUDA graphs
    # Memory the backend keeps between calls that the allocator's peak does not show (memory.py).
    held: Callable[[], dict] | None = None
    # False: its peak memory is not measured (its CUDA graph pools are invisible to the
    # allocator's peak and it offers no `held`: a figure would understate it).
    measures_memory: bool = True
    # Dump folders made since the runner last took them (see runner.run_backend: kept for a wrong
    # or failed result, deleted otherwise).
    dumps: list = field(default_factory=list)

    @property
    def compiles(self) -> bool:
        return self.backend is not None

    def compile(self, target: Any) -> Callable:
        if not self.compiles:
            return target
        kwargs: dict[str, Any] = {}
        if self.backend != "inductor":
            kwargs["backend"] = self.backend
        if self.options:
            kwargs["options"] = self.options
        if self.mode:
            kwargs["mode"] = self.mode
        return torch.compile(target, **kwargs)

    @contextlib.contextmanager
    def dumping(self) -> Iterator[Path | None]:
        """For ember: point EMBER_DUMP_DIR at a fresh temp dir for the duration of a compile (the
        first call, where Dynamo actually compiles, and the backward, compiled at first backward).
        """
        if not self.reports:
            yield None
            return
        path = Path(tempfile.mkdtemp(prefix="ember-bench-dump-"))
        self.dumps.append(path)
        old = os.environ.get("EMBER_DUMP_DIR")
        os.environ["EMBER_DUMP_DIR"] = str(path)
        try:
            yield path
        finally:
            if old is None:
                os.environ.pop("EMBER_DUMP_DIR", None)
            else:
                os.environ["EMBER_DUMP_DIR"] = old


def extern_summary(dump: Path | None) -> dict | None:
    """Externs over every compiled graph (forward and backward) in one dump folder.

    Each graph's report.json has an "externs" list; entries name their ATen op under "target"
    (or "op"). Returns the count, the count per op, and how many graphs were reported; plus, when
    codegen chose implementations (report.json's "autotune": the attention template's config or
    the library), `choices`: "op=choice" per decision, e.g. "attention=flash_128x64_w8_s3".
    """
    if dump is None:
        return None
    reports = sorted(dump.rglob("report.json"))
    ops: Counter = Counter()
    total = 0
    choices: list[str] = []
    for path in reports:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        externs = report.get("externs", [])
        total += len(externs)
        for e in externs:
            ops[str(e.get("target", e.get("op", "?"))) if isinstance(e, dict) else str(e)] += 1
        choices += [f"{d.get('op')}={d.get('choice')}" for d in report.get("autotune", []) if isinstance(d, dict)]
    out = {"externs": total, "extern_ops": dict(ops.most_common()), "graphs": len(reports)}
    if choices:
        out["choices"] = choices
    return out


def settle_dumps(b: Backend, keep_as: Path | None) -> str | None:
    """Delete the backend's dump folders, except that with keep_as the first one (the cold
    compile's) moves there, so a wrong or failed ember compile can be inspected afterwards."""
    kept = None
    for i, path in enumerate(b.dumps):
        if i == 0 and keep_as is not None and path.exists():
            keep_as.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(keep_as, ignore_errors=True)
            shutil.move(str(path), str(keep_as))
            kept = str(keep_as)
        else:
            shutil.rmtree(path, ignore_errors=True)
    b.dumps.clear()
    return kept


def _ember_held_bytes() -> dict:
    from ember.codegen.cuda_graphs import held_bytes
    return held_bytes()


def make_backends(names: list[str], ember_options: dict | None = None) -> list[Backend]:
    table = {
        "eager": Backend("eager", "eager"),
        "inductor": Backend("inductor", "TorchInductor", backend="inductor"),
        "aot_eager": Backend("aot_eager", "aot_eager", backend="aot_eager"),
        # Inductor with its CUDA graphs (cudagraph trees): opt-in, next to ember's, which are on
        # by default.
        "inductor_cg": Backend("inductor_cg", "TorchInductor reduce-overhead", backend="inductor",
                               mode="reduce-overhead", measures_memory=False),
        "ember": Backend("ember", "ember", backend="ember", options=ember_options, reports=True,
                         held=_ember_held_bytes),
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; valid: {sorted(table)}")
    if "eager" not in names:
        names = ["eager"] + names  # eager is the reference every check compares against
    return [table[n] for n in sorted(set(names), key=names.index)]
