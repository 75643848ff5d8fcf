"""The harness's own logic on CPU, with a fake timer standing in for do_bench: a wrong result is
WRONG with no time, a failing backend is recorded and the suite goes on, ceilings and anchors line
up, and the JSON / Markdown / plots are written. (The numbers here are synthetic test inputs.)
"""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _bench():
    """Import bench/ as the package `bench`, the way bench/run.py does."""
    if "bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench", REPO / "bench" / "__init__.py",
                                                      submodule_search_locations=[str(REPO / "bench")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench"]


_bench()
from bench import anchors, check, kernels, models, plots, report, runner, suite, timing  # noqa: E402
from bench.backends import Backend, extern_summary, make_backends  # noqa: E402
from bench.run import parse_batch, select  # noqa: E402
from bench.workload import Case, Config, Skip, Workload  # noqa: E402


def _off_by_one(gm, example_inputs):
    return lambda *args: tuple(o + 1 for o in gm(*args))


def _explodes(gm, example_inputs):
    raise RuntimeError("backend exploded")


BACKENDS = [Backend("eager", "eager"), Backend("aot_eager", "aot_eager", backend="aot_eager"),
            Backend("wrong", "wrong", backend=_off_by_one), Backend("boom", "boom", backend=_explodes)]
LABELS = {b.name: b.label for b in BACKENDS}


def _softmax(x):
    return torch.softmax(x * 2, dim=-1)


def _case(name="softmax"):
    def build(cfg):
        x = torch.randn(8, 32, dtype=cfg.dtype)
        return Workload(_softmax, (x,), kind="kernel", shape="8x32", dtype=cfg.dtype,
                        bytes=2 * x.numel() * x.element_size(), ceiling="copy_GBs")
    return Case(name, "kernels", build)


def _cfg(tmp_path, **kw):
    return Config(device="cpu", dtype=torch.float32, timer=lambda fn, grad_to_none=None, warmup_ms=None: (fn(), 0.5)[1],
                  profile=False, errors_dir=str(tmp_path / "errors"), **kw)


def test_wrong_result_has_no_time_and_errors_do_not_stop_the_case(tmp_path):
    rec = runner.run_case(_case(), BACKENDS, _cfg(tmp_path), log=lambda s: None)
    b = rec["backends"]
    assert b["eager"]["status"] == "reference" and b["eager"]["ms"] == 0.5
    assert b["eager"]["err"] == 0.0  # eager's own check: a second call agrees with the first
    assert b["aot_eager"]["status"] == "ok" and b["aot_eager"]["ms"] == 0.5 and b["aot_eager"]["speedup"] == 1.0
    assert b["aot_eager"]["compile_s"] > 0 and b["aot_eager"]["GBs"] > 0
    assert b["wrong"]["status"] == "WRONG" and b["wrong"]["ms"] is None and b["wrong"]["err"] > 0.1
    assert b["boom"]["status"] == "error" and b["boom"]["ms"] is None
    assert "backend exploded" in b["boom"]["exception"]
    assert Path(b["boom"]["traceback"]).read_text().count("backend exploded")


def test_skip_and_build_failure_are_recorded(tmp_path):
    def skip(cfg):
        raise Skip("timm is not installed")

    def broken(cfg):
        raise ValueError("bad config")
    cfg = _cfg(tmp_path)
    assert runner.run_case(Case("a", "models", skip), BACKENDS, cfg)["status"] == "skipped"
    rec = runner.run_case(Case("b", "models", broken), BACKENDS, cfg)
    assert rec["status"] == "error" and "bad config" in rec["exception"]


def test_training_workload_compares_loss_and_every_gradient(tmp_path):
    def build(cfg):
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
        x = torch.randn(8, 16)
        return Workload(model, (x,), pick=lambda out: out.square().mean(), train=True, kind="train",
                        shape="8x16", dtype=cfg.dtype)
    cfg = _cfg(tmp_path, warm=True)
    rec = runner.run_case(Case("mlp-train", "train", build), BACKENDS[:3], cfg, log=lambda s: None)
    assert rec["backends"]["aot_eager"]["status"] == "ok"
    assert rec["backends"]["aot_eager"]["compile_s_warm"] > 0
    assert rec["backends"]["wrong"]["status"] == "WRONG"
    work = build(cfg)
    names = [n for n, _ in work.results(work.target)]
    assert names == ["loss"] + [f"grad:{n}" for n, _ in work.target.named_parameters()]
    assert all(p.grad is None for p in work.target.parameters()), "results() must not leave grads behind"


def test_relative_error_metric():
    want = torch.tensor([1.0, -4.0, 0.0])
    assert check.relative_error(want.clone(), want) == 0.0
    assert check.relative_error(want + 0.04, want) == pytest.approx(0.01)
    assert check.relative_error(torch.tensor([1.0, float("nan"), 0.0]), want) == math.inf
    assert check.relative_error(want[:2], want) == math.inf
    masked = torch.tensor([1.0, float("-inf")])
    assert check.relative_error(masked.clone(), masked) == 0.0
    assert check.tolerance(torch.bfloat16, "model") > check.tolerance(torch.bfloat16, "kernel")


def test_extern_summary_reads_every_report(tmp_path):
    for i, externs in enumerate([[{"target": "aten.mm"}, {"target": "aten.mm"}], [{"op": "aten.convolution"}]]):
        (tmp_path / f"graph{i}").mkdir()
        (tmp_path / f"graph{i}" / "report.json").write_text(json.dumps({"externs": externs}))
    s = extern_summary(tmp_path)
    assert s == {"externs": 3, "extern_ops": {"aten.mm": 2, "aten.convolution": 1}, "graphs": 2}
    assert extern_summary(None) is None
    (tmp_path / "graph0" / "report.json").write_text(json.dumps({"externs": [], "autotune": [
        {"op": "attention", "choice": "flash_128x64_w8_s3"}]}))
    assert extern_summary(tmp_path)["choices"] == ["attention=flash_128x64_w8_s3"]


def test_cli_helpers():
    assert parse_batch("8") == {"*": 8}
    assert parse_batch("gpt2=4, resnet50=32") == {"gpt2": 4, "resnet50": 32}
    cases = [Case("gpt2", "models", None), Case("gpt2-train", "train", None), Case("softmax", "kernels", None)]
    assert [c.name for c in select(cases, "kernels,gpt2")] == ["gpt2", "softmax"]
    assert len(select(cases, "all")) == 3
    cases.append(Case("gpt2-logits", "variants", None))
    assert [c.name for c in select(cases, "")] == ["gpt2", "gpt2-train", "softmax"]  # the suite
    assert len(select(cases, "all")) == 4 and [c.name for c in select(cases, "variants")] == ["gpt2-logits"]
    with pytest.raises(SystemExit):
        select(cases, "nope")
    assert [b.name for b in make_backends(["ember"])] == ["eager", "ember"]


def test_report_and_plots_from_a_timed_run(tmp_path):
    cfg = _cfg(tmp_path)
    rec = runner.run_case(_case("softmax"), BACKENDS, cfg, log=lambda s: None)
    runner.apply_ceilings(rec, {"copy_GBs": rec["backends"]["eager"]["GBs"] * 2})
    assert rec["backends"]["eager"]["pct_ceiling"] == pytest.approx(50.0)
    rows = [{"kind": "membound", "what": "softmax 16384x4096 bf16", "eager_GBs": 1.0, "inductor_GBs": 2.0}]
    anchors.attach(rec, rows)
    assert rec["anchor"]["eager"] == 1.0 and rec["backends"]["eager"]["vs_anchor"] > 0
    model = dict(rec, name="tiny-model", group="models")
    results = {
        "env": {"torch": "x", "triton": "y", "time_utc": "now", "gpu": None, "ember": {"commit": "abc"}},
        "config": {"command": "python bench/run.py", "smoke": False, "dtype": "float32",
                   "backends": [b.name for b in BACKENDS], "labels": LABELS},
        "ceilings": {"copy_GBs": {"what": "d2d copy GB/s", "value": 3.0, "status": "ok"}},
        "cases": [rec, model, {"name": "vit", "group": "models", "status": "skipped", "reason": "timm is not installed"}],
    }
    md = report.markdown(results)
    assert "WRONG" in md and "backend exploded" in md and "skipped vit: timm is not installed" in md
    assert "(50%)" in md
    report.write_json(results, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["cases"][0]["backends"]["wrong"]["ms"] is None
    assert plots.speedups(results, tmp_path / "s.png") and (tmp_path / "s.png").stat().st_size > 0
    assert plots.roofline(results, tmp_path / "r.png") and (tmp_path / "r.png").stat().st_size > 0


def test_anchor_file_is_bundled_and_parsed():
    rows = anchors.load()
    assert anchors.ceilings(rows).keys() == {"copy_GBs", "mm_TFLOPs"}
    for name in ("gpt2-kv", "bert-base", "llama-1b-ish", "vit_base_patch16_224", "resnet50", "convnext_tiny",
                 "softmax", "layer_norm", "gelu_bias", "attention"):
        assert anchors.for_case(rows, name), name
    # The anchor's GPT-2 is transformers' default config, which returns keys and values: gpt2-kv.
    assert anchors.for_case(rows, "gpt2-kv")["inductor"] == pytest.approx(3.638, abs=1e-3)
    assert anchors.for_case(rows, "gpt2") is None


def test_ceilings_are_checked_and_reported(tmp_path):
    ceil = kernels.measure_ceilings(_cfg(tmp_path), copy_numel=1024, size=64)
    assert ceil["copy_GBs"]["status"] == "ok" and ceil["copy_GBs"]["bytes"] == 4 * 1024
    assert ceil["mm_TFLOPs"]["status"] == "ok" and ceil["mm_TFLOPs"]["flops"] == 2 * 64 ** 3
    assert ceil["copy_GBs"]["value"] > 0 and ceil["mm_TFLOPs"]["value"] > 0


def test_every_kernel_case_builds_small_and_eager_runs(tmp_path):
    cfg = _cfg(tmp_path, smoke=True)
    for case in kernels.CASES:
        work = case.build(cfg)
        assert (work.bytes is None) != (work.flops is None), case.name
        assert work.ceiling in ("copy_GBs", "mm_TFLOPs") or work.ceiling.startswith("ref:"), case.name
        (name, out), = work.results(work.target)
        assert torch.isfinite(out).all(), case.name
        for ref in work.refs.values():
            assert check.relative_error(ref(*work.args), out) < 1e-4, case.name


def test_timed_suite_end_to_end_with_a_stand_in_timer(tmp_path):
    """The path the GPU run takes (ceilings, cases, anchors, JSON, Markdown, plots), on CPU."""
    cfg = _cfg(tmp_path, smoke=True, warm=True)
    cases = [c for c in models.CASES + kernels.CASES if c.name in ("gpt2-kv", "softmax", "attention")]
    config = {"command": "python bench/run.py", "smoke": False, "dtype": "float32",
              "backends": [b.name for b in BACKENDS], "labels": LABELS}
    results, written = suite.run(cfg, BACKENDS, cases, tmp_path, config, anchors.load(), comparable=True,
                                 ceilings=lambda c: kernels.measure_ceilings(c, copy_numel=1024, size=64),
                                 log=lambda s: None)
    assert {p.name for p in written} == {"results.json", "results.md", "speedup.png", "roofline.png"}
    by_name = {r["name"]: r for r in results["cases"]}
    attention = by_name["attention"]
    assert attention["refs"]["SDPA"]["status"] == "ok"
    assert attention["backends"]["eager"]["pct_ceiling"] == pytest.approx(100.0)  # same stand-in time
    assert by_name["softmax"]["backends"]["aot_eager"]["pct_ceiling"] > 0
    assert by_name["gpt2-kv"]["anchor"]["eager"] > 0 and by_name["gpt2-kv"]["backends"]["aot_eager"]["compile_s_warm"] > 0
    assert len(suite.failures(results)) == 6  # wrong + boom, for each of the three cases
    md = (tmp_path / "results.md").read_text()
    assert "| gpt2-kv |" in md and "| attention |" in md and "Ceilings measured in this run" in md
    probes = by_name["gpt2-kv"]["backends"]["eager"]["host_loop_ms"]  # before and after its timing
    assert len(probes) == 2 and all(p > 0 for p in probes) and "Host Python speed while timing" in md
    # Where the time went: each row's phases, summed in the report's own table.
    gpt2 = by_name["gpt2-kv"]
    phases = gpt2["backends"]["aot_eager"]["phase_s"]
    assert {"compile", "warm_compile", "check", "time", "cleanup"} <= set(phases)
    assert sum(phases.values()) <= gpt2["backends"]["aot_eager"]["wall_s"]
    assert gpt2["phase_s"]["build"] > 0 and results["gc_s"] >= 0 and results["ceilings_s"] > 0
    assert "## Where the run's time went (s)" in md and "| warm_compile |" in md
    # Each host CPU's speed at the start and the end, one line in the report.
    assert set(results["cpu_loop_ms"]) == {"start", "end"} and "on each host CPU, pinned in turn" in md


def test_rows_timed_on_a_slow_host_are_named():
    """The report names each model row whose host probe ran over 1.2x the run's fastest."""
    recs = [{"name": "bert", "backends": {"eager": {"host_loop_ms": [10.0, 25.0]},
                                          "ember": {"host_loop_ms": [10.0, 11.0]}}},
            {"name": "vit", "backends": {"eager": {"host_loop_ms": [12.0, 11.5]}, "ember": {}}}]
    (line, _) = report._host_speed(recs, ["eager", "ember"], {"eager": "eager", "ember": "ember"})
    assert "11 to 25 ms" in line and "bert eager x2.27" in line
    assert "ember" not in line.split(":", 1)[1] and "vit" not in line


def test_each_cpu_is_timed_pinned_and_the_affinity_comes_back():
    import os
    allowed = os.sched_getaffinity(0)
    speeds = timing.cpu_loop_ms(samples=1)
    assert set(speeds) == {str(c) for c in allowed} and all(ms > 0 for ms in speeds.values())
    assert os.sched_getaffinity(0) == allowed


def test_the_report_counts_the_slow_cpus():
    results = {"cpu_loop_ms": {"start": {"0": 18.0, "1": 35.0, "2": 21.0}, "end": {"0": 19.0, "1": 20.0}}}
    (line, _) = report._cpu_speeds(results)
    assert "at the start 18 to 35 ms, 1 of 3 CPUs over 1.2x the fastest" in line
    assert "at the end 19 to 20 ms, 0 of 2 CPUs" in line
    assert report._cpu_speeds({}) == [] and report._cpu_speeds({"cpu_loop_ms": {"start": {}}}) == []


def test_gpu_kernels_refuses_unknown_cases_with_the_list():
    from bench import gpu_kernels
    with pytest.raises(SystemExit, match="cases: gpt2, gpt2-kv, bert-base"):
        gpu_kernels.main(["gpt3"])
    with pytest.raises(SystemExit, match="usage"):
        gpu_kernels.main([])


def test_timed_training_steps_never_sum_into_the_last_steps_gradients(monkeypatch):
    """do_bench clears gradients only before its timed repetitions; the Timer makes every call,
    its estimate and warm-up included, a step that starts from no gradients (as a training loop
    with zero_grad does), so no call times or captures gradient accumulation."""
    import triton.testing

    from bench import timing
    weight = torch.nn.Parameter(torch.randn(3))
    found = []

    def step():
        found.append(weight.grad is None)
        (weight * 2).sum().backward()

    def fake_do_bench(fn, warmup, rep, grad_to_none=None, return_mode="median"):
        for _ in range(3):  # estimate and warm-up: no clearing, as in triton's do_bench
            fn()
        for _ in range(2):
            for t in grad_to_none or ():
                t.grad = None
            fn()
        return 1.0

    monkeypatch.setattr(triton.testing, "do_bench", fake_do_bench)
    monkeypatch.setattr(timing, "sync", lambda device: None)
    assert timing.Timer(1, 1)(step, grad_to_none=[weight]) == 1.0
    assert found == [True] * 6


def test_a_rows_line_counts_repeated_choices():
    rec = {"status": "ok", "err": 0.0, "ms": None,
           "choices": ["matmul=library"] * 3 + ["attention=sdpa", "matmul=tiled_128x128x64_w8_s3"]}
    text = runner.line("ember", rec, Workload(None, ()))
    assert "chose matmul=library x3, attention=sdpa, matmul=tiled_128x128x64_w8_s3" in text


def test_only_the_cold_compile_writes_a_dump(monkeypatch):
    """ember loads nothing from its graph cache while it dumps (a dump describes a compile), so the
    warm compile runs without one: it is then the compile a user's second process makes."""
    import os
    dumped = []
    backend = Backend("probe", "probe", backend=lambda gm, inputs: dumped.append(os.environ.get("EMBER_DUMP_DIR"))
                      or gm.forward, reports=True)
    work = Workload(lambda x: x.exp() + 1, (torch.randn(4),), kind="model")
    cfg = Config(device="cpu", warm=True, timer=None)
    _, ref = runner.run_backend(work, Backend("eager", "eager"), None, cfg, "probe")
    rec, _ = runner.run_backend(work, backend, ref, cfg, "probe")
    assert rec["status"] != "error", rec.get("exception")
    assert len(dumped) == 2 and dumped[0] is not None and dumped[1] is None, dumped


def test_a_model_row_reports_its_fastest_round_and_keeps_every_round(tmp_path):
    """Model rows are timed in cfg.rounds do_bench rounds: the fastest median is the row's time,
    every round (with its host probes) stays in the record, and a spread over 10% is named."""
    medians = iter([9.0, 6.0, 7.5])
    warmups = []

    def timer(fn, grad_to_none=None, warmup_ms=None):
        fn()
        warmups.append(warmup_ms)
        return next(medians)

    cfg = Config(device="cpu", dtype=torch.float32, timer=timer, profile=False, rounds=3,
                 errors_dir=str(tmp_path / "errors"))
    lin = torch.nn.Linear(8, 8)
    work = Workload(lin, (torch.randn(4, 8),), kind="model", shape="4x8", dtype=torch.float32)
    rec, _ = runner.run_backend(work, Backend("eager", "eager"), None, cfg, "lin")
    assert rec["ms"] == 6.0 and [r["ms"] for r in rec["rounds"]] == [9.0, 6.0, 7.5]
    assert rec["host_loop_ms"] == rec["rounds"][1]["host_loop_ms"]
    assert warmups == [runner.MODEL_WARMUP_MS, runner.ROUND_WARMUP_MS, runner.ROUND_WARMUP_MS]
    lines = report._host_speed([{"name": "lin", "backends": {"eager": rec}}], ["eager"], {"eager": "eager"})
    assert "lin eager 9.00 / 6.00 / 7.50" in " ".join(lines)
    # A kernel row is one median, as before.
    kernel = Workload(_softmax, (torch.randn(8, 32),), kind="kernel")
    medians = iter([3.0, 1.0])
    rec, _ = runner.run_backend(kernel, Backend("eager", "eager"), None, cfg, "k")
    assert rec["ms"] == 3.0 and "rounds" not in rec


def test_the_suite_freezes_the_heap_between_cases_and_gives_it_back(tmp_path):
    """The collector never walks what earlier cases left alive (bench/heap.py), and the process
    gets its collector back unfrozen after the run."""
    import gc
    frozen = []
    case = _case()
    build = case.build

    def build_and_look(cfg):
        frozen.append(gc.get_freeze_count())
        return build(cfg)

    cases = [Case("a", "kernels", build_and_look), Case("b", "kernels", build_and_look)]
    config = {"command": "x", "smoke": True, "dtype": "float32", "backends": ["eager"], "labels": {"eager": "eager"}}
    before = gc.get_freeze_count()
    results, _ = suite.run(_cfg(tmp_path), [Backend("eager", "eager")], cases, tmp_path, config, [],
                           comparable=False, ceilings=lambda c: {}, log=lambda s: None)
    assert frozen[0] > 0 and frozen[1] >= frozen[0]
    assert gc.get_freeze_count() == before
    assert results["gc_full"] >= 0 and [r["status"] for r in results["cases"]] == ["done", "done"]


def test_the_report_counts_model_times_within_the_anchor_band():
    """Eager and TorchInductor model times against their anchors: how many are within the band
    (anchors.ANCHOR_BAND, either way) and which are not, faster or slower."""
    recs = [{"name": "gpt2-kv", "backends": {"eager": {"vs_anchor": 1.01}, "inductor": {"vs_anchor": 0.83}}},
            {"name": "bert-base", "backends": {"eager": {"vs_anchor": 1.20}, "inductor": {"vs_anchor": 0.86},
                                               "ember": {"vs_anchor": 0.4}}}]
    (line, _) = report._anchor_band(recs, {"eager": "eager", "inductor": "TorchInductor"})
    assert line == ("Model times within 15% of their anchors: 2 of 4; outside: gpt2-kv TorchInductor 0.83 "
                    "(faster), bert-base eager 1.20 (slower).")
    assert report._anchor_band([{"name": "x", "backends": {"eager": {}}}], {}) == []
