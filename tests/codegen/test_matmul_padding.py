"""Matmul results whose rows are not 16-byte multiples are written into padded rows (cuBLAS has
only slow unaligned kernels for them): the result is a strided view, and every reader of it
(kernels, reshapes, externs, graph outputs) must still see the right values."""
import pytest
import torch

from ember.codegen import compile_graph, wrapper
from ember.ir import TensorType, parse


def test_which_results_are_padded():
    f = wrapper.padded_row_stride
    assert f(TensorType("bf16", (4096, 50257), "cuda")) == 50264
    assert f(TensorType("f32", (64, 50257), "cuda")) == 50260
    assert f(TensorType("bf16", (64, 50264), "cuda")) is None      # already aligned
    assert f(TensorType("bf16", (64, 7), "cuda")) is None          # too narrow to matter
    assert f(TensorType("bf16", (2, 64, 50257), "cuda")) is None   # batched: left to torch
    assert f(TensorType("bf16", (64, 50257), "cpu")) is None       # cuBLAS only


GRAPH = """\
func @f(%x: f32[6,16], %w: f32[16,301], %b: f32[301]) -> (f32[6,301], f32[2,3,301], f32[6,301]) [device="cpu"] {
  %0: f32[6,301] = matmul %x, %w
  %1: f32[6,301] = add %0, %b
  %2: f32[2,3,301] = reshape[shape=(2, 3, 301)] %0
  %3: f32[6,301] = extern[target="aten.sort.default", args=[#0], outputs=(0,)] %0
  return %1, %2, %3
}
"""


def test_padded_result_reads_right_everywhere(monkeypatch):
    monkeypatch.setattr(wrapper, "PAD_ROWS_DEVICES", ("cuda", "cpu"))
    compiled = compile_graph(parse(GRAPH))
    assert "mm_padded_n(x, w, 304)" in compiled.wrapper_source
    x, w, b = torch.randn(6, 16), torch.randn(16, 301), torch.randn(301)
    got = compiled([x, w, b])
    mm = x @ w
    for g, want in zip(got, [mm + b, mm.view(2, 3, 301), torch.sort(mm).values]):
        torch.testing.assert_close(g, want)
    assert got[1].stride() == (3 * 304, 304, 1)  # a view of the padded rows, no copy


@pytest.mark.gpu
def test_padded_matmul_on_cuda():
    g = parse(GRAPH.replace('"cpu"', '"cuda"'))
    for v in g.inputs:
        v.type = TensorType(v.type.dtype, v.type.shape, "cuda")
    compiled = compile_graph(g)
    x, w, b = (torch.randn(*s, device="cuda") for s in [(6, 16), (16, 301), (301,)])
    got = compiled([x, w, b])
    torch.testing.assert_close(got[0], x @ w + b)
    assert got[0].is_contiguous() and got[1].stride()[-2] == 304


@pytest.mark.parametrize("transposed", [False, True])
def test_mm_padded_n_keeps_the_product(transposed):
    from ember.codegen.runtime import mm_padded_n
    a = torch.randn(5, 12)
    b = torch.randn(301, 12).t() if transposed else torch.randn(12, 301)
    got = mm_padded_n(a, b, 304)
    torch.testing.assert_close(got, a @ b)
    assert got.shape == (5, 301) and got.stride() == (304, 1)
