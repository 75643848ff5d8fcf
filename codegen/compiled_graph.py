"""compile_graph: IR graph -> generated module on disk -> a callable `CompiledGraph`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import sympy
import torch

from ..ir import Graph, bind_symbols, to_torch
from ..options import Options
from . import precompile
from .code_cache import load_module, write_generated
from .choice import Chooser, compile_races, end_collecting
from .cuda_graphs import CudaGraphRunner, graph_capture_refusal
from .wrapper import generate_module


# Kernels (by source) that a graph's call has run to the end in this process, at sizes fixed in
# the graph. A kernel's file is named by its text (code_cache.py) and imported once per process,
# so a later compile whose kernels are all here gets the same JITFunctions, already compiled: its
# first call would dry-run the whole wrapper on fake tensors for nothing (a recompile after
# torch._dynamo.reset(), the benchmark's warm compile; the wrapper's own text differs, as it
# names the graph). A kernel that a new launch specializes differently still compiles then.
_RAN_KERNELS: set[str] = set()


def kernels_already_ran(generated) -> bool:
    """Whether the module has kernels and a call in this process has run every one of them."""
    return bool(generated.kernels) and _RAN_KERNELS.issuperset(generated.kernels.values())


class CompiledGraph:
    """Runs a graph's generated wrapper. Attributes describe the generated code:

    kernels         kernel name -> Triton source
    wrapper_source  the generated Python `call` function
    module_source   the whole generated module (imports, kernels, wrapper)
    module_path     where that module lives in the cache
    externs         one {"op", "target", "reason"} per library / ATen call in the wrapper
    num_kernels     Triton kernels launched per call (a reshape's copy, done only when the input's
                    layout allows no view, is not counted)
    memory_plan     which wrapper-allocated buffers take a dead buffer's storage (memory_plan.py)
    peak_bytes_planned, peak_bytes_unplanned
                    bytes the wrapper's own allocations hold at their peak, with and without that
                    reuse: ints, or sympy expression strings ("512*s0") when sizes are symbolic
    memory          the report.json summary: both peaks, buffers allocated, buffers reused
    autotune        one entry per op with several implementations (codegen/choice.py): what was
                    chosen, from the cache, by timing or by the heuristic, and the times
    cuda_graphs     the CudaGraphRunner that replays the wrapper as a CUDA graph (cuda_graphs.py),
                    or None: a CPU graph, symbolic sizes, an op that waits on the host, the
                    option off
    cuda_graphs_status  "on" or why not, for the report (a runner that turns itself off later
                    logs why)
    copy_out        the outputs the caller sees (compile_graph's argument), module_interpret
                    whether the module was loaded for the CPU interpreter: for the graph cache
    dry_run_first   whether the next call first dry-runs the wrapper on fake tensors, compiling
                    its kernels on a thread pool (precompile.py): set for GPU graphs with the
                    `precompile` option whose kernels are not compiled yet (not after races whose
                    neighbour dry run reached the end: _generate; not when every kernel has run
                    in this process: _RAN_KERNELS), cleared by the first call
    """

    def __init__(self, graph: Graph, module, generated, path: Path):
        self.graph = graph
        self.kernels: dict[str, str] = generated.kernels
        self.wrapper_source: str = generated.wrapper_source
        self.module_source: str = generated.source
        self.module_path = path
        self.externs: list[dict] = generated.externs
        self.num_kernels: int = generated.num_kernels
        self.memory_plan = generated.memory
        self.peak_bytes_planned: int | str = generated.memory.peak_bytes_planned
        self.peak_bytes_unplanned: int | str = generated.memory.peak_bytes_unplanned
        self.memory: dict = generated.memory.summary()
        self.autotune: list[dict] = []
        self._call = module.call
        self.cuda_graphs: CudaGraphRunner | None = None
        self.cuda_graphs_status: str = "off"
        self._symbols = list(graph.symbols)
        self._dtypes = [to_torch(v.type.dtype) for v in graph.inputs]
        self._ranks = [v.type.rank for v in graph.inputs]
        self.dry_run_first = False  # compile_graph sets it for a GPU graph (see the docstring)
        self._ran = False
        self.copy_out: list[int] = []
        self.module_interpret: bool = generated.interpret

    def _check(self, inputs: Sequence[torch.Tensor]) -> None:
        # Cheap checks only: a wrong dtype or rank would otherwise run and read garbage.
        if len(inputs) != len(self._dtypes):
            raise ValueError(f"@{self.graph.name} takes {len(self._dtypes)} inputs, got {len(inputs)}")
        for v, t, dt, rank in zip(self.graph.inputs, inputs, self._dtypes, self._ranks):
            if not isinstance(t, torch.Tensor) or t.dtype != dt or t.dim() != rank:
                got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"input %{v.name}: expected {v.type}, got {got}")

    def __call__(self, inputs: Sequence[torch.Tensor],
                 symbols: dict[sympy.Symbol, int] | None = None) -> list[torch.Tensor]:
        self._check(inputs)
        values = []
        if self._symbols:
            env = bind_symbols(self.graph, inputs, symbols)
            values = [env[s] for s in self._symbols]
        if self.dry_run_first:
            self.dry_run_first = False
            precompile.dry_run(self._call, list(inputs), *values)
        if self.cuda_graphs is not None:
            out = self.cuda_graphs(list(inputs))
        else:
            out = self._call(list(inputs), *values)
        if not self._ran:
            self._ran = True
            if not self._symbols:
                _RAN_KERNELS.update(self.kernels.values())
        return out


def _generate(graph: Graph, chooser: Chooser, outputs_in_arena: bool):
    """(the generated module, whether its kernels are all compiled already). Where races would be
    timed, a first pass only notes the races the tuning cache cannot answer; their candidates are
    then compiled in one batch (precompile.py), beside a dry run of the first pass's module, and a
    second pass times them, finding every kernel compiled. A first pass that noted nothing (every
    decision cached: a warm compile) is the result, its kernels not compiled yet."""
    if not (chooser.precompile and chooser.autotune and not chooser.interpret):
        return generate_module(graph, chooser, outputs_in_arena), False
    chooser.collecting = True
    try:
        generated = generate_module(graph, chooser, outputs_in_arena)
    finally:
        final = end_collecting(chooser)
    if final:
        return generated, False
    alongside = _dry_run_before_races(graph, generated, chooser.cache_dir)
    compile_races(chooser, alongside)
    chooser.decisions.clear()
    after = generate_module(graph, chooser, outputs_in_arena)
    # The races change only their own ops' kernels, and compiled every candidate they timed (a
    # kernel file is shared by the race and both modules: code_cache.py). So once the dry run
    # beside them reached the end, every kernel of `after` is compiled, and the first call's own
    # dry run (fake tensors through the whole wrapper) would find nothing to do: on the H100,
    # ViT's first call after its backend went from 0.60-0.68 s to 0.37-0.56 s without it. A kernel
    # whose launch specializes differently (an operand's alignment) compiles at its first launch.
    return after, alongside is not None and alongside.reached_end


class _DryRunBeforeRaces:
    """Compiles the kernels of the module written before the races (a library call wherever a
    race will be) alongside the races' candidates. The races change only their own ops'
    kernels; the others keep their source and name (wrapper.kernel_name), so the module written
    after the races finds them in Triton's cache instead of compiling them at its first call,
    after the races. `reached_end`: whether the dry run went through the whole wrapper."""

    def __init__(self, generated, inputs, cache_dir: str):
        self.generated, self.inputs, self.cache_dir = generated, inputs, cache_dir
        self.reached_end = False

    def __call__(self) -> None:
        path, _ = write_generated(self.cache_dir, self.generated)
        self.reached_end = precompile.dry_run_shapes(load_module(path, False).call, self.inputs)


def _dry_run_before_races(graph: Graph, generated, cache_dir: str | None) -> _DryRunBeforeRaces | None:
    """None when there is nothing to gain: symbolic sizes (no inputs to make)."""
    if graph.symbols or generated.interpret or not cache_dir:
        return None
    inputs = [(tuple(int(d) for d in v.type.shape), to_torch(v.type.dtype), v.type.device)
              for v in graph.inputs]
    return _DryRunBeforeRaces(generated, inputs, cache_dir)


def compile_graph(graph: Graph, options: Options | None = None, chooser: Chooser | None = None,
                  copy_out: Sequence[int] = (), outputs_in_arena: bool | None = None) -> CompiledGraph:
    """`chooser`: who picks library or template per matmul (default: one made from `options`;
    tests pass one that imposes a choice). `copy_out`: outputs the caller sees, which CUDA graph
    replays hand out as copies when small (cuda_graphs.py). `outputs_in_arena`: see memory_plan.py;
    None: where the graph may be replayed as a CUDA graph."""
    options = options or Options()
    chooser = chooser or Chooser.for_options(graph.device, options)
    # A graph replayed as a CUDA graph keeps its pool between calls anyway: its outputs may then
    # share the arena with its intermediates (memory_plan.py), so the pool is one block.
    if outputs_in_arena is None:
        outputs_in_arena = options.cuda_graphs and graph_capture_refusal(graph, ()) is None
    generated, compiled = _generate(graph, chooser, outputs_in_arena)
    return load_generated(graph, generated, options, copy_out, chooser.decisions, dry_run=not compiled)


def load_generated(graph: Graph, generated, options: Options, copy_out: Sequence[int] = (),
                   autotune: Sequence[dict] = (), dry_run: bool = True) -> CompiledGraph:
    """The callable for a generated module (a `GeneratedModule`, or what the graph cache stored of
    one: frontend/graph_cache.py): written to the code cache, imported, and set up to run as
    compile_graph's result does (a dry run before the first call, CUDA graphs). `dry_run=False`:
    no dry run, the first call's launches compile what is not compiled yet (the graph cache's
    loads, whose kernels the storing compile left in Triton's cache; a module whose kernels the
    races and the dry run beside them compiled)."""
    path, _ = write_generated(options.cache_dir, generated)
    module = load_module(path, generated.interpret)
    compiled = CompiledGraph(graph, module, generated, path)
    compiled.autotune = list(autotune)
    compiled.copy_out = list(copy_out)
    compiled.dry_run_first = (dry_run and options.precompile and not generated.interpret
                              and not kernels_already_ran(generated))
    why_not = graph_capture_refusal(graph, compiled.externs) if options.cuda_graphs else "option cuda_graphs off"
    if why_not is None:
        compiled.cuda_graphs = CudaGraphRunner(compiled._call, graph.name, copy_out)
    compiled.cuda_graphs_status = why_not or "on"
    return compiled
