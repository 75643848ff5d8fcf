"""Compiling Triton kernels on a pool of threads before they first run, instead of one by one.

Triton compiles a kernel the first time it is launched with a new specialization, on the calling
thread, one after another: 0.1 to 1.5 s each (MLIR, LLVM, ptxas, a C launcher). A cold GPT-2
compile on an H100 spent ~35 s of its first call that way (88 kernels: the wrapper's and every
autotuning candidate's). Most of that work runs outside the GIL (LLVM and MLIR passes in C++,
ptxas and the launcher's C compiler in subprocesses), so threads compile in parallel; Triton's
Python frontend does not, and compile_workers.py can hand the compiles to worker processes
instead (option `compile_workers`, off by default: on the H100 host their start cost more than
they saved).

    with precompiling():
        launch_k0(programs, x, out, n)   # submitted to the pool, not launched
    # on exit every submitted kernel is compiled and in its JITFunction's cache

Inside `precompiling()`, `Launcher.__call__` hands its kernel to `submit` instead of launching
it. `submit` calls Triton's `warmup`, which specializes the arguments exactly as a launch would
(dtypes, 16-byte alignment of pointers, ints equal to 1 or divisible by 16) and, under Triton's
AsyncCompileMode, queues the compile; on exit the results are filed under the key a later launch
with the same arguments looks up. Tensors are described, not passed: fake tensors (a dry run of a
wrapper under FakeTensorMode) have no data pointer, so each tensor becomes its dtype and its byte
offset, whose alignment is what Triton specializes on.

Three users: CompiledGraph's first call runs its wrapper once on fake inputs inside
`precompiling()` (`dry_run`); the Chooser runs every autotuning candidate once inside it before
timing any; and while those batches compile, a thread of their own dry-runs the module written
before the races (library calls where races will be; choice.compile_races), so the kernels that
do not depend on the races compile alongside (`dry_run_shapes`) and the first call finds them in
Triton's cache. The state is per thread (contextvars), so each thread's launches go to its own
pool. None can make a result wrong: a compile that fails is left for the real
launch to fail on with its own error, and a dry run that stops early (an op fake tensors cannot
run) leaves the rest to be compiled at the real launch, as without this module.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import torch

from . import compile_workers

log = logging.getLogger(__name__)

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("ember_precompiling", default=False)


def active() -> bool:
    """Whether launches are being submitted for compilation instead of run (see module doc)."""
    return _ACTIVE.get()


class _CompileThreads(ThreadPoolExecutor):
    """A thread pool whose jobs also build the compiled kernel's C launcher (a C compiler run,
    cached on disk by Triton), which the first launch would otherwise build on the main thread."""

    def submit(self, fn, /, *args, **kwargs):
        # A worker process may be compiling this kernel already (compile_workers.hook, called by
        # Triton just before this): wait for it, and Triton's compile here is a cache hit.
        worker = compile_workers.take_pending()
        return super().submit(_compile_and_build_launcher, compile_workers.wait_then, worker,
                              functools.partial(fn, *args, **kwargs))


def _compile_and_build_launcher(compile_fn: Callable, *args, **kwargs):
    kernel = compile_fn(*args, **kwargs)
    try:
        from triton.runtime import driver
        driver.active.launcher_cls(kernel.src, kernel.metadata)  # result cached on disk, dropped here
    except Exception as e:  # noqa: BLE001 - the first launch builds it then, and reports any error
        log.debug("ember precompile: launcher for %s not built ahead: %s", getattr(kernel, "name", "?"), e)
    return kernel


@contextlib.contextmanager
def precompiling() -> Iterator[None]:
    """Launches inside the body are compiled on a thread pool instead of run; the body's end
    waits for every compile. Nested use joins the outer one."""
    if _ACTIVE.get():
        yield
        return
    from triton.runtime._async_compile import AsyncCompileMode
    token = _ACTIVE.set(True)
    try:
        with _CompileThreads(max_workers=compile_workers.usable_cores(), thread_name_prefix="ember-compile") as pool, \
                _worker_hook():
            # ignore_errors: a failed compile is not filed; the real launch compiles again and raises.
            with AsyncCompileMode(pool, ignore_errors=True):
                yield
    finally:
        _ACTIVE.reset(token)


_hook_lock = threading.Lock()
_hook_users = 0
_hook_previous: Any = None


@contextlib.contextmanager
def _worker_hook() -> Iterator[None]:
    """Triton's jit_cache_hook sends kernels to compile_workers while the pool runs; a hook the
    user installed is called too, first, and decides as before whether Triton compiles. The hook
    is process-wide and two threads may precompile at once (choice.compile_races compiles the
    wrapper's kernels beside the races): it is installed by the first and put back by the last."""
    global _hook_users, _hook_previous
    if not compile_workers.running():  # started before the batch that needs it (compile_races)
        yield
        return
    from triton import knobs

    def hook(**kwargs):
        if _hook_previous is not None and _hook_previous(**kwargs):
            return True
        if _ACTIVE.get():
            try:
                compile_workers.hook(**kwargs)
            except Exception as e:  # noqa: BLE001 - only an optimization: Triton compiles it here
                log.debug("ember precompile: not sent to a worker: %s", e)
        return None
    with _hook_lock:
        if _hook_users == 0:
            _hook_previous = knobs.runtime.jit_cache_hook
            knobs.runtime.jit_cache_hook = hook
        _hook_users += 1
    try:
        yield
    finally:
        with _hook_lock:
            _hook_users -= 1
            if _hook_users == 0:
                knobs.runtime.jit_cache_hook = _hook_previous
                _hook_previous = None


class _TensorSpec:
    """What Triton specializes a tensor argument on: its dtype and its pointer's alignment."""

    def __init__(self, dtype: torch.dtype, byte_offset: int):
        self.dtype = dtype
        self._ptr = byte_offset

    def data_ptr(self) -> int:
        return self._ptr


def _spec(arg: Any) -> Any:
    if not isinstance(arg, torch.Tensor):
        return arg
    from torch._subclasses.fake_tensor import is_fake
    if is_fake(arg):  # no storage: an allocation's base is 16-byte aligned, so its offset decides
        return _TensorSpec(arg.dtype, arg.storage_offset() * arg.element_size())
    return _TensorSpec(arg.dtype, arg.data_ptr())


def submit(fn, programs: int, args: Sequence[Any], constexprs: dict[str, Any],
           options: dict[str, Any]) -> None:
    """Queue `fn`'s compile for these launch arguments (inside `precompiling()` only)."""
    try:
        fn.warmup(*[_spec(a) for a in args], grid=(programs,), **constexprs, **options)
    except Exception as e:  # noqa: BLE001 - the real launch compiles it and reports the error
        log.debug("ember precompile: %s not submitted: %s", getattr(fn, "__name__", fn), e)


def dry_run(call: Callable[[list], Any], inputs: Sequence[torch.Tensor], *extra: Any) -> bool:
    """Run a generated wrapper once on fake copies of `inputs` inside `precompiling()`: every
    kernel it would launch is compiled (in parallel), nothing is computed or allocated. Returns
    whether the dry run reached the end (False: an op it could not run on fake tensors; the
    kernels it reached are compiled all the same)."""
    return _dry_run(call, lambda mode: [mode.from_tensor(t) if isinstance(t, torch.Tensor) else t
                                        for t in inputs], extra)


def dry_run_shapes(call: Callable[[list], Any],
                   inputs: Sequence[tuple[tuple[int, ...], torch.dtype, str]]) -> bool:
    """dry_run on contiguous fake tensors of these (shape, dtype, device), for a wrapper whose real
    inputs do not exist yet (compiled_graph compiles a graph's kernels while its races run)."""
    return _dry_run(call, lambda mode: [torch.empty(shape, dtype=dtype, device=device)
                                        for shape, dtype, device in inputs], ())


def _dry_run(call: Callable[[list], Any], make_inputs: Callable[[Any], list], extra: Sequence[Any]) -> bool:
    from torch._subclasses.fake_tensor import FakeTensorMode
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with precompiling():
        try:
            with mode:
                call(make_inputs(mode), *extra)
            return True
        except Exception as e:  # noqa: BLE001 - only an optimization: the real run will do
            log.debug("ember precompile: dry run stopped early: %s: %s", type(e).__name__, e)
            return False
