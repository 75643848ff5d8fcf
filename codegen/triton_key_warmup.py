"""Hash Triton's own install on a background thread, before the first kernel needs it.

Triton keys every compiled kernel with `triton_key()`: a sha256 of its compiler's and language's
Python sources and of its native library (libtriton, hundreds of MB), computed once per process,
the first time a kernel is compiled or looked up in Triton's cache. On the H100 host that took
0.47-0.58 s, spent on the main thread inside the first call of every compiled model: 12% of a
warm GPT-2 compile (3.8 s), whose kernels are otherwise cache hits. The hashing reads and digests
in C with the GIL released, so a thread started when the backend is imported (torch.compile looks
it up before Dynamo traces) finishes it while Dynamo traces, and the first kernel finds it done.

Nothing is started where no kernel will be compiled (no CUDA GPU, or Triton's interpreter, whose
kernels are never compiled or cached). The result is the same `triton_key()` a later caller would
compute (functools.lru_cache); two threads racing to fill it compute it twice, not wrongly.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

_started = False
_lock = threading.Lock()


def _hash() -> None:
    try:
        from triton.runtime.cache import triton_key
        triton_key()
    except Exception as e:  # noqa: BLE001 - only an optimization: the first compile hashes instead
        log.debug("ember: triton_key not computed ahead: %s: %s", type(e).__name__, e)


def start() -> bool:
    """Start the hashing thread once per process where kernels will be compiled; returns whether
    this call started it."""
    global _started
    with _lock:
        if _started or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            return False
        import torch
        if not torch.cuda.is_available():
            return False
        _started = True
    threading.Thread(target=_hash, name="ember-triton-key", daemon=True).start()
    return True
