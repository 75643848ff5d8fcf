"""Choosing, at compile time, how one op runs: a library call or one of a template's configs.

The matmul and attention templates each offer several implementations of an op (cuBLAS or SDPA,
and the template at each point of its search space). codegen asks the graph's `Chooser` once per
op while it writes the wrapper; the chosen one is what the wrapper launches.

    impls = [Implementation("cublas", {}, is_library=True),
             Implementation("mm_128x128x64_w8_s3", {"BLOCK_M": 128, ...}), ...]
    pick = chooser.choose("matmul", TEMPLATE_SOURCE, operand_types, impls, make_runner)

`make_runner(impl, tensors)` returns a no-argument callable that runs `impl` once on `tensors`
(random operands the chooser makes, of `operand_types`); it is only called when timing.

How the choice is made (autotune.tune does the work):
  * cache hit (same template source, bucketed shapes, dtypes, GPU, Triton/torch versions and pass
    pipeline fingerprint): the stored decision, nothing is timed or even allocated;
  * CPU interpreter, `autotune=False`, or a symbolic size (no concrete operands to time on): the
    `heuristic` (default: the first implementation listed), not stored;
  * otherwise the implementations are timed with do_bench on random operands, library ones
    first and always, and the fastest is stored (a library call whose result the wrapper's
    memory plan cannot place only by the `autotune_unplanned_margin` factor). With the `autotune_screen` option the template's
    first config (its heuristic one, or the TMA kernel at that tile: matmul_emit) is timed with
    the library first, and the other configs are timed only when it comes within that factor of
    the library's time (tuner.screened_out), within what is left of the compile's
    `autotune_budget_s`; in a compile, those costlier to compile than the first batch's longest
    compile are compiled only then (compile_races).
Every decision is kept in `Chooser.decisions` for the dump's report.json (`autotune` section).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import sympy
import torch

from ..autotune import STATS, Candidate, TuningCache, TuningKey, TuningStats, cached_choice, tune
from ..autotune.tuner import default_timer, screened_out, screening_group, time_candidate
from ..ir.dtypes import to_torch
from ..ir.types import TensorType
from .code_cache import content_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Implementation:
    name: str                                   # unique among one op's implementations
    config: dict[str, Any] = field(default_factory=dict)  # JSON-able; stored in the cache
    is_library: bool = False                    # cuBLAS, SDPA: always timed, wins ties
    # Allocates its result itself, outside the wrapper's memory plan (SDPA: no out= form); wins
    # only by more than the `autotune_unplanned_margin` option (autotune.tuner.fastest).
    unplanned: bool = False


Runner = Callable[[Implementation, list[torch.Tensor]], Callable[[], Any]]


def concrete_shape(t: TensorType) -> tuple[int, ...] | None:
    """The shape as ints, or None when a size is symbolic."""
    dims = [sympy.sympify(d) for d in t.shape]
    return tuple(int(d) for d in dims) if all(d.is_Integer for d in dims) else None


def random_operand(t: TensorType, shape: tuple[int, ...], device: str) -> torch.Tensor:
    """Values like real activations (not zeros: a kernel that skips work on zeros would time fast)."""
    dtype = to_torch(t.dtype)
    if dtype.is_floating_point:
        return torch.randn(shape, dtype=dtype, device=device)
    if dtype == torch.bool:
        return torch.rand(shape, device=device) > 0.5
    return torch.randint(0, 8, shape, dtype=dtype, device=device)


class Chooser:
    """One per compiled graph: the options' cache, budget and switch, and what was decided."""

    def __init__(self, device: str, *, cache_dir: str | None, autotune: bool = True,
                 budget_s: float | None = None, pipeline: "str | Callable[[], str]" = "",
                 stats: TuningStats | None = None, timer: Any = None, matmul_library: bool = True,
                 attention_library: bool = True, precompile: bool = False,
                 compile_workers: int | None = 0, screen: float | None = None,
                 unplanned_margin: float | None = None):
        self.device = device
        self.cache_dir = cache_dir              # also where timing runs put their modules
        self.interpret = not device.startswith("cuda")
        self.cache = TuningCache(cache_dir) if cache_dir and autotune else None
        self.autotune = autotune
        self.budget_s = budget_s
        self._pipeline = pipeline               # or a function computing it, at the first tuning key
        self.stats = stats
        self.timer = timer                      # tests: a fake timer; None: do_bench on a GPU
        # (for_options: replay_timing.replay_median where graphs are replayed from CUDA graphs)
        self.deadline: float | None = None      # set by the first timed tune
        self.decisions: list[dict[str, Any]] = []
        self.matmul_library = matmul_library    # False: matmuls race ember's template configs only
        self.attention_library = attention_library  # False: SDPA left out of attention's race
        self.precompile = precompile            # compile a race's candidates together before timing
        self.compile_workers = compile_workers  # processes for those compiles (compile_workers.py)
        self.screen = screen                    # see tuner.screened_out; None: time every config
        self.unplanned_margin = unplanned_margin  # see tuner.fastest; None: the fastest wins
        # A timing run's graph inputs by name -> their dim order in memory (a transposed weight):
        # what the matmul emitter builds its TMA kernel's layouts from (matmul_emit.py).
        self.input_layouts: dict[str, tuple[int, ...]] = {}
        # Set by compiled_graph._generate around a first codegen pass: races are noted, not run.
        self.collecting = False
        self.collected: list[tuple[TuningKey, list[Candidate]]] = []
        self.compiled: set[TuningKey] = set()   # races whose candidates compile_races compiled
        self.measured: dict[TuningKey, dict[str, float]] = {}  # times compile_races took first
        self.collected_hits = 0

    @property
    def pipeline(self) -> str:
        """The pass pipeline's fingerprint in tuning keys."""
        if callable(self._pipeline):
            self._pipeline = self._pipeline()
        return self._pipeline

    @classmethod
    def for_options(cls, device: str, options) -> "Chooser":
        def fingerprint() -> str:
            # Computed when the first tuning key is made, not here: it reads the source of every
            # pass (inspect.getsource, ~0.15 s per process), and a CPU (interpreter) compile, or
            # one without templates, makes no key at all.
            from ..passes import pipeline_fingerprint
            try:
                return pipeline_fingerprint(options.pipeline)
            except Exception:  # noqa: BLE001 - a pipeline that ran already; never fail codegen on this
                return ""
        # Graphs replayed from CUDA graphs run their races' winners without host time between
        # kernels: the races are timed that way too (replay_timing.py).
        timer = None
        if options.cuda_graphs and device.startswith("cuda"):
            from .replay_timing import replay_median
            timer = replay_median
        return cls(device, cache_dir=options.cache_dir, autotune=options.autotune, timer=timer,
                   budget_s=options.autotune_budget_s, pipeline=fingerprint,
                   matmul_library=options.matmul_library, attention_library=options.attention_library,
                   precompile=options.precompile, compile_workers=options.compile_workers,
                   screen=options.autotune_screen, unplanned_margin=options.autotune_unplanned_margin)

    def _remaining(self) -> float | None:
        if self.budget_s is None:
            return None
        if self.deadline is None:
            self.deadline = time.perf_counter() + self.budget_s
        return max(0.0, self.deadline - time.perf_counter())

    def choose(self, what: str, template_source: str, operands: Sequence[TensorType],
               impls: Sequence[Implementation], make_runner: Runner,
               heuristic: Callable[[Sequence[Implementation]], Implementation] | None = None
               ) -> Implementation:
        """Pick one of `impls` for an op whose operands have `operands`' types (see module doc).
        `what` names the op in progress lines and the report ("matmul", "attention")."""
        impls = list(impls)
        if not impls:
            raise ValueError(f"choose({what}): no implementations")
        shapes = [concrete_shape(t) for t in operands]
        pick = (heuristic or (lambda xs: xs[0]))(impls)
        if self.interpret or not self.autotune or any(s is None for s in shapes):
            why = ("CPU interpreter" if self.interpret else "autotune off" if not self.autotune
                   else "symbolic sizes")
            self._record(what, None, pick, f"heuristic ({why})", {})
            return pick

        tensors: list[torch.Tensor] = []

        def runner_for(impl: Implementation) -> Callable[[], Any]:
            fn = None

            def run():
                nonlocal fn
                if not tensors:  # allocated on the first timing only: a cache hit allocates nothing
                    tensors.extend(random_operand(t, s, self.device) for t, s in zip(operands, shapes))
                if fn is None:
                    fn = make_runner(impl, tensors)
                return fn()
            return run

        key = TuningKey.make(content_hash(template_source), shapes, [to_torch(t.dtype) for t in operands],
                             torch.device(self.device), self.pipeline)
        candidates = [Candidate(i.name, dict(i.config), run=runner_for(i), is_library=i.is_library,
                                unplanned=i.unplanned) for i in impls]
        by_name = {i.name: i for i in impls}
        kwargs: dict[str, Any] = {"cache": self.cache, "budget_s": self._remaining(), "screen": self.screen,
                                  "measured": self.measured.pop(key, None),
                                  "unplanned_margin": self.unplanned_margin,
                                  "heuristic": lambda cs: next(c for c in cs if c.name == pick.name)}
        if self.stats is not None:
            kwargs["stats"] = self.stats
        if self.timer is not None:
            kwargs["timer"] = self.timer
        if self.collecting:
            stored = (cached_choice(self.cache, key, candidates, self.unplanned_margin)
                      if self.cache is not None else None)
            if stored is None:
                # Each layer of a model asks again under the same key: one race (its first) is timed.
                if all(k != key for k, _ in self.collected):
                    self.collected.append((key, candidates))
                return pick  # a placeholder: the pass that times the race replaces this one
            self.collected_hits += 1
            self._record(what, key, by_name[stored.name], stored.source, stored.timings_ms)
            return by_name[stored.name]
        if self.precompile and key not in self.compiled:
            kwargs["prepare"] = functools.partial(_compile_all, device=self.device)
        choice = tune(key, candidates, **kwargs)
        chosen = by_name[choice.name]
        self._record(what, key, chosen, choice.source, choice.timings_ms)
        return chosen

    def _record(self, what: str, key: TuningKey | None, impl: Implementation, source: str,
                timings: dict[str, float]) -> None:
        self.decisions.append({"op": what, "choice": impl.name, "config": dict(impl.config),
                               "is_library": impl.is_library, "source": source,
                               "key": key.summary() if key is not None else None,
                               "timings_ms": {k: round(v, 5) for k, v in timings.items()}})


def end_collecting(chooser: "Chooser") -> bool:
    """Close a collecting pass; True when it is final (no race to run). Its cache hits are counted
    then, and only then: a pass that runs races counts them again."""
    chooser.collecting = False
    final = not chooser.collected
    if final:
        (chooser.stats if chooser.stats is not None else STATS).hits += chooser.collected_hits
    chooser.collected_hits = 0
    return final


def compile_races(chooser: "Chooser", alongside: Callable[[], Any] | None = None) -> int:
    """Compile the candidates of the races a collecting pass noted (see compile_graph) in batches
    across the whole graph, so the pool is never waiting on the slowest candidate of a small race.
    Without a screen: one batch of every candidate. With one: first each race's screening group
    (library and default config) with the other configs no costlier to compile than the
    batch's longest compile (compile_cost); the screening groups are then timed
    (`chooser.measured`, so tune() does not time them again); then one batch of the costlier
    configs of the races the screen kept, if any.
    `alongside` (compiled_graph's dry run of the module written before the races) runs on a
    thread of its own from the start, with its own compile pool, and is waited for at the end:
    its kernels do not depend on the races, and its dry run (fake tensors through the whole
    wrapper, ~0.4 s of Python alone, 1.5 s and more while the candidates compile) no longer
    holds up either batch, whose ends the timings wait for. Returns how many candidates were
    compiled."""
    races = chooser.collected
    chooser.compiled.update(key for key, _ in races)
    chooser.collected = []
    if not races:
        return 0
    from . import compile_workers
    compile_workers.start(chooser.compile_workers)  # a cold compile: worth the processes
    background = _compile_in_background(alongside)
    try:
        return _compile_batches(chooser, races)
    finally:
        if background is not None:
            background.join()


def _compile_batches(chooser: "Chooser", races: list[tuple[TuningKey, list[Candidate]]]) -> int:
    if chooser.screen is None:
        batch = [c for _, race in races for c in race]
        _compile_all(batch, chooser.device)
        return len(batch)
    groups = [(key, race, screening_group(race)) for key, race in races]
    first = [c for _, _, group in groups for c in group]
    # The other configs that compile no longer than the first batch's longest compile join it
    # before the screen has decided, in that compile's shadow: the pool has idle threads while
    # it runs (a TMA probe, ~2 s on the H100 host), and a race the screen keeps then has
    # nothing left to compile, often no second batch at all. A costlier config waits for the
    # screen. The ones of races the screen drops are compiled for nothing, on idle threads.
    shadow = max((compile_cost(c) for c in first), default=0.0)
    early = [c for _, race, group in groups for c in race if c not in group and compile_cost(c) <= shadow]
    compiled = set(first) | set(early)  # Candidates compare by identity
    _compile_all(first + early, chooser.device)
    rest: list[Candidate] = []
    stats = chooser.stats if chooser.stats is not None else STATS
    for key, race, group in groups:
        timer = chooser.timer if chooser.timer is not None else default_timer(key)
        timings: dict[str, float] = {}
        for cand in group if timer is not None else ():
            stats.benchmarks += 1  # timer calls, failed ones too (as tune() counts them)
            try:
                timings[cand.name] = time_candidate(timer, cand)
            except Exception:  # noqa: BLE001 - tune() times it again and records the failure
                pass
        chooser.measured[key] = timings
        if not screened_out(timings, race, chooser.screen, chooser.unplanned_margin):
            rest += [c for c in race if c not in compiled]
    if rest:
        _compile_all(rest, chooser.device)
    return len(first) + len(early) + len(rest)


def _compile_in_background(alongside: Callable[[], Any] | None) -> threading.Thread | None:
    """Run `alongside` on a new thread inside a precompiling() of its own (the precompile state
    and Triton's compile mode are per thread: contextvars), so its launches compile on their
    own pool while the calling thread runs the races. Join the thread before using its kernels.
    A failure only costs its compiles: the first call compiles what is missing."""
    if alongside is None:
        return None

    def run() -> None:
        from .precompile import precompiling
        try:
            with precompiling():
                alongside()
        except Exception as e:  # noqa: BLE001 - see the docstring
            log.debug("ember: compiling alongside the races failed: %s: %s", type(e).__name__, e)
    thread = threading.Thread(target=run, name="ember-alongside", daemon=True)
    thread.start()
    return thread


def compile_cost(cand: Candidate) -> float:
    """A rough relative cost of compiling `cand`, to submit the slowest compiles first: Triton's
    time grows with the tile (the BLOCK_* sizes), the pipeline's stages and TMA's descriptors (on
    the H100 host: a 128x256 TMA tile with 3 stages ~4 s, a 128x128 tiled one ~1.2 s, a 64x64
    one ~0.5 s, an attention config ~1.5 s, a library call's epilogue kernel ~0.4 s). It orders
    a batch and decides which configs compile before a race's screen does (compile_races); it
    never changes a choice."""
    if cand.is_library:
        return 0.0
    cfg = cand.config
    tile = math.prod(v for k, v in cfg.items() if k.startswith("BLOCK_") and isinstance(v, int)) or 1
    if "BLOCK_K" not in cfg and "BLOCK_N" in cfg:
        # An attention config: two products a step, contracting over the head dim, which is in
        # the source, not the config. Its compiles (1.4-1.7 s, ViT's on the H100 host) are as
        # long as a 128x128x64 tiled matmul's; ranked by BLOCK_M x BLOCK_N alone they were
        # submitted last and ended the batch.
        tile *= 128
    return float(tile * max(1, int(cfg.get("num_stages", 1))) * (2 if cfg.get("TMA") else 1))


def _compile_all(candidates: Sequence[Candidate], device: str | None = None) -> None:
    """Run each candidate once with its launches compiling on a thread pool instead of running
    (precompile.py), so timing finds every kernel compiled. A candidate that fails here is left
    to fail, and be recorded as failed, when it is timed."""
    from .cuda_graphs import on_capture_stream
    from .precompile import precompiling
    # On the capture stream: a library candidate's run really calls cuBLAS, which on the
    # caller's stream would make the process keep a second workspace (cuda_graphs.on_capture_stream).
    on_gpu = bool(device) and device.startswith("cuda")
    aside = on_capture_stream(torch.device(device)) if on_gpu else contextlib.nullcontext()
    with precompiling(), aside:
        # The pool starts each compile as it is submitted: the longest first, so the batch does
        # not end on one long compile started last (stable: ties keep the races' order).
        for cand in sorted(candidates, key=compile_cost, reverse=True):
            try:
                cand.run()
            except Exception:  # noqa: BLE001 - see the docstring
                pass
