"""The view chains the attention rewrites read through: batch regroupings and repeat_kv.

Both attention forms need them: the written-out one (attention.py) finds q/k/v behind the 3-d
reshapes its matmuls run on, and the fused SDPA ops (attention_fused.py) get k/v that
transformers repeated head by head for GQA when it passed a mask (its `repeat_kv`: a copy of
k and v per layer that SDPA's enable_gqa makes unnecessary).
"""
from __future__ import annotations

from ..ir import Op, Value
from ..ir.types import dims_equal, shapes_equal


def regroup(op: Op) -> bool:
    """A reshape that only regroups batch dims (the last two stay): row-major, so flat batch
    index n means the same (b, h) before and after."""
    if op.name != "reshape":
        return False
    a, b = op.inputs[0].type.shape, op.result.type.shape
    return len(a) >= 2 and len(b) >= 2 and shapes_equal(a[-2:], b[-2:])


def regroup_chain(v: Value) -> list[Value]:
    """v, then the values it was regrouped from (reshapes keeping the last two dims)."""
    out = [v]
    while v.producer is not None and regroup(v.producer):
        v = v.producer.inputs[0]
        out.append(v)
    return out


def repeat_kv(c: Value, batch: tuple) -> tuple[Value, int] | None:
    """repeat_kv: expand(reshape(t [.., Hkv, S, E] -> [.., Hkv, 1, S, E]) -> [.., Hkv, r, S, E]),
    whose flat head index hk*r + j reads head hk: SDPA's enable_gqa (repeat_interleave)."""
    ex = c.producer if c.producer is not None and c.producer.name == "expand" else None
    p = ex.inputs[0].producer if ex is not None else None
    un = p if p is not None and p.name == "reshape" else None
    if un is None or not batch:
        return None
    t = un.inputs[0]
    cs, us, ts = c.type.shape, un.result.type.shape, t.type.shape
    n = len(batch) - 1  # dims before the heads
    if len(cs) != n + 4 or len(us) != n + 4 or len(ts) != n + 3:
        return None
    hkv, r = cs[n], cs[n + 1]
    ok = (shapes_equal(cs[:n], batch[:n]) and shapes_equal(us[:n], batch[:n]) and shapes_equal(ts[:n], batch[:n])
          and dims_equal(us[n], hkv) and dims_equal(ts[n], hkv) and dims_equal(us[n + 1], 1)
          and shapes_equal(ts[-2:], cs[-2:]) and dims_equal(hkv * r, batch[n]) and not dims_equal(r, 1))
    return (t, r) if ok else None


def repeated(v: Value, batch: tuple) -> tuple[Value, int] | None:
    """(t, r) when `v` (with batch dims `batch`, heads last among them) is repeat_kv(t, r),
    possibly regrouped after; else None."""
    for c in regroup_chain(v):
        found = repeat_kv(c, batch)
        if found is not None:
            return found
    return None
