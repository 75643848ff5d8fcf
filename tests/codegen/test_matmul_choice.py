"""The wrapper asks the Chooser (codegen/choice.py) for every matmul: with a fake GPU and a fake
timer, a faster library makes the wrapper call torch, a faster template config makes it launch
the template at that config, and a second compile takes the cached decision without timing."""
import types

import pytest
import torch

from ember.autotune import TuningStats
from ember.autotune import keys as tuning_keys
from ember.codegen import choice
from ember.codegen.choice import Chooser
from ember.codegen.matmul_emit import MatmulEmitter
from ember.codegen.wrapper import generate_module
from ember.ir import parse

@pytest.fixture(autouse=True)
def races_of_large_products(monkeypatch):
    """The graphs here are small, so that nothing real would take long; the races they check are
    those of products too large for the tiny-product search space (matmul_template.TINY_FLOPS),
    which test_matmul_template checks on its own."""
    from ember.codegen import matmul_template
    monkeypatch.setattr(matmul_template, "TINY_FLOPS", 0)


GRAPH = """
func @f(%x: bf16[256,512], %w: bf16[512,384], %b: bf16[384]) -> (bf16[256,384]) [device="cuda"] {
  %0: bf16[256,384] = fused[name="matmul0"] %x, %w, %b {
    ^(%in0: bf16[256,512], %in1: bf16[512,384], %in2: bf16[384]):
    %0: bf16[256,384] = matmul %in0, %in1
    %1: bf16[256,384] = add %0, %in2
    %2: bf16[256,384] = relu %1
    yield %2
  }
  return %0
}"""


def fake_gpu(monkeypatch, ran):
    """A 'cuda' compile on this CPU machine: operands made on the CPU, a fake GPU name in the
    keys, and runners that report which implementation they would run."""
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))

    def runner_maker(self, op):
        def make(impl, tensors):
            assert [tuple(t.shape) for t in tensors] == [(256, 512), (512, 384), (384,)]
            return lambda: ran.append(impl.name) or impl.name
        return make
    monkeypatch.setattr(MatmulEmitter, "_runner_maker", runner_maker)


def compile_with(tmp_path, ms, stats=None, matmul_library=True):
    timed = []

    def timer(run):
        name = run()
        timed.append(name)
        return ms(name)
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, stats=stats, matmul_library=matmul_library)
    return generate_module(parse(GRAPH), chooser), chooser, timed


def test_faster_library_is_called(monkeypatch, tmp_path):
    ran = []
    fake_gpu(monkeypatch, ran)
    gen, chooser, timed = compile_with(tmp_path, lambda name: 1.0 if name == "library" else 2.0)
    assert "library" in timed and len(timed) > 3                  # every config of the space timed
    assert "torch.ops.aten.relu" not in gen.wrapper_source
    assert "torch.mm(x, w, out=buf0_0)" in gen.wrapper_source     # the library's matmul ...
    assert "launch_k0_matmul0_epilogue(" in gen.wrapper_source    # ... and ONE epilogue kernel
    assert gen.num_kernels == 1 and [e["target"] for e in gen.externs] == ["aten.matmul"]
    assert chooser.decisions[0]["choice"] == "library" and chooser.decisions[0]["source"] == "benchmark"


def test_faster_template_config_is_launched_and_cached(monkeypatch, tmp_path):
    ran = []
    fake_gpu(monkeypatch, ran)
    best = "mm_64x128x64_g8_w4_s4"
    stats = TuningStats()
    gen, chooser, timed = compile_with(tmp_path, lambda name: 0.5 if name == best else 1.0, stats)
    assert chooser.decisions[0]["choice"] == best
    assert "BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, GROUP_M=8" in gen.source and "num_stages=4" in gen.source
    assert "launch_k0_matmul0(12, x, w, b, buf0" in gen.wrapper_source   # 256/64 * 384/128 tiles
    assert gen.num_kernels == 1 and gen.externs == []

    again, chooser2, timed2 = compile_with(tmp_path, lambda name: 0.5 if name == best else 1.0, stats)
    assert timed2 == [] and stats.hits == 1 and chooser2.decisions[0]["source"] == "cache"
    assert again.source == gen.source


def test_matmul_library_false_races_the_template_alone(monkeypatch, tmp_path):
    ran = []
    fake_gpu(monkeypatch, ran)
    gen, chooser, timed = compile_with(tmp_path, lambda name: 1.0, matmul_library=False)
    assert "library" not in timed and gen.externs == []
    assert not chooser.decisions[0]["is_library"]


TWO_RACES = """
func @f(%x: bf16[256,512], %w: bf16[512,384], %v: bf16[384,128], %u: bf16[384,128]) -> (bf16[256,128], bf16[256,128]) [device="cuda"] {
  %0: bf16[256,384] = matmul %x, %w
  %1: bf16[256,128] = matmul %0, %v
  %2: bf16[256,128] = matmul %0, %u
  return %1, %2
}"""


def test_races_compile_in_one_batch_before_any_is_timed(monkeypatch, tmp_path):
    """compile_graph's first pass only notes the races; all their candidates compile in one batch,
    then the second pass times them. A warm compile (every decision cached) runs one pass."""
    from ember.codegen import compiled_graph
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))
    events = []
    monkeypatch.setattr(MatmulEmitter, "_runner_maker", lambda self, op: lambda impl, tensors:
                        lambda: events.append(("run", tuple(tensors[1].shape), impl.name)) or impl.name)
    monkeypatch.setattr(choice, "_compile_all", lambda cands, device=None: events.append(("batch", len(cands))))
    monkeypatch.setattr(choice, "_compile_in_background", lambda alongside: None)

    def timer(run):
        events.append(("timed", run()))
        return 1.0

    stats = TuningStats()
    cold = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, stats=stats, precompile=True)
    gen, compiled = compiled_graph._generate(parse(TWO_RACES), cold, False)
    assert not compiled  # nothing dry-ran beside the races (patched out): the first call does
    batches = [e for e in events if e[0] == "batch"]
    assert len(batches) == 1 and batches[0][1] > 4                 # both races' candidates, together
    assert events[0][0] == "batch"                                  # before anything is timed
    runs = [e[1] for e in events if e[0] == "run"]
    assert set(runs) == {(512, 384), (384, 128)}
    # %2 is %1's race again (same key): its candidates are neither compiled nor timed twice.
    assert batches[0][1] == len(runs)  # each candidate compiled once and timed once, %2's not at all
    assert [d["source"] for d in cold.decisions] == ["benchmark", "benchmark", "cache"]
    assert stats.misses == 2 and stats.hits == 1 and not cold.collected

    events.clear()
    warm = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, stats=stats, precompile=True)
    again, compiled = compiled_graph._generate(parse(TWO_RACES), warm, False)
    assert events == [] and stats.hits == 4 and stats.misses == 2
    assert not compiled  # a warm compile: no races, nothing compiled ahead of the first call
    assert [d["source"] for d in warm.decisions] == ["cache", "cache", "cache"]
    assert again.source == gen.source


def test_screened_races_compile_the_default_config_first(monkeypatch, tmp_path):
    """With a screen, the first batch holds each race's library and default config, and the
    other configs no costlier to compile than the costliest of those; the library and default
    are timed; the second batch holds only the costlier configs of the races the screen kept;
    the second pass times the kept races' other configs, and not the first ones again."""
    from ember.codegen import compiled_graph
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))
    events = []
    monkeypatch.setattr(MatmulEmitter, "_runner_maker", lambda self, op: lambda impl, tensors:
                        lambda: (tuple(tensors[1].shape), impl.name))
    monkeypatch.setattr(choice, "_compile_all", lambda cands, device=None: events.append(("batch", [c.run() for c in cands])))
    monkeypatch.setattr(choice, "_compile_in_background", lambda alongside:
                        events.append(("alongside", alongside is not None)))

    def timer(run):
        shape, name = run()
        events.append(("timed", shape, name))
        if name == "library":
            return 1.0
        # Race (384, 128): its default config is 2x the library. Race (512, 384): 1.1x.
        first_template = [e[2] for e in events if e[0] == "timed" and e[1] == shape and e[2] != "library"][0]
        if name == first_template:
            return 2.0 if shape == (384, 128) else 1.1
        return 0.9

    stats = TuningStats()
    cold = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, stats=stats, precompile=True, screen=1.25)
    compiled_graph._generate(parse(TWO_RACES), cold, False)
    batches = [e[1] for e in events if e[0] == "batch"]
    assert len(batches) == 2 and not set(batches[0]) & set(batches[1])  # nothing compiled twice
    assert events[:2] == [("alongside", True), ("batch", batches[0])]  # both before any timing
    default = "mm_128x128x64_g8_w8_s4"
    for shape in ((512, 384), (384, 128)):
        assert (shape, "library") in batches[0] and (shape, default) in batches[0]
    # The first batch also holds the cheaper configs, the dropped race's too; the second only the
    # kept race's 128x256 and 256x128 tiles (costlier to compile than the 128x128 default).
    assert ((384, 128), "mm_64x64x64_g8_w4_s3") in batches[0]
    assert sorted(batches[1]) == [((512, 384), "mm_128x256x64_g8_w8_s3"), ((512, 384), "mm_256x128x64_g8_w8_s3")]
    timed = [e[1:] for e in events if e[0] == "timed"]
    kept = [n for s, n in timed if s == (512, 384)]
    screened = [n for s, n in timed if s == (384, 128)]
    assert screened == ["library", default]                              # only the first two, once
    in_race = [n for b in batches for s, n in b if s == (512, 384)]
    assert len(kept) == len(set(kept)) == len(in_race)                   # each timed exactly once
    # Decisions in op order: %0 (the kept race) takes a 0.9-ms config, %1 the library, %2 a hit.
    assert [d["source"] for d in cold.decisions] == ["benchmark", "benchmark", "cache"]
    assert cold.decisions[0]["choice"] != "library" and cold.decisions[1]["choice"] == "library"
    assert stats.screened > 0 and stats.benchmarks == len(timed) and not cold.measured


RACE_THEN_KERNELS = """
func @f(%x: bf16[256,512], %w: bf16[512,384], %v: bf16[384,128]) -> (bf16[256,128]) [device="cuda:0"] {
  %0: bf16[256,512] = exp %x
  %1: bf16[256,384] = matmul %0, %w
  %2: bf16[256,384] = relu %1
  %3: bf16[256,128] = matmul %2, %v
  %4: bf16[256,128] = neg %3
  return %4
}"""


def test_kernels_compiled_alongside_the_races_keep_their_names(monkeypatch, tmp_path):
    """The module written before the races (library calls where they are) is dry-run on a thread
    of its own while the races compile (on a GPU: this CPU build of torch cannot make CUDA fake
    tensors). Its
    kernels must be the module after the races' kernels, same name and source (Triton's cache
    key includes both), even where a race took the template: kernels are numbered by their op."""
    from ember.codegen import compiled_graph
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))
    monkeypatch.setattr(MatmulEmitter, "_runner_maker", lambda self, op: lambda impl, tensors: lambda: impl.name)
    before = []
    real = compiled_graph._dry_run_before_races
    monkeypatch.setattr(compiled_graph, "_dry_run_before_races",
                        lambda graph, generated, cache_dir: before.append(generated) or real(graph, generated, cache_dir))
    calls, background = [], []
    monkeypatch.setattr(choice, "_compile_all", lambda cands, device=None: calls.append(len(cands)))
    monkeypatch.setattr(choice, "_compile_in_background", lambda alongside: background.append(alongside))
    timer = lambda run: 2.0 if run() == "library" else 1.0  # noqa: E731 - the template wins both races
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, precompile=True, screen=1.25)
    after, _ = compiled_graph._generate(parse(RACE_THEN_KERNELS), chooser, False)
    assert all(not d["is_library"] for d in chooser.decisions)
    assert len(calls) == 2 and len(background) == 1 and callable(background[0])
    assert sorted(before[0].kernels) == ["k0_exp", "k2_relu", "k4_neg"]  # library matmuls: no kernel
    # Both products run one kernel: the template's source holds no sizes.
    assert sorted(after.kernels) == ["k0_exp", "k1_matmul", "k2_relu", "k4_neg"]
    assert after.wrapper_source.count("launch_k1_matmul") == 2
    assert all(after.kernels[name] == src for name, src in before[0].kernels.items())


@pytest.mark.parametrize("reached_end", [True, False])
def test_first_call_dry_runs_only_when_the_dry_run_beside_the_races_stopped_early(monkeypatch, tmp_path,
                                                                                 reached_end):
    """After races whose neighbour dry run went through the whole wrapper, every kernel of the
    module is compiled and the first call skips its own dry run; one that stopped early (an op
    fake tensors cannot run) leaves kernels uncompiled, and the first call dry-runs them."""
    from ember.codegen import compiled_graph, precompile
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))
    monkeypatch.setattr(MatmulEmitter, "_runner_maker", lambda self, op: lambda impl, tensors: lambda: impl.name)
    monkeypatch.setattr(choice, "_compile_all", lambda cands, device=None: None)
    monkeypatch.setattr(choice, "_compile_in_background", lambda alongside: alongside())  # run it here
    monkeypatch.setattr(compiled_graph, "load_module", lambda path, interpret: types.SimpleNamespace(call=None))
    shapes = []
    monkeypatch.setattr(precompile, "dry_run_shapes", lambda call, inputs: shapes.append(inputs) or reached_end)
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=lambda run: 1.0, precompile=True)
    _, compiled = compiled_graph._generate(parse(RACE_THEN_KERNELS), chooser, False)
    assert [[s for s, _, _ in inputs] for inputs in shapes] == [[(256, 512), (512, 384), (384, 128)]]
    assert compiled is reached_end


def test_screen_that_keeps_no_race_still_compiles_the_wrappers_kernels(monkeypatch, tmp_path):
    """Where the screen drops every race (the library far ahead), one batch compiles and none
    follows; the kernels that do not depend on the races compile all the same, beside it."""
    from ember.codegen import compiled_graph
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))
    monkeypatch.setattr(MatmulEmitter, "_runner_maker", lambda self, op: lambda impl, tensors: lambda: impl.name)
    calls, background = [], []
    monkeypatch.setattr(choice, "_compile_all", lambda cands, device=None: calls.append([c.name for c in cands]))
    monkeypatch.setattr(choice, "_compile_in_background", lambda alongside: background.append(alongside))
    timer = lambda run: 1.0 if run() == "library" else 3.0  # noqa: E731 - every default 3x the library
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, precompile=True, screen=1.25)
    compiled_graph._generate(parse(RACE_THEN_KERNELS), chooser, False)
    assert len(calls) == 1 and calls[0].count("library") == 2
    assert len(background) == 1 and callable(background[0])
    assert [d["choice"] for d in chooser.decisions] == ["library", "library"]


def test_the_wrappers_kernels_compile_on_their_own_thread_and_are_waited_for(monkeypatch, tmp_path):
    """compile_races runs `alongside` on another thread while the batches run on this one, and
    returns only once it is done: the module after the races must find its kernels compiled."""
    import threading
    import time
    monkeypatch.setattr(choice, "_compile_all", lambda cands, device=None: None)
    seen = []

    def alongside():
        time.sleep(0.2)
        seen.append(threading.current_thread() is not threading.main_thread())

    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=lambda run: 1.0, precompile=True)
    chooser.collected = [(object(), [choice.Candidate("library", {}, run=lambda: None, is_library=True)])]
    assert choice.compile_races(chooser, alongside) == 1
    assert seen == [True]


def _bias_relu(i: int, m: int, k: int, n: int, x: str, w: str, b: str) -> str:
    return f"""  %{i}: bf16[{m},{n}] = fused[name="matmul{i}"] {x}, {w}, {b} {{
    ^(%in0: bf16[{m},{k}], %in1: bf16[{k},{n}], %in2: bf16[{n}]):
    %0: bf16[{m},{n}] = matmul %in0, %in1
    %1: bf16[{m},{n}] = add %0, %in2
    %2: bf16[{m},{n}] = relu %1
    yield %2
  }}"""


ONE_FAMILY = f"""
func @f(%x: bf16[256,512], %w: bf16[512,384], %b: bf16[384], %v: bf16[384,128], %c: bf16[128]) -> (bf16[256,128]) [device="cuda"] {{
{_bias_relu(0, 256, 512, 384, "%x", "%w", "%b")}
{_bias_relu(1, 256, 384, 128, "%0", "%v", "%c")}
  return %1
}}"""


def test_races_of_one_shape_family_compile_one_kernel(monkeypatch, tmp_path):
    """Two products of different sizes with the same epilogue: the template's source holds no
    sizes, so both are one kernel, named after the first op, in the graph's module and in every
    timing run of either race (Triton keys a compiled kernel by source and name: a config the
    first race compiled is already compiled for the second)."""
    from ember.codegen import code_cache, wrapper
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))
    timed_kernels: dict[tuple, list[str]] = {}
    real = wrapper.generate_module

    def spy(g, chooser, **kw):
        generated = real(g, chooser, **kw)
        timed_kernels[(kw["op_index_base"], chooser.name)] = sorted(generated.kernels)
        return generated
    monkeypatch.setattr(wrapper, "generate_module", spy)

    def load_module(path, interpret):  # a timing run's module, not run: says what it would call
        library = "torch.mm(" in path.read_text()
        return type("Module", (), {"call": staticmethod(lambda args: library)})
    monkeypatch.setattr(code_cache, "load_module", load_module)
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=lambda run: 2.0 if run() else 1.0)
    gen = generate_module(parse(ONE_FAMILY), chooser)
    templates = {key: names for key, names in timed_kernels.items() if key[1] != "library"}
    assert {key[0] for key in templates} == {0, 1}                 # both races timed the template
    assert all(names == ["k0_matmul0"] for names in templates.values())
    assert [d["is_library"] for d in chooser.decisions] == [False, False]
    assert sorted(gen.kernels) == ["k0_matmul0"] and gen.wrapper_source.count("launch_k0_matmul0") == 2


def test_where_tma_applies_the_race_probes_it_first_and_has_no_tiled_config(monkeypatch, tmp_path):
    """On a GPU with TMA (faked here: 132 SMs), a large product's race offers the TMA configs
    only, the TMA kernel at the heuristic's tile first: the template candidate the screen times
    against the library. The tiled kernel is not raced (matmul_template.search_space says why);
    the wrapper still launches it where an operand is not laid out for TMA. A template-only race
    (no library) takes the TMA probe as its must-time default, not a config it does not offer."""
    from ember.codegen import matmul_emit
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(matmul_emit, "_tma_programs", lambda device, interpret: 132)
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: torch.randn(shape).to(torch.bfloat16))
    monkeypatch.setattr(MatmulEmitter, "_runner_maker", lambda self, op: lambda impl, tensors: lambda: impl.name)
    timed = []
    timer = lambda run: timed.append(run()) or (1.0 if timed[-1] == "library" else 2.0)  # noqa: E731
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, screen=1.25)
    generate_module(parse(GRAPH), chooser)
    # K=512: no 128x256 tile; the screen times the library and the TMA probe, then stops.
    assert timed == ["library", "mm_128x128x64_g8_w8_s4_tma"]
    assert chooser.decisions[0]["choice"] == "library"
    timed.clear()
    wide = Chooser("cuda:0", cache_dir=str(tmp_path / "none"), timer=timer, screen=None)
    generate_module(parse(GRAPH), wide)
    assert timed == ["library", "mm_128x128x64_g8_w8_s4_tma"]
    timed.clear()
    alone = Chooser("cuda:0", cache_dir=str(tmp_path / "alone"), timer=timer, matmul_library=False)
    gen = generate_module(parse(GRAPH), alone)
    assert timed == ["mm_128x128x64_g8_w8_s4_tma"]
    assert alone.decisions[0]["choice"] == "mm_128x128x64_g8_w8_s4_tma"
    assert "tma_ready(" in gen.wrapper_source  # the tiled kernel behind the layout test
