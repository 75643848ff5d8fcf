"""Printer/parser contract: parse(print(g)) prints identically; the parser names line:col on errors."""
import math

import pytest
import torch

from ember.ir import Builder, ExternArg, IRParseError, TensorType, parse, print_graph, symbol, verify

s0, s1 = symbol("s0"), symbol("s1")


def _sample_graph():
    b = Builder("forward")
    x = b.input("x", TensorType("f32", (s0, 64)))
    w = b.input("w", TensorType("f32", (64, 128)))
    bias = b.input("b", TensorType("f32", (128,)))
    ids = b.input("ids", TensorType("i64", (s0,)))
    m = b.op("matmul", x, w)
    r = b.op("relu", b.op("add", m, bias))
    s = b.op("reduce_sum", r, axes=(1,), keepdim=False)
    c = b.op("full", result_types=[TensorType("f32", ())], value=-math.inf)
    mx = b.op("maximum", s, c)
    rs = b.op("reshape", r, shape=(2 * s0, 64))
    sl = b.op("slice", rs, dim=0, start=1, end=2 * s0, step=2)
    emb = b.op("index", w, ids, dim=0)
    h = b.op("cast", emb, dtype="bf16")
    e = b.op("extern", x, result_types=[TensorType("f32", (s0, 64))], target="aten.sin.default",
             args=(ExternArg(0),), kwargs={"k": [1, 2.5, None, True, torch.float16, "s"]}, reason="test")
    return b.build([mx, sl, h, e])


def test_print_parse_print_is_stable():
    g = _sample_graph()
    verify(g)
    text = print_graph(g)
    g2 = parse(text)
    verify(g2)
    assert print_graph(g2) == text
    assert g2 == g


def test_device_suffix_only_when_it_differs():
    b = Builder("f", device="cuda:0")
    x = b.input("x", TensorType("f32", (4,), "cuda:0"))
    y = b.input("y", TensorType("f32", (), "cpu"))
    g = b.build([b.op("add", x, y)])
    text = print_graph(g)
    assert "%y: f32[]@cpu" in text and "%x: f32[4]," in text
    assert print_graph(parse(text)) == text


GOOD = """func @f[s0](%x: f32[s0,8]) -> (f32[s0]) [device="cpu"] {
  %0: f32[s0,8] = exp %x
  %1: f32[s0] = reduce_max[axes=(1,), keepdim=False] %0
  return %1
}
"""


@pytest.mark.parametrize("text,line,col,needle", [
    (GOOD.replace("exp %x", "frob %x"), 2, 19, "unknown op 'frob'"),
    (GOOD.replace("%0: f32[s0,8] = exp", "%0: f32[s0,9] = exp"), 2, 3, "differ from the inferred"),
    (GOOD.replace("f32[s0,8]) ->", "f32[s1,8]) ->"), 1, 21, "undeclared symbol 's1'"),
    (GOOD.replace("exp %x", "exp %y"), 2, 23, "undefined value %y"),
    (GOOD.replace("axes=(1,)", "axes=(1,"), 3, 36, "expected"),
    (GOOD.replace("keepdim=False", "keepdim=False, axes=(0,)"), 3, 54, "given twice"),
    (GOOD.replace("f32[s0]) [", "f64[s0]) ["), 1, 32, "differs from returned"),
    (GOOD.replace("  return %1\n", ""), 4, 1, "missing 'return'"),
    (GOOD.replace("}\n", ""), 4, 1, "missing closing"),
    ("", 1, 1, "empty input"),
    (GOOD.replace("f32[s0,8]) ->", "q32[s0,8]) ->"), 1, 17, "unknown dtype 'q32'"),
])
def test_parse_errors_name_line_col_and_cause(text, line, col, needle):
    with pytest.raises(IRParseError) as info:
        parse(text)
    err = info.value
    assert needle in err.msg, err
    assert (err.line, err.col) == (line, col), err


def test_comments_and_blank_lines_are_skipped():
    g = parse("// a comment\n\n" + GOOD)
    assert print_graph(g) == GOOD


def test_symbolic_attribute_values_roundtrip():
    b = Builder("f")
    x = b.input("x", TensorType("f32", (s0, s1)))
    y = b.op("reshape", x, shape=(s0 * s1,))
    z = b.op("pad", x, pads=((1, 2), (0, 3)), value=0.5)
    g = b.build([y, z])
    text = print_graph(g)
    assert "reshape[shape=(s0*s1,)]" in text
    assert print_graph(parse(text)) == text
