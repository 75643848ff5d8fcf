"""Worker processes that compile Triton kernels for precompile.py's thread pool.

precompile.py compiles kernels on threads, but the first stage of a Triton compile (walking the
kernel's Python AST into MLIR) holds the GIL: on an H100 host a cold GPT-2 compile spent 83 s of
compile time over 73 kernels in 13.5 s of wall time with 16 threads. Processes have no shared GIL.

How a kernel goes to a worker. Inside `precompiling()`, Triton calls its `jit_cache_hook` just
before it queues a compile; `hook` (installed for the duration) sends the kernel's specialization
(Triton's own `specialization_data`, the JSON its `preload` reads back) with where the kernel is
defined to a worker, which imports that module and calls `preload`: a full compile written to
Triton's on-disk cache. The thread that then runs Triton's queued compile waits for the worker
first (`wait_then`), so its compile is a cache hit: reading the binary back, not compiling.

Nothing here can make a result wrong: what the parent loads is whatever Triton's cache holds
under the key Triton computes in the parent, and a worker that fails (an exception, a crash, a
module it cannot import) only means the thread compiles the kernel itself, as without workers.

When. Starting the pool costs each worker an import of torch and Triton (~2 s, in parallel), so
it is started only by a cold compile: `start` is called when an autotuning race misses the
tuning cache (choice.compile_races). A warm compile, whose kernels are all in Triton's cache,
never starts it. Once started it serves every later precompile of the process.

Off by default (option `compile_workers=0`): on the H100 host, 16 workers compiled GPT-2's races'
candidates in 18.2 s against 9.1-12.9 s for the threads: each kernel took less time in a worker
(1.5 s against 2.1 s), but the workers' start cost more than that (docs/benchmarks.md).
"""
from __future__ import annotations

import atexit
import importlib
import logging
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_WORKERS = 32
GENERATED_PREFIX = "ember_generated_"  # code_cache.load_module's module names

_pool: ProcessPoolExecutor | None = None
_broken = False
_lock = threading.Lock()
_submitted: dict[tuple[str, str, str], Future] = {}
_pending = threading.local()  # the worker future of the kernel the hook saw last, per thread
STATS = {"jobs": 0, "worker_s": 0.0}  # kernels compiled by workers, and their summed seconds


def usable_cores() -> int:
    """Cores this process may run on, at most MAX_WORKERS: the size of the compile thread pool
    (precompile.py) and of the worker pool when the option leaves it open."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def supported() -> bool:
    """This Triton offers what the workers use: the compile hook and `preload`."""
    try:
        from triton import knobs
        from triton.runtime.jit import JITFunction
    except ImportError:
        return False
    return hasattr(knobs.runtime, "jit_cache_hook") and hasattr(JITFunction, "preload")


def start(workers: int | None = None) -> bool:
    """Start the pool (once per process) unless `workers` is 0; returns whether it runs."""
    global _pool
    if workers == 0 or _broken or not supported():
        return False
    with _lock:
        if _pool is None:
            # spawn: the parent has a CUDA context, which a forked child must not touch.
            _pool = ProcessPoolExecutor(max_workers=workers or usable_cores(),
                                        mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init, initargs=(list(sys.path), _target()))
            atexit.register(shutdown)
    return True


def _target() -> Any:
    """The GPU the parent compiles for, handed to the workers so they never touch the GPU."""
    try:
        from triton.runtime import driver
        return driver.active.get_current_target()
    except Exception:  # noqa: BLE001 - the workers then ask their own driver
        return None


def running() -> bool:
    return _pool is not None and not _broken


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
        _submitted.clear()
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _where(jit_fn: Any) -> tuple[str, str] | None:
    """(module, file) a worker imports the kernel from: a generated module by its file, any other
    by its name. None when neither can be found (the kernel is compiled in the parent)."""
    name = getattr(getattr(jit_fn, "fn", None), "__module__", None)
    module = sys.modules.get(name) if name else None
    path = getattr(module, "__file__", None)
    if module is None or (name.startswith(GENERATED_PREFIX) and not path):
        return None
    return name, path or ""


def hook(**kwargs: Any) -> None:
    """Triton's jit_cache_hook inside precompiling(): send the kernel to a worker (see module doc).
    Returns None: Triton goes on to queue its own compile, which waits for the worker."""
    _pending.future = None
    if not running() or kwargs.get("already_compiled"):
        return None
    jit_fn = getattr(kwargs.get("fn"), "jit_function", None)
    where = _where(jit_fn)
    data = (kwargs.get("compile") or {}).get("specialization_data")
    if where is None or not isinstance(data, str):
        return None
    qualname = jit_fn.fn.__qualname__
    job = (where[0], qualname, data)
    with _lock:
        future = _submitted.get(job)
        if future is None and _pool is not None:
            try:
                future = _pool.submit(_worker_compile, where[0], where[1], qualname, data)
            except Exception as e:  # noqa: BLE001 - a broken pool: compile in the parent
                _mark_broken(e)
                return None
            _submitted[job] = future
    _pending.future = future
    return None


def take_pending() -> Future | None:
    """The worker future `hook` made for the compile Triton is queueing on this thread."""
    future = getattr(_pending, "future", None)
    _pending.future = None
    return future


def wait_then(future: Future | None, compile_fn: Callable[[], Any]) -> Any:
    """Wait for a worker's compile (its failure is only logged), then run Triton's own."""
    if future is not None:
        try:
            seconds = future.result()
            with _lock:
                STATS["jobs"] += 1
                STATS["worker_s"] += seconds if isinstance(seconds, float) else 0.0
        except Exception as e:  # noqa: BLE001 - the parent compiles it, and reports any error
            if type(e).__name__ == "BrokenProcessPool":
                _mark_broken(e)
            log.debug("ember compile worker failed; compiling in the parent: %s", e)
    return compile_fn()


def _mark_broken(e: BaseException) -> None:
    global _broken
    if not _broken:
        log.warning("ember: Triton compile workers stopped (%s); compiling on threads", e)
    _broken = True


# ----------------------------------------------------------------------------- in the worker

_modules: dict[str, Any] = {}


class _CompileOnlyDriver:
    """What Triton's `preload` asks of the active driver, answered without touching the GPU: a
    CUDA context per worker would cost GPU memory, and creating 16 at once is slow."""

    def __init__(self, target: Any):
        self.target = target

    def get_current_device(self) -> int:
        return 0

    def get_current_target(self) -> Any:
        return self.target

    def get_current_stream(self, device: int | None = None) -> int:
        return 0


def _worker_init(parent_path: list[str], target: Any) -> None:
    for p in parent_path:
        if p not in sys.path:
            sys.path.append(p)
    import torch  # noqa: F401 - every generated module imports it: once, before the first job
    from triton.runtime import driver
    if target is not None:
        driver.set_active(_CompileOnlyDriver(target))
    try:
        from triton.runtime.cache import triton_key
        triton_key()  # hashes Triton's installation once per process (~0.4 s)
    except Exception:  # noqa: BLE001 - only a warm-up
        pass


def _worker_compile(module_name: str, path: str, qualname: str, data: str) -> float:
    """Compile one kernel into Triton's cache, and its C launcher into Triton's; the seconds."""
    start = time.perf_counter()
    module = _modules.get(module_name)
    if module is None:
        if module_name.startswith(GENERATED_PREFIX):
            from .code_cache import load_module
            module = load_module(Path(path), interpret=False)
        else:
            module = importlib.import_module(module_name)
        _modules[module_name] = module
    fn = module
    for part in qualname.split("."):
        fn = getattr(fn, part)
    kernel = fn.preload(data)
    from triton.runtime import driver
    if kernel is not None and getattr(driver.active.get_current_target(), "backend", None) == "cuda":
        from triton.backends.nvidia.driver import CudaLauncher
        CudaLauncher(kernel.src, kernel.metadata)  # built and cached on disk; the parent loads it
    return time.perf_counter() - start
