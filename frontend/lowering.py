"""The one lowering table, ATen -> IR, and the small context every lowering works through.

`LOWERINGS` maps an `OpOverload` (one overload) or an `OpOverloadPacket` (all its overloads) to a
lowering function `fn(ctx, *args, **kwargs)`. The arguments are the FX node's, with tensor nodes
replaced by IR `Value`s, SymInt/SymFloat nodes by sympy expressions, and everything else as is;
`ctx.node` is the node itself. A lowering returns a Value (or a list of them, for tuple results)
or raises `Unsupported(reason)`, and the node then becomes an `extern` op that calls ATen.

Type promotion is explicit: the IR requires equal operand dtypes, so a lowering reads the result
dtype torch computed (`ctx.out_dtype`, from `node.meta["val"]`) and inserts `cast`s; Python scalars
become 0-d `full` constants. The caller (`fx_to_ir`) checks every result against the node's meta
value and casts or rejects, so a wrong dtype is fixed and a wrong shape is never silent.

The op families live in lowering_pointwise.py, lowering_views.py, lowering_reductions.py and
lowering_misc.py; they register into the table below when this module is imported.
"""
from __future__ import annotations

from typing import Any, Callable

import sympy
import torch
from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND, elementwise_dtypes

from ..ir import Graph, TensorType, Value, from_torch, to_torch
from ..ir.dtypes import is_float, is_low_precision
from ..ir.types import as_dim

LoweringFn = Callable[..., "Value | list[Value]"]
LOWERINGS: dict[Any, LoweringFn] = {}


class Unsupported(Exception):
    """This node has no lowering (or not for these arguments); it becomes an extern."""


def register(*targets):
    """@register(aten.add, aten.mul.Tensor): an OpOverloadPacket covers every overload."""
    def deco(fn: LoweringFn) -> LoweringFn:
        for t in targets:
            assert t not in LOWERINGS, f"two lowerings for {t}"
            LOWERINGS[t] = fn
        return fn
    return deco


# Ops that knowingly stay ATen externs, and why (the reason goes into the dump's report).
_SCATTER = "scatter: the IR has no scatter/accumulate op"
_RNG = "random numbers: ATen's generator keeps results identical to eager"
_SORT = "sorting/selection: no IR op"
EXTERN_REASONS = {
    "convolution": "convolution: no IR op (ATen/cuDNN kernels)",
    "convolution_backward": "convolution: no IR op (ATen/cuDNN kernels)",
    "sort": _SORT, "topk": _SORT, "argsort": _SORT, "kthvalue": _SORT, "median": _SORT,
    "scatter": _SCATTER, "scatter_add": _SCATTER, "scatter_reduce": _SCATTER, "index_put": _SCATTER,
    "index_add": _SCATTER, "_unsafe_index_put": _SCATTER, "embedding_dense_backward": _SCATTER,
    "rand": _RNG, "randn": _RNG, "rand_like": _RNG, "randn_like": _RNG, "randint": _RNG,
    "bernoulli": _RNG, "native_dropout": _RNG, "uniform": _RNG, "normal": _RNG, "multinomial": _RNG,
    "cumsum": "scan: no IR op (long or unknown-length scans)", "cumprod": "scan: no IR op",
    "_scaled_dot_product_flash_attention": "attention: left to ATen (attention recognition is a pass)",
    "_scaled_dot_product_efficient_attention": "attention: left to ATen (attention recognition is a pass)",
    "_scaled_dot_product_flash_attention_for_cpu": "attention: left to ATen (attention recognition is a pass)",
    "_scaled_dot_product_cudnn_attention": "attention: left to ATen (attention recognition is a pass)",
    "_scaled_dot_product_flash_attention_backward": "attention backward: left to ATen",
    "_scaled_dot_product_efficient_attention_backward": "attention backward: left to ATen",
    "_scaled_dot_product_flash_attention_for_cpu_backward": "attention backward: left to ATen",
    "_scaled_dot_product_cudnn_attention_backward": "attention backward: left to ATen",
    "max_pool2d_with_indices": "pooling: no IR op", "avg_pool2d": "pooling: no IR op",
    "_adaptive_avg_pool2d": "pooling: no IR op", "_native_batch_norm_legit_functional": "batch norm training statistics",
    "as_strided": "as_strided of a general layout",
}


def no_lowering_reason(target) -> str:
    name = getattr(getattr(target, "overloadpacket", None), "__name__", None) or str(target)
    return EXTERN_REASONS.get(name, f"no lowering for {target}")


def lookup(target) -> LoweringFn | None:
    fn = LOWERINGS.get(target)
    if fn is None and isinstance(target, torch._ops.OpOverload):
        fn = LOWERINGS.get(target.overloadpacket)
    return fn


def tensor_type(val: torch.Tensor) -> TensorType:
    """The IR type of a (fake) tensor from node.meta["val"]."""
    return TensorType(from_torch(val.dtype), tuple(as_dim(d) for d in val.shape), str(val.device))


def is_scalar(x) -> bool:
    return isinstance(x, (bool, int, float, sympy.Expr))


class LoweringContext:
    """What a lowering may do: build ops into the graph being lowered, for one FX node at a time."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.node: torch.fx.Node | None = None

    # ------------------------------------------------------------------ building ops
    def op(self, name: str, *vals: Value, result_types=None, **attrs) -> Value:
        op = self.graph.create_op(name, vals, attrs, result_types)
        return op.results[0] if len(op.results) == 1 else op.results  # type: ignore[return-value]

    def full(self, value, dtype: str, shape=()) -> Value:
        """A constant. Symbolic values must be integer-valued (see `scalar`)."""
        value = _python_value(value, dtype)
        return self.op("full", result_types=[TensorType(dtype, tuple(shape), self.graph.device)],
                       value=value)

    def cast(self, v: Value, dtype: str) -> Value:
        return v if v.type.dtype == dtype else self.op("cast", v, dtype=dtype)

    def scalar(self, x, dtype: str) -> Value:
        """A Python or symbolic scalar as a 0-d tensor of `dtype`.

        A non-integer symbolic value (e.g. 2/(s0-1), from a SymFloat) is built as num / den from
        two integer-valued constants, so `full` values stay integers and codegen only ever
        substitutes symbol values, never evaluates rational functions."""
        if isinstance(x, sympy.Expr) and not x.is_number and not x.is_integer:
            num, den = sympy.fraction(sympy.together(x))
            if not (num.is_integer and den.is_integer):
                raise Unsupported(f"symbolic scalar {x} is not a ratio of integer expressions")
            if not is_float(dtype):
                raise Unsupported(f"non-integer symbolic scalar {x} for an {dtype} operand")
            return self.op("div", self.full(num, dtype), self.full(den, dtype))
        return self.full(x, dtype)

    def value(self, x, dtype: str) -> Value:
        """An operand as a Value of `dtype`: tensors are cast, scalars become constants."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        if is_scalar(x):
            return self.scalar(x, dtype)
        raise Unsupported(f"unexpected operand {x!r}")

    # ------------------------------------------------------------------ what torch computed
    def expected_type(self, node: torch.fx.Node | None = None, index: int | None = None) -> TensorType:
        val = (node or self.node).meta["val"]
        if index is not None:
            val = val[index]
        if not isinstance(val, torch.Tensor):
            raise Unsupported(f"expected a tensor result, got {type(val).__name__}")
        return tensor_type(val)

    @property
    def out_dtype(self) -> str:
        return self.expected_type().dtype

    @property
    def out_shape(self) -> tuple:
        return self.expected_type().shape

    def promoted(self, *operands, kind=ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT) -> tuple[str, str]:
        """(compute dtype, result dtype) of torch's elementwise promotion over IR operands."""
        fakes = []
        for x in operands:
            if isinstance(x, Value):
                shape = () if x.type.rank == 0 else (1,)
                fakes.append(torch.empty(shape, dtype=to_torch(x.type.dtype), device="meta"))
            elif isinstance(x, sympy.Expr):
                fakes.append(1 if x.is_integer else 1.5)
            elif x is not None:
                fakes.append(x)
        compute, result = elementwise_dtypes(*fakes, type_promotion_kind=kind)
        return from_torch(compute), from_torch(result)

    def compute_dtype(self, *operands, out: str | None = None) -> str:
        """The dtype to compute an arithmetic op in: the result dtype, except that a low-precision
        result with a Python scalar operand computes in f32 like eager's "opmath" (the scalar is not
        rounded to f16/bf16 first), and the caller casts back."""
        out = out or self.out_dtype
        # 0-d tensors count as scalars: eager reads a 0-d operand at its own precision too
        # (TensorIterator's "original scalar value") instead of rounding it to f16/bf16 first.
        if is_low_precision(out) and any(is_scalar(x) or (isinstance(x, Value) and x.type.rank == 0)
                                         for x in operands):
            return "f32"
        return out


def _python_value(value, dtype: str):
    """The fill value as the Python type the dtype calls for (IR text prints 2 and 2.0 apart)."""
    if isinstance(value, sympy.Expr):
        if value.is_number:
            value = float(value) if not value.is_integer else int(value)
        else:
            if not value.is_integer:
                raise Unsupported(f"symbolic fill value {value} is not integer-valued")
            return value
    if dtype == "b1":
        return bool(value)
    if is_float(dtype) or dtype.startswith("c"):
        return float(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Unsupported(f"{value} does not fit {dtype}")
        return int(value)  # torch truncates float fill values for integer tensors
    return int(value)


def as_attr(x):
    """Sympy integers become Python ints in attributes (the text is the same; passes compare less)."""
    if isinstance(x, sympy.Expr) and x.is_Integer:
        return int(x)
    return x


def normalize_dim(d: int, rank: int) -> int:
    r = max(rank, 1)
    if not -r <= d < r:
        raise Unsupported(f"dim {d} out of range for rank {rank}")
    return d % r


# Import the families last: they `from .lowering import register, ...`.
from . import lowering_pointwise, lowering_views, lowering_reductions, lowering_misc  # noqa: E402,F401
