"""CudaGraphRunner's bookkeeping (codegen/cuda_graphs.py), on the CPU.

A CPU has no CUDA graphs, so `_record` is replaced by a recording that behaves like one where it
matters: the outputs live in fixed tensors that every replay overwrites, and the replay reads its
inputs from what was captured (the caller's tensors read in place, the runner's buffers for the
copied ones). What is checked is what a real graph would get wrong if the runner did: results on
fresh inputs, outputs a caller still holds never overwritten, moved inputs, failed captures.
The real capture runs in tests/gpu/test_gpu_cuda_graphs.py.
"""
from __future__ import annotations

import pytest
import torch

from ember.codegen import runtime
from ember.codegen.cuda_graphs import MAX_CAPTURES, MAX_INSTANCES, MAX_MOVES, CaptureArenas, CudaGraphRunner


class _FakeGraph:
    def __init__(self, run, static, outputs):
        self.run, self.static, self.outputs = run, static, outputs

    def replay(self):
        for out, new in zip(self.outputs, self.run(list(self.static))):
            out.copy_(new)


class FakeRunner(CudaGraphRunner):
    fail_capture = False

    def _device_ok(self, inputs):
        return True

    def _run_aside(self, inputs):  # no streams on the CPU: the calls not replayed run as they are
        return self.run(inputs)

    def _record(self, static):
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        # As the real one: a warm-up call allocates the arenas, the capture is handed them.
        arenas = CaptureArenas()
        with runtime.arenas_from(arenas.allocate):
            self.run(list(static))
        with runtime.arenas_from(arenas.reuse):
            outputs = self.run(list(static))  # like a capture: these tensors are what replays write
        return _FakeGraph(self.run, static, outputs), ("fake", self.captures), outputs, arenas.kept


def scale_add(xs):
    x, w = xs
    return [x * 2 + w]


def expect(x, w):
    return x * 2 + w


def test_replays_on_fresh_inputs_and_reads_parameters_in_place():
    w = torch.randn(8)
    r = FakeRunner(scale_add, "g")
    for _ in range(4):
        x = torch.randn(8)  # a new tensor each call: copied into the runner's buffer
        torch.testing.assert_close(r([x, w])[0], expect(x, w))
    assert r.captures == 1 and len(r.instances) == 1
    inst = r.instances[0]
    assert inst.in_place == [False, True]
    w.mul_(3)  # the parameter changed in place: the graph reads its address, so it sees that
    x = torch.randn(8)
    torch.testing.assert_close(r([x, w])[0], expect(x, w))
    assert r.captures == 1


def test_outputs_the_caller_holds_are_never_overwritten():
    w = torch.randn(8)
    r = FakeRunner(scale_add, "g")
    r([torch.randn(8), w])
    held = []
    for i in range(MAX_INSTANCES + 2):
        x = torch.randn(8)
        out = r([x, w])[0]
        held.append((out, expect(x, w)))
    # Every held result still has its own value: the second call captured a second instance
    # while the first's output was held, and calls past MAX_INSTANCES ran the wrapper.
    for out, want in held:
        torch.testing.assert_close(out, want)
    assert len(r.instances) == MAX_INSTANCES
    held.clear()  # released: the instances replay again
    x = torch.randn(8)
    torch.testing.assert_close(r([x, w])[0], expect(x, w))
    assert r.captures == MAX_INSTANCES


def test_small_caller_outputs_are_copies_that_pin_nothing():
    # A training step's loss held while the next step runs; the activations are not handed out.
    def loss_and_saved(xs):
        y = xs[0] * 2 + xs[1]
        return [y.sum(), y]
    w = torch.randn(8)
    r = FakeRunner(loss_and_saved, "g", copy_out=[0])
    r([torch.randn(8), w])
    losses = []
    for _ in range(4):
        x = torch.randn(8)
        loss, saved = r([x, w])
        losses.append((loss, expect(x, w).sum()))
        del saved
    for got, want in losses:
        torch.testing.assert_close(got, want)
    assert r.captures == 1


def test_a_view_of_an_output_counts_as_holding_it():
    w = torch.randn(8)
    r = FakeRunner(scale_add, "g")
    r([torch.randn(8), w])
    x = torch.randn(8)
    first = r([x, w])[0][2:5]  # only a view survives
    r([torch.randn(8), w])
    torch.testing.assert_close(first, expect(x, w)[2:5])


def test_an_input_read_in_place_that_moves_is_recaptured():
    r = FakeRunner(scale_add, "g")
    x = torch.randn(8)
    w = torch.randn(8)
    r([x, w])
    r([x, w])
    assert r.instances[0].in_place == [True, True]
    w2 = torch.randn(8)  # a new parameter tensor: the captured graph would read the old one
    torch.testing.assert_close(r([x, w2])[0], expect(x, w2))
    assert r.captures == 1 and not r.instances   # released; its first move: one call without
    torch.testing.assert_close(r([x, w2])[0], expect(x, w2))
    assert r.captures == 2 and r.instances[0].in_place == [True, True]


def test_an_input_that_moved_once_then_settles_is_read_in_place():
    # A backward graph's saved activations move once: when its forward starts replaying.
    w = torch.randn(8)
    a, b = torch.randn(8), torch.randn(8)
    r = FakeRunner(scale_add, "g")
    r([a, w])
    r([b, w])                      # b moved for the first time: no capture yet
    assert r.captures == 0
    b.copy_(torch.randn(8))
    torch.testing.assert_close(r([b, w])[0], expect(b, w))  # b stayed put: captured in place
    assert r.captures == 1 and r.instances[0].in_place == [True, True]
    # It keeps moving: past MAX_MOVES moves it is copied for good.
    for c in [torch.randn(8) for _ in range(MAX_MOVES + 1)]:
        torch.testing.assert_close(r([c, w])[0], expect(c, w))
    captures = r.captures
    for c in [torch.randn(8) for _ in range(3)]:
        torch.testing.assert_close(r([c, w])[0], expect(c, w))
    assert r.instances[0].in_place == [False, True] and r.captures == captures


def test_inputs_that_keep_moving_turn_graphs_off():
    r = FakeRunner(scale_add, "g")
    r([torch.randn(8), torch.randn(8)])
    for _ in range(3 * MAX_CAPTURES):
        x, w = torch.randn(8), torch.randn(8)
        torch.testing.assert_close(r([x, w])[0], expect(x, w))
    assert r.captures <= MAX_CAPTURES


def test_an_output_fed_back_as_input_is_copied():
    r = FakeRunner(scale_add, "g")
    w = torch.randn(8)
    x = torch.randn(8)
    r([x, w])
    for _ in range(5):
        want = expect(x, w)
        x = r([x, w])[0]  # x is the runner's own output
        torch.testing.assert_close(x, want)


def test_a_failed_capture_runs_the_wrapper_and_says_why(caplog):
    r = FakeRunner(scale_add, "graph7_fw")
    r.fail_capture = True
    w = torch.randn(8)
    r([torch.randn(8), w])
    with caplog.at_level("INFO", logger="ember.codegen.cuda_graphs"):
        x = torch.randn(8)
        torch.testing.assert_close(r([x, w])[0], expect(x, w))   # x moved: no capture yet
        assert r.disabled is None and r.captures == 0
        torch.testing.assert_close(r([x, w])[0], expect(x, w))   # the capture fails
    assert r.disabled.startswith("capture failed: RuntimeError: operation not permitted")
    assert "graph7_fw runs without CUDA graphs" in caplog.text
    x = torch.randn(8)
    torch.testing.assert_close(r([x, w])[0], expect(x, w))
    assert not r.instances


def test_outputs_that_are_inputs_are_views_of_the_callers_inputs():
    # A training forward returns the weights its backward needs; AOT may return input views.
    r = FakeRunner(lambda xs: [xs[0].view(2, 4)[:, 1:], xs[1], xs[1] + 1], "g")
    w = torch.randn(8)
    r([torch.randn(8), w])
    for x in [torch.randn(10)[2:] for _ in range(3)]:  # copied: outputs view the caller's x
        a, b, c = r([x, w])
        assert a.data_ptr() == x.data_ptr() + 4 and a.stride() == (4, 1)
        torch.testing.assert_close(a, x.view(2, 4)[:, 1:])
        assert b.data_ptr() == w.data_ptr() and b.shape == w.shape
        torch.testing.assert_close(c, w + 1)
        del a, b, c  # c held into the next call would make it capture a second instance
    assert r.captures == 1 and not r.disabled
    assert len(r.instances[0].storages) == 1  # only c lives in the pool


def test_empty_tensors_alias_nothing():
    r = FakeRunner(lambda xs: [xs[0] * 2, torch.empty(0, dtype=torch.int64)], "g")
    x, e = torch.randn(8), torch.empty(0)
    r([x, e])
    out = r([x, e])
    torch.testing.assert_close(out[0], x * 2)
    assert out[1].dtype == torch.int64 and not r.disabled


def test_a_view_of_an_input_as_another_dtype_turns_graphs_off():
    r = FakeRunner(lambda xs: [xs[0].view(torch.int32), xs[1] + 1], "g")
    x, w = torch.randn(8), torch.randn(8)
    r([x, w])
    torch.testing.assert_close(r([x, w])[0], x.view(torch.int32))
    assert r.disabled == "an output views an input as another dtype"


def test_real_runner_refuses_cpu_inputs():
    r = CudaGraphRunner(scale_add, "g")
    x, w = torch.randn(8), torch.randn(8)
    torch.testing.assert_close(r([x, w])[0], expect(x, w))
    assert r.disabled == "an input is not a CUDA tensor, or inputs are on several devices"


def test_cpu_compiled_graphs_have_no_runner():
    from ember.codegen import compile_graph
    from ember.ir import Builder, TensorType
    b = Builder("g")
    x = b.input("x", TensorType("f32", (4,)))
    compiled = compile_graph(b.build([b.op("relu", x)]))
    assert compiled.cuda_graphs is None


def test_option_is_validated():
    from ember.options import Options, OptionsError
    assert Options.from_dict({"cuda_graphs": False}).cuda_graphs is False
    with pytest.raises(OptionsError, match="cuda_graphs"):
        Options.from_dict({"cuda_graphs": "yes"})


def test_graphs_that_wait_on_the_host_are_refused():
    from ember.codegen.cuda_graphs import graph_capture_refusal
    from ember.ir import Builder, TensorType
    import sympy
    b = Builder("g", device="cuda")
    b.input("x", TensorType("f32", (4,), device="cuda"))
    g = b.build([])
    assert graph_capture_refusal(g, []) is None
    assert graph_capture_refusal(g, [{"op": "extern", "target": "aten.nonzero.default"}]) == \
        "aten.nonzero.default waits on the host"
    assert graph_capture_refusal(g, [{"op": "matmul", "target": "aten.matmul"}]) is None
    g.add_symbol(sympy.Symbol("s0", integer=True, positive=True))
    assert graph_capture_refusal(g, []).startswith("symbolic sizes")
    cpu = Builder("c").build([])
    assert graph_capture_refusal(cpu, []) == "device cpu"


def arena_scale_add(xs):
    """A wrapper whose output is a slot of its arena, as memory_plan.py places it."""
    x, w = xs
    arena = runtime.new_arena(x.numel() * 4, x.device).view(torch.float32)
    return [torch.add(x * 2, w, out=arena[:x.numel()])]


def test_the_captured_call_writes_the_warm_up_calls_arena():
    w = torch.randn(8)
    r = FakeRunner(arena_scale_add, "g")
    r([torch.randn(8), w])
    outs = []
    for _ in range(3):
        x = torch.randn(8)
        outs.append(r([x, w])[0])
        torch.testing.assert_close(outs[-1], expect(x, w))
        del outs[-1]  # released: the one instance keeps replaying
    (inst,) = r.instances
    assert inst.arena_bytes == 32 and r.captures == 1
    # The output a replay hands out lives in the arena the instance keeps.
    out = r([torch.randn(8), w])[0]
    assert out.untyped_storage().data_ptr() == inst.arenas[0].untyped_storage().data_ptr()
    assert inst.outputs_alive()
    del out
    assert not inst.outputs_alive()


def test_a_capture_asking_for_an_arena_its_warm_up_did_not_fails_cleanly():
    arenas = CaptureArenas()
    with runtime.arenas_from(arenas.allocate):
        a = runtime.new_arena(64, torch.device("cpu"))
    assert runtime.new_arena(64, torch.device("cpu")) is not a   # outside the block: fresh ones
    with runtime.arenas_from(arenas.reuse):
        assert runtime.new_arena(64, torch.device("cpu")) is a
        with pytest.raises(RuntimeError, match="arena of 64 bytes that its warm-up call did not"):
            runtime.new_arena(64, torch.device("cpu"))


def test_a_capture_waits_for_an_input_that_moved_once_to_settle():
    """A backward graph's inputs that its forward's capture moved (library outputs in the
    forward's pool) are read in place, never copied into buffers that an instance whose outputs
    the caller keeps for good (accumulated gradients) would then keep for good too."""
    w = torch.randn(8)
    saved = torch.randn(8)
    r = FakeRunner(scale_add, "graph0_bw")
    r([saved, w])
    moved = saved.clone()                       # the forward replays: its output moved once
    # The caller keeps every result: one plain call, then a capture per held result.
    grads = [r([moved, w])[0] for _ in range(3)]
    assert r.captures == 2 and all(i.in_place == [True, True] for i in r.instances)
    for g in grads:
        torch.testing.assert_close(g, expect(moved, w))
    assert sum(i.buffer_bytes for i in r.instances) == 0
