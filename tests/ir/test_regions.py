"""`fused` regions: a nested body printed as a block that parses back, verified and interpreted
recursively, deep-copied with its graph, opaque to cse/dce/canonicalize."""
import pytest
import torch

from ember.ir import IRParseError, interpret, parse, print_graph, verify
from ember.ir.verifier import VerificationError
from ember.passes import run_pipeline

REGION = """\
func @f[s0](%x: f32[s0,128], %b: f32[128]) -> (f32[s0,128], f32[s0]) [device="cpu"] {
  %0: f32[s0,128] = exp %x
  %1: f32[s0,128], %2: f32[s0] = fused[name="fused0"] %0, %b {
    ^(%a: f32[s0,128], %c: f32[128]):
    %0: f32[s0,128] = add %a, %c
    %1: f32[s0,128] = relu %0
    %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1
    yield %1, %2
  }
  %3: f32[s0,128] = neg %1
  return %3, %2
}
"""

UNFUSED = """\
func @f[s0](%x: f32[s0,128], %b: f32[128]) -> (f32[s0,128], f32[s0]) [device="cpu"] {
  %0: f32[s0,128] = exp %x
  %1: f32[s0,128] = add %0, %b
  %2: f32[s0,128] = relu %1
  %3: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %2
  %4: f32[s0,128] = neg %2
  return %4, %3
}
"""


def _inputs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, 128, generator=g), torch.randn(128, generator=g)]


def test_region_round_trips_and_verifies():
    g = parse(REGION)
    verify(g)
    assert print_graph(g) == REGION
    body = g.ops[1].attrs["body"]
    assert [op.name for op in body.ops] == ["add", "relu", "reduce_sum"]
    assert body.symbols == g.symbols


def test_nested_regions_round_trip():
    text = """\
func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
  %0: f32[4] = fused %x {
    ^(%a: f32[4]):
    %0: f32[4] = fused[name="inner"] %a {
      ^(%p: f32[4]):
      %0: f32[4] = neg %p
      yield %0
    }
    %1: f32[4] = exp %0
    yield %1
  }
  return %0
}
"""
    g = parse(text)
    verify(g)
    assert print_graph(g) == text
    x = torch.randn(4)
    torch.testing.assert_close(interpret(g, [x])[0], torch.exp(-x))


def test_interpreter_recurses_into_regions():
    fused, plain = parse(REGION), parse(UNFUSED)
    for got, want in zip(interpret(fused, _inputs()), interpret(plain, _inputs())):
        torch.testing.assert_close(got, want)


def test_copy_deep_copies_bodies():
    g = parse(REGION)
    c = g.copy()
    assert c.ops[1].attrs["body"] is not g.ops[1].attrs["body"]
    c.ops[1].attrs["body"].ops[1].name = "neg"  # mutating the copy leaves the original alone
    assert print_graph(g) == REGION


@pytest.mark.parametrize("text, line, col, needle", [
    (REGION.replace("%0: f32[s0,128] = add %a, %c", "%0: f32[s0,128] = add %a, %x"), 5, 31,
     "undefined value %x"),  # isolated from above: the function's values are not visible
    (REGION.replace("    yield %1, %2\n", ""), 8, 3, "expected an op or 'yield', found '}'"),
    (REGION.replace("^(%a", "(%a"), 4, 5, "expected '^'"),
    (REGION.replace("%c: f32[128]):", "%c: f32[1]):"), 3, 33, "operand 1 has type"),
    (REGION.replace("yield %1, %2", "yield %1"), 3, 3, "stated result type"),
    (REGION.replace("  %3: f32[s0,128] = neg %1\n", "  yield %1\n"), 10, 3, "found 'yield'"),
])
def test_parse_errors_inside_bodies_name_line_col(text, line, col, needle):
    with pytest.raises(IRParseError) as e:
        parse(text)
    assert (e.value.line, e.value.col) == (line, col), str(e.value)
    assert needle in str(e.value)


def test_verifier_recurses_and_checks_result_types():
    g = parse(REGION)
    body = g.ops[1].attrs["body"]
    body.ops[1].inputs = [body.ops[2].results[0]]  # relu reads a value defined after it
    with pytest.raises(VerificationError, match="body is invalid"):
        verify(g)
    g = parse(REGION)
    g.ops[1].attrs["body"].outputs.reverse()  # the results no longer match the yielded types
    with pytest.raises(VerificationError, match="differ from the type rule"):
        verify(g)


def test_passes_treat_regions_as_opaque():
    g = parse(REGION)
    report = run_pipeline(g, "canonicalize,cse,dce")
    assert not any(r.changed for r in report.records)
    assert print_graph(g) == REGION
    dead = parse(REGION.replace("return %3, %2", "return %3, %3").replace(
        "-> (f32[s0,128], f32[s0])", "-> (f32[s0,128], f32[s0,128])"))
    run_pipeline(dead, "dce")  # the region's %1 is still used: kept
    assert [op.name for op in dead.ops] == ["exp", "fused", "neg"]
