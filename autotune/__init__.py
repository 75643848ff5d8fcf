"""The autotuner and its persistent cache; codegen's Chooser (codegen/choice.py) calls it per op.

    key = TuningKey.make(kernel_hash, shapes, dtypes, device, pipeline_fingerprint)
    choice = tune(key, candidates, cache=TuningCache(options.cache_dir))

- keys.py: TuningKey (kernel source hash, bucketed shapes, dtypes, device name, Triton and torch
  versions, pipeline fingerprint) and its stable sha256 digest.
- cache.py: TuningCache, one JSON file per key under <cache_dir>/tuning/, atomic writes, damaged or
  foreign files reported once and rebuilt; export/import of tuning/ and code/ as an archive.
- archive.py: reading untrusted .tar.gz/.zip archives safely.
- tuner.py: tune(): cache hit, else the heuristic choice on the CPU interpreter, else timing
  (do_bench) of every candidate, library ones included, within a time budget.
Pointwise and reduction kernels are not raced: their launch configurations come from the fixed
heuristic in codegen/launch_heuristics.py. See docs/autotune.md.
"""
from .archive import ArchiveError
from .cache import Entry, ImportReport, TuningCache
from .keys import CPU_INTERPRETER, TuningKey, device_name, shape_bucket
from .tuner import (STATS, Candidate, Choice, TuningStats, cached_choice, default_timer, do_bench_median,
                    tune)

__all__ = ["ArchiveError", "Entry", "ImportReport", "TuningCache", "CPU_INTERPRETER", "TuningKey",
           "device_name", "shape_bucket", "STATS", "Candidate", "Choice", "TuningStats",
           "cached_choice", "default_timer", "do_bench_median", "tune"]
