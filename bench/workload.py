"""What a case hands the runner: something to compile, its inputs (built once), and how to read
back the tensors that are compared against eager.

Inference workloads run under torch.no_grad() (the runner enters it). A training workload runs a
forward and a backward step; its compared results are the loss and every parameter's gradient.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

Named = list[tuple[str, torch.Tensor]]


@dataclass
class Case:
    name: str
    group: str                                    # "models" | "train" | "kernels"
    build: Callable[["Config"], "Workload"]       # may raise Skip


class Skip(Exception):
    """A case that cannot run here (a library is not installed); the reason is reported."""


@dataclass
class Config:
    device: str = "cuda"
    dtype: torch.dtype = torch.bfloat16
    smoke: bool = False                           # tiny shapes, CPU, correctness only
    batch: dict[str, int] = field(default_factory=dict)   # per-case batch overrides ("*": all)
    timer: Callable | None = None                 # None: no timing (smoke)
    warm: bool = True                             # second compile after torch._dynamo.reset()
    profile: bool = True                          # count kernels with torch.profiler
    rounds: int = 3                               # do_bench medians per model row; the fastest counts
    errors_dir: str | None = None                 # full tracebacks go here

    def batch_for(self, case: str, default: int) -> int:
        return self.batch.get(case, self.batch.get("*", default))


@dataclass
class Workload:
    target: Any                                   # nn.Module or function handed to torch.compile
    args: tuple
    kwargs: dict = field(default_factory=dict)
    # Output of one call -> named tensors to compare (inference) or the loss (training).
    pick: Callable[[Any], Any] = lambda out: [("out", out)]
    train: bool = False
    kind: str = "kernel"                          # "kernel" | "model" | "train": picks tolerance
    shape: str = ""                               # human-readable problem size for the report
    dtype: torch.dtype = torch.float32
    # Roofline accounting (kernels): bytes read+written once, or FLOPs, per call.
    bytes: int | None = None
    flops: int | None = None
    # Which measured ceiling a row's GB/s or TFLOP/s is a percentage of: "copy_GBs", "mm_TFLOPs",
    # or "ref:<name>" for one of this case's own reference rows (attention: SDPA).
    ceiling: str | None = None
    # Eager-only reference implementations (e.g. SDPA next to naive attention): same inputs,
    # checked against eager and timed, reported as extra rows.
    refs: dict[str, Callable] = field(default_factory=dict)
    # Extra ember rows: row name -> ember options merged over the run's (matmul rows: the
    # template alone, {"matmul_library": False}). Checked and timed like ember, reported as
    # extra rows next to the refs, with their percent of eager (cuBLAS for a matmul) as pct_eager.
    variants: dict[str, dict] = field(default_factory=dict)

    def params(self) -> list[torch.Tensor]:
        if isinstance(self.target, torch.nn.Module):
            return [p for p in self.target.parameters() if p.requires_grad]
        return []

    def call(self, fn: Callable) -> Any:
        """One timed step: what do_bench repeats and the profiler records."""
        out = fn(*self.args, **self.kwargs)
        if self.train:
            self.pick(out).backward()
        return out

    def results(self, fn: Callable) -> Named:
        """One step whose outputs are compared; grads are cleared first so they do not accumulate."""
        if not self.train:
            return [(n, t.detach()) for n, t in self.pick(fn(*self.args, **self.kwargs))]
        named = [(n, p) for n, p in self.target.named_parameters() if p.requires_grad]
        for _, p in named:
            p.grad = None
        loss = self.pick(fn(*self.args, **self.kwargs))
        loss.backward()
        got = [("loss", loss.detach())]
        # A missing gradient becomes an empty tensor: equal to eager's only if eager's is missing too.
        got += [(f"grad:{n}", p.grad.detach().clone() if p.grad is not None else torch.empty(0))
                for n, p in named]
        for _, p in named:
            p.grad = None
        return got
