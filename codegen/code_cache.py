"""Generated modules on disk, named by the hash of their text, imported once per process.

Each Triton kernel lives in a file of its own (`kernel_file_text`: a fixed header, then the
kernel), which the wrapper's module loads by hash (`runtime.kernel_from`). Triton keys a compiled
kernel by its source, its name and the line it starts on; in a file of its own a kernel starts on
the same line whatever else the graph holds. So a race's candidate (compiled as its op alone in a
graph, named as in the whole graph), the module written before the races and the one written
after them share their kernels' files: within a process the same JITFunction, already compiled;
in a new one, Triton's on-disk cache entry.

Triton's JIT reads a kernel's source with `inspect`, so kernels must live in real files. The file
name is the content hash, so compiling the same graph again finds the file already there (nothing is
written) and, within one process, gets the already imported module back (its kernels are already
compiled). Writes go to a temporary file in the same folder and are renamed into place, so a reader
never sees half a file; a file whose text does not match its name (a crash mid-write by an older
writer, a manual edit) is simply rewritten.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib.util
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

from ..atomic_io import write_text_atomic
from .runtime import interpret_mode

_loaded: dict[Path, ModuleType] = {}
_lock = threading.RLock()  # re-entered: a module loads its kernels' files while it is imported
_scratch: list[str] = []


def scratch_dir() -> str:
    """Where modules go when the caller has no cache folder (a Chooser made without one times
    its candidates from modules too): one temporary folder per process, removed at exit, so
    nothing is left behind in the system's temporary folder."""
    with _lock:
        if not _scratch:
            _scratch.append(tempfile.mkdtemp(prefix="ember-scratch-"))
            atexit.register(shutil.rmtree, _scratch[0], True)
        return _scratch[0]


def content_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:40]


def write_module(cache_dir: str, source: str) -> tuple[Path, bool]:
    """Make sure `<cache_dir>/code/<hash>.py` holds `source`; returns (path, whether it was written)."""
    folder = Path(cache_dir) / "code"
    path = folder / f"{content_hash(source)}.py"
    try:
        if path.read_text() == source:
            return path, False
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, source)
    return path, True


def kernel_file_text(source: str, interpret: bool) -> str:
    """A kernel's file: what kernels refer to (triton, tl, helpers, libdevice), then the kernel."""
    from . import runtime
    return ("import triton\n"
            "import triton.language as tl\n\n"
            f"from {runtime.__name__} import helpers_for, libdevice_for\n\n"
            f"INTERPRET = {interpret}\n"
            "helpers = helpers_for(INTERPRET)\n"
            "libdevice = libdevice_for(INTERPRET)\n\n\n" + source)


def write_generated(cache_dir: str, generated) -> tuple[Path, bool]:
    """Write a generated module (codegen/wrapper.GeneratedModule, or what the graph cache stored of
    one) and its kernels' files; returns the module's (path, whether it was written)."""
    for source in generated.kernels.values():
        write_module(cache_dir, kernel_file_text(source, generated.interpret))
    return write_module(cache_dir, generated.source)


def load_module(path: Path, interpret: bool) -> ModuleType:
    """Import the module at `path` (once per process) with its kernels built for the given mode."""
    with _lock:
        module = _loaded.get(path)
        if module is not None:
            return module
        name = f"ember_generated_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # inspect.getmodule (used by Triton for sources) looks here
        try:
            with interpret_mode(interpret):
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _loaded[path] = module
        return module
