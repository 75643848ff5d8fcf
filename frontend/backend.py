"""The Dynamo backend: `torch.compile(model, backend="ember", options={...})`.

Registered through the `torch_dynamo_backends` entry point (pyproject.toml), so no import of ember
is needed. Dynamo hands us a graph of torch-level ops; AOTAutograd traces it to ATen (applying the
decomposition table), splits forward from backward for training, and calls our compilers with
each resulting graph. Every Dynamo graph gets a process-wide number: its forward is `graphN_fw`,
its backward `graphN_bw` (inference graphs are `graphN_fw` too).

An inference graph compiled before (this process or another, same cache folder) is loaded from
the graph cache instead (graph_cache.py: what qualifies, what the key holds); AOTAutograd and
ember's pipeline do not run for it. A training forward or backward compiled before is loaded
one level down, once AOTAutograd has traced it (graph_cache.training_graph_key).
"""
from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

import torch
from torch._dynamo.backends.common import aot_autograd
from torch._guards import TracingContext
from torch._functorch.partitioners import min_cut_rematerialization_partition
from torch.utils._python_dispatch import _disable_current_modes

from ..codegen import triton_key_warmup
from ..options import Options, OptionsError
from . import graph_cache
from .compile import compile_fx_graph
from .decompositions import decomposition_table

log = logging.getLogger(__name__)

# torch.compile imports this module when it looks the backend up, before Dynamo traces: Triton's
# one-time hash of its install runs meanwhile (codegen/triton_key_warmup.py).
triton_key_warmup.start()

_counter = itertools.count()
_counter_lock = threading.Lock()


def _next_graph_name() -> str:
    with _counter_lock:
        return f"graph{next(_counter)}"


def ember_backend(gm: torch.fx.GraphModule, example_inputs: list[Any], options: dict | None = None,
                  **kwargs):
    """Dynamo calls this once per captured graph; returns the compiled callable."""
    if kwargs:
        # torch.compile(mode=...) arrives here; ember has no modes, only options.
        raise OptionsError(f"ember takes no {sorted(kwargs)} argument(s); pass options={{...}} "
                           f"with keys {[f.name for f in Options.__dataclass_fields__.values()]}")
    opts = options if isinstance(options, Options) else Options.from_dict(options)
    name = _next_graph_name()
    # AOT builds a backward exactly when grad mode is on and some input requires grad (Dynamo
    # passes parameters as inputs); some decompositions are only right without one.
    training = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs)
    key = _cache_key(gm, example_inputs, opts)  # None for training graphs (grad mode on)
    if key is not None and not opts.dump_dir:  # a dump describes a compile: never loaded
        hit = graph_cache.load(opts.cache_dir, key, f"{name}_fw", opts)
        if hit is not None:
            graph_cache.STATS.hits += 1
            return hit
    if key is not None:
        graph_cache.STATS.misses += 1

    def fw_compiler(fx_gm: torch.fx.GraphModule, inputs):
        # A training forward returns the caller's outputs first, then the tensors saved for the
        # backward; AOT's metadata says where one ends (CUDA graphs copy small caller outputs).
        context = TracingContext.try_get()
        meta = getattr(context, "fw_metadata", None)
        returned = getattr(meta, "num_forward", 0) if meta is not None else 0
        return _compile_training_graph(fx_gm, inputs, opts, f"{name}_fw", returned)

    def inference_compiler(fx_gm: torch.fx.GraphModule, inputs):
        compiled = compile_fx_graph(fx_gm, inputs, opts, f"{name}_fw")
        if key is not None:
            _store(key, compiled, fx_gm, len(example_inputs), opts, f"{name}_fw")
        return compiled

    def bw_compiler(fx_gm: torch.fx.GraphModule, inputs):
        # Gradients go to .grad (kept or summed there), never copied out.
        return _compile_training_graph(fx_gm, inputs, opts, f"{name}_bw", 0)

    backend = aot_autograd(
        fw_compiler=fw_compiler,
        bw_compiler=bw_compiler,
        inference_compiler=inference_compiler,
        decompositions=decomposition_table(training),
        # Recompute cheap pointwise ops in the backward instead of saving them: fewer saved
        # tensors, and the recomputation fuses into the backward kernels.
        partition_fn=min_cut_rematerialization_partition,
        keep_inference_input_mutations=False,  # mutations stay outside the graph: IR is pure
    )
    return backend(gm, example_inputs)


def _cache_key(gm: torch.fx.GraphModule, example_inputs: list[Any], opts: Options) -> str | None:
    """The graph cache's key for this graph, or None when it does not qualify (counted, logged)."""
    try:
        return graph_cache.graph_key(gm, example_inputs, opts)
    except graph_cache.NotCacheable as e:
        why = str(e)
    except Exception as e:  # noqa: BLE001 - keying must never fail a compile that would work
        why = f"keying failed: {type(e).__name__}: {e}"
    graph_cache.STATS.bypassed += 1
    log.debug("ember: graph cache bypassed: %s", why)
    return None


def _compile_training_graph(fx_gm: torch.fx.GraphModule, inputs, opts: Options, name: str, caller_outputs: int):
    """A training forward or backward, loaded from the graph cache when it was compiled before
    (keyed on AOTAutograd's graph: graph_cache.training_graph_key), else compiled and stored.
    AOTAutograd has run either way; a hit skips ember's lowering, passes, codegen and dry run."""
    stats = graph_cache.TRAINING_STATS
    key = None
    try:
        with _disable_current_modes():  # AOT's fake mode is active: a constant is hashed by value
            key = graph_cache.training_graph_key(fx_gm, inputs, opts, caller_outputs)
    except graph_cache.NotCacheable as e:
        log.debug("ember: %s bypasses the graph cache: %s", name, e)
    except Exception as e:  # noqa: BLE001 - keying must never fail a compile that would work
        log.debug("ember: %s bypasses the graph cache: keying failed: %s: %s", name, type(e).__name__, e)
    if key is None:
        stats.bypassed += 1
        return compile_fx_graph(fx_gm, inputs, opts, name, caller_outputs=caller_outputs)
    if not opts.dump_dir:  # a dump describes a compile: never loaded
        hit = graph_cache.load_compiled(opts.cache_dir, key, name, opts)
        if hit is not None:
            stats.hits += 1
            return hit
    stats.misses += 1
    compiled = compile_fx_graph(fx_gm, inputs, opts, name, caller_outputs=caller_outputs)
    try:
        why_not = graph_cache.why_not_storable_plan(compiled)
        if why_not is None and graph_cache.store(opts.cache_dir, key, compiled) is not None:
            stats.stored += 1
            return compiled
    except Exception as e:  # noqa: BLE001 - storing never fails the compile it follows
        why_not = f"{type(e).__name__}: {e}"
    stats.bypassed += 1
    log.debug("ember: %s not stored in the graph cache: %s", name, why_not or "see the warning")
    return compiled


def _store(key: str, compiled, fx_gm: torch.fx.GraphModule, num_inputs: int, opts: Options, name: str) -> None:
    """Store an inference graph that qualifies; never fails the compile it follows."""
    try:
        meta = getattr(TracingContext.try_get(), "fw_metadata", None)
        why_not = graph_cache.why_not_storable(compiled, meta, fx_gm, num_inputs)
        if why_not is None and graph_cache.store(opts.cache_dir, key, compiled) is not None:
            graph_cache.STATS.stored += 1
            return
    except Exception as e:  # noqa: BLE001 - an AOTAutograd without these fields, say
        why_not = f"{type(e).__name__}: {e}"
    graph_cache.STATS.bypassed += 1
    log.debug("ember: %s not stored in the graph cache: %s", name, why_not or "see the warning")
