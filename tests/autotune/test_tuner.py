"""tune() with a fake timer and a fake clock: what is timed, what is chosen, what is stored."""
import pytest

from ember.autotune import (CPU_INTERPRETER, Candidate, TuningCache, TuningStats, default_timer,
                            do_bench_median, tune)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeTimer:
    """Returns scripted milliseconds per candidate; each call advances the clock by `cost_s`."""

    def __init__(self, times, clock=None, cost_s=0.0):
        self.times, self.clock, self.cost_s, self.calls = dict(times), clock, cost_s, []

    def __call__(self, fn):
        name = fn()  # each candidate's run returns its name (see cands)
        self.calls.append(name)
        if self.clock is not None:
            self.clock.now += self.cost_s
        t = self.times[name]
        if isinstance(t, Exception):
            raise t
        return t


def cands(*names, library=("cublas",)):
    return [Candidate(n, {"BLOCK": 16 * (i + 1)}, run=lambda n=n: n, is_library=n in library)
            for i, n in enumerate(names)]


TIMES = {"cublas": 1.0, "b16": 1.5, "b32": 0.7, "b64": 0.9}


def test_fastest_is_chosen_library_timed_and_stored(tmp_path, make_key):
    cache, stats, timer = TuningCache(tmp_path), TuningStats(), FakeTimer(TIMES)
    choice = tune(make_key(), cands("b16", "b32", "b64", "cublas"), cache=cache, timer=timer,
                  stats=stats, progress=lambda line: None)
    assert (choice.name, choice.config, choice.source) == ("b32", {"BLOCK": 32}, "benchmark")
    assert sorted(timer.calls) == sorted(TIMES)
    assert timer.calls[:2] == ["cublas", "b16"]  # library and the heuristic pick first
    stored = cache.get(make_key())
    assert stored["name"] == "b32" and stored["timings_ms"] == TIMES and stored["skipped"] == []
    assert (stats.misses, stats.hits, stats.benchmarks) == (1, 0, 4)


def test_second_tune_with_the_same_key_benchmarks_nothing(tmp_path, make_key):
    cache = TuningCache(tmp_path)
    tune(make_key(), cands("b16", "b32", "cublas"), cache=cache, timer=FakeTimer(TIMES))
    stats, timer = TuningStats(), FakeTimer(TIMES)
    choice = tune(make_key(), cands("b16", "b32", "cublas"), cache=cache, timer=timer, stats=stats)
    assert (choice.name, choice.source, timer.calls) == ("b32", "cache", [])
    assert (stats.hits, stats.misses, stats.benchmarks) == (1, 0, 0)
    assert choice.candidate.run() == "b32"  # the caller gets the live candidate back


def test_library_wins_when_fastest_and_on_ties(make_key):
    assert tune(make_key(), cands("b16", "cublas"), timer=FakeTimer({"b16": 2.0, "cublas": 1.0})).name == "cublas"
    assert tune(make_key(), cands("b16", "cublas"), timer=FakeTimer({"b16": 1.0, "cublas": 1.0})).name == "cublas"


def test_cpu_interpreter_uses_the_heuristic_and_stores_nothing(tmp_path, make_key):
    cache, stats = TuningCache(tmp_path), TuningStats()
    key = make_key(device=CPU_INTERPRETER)
    assert default_timer(key) is None and default_timer(make_key()) is do_bench_median
    pick_b32 = lambda cs: next(c for c in cs if c.name == "b32")  # noqa: E731
    for _ in range(2):  # deterministic: same answer each time, nothing timed or stored
        choice = tune(key, cands("b16", "b32", "cublas"), cache=cache, heuristic=pick_b32, stats=stats)
        assert (choice.name, choice.source) == ("b32", "heuristic")
    assert tune(key, cands("b16", "b32"), cache=cache).name == "b16"  # default: the first one
    assert cache.entries() == []
    assert (stats.heuristic, stats.benchmarks) == (2, 0)


def test_budget_stops_early_but_always_times_library_and_heuristic(tmp_path, make_key):
    clock, cache, stats = FakeClock(), TuningCache(tmp_path), TuningStats()
    timer = FakeTimer({**TIMES, "b128": 0.1, "b256": 0.1}, clock, cost_s=1.0)
    names = ("b16", "b32", "b64", "b128", "b256", "cublas")
    choice = tune(make_key(), cands(*names), cache=cache, timer=timer, budget_s=2.5, clock=clock,
                  stats=stats, progress=lambda line: None)
    # cublas and b16 (the heuristic pick) take 2 s, b32 fits before 2.5 s, the rest are skipped.
    assert timer.calls == ["cublas", "b16", "b32"]
    assert choice.name == "b32"
    assert cache.get(make_key())["skipped"] == ["b64", "b128", "b256"]
    assert stats.skipped == 3
    # A zero budget still races the library against the heuristic choice.
    timer0 = FakeTimer(TIMES, FakeClock())
    assert tune(make_key(), cands("b16", "b32", "cublas"), timer=timer0, budget_s=0.0).name == "cublas"
    assert timer0.calls == ["cublas", "b16"]


def test_progress_only_for_long_tunes(make_key):
    lines = []
    tune(make_key(), cands("b16", "b32", "cublas"), timer=FakeTimer(TIMES, FakeClock(), cost_s=0.1),
         clock=FakeClock(), progress=lines.append)
    assert lines == []
    clock = FakeClock()
    tune(make_key(), cands("b16", "b32", "b64", "cublas"), timer=FakeTimer(TIMES, clock, cost_s=0.6),
         clock=clock, progress=lines.append)
    # Held back until 1 s had passed, then everything: 4 candidates and the choice.
    assert len(lines) == 5 and "[1/4] cublas" in lines[0] and "chose b32" in lines[-1]


def test_failing_candidate_is_left_out(tmp_path, make_key):
    cache = TuningCache(tmp_path)
    times = {**TIMES, "b32": RuntimeError("out of shared memory")}
    choice = tune(make_key(), cands("b16", "b32", "b64", "cublas"), cache=cache, timer=FakeTimer(times),
                  progress=lambda line: None)
    assert choice.name == "b64"
    assert "out of shared memory" in cache.get(make_key())["failed"]["b32"]
    with pytest.raises(RuntimeError, match="every candidate failed"):
        tune(make_key(), cands("b16"), timer=FakeTimer({"b16": ValueError("bad")}), progress=lambda line: None)


def test_stored_choice_no_longer_offered_is_a_miss(tmp_path, make_key):
    cache = TuningCache(tmp_path)
    tune(make_key(), cands("b16", "b32", "cublas"), cache=cache, timer=FakeTimer(TIMES))
    # b32 gone from the search space: retune instead of returning a kernel nobody offered.
    timer = FakeTimer(TIMES)
    assert tune(make_key(), cands("b16", "cublas"), cache=cache, timer=timer).name == "cublas"
    assert timer.calls == ["cublas", "b16"]
    # Same name, other config: also retuned.
    changed = [Candidate("b16", {"BLOCK": 999}, run=lambda: "b16"), *cands("cublas")]
    timer = FakeTimer(TIMES)
    assert tune(make_key(), changed, cache=cache, timer=timer).source == "benchmark"
    assert timer.calls == ["cublas", "b16"]


def test_bad_arguments(make_key):
    with pytest.raises(ValueError, match="no candidates"):
        tune(make_key(), [], timer=FakeTimer({}))
    with pytest.raises(ValueError, match="repeat"):
        tune(make_key(), cands("b16", "b16"), timer=FakeTimer(TIMES))
    with pytest.raises(ValueError, match="heuristic returned"):
        tune(make_key(), cands("b16"), timer=FakeTimer(TIMES), heuristic=lambda cs: Candidate("x"))


def test_hand_edited_decision_is_a_miss_not_a_crash(tmp_path, make_key):
    cache = TuningCache(tmp_path)
    cache.put(make_key(), {"name": ["b16"], "config": 3, "timings_ms": "fast"})
    timer = FakeTimer(TIMES)
    assert tune(make_key(), cands("b16", "cublas"), cache=cache, timer=timer).source == "benchmark"
    assert cache.get(make_key())["name"] == "cublas"


def test_screen_leaves_out_the_rest_when_the_default_config_is_far_behind(tmp_path, make_key):
    """cands("b16", ...): b16, the first non-library candidate, is the template's default config."""
    cache, stats, prepared = TuningCache(tmp_path), TuningStats(), []
    slow_default = {"cublas": 1.0, "b16": 1.3, "b32": 0.5, "b64": 0.9}
    timer = FakeTimer(slow_default)
    choice = tune(make_key(), cands("cublas", "b16", "b32", "b64"), cache=cache, timer=timer,
                  stats=stats, screen=1.25, prepare=lambda cs: prepared.append([c.name for c in cs]),
                  progress=lambda line: None)
    # b16 is 1.3x the library: b32 would have won, but the screen trusts the default's verdict.
    assert timer.calls == ["cublas", "b16"] and choice.name == "cublas"
    assert prepared == [["cublas", "b16"]]          # the others are not even compiled
    stored = cache.get(make_key())
    assert stored["screened"] == ["b32", "b64"] and stored["skipped"] == []
    assert (stats.screened, stats.benchmarks) == (2, 2)
    # Within the factor: the rest compile in a second batch and are timed.
    close = {**slow_default, "b16": 1.2}
    timer, prepared = FakeTimer(close), []
    choice = tune(make_key(), cands("cublas", "b16", "b32", "b64"), timer=timer, screen=1.25,
                  prepare=lambda cs: prepared.append([c.name for c in cs]))
    assert choice.name == "b32" and sorted(timer.calls) == sorted(close)
    assert prepared == [["cublas", "b16"], ["b32", "b64"]]
    # No library in the race (the template-only benchmark): nothing to screen against.
    timer = FakeTimer(slow_default)
    assert tune(make_key(), cands("b16", "b32", "b64", library=()), timer=timer, screen=1.0).name == "b32"
    assert len(timer.calls) == 3


def test_measured_times_are_used_not_taken_again(make_key):
    timer, stats = FakeTimer(TIMES), TuningStats()
    choice = tune(make_key(), cands("cublas", "b16", "b32"), timer=timer, stats=stats, screen=1.25,
                  measured={"cublas": 1.0, "b16": 1.1})
    assert timer.calls == ["b32"] and choice.name == "b32" and stats.benchmarks == 1
    assert choice.timings_ms == {"cublas": 1.0, "b16": 1.1, "b32": 0.7}


def unplanned_race():
    """SDPA (a library allocating its own result) against two template configs."""
    return [Candidate("sdpa", {}, run=lambda: "sdpa", is_library=True, unplanned=True),
            Candidate("t64", {"BLOCK": 64}, run=lambda: "t64"), Candidate("t128", {"BLOCK": 128}, run=lambda: "t128")]


@pytest.mark.parametrize("times,margin,winner", [
    # The library is 8% faster than the best planned config: within 1.15, the planned one wins.
    ({"sdpa": 1.0, "t64": 1.3, "t128": 1.08}, 1.15, "t128"),
    ({"sdpa": 1.0, "t64": 1.3, "t128": 1.15}, 1.15, "t128"),   # exactly at the margin
    ({"sdpa": 1.0, "t64": 1.3, "t128": 1.16}, 1.15, "sdpa"),   # past it: the library
    ({"sdpa": 1.0, "t64": 1.3, "t128": 1.08}, None, "sdpa"),   # no margin: the fastest
    ({"sdpa": 1.0, "t64": 0.9, "t128": 0.8}, 1.15, "t128"),    # planned and fastest anyway
])
def test_an_unplanned_library_must_win_by_the_margin(tmp_path, make_key, times, margin, winner):
    cache = TuningCache(tmp_path)
    choice = tune(make_key(), unplanned_race(), cache=cache, timer=FakeTimer(times), unplanned_margin=margin)
    assert choice.name == winner
    assert cache.get(make_key())["unplanned_margin"] == margin


@pytest.mark.parametrize("margin,timed,winner", [
    # The default config is 1.4x SDPA: past the screen's 1.25, within the margin's 1.5, so it
    # can still win, and its neighbours are timed (t128 is faster).
    (1.5, ["sdpa", "t128", "t64"], "t128"),
    (1.25, ["sdpa", "t64"], "sdpa"),     # margin = screen: screened out, SDPA wins
])
def test_the_screen_keeps_configs_the_margin_could_pick(make_key, margin, timed, winner):
    timer = FakeTimer({"sdpa": 1.0, "t64": 1.4, "t128": 1.2})
    choice = tune(make_key(), unplanned_race(), timer=timer, screen=1.25, unplanned_margin=margin)
    assert sorted(timer.calls) == sorted(timed) and choice.name == winner


def test_a_planned_library_is_not_held_to_the_margin(make_key):
    """cuBLAS writes the wrapper's buffer (out=): the fastest wins, however small the lead."""
    choice = tune(make_key(), cands("b16", "b32", "cublas"), timer=FakeTimer({"cublas": 1.0, "b16": 1.01, "b32": 2}),
                  unplanned_margin=1.15)
    assert choice.name == "cublas"


def test_a_decision_made_under_another_margin_is_retuned(tmp_path, make_key):
    cache, times = TuningCache(tmp_path), {"sdpa": 1.0, "t64": 1.3, "t128": 1.08}
    assert tune(make_key(), unplanned_race(), cache=cache, timer=FakeTimer(times)).name == "sdpa"
    stats, timer = TuningStats(), FakeTimer(times)
    choice = tune(make_key(), unplanned_race(), cache=cache, timer=timer, stats=stats, unplanned_margin=1.15)
    assert (choice.name, choice.source, stats.misses) == ("t128", "benchmark", 1)
    assert sorted(timer.calls) == ["sdpa", "t128", "t64"]
    again = tune(make_key(), unplanned_race(), cache=cache, timer=FakeTimer(times), unplanned_margin=1.15)
    assert (again.name, again.source) == ("t128", "cache")
