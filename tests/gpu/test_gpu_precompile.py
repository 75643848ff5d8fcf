"""Parallel precompile (codegen/precompile.py) on the lent H100, with EMBER_TEST_GPU=1: a compiled
model's first call and its autotuning races find their kernels already compiled by the thread
pool (Triton compiles nothing more when they launch), and the results still match eager."""
import pytest
import torch
import triton

from model_zoo import MODELS, outputs_of, token_ids

BF16 = dict(rtol=5e-2, atol=5e-2)


@pytest.fixture
def compiles(monkeypatch):
    """(kernel name, whether it was a submitted warmup) for every compile Triton starts (a kernel
    submitted several times in one batch is listed each time, compiled once)."""
    seen = []

    def hook(*, key, repr, fn, compile, is_manual_warmup, already_compiled):
        seen.append((fn.name, is_manual_warmup))
        return None  # go on compiling
    monkeypatch.setattr(triton.knobs.runtime, "jit_cache_hook", hook)
    return seen


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_first_call_launches_only_precompiled_kernels(name, compiles, tmp_path):
    torch._dynamo.reset()
    model = MODELS[name]().to("cuda", torch.bfloat16).eval()
    # A fresh ember cache: the matmul and attention races are run, so their candidates compile too.
    compiled = torch.compile(model, backend="ember", options={"cache_dir": str(tmp_path),
                                                              "autotune_budget_s": 30.0})
    ids = token_ids(2, 32, device="cuda")
    with torch.no_grad():
        got = outputs_of(name, compiled(ids))
        want = outputs_of(name, model(ids))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **BF16)
    submitted = [n for n, warm in compiles if warm]
    at_launch = [n for n, warm in compiles if not warm]
    assert submitted, "nothing went through the thread pool"
    assert at_launch == [], f"compiled at launch, not ahead: {at_launch}"


@pytest.mark.gpu
def test_race_winners_are_not_compiled_again(compiles, tmp_path, monkeypatch):
    """A race's candidates are named and filed as the graph's module names and files its kernels
    (code_cache.py): when the module first runs, the template kernels that won are already
    compiled, so Triton is asked to compile none of them. The dry run beside the races compiled
    the rest, so the first call skips its own dry run (compiled_graph._generate)."""
    from ember.codegen import precompile
    from ember.frontend import compile as frontend_compile
    dry_runs, compiled_by = [], []
    real_dry_run, real_compile_graph = precompile.dry_run, frontend_compile.compile_graph

    def dry_run(*args, **kwargs):
        dry_runs.append(len(compiles))
        return real_dry_run(*args, **kwargs)

    def compile_graph(*args, **kwargs):
        out = real_compile_graph(*args, **kwargs)
        compiled_by.append(len(compiles))  # the races and the dry run beside them are done
        return out
    monkeypatch.setattr(precompile, "dry_run", dry_run)
    monkeypatch.setattr(frontend_compile, "compile_graph", compile_graph)
    torch._dynamo.reset()
    model = MODELS["gpt2"]().to("cuda", torch.bfloat16).eval()
    compiled = torch.compile(model, backend="ember", options={"cache_dir": str(tmp_path),
                                                              "matmul_library": False, "attention_library": False,
                                                              "autotune_budget_s": 30.0})
    ids = token_ids(2, 32, device="cuda")
    with torch.no_grad():
        got, want = outputs_of("gpt2", compiled(ids)), outputs_of("gpt2", model(ids))
    torch.testing.assert_close(got[0], want[0], **BF16)
    (start,) = compiled_by
    raced = [name for name, _ in compiles[:start] if "matmul" in name or "attention" in name]
    again = [name for name, _ in compiles[start:] if "matmul" in name or "attention" in name]
    assert raced, "no template candidate was compiled"
    assert again == [], f"compiled again at the first call: {sorted(set(again))}"
    assert dry_runs == [], "the first call dry-ran a module whose kernels were all compiled"


@pytest.mark.gpu
def test_a_training_recompile_in_the_same_process_skips_the_dry_run(compiles, tmp_path, monkeypatch):
    """After torch._dynamo.reset(), compiling a training step again writes the modules this
    process has already run (compiled_graph._RAN_KERNELS): neither is dry-run again, Triton
    compiles nothing, and the loss and gradients still match eager."""
    from ember.codegen import precompile
    dry_runs = []
    real_dry_run = precompile.dry_run

    def dry_run(*args, **kwargs):
        dry_runs.append(1)
        return real_dry_run(*args, **kwargs)
    monkeypatch.setattr(precompile, "dry_run", dry_run)
    model = MODELS["gpt2"]().to("cuda", torch.bfloat16).train()
    ids = token_ids(2, 32, device="cuda")

    def step(fn):
        model.zero_grad(set_to_none=True)
        out = fn(ids)
        loss = out.logits.float().square().mean()
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    options = {"cache_dir": str(tmp_path), "autotune_budget_s": 30.0}
    torch._dynamo.reset()
    step(torch.compile(model, backend="ember", options=options))
    # The second compile finds every decision in the tuning cache: without _RAN_KERNELS, both of
    # its graphs would be dry-run before their first calls (compiled_graph._generate).
    dry_runs.clear()
    before = len(compiles)
    torch._dynamo.reset()
    got = step(torch.compile(model, backend="ember", options=options))
    want = step(model)
    assert dry_runs == [], "a module this process had run was dry-run again"
    assert compiles[before:] == [], f"compiled again: {sorted({n for n, _ in compiles[before:]})}"
    for g, w in zip(got, want):
        torch.testing.assert_close(g.float(), w.float(), **BF16)


@pytest.mark.gpu
def test_precompile_off_compiles_at_launch(compiles, tmp_path):
    torch._dynamo.reset()
    model = MODELS["gpt2"]().to("cuda", torch.bfloat16).eval()
    compiled = torch.compile(model, backend="ember", options={"cache_dir": str(tmp_path),
                                                              "precompile": False})
    ids = token_ids(2, 32, device="cuda")
    with torch.no_grad():
        got = outputs_of("gpt2", compiled(ids))
        want = outputs_of("gpt2", model(ids))
    torch.testing.assert_close(got[0], want[0], **BF16)
    assert compiles and not any(warm for _, warm in compiles)


@pytest.mark.gpu
def test_cold_compile_sends_kernels_to_worker_processes(tmp_path):
    """A cold compile (a race misses the tuning cache) starts the compile workers; each kernel
    sent to them compiles there without error (a worker's failure would only be logged, so this
    is what says they work on a GPU host), and the result matches eager."""
    from ember.codegen import compile_workers
    torch._dynamo.reset()
    compile_workers.shutdown()
    model = MODELS["gpt2"]().to("cuda", torch.bfloat16).eval()
    compiled = torch.compile(model, backend="ember", options={"cache_dir": str(tmp_path),
                                                              "compile_workers": 2})
    ids = token_ids(2, 32, device="cuda")
    try:
        with torch.no_grad():
            got = outputs_of("gpt2", compiled(ids))
            want = outputs_of("gpt2", model(ids))
        torch.testing.assert_close(got[0], want[0], **BF16)
        jobs = list(compile_workers._submitted.values())
        assert compile_workers.running() and len(jobs) > 4
        assert [f.exception() for f in jobs] == [None] * len(jobs)
    finally:
        compile_workers.shutdown()
