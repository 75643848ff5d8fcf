"""The safety nets: a lowering that builds the wrong shape becomes an extern (never silently
wrong), and a graph that cannot become IR at all runs eagerly; both are reported."""
import torch

from ember.frontend import lowering
from ember.frontend.fx_to_ir import fx_to_ir
from ember.frontend.lowering import LOWERINGS

aten = torch.ops.aten


def test_wrong_shape_lowering_becomes_extern(check, monkeypatch):
    # A buggy permute lowering that forgets to permute: the shape check must catch it.
    monkeypatch.setitem(LOWERINGS, aten.permute.default, lambda ctx, x, dims: ctx.op("copy", x))
    reports = check(lambda x: x.transpose(0, 1) + 1, torch.randn(2, 3), strict=False)
    (ext,) = [e for r in reports for e in r["externs"]]
    assert ext["target"] == "aten.permute.default" and "lowering bug" in ext["reason"]


def test_wrong_dtype_lowering_gets_a_cast(check, monkeypatch):
    # A lowering that forgets the int -> float promotion of true division is fixed by a cast.
    def lazy_div(ctx, a, b, *, rounding_mode=None):
        return ctx.op("floordiv", a, ctx.value(b, a.type.dtype))
    monkeypatch.setitem(LOWERINGS, aten.div, lazy_div)
    torch._dynamo.reset()
    i = torch.arange(8)
    out = torch.compile(lambda i: i / 4, backend="ember")(i)
    assert out.dtype == torch.float32  # the cast the check inserted; values are the buggy floor
    torch.testing.assert_close(out, torch.div(i, 4, rounding_mode="floor").float())


def test_crashing_lowering_is_reported(check, monkeypatch):
    def broken(ctx, x):
        raise KeyError("oops")
    monkeypatch.setitem(LOWERINGS, aten.sin.default, broken)
    reports = check(lambda x: x.sin() * 2, torch.randn(5), strict=False)
    (ext,) = [e for r in reports for e in r["externs"]]
    assert ext["target"] == "aten.sin.default" and "KeyError" in ext["reason"]


def test_data_dependent_graph_runs_eagerly(check):
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        reports = check(lambda x: (x[x > 0] * 2).sum() + x.nonzero().shape[0], torch.randn(10), strict=False)
    assert any(r["fallback"] for r in reports), reports


def test_lowering_table_is_one_table():
    assert len(LOWERINGS) > 150
    assert lowering.lookup(aten.add.Tensor) is lowering.lookup(aten.add.Scalar)


def test_fx_to_ir_names_and_plan():
    from torch.fx.experimental.proxy_tensor import make_fx
    gm = make_fx(lambda x, y: (x + y, x.shape[0] * 2), tracing_mode="symbolic")(torch.randn(3, 4), torch.randn(4))
    lowered = fx_to_ir(gm, "g", strict=True)
    assert [v.name for v in lowered.graph.inputs] == ["x_1", "y_1"]
    assert len(lowered.graph.symbols) == 2
    args = [torch.randn(5, 4), torch.randn(4)]
    inputs, env = lowered.plan.bind(args)
    from ember.ir import interpret
    outs = lowered.plan.build_outputs(interpret(lowered.graph, inputs, env), env)
    torch.testing.assert_close(outs[0], args[0] + args[1])
    assert outs[1] == 10
