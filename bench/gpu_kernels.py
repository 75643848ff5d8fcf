"""Where each backend's GPU time goes: the busiest kernels of one model call, eager vs ember vs
TorchInductor, from torch.profiler (CUDA activity only, 5 calls after 3 warm-up calls).

    python -m bench.gpu_kernels gpt2 bert-base resnet50 [--top N]

For each backend it prints the GPU busy time per call (the sum of kernel times: what the model
costs when launches are not the bottleneck), kernels per call, and the top 12 kernels. The
harness's timings (bench/run.py) stay the figures of record; this is the tool that says why.
Run it as a module from the repo root (a script run would put bench/ first on sys.path, where
bench/kernels.py shadows the `kernels` package some model libraries import).
"""
from __future__ import annotations

import contextlib
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from . import models
from .workload import Config

CASES = {"gpt2": models.gpt2, "gpt2-kv": models.gpt2_kv, "bert-base": models.bert, "llama-1b-ish": models.llama,
         "vit_base_patch16_224": models.vit, "resnet50": models.resnet50,
         "convnext_tiny": models.convnext, "gpt2-train": models.gpt2_train}
CALLS, WARMUP, TOP = 5, 3, 12


def profile_case(name: str, cfg: Config, top: int = TOP) -> None:
    torch._dynamo.reset()
    w = CASES[name](cfg)
    backends = {"eager": w.target, "ember": torch.compile(w.target, backend="ember"),
                "inductor": torch.compile(w.target)}

    def step(fn):
        out = fn(*w.args, **w.kwargs)
        if w.train:
            w.pick(out).backward()

    with contextlib.nullcontext() if w.train else torch.no_grad():
        for label, fn in backends.items():
            for _ in range(WARMUP):
                step(fn)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(CALLS):
                    step(fn)
                torch.cuda.synchronize()
            events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
            busy = sum(e.device_time_total for e in events) / CALLS / 1e3
            count = sum(e.count for e in events) / CALLS
            print(f"== {name} {label}: GPU busy {busy:.2f} ms/call, {count:.0f} kernels/call", flush=True)
            for e in sorted(events, key=lambda e: -e.device_time_total)[:top]:
                print(f"   {e.device_time_total / CALLS / 1e3:7.3f} ms  x{e.count / CALLS:5.0f}  {e.key[:110]}")


def main(argv: list[str]) -> None:
    top = TOP
    if "--top" in argv:  # --top N: list the N busiest kernels (a large N lists every kernel)
        i = argv.index("--top")
        top, argv = int(argv[i + 1]), argv[:i] + argv[i + 2:]
    unknown = [n for n in argv if n not in CASES]
    if not argv or unknown:
        raise SystemExit(f"usage: python -m bench.gpu_kernels CASE... [--top N]; cases: {', '.join(CASES)}")
    for name in argv:
        profile_case(name, Config(), top)


if __name__ == "__main__":
    main(sys.argv[1:])
