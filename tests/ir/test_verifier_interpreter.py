"""Verifier catches broken graphs; the interpreter matches eager torch."""
import pytest
import torch

from ember.ir import Builder, TensorType, VerificationError, interpret, parse, symbol, verify
from ember.ir.ops import OPS, TypeError_

s0 = symbol("s0")


def test_verifier_reports_use_before_def_and_bad_types():
    b = Builder("f")
    x = b.input("x", TensorType("f32", (4,)))
    y = b.op("exp", x)
    z = b.op("neg", y)
    g = b.build([z])
    g.ops.reverse()  # neg now uses exp's result before it is defined
    with pytest.raises(VerificationError, match="used before it is defined"):
        verify(g)
    g.ops.reverse()
    g.ops[0].results[0].type = TensorType("f16", (4,))
    with pytest.raises(VerificationError, match="differ from the type rule"):
        verify(g)


def test_type_rules_reject_mixed_dtypes_and_bad_broadcast():
    b = Builder("f")
    x = b.input("x", TensorType("f32", (4,)))
    y = b.input("y", TensorType("f16", (4,)))
    z = b.input("z", TensorType("f32", (5,)))
    with pytest.raises(TypeError_, match="dtypes differ"):
        b.op("add", x, y)
    with pytest.raises(TypeError_, match="do not broadcast"):
        b.op("add", x, z)


def test_interpreter_matches_eager_with_symbolic_sizes():
    g = parse("""func @f[s0](%x: f32[s0,8], %b: f32[8]) -> (f32[s0], f32[8,s0]) {
  %0: f32[s0,8] = add %x, %b
  %1: f32[s0,8] = tanh %0
  %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1
  %3: f32[8,s0] = permute[dims=(1, 0)] %1
  return %2, %3
}""")
    for n in (3, 7):
        x, bias = torch.randn(n, 8), torch.randn(8)
        got = interpret(g, [x, bias])
        torch.testing.assert_close(got[0], torch.tanh(x + bias).sum(1))
        torch.testing.assert_close(got[1], torch.tanh(x + bias).t())


def test_interpreter_rejects_wrong_input_shape():
    g = parse("func @f(%x: f32[4]) -> (f32[4]) {\n  %0: f32[4] = exp %x\n  return %0\n}")
    with pytest.raises(ValueError, match="expected f32\\[4\\]"):
        interpret(g, [torch.randn(5)])


def test_every_op_has_a_type_rule_and_reference():
    for name, op in OPS.items():
        assert callable(op.type_rule) and callable(op.reference), name
        assert op.kind in {"unary", "binary", "ternary", "cast", "constant", "reduction", "view",
                           "index", "matmul", "extern", "region"}, name


def test_docs_op_table_lists_every_op():
    from pathlib import Path
    doc = (Path(__file__).parents[2] / "docs" / "ir.md").read_text()
    table = [line for line in doc.splitlines() if line.startswith("| ")]
    listed = {w for line in table for w in line.split("|")[2].split()}
    assert set(OPS) <= listed, sorted(set(OPS) - listed)


def test_verifier_rejects_undeclared_symbols_in_attributes():
    u0 = symbol("u0")
    b = Builder("f")
    b.op("full", result_types=[TensorType("f32", ())], value=u0)
    g = b.build([])
    with pytest.raises(VerificationError, match="undeclared symbols \\['u0'\\]"):
        verify(g)
