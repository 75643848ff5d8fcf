"""Matmuls with a size that is not a multiple of 16 bytes go through padded copies (cuBLAS has
only slow unaligned kernels for them): the result is a view of the padded product, and every
reader of it (kernels, reshapes, externs, graph outputs) must still see the right values."""
import pytest
import torch

from ember.codegen import compile_graph, matmul_emit
from ember.codegen.matmul_emit import FixedChoice
from ember.codegen.runtime import mm_aligned
from ember.ir import parse


def _sizes(m, k, n, dtype="bf16", device="cuda"):
    g = parse(f"""
func @f(%a: {dtype}[{m},{k}], %b: {dtype}[{k},{n}]) -> ({dtype}[{m},{n}]) [device="{device}"] {{
  %0: {dtype}[{m},{n}] = matmul %a, %b
  return %0
}}""")
    got = matmul_emit.aligned_mm_sizes(g.ops[0])
    return None if got is None else tuple(int(d) if d.is_Integer else str(d) for d in got)


def test_which_sizes_are_padded():
    assert _sizes(4096, 768, 50257) == (4096, 768, 50264)           # GPT-2's LM head
    assert _sizes(4096, 50257, 768) == (4096, 50264, 768)           # its input gradient
    assert _sizes(50257, 4096, 768) == (50264, 4096, 768)           # its weight gradient
    assert _sizes(64, 768, 50257, dtype="f32") == (64, 768, 50260)
    assert _sizes(64, 768, 50264) is None                            # aligned already
    assert _sizes(64, 7, 9) is None                                  # too small to matter
    assert _sizes(64, 768, 50257, device="cpu") is None              # cuBLAS only


def test_symbolic_rows_stay_symbolic():
    g = parse("""
func @f[s0](%a: bf16[s0,768], %b: bf16[768,50257]) -> (bf16[s0,50257]) [device="cuda"] {
  %0: bf16[s0,50257] = matmul %a, %b
  return %0
}""")
    m, k, n = matmul_emit.aligned_mm_sizes(g.ops[0])
    assert str(m) == "s0"
    assert (k, n) == (768, 50264)


@pytest.mark.parametrize("a_cols_major", [False, True])
@pytest.mark.parametrize("b_cols_major", [False, True])
def test_mm_aligned_keeps_the_product(a_cols_major, b_cols_major):
    a = torch.randn(13, 301).t().contiguous().t() if a_cols_major else torch.randn(13, 301)
    b = torch.randn(259, 301).t() if b_cols_major else torch.randn(301, 259)
    got = mm_aligned(a, b, 16, 304, 264)
    torch.testing.assert_close(got, a @ b)
    assert got.shape == (13, 259)


@pytest.mark.parametrize("into", ["new", "out"])
def test_only_n_unaligned_splits_the_columns_instead_of_copying_b(monkeypatch, into):
    # GPT-2's LM head: a [M, 768] row-major, b the [50257, 768] embedding read column-major
    # (leading dimension 768, aligned). b must not be copied (a second 77-MiB weight per call):
    # two GEMMs write the aligned columns and the last N % 8 into the padded rows instead.
    from ember.codegen import runtime
    monkeypatch.setattr(runtime, "_padded_copy", lambda *a, **k: pytest.fail("b was copied"))
    a = torch.randn(12, 32, dtype=torch.bfloat16)
    b = torch.randn(37, 32, dtype=torch.bfloat16).t()   # N = 37 = 32 + 5
    out = torch.full((12, 40), float("nan"), dtype=torch.bfloat16) if into == "out" else None
    got = mm_aligned(a, b, 12, 32, 40, out)
    torch.testing.assert_close(got, a @ b)
    assert got.shape == (12, 37) and got.stride() == (40, 1)
    if out is not None:
        assert got.data_ptr() == out.data_ptr()


def test_unaligned_leading_dimension_still_copies():
    a = torch.randn(12, 32, dtype=torch.bfloat16)
    b = torch.randn(32, 37, dtype=torch.bfloat16)       # row-major: leading dimension 37
    torch.testing.assert_close(mm_aligned(a, b, 12, 32, 40), a @ b)


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
    monkeypatch.setattr(matmul_emit, "PAD_DEVICES", ("cuda", "cpu"))
    compiled = compile_graph(parse(GRAPH), chooser=FixedChoice("cpu", "library"))
    assert "mm_aligned(x, w, 6, 16, 304, buf0_padded)" in compiled.wrapper_source
    x, w, b = torch.randn(6, 16), torch.randn(16, 301), torch.randn(301)
    got = compiled([x, w, b])
    mm = x @ w
    for g, want in zip(got, [mm + b, mm.view(2, 3, 301), torch.sort(mm).values]):
        torch.testing.assert_close(g, want)
    assert got[1].stride() == (3 * 304, 304, 1)  # a view of the padded rows, no copy


@pytest.mark.gpu
def test_padded_matmuls_on_cuda():
    for m, k, n in [(40, 300, 301), (301, 40, 300), (300, 301, 40)]:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16).t()
        g = parse(f"""
func @f(%a: bf16[{m},{k}], %b: bf16[{k},{n}]) -> (bf16[{m},{n}]) [device="cuda"] {{
  %0: bf16[{m},{n}] = matmul %a, %b
  return %0
}}""")
        compiled = compile_graph(g, chooser=FixedChoice("cuda", "library"))
        assert "mm_aligned" in compiled.wrapper_source
        torch.testing.assert_close(compiled([a, b])[0], a @ b, atol=0.1, rtol=2e-2)
