"""Capture details of the frontend: what the trace hands over and how it becomes IR."""
import torch


def test_lifted_scalar_tensor_constants_become_full_ops(tmp_path):
    # torch.tensor(...) in model code is lifted by the trace as a constant attribute; a 0-d one
    # is a `full` in the IR (passes see its value), not an extra graph input.
    def f(x):
        return torch.where(x > 0, x, torch.tensor(-2.5)) * torch.tensor(3.0)
    torch._dynamo.reset()
    x = torch.randn(4, 8)
    got = torch.compile(f, backend="ember", fullgraph=True, options={"dump_dir": str(tmp_path)})(x)
    torch.testing.assert_close(got, f(x))
    (ir,) = [p.read_text() for p in tmp_path.rglob("00.input.ir")]
    header = next(line for line in ir.splitlines() if line.startswith("func"))
    assert header.count("%") == 1, header          # x is the only input
    assert "full[value=-2.5]" in ir and "full[value=3.0]" in ir, ir
