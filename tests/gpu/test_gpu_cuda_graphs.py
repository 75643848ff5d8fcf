"""CUDA graph replay (codegen/cuda_graphs.py) on the lent H100, with EMBER_TEST_GPU=1: compiled
models replay captured graphs from their second call, give eager's results on fresh inputs at every
call (forward and backward), never overwrite an output the caller still holds, and fall back to
the wrapper when a capture fails."""
import pytest
import torch

from ember.codegen import cuda_graphs
from model_zoo import MODELS, outputs_of, token_ids

BF16 = dict(rtol=5e-2, atol=5e-2)


@pytest.fixture
def runners(monkeypatch):
    """Every CudaGraphRunner made while the test runs."""
    made = []
    init = cuda_graphs.CudaGraphRunner.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(cuda_graphs.CudaGraphRunner, "__init__", record)
    return made


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_replays_and_matches_eager_on_fresh_inputs(name, runners):
    torch._dynamo.reset()
    model = MODELS[name]().to("cuda", torch.bfloat16).eval()
    compiled = torch.compile(model, backend="ember")
    with torch.no_grad():
        for _ in range(4):
            ids = token_ids(4, 32, device="cuda")
            want = outputs_of(name, model(ids))
            got = outputs_of(name, compiled(ids))
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, **BF16)
    assert runners and all(r.disabled is None for r in runners), [r.disabled for r in runners]
    assert all(r.instances for r in runners)


@pytest.mark.gpu
def test_held_outputs_keep_their_values():
    torch._dynamo.reset()
    model = MODELS["gpt2"]().to("cuda", torch.bfloat16).eval()
    compiled = torch.compile(model, backend="ember")
    with torch.no_grad():
        kept = []
        for _ in range(5):  # more calls than instances: the last ones run the wrapper
            ids = token_ids(2, 16, device="cuda")
            kept.append((compiled(ids).logits, model(ids).logits))
        for got, want in kept:
            torch.testing.assert_close(got, want, **BF16)


@pytest.mark.gpu
def test_training_steps_replay_forward_and_backward(runners):
    torch._dynamo.reset()
    eager = MODELS["gpt2"]().cuda().train()
    comp = MODELS["gpt2"]().cuda().train()
    comp.load_state_dict(eager.state_dict())
    step = torch.compile(comp, backend="ember")
    for i in range(4):
        ids = token_ids(2, 16, device="cuda")
        for m in (eager, comp):
            m.zero_grad(set_to_none=True)
        want = eager(ids, labels=ids).loss
        want.backward()
        got = step(ids, labels=ids).loss
        got.backward()
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
        for (n, a), (_, b) in zip(eager.named_parameters(), comp.named_parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-3, msg=lambda m: f"step {i} {n}: {m}")
    names = sorted(r.name for r in runners if r.instances)
    assert any(n.endswith("_fw") for n in names) and any(n.endswith("_bw") for n in names), names


@pytest.mark.gpu
def test_option_off_means_no_runner(runners):
    torch._dynamo.reset()
    f = torch.compile(lambda x: torch.relu(x) * 2, backend="ember", options={"cuda_graphs": False})
    x = torch.randn(64, device="cuda")
    for _ in range(3):
        torch.testing.assert_close(f(x), torch.relu(x) * 2)
    assert not runners


@pytest.mark.gpu
def test_a_capture_that_fails_falls_back_to_the_wrapper():
    def run(xs):
        y = xs[0] * 2
        if torch.cuda.is_current_stream_capturing():
            raise MemoryError("no room for the pool")  # e.g. out of memory while recording
        return [y + 1]
    r = cuda_graphs.CudaGraphRunner(run, "sync_graph")
    for _ in range(3):
        x = torch.randn(128, device="cuda")
        torch.testing.assert_close(r([x])[0], x * 2 + 1)
    assert r.disabled and r.disabled.startswith("capture failed"), r.disabled
    # The device, and its random generator, are still usable.
    x = torch.randn(128, device="cuda")
    torch.testing.assert_close(torch.compile(lambda t: t.exp(), backend="ember")(x), x.exp())


@pytest.mark.gpu
def test_a_graph_with_a_host_sync_is_never_captured(runners):
    torch._dynamo.reset()
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    try:
        f = torch.compile(lambda x: (x * 2).nonzero(), backend="ember")
        for _ in range(3):
            x = (torch.rand(64, device="cuda") > 0.5).float()
            torch.testing.assert_close(f(x), (x * 2).nonzero())
    finally:
        torch._dynamo.config.capture_dynamic_output_shape_ops = False
    assert not any(r.instances for r in runners)
    torch.randn(8, device="cuda")  # the generator was never left in capture mode


@pytest.mark.gpu
def test_held_bytes_counts_the_arena_outside_the_pool(runners):
    torch._dynamo.reset()
    f = torch.compile(lambda x: (x.exp() + 1).softmax(-1), backend="ember")
    x = torch.randn(1024, 1024, device="cuda")
    for _ in range(3):
        out = f(x)
        torch.testing.assert_close(out, (x.exp() + 1).softmax(-1))
    assert runners and all(r.instances for r in runners)
    held = cuda_graphs.held_bytes([i for r in runners for i in r.instances])
    # The output is a slot of the arena, allocated before capture: Triton kernels alone put
    # nothing in the graph's pool.
    assert held["arenas"] >= out.numel() * out.element_size()
    assert held["pool_reserved"] == 0, held


@pytest.mark.gpu
def test_tma_scratch_opens_no_pool_segment(runners):
    """The TMA kernel's descriptor scratch comes from a buffer kept per stream, not from a fresh
    allocation at each launch, which inside a capture opened a 2-MiB segment of the pool."""
    from ember.codegen.matmul_emit import FixedChoice
    from ember.codegen.compiled_graph import compile_graph
    from ember.ir.parser import parse
    from ember.passes import run_pipeline
    g = parse("""
func @f(%x: bf16[256,512], %w: bf16[384,512]) -> (bf16[256,384]) [device="cuda"] {
  %0: bf16[512,384] = permute[dims=(1, 0)] %w
  %1: bf16[256,384] = matmul %x, %0
  %2: bf16[256,384] = tanh %1
  return %2
}""")
    run_pipeline(g, "fuse,fuse_matmul")
    compiled = compile_graph(g, chooser=FixedChoice("cuda", "mm_128x128x64_g8_w8_s4_tma"))
    for _ in range(3):
        x = torch.randn(256, 512, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(384, 512, device="cuda", dtype=torch.bfloat16) * 512 ** -0.5
        torch.testing.assert_close(compiled([x, w])[0], torch.tanh(x @ w.T), **BF16)
    assert runners and all(r.instances for r in runners)
    assert any("tl.make_tensor_descriptor" in source for source in compiled.kernels.values())
    held = cuda_graphs.held_bytes([i for r in runners for i in r.instances])
    assert held["pool_reserved"] == 0, held


def _workspace_bytes_freed() -> int:
    """The bytes torch's cuBLAS workspaces held, by freeing them all."""
    import gc
    gc.collect()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch._C._cuda_clearCublasWorkspaces()
    return before - torch.cuda.memory_allocated()


@pytest.mark.gpu
def test_ember_keeps_one_cublas_workspace_as_eager_does(runners):
    """The calls that are not replayed run on the capture stream (CudaGraphRunner._run_aside),
    with the warm-ups, captures and timing replays: ember's cuBLAS calls then hold one workspace,
    as eager's do, not one for the caller's stream as well. Their results stay right."""
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256))
    model = model.to("cuda", torch.bfloat16).eval()
    x = torch.randn(64, 512, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        _workspace_bytes_freed()
        want = model(x)
        eager_ws = _workspace_bytes_freed()
        compiled = torch.compile(model, backend="ember", options={"autotune": False})  # the library
        for _ in range(3):
            torch.testing.assert_close(compiled(x), want, **BF16)
        assert runners and all(r.instances for r in runners)
        del compiled
        torch._dynamo.reset()
        runners.clear()
        assert eager_ws > 0
        assert _workspace_bytes_freed() <= eager_ws
