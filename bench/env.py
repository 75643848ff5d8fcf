"""The environment a run was measured in: GPU, library versions, ember's commit."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        run = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def ember_commit() -> dict:
    """HEAD and whether the tree has local changes. A copy without .git (e.g. a working tree
    shipped to the GPU machine) has no commit to read; EMBER_BENCH_COMMIT supplies it, and wins
    when set."""
    if os.environ.get("EMBER_BENCH_COMMIT"):
        # Set by whoever shipped the tree: the GPU machine's copy may carry a stale .git whose
        # HEAD is not the commit that was shipped.
        return {"commit": os.environ["EMBER_BENCH_COMMIT"], "dirty": None, "source": "EMBER_BENCH_COMMIT"}
    head = _git("rev-parse", "HEAD")
    if head is None:
        return {"commit": os.environ.get("EMBER_BENCH_COMMIT"), "dirty": None,
                "source": "EMBER_BENCH_COMMIT" if os.environ.get("EMBER_BENCH_COMMIT") else "unavailable"}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head, "dirty": bool(status), "source": "git"}


def _cpu_model() -> str | None:
    """The host CPU's name (Linux): launch-bound rows run at the host's speed (timing.host_loop_ms)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def collect(device: str) -> dict:
    import triton
    env = {
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "transformers": _version("transformers"),
        "timm": _version("timm"),
        "torchvision": _version("torchvision"),
        "ember": {"version": _version("ember"), **ember_commit()},
        "device": device,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_capability=list(torch.cuda.get_device_capability(0)),
                   gpu_memory_GiB=round(props.total_memory / 2**30, 1), gpu_sms=props.multi_processor_count)
    else:
        env["gpu"] = None
    return env
