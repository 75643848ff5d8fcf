"""Chooser: the compile-time choice between a library call and template configs (fake timer)."""
import sympy
import torch

from ember.autotune import TuningStats
from ember.autotune import keys as tuning_keys
from ember.codegen import choice
from ember.codegen.choice import Chooser, Implementation
from ember.ir.types import TensorType

IMPLS = [Implementation("library", {}, is_library=True),
         Implementation("t64", {"BLOCK": 64}), Implementation("t128", {"BLOCK": 128})]
TYPES = [TensorType("bf16", (32, 64), "cuda"), TensorType("bf16", (64, 16), "cuda")]
MS = {"library": 2.0, "t64": 1.0, "t128": 3.0}


def fake_gpu(monkeypatch):
    """A 'cuda' chooser that makes its operands on the CPU and names a fake GPU in its keys."""
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand",
                        lambda t, shape, device: torch.randn(shape, dtype=torch.bfloat16))


def make_runner(log):
    def make(impl, tensors):
        assert [tuple(t.shape) for t in tensors] == [(32, 64), (64, 16)]
        assert tensors[0].abs().sum() > 0  # random, never zeros
        return lambda: log.append(impl.name) or impl.name
    return make


def timer_by_name(timed):
    def timer(run):
        name = run()
        timed.append(name)
        return MS[name]
    return timer


def test_times_every_candidate_then_hits_the_cache(monkeypatch, tmp_path):
    fake_gpu(monkeypatch)
    timed, ran = [], []
    stats = TuningStats()
    first = Chooser("cuda:0", cache_dir=str(tmp_path), stats=stats, timer=timer_by_name(timed))
    assert first.choose("matmul", "SRC", TYPES, IMPLS, make_runner(ran)).name == "t64"
    assert sorted(timed) == ["library", "t128", "t64"]
    assert first.decisions[0]["source"] == "benchmark" and first.decisions[0]["choice"] == "t64"

    timed.clear()
    second = Chooser("cuda:0", cache_dir=str(tmp_path), stats=stats, timer=timer_by_name(timed))
    assert second.choose("matmul", "SRC", TYPES, IMPLS, make_runner(ran)).name == "t64"
    assert timed == [] and stats.hits == 1 and second.decisions[0]["source"] == "cache"

    # Another template source is another key: timed again.
    third = Chooser("cuda:0", cache_dir=str(tmp_path), stats=stats, timer=timer_by_name(timed))
    third.choose("matmul", "SRC v2", TYPES, IMPLS, make_runner(ran))
    assert len(timed) == 3


def test_spent_budget_times_only_library_and_default(monkeypatch, tmp_path):
    fake_gpu(monkeypatch)
    timed = []
    c = Chooser("cuda:0", cache_dir=str(tmp_path), budget_s=0.0, timer=timer_by_name(timed))
    heuristic = lambda impls: impls[2]  # noqa: E731
    assert c.choose("matmul", "SRC", TYPES, IMPLS, make_runner([]), heuristic).name == "library"
    assert sorted(timed) == ["library", "t128"]


def test_no_timing_on_the_interpreter_off_or_symbolic(monkeypatch, tmp_path):
    fake_gpu(monkeypatch)
    never = lambda run: (_ for _ in ()).throw(AssertionError("timed"))  # noqa: E731
    cpu = Chooser("cpu", cache_dir=str(tmp_path), timer=never)
    assert cpu.choose("matmul", "SRC", TYPES, IMPLS, make_runner([])).name == "library"
    assert cpu.decisions[0]["source"] == "heuristic (CPU interpreter)"
    off = Chooser("cuda:0", cache_dir=str(tmp_path), autotune=False, timer=never)
    assert off.choose("matmul", "SRC", TYPES, IMPLS, make_runner([]), lambda xs: xs[1]).name == "t64"
    s0 = sympy.Symbol("s0", positive=True, integer=True)
    sym = Chooser("cuda:0", cache_dir=str(tmp_path), timer=never)
    symbolic = [TensorType("bf16", (s0, 64), "cuda"), TYPES[1]]
    assert sym.choose("matmul", "SRC", symbolic, IMPLS, make_runner([])).name == "library"
    assert sym.decisions[0]["source"] == "heuristic (symbolic sizes)"
    assert not list(tmp_path.rglob("*.json"))  # heuristic choices are never stored


def test_a_batch_submits_the_costliest_compiles_first():
    """_compile_all runs its candidates (each submits its kernels' compiles) largest tile first,
    TMA before tiled at one tile, an attention config as a matmul's tile of its size and 128 deep,
    library calls last: the pool then never ends a batch on one
    long compile submitted last."""
    from ember.autotune import Candidate
    order = []

    def cand(name, config=None, library=False):
        return Candidate(name, config or {}, run=lambda: order.append(name), is_library=library)

    tile = lambda m, n, stages, **extra: {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": 64,  # noqa: E731
                                          "num_warps": 4, "num_stages": stages, **extra}
    batch = [cand("library", library=True), cand("small", tile(32, 32, 4)),
             cand("tiled_128x256", tile(128, 256, 3)), cand("tma_128x256", tile(128, 256, 3, TMA=True)),
             cand("tiled_128x128", tile(128, 128, 4)), cand("same_as_small", tile(32, 32, 4)),
             cand("attention_128x64", {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3})]
    choice._compile_all(batch)
    assert order == ["tma_128x256", "tiled_128x256", "tiled_128x128", "attention_128x64", "small",
                     "same_as_small", "library"]
