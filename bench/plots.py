"""PNG plots (matplotlib, Agg: no display on the GPU machine or in CI).

speedup.png: speedup over eager per model, one bar per compiler; a missing bar is labelled with why
(WRONG, error, not run), so a failed case never looks like a slow one.
roofline.png: percent of the measured ceiling per kernel row, one bar per backend.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _why_missing(rec: dict | None) -> str:
    if not rec:
        return "n/a"
    return {"WRONG": "WRONG", "error": "error"}.get(rec.get("status"), "n/a")


def _grouped(ax, names: list[str], series: dict[str, list], misses: dict[str, list[str]], fmt: str) -> None:
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [v or 0.0 for v in values], width, label=label)
        for x, v, why in zip(xs, values, misses[label]):
            if v is not None:
                ax.text(x, v, format(v, fmt), ha="center", va="bottom", fontsize=6)
            else:
                ax.text(x, 0.02, why, rotation=90, ha="center", va="bottom", fontsize=7, color="crimson",
                        transform=ax.get_xaxis_transform())
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.legend(fontsize=8)


def speedups(results: dict, path: Path) -> bool:
    recs = [r for r in results["cases"] if r["group"] != "kernels" and r.get("status") == "done"]
    compiled = [b for b in results["config"]["backends"] if b != "eager"]
    if not recs or not compiled:
        return False
    labels = results["config"]["labels"]
    names = [r["name"] for r in recs]
    series = {labels[b]: [r["backends"].get(b, {}).get("speedup") for r in recs] for b in compiled}
    misses = {labels[b]: [_why_missing(r["backends"].get(b)) for r in recs] for b in compiled}
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 2), 4))
    _grouped(ax, names, series, misses, ".2f")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_ylabel("speedup over eager (x)")
    ax.set_title(f"Models, {results['config']['dtype']}, {results['env'].get('gpu') or 'CPU'}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def roofline(results: dict, path: Path) -> bool:
    recs = [r for r in results["cases"] if r["group"] == "kernels" and r.get("status") == "done"]
    backends = results["config"]["backends"]
    if not recs:
        return False
    labels = results["config"]["labels"]
    names = [r["name"] for r in recs]
    series = {labels[b]: [r["backends"].get(b, {}).get("pct_ceiling") for r in recs] for b in backends}
    misses = {labels[b]: [_why_missing(r["backends"].get(b)) for r in recs] for b in backends}
    # Extra ember rows (the matmul template alone) get their own bars; "n/a" on other kernels.
    for n in sorted({n for r in recs for n, rec in r.get("refs", {}).items() if rec.get("variant_of")}):
        series[n] = [r["refs"].get(n, {}).get("pct_ceiling") for r in recs]
        misses[n] = [_why_missing(r["refs"].get(n)) for r in recs]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 2), 4))
    _grouped(ax, names, series, misses, ".0f")
    ax.axhline(100.0, color="gray", lw=0.8, ls="--")
    ax.set_ylabel("% of measured ceiling")
    ax.set_title("Kernels: GB/s vs d2d copy, matmul TFLOP/s vs cuBLAS 8192^3, attention vs SDPA", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
