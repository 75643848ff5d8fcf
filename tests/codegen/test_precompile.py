"""codegen/precompile.py on the CPU: what a submitted launch is specialized on, that launches inside
`precompiling()` are submitted and not run, that a dry run never raises and never computes, and
that the tuner hands its candidates to `prepare` exactly when it is about to time them. (That the
kernels really compile ahead, on a GPU, is tests/gpu/test_gpu_precompile.py.)"""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ember.autotune import Candidate, TuningCache, TuningKey, tune
from ember.codegen import precompile
from ember.codegen.launcher import Launcher


def _triton_key(arg):
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend
    return native_specialize_impl(BaseBackend, arg, False, True, True)


def test_a_described_tensor_specializes_like_the_tensor():
    # Triton compiles on (dtype, 16-byte alignment): the description must give the same key for a
    # real tensor, any view of it, and a fake tensor of the same layout (which has no pointer).
    t = torch.empty(64, dtype=torch.bfloat16)
    mode = FakeTensorMode()
    fake = mode.from_tensor(t)
    for offset in (0, 1, 8, 9):
        view = t[offset:]
        with mode:
            fake_view = fake[offset:]
        assert _triton_key(precompile._spec(view)) == _triton_key(view), offset
        assert _triton_key(precompile._spec(fake_view)) == _triton_key(view), offset
    assert precompile._spec(7) == 7 and precompile._spec(None) is None


def test_launches_inside_precompiling_are_submitted_not_run(monkeypatch):
    submitted = []
    monkeypatch.setattr(precompile, "submit", lambda fn, programs, args, constexprs, options:
                        submitted.append((fn, programs, args, constexprs, options)))

    def kernel(*args, **kwargs):  # stands in for a JITFunction; must not be launched
        raise AssertionError("launched inside precompiling()")

    launch = Launcher(kernel, torch.device("cpu"), num_warps=4, num_stages=3, XBLOCK=128)
    launch.fast = True  # as on a GPU (a CPU launcher runs the interpreter and is never submitted)
    x = torch.randn(8)
    assert not precompile.active()
    with precompile.precompiling():
        assert precompile.active()
        launch(2, x, 8, INDEX_64=True)
    assert not precompile.active()
    assert submitted == [(kernel, 2, (x, 8), {"XBLOCK": 128, "INDEX_64": True},
                          {"num_warps": 4, "num_stages": 3})]


def test_an_interpreted_launcher_runs_even_inside_precompiling():
    ran = []

    class Fn:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: ran.append((grid, args))
    launch = Launcher(Fn(), torch.device("cpu"), num_warps=4, XBLOCK=16)
    assert not launch.fast
    with precompile.precompiling():
        launch(1, 5)
    assert ran == [((1,), (5,))]


def test_dry_run_sees_fake_inputs_and_computes_nothing():
    seen = []

    def call(inputs, n):
        x, = inputs
        seen.append((type(x).__name__, tuple(x.shape), x.dtype, precompile.active(), n))
        y = torch.empty((4, 4), device=x.device)  # allocates nothing for real under the fake mode
        y.copy_(x * 2)
    x = torch.randn(4, 4)
    assert precompile.dry_run(call, [x], 3) is True
    assert seen == [("FakeTensor", (4, 4), torch.float32, True, 3)]


def test_dry_run_shapes_makes_contiguous_fake_inputs_of_each_type():
    seen = []

    def call(inputs):
        seen.extend((type(t).__name__, tuple(t.shape), t.stride(), t.dtype, precompile.active()) for t in inputs)
        return inputs[0] @ inputs[1].to(torch.float32)
    assert precompile.dry_run_shapes(call, [((3, 5), torch.float32, "cpu"), ((5, 2), torch.bfloat16, "cpu")])
    assert seen == [("FakeTensor", (3, 5), (5, 1), torch.float32, True),
                    ("FakeTensor", (5, 2), (2, 1), torch.bfloat16, True)]
    assert precompile.dry_run_shapes(lambda inputs: inputs[0].nonzero().tolist(),
                                     [((4,), torch.float32, "cpu")]) is False


def test_a_dry_run_that_fails_stops_quietly():
    def call(inputs):
        return inputs[0].nonzero().tolist()  # data-dependent: fake tensors cannot answer
    assert precompile.dry_run(call, [torch.randn(5)]) is False
    assert not precompile.active()


def test_nested_precompiling_joins_the_outer_one():
    with precompile.precompiling():
        with precompile.precompiling():
            assert precompile.active()
        assert precompile.active()  # the inner exit must not end the outer mode
    assert not precompile.active()


@pytest.fixture
def key():
    return TuningKey(kernel="abc", shapes=((64, 64),), dtypes=("float16",), device="NVIDIA H100",
                     triton="3.6.0", torch="2.11")



def test_the_worker_hook_stays_installed_until_the_last_precompiling_thread_leaves(monkeypatch):
    """Two threads precompile at once (the races and the wrapper's dry run): the process-wide
    compile hook goes in with the first and the user's hook comes back with the last, whichever
    order they leave in."""
    import threading

    from triton import knobs

    from ember.codegen import compile_workers
    monkeypatch.setattr(compile_workers, "running", lambda: True)
    user_hook = lambda **kwargs: None  # noqa: E731
    monkeypatch.setattr(knobs.runtime, "jit_cache_hook", user_hook)
    first_in, second_in, first_may_leave, seen = threading.Event(), threading.Event(), threading.Event(), []

    def first():
        with precompile._worker_hook():
            first_in.set()
            first_may_leave.wait(5)
        seen.append(knobs.runtime.jit_cache_hook)  # the other thread is still inside

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with precompile._worker_hook():
        installed = knobs.runtime.jit_cache_hook
        first_may_leave.set()
        thread.join(5)
        assert knobs.runtime.jit_cache_hook is installed
    assert installed is not user_hook and seen == [installed]
    assert knobs.runtime.jit_cache_hook is user_hook

def test_prepare_gets_the_candidates_in_timing_order_on_a_miss_only(tmp_path, key):
    prepared = []
    cands = [Candidate("t1", {"B": 1}, run=lambda: None), Candidate("lib", {}, run=lambda: None, is_library=True),
             Candidate("t2", {"B": 2}, run=lambda: None)]
    times = {"t1": 2.0, "lib": 3.0, "t2": 1.0}
    timer = (lambda run: times[next(c.name for c in cands if c.run is run)])
    cache = TuningCache(str(tmp_path))
    choice = tune(key, cands, cache=cache, timer=timer, prepare=lambda cs: prepared.append([c.name for c in cs]))
    assert choice.name == "t2"
    assert prepared == [["lib", "t1", "t2"]]  # library first, then the heuristic pick, then the rest
    tune(key, cands, cache=cache, timer=timer, prepare=lambda cs: prepared.append("hit"))
    tune(key, cands, timer=None, prepare=lambda cs: prepared.append("heuristic"))
    assert prepared == [["lib", "t1", "t2"]]  # neither a hit nor a heuristic choice times anything


def test_compile_all_runs_every_candidate_inside_precompiling_and_survives_failures():
    from ember.codegen.choice import _compile_all
    ran = []

    def bad():
        ran.append(("bad", precompile.active()))
        raise RuntimeError("out of shared memory")
    cands = [Candidate("a", run=lambda: ran.append(("a", precompile.active()))), Candidate("b", run=bad),
             Candidate("c", run=lambda: ran.append(("c", precompile.active())))]
    _compile_all(cands)
    assert ran == [("a", True), ("bad", True), ("c", True)]


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama"])
def test_dry_runs_of_model_wrappers_reach_the_end(name, monkeypatch):
    # The dry run only helps if fake tensors get through a whole real wrapper: views that cannot
    # be views, externs, attention, matmul padding. Forward, and backward for GPT-2.
    from model_zoo import MODELS, token_ids
    from ember.codegen import compiled_graph, launcher
    calls = []
    real_call = compiled_graph.CompiledGraph.__call__

    def record(self, inputs, symbols=None):
        calls.append((self, list(inputs)))
        return real_call(self, inputs, symbols)
    monkeypatch.setattr(compiled_graph.CompiledGraph, "__call__", record)
    torch._dynamo.reset()
    model = MODELS[name]().to(torch.bfloat16)
    compiled = torch.compile(model, backend="ember")
    out = compiled(token_ids(2, 8))
    if name == "gpt2":
        out.logits.float().sum().backward()
    assert len(calls) == (2 if name == "gpt2" else 1)

    submitted = []
    real_launch = launcher.Launcher.__call__

    def launch(self, programs, *args, INDEX_64=False):
        if precompile.active():  # a CPU launcher would run the interpreter on fake tensors
            submitted.append(self.fn)
            return
        return real_launch(self, programs, *args, INDEX_64=INDEX_64)
    monkeypatch.setattr(launcher.Launcher, "__call__", launch)
    for graph, inputs in calls:
        submitted.clear()
        assert precompile.dry_run(graph._call, inputs) is True, graph.graph.name
        assert len(submitted) >= graph.num_kernels > 0, graph.graph.name
