"""The dump's fusion report: what `fuse` put in each region and why it left other pairs apart.

report.json gets `fusion` (regions, from the final graph) and `fusion_rejected` (from the
records' details of the fusion passes, `fuse` and `fuse_matmul`); fusion.txt shows both as text
tables. Rejected pairs name ops as the pass's *input* IR prints them ("%3 = exp"): each pass
re-numbers everything, so each entry also says which dump file (`ir`) those names are lines of.
"""
from __future__ import annotations

from typing import Any

FUSION_PASSES = ("fuse", "fuse_matmul")   # passes whose details hold `rejected` and `bytes_saved`


def _get(rec: Any, key: str, default=None):
    return rec.get(key, default) if isinstance(rec, dict) else getattr(rec, key, default)


def rejected_of(records) -> list[dict]:
    """Every fusion pass run's rejected pairs, each with the IR file its op names refer to: the
    file the DumpIR instrument wrote just before the pass ran (skipped passes write none)."""
    out: list[dict] = []
    before = "00.input.ir"
    for rec in records:
        if _get(rec, "skipped", False):
            continue
        if _get(rec, "name") in FUSION_PASSES:
            for r in (_get(rec, "details") or {}).get("rejected", []):
                out.append({**r, "ir": before})
        before = f"{_get(rec, 'index', 0):02d}.{_get(rec, 'name')}.ir"
    return out


def bytes_saved_of(records) -> dict[str, int]:
    """Region name -> the bytes its fusion saves by the pass's estimate (a later run of a pass
    replaces an earlier one's figures; fuse_matmul's regions are named apart from fuse's)."""
    by_pass: dict[str, dict[str, int]] = {}
    for rec in records:
        if _get(rec, "name") in FUSION_PASSES and not _get(rec, "skipped", False):
            by_pass[_get(rec, "name")] = dict((_get(rec, "details") or {}).get("bytes_saved", {}))
    return {k: v for saved in by_pass.values() for k, v in saved.items()}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]


def fusion_text(name: str, regions: list[dict], rejected: list[dict]) -> str:
    """fusion.txt: the regions (as in final.ir), then the rejected pairs with their reasons."""
    lines = [f"fusion report for {name}", "", f"fused regions ({len(regions)}, named as in final.ir):"]
    if regions:
        lines += _table(["region", "inputs", "outputs", "bytes saved", "ops"],
                        [[r["name"], str(r["inputs"]), str(r["outputs"]), str(r.get("bytes_saved", "?")),
                          ", ".join(r["ops"])] for r in regions])
    else:
        lines.append("  (none)")
    files = sorted({r["ir"] for r in rejected})
    lines += ["", f"rejected pairs ({len(rejected)}" + (f", named as in {', '.join(files)}" if files else "") + "):"]
    if rejected:
        lines += _table(["producer", "consumer", "reason", "detail"],
                        [[r["producer"], r["consumer"], r["reason"], r["detail"]] for r in rejected])
    else:
        lines.append("  (none)")
    return "\n".join(lines) + "\n"
