"""Attention on CUDA (bf16), run on the lent H100 with EMBER_TEST_GPU=1: the math-SDPA and eager
forms become one SDPA op, run as ember's flash-attention template or the library SDPA (timed at
compile time), and match eager; the template alone on a large causal shape and a masked GQA one."""
import json

import pytest
import torch

from model_zoo import MODELS, outputs_of, token_ids

SDPA = "aten.scaled_dot_product_attention.default"


def _reports(dump):
    return [json.loads(p.read_text()) for p in sorted(dump.glob("*/report.json"))]


@pytest.mark.gpu
@pytest.mark.parametrize("name,impl", [("bert", "sdpa"), ("bert", "eager"), ("gpt2", "eager"), ("llama", "eager")])
def test_bf16_model_attention_is_one_sdpa_call_and_matches_eager(name, impl, tmp_path):
    # BERT with sdpa traces into torch's math form here (the dispatcher picks math at trace
    # time); the eager implementations write the attention out. Either way: one SDPA per layer.
    torch._dynamo.reset()
    model = MODELS[name]().to("cuda", torch.bfloat16).eval()
    model.set_attn_implementation(impl)
    ids = token_ids(4, 32, device="cuda")
    with torch.no_grad():
        want = outputs_of(name, model(ids))
        got = outputs_of(name, torch.compile(model, backend="ember", options={"dump_dir": str(tmp_path)})(ids))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=5e-2, atol=5e-2)
    reports = _reports(tmp_path)
    matched = sum(next(p["stats"]["matched"] for p in r["passes"] if p["name"] == "attention") for r in reports)
    externs = sum(e["target"] == SDPA for r in reports for e in r["externs"])
    templates = sum(d["op"] == "attention" and not d["is_library"] for r in reports for d in r["autotune"])
    layers = model.config.num_hidden_layers
    assert matched == layers and externs + templates == layers, (matched, externs, templates)


@pytest.mark.gpu
def test_fully_masked_rows_match_eager():
    # On CUDA the fused SDPA kernels do not return 0 for a row whose keys are all masked (torch's
    # math SDPA does): the compiled graph calls the same SDPA op, so it must match eager there too.
    torch._dynamo.reset()
    q, k, v = (torch.randn(2, 4, 16, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    mask = torch.rand(2, 1, 16, 16, device="cuda") > 0.3
    mask[:, :, 3] = False

    def f(q, k, v, m):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)
    want = f(q, k, v, mask)
    got = torch.compile(f, backend="ember")(q, k, v, mask)
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def _template_only(fn, args, tmp_path):
    """fn compiled with the library SDPA out of the race: the template must be chosen."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="ember", options={"dump_dir": str(tmp_path), "attention_library": False})
    got = compiled(*args)
    decisions = [d for r in _reports(tmp_path) for d in r["autotune"] if d["op"] == "attention"]
    assert decisions and all(not d["is_library"] for d in decisions), decisions
    assert not [e for r in _reports(tmp_path) for e in r["externs"] if "scaled_dot_product" in e["target"]]
    return got


@pytest.mark.gpu
def test_template_causal_8x16x4096x128_bf16_matches_sdpa(tmp_path):
    from ember.codegen.attention_template import flash_attention
    q, k, v = (torch.randn(8, 16, 4096, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(flash_attention(q, k, v, is_causal=True), want, rtol=2e-2, atol=2e-2)
    got = _template_only(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
                         (q, k, v), tmp_path)
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
def test_template_masked_gqa_matches_sdpa(tmp_path):
    # HF's padding mask (0 or the dtype's lowest value, built in the graph: no row can be all
    # -inf, so the template is offered on CUDA), 32 query heads over 8 K/V heads, ragged lengths.
    b, hq, hkv, s, d = 2, 32, 8, 1000, 128
    q = torch.randn(b, hq, s, d, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(b, hkv, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    keep = torch.ones(b, s, dtype=torch.bool, device="cuda")
    keep[1, 700:] = False

    def f(q, k, v, keep):
        mask = torch.zeros(keep.shape[0], 1, 1, keep.shape[1], dtype=q.dtype, device=q.device)
        mask = mask.masked_fill(~keep[:, None, None, :], torch.finfo(q.dtype).min)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    want = f(q, k, v, keep)
    torch.testing.assert_close(_template_only(f, (q, k, v, keep), tmp_path), want, rtol=2e-2, atol=2e-2)
