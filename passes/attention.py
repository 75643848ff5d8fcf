"""attention: softmax(Q K^T * scale + mask) V written out as ops becomes one library SDPA call.

Under torch.compile, attention reaches ember as a dozen ops in two families of forms:
  * torch's math SDPA (`_scaled_dot_product_attention_math`, what the dispatcher picks at trace
    time on CUDA for BERT, and what ember's decomposition of the CPU flash op produces): q and k
    each times sqrt(scale), upcast to f32 for f16/bf16 inputs, matmuls on 3-d reshapes, a bool
    mask turned into where(mask, 0, -inf) and added, and a "safe softmax" tail that makes rows
    which are all -inf give 0 (not NaN); the result cast back;
  * transformers' eager attention: matmul(q, k^T) * scale (+ mask), softmax (in f32 for f16/bf16,
    cast back), matmul with v; GQA as repeat_kv (reshape, expand, reshape of k and v).
On an H100 the f32 math form of BERT-base runs at 2x eager's time (eager calls the fused SDPA
kernel). This pass replaces the whole subgraph by ONE `extern[aten.scaled_dot_product_attention.
default]` on q, k and v as they were before any upcast or scaling, with `scale=` (the product of
the constant factors), `attn_mask` (bool, or additive in q's dtype), `is_causal` when the mask is
provably causal and `enable_gqa` for repeat_kv'd k/v. The extern's `reason` names it, so a later
pass can swap it for ember's own flash-attention template.

Soundness: the scores, probabilities and everything between the two matmuls must have no other
reader and not be returned; softmax is over the last axis; matmuls contract over the head dim by
construction; batch dims are matched by flat index through row-major reshapes; only casts between
q's dtype and f32 and scalar constant factors are dropped; anything else (dropout, a head mask, a
mask added before a scale, a masked_fill with a finite value) leaves the graph as it is.
Fully masked rows: the plain-softmax form gives NaN there, SDPA gives 0, so that form is
rewritten only when no row can be fully masked (attention_mask.py). Stats: `matched`, by form
(`sdpa_math`, `eager`), `causal`, `masked`, `gqa`, and `rejected` (attention-shaped subgraphs
left alone; details["rejected"] says why); `fused_op`: torch's backend SDPA ops (flash, efficient,
cuDNN) whose extra outputs nobody reads, made the same extern (attention_fused.py).
"""
from __future__ import annotations

import math

from ..ir import Graph, Op, TensorType, Value
from ..ir.graph import infer_result_types
from ..ir.ops import ExternArg, attrs_with_defaults, get_op
from ..ir.printer import value_names
from ..ir.types import shapes_equal
from .attention_fused import rewrite_fused_ops
from .attention_mask import Mask, classify, constant_cone, scalar_constant, sdpa_mask
from .attention_views import regroup, regroup_chain, repeated
from .context import PassContext
from .dce import remove_dead
from .effects import mutated_values
from .registry import PassResult, graph_pass

REASON = "attention: SDPA, ember's flash-attention template or the library (codegen chooses)"
TARGET = "aten.scaled_dot_product_attention.default"
_FLOATS = ("f16", "bf16", "f32", "f64")
_MAX_CHAIN = 16  # ops walked through on one operand's way back from a matmul


class _Reject(Exception):
    """An attention-shaped subgraph (a softmax feeding a matmul) that cannot become SDPA."""


def _producer(v: Value, name: str) -> Op | None:
    p = v.producer
    return p if p is not None and p.name == name else None


def _full_value(v: Value):
    """The fill value of a `full` of any shape (the safe-softmax zeros are full-size)."""
    p = _producer(v, "full")
    return p.attrs["value"] if p is not None else None


def _float_cast(op: Op) -> bool:
    return op.name == "cast" and op.inputs[0].type.dtype in _FLOATS and op.result.type.dtype in _FLOATS


def _factor(p: Op) -> tuple[Value, float, Value] | None:
    """x * c, c * x or x / c with c a one-element constant (x keeps its type): (x, factor, c)."""
    pairs = [(p.inputs[0], p.inputs[1]), (p.inputs[1], p.inputs[0])] if p.name == "mul" else \
        [(p.inputs[0], p.inputs[1])] if p.name == "div" else []
    for x, c in pairs:
        f = scalar_constant(c)
        if f is not None and x is not c and x.type == p.result.type and (p.name == "mul" or f != 0):
            return x, (f if p.name == "mul" else 1.0 / f), c
    return None


class _Match:
    """One candidate: the ops it reads through, the ops it emits, and the def-use facts."""

    def __init__(self, g: Graph, users: dict, written: set, masks: dict):
        self.g, self.users, self.written, self.masks = g, users, written, masks
        self.outputs = set(g.outputs)
        self.absorbed: list[Op] = []   # replaced: every result read only inside the match
        self.touched: list[Op] = []    # read through (views, casts, constants): removed if dead
        self.new_ops: list[Op] = []
        self.casts: set[tuple[str, str]] = set()

    def only_user(self, v: Value) -> Op | None:
        us = self.users.get(v, [])
        return us[0] if len(us) == 1 and v not in self.outputs else None

    def sole(self, v: Value, op: Op, what: str) -> None:
        if self.only_user(v) is not op:
            raise _Reject(f"the {what} has another reader or is returned")

    def emit(self, name: str, inputs: list[Value], attrs: dict, types=None) -> Value:
        attrs = attrs_with_defaults(get_op(name), attrs)
        op = Op(name, inputs, attrs, infer_result_types(name, inputs, attrs, types))
        self.new_ops.append(op)
        return op.result


# ----------------------------------------------------------------------------- softmax


def _softmax(div: Op) -> tuple[Value, list[Op]] | None:
    """div(exp(x - max(x)), sum(exp(...))) as torch's decomposition writes it: (x, its ops)."""
    e, s = div.inputs
    red_sum, exp = _producer(s, "reduce_sum"), _producer(e, "exp")
    if red_sum is None or exp is None or red_sum.inputs[0] is not e:
        return None
    sub = _producer(exp.inputs[0], "sub")
    red_max = _producer(sub.inputs[1], "reduce_max") if sub is not None else None
    if red_max is None or red_max.inputs[0] is not sub.inputs[0]:
        return None
    return sub.inputs[0], [red_max, sub, exp, red_sum, div]


def _safe_tail(m: _Match, x: Value, p: Value) -> list[Op]:
    """torch's _safe_softmax: where(all(x == -inf, last axis), 0, p); its ops, or [] if absent."""
    w = m.only_user(p)
    if w is None or w.name != "where" or w.inputs[2] is not p or _full_value(w.inputs[1]) != 0.0 \
            or w.result.type != p.type:
        return []
    chain = []
    v = w.inputs[0]
    for name in ("logical_not", "cast", "reduce_max", "cast", "logical_not", "eq"):
        op = _producer(v, name)
        if op is None or m.only_user(v) is not (chain[-1] if chain else w):
            return []
        chain.append(op)
        v = op.inputs[0]
    eq, red = chain[-1], chain[2]
    ninf = eq.inputs[1] if eq.inputs[0] is x else eq.inputs[0] if eq.inputs[1] is x else None
    # not(any(not(x == -inf))) is all(x == -inf) whatever dtypes the casts go through.
    if ninf is None or scalar_constant(ninf) != -math.inf \
            or tuple(red.attrs["axes"]) != (x.type.rank - 1,) or not red.attrs["keepdim"]:
        return []
    m.touched.append(ninf.producer)
    m.touched.append(w.inputs[1].producer)
    return chain[::-1] + [w]


# ----------------------------------------------------------------------------- scores


def _score_paths(v: Value, budget: list[int] | None = None):
    """Every way back from the softmax input to a matmul through the ops a score chain may
    hold: yields (matmul, ops in forward order). An add or where has two candidate operands;
    `budget` caps the ops visited, so a mask built from long add chains costs little."""
    budget = [64] if budget is None else budget
    p = v.producer
    if p is None or budget[0] <= 0:
        return
    budget[0] -= 1
    if p.name == "matmul":
        yield p, []
        return
    ins = {"cast": p.inputs[:1], "reshape": p.inputs[:1], "div": p.inputs[:1], "mul": p.inputs,
           "add": p.inputs, "where": p.inputs[1:]}.get(p.name, [])
    for x in ins:
        for mm, ops in _score_paths(x, budget):
            yield mm, ops + [p]


def _scores(m: _Match, mm1: Op, ops: list[Op], x: Value):
    """Check a score chain mm1 -> ... -> x: regroups, then scalar factors, then at most one mask
    (added, or a where() filling -inf), then casts. Returns (scale, mask spec)."""
    scale, mask, cur = 1.0, None, mm1.result
    for op in ops:
        m.sole(cur, op, "score matrix")
        other = [v for v in op.inputs if v is not cur]
        if op.name != "reshape" and not shapes_equal(op.result.type.shape, cur.type.shape):
            raise _Reject(f"{op.name} broadcasts the scores to another shape")
        f = _factor(op) if op.name in ("mul", "div") else None
        if _float_cast(op):
            m.casts.add((op.inputs[0].type.dtype, op.result.type.dtype))
        elif regroup(op) and mask is None:
            pass
        elif f is not None and f[0] is cur and mask is None:
            scale *= f[1]
            m.touched.append(f[2].producer)
        elif op.name == "add" and len(other) == 1 and mask is None:
            mask = ("add", other[0])
        elif op.name == "where" and mask is None and len(other) == 2 and \
                scalar_constant(op.inputs[2] if op.inputs[1] is cur else op.inputs[1]) == -math.inf:
            # masked_fill(-inf): where(keep, s, -inf) or where(drop, -inf, s)
            mask = ("keep" if op.inputs[1] is cur else "drop", op.inputs[0])
            m.touched.append(other[1].producer)
        else:
            raise _Reject(f"{op.name} on the scores is not part of attention (or comes after the mask)")
        cur = op.result
    m.absorbed += [mm1] + ops
    return scale, mask


# ----------------------------------------------------------------------------- q, k, v


def _peel(m: _Match, v: Value, scales: bool, casts: bool):
    """Walk back from a matmul operand through views, float casts (if `casts`) and scalar factors
    (if `scales`); re-apply the views to the value found, in its own dtype. Returns (value with
    the operand's shape, the product of the factors, the casts dropped as (from, to) pairs)."""
    chain: list[Op] = []
    while len(chain) < _MAX_CHAIN and (p := v.producer) is not None:
        if p.name in ("reshape", "permute", "expand") or (casts and _float_cast(p)):
            v = p.inputs[0]
        elif scales and (f := _factor(p)) is not None:
            v = f[0]
        else:
            break
        chain.append(p)
    # Forward again from the value found: views are kept (the original ops while nothing was
    # dropped yet, new ones in the value's dtype after), casts and factors dropped.
    scale, cur, same, seen = 1.0, v, True, set()
    for op in reversed(chain):
        m.touched.append(op)
        if op.name == "cast":
            seen.add((op.inputs[0].type.dtype, op.result.type.dtype))
            same = False
        elif op.name in ("mul", "div"):
            _, f, c = _factor(op)
            scale *= f
            m.touched.append(c.producer)
            same = False
        elif same:
            cur = op.result
        else:
            cur = m.emit(op.name, [cur], dict(op.attrs))
    return cur, scale, seen


def _to_batch(m: _Match, v: Value, batch: tuple, gqa: bool) -> tuple[Value, object]:
    """v ([N, X, Y] or any regrouping) with the batch dims `batch`: found among the values it
    was reshaped from, else a new reshape. With `gqa`, a repeat_kv'd value gives (t, r)."""
    cands = regroup_chain(v)
    if gqa and (found := repeated(v, batch)) is not None:
        return found
    for c in cands:
        if shapes_equal(c.type.shape[:-2], batch):
            return c, 1
    return m.emit("reshape", [cands[-1]], {"shape": tuple(batch) + tuple(v.type.shape[-2:])}), 1


def _untranspose(m: _Match, kt: Value) -> Value:
    """k from k^T ([.., E, S] -> [.., S, E]), composed into the permute that made k^T if any."""
    base = regroup_chain(kt)[-1]
    r = base.type.rank
    p = _producer(base, "permute")
    if p is None:
        return m.emit("permute", [base], {"dims": tuple(range(r - 2)) + (r - 1, r - 2)})
    dims = tuple(p.attrs["dims"])
    dims = dims[:-2] + (dims[-1], dims[-2])
    if dims == tuple(range(r)):
        return p.inputs[0]
    return m.emit("permute", [p.inputs[0]], {"dims": dims})


def _operands(m: _Match, mm1: Op, root: Op, batch: tuple, through_casts: bool):
    """q, k, v in their own dtype with the scores' batch dims, the q/k scale, whether k/v are
    repeat_kv'd, that dtype, and the value the extern replaces with the ops leading to it."""
    q, sq, cq = _peel(m, mm1.inputs[0], True, through_casts)
    kt, sk, ck = _peel(m, mm1.inputs[1], True, through_casts)
    v, _, cv = _peel(m, root.inputs[1], False, through_casts)
    dtype = q.type.dtype
    if kt.type.dtype != dtype or v.type.dtype != dtype or dtype not in _FLOATS:
        raise _Reject(f"q, k, v have dtypes {q.type.dtype}, {kt.type.dtype}, {v.type.dtype}")
    # The result: root -> [regroup] [cast back to q's dtype], in either order.
    out, out_ops, casts = root.result, [], cq | ck | cv | m.casts
    while (u := m.only_user(out)) is not None and (regroup(u) or (
            _float_cast(u) and out.type.dtype != dtype and u.result.type.dtype == dtype)):
        out_ops.append(u)
        casts |= {(u.inputs[0].type.dtype, dtype)} if u.name == "cast" else set()
        out = u.result
    if out.type.dtype != dtype:
        raise _Reject(f"the result stays {out.type.dtype} where q/k/v are {dtype}")
    bad = sorted(c for c in casts if not set(c) <= {dtype, "f32"})
    if bad:  # e.g. scores rounded to f16 in an f32 attention: not SDPA's arithmetic
        raise _Reject(f"casts {bad} are not between {dtype} and f32")
    q, _ = _to_batch(m, q, batch, False)
    k0 = _untranspose(m, kt)
    (k, rk), (vv, rv) = _to_batch(m, k0, batch, True), _to_batch(m, v, batch, True)
    if rk != rv:  # repeat_kv on one of them only: SDPA gets the repeated tensors
        (k, rk), (vv, rv) = _to_batch(m, k0, batch, False), _to_batch(m, v, batch, False)
    return q, k, vv, sq * sk, rk != 1, dtype, out, out_ops


# ----------------------------------------------------------------------------- one match


def _match(m: _Match, div: Op) -> dict | None:
    """Match the attention whose softmax ends in `div`; build its replacement in m.new_ops.
    None: not attention-shaped; _Reject: attention-shaped but not rewritable."""
    sm = _softmax(div)
    if sm is None:
        return None
    x, sm_ops = sm
    tail = _safe_tail(m, x, div.result)
    probs = tail[-1].result if tail else div.result
    cur, p_chain = probs, []
    while True:  # probabilities -> [cast] [regroup] -> root matmul (P @ V)
        u = m.only_user(cur)
        if u is not None and u.name == "matmul" and u.inputs[0] is cur and u.inputs[1] is not cur:
            root = u
            break
        if u is None or len(p_chain) > 3 or not (_float_cast(u) or regroup(u)):
            if any(r.name == "matmul" and r.inputs[0] is cur for r in m.users.get(cur, [])):
                raise _Reject("the probabilities have another reader or are returned")
            return None
        p_chain.append(u)
        cur = u.result
    rank = x.type.rank
    red_max, sub, exp, red_sum, _ = sm_ops
    if rank < 3 or any(tuple(r.attrs["axes"]) != (rank - 1,) or not r.attrs["keepdim"] for r in (red_max, red_sum)):
        raise _Reject("softmax is not over the last axis of batched scores")
    for v, readers in ((x, [red_max, sub] + tail[:1]), (red_max.result, [sub]), (sub.result, [exp]),
                       (exp.result, [red_sum, div]), (red_sum.result, [div])):
        got = m.users.get(v, [])
        if v in m.outputs or len(got) != len(readers) or set(got) != set(readers):
            raise _Reject("a softmax intermediate has another reader or is returned")
    m.absorbed += sm_ops + tail + p_chain + [root]
    for c in p_chain:
        if c.name == "cast":
            m.casts.add((c.inputs[0].type.dtype, c.result.type.dtype))

    errors = []
    for mm1, ops in _score_paths(x):
        saved = (list(m.absorbed), list(m.touched), set(m.casts))
        try:
            return _finish(m, mm1, ops, x, root, tail != [])
        except _Reject as e:
            errors.append(str(e))
            m.absorbed, m.touched, m.casts, m.new_ops = saved[0], saved[1], saved[2], []
    raise _Reject(errors[0] if errors else "the scores do not come from a matmul")


def _finish(m: _Match, mm1: Op, ops: list[Op], x: Value, root: Op, safe: bool) -> dict:
    batch = tuple(x.type.shape[:-2])
    scale, mask = _scores(m, mm1, ops, x)
    # First drop the casts around q, k, v (the math form upcasts bf16 inputs: SDPA takes the
    # bf16 ones); if that mixes dtypes, keep them (SDPA then runs in the matmuls' dtype).
    errors = []
    for through_casts in (True, False):
        m.new_ops = []
        try:
            q, k, v, s_qk, gqa, dtype, out, out_ops = _operands(m, mm1, root, batch, through_casts)
            break
        except _Reject as e:
            errors.append(e)
    else:
        raise errors[0]
    m.absorbed += out_ops
    L, E, Ev = q.type.shape[-2], q.type.shape[-1], v.type.shape[-1]
    scale = scale * s_qk
    if E.is_Integer and abs(scale * math.sqrt(int(E)) - 1.0) < 1e-6:
        scale = 1.0 / math.sqrt(int(E))  # the default, rounded into the constants: say it exactly
    info = Mask(None)
    if mask is not None:
        kind, mv = mask
        negate = kind == "drop"
        if kind == "add":
            mv, negate, why = sdpa_mask(mv, dtype)
            if mv is None:
                raise _Reject(why)
        info = classify(mv, negate, tuple(x.type.shape), m.g.ops, m.masks, m.written)
        if info.value is None:  # a constant mask that became is_causal or nothing: its ops die
            m.touched += constant_cone(mv, m.written) or []
        if info.value is not None and negate:
            info.value = m.emit("logical_not", [info.value], {})
        m.touched += _mask_ops(mask[1])
    if not safe and info.empty_rows is not False:
        raise _Reject("a fully masked row gives NaN in this softmax but 0 in SDPA")
    read = [q, k, v] + ([info.value] if info.value is not None else [])
    if any(val in m.written for val in read) or \
            any(r in m.written for o in m.absorbed + m.touched for r in o.results):
        raise _Reject("an extern writes a value of this attention in place")
    kwargs = {"scale": scale}
    if info.value is not None:
        kwargs["attn_mask"] = ExternArg(3)
    if info.causal:
        kwargs["is_causal"] = True
    if gqa:
        kwargs["enable_gqa"] = True
    ty = TensorType(dtype, batch + (L, Ev), root.result.type.device)
    res = m.emit("extern", read, {"target": TARGET, "args": [ExternArg(0), ExternArg(1), ExternArg(2)],
                                  "kwargs": kwargs, "reason": REASON}, [ty])
    if not shapes_equal(out.type.shape, ty.shape):
        res = m.emit("reshape", [res], {"shape": tuple(out.type.shape)})
    return {"out": out, "result": res, "root": root, "safe": safe, "causal": info.causal,
            "masked": info.value is not None, "gqa": gqa}


def _mask_ops(v: Value) -> list[Op]:
    """The casts, where and constants that built an additive mask (dead once SDPA gets the
    bool mask itself); the where's condition is the mask SDPA reads, so the walk stops there."""
    out, stack = [], [v]
    while stack and len(out) < 8:
        p = stack.pop().producer
        if p is not None and p.name in ("cast", "where", "full"):
            out.append(p)
            stack.extend(p.inputs[1:] if p.name == "where" else p.inputs)
    return out


# ----------------------------------------------------------------------------- the pass


def _commit(g: Graph, m: _Match, found: dict) -> None:
    idx = g.index_of(found["root"])
    g.ops[idx:idx] = m.new_ops
    g.replace_all_uses(found["out"], found["result"])
    # Remove what became dead among the ops this match replaced, read through or emitted.
    remove_dead(g, among=set(m.absorbed) | set(m.touched) | set(m.new_ops))


@graph_pass("attention", options={},
            description="softmax(Q K^T * scale + mask) V written out as ops -> one aten SDPA call")
def attention(g: Graph, ctx: PassContext) -> PassResult:
    names = value_names(g)
    stats = dict.fromkeys(("matched", "sdpa_math", "eager", "causal", "masked", "gqa", "rejected"), 0)
    matched, rejected = [], []
    users, written, alive, masks = g.users(), mutated_values(g), set(g.ops), {}
    for div in [op for op in g.ops if op.name == "div"]:
        if div not in alive:
            continue  # removed by an earlier match
        m = _Match(g, users, written, masks)
        try:
            found = _match(m, div)
        except _Reject as e:
            stats["rejected"] += 1
            rejected.append({"softmax": f"{names[div.result]} = div", "reason": str(e)})
            continue
        if found is None:
            continue
        _commit(g, m, found)
        users, written, alive = g.users(), mutated_values(g), set(g.ops)
        form = "sdpa_math" if found["safe"] else "eager"
        stats["matched"] += 1
        stats[form] += 1
        for key in ("causal", "masked", "gqa"):
            stats[key] += int(found[key])
        matched.append({"softmax": f"{names[div.result]} = div", "form": form,
                        **{k: found[k] for k in ("causal", "masked", "gqa")}})
    # torch's fused SDPA ops (what a direct F.scaled_dot_product_attention call becomes on CUDA)
    # whose logsumexp nobody reads: the same extern (attention_fused.py).
    fused = rewrite_fused_ops(g)
    stats["fused_op"] = len(fused)
    return PassResult(changed=stats["matched"] + stats["fused_op"] > 0, stats=stats,
                      details={"matched": matched, "rejected": rejected, "fused_ops": fused})
