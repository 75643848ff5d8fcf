"""The op table: every IR op, its arity, attributes, type rule and reference semantics.

This is the one place that defines what an op *is* (the view ops' entries live in
ops_views.py, imported where their section was, so the table keeps its order). The frontend
lowers ATen into these ops, the verifier checks graphs against this table, the reference
interpreter runs ``reference``, and codegen keeps its own table of how each op becomes Triton
(ir/ knows nothing about Triton).

A type rule takes the operand types and the attributes and returns the result types, or ``None``
for ops whose result type is stated explicitly (``full``, ``iota``, ``extern``): the IR text prints
every result type, so those ops carry their type in the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import dtypes
from .externs import ExternArg, fill_extern_args, resolve_target  # noqa: F401 (re-exported)
from .types import TensorType, broadcast_shapes, dims_equal, shapes_equal

TypeRule = Callable[[list[TensorType], dict], "list[TensorType] | None"]
# reference(inputs, attrs, results) -> Tensor or tuple; attrs have symbols already substituted,
# results is a list of (torch dtype, concrete shape, device) for the op's results.
Reference = Callable[[list[torch.Tensor], dict, list], Any]


class TypeError_(ValueError):
    """An op applied to operands or attributes its type rule rejects."""


@dataclass(frozen=True)
class Attr:
    doc: str
    required: bool = True
    default: Any = None


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str  # unary | binary | ternary | cast | constant | reduction | view | index | matmul | extern | region
    arity: int | None  # None: variadic (at least one operand)
    type_rule: TypeRule
    reference: Reference
    attrs: dict[str, Attr] = field(default_factory=dict)
    doc: str = ""

    @property
    def is_pointwise(self) -> bool:
        return self.kind in ("unary", "binary", "ternary", "cast")


OPS: dict[str, OpDef] = {}


def _register(op: OpDef) -> OpDef:
    assert op.name not in OPS, op.name
    OPS[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


def _fail(msg: str):
    raise TypeError_(msg)


def _same_device(types: list[TensorType]) -> str:
    devices = {t.device for t in types}
    if len(devices) > 1:
        # 0-d CPU tensors mix with device tensors in torch; everything else must agree.
        non_scalar = {t.device for t in types if t.rank > 0}
        if len(non_scalar) > 1:
            _fail(f"operands on different devices: {sorted(devices)}")
        return next(iter(non_scalar)) if non_scalar else sorted(devices)[0]
    return next(iter(devices))


# ----------------------------------------------------------------------------- pointwise

def _pointwise_rule(out_dtype: str | None = None, operand_kinds: str = "any"):
    def rule(ts: list[TensorType], attrs: dict):
        data = ts[1:] if operand_kinds == "where" else ts
        if operand_kinds == "where" and ts[0].dtype != "b1":
            _fail(f"where condition must be b1, got {ts[0].dtype}")
        kinds = {t.dtype for t in data}
        if len(kinds) != 1:
            _fail(f"operand dtypes differ: {[t.dtype for t in data]} (insert a cast)")
        dt = next(iter(kinds))
        if operand_kinds == "float" and not (dtypes.is_float(dt) or dt in dtypes.COMPLEX_DTYPES):
            _fail(f"needs a float operand, got {dt}")
        if operand_kinds == "int" and not (dtypes.is_int(dt) or dt == "b1"):
            _fail(f"needs an integer or bool operand, got {dt}")
        try:
            shape = broadcast_shapes(*[t.shape for t in ts])
        except ValueError as e:
            _fail(str(e))
        return [TensorType(out_dtype or dt, shape, _same_device(ts))]
    return rule


def _unary(name, fn, kind="any", out=None, doc=""):
    _register(OpDef(name, "unary", 1, _pointwise_rule(out, kind), lambda xs, a, r: fn(xs[0]), doc=doc))


def _binary(name, fn, kind="any", out=None, doc=""):
    _register(OpDef(name, "binary", 2, _pointwise_rule(out, kind), lambda xs, a, r: fn(xs[0], xs[1]), doc=doc))


def _relu(x):
    return torch.relu(x)


for _name, _fn, _kind, _out in [
    ("neg", torch.neg, "any", None), ("abs", torch.abs, "any", None),
    ("copy", torch.clone, "any", None),
    ("exp", torch.exp, "float", None), ("exp2", torch.exp2, "float", None),
    ("expm1", torch.expm1, "float", None), ("log", torch.log, "float", None),
    ("log2", torch.log2, "float", None), ("log10", torch.log10, "float", None),
    ("log1p", torch.log1p, "float", None), ("sqrt", torch.sqrt, "float", None),
    ("rsqrt", torch.rsqrt, "float", None), ("sin", torch.sin, "float", None),
    ("cos", torch.cos, "float", None), ("tan", torch.tan, "float", None),
    ("asin", torch.asin, "float", None), ("acos", torch.acos, "float", None),
    ("atan", torch.atan, "float", None), ("sinh", torch.sinh, "float", None),
    ("cosh", torch.cosh, "float", None), ("tanh", torch.tanh, "float", None),
    ("asinh", torch.asinh, "float", None), ("acosh", torch.acosh, "float", None),
    ("atanh", torch.atanh, "float", None), ("erf", torch.erf, "float", None),
    ("erfc", torch.erfc, "float", None), ("erfinv", torch.erfinv, "float", None),
    ("lgamma", torch.lgamma, "float", None), ("sigmoid", torch.sigmoid, "float", None),
    ("relu", _relu, "any", None), ("floor", torch.floor, "any", None),
    ("ceil", torch.ceil, "any", None), ("trunc", torch.trunc, "any", None),
    ("round", torch.round, "any", None), ("sign", torch.sign, "any", None),
    ("reciprocal", torch.reciprocal, "float", None),
    ("logical_not", torch.logical_not, "any", "b1"),
    ("bitwise_not", torch.bitwise_not, "int", None),
    ("isnan", torch.isnan, "any", "b1"), ("isinf", torch.isinf, "any", "b1"),
]:
    _unary(_name, _fn, _kind, _out)

for _name, _fn, _kind, _out in [
    ("add", torch.add, "any", None), ("sub", torch.sub, "any", None),
    ("mul", torch.mul, "any", None), ("div", torch.div, "float", None),
    ("floordiv", lambda a, b: torch.div(a, b, rounding_mode="floor"), "any", None),
    ("truncdiv", lambda a, b: torch.div(a, b, rounding_mode="trunc"), "any", None),
    ("remainder", torch.remainder, "any", None), ("fmod", torch.fmod, "any", None),
    ("pow", torch.pow, "float", None), ("atan2", torch.atan2, "float", None),
    ("hypot", torch.hypot, "float", None), ("copysign", torch.copysign, "float", None),
    ("maximum", torch.maximum, "any", None), ("minimum", torch.minimum, "any", None),
    ("eq", torch.eq, "any", "b1"), ("ne", torch.ne, "any", "b1"),
    ("lt", torch.lt, "any", "b1"), ("le", torch.le, "any", "b1"),
    ("gt", torch.gt, "any", "b1"), ("ge", torch.ge, "any", "b1"),
    ("logical_and", torch.logical_and, "any", "b1"), ("logical_or", torch.logical_or, "any", "b1"),
    ("logical_xor", torch.logical_xor, "any", "b1"),
    ("bitwise_and", torch.bitwise_and, "int", None), ("bitwise_or", torch.bitwise_or, "int", None),
    ("bitwise_xor", torch.bitwise_xor, "int", None),
    ("shift_left", torch.bitwise_left_shift, "int", None),
    ("shift_right", torch.bitwise_right_shift, "int", None),
]:
    _binary(_name, _fn, _kind, _out)

GELU_ACCURACIES = ("exact", "bf16")


def _gelu_rule(ts, attrs):
    if attrs.get("accuracy", "exact") not in GELU_ACCURACIES:
        _fail(f"gelu accuracy must be one of {GELU_ACCURACIES}, got {attrs.get('accuracy')!r}")
    return _pointwise_rule(None, "float")(ts, attrs)


# x * Phi(x), Phi the standard normal CDF (torch's gelu, approximate="none"). The frontend writes it
# out as erf arithmetic; the gelu_bf16 pass folds that back into this op, with accuracy="bf16",
# where a matmul epilogue rounds the result to bf16: codegen may then compute it to within a small
# fraction of bf16's rounding step instead of exactly (codegen/triton_helpers.py, gelu_bf16). The
# reference is exact either way.
_register(OpDef("gelu", "unary", 1, _gelu_rule,
                lambda xs, a, r: torch.nn.functional.gelu(xs[0]),
                attrs={"accuracy": Attr("\"exact\", or \"bf16\": the result is rounded to bf16, so it may be "
                                        "computed to within a fraction of bf16's rounding step",
                                        required=False, default="exact")},
                doc="x * Phi(x) (erf GELU)"))

_register(OpDef("where", "ternary", 3, _pointwise_rule(None, "where"),
                lambda xs, a, r: torch.where(xs[0], xs[1], xs[2]), doc="where(cond, a, b)"))


def _cast_rule(ts, attrs):
    dt = attrs["dtype"]
    if dt not in dtypes.TORCH_DTYPES:
        _fail(f"cast to unknown dtype {dt!r}")
    return [ts[0].with_dtype(dt)]


_register(OpDef("cast", "cast", 1, _cast_rule,
                lambda xs, a, r: xs[0].to(dtypes.to_torch(a["dtype"])),
                attrs={"dtype": Attr("target dtype name, e.g. \"bf16\"")}))

# ----------------------------------------------------------------------------- constants

_register(OpDef("full", "constant", 0, lambda ts, a: None,
                lambda xs, a, r: torch.full(r[0][1], a["value"], dtype=r[0][0], device=r[0][2]),
                attrs={"value": Attr("the fill value (bool, int or float, inf/nan allowed)")},
                doc="a tensor of the stated type filled with one value"))


def _iota_ref(xs, a, r):
    dtype, shape, device = r[0]
    d = a["dim"]
    idx = torch.arange(shape[d], device=device, dtype=torch.int64)
    view = [1] * len(shape)
    view[d] = shape[d]
    return idx.reshape(view).expand(shape).to(dtype).contiguous()


_register(OpDef("iota", "constant", 0, lambda ts, a: None, _iota_ref,
                attrs={"dim": Attr("the dim whose index is the value")},
                doc="value at each position = its index along `dim`"))

# ----------------------------------------------------------------------------- reductions


def _norm_axes(axes, rank):
    out = []
    for ax in axes:
        if not -rank <= ax < max(rank, 1):
            _fail(f"axis {ax} out of range for rank {rank}")
        out.append(ax % rank if rank else 0)
    if len(set(out)) != len(out):
        _fail(f"repeated axis in {tuple(axes)}")
    return out


def _reduce_rule(out_dtype=None):
    def rule(ts, attrs):
        t = ts[0]
        axes = _norm_axes(attrs["axes"], t.rank)
        if list(attrs["axes"]) != axes or list(axes) != sorted(axes):
            _fail(f"axes must be sorted and non-negative, got {tuple(attrs['axes'])}")
        if attrs["keepdim"]:
            shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape))
        else:
            shape = tuple(d for i, d in enumerate(t.shape) if i not in axes)
        return [TensorType(out_dtype or t.dtype, shape, t.device)]
    return rule


def _prod_ref(x, axes, keepdim):
    for ax in sorted(axes, reverse=True):
        x = torch.prod(x, dim=ax, keepdim=keepdim)
    return x


_REDUCE_ATTRS = {"axes": Attr("sorted tuple of reduced dims"), "keepdim": Attr("keep reduced dims as size 1")}


def _reduce(name, fn, out=None, doc=""):
    _register(OpDef(name, "reduction", 1, _reduce_rule(out),
                    lambda xs, a, r: fn(xs[0], list(a["axes"]), a["keepdim"]).to(r[0][0]),
                    attrs=_REDUCE_ATTRS, doc=doc))


def _empty_axes_ok(fn):
    # torch treats dim=[] as "all dims"; the IR means "no dims".
    return lambda x, axes, keepdim: x.clone() if not axes else fn(x, axes, keepdim)


_reduce("reduce_sum", _empty_axes_ok(lambda x, ax, k: torch.sum(x, dim=ax, keepdim=k, dtype=x.dtype)))
_reduce("reduce_prod", _empty_axes_ok(_prod_ref))
_reduce("reduce_max", _empty_axes_ok(lambda x, ax, k: torch.amax(x, dim=ax, keepdim=k)))
_reduce("reduce_min", _empty_axes_ok(lambda x, ax, k: torch.amin(x, dim=ax, keepdim=k)))


def _arg_rule(ts, attrs):
    if len(attrs["axes"]) != 1:
        _fail("argmax/argmin reduce exactly one axis")
    return _reduce_rule("i64")(ts, attrs)


for _name, _fn in [("argmax", torch.argmax), ("argmin", torch.argmin)]:
    _register(OpDef(_name, "reduction", 1, _arg_rule,
                    (lambda f: lambda xs, a, r: f(xs[0], dim=a["axes"][0], keepdim=a["keepdim"]))(_fn),
                    attrs=_REDUCE_ATTRS, doc="index of the first extreme value; NaN counts as extreme"))

# ----------------------------------------------------------------------------- views and layout

from . import ops_views  # noqa: E402,F401  (registers reshape ... pad here, in table order)

# ----------------------------------------------------------------------------- indexing


def _index_rule(ts, attrs):
    x, idx = ts
    d = attrs["dim"]
    if idx.dtype not in ("i64", "i32"):
        _fail(f"index tensor must be i64 or i32, got {idx.dtype}")
    if not 0 <= d < x.rank:
        _fail(f"index dim {d} out of range for rank {x.rank}")
    return [x.with_shape(x.shape[:d] + idx.shape + x.shape[d + 1:])]


def _index_ref(xs, a, r):
    x, idx = xs
    d = a["dim"]
    return x[(slice(None),) * d + (idx,)]


_register(OpDef("index", "index", 2, _index_rule, _index_ref, attrs={"dim": Attr("indexed dim")},
                doc="out[a..., j..., b...] = x[a..., idx[j...], b...]; negative indices wrap"))


def _gather_rule(ts, attrs):
    x, idx = ts
    d = attrs["dim"]
    if idx.dtype not in ("i64", "i32"):
        _fail(f"gather index must be i64 or i32, got {idx.dtype}")
    if idx.rank != x.rank or not 0 <= d < x.rank:
        _fail("gather index must have the input's rank and dim must be in range")
    return [x.with_shape(idx.shape)]


_register(OpDef("gather", "index", 2, _gather_rule,
                lambda xs, a, r: torch.gather(xs[0], a["dim"], xs[1]), attrs={"dim": Attr("gathered dim")},
                doc="torch.gather: out[i] = x[i with dim replaced by idx[i]]"))

# ----------------------------------------------------------------------------- matmul


def _matmul_rule(ts, attrs):
    a, b = ts
    if a.dtype != b.dtype:
        _fail(f"matmul operand dtypes differ: {a.dtype} vs {b.dtype}")
    if a.rank < 2 or a.rank != b.rank:
        _fail(f"matmul needs operands of equal rank >= 2, got {a.rank} and {b.rank}")
    if not dims_equal(a.shape[-1], b.shape[-2]):
        _fail(f"matmul contraction sizes differ: {a.shape[-1]} vs {b.shape[-2]}")
    if not shapes_equal(a.shape[:-2], b.shape[:-2]):
        _fail("matmul batch dims differ (expand them first)")
    return [TensorType(a.dtype, a.shape[:-1] + (b.shape[-1],), _same_device(ts))]


_register(OpDef("matmul", "matmul", 2, _matmul_rule, lambda xs, a, r: torch.matmul(xs[0], xs[1]),
                doc="[..., M, K] x [..., K, N] -> [..., M, N]"))

# ----------------------------------------------------------------------------- extern


def _extern_ref(xs, a, r):
    fn = resolve_target(a["target"])
    out = fn(*fill_extern_args(a["args"], xs), **fill_extern_args(a["kwargs"], xs))
    if isinstance(out, (tuple, list)):
        return tuple(out[i] for i in a["outputs"])
    return out


_register(OpDef("extern", "extern", None, lambda ts, a: None, _extern_ref,
                attrs={"target": Attr("the ATen overload, e.g. \"aten.convolution.default\""),
                       "args": Attr("positional arguments; #i is the i-th operand"),
                       "kwargs": Attr("keyword arguments", required=False, default={}),
                       "outputs": Attr("which elements of a tuple result are the op's results",
                                       required=False, default=(0,)),
                       "reason": Attr("why ember did not lower it", required=False, default="")},
                doc="calls an ATen op; always correct, reported in the dump"))


# ----------------------------------------------------------------------------- regions


def _fused_rule(ts, attrs):
    # The region is isolated from above: its body sees only its own inputs, which must have the
    # operands' types; its results are exactly the body's outputs.
    body = attrs["body"]
    if len(ts) != len(body.inputs):
        _fail(f"fused takes {len(body.inputs)} operands (its body's inputs), got {len(ts)}")
    for i, (t, v) in enumerate(zip(ts, body.inputs)):
        if t.dtype != v.type.dtype or t.device != v.type.device or not shapes_equal(t.shape, v.type.shape):
            _fail(f"operand {i} has type {t}, the body's input %{v.name} is {v.type}")
    return [v.type for v in body.outputs]


def _fused_ref(xs, a, r):
    from .interpreter import interpret  # the interpreter imports this table
    outs = interpret(a["body"], xs)
    return tuple(outs) if len(outs) != 1 else outs[0]


_register(OpDef("fused", "region", None, _fused_rule, _fused_ref,
                attrs={"body": Attr("the nested Graph: its inputs are the operands, its outputs the results"),
                       "name": Attr("the region's name, for reports and kernel names", required=False,
                                    default="")},
                doc="a group of ops codegen emits together; printed as a block"))


def attrs_with_defaults(op: OpDef, attrs: dict) -> dict:
    out = dict(attrs)
    for k, spec in op.attrs.items():
        if k not in out and not spec.required:
            out[k] = spec.default
    return out
