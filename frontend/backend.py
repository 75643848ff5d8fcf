"""The Dynamo backend: `torch.compile(model, backend="ember", options={...})`.

Registered through the `torch_dynamo_backends` entry point (pyproject.toml), so no import of ember
is needed. Dynamo hands us a graph of torch-level ops; AOTAutograd traces it to ATen (applying the
decomposition table), splits forward from backward for training, and calls our compilers with
each resulting graph. Every Dynamo graph gets a process-wide number: its forward is `graphN_fw`,
its backward `graphN_bw` (inference graphs are `graphN_fw` too).
"""
from __future__ import annotations

import itertools
import threading
from typing import Any

import torch
from torch._dynamo.backends.common import aot_autograd
from torch._guards import TracingContext
from torch._functorch.partitioners import min_cut_rematerialization_partition

from ..options import Options, OptionsError
from .compile import compile_fx_graph
from .decompositions import decomposition_table

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

    def fw_compiler(fx_gm: torch.fx.GraphModule, inputs):
        # A training forward returns the caller's outputs first, then the tensors saved for the
        # backward; AOT's metadata says where one ends (CUDA graphs copy small caller outputs).
        context = TracingContext.try_get()
        meta = getattr(context, "fw_metadata", None)
        returned = getattr(meta, "num_forward", 0) if meta is not None else 0
        return compile_fx_graph(fx_gm, inputs, opts, f"{name}_fw", caller_outputs=returned)

    def inference_compiler(fx_gm: torch.fx.GraphModule, inputs):
        return compile_fx_graph(fx_gm, inputs, opts, f"{name}_fw")

    def bw_compiler(fx_gm: torch.fx.GraphModule, inputs):
        # Gradients go to .grad (kept or summed there), never copied out.
        return compile_fx_graph(fx_gm, inputs, opts, f"{name}_bw", caller_outputs=0)

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
