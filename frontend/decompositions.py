"""The decomposition table AOTAutograd applies before ember lowers a graph.

Start from PyTorch's core ATen set (the ops every backend is expected to decompose), add the
decompositions of composite ops ember does not lower itself, and remove the ones where ember's own
lowering is better. Each addition and removal says why. The result is computed once per process.

A decomposition here must produce ATen (or `prims.convert_element_type`) ops that `lowering`
handles; `tests/frontend/test_decompositions.py` checks that common models lower with few externs.
"""
from __future__ import annotations

import functools

import torch
from torch._decomp import core_aten_decompositions, get_decompositions

aten = torch.ops.aten

# Composite ops whose decomposition ember wants: each becomes a handful of pointwise ops and
# reductions that the fusion pass turns into one or two kernels, which is what a hand-written
# kernel would do anyway.
ADDED = [
    aten._softmax,                 # amax, sub, exp, sum, div: fuses into one reduction kernel
    aten._log_softmax,             # same shape as softmax, with log
    aten.native_layer_norm,        # var_mean + rsqrt + affine: one fused reduction
    aten.native_group_norm,        # reshapes + var_mean: no group-norm kernel family in codegen
    aten.native_batch_norm,        # inference and training batch norm -> reductions + pointwise
    aten._native_batch_norm_legit,
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit_functional,
    aten.gelu,                     # erf (or tanh) formula; fuses into the matmul epilogue
    aten.embedding,                # -> index on dim 0 (lowered to the IR `index` op)
    aten.hardtanh,                 # -> clamp
    aten.leaky_relu,               # -> where(x > 0, x, x * slope)
    aten.elu,
    aten.repeat,                   # -> expand + reshape (views)
    aten.linalg_vector_norm,       # -> abs/pow + sum
    aten.mv,                       # -> broadcast mul + sum (tiny; not worth a matmul launch)
    aten.dot,
    aten.addmv,                    # -> mv (-> mul + sum) + add
    aten._batch_norm_with_update_functional,  # training batch norm: var_mean + pointwise
]

# Core decompositions ember does better itself.
REMOVED = [
    # sigmoid/tanh/erf and friends are single IR ops that codegen maps to one Triton call; the
    # core table keeps most of them, but be explicit in case a future torch decomposes them.
    aten.sigmoid.default,
    aten.tanh.default,
    # clamp lowers to maximum/minimum directly; its decomposition goes through a where chain.
    aten.clamp.default,
    aten.clamp.Tensor,
    # index_select is exactly the IR `index` op.
    aten.index_select.default,
    # torch's split_with_sizes decomposition emits as_strided (needs static sizes to lower);
    # lowering.py turns it into slices, which work with symbolic sizes too.
    aten.split_with_sizes.default,
]


# ----------------------------------------------------------------------------- ember's own
# torch's decompositions of mean/var/var_mean come from torch._refs and produce prims (prims.var,
# prims.sum, prims.broadcast_in_dim); these produce the ATen sums and divisions ember lowers, and
# use the two-pass variance (mean first), which the fusion pass keeps in one kernel.


def _reduced_dims(x, dim):
    if dim is None or len(dim) == 0:
        return list(range(x.dim()))
    return sorted({d % max(x.dim(), 1) for d in dim})


def _numel(x, dims):
    n = 1
    for d in dims:
        n = n * x.shape[d]
    return n


def _upcast(x):
    # f16/bf16 statistics accumulate in f32 (eager does the same); the result is cast back.
    return aten._to_copy.default(x, dtype=torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x


def _mean(x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = aten._to_copy.default(x, dtype=dtype)
    dims = _reduced_dims(x, dim)
    acc = _upcast(x)
    out = aten.div.Tensor(aten.sum.dim_IntList(acc, dims, keepdim), _numel(x, dims))
    return aten._to_copy.default(out, dtype=x.dtype) if out.dtype != x.dtype else out


def _mean_default(x, *, dtype=None):
    return _mean(x, None, False, dtype=dtype)


def _var_and_mean(x, dim, correction, keepdim):
    dims = _reduced_dims(x, dim)
    n = _numel(x, dims)
    acc = _upcast(x)
    mean = aten.div.Tensor(aten.sum.dim_IntList(acc, dims, True), n)
    diff = aten.sub.Tensor(acc, mean)
    sq = aten.sum.dim_IntList(aten.mul.Tensor(diff, diff), dims, keepdim)
    correction = 1 if correction is None else correction
    var = aten.div.Tensor(sq, n - correction)  # n == correction gives 0/0 = nan, as in eager
    if not keepdim:
        mean = aten.squeeze.dims(mean, dims)
    back = (lambda t: aten._to_copy.default(t, dtype=x.dtype)) if acc.dtype != x.dtype else (lambda t: t)
    return back(var), back(mean)


def _var(x, dim=None, *, correction=None, keepdim=False):
    return _var_and_mean(x, dim, correction, keepdim)[0]


def _var_mean(x, dim=None, *, correction=None, keepdim=False):
    return _var_and_mean(x, dim, correction, keepdim)


def _addbmm(x, b1, b2, *, beta=1, alpha=1):
    # sum over the batch of b1 @ b2: bmm then a reduction (torch has no ATen-level decomposition).
    acc = aten.sum.dim_IntList(aten.bmm.default(b1, b2), [0])
    out = aten.mul.Tensor(acc, alpha) if alpha != 1 else acc
    if beta == 0:
        return aten.expand.default(out, x.shape) if out.shape != x.shape else out
    return aten.add.Tensor(aten.mul.Tensor(x, beta) if beta != 1 else x, out)


def _addmm(x, m1, m2, *, beta=1, alpha=1):
    # torch's own addmm decomposition casts every operand to the opmath dtype (f32 for bf16), which
    # turns a bf16 GEMM into an f32 one, ~15x slower on tensor cores. Here the mm stays in the
    # inputs' dtype (the library accumulates in f32 anyway) and the bias add becomes a pointwise
    # epilogue that fuses with what follows (gelu after a linear). The mm result is rounded to the
    # dtype before the bias is added, where cuBLAS's addmm adds it in f32: one more rounding.
    out = aten.mm.default(m1, m2)
    out = aten.mul.Tensor(out, alpha) if alpha != 1 else out
    if beta == 0:
        return out
    return aten.add.Tensor(aten.mul.Tensor(x, beta) if beta != 1 else x, out)


OWN = {
    aten.addmm.default: _addmm,
    aten.addbmm.default: _addbmm,
    aten.mean.dim: _mean,
    aten.mean.default: _mean_default,
    aten.var.correction: _var,
    aten.var_mean.correction: _var_mean,
}


# Decompositions that are only right when no backward uses the op's other outputs. torch's
# decomposition of the CPU flash-attention op returns the attention matrix where the real op
# returns logsumexp, which its (non-decomposed) backward reads: gradients come out wrong. Forward
# only, the decomposition is what ember wants (plain matmul + softmax math that fuses).
INFERENCE_ONLY = [
    aten._scaled_dot_product_flash_attention_for_cpu.default,
]


@functools.lru_cache(maxsize=None)
def decomposition_table(training: bool = False) -> dict:
    """The table for AOTAutograd; `training` when a backward graph may be built."""
    table = dict(core_aten_decompositions())
    table.update(get_decompositions(ADDED))
    table.update(OWN)
    for op in REMOVED + (INFERENCE_ONLY if training else []):
        table.pop(op, None)
    return table
