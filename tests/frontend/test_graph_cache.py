"""The compiled-graph cache (frontend/graph_cache.py): a compile done before loads what it produced,
skipping AOTAutograd and ember's pipeline, and gets the same results; what does not qualify is
compiled as before; damage costs a recompile, never a failure."""
import dataclasses
import json
import warnings

import pytest
import torch

from ember.frontend import backend as backend_module
from ember.frontend import graph_cache
from ember.ir import parse, print_graph
from ember.options import Options


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x))).softmax(-1)


def compile_once(fn, *args, **options):
    """A compile as a new process would do it: Dynamo's own caches reset first."""
    torch._dynamo.reset()
    with torch.no_grad():
        return torch.compile(fn, backend="ember", options=options)(*args)


def stats_after(fn):
    before = dataclasses.replace(graph_cache.STATS)
    result = fn()
    after = graph_cache.STATS
    return result, {f.name: getattr(after, f.name) - getattr(before, f.name) for f in dataclasses.fields(after)}


@pytest.fixture
def count_pipeline(monkeypatch):
    """How many graphs went through AOTAutograd and ember's pipeline."""
    calls = []
    real = backend_module.compile_fx_graph

    def counting(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)
    monkeypatch.setattr(backend_module, "compile_fx_graph", counting)
    return calls


def test_a_second_compile_loads_the_graph_and_skips_the_pipeline(tmp_path, count_pipeline):
    model, x = MLP(), torch.randn(5, 8)
    out, delta = stats_after(lambda: compile_once(model, x, cache_dir=str(tmp_path)))
    torch.testing.assert_close(out, model(x))
    assert (delta["misses"], delta["stored"], delta["hits"], len(count_pipeline)) == (1, 1, 0, 1)
    assert len(list((tmp_path / "graphs").rglob("*.json"))) == 1

    x2 = torch.randn(5, 8)  # fresh values, same shape: the stored graph
    out2, delta = stats_after(lambda: compile_once(model, x2, cache_dir=str(tmp_path)))
    torch.testing.assert_close(out2, model(x2))
    assert (delta["hits"], delta["misses"], len(count_pipeline)) == (1, 0, 1)


def test_weights_are_inputs_not_part_of_the_key(tmp_path):
    """Two models of one architecture share the entry, and each computes with its own weights."""
    a, b, x = MLP(), MLP(), torch.randn(5, 8)
    compile_once(a, x, cache_dir=str(tmp_path))
    out, delta = stats_after(lambda: compile_once(b, x, cache_dir=str(tmp_path)))
    assert delta["hits"] == 1
    torch.testing.assert_close(out, b(x))
    assert not torch.allclose(out, a(x))


@pytest.mark.parametrize("change", ["shape", "dtype", "option", "code"])
def test_what_the_key_holds_makes_a_miss(tmp_path, change):
    model, x = MLP(), torch.randn(5, 8)
    compile_once(model, x, cache_dir=str(tmp_path))
    fn, args, options = model, (x,), {"cache_dir": str(tmp_path)}
    if change == "shape":
        args = (torch.randn(6, 8),)
    elif change == "dtype":
        fn, args = MLP().double(), (x.double(),)
    elif change == "option":
        options["cuda_graphs"] = False
    else:
        fn = lambda t: model(t) * 2  # noqa: E731 - another graph around the same model
    out, delta = stats_after(lambda: compile_once(fn, *args, **options))
    assert (delta["hits"], delta["misses"], delta["stored"]) == (0, 1, 1)
    torch.testing.assert_close(out, fn(*args))


def _mutates(x, buf):
    buf.add_(1)
    return x * buf


def _aliases(x):
    return x.t(), x.relu()


def _constant(x):
    return x * torch.tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize("fn,make_args,why", [
    (_mutates, lambda: (torch.randn(4), torch.randn(4)), "mutates"),
    (_aliases, lambda: (torch.randn(3, 4),), "alias"),
    (_constant, lambda: (torch.randn(2, 3),), "a tensor constant the binding holds"),
])
def test_graphs_whose_aot_wrapping_matters_are_not_stored(tmp_path, fn, make_args, why):
    """AOTAutograd copies mutations back and rebuilds aliased outputs around the compiled graph,
    and a constant lives in the binding, not in the stored module: such graphs compile every
    time (and stay right)."""
    args = make_args()
    expected_args = [a.clone() for a in args]
    for _ in range(2):
        ours = [a.clone() for a in args]
        out, delta = stats_after(lambda: compile_once(fn, *ours, cache_dir=str(tmp_path)))
        assert (delta["stored"], delta["hits"], delta["bypassed"]) == (0, 0, 1)
    expected = fn(*expected_args)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(ours, expected_args)  # the mutation reached the caller's buffer
    assert not (tmp_path / "graphs").exists()


def test_grad_mode_and_the_option_bypass_the_cache(tmp_path):
    """Grad mode on: this level is bypassed, and the forward is stored one level down (see
    test_training_graph_cache.py). The option off: nothing is stored at either."""
    model, x = MLP(), torch.randn(5, 8)
    _, delta = stats_after(lambda: compile_once(model, x, cache_dir=str(tmp_path), graph_cache=False))
    assert (delta["bypassed"], delta["stored"]) == (1, 0)
    assert not (tmp_path / "graphs").exists()
    torch._dynamo.reset()
    training = dataclasses.replace(graph_cache.TRAINING_STATS)
    _, delta = stats_after(lambda: torch.compile(model, backend="ember", options={"cache_dir": str(tmp_path)})(x))
    assert (delta["bypassed"], delta["stored"]) == (1, 0)
    assert graph_cache.TRAINING_STATS.stored == training.stored + 1  # the forward; no backward ran


@pytest.mark.parametrize("damage", [b"{not json", b'{"format": 999}', b'{"format": 1, "ir": "func @broken("}'])
def test_a_damaged_entry_is_reported_once_and_rebuilt(tmp_path, damage):
    model, x = MLP(), torch.randn(5, 8)
    compile_once(model, x, cache_dir=str(tmp_path))
    (entry,) = (tmp_path / "graphs").rglob("*.json")
    entry.write_bytes(damage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, delta = stats_after(lambda: compile_once(model, x, cache_dir=str(tmp_path)))
    torch.testing.assert_close(out, model(x))
    assert (delta["hits"], delta["misses"], delta["stored"]) == (0, 1, 1)
    messages = [str(w.message) for w in caught if "graph cache" in str(w.message)]
    assert len(messages) == 1 and str(entry) in messages[0] and "rebuilt" in messages[0]
    assert json.loads(entry.read_text())["format"] == graph_cache.FORMAT  # overwritten whole
    _, delta = stats_after(lambda: compile_once(model, x, cache_dir=str(tmp_path)))
    assert delta["hits"] == 1


def test_a_dump_always_compiles(tmp_path, dump_dir, count_pipeline):
    model, x = MLP(), torch.randn(5, 8)
    compile_once(model, x, cache_dir=str(tmp_path))
    _, delta = stats_after(lambda: compile_once(model, x, cache_dir=str(tmp_path)))
    assert delta["hits"] == 0 and len(count_pipeline) == 2
    assert list(dump_dir.rglob("final.ir"))


def test_the_stored_entry_holds_readable_ir_and_the_report_figures(tmp_path):
    model, x = MLP(), torch.randn(5, 8)
    compile_once(model, x, cache_dir=str(tmp_path))
    (entry,) = (tmp_path / "graphs").rglob("*.json")
    doc = json.loads(entry.read_text())
    assert doc["ir"].startswith("func @") and print_graph(parse(doc["ir"])) == doc["ir"]
    assert doc["module"]["num_kernels"] >= 1 and "def call(" in doc["module"]["wrapper_source"]
    assert doc["inputs"] == list(range(len(doc["inputs"]))) and len(doc["inputs"]) == 5
    loaded = graph_cache.load(str(tmp_path), entry.stem, "g_fw", Options(cache_dir=str(tmp_path)))
    assert loaded.ember_graph.compiled.num_kernels == doc["module"]["num_kernels"]
    assert loaded.ember_graph.compiled.memory == doc["memory"]["figures"]


def test_a_failure_while_storing_never_fails_the_compile(tmp_path, monkeypatch):
    def broken(*args):
        raise AttributeError("an AOTAutograd metadata field this torch does not have")
    monkeypatch.setattr(graph_cache, "why_not_storable", broken)
    model, x = MLP(), torch.randn(5, 8)
    out, delta = stats_after(lambda: compile_once(model, x, cache_dir=str(tmp_path)))
    torch.testing.assert_close(out, model(x))
    assert (delta["stored"], delta["bypassed"]) == (0, 1) and not (tmp_path / "graphs").exists()


def test_a_loaded_graph_is_not_dry_run_before_its_first_call(tmp_path, monkeypatch):
    """A hit's kernels are in Triton's cache (the storing compile ran them): the load skips the
    fake-tensor dry run that compiles kernels ahead, which a fresh compile still gets."""
    from ember.codegen import compiled_graph
    asked = []
    real = compiled_graph.load_generated

    def recording(*args, **kwargs):
        asked.append(kwargs.get("dry_run", True))
        return real(*args, **kwargs)
    monkeypatch.setattr(compiled_graph, "load_generated", recording)
    model, x = MLP(), torch.randn(5, 8)
    compile_once(model, x, cache_dir=str(tmp_path))
    _, delta = stats_after(lambda: compile_once(model, torch.randn(5, 8), cache_dir=str(tmp_path)))
    assert delta["hits"] == 1 and asked == [True, False]


GEMM_ONLY = """func @f(%x: f32[4,4]) -> (f32[4,4]) [device="cpu"] {
  %0: f32[4,4] = matmul %x, %x
  return %0
}"""


@pytest.mark.parametrize("dry_run", [True, False])
def test_load_generated_dry_runs_a_gpu_module_only_when_asked(tmp_path, dry_run):
    import dataclasses as dc

    from ember.codegen.compiled_graph import load_generated
    from ember.codegen.matmul_emit import FixedChoice
    from ember.codegen.wrapper import generate_module
    # A library call only: no kernel file, whose text would depend on the interpret flag.
    graph = parse("""func @f(%x: f32[4,4]) -> (f32[4,4]) [device="cpu"] {
  %0: f32[4,4] = matmul %x, %x
  return %0
}""")
    generated = dc.replace(generate_module(graph, FixedChoice("cpu", "library")), interpret=False)
    compiled = load_generated(graph, generated, Options(cache_dir=str(tmp_path)), dry_run=dry_run)
    assert compiled.dry_run_first is dry_run


def test_a_module_whose_kernels_all_ran_in_this_process_is_not_dry_run(tmp_path):
    """A recompile (after torch._dynamo.reset(), say) whose kernels a call in this process has
    run finds them compiled: load_generated does not dry-run it (compiled_graph._RAN_KERNELS).
    On the CPU the module runs in the interpreter, which never dry-runs, so the record is
    checked here and the GPU test (test_gpu_precompile) checks the dry run itself."""
    from ember.codegen.compiled_graph import kernels_already_ran, load_generated
    from ember.codegen.matmul_emit import FixedChoice
    from ember.codegen.wrapper import generate_module
    graph = parse("""func @f(%x: f32[3,91]) -> (f32[3,91]) [device="cpu"] {
  %0: f32[] = full[value=0.123]
  %1: f32[3,91] = mul %x, %0
  return %1
}""")
    generated = generate_module(graph, FixedChoice("cpu", "library"))
    assert generated.kernels and not kernels_already_ran(generated)
    compiled = load_generated(graph, generated, Options(cache_dir=str(tmp_path)))
    assert not kernels_already_ran(generated), "loaded, not run yet"
    x = torch.randn(3, 91)
    torch.testing.assert_close(compiled([x])[0], x * 0.123)
    assert kernels_already_ran(generated)
    library_only = generate_module(parse(GEMM_ONLY), FixedChoice("cpu", "library"))
    assert not library_only.kernels and not kernels_already_ran(library_only)


def _concat_onto_empty(x):
    # transformers' KV cache: `torch.tensor([])` concatenated with the first keys
    return torch.cat([torch.tensor([]), x.exp()], dim=-1), torch.cat([torch.tensor([]), x.neg()], dim=-1)


def test_an_empty_constant_is_no_input_and_the_graph_is_stored(tmp_path):
    """An empty constant holds no data: it lowers to an op, so nothing sits in the binding and a
    second compile loads the graph."""
    x = torch.randn(3, 4)
    compile_once(_concat_onto_empty, x, cache_dir=str(tmp_path))
    x2 = torch.randn(3, 4)
    out, delta = stats_after(lambda: compile_once(_concat_onto_empty, x2, cache_dir=str(tmp_path)))
    assert (delta["hits"], delta["bypassed"]) == (1, 0)
    torch.testing.assert_close(out, _concat_onto_empty(x2))
