"""ember's flash-attention template, called directly, against torch's SDPA (math, f32) on fresh
random inputs: masks, causal alignment when M != N, GQA, padded head dims, layouts, dtypes,
logsumexp, and the search space's pruning."""
import math

import pytest
import torch

from ember.codegen.attention_template import (AttentionConfig, AttentionSpec, flash_attention,
                                              heuristic_config, search_space, template_source)

F = torch.nn.functional
SMALL = AttentionConfig(16, 16, 4, 2)  # several query and key blocks on tiny shapes
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _reference(q, k, v, mask=None, causal=False, scale=None):
    """SDPA on f32 copies (torch's math); GQA when k has fewer heads than q."""
    m = mask if mask is None or mask.dtype == torch.bool else mask.float()
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=m, is_causal=causal,
                                          scale=scale, enable_gqa=q.shape[-3] != k.shape[-3])


def _qkv(b, hq, hk, m, n, d, dtype):
    return (torch.randn(b, hq, m, d, dtype=dtype), torch.randn(b, hk, n, d, dtype=dtype),
            torch.randn(b, hk, n, d, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal,m,n", [(False, 37, 53), (True, 48, 48), (True, 50, 21), (True, 19, 70)])
def test_matches_sdpa_causal_or_not_ragged_and_non_square(dtype, causal, m, n):
    # M != N with is_causal: top-left aligned, as torch's SDPA (row i sees keys j <= i).
    q, k, v = _qkv(2, 2, 2, m, n, 16, dtype)
    got = flash_attention(q, k, v, is_causal=causal, config=SMALL)
    assert got.dtype == dtype and got.shape == q.shape
    torch.testing.assert_close(got.float(), _reference(q, k, v, causal=causal), **TOL[dtype])


@pytest.mark.parametrize("mask_shape", [(2, 3, 20, 35), (2, 1, 20, 35), (1, 3, 1, 35), (20, 35), (1, 35)])
@pytest.mark.parametrize("kind", ["bool", "add"])
def test_masks_broadcast_over_batch_heads_rows(mask_shape, kind):
    q, k, v = _qkv(2, 3, 3, 20, 35, 32, torch.float32)
    mask = torch.rand(mask_shape) > 0.3 if kind == "bool" else torch.randn(mask_shape)
    got = flash_attention(q, k, v, mask, config=SMALL)
    torch.testing.assert_close(got, _reference(q, k, v, mask), **TOL[torch.float32])


def test_bf16_additive_mask_in_q_dtype_and_hf_lowest_value_rows():
    # HF's padding masks hold the dtype's lowest value; a row of only those is uniform weights
    # in torch (finite arithmetic), and must not overflow to -inf here (the scores stay in
    # natural units when a mask is added).
    q, k, v = _qkv(1, 2, 2, 24, 40, 40, torch.bfloat16)  # D=40: padded to 64
    mask = torch.where(torch.rand(1, 1, 24, 40) > 0.3, 0.0, torch.finfo(torch.bfloat16).min).to(torch.bfloat16)
    mask[..., 5, :] = torch.finfo(torch.bfloat16).min
    got = flash_attention(q, k, v, mask, config=SMALL)
    torch.testing.assert_close(got.float(), _reference(q, k, v, mask), **TOL[torch.bfloat16])
    torch.testing.assert_close(got[0, :, 5].float(), v[0].float().mean(1), **TOL[torch.bfloat16])


def test_fully_masked_rows_give_zero_and_lse_minus_inf_like_torch_on_cpu():
    q, k, v = _qkv(1, 2, 2, 16, 24, 16, torch.float32)
    mask = torch.rand(1, 2, 16, 24) > 0.5
    mask[0, 1, 3] = False
    out, lse = flash_attention(q, k, v, mask, config=SMALL, return_lse=True)
    want = _reference(q, k, v, mask)
    assert bool((want[0, 1, 3] == 0).all())  # torch's CPU SDPA: 0 for such a row
    torch.testing.assert_close(out, want, **TOL[torch.float32])
    assert lse[0, 1, 3].item() == -math.inf


@pytest.mark.parametrize("causal", [False, True])
def test_logsumexp_is_the_rows_logsumexp_of_the_scaled_scores(causal):
    q, k, v = _qkv(2, 2, 2, 33, 33, 16, torch.float32)
    out, lse = flash_attention(q, k, v, is_causal=causal, scale=0.3, config=SMALL, return_lse=True)
    s = q @ k.transpose(-2, -1) * 0.3
    if causal:
        s = s.masked_fill(~torch.ones(33, 33, dtype=torch.bool).tril(), -math.inf)
    assert lse.dtype == torch.float32 and lse.shape == (2, 2, 33)
    torch.testing.assert_close(lse, torch.logsumexp(s, -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, _reference(q, k, v, causal=causal, scale=0.3), **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gqa_with_causal_and_with_a_mask(dtype):
    q, k, v = _qkv(2, 4, 2, 30, 30, 16, dtype)
    torch.testing.assert_close(flash_attention(q, k, v, is_causal=True, config=SMALL).float(),
                               _reference(q, k, v, causal=True), **TOL[dtype])
    mask = torch.rand(2, 4, 30, 30) > 0.2
    torch.testing.assert_close(flash_attention(q, k, v, mask, config=SMALL).float(),
                               _reference(q, k, v, mask), **TOL[dtype])


def test_non_contiguous_layouts_and_rank_3():
    # q/k/v as permutes of [B, M, H, D] tensors (how projections are split into heads).
    q = torch.randn(2, 21, 3, 16).permute(0, 2, 1, 3)
    k = torch.randn(2, 26, 3, 16).permute(0, 2, 1, 3)
    v = torch.randn(2, 3, 16, 26).transpose(-2, -1)
    torch.testing.assert_close(flash_attention(q, k, v, config=SMALL), _reference(q, k, v), **TOL[torch.float32])
    q3, k3, v3 = (torch.randn(4, 18, 16) for _ in range(3))
    torch.testing.assert_close(flash_attention(q3, k3, v3, is_causal=True, config=SMALL),
                               _reference(q3, k3, v3, causal=True), **TOL[torch.float32])


def test_default_heuristic_config_runs():
    q, k, v = _qkv(1, 2, 2, 40, 40, 32, torch.float16)
    torch.testing.assert_close(flash_attention(q, k, v, is_causal=True).float(),
                               _reference(q, k, v, causal=True), **TOL[torch.float16])


def test_source_skips_blocks_and_holds_no_config():
    causal = template_source(AttentionSpec(64, "bf16", 0.125, causal=True))
    assert "tl.minimum(N, start_m + BLOCK_M)" in causal   # no block right of the diagonal
    assert causal.count("offs_n[None, :] <= offs_m[:, None]") == 1  # only the diagonal loop masks
    plain = template_source(AttentionSpec(64, "bf16", 0.125))
    assert "offs_m[:, None]" not in plain.split("for start_n")[1]  # no element mask in the full loop
    assert "d_ok" not in plain and "d_ok" in template_source(AttentionSpec(40, "bf16", 0.125))
    for src in (causal, plain):
        assert "BLOCK_M: tl.constexpr" in src and "128" not in src and "num_warps" not in src


def test_search_space_prunes_by_head_dim_and_sequence_length():
    big = search_space(128, 2, 4096, 4096)
    assert AttentionConfig(128, 128, 8, 2) in big and AttentionConfig(128, 128, 8, 4) not in big
    assert all(c.BLOCK_N <= 64 or c.BLOCK_M <= 64 for c in search_space(256, 2, 4096, 4096))
    d64 = search_space(64, 2, 512, 512)  # up to D=64: three stages, no 128x128 tile
    assert {(c.BLOCK_M, c.BLOCK_N, c.num_stages) for c in d64} == {(128, 64, 3), (128, 32, 3), (64, 64, 3), (64, 32, 3)}
    small = search_space(32, 2, 20, 9)
    assert {(c.BLOCK_M, c.BLOCK_N) for c in small} == {(32, 16)}
    assert heuristic_config(big, 128) == AttentionConfig(128, 64, 8, 3)
    assert heuristic_config(search_space(256, 2, 4096, 4096), 256) == AttentionConfig(64, 32, 8, 3)
    assert heuristic_config(small, 32) in small
