"""Peak memory in the harness: the measurement (with a fake CUDA allocator on CPU, and for real on
the GPU), ember's comparison with eager, and how the JSON, the tables and the console show it, with
numbers and with "not measured" (None on CPU, shown as "—", never 0). The numbers are synthetic.
"""
import json

import pytest
import torch

from test_bench_harness import _cfg  # importing it imports bench/ the way bench/run.py does

from bench import memory, report, runner  # noqa: E402
from bench.backends import Backend  # noqa: E402
from bench.workload import Case, Workload  # noqa: E402

MiB = memory.MiB


def test_not_measured_on_cpu_and_no_extra_call():
    def must_not_run():
        raise AssertionError("the CPU run makes no memory call")
    assert memory.peak_memory(must_not_run, "cpu") == dict.fromkeys(memory.KEYS)
    assert memory.mib(None) == "—" and memory.mib(0) == "0.0" and memory.mib(300 * MiB) == "300"


class FakeAllocator:
    """Stands in for torch.cuda's allocator statistics: allocated bytes and a resettable peak."""

    def __init__(self, allocated):
        self.allocated = self.peak = allocated
        self.calls = []

    def alloc(self, n):
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def install(self, monkeypatch):
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "synchronize", lambda device=None: self.calls.append("sync"))
        monkeypatch.setattr(cuda, "empty_cache", lambda: self.calls.append("empty_cache"))
        monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: self.allocated)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: self.peak)

        def reset(device=None):
            self.calls.append("reset")
            self.peak = self.allocated
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", reset)


def test_peak_is_measured_above_what_was_allocated_before(monkeypatch):
    fake = FakeAllocator(allocated=1000 * MiB)
    fake.peak = 5000 * MiB  # an earlier, larger peak (another backend, do_bench): must not count
    fake.install(monkeypatch)

    def call():  # activations up and down, an output that survives the call
        fake.calls.append("call")
        fake.alloc(300 * MiB)
        fake.alloc(-200 * MiB)
    got = memory.peak_memory(call, "cuda")
    assert got == {"mem_before_bytes": 1000 * MiB, "mem_peak_bytes": 1300 * MiB, "mem_call_bytes": 300 * MiB}
    assert fake.calls[-3:] == ["reset", "call", "sync"] and "empty_cache" in fake.calls[:-3]


def _rec(call, peak, status="ok"):
    return {"status": status, "mem_call_bytes": call * MiB, "mem_peak_bytes": peak * MiB,
            "mem_before_bytes": (peak - call) * MiB}


def test_ember_is_flagged_when_its_call_or_absolute_peak_is_above_eager():
    eager = _rec(200, 1200)
    above = _rec(300, 1300)
    memory.compare(eager, above, flag=True)
    assert above["mem_ratio"] == 1.5 and above["mem_above_eager"] == ["call 300 vs eager 200 MiB",
                                                                       "absolute 1300 vs eager 1200 MiB"]
    holds = _rec(150, 1250)  # a smaller call, but 100 MiB more held between calls
    memory.compare(eager, holds, flag=True)
    assert holds["mem_ratio"] == 0.75 and holds["mem_above_eager"] == ["absolute 1250 vs eager 1200 MiB"]
    same = _rec(200.5, 1200.5)  # within the 1 MiB slack
    memory.compare(eager, same, flag=True)
    assert same["mem_above_eager"] == []
    inductor = _rec(300, 1300)  # only ember is flagged; every compiled row gets its ratio
    memory.compare(eager, inductor, flag=False)
    assert inductor["mem_ratio"] == 1.5 and "mem_above_eager" not in inductor
    cpu = dict.fromkeys(memory.KEYS)
    memory.compare(dict.fromkeys(memory.KEYS), cpu, flag=True)
    assert cpu == dict.fromkeys(memory.KEYS)


def _results(cases):
    return {"env": {"torch": "x", "triton": "y", "time_utc": "now", "gpu": "H100", "ember": {"commit": "abc"}},
            "config": {"command": "python bench/run.py", "smoke": False, "dtype": "bfloat16",
                       "backends": ["eager", "inductor", "ember"],
                       "labels": {"eager": "eager", "inductor": "TorchInductor", "ember": "ember"}},
            "cases": cases}


def _model(name, eager, inductor, ember):
    memory.compare(eager, inductor, flag=False)
    memory.compare(eager, ember, flag=True)
    return {"name": name, "group": "models", "status": "done", "shape": "8x512 tokens", "refs": {},
            "backends": {"eager": dict(eager, status="reference", ms=9.0),
                         "inductor": dict(inductor, ms=4.0), "ember": dict(ember, ms=6.0)}}


def test_tables_and_json_with_numbers_and_with_not_measured(tmp_path):
    cpu = dict(dict.fromkeys(memory.KEYS), status="ok")
    results = _results([
        _model("gpt2", _rec(200, 1200), _rec(80, 1080), _rec(300, 1300)),
        _model("bert-base", _rec(400, 900), _rec(390, 890), _rec(350, 850)),
        _model("resnet50", dict(cpu), dict(cpu), dict(cpu)),
        _model("llama-1b-ish", _rec(500, 3000), _rec(450, 2950), {"status": "WRONG", "err": 0.5, "tol": 0.05}),
    ])
    md = report.markdown(results)
    assert "peak MiB, call (eager / TorchInductor / ember) | ember / eager peak |" in md
    assert "| 200 / 80.0 / 300 | 1.50 ABOVE EAGER |" in md
    assert "| 400 / 390 / 350 | 0.88 |" in md
    assert "| — / — / — | — |" in md  # not measured: never shown as 0
    assert "| 500 / 450 / WRONG | — |" in md
    assert "| 1200 / 1080 / 1300 |" in md and "| 900 / 890 / 850 |" in md  # absolute, second table
    assert ("- gpt2 / ember: peak memory above eager's: call 300 vs eager 200 MiB; "
            "absolute 1300 vs eager 1200 MiB") in md
    assert "bert-base / ember: peak memory" not in md
    report.write_json(results, tmp_path / "r.json")
    back = {c["name"]: c["backends"] for c in json.loads((tmp_path / "r.json").read_text())["cases"]}
    assert back["resnet50"]["ember"]["mem_call_bytes"] is None
    assert back["gpt2"]["ember"]["mem_call_bytes"] == 300 * MiB and back["gpt2"]["ember"]["mem_ratio"] == 1.5


def test_memory_a_backend_keeps_between_calls_is_counted():
    # ember's CUDA graphs: a replay allocates nothing; the arenas (outputs included), the pool and
    # the input buffers are its memory.
    rec = {"mem_before_bytes": 1000 * MiB, "mem_peak_bytes": 1001 * MiB, "mem_call_bytes": 1 * MiB}
    held = {"pool_reserved": 300 * MiB, "pool_allocated": 100 * MiB, "input_buffers": 2 * MiB,
            "arenas": 50 * MiB}
    got = memory.add_held(rec, held)
    assert got["mem_call_bytes"] == 353 * MiB          # the whole pool, the arenas, the buffers
    assert got["mem_peak_bytes"] == 1201 * MiB         # the pool's idle part: the rest is in "before"
    assert got["mem_held"] == held
    assert memory.add_held(rec, dict(held, pool_reserved=0, pool_allocated=0))["mem_call_bytes"] == 53 * MiB
    assert memory.add_held(rec, dict.fromkeys(held, 0)) == rec


def test_console_line_shows_the_call_peak_and_the_flag():
    ember = _rec(300, 1300)
    memory.compare(_rec(200, 1200), ember, flag=True)
    text = runner.line("ember", dict(ember, err=1e-3), None)
    assert "peak +300 MiB" in text and "PEAK MEMORY ABOVE EAGER: call 300 vs eager 200 MiB" in text
    assert "MiB" not in runner.line("ember", dict(dict.fromkeys(memory.KEYS), status="ok", err=1e-3), None)


def _train_case():
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))

    def build(cfg):
        return Workload(model, (torch.randn(8, 16),), pick=lambda out: out.square().mean(), train=True,
                        kind="train", shape="8x16", dtype=cfg.dtype)
    return Case("mlp-train", "train", build), model


def test_runner_measures_models_only_after_timing_and_flags_ember(tmp_path, monkeypatch):
    """The runner's wiring, with a stand-in measurement: one extra call per model row, made with no
    gradients left over, leaving none behind, and ember (here aot_eager under ember's name) flagged."""
    seen = []
    case, model = _train_case()

    def fake_peak(fn, device, held=None):
        assert all(p.grad is None for p in model.parameters()), "the call must allocate its own gradients"
        seen.append(device)
        fn()
        assert all(p.grad is not None for p in model.parameters())
        call = 100 * MiB * len(seen)  # each backend needs more than the one before
        return {"mem_before_bytes": 0, "mem_peak_bytes": call, "mem_call_bytes": call}
    monkeypatch.setattr(runner, "peak_memory", fake_peak)
    backends = [Backend("eager", "eager"), Backend("ember", "ember", backend="aot_eager")]
    rec = runner.run_case(case, backends, _cfg(tmp_path), log=lambda s: None)
    assert seen == ["cpu", "cpu"]
    assert all(p.grad is None for p in model.parameters()), "no gradients left for the next backend"
    ember = rec["backends"]["ember"]
    assert ember["mem_ratio"] == 2.0 and ember["mem_above_eager"][0] == "call 200 vs eager 100 MiB"
    assert rec["backends"]["eager"]["mem_call_bytes"] == 100 * MiB

    seen.clear()
    runner.run_case(_case_kernel(), backends, _cfg(tmp_path), log=lambda s: None)
    assert seen == [], "kernel rows are not measured"


def _case_kernel():
    def build(cfg):
        return Workload(torch.relu, (torch.randn(8, 32),), kind="kernel", shape="8x32", dtype=cfg.dtype)
    return Case("relu", "kernels", build)


def test_a_failed_measurement_keeps_the_rows_time(tmp_path, monkeypatch):
    def boom(fn, device, held=None):
        raise RuntimeError("CUDA out of memory")
    monkeypatch.setattr(runner, "peak_memory", boom)
    case, model = _train_case()
    rec = runner.run_case(case, [Backend("eager", "eager")], _cfg(tmp_path), log=lambda s: None)
    eager = rec["backends"]["eager"]
    assert eager["status"] == "reference" and eager["ms"] == 0.5 and "out of memory" in eager["mem_error"]
    assert all(p.grad is None for p in model.parameters())
    md = report.markdown(_results([dict(rec, shape="8x16")]))
    assert "mlp-train / eager: peak memory not measured: RuntimeError: CUDA out of memory" in md


def test_runner_on_cpu_records_not_measured(tmp_path):
    backends = [Backend("eager", "eager"), Backend("ember", "ember", backend="aot_eager")]
    rec = runner.run_case(_train_case()[0], backends, _cfg(tmp_path), log=lambda s: None)
    for r in rec["backends"].values():
        assert r["status"] in ("reference", "ok") and all(r[k] is None for k in memory.KEYS)
        assert "mem_ratio" not in r


@pytest.mark.gpu
def test_peak_memory_on_the_gpu():
    keep = torch.empty(32 * MiB, dtype=torch.uint8, device="cuda")  # allocated before: not counted

    def call():
        # fill_ allocates nothing else (a reduction could take a workspace of its own)
        return torch.empty(64 * MiB, dtype=torch.uint8, device="cuda").fill_(1)[:1].clone()
    got = memory.peak_memory(call, "cuda")
    assert got["mem_before_bytes"] >= keep.numel()
    assert 64 * MiB <= got["mem_call_bytes"] < 66 * MiB
    assert got["mem_peak_bytes"] == got["mem_before_bytes"] + got["mem_call_bytes"]


def test_a_backend_whose_pools_it_cannot_see_gets_no_memory_figures(tmp_path, monkeypatch):
    # TorchInductor reduce-overhead: its replays allocate nothing the peak would show, and its
    # pools are not counted, so any figure would understate it. It gets none.
    seen = []

    def fake_peak(fn, device, held=None):
        seen.append(device)
        return {"mem_before_bytes": 0, "mem_peak_bytes": MiB, "mem_call_bytes": MiB}
    monkeypatch.setattr(runner, "peak_memory", fake_peak)
    case, _ = _train_case()
    backends = [Backend("eager", "eager"),
                Backend("inductor_cg", "cg", backend="aot_eager", measures_memory=False)]
    rec = runner.run_case(case, backends, _cfg(tmp_path), log=lambda s: None)
    assert seen == ["cpu"]
    cg = rec["backends"]["inductor_cg"]
    assert cg["status"] == "ok" and all(cg[k] is None for k in memory.KEYS)
    md = report.markdown(_results([dict(rec, shape="8x16")]))
    assert "1.0 / —" in md
