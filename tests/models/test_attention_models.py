"""The attention pass end to end on CPU: compiled functions and tiny HF models match eager on
fresh random inputs, and each attention became one SDPA op that codegen runs as ember's
flash-attention template (the interpreter's heuristic choice): one launch, no library call."""
import json
import math

import pytest
import torch

from model_zoo import MODELS, outputs_of, token_ids

F = torch.nn.functional
SDPA = "aten.scaled_dot_product_attention.default"


def _attention_stats(dump) -> list[dict]:
    """The attention pass's stats, the SDPA library calls and the template launches chosen,
    per compiled graph."""
    out = []
    for path in sorted(dump.glob("*/report.json")):
        rep = json.loads(path.read_text())
        stats = next(p["stats"] for p in rep["passes"] if p["name"] == "attention")
        templates = sum(d["op"] == "attention" and not d["is_library"] for d in rep["autotune"])
        out.append(dict(stats, externs=sum(e["target"] == SDPA for e in rep["externs"]), templates=templates))
    return out


def _compile_and_check(fn, args, dump, **tol):
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="ember", fullgraph=True, options={"dump_dir": str(dump)})
    with torch.no_grad():
        torch.testing.assert_close(compiled(*args), fn(*args), **tol)
    return _attention_stats(dump)


def _hand_written(q, k, v, mask):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + mask
    return torch.softmax(s, dim=-1) @ v


CASES = {
    "sdpa": lambda q, k, v, b, f: F.scaled_dot_product_attention(q, k, v),
    "sdpa_bool_mask": lambda q, k, v, b, f: F.scaled_dot_product_attention(q, k, v, attn_mask=b),
    "sdpa_float_mask": lambda q, k, v, b, f: F.scaled_dot_product_attention(q, k, v, attn_mask=f),
    "sdpa_causal": lambda q, k, v, b, f: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    "sdpa_scale": lambda q, k, v, b, f: F.scaled_dot_product_attention(q, k, v, scale=0.3),
    "hand_written_causal": lambda q, k, v, b, f: _hand_written(
        q, k, v, torch.full((q.shape[-2],) * 2, float("-inf")).triu(1)),
    "hand_written_padding": lambda q, k, v, b, f: _hand_written(
        q, k, v, torch.where(b, 0.0, torch.finfo(torch.float32).min)),
    "hand_written_clamped": lambda q, k, v, b, f: _hand_written(q, k, v, f.clamp(min=-1e4)),
    # A float mask as given could hold a row of -inf (NaN here, 0 in SDPA): left as it is.
    "hand_written_any_mask": lambda q, k, v, b, f: _hand_written(q, k, v, f),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_functions_match_eager_with_one_attention_kernel(case, tmp_path):
    b, h, s, d = 2, 3, 6, 8
    q, k, v = (torch.randn(b, h, s, d) for _ in range(3))
    bool_mask = torch.rand(b, 1, s, s) > 0.3
    float_mask = torch.randn(b, 1, s, s)
    stats = _compile_and_check(CASES[case], (q, k, v, bool_mask, float_mask), tmp_path)
    want = (0, 0, 0) if case == "hand_written_any_mask" else (1, 1, 0)
    assert [(st["matched"], st["templates"], st["externs"]) for st in stats] == [want], stats
    assert stats[0]["causal"] == int(case.endswith("causal"))


def test_gqa_matches_eager(tmp_path):
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    stats = _compile_and_check(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                               (q, k, v), tmp_path)
    assert stats[0]["matched"] == 1 and stats[0]["gqa"] == 1 and stats[0]["templates"] == 1


def _model(name: str, impl: str):
    model = MODELS[name]().eval()
    model.set_attn_implementation(impl)
    return model


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name,padded", [("bert", True), ("gpt2", True), ("gpt2", False), ("llama", True),
                                         ("llama", False)])
def test_hf_models_match_eager_with_one_attention_kernel_per_layer(name, padded, impl, tmp_path):
    """Padded: HF's mask (padding, and causal for the decoders) goes to SDPA as a mask. Not
    padded: the decoders' causal mask is built from constants and becomes is_causal."""
    model = _model(name, impl)
    ids = token_ids(2, 8)
    pad = torch.ones(2, 8, dtype=torch.long)
    pad[1, 6:] = 0  # right padding: every query row still sees a key
    kwargs = {"attention_mask": pad} if padded else {}
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="ember", options={"dump_dir": str(tmp_path)})
    with torch.no_grad():
        want = outputs_of(name, model(ids, **kwargs))
        got = outputs_of(name, compiled(ids, **kwargs))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    layers = model.config.num_hidden_layers
    stats = _attention_stats(tmp_path)
    keys = ("matched", "templates", "externs", "gqa", "causal", "masked")
    total = {key: sum(st[key] for st in stats) for key in keys}
    assert total == {"matched": layers, "templates": layers, "externs": 0, "gqa": layers if name == "llama" else 0,
                     "causal": 0 if padded else layers, "masked": layers if padded else 0}, stats
