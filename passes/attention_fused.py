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

Two things the written-out form gets from the attention pass the fused ops get here too, or a
CUDA trace would pay for them at every call (on an H100, transformers' Llama passes a mask and
repeat_kv'd k/v to the cuDNN op: per layer a copy of v, and once per call a dozen kernels that
build a mask which is causal):
  * a mask computed from constants alone is evaluated at compile time (attention_mask.classify):
    exactly causal becomes is_causal, keep-everything becomes no mask;
  * k and v that are both repeat_kv(t, r) of their Hkv-head tensors become those tensors with
    enable_gqa, which computes the same (head h reads kv head h // r) without the copies.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from ..ir.graph import infer_result_types
from ..ir.ops import ExternArg, attrs_with_defaults, get_op, resolve_target
from ..ir.types import dims_equal
from .attention_mask import classify
from .attention_views import repeated
from .dce import remove_dead
from .effects import mutated_values

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


def sdpa_of_fused(op: Op, users: dict, outputs: set, graph_ops: list[Op] | None = None,
                  masks: dict | None = None, written: set = frozenset()) -> Op | None:
    """The SDPA extern replacing `op` (a fused SDPA op whose only used result is the output),
    or None when `op` must stay. With `graph_ops` (the graph's ops, in order), a constant mask
    is classified (`masks` caches its evaluation; `written`: values externs write in place)."""
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
    causal = bool(a.get("is_causal"))
    if mask is not None and graph_ops is not None and not causal:
        scores = tuple(q.type.shape[:-1]) + (k.type.shape[-2],)
        info = classify(mask, False, scores, graph_ops, masks, written)
        if info.value is None:  # constant: exactly causal, or keeps every key
            mask, causal = None, info.causal
    batch = tuple(q.type.shape[:-2])
    rk, rv = repeated(k, batch), repeated(v, batch)
    if rk is not None and rv is not None and dims_equal(rk[1], rv[1]) and \
            not ({rk[0], rv[0]} & set(written)):
        k, v = rk[0], rv[0]
    inputs = [q, k, v] + ([mask] if mask is not None else [])
    kwargs: dict = {}
    if mask is not None:
        kwargs["attn_mask"] = ExternArg(3)
    if causal:
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
    """Replace every rewritable fused SDPA op in `g` (in place); returns what was rewritten.
    What only the replaced ops read (a constant mask's ops, repeat_kv's views) is removed: dce
    has run already, and those ops would otherwise run as kernels."""
    users, outputs, done = g.users(), set(g.outputs), []
    masks, written, dropped = {}, mutated_values(g), set()
    for op in list(g.ops):
        new = sdpa_of_fused(op, users, outputs, g.ops, masks, written)
        if new is None:
            continue
        idx = g.ops.index(op)
        g.ops[idx] = new
        g.replace_all_uses(op.results[0], new.result)
        dropped.update(set(op.inputs) - set(new.inputs))
        done.append({"op": op.attrs["target"], "causal": bool(new.attrs["kwargs"].get("is_causal")),
                     "masked": "attn_mask" in new.attrs["kwargs"], "gqa": "enable_gqa" in new.attrs["kwargs"]})
    if dropped:
        _remove_dead_cones(g, dropped)
    return done


def _remove_dead_cones(g: Graph, roots: set[Value]) -> None:
    """Remove the ops computing `roots` (operands the new externs no longer read: a constant
    mask, repeat_kv's views) and what they were computed from, as far as nothing else reads it."""
    cone, stack = set(), [v.producer for v in roots if v.producer is not None]
    while stack:
        op = stack.pop()
        if op not in cone:
            cone.add(op)
            stack.extend(x.producer for x in op.inputs if x.producer is not None)
    remove_dead(g, among=cone)
