"""gelu_bf16: an erf GELU that a matmul epilogue rounds to bf16 becomes `gelu[accuracy="bf16"]`.

The frontend writes torch's exact GELU out as erf arithmetic (torch._decomp):

    h = mul(x, 0.5); z = mul(x, 0.7071067811865476); e = erf(z); p = add(e, 1.0); g = mul(h, p)

In a matmul template that runs on the accumulator tile, after the K loop, with the tensor cores
idle: on the H100 at BERT's MLP shape (8192x768 @ 768x3072) libdevice's erf took the fused
kernel from 77 to 100 us (scratch probe, docs/benchmarks.md), as long as eager's separate GELU
pass. Where g's only readers are casts to bf16, nothing keeps more than bf16's 8 significant
bits of it, so this pass folds the five ops into one `gelu[accuracy="bf16"]` op, which codegen
computes as one exp2 and one polynomial (triton_helpers.gelu_bf16: within 8.3e-5 relative of the
exact value wherever |g| >= 2^-20, under 1/23 of bf16's rounding step; the fused kernel took
84 us). The reference interpreter computes the exact GELU either way.

Only in `fused` regions holding a matmul (fuse_matmul's): elsewhere GELU is a memory-bound
kernel, which the cheaper arithmetic would not speed up. Not folded: an f64 or 16-bit x (the
decomposition upcasts to f32), a result also yielded or read by anything but a cast to bf16 (an
f32 or f16 reader keeps more bits than the bound allows for), and intermediates read elsewhere.
Runs after fuse_matmul. Stats: `folded`.
"""
from __future__ import annotations

import math

from ..ir import Graph, Op, Value
from .context import PassContext
from .registry import PassResult, graph_pass

_CONSTANTS = {"half": 0.5, "one": 1.0, "sqrt1_2": math.sqrt(0.5)}


def _constant(v: Value, which: str) -> bool:
    p = v.producer
    return p is not None and p.name == "full" and v.type.rank == 0 and \
        isinstance(p.attrs.get("value"), float) and math.isclose(p.attrs["value"], _CONSTANTS[which], rel_tol=1e-7)


def _split(op: Op | None, name: str, which: str) -> Value | None:
    """For `op` = name(v, constant) in either order: v, else None."""
    if op is None or op.name != name:
        return None
    a, b = op.inputs
    return a if _constant(b, which) else b if _constant(a, which) else None


def _match(g_op: Op, users: dict[Value, list[Op]], outputs: set[Value]) -> tuple[Value, list[Op]] | None:
    """(x, the ops computing g from x) when `g_op` is mul(mul(x, 0.5), add(erf(mul(x, 1/sqrt2)), 1))."""
    if g_op.name != "mul" or g_op.result.type.dtype != "f32":
        return None
    for half_v, plus_v in (g_op.inputs, g_op.inputs[::-1]):
        x = _split(half_v.producer, "mul", "half")
        e = _split(plus_v.producer, "add", "one")
        if x is None or e is None or e.producer is None or e.producer.name != "erf":
            continue
        if _split(e.producer.inputs[0].producer, "mul", "sqrt1_2") is not x:
            continue
        chain = [half_v.producer, e.producer.inputs[0].producer, e.producer, plus_v.producer]
        readers = {v: users.get(v, []) for v in (half_v, plus_v, e, e.producer.inputs[0])}
        if all(len(r) == 1 and v not in outputs for v, r in readers.items()):
            return x, chain + [g_op]
    return None


def _fold(body: Graph) -> int:
    users = body.users()
    outputs = set(body.outputs)
    folded = 0
    for g_op in list(body.ops):   # a fold removes only ops before g_op, already visited
        readers = users.get(g_op.result, [])
        if g_op.result in outputs or not readers or \
                any(r.name != "cast" or r.attrs.get("dtype") != "bf16" for r in readers):
            continue
        found = _match(g_op, users, outputs)
        if found is None:
            continue
        x, chain = found
        gelu = Op("gelu", [x], {"accuracy": "bf16"}, [g_op.result.type])
        body.ops[body.ops.index(g_op)] = gelu
        body.replace_all_uses(g_op.result, gelu.result)
        for op in chain[:-1]:
            body.ops.remove(op)
        folded += 1
        users = body.users()
    if folded:  # the constants only the folded ops read
        read = {v for op in body.ops for v in op.inputs} | outputs
        body.ops = [op for op in body.ops if op.name != "full" or op.result in read]
    return folded


@graph_pass("gelu_bf16", options={},
            description="fold an erf GELU that a matmul epilogue rounds to bf16 into gelu[accuracy=\"bf16\"]")
def gelu_bf16(g: Graph, ctx: PassContext) -> PassResult:
    folded = 0
    for op in g.ops:
        if op.name == "fused" and any(b.name == "matmul" for b in op.attrs["body"].ops):
            folded += _fold(op.attrs["body"])
    return PassResult(changed=folded > 0, stats={"folded": folded})
