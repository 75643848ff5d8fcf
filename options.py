"""Every user-facing knob of ember, in one place.

`torch.compile(m, backend="ember", options={...})` passes a dict that `Options.from_dict` validates:
an unknown key or a bad value is an error that lists what is valid. Environment variables are read
here and nowhere else.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# fuse groups what the cleanups left. attention must see unfused ops and views where the frontend
# left them, so it runs before hoist_views, which moves views out of the way of pointwise chains
# (it needs dce's single-reader facts); conv_bias adds a CUDA convolution's bias in the kernel
# reading its result (cuDNN adds it in a kernel of its own); conv_layout reads 16-bit CUDA
# convolution results as channels-last permutes, and sink_permutes runs pointwise ops over
# permuted operands in their memory order; hoist_views again then moves the views sink_permutes gave broadcast operands (a
# batch norm's [C,1,1] scale) up their chains, so those chains still fuse; move_reshapes puts a
# cast cut off by a reshape next to the kernel it belongs to, and sink_gathers then gathers a
# loss's log-probabilities from the logits instead of writing the whole log_softmax; fuse_matmul
# then puts each matmul with its operand cast and fuse's region reading its product in one
# template kernel, and gelu_bf16 folds an erf GELU such a kernel rounds to bf16 into one op that
# codegen computes more cheaply. options={"pipeline": "canonicalize,cse,dce"} compiles one kernel per op
# (useful when bisecting a wrong result).
DEFAULT_PIPELINE = ("canonicalize,cse,dce,attention,hoist_views,conv_bias,conv_layout,sink_permutes,hoist_views,"
                    "move_reshapes,sink_gathers,fuse,fuse_matmul,gelu_bf16")


def _default_cache_dir() -> str:
    if os.environ.get("EMBER_CACHE_DIR"):
        return os.environ["EMBER_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return os.path.join(base, "ember")


class OptionsError(ValueError):
    pass


@dataclass(frozen=True)
class Options:
    # Pass pipeline, as a pipeline string (see docs/passes.md).
    pipeline: str = DEFAULT_PIPELINE
    # Run the IR verifier after every pass.
    verify: bool = True
    # Where each compiled graph's IR, kernels, wrapper and report go; None: no dump.
    dump_dir: str | None = field(default_factory=lambda: os.environ.get("EMBER_DUMP_DIR") or None)
    # Generated code and (later) autotune decisions live here.
    cache_dir: str = field(default_factory=_default_cache_dir)
    # Raise instead of falling back to an ATen extern when an op has no lowering (for debugging).
    strict_lowering: bool = False
    # Time template configurations against the library (cuBLAS, SDPA) on the GPU at compile time
    # and keep the fastest in the cache; False: the heuristic choice, nothing timed.
    autotune: bool = True
    # Seconds of timing one compiled graph may spend beyond the library and default candidates,
    # which are always timed (so the choice is never slower than either); None: no limit.
    autotune_budget_s: float | None = 60.0
    # Screen each race: the template's default config is timed against the library first, and its
    # other configs are timed only if it runs within this factor of the library's time (1.25: at
    # most 25% slower; autotune/tuner.py's screened_out says why that loses little); those costlier
    # to compile than the default are compiled only then (codegen/choice.py compile_races). None:
    # every config of every race is compiled and timed.
    autotune_screen: float | None = 1.25
    # A library candidate that allocates its result itself, outside the wrapper's memory plan (SDPA
    # has no out= form), wins its race only when it is faster than the fastest planned candidate by
    # more than this factor. Such a result holds memory beside the plan (in a CUDA graph, a pool
    # segment for the graph's life: 22 MiB on GPT-2, 18 MiB on the Llama case, each enough to put
    # ember's peak above eager's), for a few percent of attention's time. Races timed from CUDA
    # graph replays (codegen/replay_timing.py) put SDPA 1.39x ahead on the Llama case's attention
    # (0.050 vs 0.070 ms; do_bench's host time had hidden it): 1.5 keeps the template there, for
    # 8 x 0.02 ms, 2.4% of the model's time, and its peak at eager's. None: the fastest wins.
    # Not applied where the result is returned (codegen/attention_emit.py: the caller's memory).
    autotune_unplanned_margin: float | None = 1.5
    # Let the library (cuBLAS) race ember's matmul template; False: the template alone (what the
    # benchmark measures as "template only"). Products the template cannot compute still call it.
    matmul_library: bool = True
    # Offer the library SDPA as a candidate for attention; False leaves ember's flash-attention
    # template alone in the race wherever it applies (to measure it; a benchmark option).
    attention_library: bool = True
    # Replay each compiled CUDA graph of fixed sizes as a captured CUDA graph (one host call per
    # graph instead of one per kernel; codegen/cuda_graphs.py says when it cannot and what it
    # does then). False: the wrapper launches every kernel itself at every call.
    cuda_graphs: bool = True
    # Compile a GPU graph's Triton kernels, and each autotuning race's candidates, on a pool of
    # threads before they first run (codegen/precompile.py); False: each compiles on the calling
    # thread when it is first launched.
    precompile: bool = True
    # Worker processes for those compiles once a compile has to tune (a race missed the tuning
    # cache: a cold compile), started once per process (codegen/compile_workers.py); None: one
    # per core (up to 32); 0 (the default, faster on the H100 host so far): threads only.
    compile_workers: int | None = 0
    # Keep each compiled inference graph in cache_dir, keyed by the graph Dynamo captured and its
    # inputs, so a later compile of it (a new process) skips AOTAutograd, lowering, the passes and
    # codegen (frontend/graph_cache.py says which graphs qualify). False: every compile runs them.
    graph_cache: bool = True

    _CHECKS = {
        "pipeline": (str, "a pipeline string such as \"canonicalize,cse,dce\""),
        "verify": (bool, "True or False"),
        "dump_dir": ((str, type(None)), "a folder path or None"),
        "cache_dir": (str, "a folder path"),
        "strict_lowering": (bool, "True or False"),
        "autotune": (bool, "True or False"),
        "autotune_budget_s": ((int, float, type(None)), "a number of seconds >= 0 or None"),
        "autotune_screen": ((int, float, type(None)), "a factor >= 1 or None"),
        "autotune_unplanned_margin": ((int, float, type(None)), "a factor >= 1 or None"),
        "matmul_library": (bool, "True or False"),
        "attention_library": (bool, "True or False"),
        "cuda_graphs": (bool, "True or False"),
        "precompile": (bool, "True or False"),
        "compile_workers": ((int, type(None)), "a number of processes >= 0 or None"),
        "graph_cache": (bool, "True or False"),
    }

    @classmethod
    def from_dict(cls, given: dict[str, Any] | None) -> "Options":
        given = dict(given or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(valid))
        if unknown:
            raise OptionsError(f"unknown ember option(s) {unknown}; valid options: {valid}")
        for key, value in given.items():
            types, what = cls._CHECKS[key]
            if not isinstance(value, types):
                raise OptionsError(f"ember option {key!r} must be {what}, got {value!r}")
        budget = given.get("autotune_budget_s")
        if budget is not None and (isinstance(budget, bool) or budget < 0):
            raise OptionsError(f"ember option 'autotune_budget_s' must be a number of seconds >= 0 "
                               f"or None, got {budget!r}")
        for factor in ("autotune_screen", "autotune_unplanned_margin"):
            value = given.get(factor)
            if value is not None and (isinstance(value, bool) or not value >= 1):
                raise OptionsError(f"ember option {factor!r} must be a factor >= 1 or None, got {value!r}")
        workers = given.get("compile_workers")
        if workers is not None and (isinstance(workers, bool) or workers < 0):
            raise OptionsError(f"ember option 'compile_workers' must be a number of processes >= 0 "
                               f"or None, got {workers!r}")
        opts = cls(**given)
        if "pipeline" in given:
            # Validate pass names now, not at the first compile.
            from .passes import parse_pipeline
            try:
                parse_pipeline(opts.pipeline)
            except Exception as e:  # noqa: BLE001 - reported with the option's name
                raise OptionsError(f"ember option 'pipeline': {e}") from None
        return opts

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
