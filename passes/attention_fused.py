"""torch's backend-specific SDPA ops, as the frontend leaves them, back to the one SDPA extern.

`F.scaled_dot_product_attention` is a composite op: while AOTAutograd traces, it asks the
dispatcher which kernel to use for these (fake) tensors and records that kernel's op:
  * CUDA: `_scaled_dot_product_flash_attention` (no mask; q/k/v padded to a multiple of 8 in D
    and the result sliced back), `_scaled_dot_product_efficient_attention` (masks: a bool mask
    already made additive, where(not m, -inf, 0), padded to 8 keys and expanded to [B, H, M, N]),
    `_scaled_dot_product_cudnn_attention`; the math fallback is written out and the attention
    pass's softmax matcher handles it;
  * CPU: `_scaled_dot_product_flash_attention_for_cpu`, which inference graphs decompose into the
    math form (frontend/decompositions.py) and training graphs keep.
Each returns a tuple whose first element is the output; the others (logsumexp, RNG state, debug
masks) exist for the backward. When nothing reads them (inference) and dropout is 0, the op
computes exactly `scaled_dot_product_attention(q, k, v, attn_mask, is_causal=..., scale=...,
enable_gqa=Hq != Hkv)` on the same operands, so it becomes that extern, which codegen runs as
ember's template or the library. A training forward graph returns the logsumexp for the
backward: the op stays, and so does the library kernel.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from ..ir.graph import infer_result_types
from ..ir.ops import ExternArg, attrs_with_defaults, get_op, resolve_target
from ..ir.types import dims_equal

SDPA = "aten.scaled_dot_product_attention.default"
FUSED_TARGETS = ("aten._scaled_dot_product_flash_attention.default",
                 "aten._scaled_dot_product_efficient_attention.default",
                 "aten._scaled_dot_product_cudnn_attention.default",
                 "aten._scaled_dot_product_flash_attention_for_cpu.default")
_MASK_NAMES = ("attn_bias", "attn_mask")


def _bind(op: Op) -> dict | None:
    """The op's arguments by schema name (defaults filled), operands as Values; None if unknown."""
    try:
        schema = resolve_target(op.attrs["target"])._schema
    except (ValueError, AttributeError):
        return None
    names = [a.name for a in schema.arguments]
    args, kwargs = list(op.attrs["args"]), dict(op.attrs["kwargs"])
    if len(args) > len(names) or set(kwargs) - set(names):
        return None
    bound = {a.name: a.default_value for a in schema.arguments if a.has_default_value()}
    bound.update(zip(names, args))
    bound.update(kwargs)
    out = {}
    for k, x in bound.items():
        out[k] = op.inputs[x.index] if isinstance(x, ExternArg) else x
    return out


def sdpa_of_fused(op: Op, users: dict, outputs: set) -> Op | None:
    """The SDPA extern replacing `op` (a fused SDPA op whose only used result is the output),
    or None when `op` must stay."""
    if op.name != "extern" or op.attrs["target"] not in FUSED_TARGETS:
        return None
    produced = tuple(op.attrs["outputs"])
    if not produced or produced[0] != 0:
        return None
    if any(users.get(r) or r in outputs for r in op.results[1:]):
        return None  # the logsumexp (or RNG state) is read: a training forward
    a = _bind(op)
    if a is None or float(a.get("dropout_p") or 0.0) != 0.0:
        return None
    q, k, v = a.get("query"), a.get("key"), a.get("value")
    mask = next((a[n] for n in _MASK_NAMES if a.get(n) is not None), None)
    if not all(isinstance(t, Value) for t in (q, k, v)) or not (mask is None or isinstance(mask, Value)):
        return None
    if q.type.rank < 3 or k.type.rank != q.type.rank:
        return None
    inputs = [q, k, v] + ([mask] if mask is not None else [])
    kwargs: dict = {}
    if mask is not None:
        kwargs["attn_mask"] = ExternArg(3)
    if a.get("is_causal"):
        kwargs["is_causal"] = True
    if a.get("scale") is not None:
        kwargs["scale"] = float(a["scale"])
    if not dims_equal(q.type.shape[-3], k.type.shape[-3]):
        kwargs["enable_gqa"] = True
    from .attention import REASON  # the reason every SDPA extern of the pass carries
    attrs = attrs_with_defaults(get_op("extern"), {
        "target": SDPA, "args": [ExternArg(0), ExternArg(1), ExternArg(2)], "kwargs": kwargs,
        "reason": REASON})
    result = op.results[0]
    new = Op("extern", inputs, attrs, infer_result_types("extern", inputs, attrs, [result.type]))
    return new


def rewrite_fused_ops(g: Graph) -> list[dict]:
    """Replace every rewritable fused SDPA op in `g` (in place); returns what was rewritten."""
    users, outputs, done = g.users(), set(g.outputs), []
    for i, op in enumerate(list(g.ops)):
        new = sdpa_of_fused(op, users, outputs)
        if new is None:
            continue
        idx = g.ops.index(op)
        g.ops[idx] = new
        g.replace_all_uses(op.results[0], new.result)
        done.append({"op": op.attrs["target"], "causal": bool(new.attrs["kwargs"].get("is_causal")),
                     "masked": "attn_mask" in new.attrs["kwargs"], "gqa": "enable_gqa" in new.attrs["kwargs"]})
    return done
