"""tune(): pick the fastest of a kernel's candidates once per TuningKey, and remember it.

    choice = tune(key, [Candidate("lib", {}, run=lib_fn, is_library=True),
                        Candidate("b64", {"BLOCK": 64}, run=fn64), ...], cache=TuningCache(dir))

In order:
  1. Cache hit: the stored decision is returned and nothing is timed. A stored name that is no
     longer among the candidates, or whose config changed, is treated as a miss (the search space
     moved under the same key), so a hit can never pick a kernel that is not offered.
  2. No timer (the CPU interpreter, where times say nothing about a GPU): the `heuristic`
     choice (default: the first candidate; callers list their preferred default first). It is
     not stored: it costs nothing to recompute, a changed heuristic takes effect at once, and the
     cache then holds only measured decisions.
  3. Otherwise every candidate is timed (`timer(run) -> ms`, default triton.testing.do_bench's
     median). Library candidates and the heuristic choice are timed first and always, even when
     the budget is spent, so the winner is never slower than the library nor than the untuned
     default. With `screen` (a factor, such as 1.25) the first non-library candidate is timed
     with them: callers list their template's own default config first, and when it runs more
     than `screen` times slower than the library, the rest of the search space is not compiled
     or timed (see `screened_out`). The rest are timed until `budget_s` is spent; the fastest
     wins (ties go to the library, then to list order; with `unplanned_margin`, a candidate
     that allocates its result outside the caller's memory plan must also beat the fastest
     planned one by that factor, see `fastest`) and is stored with all timings, failures
     and what the budget skipped or the screen left out. A decision cut short by the budget or
     the screen is still a hit later: both exist to bound compile time, and retuning at every
     start would pay it every time.
A candidate that raises while being timed (a config that does not fit in shared memory, ...) is
recorded as failed and left out; only if all fail does tune() raise.

A budget per compile: compute a deadline once and pass each kernel what is left of it,
`budget_s=max(0.0, deadline - time.perf_counter())`.

Progress: nothing is printed for a quick tune; once a tune has run longer than `progress_after_s`
(1 s), the lines so far and one line per further candidate go to `progress` (default: stderr).
Several processes may tune the same key at once; each stores a complete decision and the last
write wins (see cache.py).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .cache import TuningCache
from .keys import CPU_INTERPRETER, TuningKey

Timer = Callable[[Callable[[], Any]], float]


@dataclass(frozen=True, eq=False)
class Candidate:
    name: str
    config: dict[str, Any] = field(default_factory=dict)  # JSON-able: it is stored and compared
    run: Callable[[], Any] | None = None  # launches the kernel once on real inputs
    is_library: bool = False  # cuBLAS, cuSPARSELt, ...: always timed
    unplanned: bool = False  # allocates its result itself, outside the caller's memory plan


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    source: str  # "cache", "benchmark" or "heuristic"
    timings_ms: dict[str, float]

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def config(self) -> dict[str, Any]:
        return self.candidate.config


@dataclass
class TuningStats:
    """Counters, for tests and reports: cache lookups, choices made without timing, timer calls."""
    hits: int = 0
    misses: int = 0
    heuristic: int = 0
    benchmarks: int = 0
    skipped: int = 0  # candidates left untimed because the budget was spent
    screened: int = 0  # candidates left uncompiled and untimed by a race's screen


STATS = TuningStats()  # what tune() counts into unless given its own


# do_bench's defaults (25 ms of warm-up, 100 ms of repetitions) cost ~0.15 s per candidate, most
# of a cold compile's tuning time once kernels compile in parallel. A median over 25 ms is still
# over ~100 runs of a 0.1 ms kernel (each run flushes L2 first) and ~15 of a 1.5 ms one, against
# gaps between configs that decide a race of 2% and more.
TUNE_WARMUP_MS, TUNE_REP_MS = 5, 25


def do_bench_median(fn: Callable[[], Any]) -> float:
    import triton.testing  # lazy: the cache and the CLI must not need Triton
    return float(triton.testing.do_bench(fn, warmup=TUNE_WARMUP_MS, rep=TUNE_REP_MS,
                                         return_mode="median"))


def default_timer(key: TuningKey) -> Timer | None:
    """do_bench on a GPU; None (heuristic choice) on the CPU interpreter."""
    return None if key.device == CPU_INTERPRETER else do_bench_median


def first_candidate(candidates: Sequence[Candidate]) -> Candidate:
    return candidates[0]


def screening_group(candidates: Sequence[Candidate]) -> list[Candidate]:
    """What a screened race times before deciding whether to time the rest: its library
    candidates and the first other one (the template at its heuristic config)."""
    probe = next((c for c in candidates if not c.is_library), None)
    return [c for c in candidates if c.is_library] + ([probe] if probe is not None else [])


def screened_out(timings: dict[str, float], candidates: Sequence[Candidate], screen: float | None,
                 unplanned_margin: float | None = None) -> bool:
    """Whether a race's template configs past the first are left out: the template at its default
    config ran more than `screen` times slower than the fastest library candidate. Against an
    `unplanned` library candidate the factor is at least `unplanned_margin`: a template that slow
    still wins the race (fastest), so its other configs are worth timing.

    Why it loses little: a race's template configs are neighbours and their times move
    together. In the model suite's 50 races on an H100 (7 models, every candidate timed at
    5014959), wherever some template config beat the library the default config was at most
    1.18x the library's time; a default 1.25x slower or more never had a winning neighbour. At
    1.25 those races would have compiled 188 of their 398 template candidates (each 1-2 s of a
    CPU core) and chosen the same winners."""
    if screen is None:
        return False
    probe = next((c for c in candidates if not c.is_library), None)
    bars = [timings[c.name] * (max(screen, unplanned_margin) if c.unplanned and unplanned_margin else screen)
            for c in candidates if c.is_library and c.name in timings]
    return probe is not None and probe.name in timings and bool(bars) and timings[probe.name] > min(bars)


def fastest(timings: dict[str, float], candidates: Sequence[Candidate],
            unplanned_margin: float | None = None) -> Candidate:
    """The winner among the timed candidates: the fastest (ties to the library, then list order),
    unless it is `unplanned` and some planned candidate runs within `unplanned_margin` times its
    time; then the fastest planned one. The margin prices memory the time cannot show: an
    unplanned result (SDPA's) is held beside the memory plan, in a CUDA graph for the graph's
    life, where a planned one reuses bytes of buffers already dead."""
    rank = {c.name: i for i, c in enumerate(candidates)}
    timed = [c for c in candidates if c.name in timings]
    order = (lambda c: (timings[c.name], not c.is_library, rank[c.name]))
    best = min(timed, key=order)
    planned = [c for c in timed if not c.unplanned]
    if best.unplanned and unplanned_margin is not None and planned:
        alternative = min(planned, key=order)
        if timings[alternative.name] <= unplanned_margin * timings[best.name]:
            return alternative
    return best


def time_candidate(timer: Timer, cand: Candidate) -> float:
    """`timer(cand.run)` in milliseconds; raises on an error or a time that is not one."""
    ms = float(timer(cand.run))
    if not (math.isfinite(ms) and ms >= 0):
        raise ValueError(f"the timer returned {ms}")
    return ms


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_AUTO: Any = object()


def _as_stored(config: dict[str, Any]) -> Any:
    """The config as it reads back from JSON (tuples become lists), for comparing with a hit."""
    return json.loads(json.dumps(config, sort_keys=True))


def cached_choice(cache: TuningCache, key: TuningKey, candidates: Sequence[Candidate],
                  unplanned_margin: float | None = None) -> Choice | None:
    """The stored decision for `key` if it names one of `candidates` with the same config, and, in
    a race with an unplanned candidate, was made under the same `unplanned_margin` (step 1 of
    tune(), which counts the hit or miss; this counts nothing)."""
    decision = cache.get(key) or {}
    name, timings = decision.get("name"), decision.get("timings_ms")
    hit = next((c for c in candidates if c.name == name), None) if isinstance(name, str) else None
    if hit is None or _as_stored(hit.config) != decision.get("config"):
        return None  # a decision is any JSON dict: a foreign or stale one is a miss
    if any(c.unplanned for c in candidates) and decision.get("unplanned_margin") != unplanned_margin:
        return None  # chosen under another rule (or before there was one): retune
    return Choice(hit, "cache", dict(timings) if isinstance(timings, dict) else {})


def tune(key: TuningKey, candidates: Sequence[Candidate], *, cache: TuningCache | None = None,
         timer: Timer | None = _AUTO, budget_s: float | None = None,
         heuristic: Callable[[Sequence[Candidate]], Candidate] | None = None,
         progress: Callable[[str], None] | None = None, stats: TuningStats | None = None,
         clock: Callable[[], float] = time.perf_counter, progress_after_s: float = 1.0,
         prepare: Callable[[Sequence[Candidate]], None] | None = None, screen: float | None = None,
         measured: dict[str, float] | None = None, unplanned_margin: float | None = None) -> Choice:
    """Choose a candidate for key (see the module docstring). cache=None: nothing is persisted.
    timer: default do_bench on a GPU key, None on a "cpu-interpreter" key. prepare: called before
    any timing with the candidates in the order they will be timed (codegen uses it to compile
    them all at once); with `screen`, once for the screening group and once for the rest unless
    they are screened out; not called on a cache hit or a heuristic choice. measured: times
    already taken of some candidates (the Chooser screens a graph's races together before
    tuning each), used instead of timing them again. unplanned_margin: see `fastest`."""
    stats = stats if stats is not None else STATS
    candidates = list(candidates)
    if not candidates:
        raise ValueError("tune: no candidates")
    by_name = {c.name: c for c in candidates}
    if len(by_name) != len(candidates):
        raise ValueError(f"tune: candidate names repeat: {[c.name for c in candidates]}")

    if cache is not None:
        stored = cached_choice(cache, key, candidates, unplanned_margin)
        if stored is not None:
            stats.hits += 1
            return stored
        stats.misses += 1

    pick = (heuristic or first_candidate)(candidates)
    if by_name.get(getattr(pick, "name", None)) is not pick:
        raise ValueError(f"tune: the heuristic returned {pick!r}, not one of the candidates")
    if timer is _AUTO:
        timer = default_timer(key)
    if timer is None:
        stats.heuristic += 1
        return Choice(pick, "heuristic", {})

    # Must-time candidates first, so a budget spent early can only cut optional ones.
    libraries = [c for c in candidates if c.is_library]
    must = libraries + ([] if pick.is_library else [pick])
    screening = screen is not None and bool(libraries)  # nothing to screen against otherwise
    if screening:
        must += [c for c in screening_group(candidates) if c not in must]
    rest = [c for c in candidates if c not in must]
    measured = dict(measured or {})
    if prepare is not None:
        prepare(must if screening else must + rest)
    start = clock()
    timings: dict[str, float] = {}
    failed: dict[str, str] = {}
    skipped: list[str] = []
    screened: list[str] = []
    total = len(candidates)
    shown = _Progress(progress or _stderr, clock, start, progress_after_s)

    def time_one(i: int, cand: Candidate) -> None:
        try:
            if cand.name in measured:
                ms = measured[cand.name]
            else:
                stats.benchmarks += 1
                ms = time_candidate(timer, cand)
        except Exception as e:  # noqa: BLE001 - one bad config must not fail the compile
            failed[cand.name] = f"{type(e).__name__}: {e}"
            shown(f"ember autotune {key.kernel[:12]} [{i}/{total}] {cand.name}: failed ({e})")
            return
        timings[cand.name] = ms
        shown(f"ember autotune {key.kernel[:12]} [{i}/{total}] {cand.name} {cand.config}: {ms:.4f} ms")

    for i, cand in enumerate(must, 1):
        time_one(i, cand)
    if screening and rest and screened_out(timings, candidates, screen, unplanned_margin):
        screened = [c.name for c in rest]
        stats.screened += len(screened)
        shown(f"ember autotune {key.kernel[:12]}: the default config is over {screen:g}x the "
              f"library's time; {len(screened)} other config(s) not compiled or timed")
        rest = []
    if screening and rest and prepare is not None:
        prepare(rest)
    for i, cand in enumerate(rest, len(must) + 1):
        if budget_s is not None and clock() - start >= budget_s:
            skipped = [c.name for c in rest[i - len(must) - 1:]]
            stats.skipped += len(skipped)
            shown(f"ember autotune {key.kernel[:12]}: time budget of {budget_s:g} s spent; "
                  f"{len(skipped)} candidate(s) not timed")
            break
        time_one(i, cand)

    if not timings:
        raise RuntimeError(f"tune: every candidate failed for {key.summary()}: {failed}")
    best = fastest(timings, candidates, unplanned_margin)
    shown(f"ember autotune {key.kernel[:12]}: chose {best.name} ({timings[best.name]:.4f} ms)")
    if cache is not None:
        cache.put(key, {"name": best.name, "config": best.config, "is_library": best.is_library,
                        "timings_ms": timings, "failed": failed, "skipped": skipped, "screened": screened,
                        "budget_s": budget_s, "unplanned_margin": unplanned_margin,
                        "tune_s": round(clock() - start, 6)})
    return Choice(best, "benchmark", timings)


class _Progress:
    """Holds lines back until the tune has run for `after_s`, then shows them and all later ones."""

    def __init__(self, sink: Callable[[str], None], clock: Callable[[], float], start: float,
                 after_s: float):
        self.sink, self.clock, self.start, self.after_s = sink, clock, start, after_s
        self.held: list[str] | None = []  # None once lines are shown as they come

    def __call__(self, line: str) -> None:
        if self.held is None:
            self.sink(line)
        elif self.clock() - self.start > self.after_s:
            for held in self.held:
                self.sink(held)
            self.held = None
            self.sink(line)
        else:
            self.held.append(line)
