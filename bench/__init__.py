"""ember's benchmark harness: `python bench/run.py` (see docs/benchmarks.md).

Not part of the installed `ember` package (pyproject lists packages explicitly); run.py puts the
repo root on sys.path so `bench.*` imports work from a plain checkout. One module per job:
  run.py      CLI: arguments, environment variables (caches, interpreter), the device gate
  suite.py    the run: ceilings, every case, anchors, outputs
  models.py   model cases (transformers / timm / torchvision, built from configs, random weights)
  kernels.py  kernel cases (memory-bound ops, matmuls, attention) and the measured ceilings
  workload.py what one case hands the runner: a target to compile, inputs, how to pick outputs
  backends.py eager / TorchInductor / ember (and aot_eager for smoke), ember dump reports
  runner.py   one case across backends: compile, check against eager, time, count kernels, memory
  timing.py   do_bench medians, compile timing, profiler kernel counts
  memory.py   peak CUDA memory of one call (models), ember's against eager's
  check.py    dtype-aware relative-error correctness checks
  env.py      environment record (GPU, versions, ember commit)
  anchors.py  the recorded H100 anchor figures, for side-by-side comparison
  report.py   JSON and Markdown output
  plots.py    matplotlib PNGs (Agg)
  gpu_kernels.py  `python -m bench.gpu_kernels CASE...`: each backend's busiest GPU kernels (why)
"""
