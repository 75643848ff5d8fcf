"""What an attention mask means, for the attention pass: the SDPA form of the mask the scores
saw, whether it is really no mask or exactly causal, and whether a row can be fully masked.

The pass hands SDPA either a boolean mask (True: the key takes part) or an additive float mask in
q's dtype. Masks built from constants alone (HF's causal masks without padding, `triu` of -inf,
an all-True mask) are evaluated here at compile time, on CPU, with the reference interpreter:
that is the proof that a mask is exactly causal (SDPA's is_causal, top-left aligned like
`torch.ones(L, S).tril()`) or empty, for concrete shapes only.

Fully masked rows are where the written-out forms differ: a plain softmax over a row of -inf
gives NaN, torch's math SDPA (its "safe softmax") and the SDPA kernels give 0. `empty_rows` says
whether a row can be all -inf: False (provably not), True (it is), None (unknown).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..ir import Graph, Op, TensorType, Value, interpret, to_torch
from ..ir.graph import infer_result_types

# Compile-time evaluation of a constant mask: at most this many elements per value (a
# [16,1,512,512] mask is 4M); larger ones are passed to SDPA as they are.
EVAL_LIMIT = 1 << 24
# What torch's SDPA fills a bool mask's dropped entries with for cuDNN
# (convert_boolean_attn_mask_cudnn): f16's lowest value, not -inf.
CUDNN_FILL = -65504.0
# Ops a constant mask may be built from: pure, deterministic, evaluable by the interpreter.
_NOT_EVALUABLE = frozenset({"extern", "fused"})


@dataclass
class Mask:
    """The mask SDPA gets: `value` is None (no mask), a b1 value (True: keep) or a float value
    added to the scores; `causal` replaces the mask by is_causal=True."""
    value: Value | None
    causal: bool = False
    empty_rows: bool | None = False


def scalar_constant(v: Value) -> float | None:
    """The value of a one-element `full`, rounded as its dtype stores it (a bf16 0.1767... is
    0.1767578125: that is what the graph multiplies by), or None."""
    op = v.producer
    if op is None or op.name != "full" or not all(d == 1 for d in v.type.shape):
        return None
    value = op.attrs["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return torch.full((), value, dtype=to_torch(v.type.dtype)).item()


def strip_widening(v: Value) -> Value:
    """Through casts that change no value (f16/bf16 -> f32 -> f64): the mask as first computed."""
    widen = {("f16", "f32"), ("bf16", "f32"), ("f16", "f64"), ("bf16", "f64"), ("f32", "f64")}
    while v.producer is not None and v.producer.name == "cast" and \
            (v.producer.inputs[0].type.dtype, v.type.dtype) in widen:
        v = v.producer.inputs[0]
    return v


def sdpa_mask(m: Value, dtype: str) -> tuple[Value | None, bool, str]:
    """An additive mask `m` (added to scores) in SDPA's terms: (value, negate, why-not).

    where(c, 0, -inf) is the boolean mask c (torch's math SDPA builds exactly this from a bool
    mask; the frontend keeps it so); where(c, -inf, 0) is not-c (`negate`). Any other mask must
    be a float of q's dtype `dtype`, possibly widened to f32 on the way (SDPA takes it as is)."""
    m = strip_widening(m)
    p = m.producer
    if p is not None and p.name == "where":
        a, b = scalar_constant(p.inputs[1]), scalar_constant(p.inputs[2])
        if a == 0.0 and b == -math.inf:
            return p.inputs[0], False, ""
        if a == -math.inf and b == 0.0:
            return p.inputs[0], True, ""
    if m.type.dtype == dtype:
        return m, False, ""
    return None, False, f"additive mask of dtype {m.type.dtype} where q/k/v are {dtype}"


def constant_cone(v: Value, written: set = frozenset()) -> list[Op] | None:
    """The ops `v` is computed from (unordered), if none reads a graph input or a value an
    extern writes in place (`written`): then `v` is a constant."""
    seen: dict[Op, None] = {}
    stack = [v]
    while stack:
        x = stack.pop()
        op = x.producer
        if op is None or op.name in _NOT_EVALUABLE or len(op.results) != 1 or x in written:
            return None
        if op in seen:
            continue
        seen[op] = None
        stack.extend(op.inputs)
    return list(seen)


def evaluate_constant(v: Value, graph_ops: list[Op], cache: dict | None = None,
                      written: set = frozenset()) -> torch.Tensor | None:
    """`v` computed at compile time on CPU, if it depends on constants alone, every shape in its
    cone is concrete and no value exceeds EVAL_LIMIT elements; else None. `cache` (keyed by
    value) spares re-evaluating the one mask every layer of a model reads."""
    if cache is not None:
        if v not in cache:
            cache[v] = evaluate_constant(v, graph_ops, None, written)
        return cache[v]
    cone = constant_cone(v, written)
    if cone is None:
        return None
    order = {op: i for i, op in enumerate(graph_ops)}
    if any(op not in order for op in cone):
        return None
    sub = Graph("mask", "cpu")
    mapping: dict[Value, Value] = {}
    for op in sorted(cone, key=order.__getitem__):
        t = op.result.type
        if not all(d.is_Integer for d in t.shape) or int(math.prod(int(d) for d in t.shape)) > EVAL_LIMIT:
            return None
        cpu = TensorType(t.dtype, t.shape, "cpu")
        ins = [mapping[x] for x in op.inputs]
        new = Op(op.name, ins, op.attrs, infer_result_types(op.name, ins, op.attrs, [cpu]))
        sub.ops.append(new)
        mapping[op.result] = new.result
    sub.outputs = [mapping[v]]
    try:
        return interpret(sub, [])[0]
    except Exception:  # noqa: BLE001 - a mask torch cannot evaluate stays a mask
        return None


def _no_neg_inf(v: Value) -> bool:
    """Can no entry of `v` be -inf? (A row of scores can then never be all -inf.) A structural
    check for masks computed from inputs: where() choosing between such values (HF's padding
    masks: 0 and the dtype's minimum), a maximum with one (clamp(min=...)), views, exact casts."""
    v = strip_widening(v)
    p = v.producer
    if p is None:
        return False
    if p.name == "full":  # of any shape (fuse copies constants into regions at full size)
        value = p.attrs["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return torch.full((), value, dtype=to_torch(v.type.dtype)).item() > -math.inf  # as stored
    if p.name == "where":
        return _no_neg_inf(p.inputs[1]) and _no_neg_inf(p.inputs[2])
    if p.name == "maximum":
        return _no_neg_inf(p.inputs[0]) or _no_neg_inf(p.inputs[1])
    if p.name in ("reshape", "permute", "expand", "slice"):
        return _no_neg_inf(p.inputs[0])
    return False


def classify(value: Value, negate: bool, shape: tuple, graph_ops: list[Op], cache: dict | None = None,
             written: set = frozenset()) -> Mask:
    """The mask `value` (b1: keep where True, or where False when `negate`; float: additive)
    over scores of `shape` ([..., L, S]): no mask, causal, or `value` itself (the caller negates
    it), and whether a row can be fully masked. `cache` (evaluate_constant's) also keeps the
    answer: every layer of a model asks about the one mask, and comparing a [8,1,512,512] mask
    with a causal one took ~30 ms per layer. The caller gets its own copy to change."""
    if cache is None:
        return _classify(value, negate, shape, graph_ops, None, written)
    key = ("classify", value, negate, shape)
    if key not in cache:
        cache[key] = _classify(value, negate, shape, graph_ops, cache, written)
    return dataclasses.replace(cache[key])


def _classify(value: Value, negate: bool, shape: tuple, graph_ops: list[Op], cache: dict | None,
              written: set) -> Mask:
    is_bool = value.type.dtype == "b1"
    L, S = shape[-2], shape[-1]
    t = evaluate_constant(value, graph_ops, cache, written) if L.is_Integer and S.is_Integer else None
    if t is None:
        # A boolean mask from inputs can mask a whole row (all -inf in the written-out form).
        return Mask(value, empty_rows=None if is_bool or not _no_neg_inf(value) else False)
    t = t.reshape((1,) * max(0, 2 - t.dim()) + tuple(t.shape))
    full = t.expand(*t.shape[:-2], int(L), int(S))  # every batch entry the mask distinguishes
    if is_bool:
        keep, ninf = (~full if negate else full), None
    else:
        ninf = full == -math.inf
        keep = full == 0
        # An entry at or below -65504 contributes exp(x - rowmax) == 0, exactly like -inf, as
        # long as the scores are far below 65504 apart (they are ~10 in attention): HF's masks
        # (the dtype's lowest value) and torch's cuDNN fill (CUDNN_FILL, -65536 once rounded to
        # bf16) may then become is_causal. Any other value makes it a general additive mask.
        if not bool((keep | ninf | (full <= CUDNN_FILL)).all()):
            return Mask(value, empty_rows=bool((ninf.all(-1)).any()))
    if bool(keep.all()):
        return Mask(None)
    if bool((keep == torch.ones(int(L), int(S), dtype=torch.bool).tril()).all()):
        return Mask(None, causal=True)
    dead = ~keep if ninf is None else ninf
    return Mask(value, empty_rows=bool(dead.all(-1).any()))

