"""How each pointwise IR op (kind unary/binary/ternary/cast) becomes a Triton expression.

`lower_pointwise(op_name, args, dtype, attrs)` takes the operands as Triton expressions in their
compute dtype (triton_types.compute_dtype; `dtype` is the operands' IR dtype, for `where` the
branches') and returns the result expression in the result's compute dtype.

Math goes through `libdevice` (CUDA's correctly rounded library, or its interpreter stand-in)
because the `tl.*` versions of exp/log/... use fast approximate instructions. Semantics that no
single Triton operator has (Python-style floordiv, NaN-propagating max, ...) live in
triton_helpers.py and are called as `helpers.<name>`.
"""
from __future__ import annotations

from typing import Callable

from .triton_types import BITS, compute_dtype, convert, is_float, is_signed_int, tl_dtype

Lowering = Callable[[list[str], str, dict], str]

_LIBDEVICE_UNARY = ["exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "rsqrt", "sin", "cos",
                    "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
                    "erf", "erfc", "erfinv", "lgamma"]
_LIBDEVICE_BINARY = ["pow", "atan2", "hypot", "copysign"]
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_BITWISE = {"bitwise_and": "&", "bitwise_or": "|", "bitwise_xor": "^"}
_LOGICAL = {"logical_and": "&", "logical_or": "|", "logical_xor": "^"}

RULES: dict[str, Lowering] = {}


def _rule(*names: str):
    def register(fn: Lowering) -> Lowering:
        for n in names:
            RULES[n] = fn
        return fn
    return register


def _true_div(a: str, b: str, dtype: str) -> str:
    # Triton's f32 `/` may be an approximate division; div_rn is IEEE (and f32-only).
    return f"{a} / {b}" if compute_dtype(dtype) == "f64" else f"tl.div_rn({a}, {b})"


def _truthy(x: str, dtype: str) -> str:
    return x if dtype == "b1" else f"({x} != 0)"


# ----------------------------------------------------------------------------- unary

for _name in _LIBDEVICE_UNARY:
    RULES[_name] = (lambda n: lambda a, dt, at: f"libdevice.{n}({a[0]})")(_name)


@_rule("copy")
def _copy(a, dt, at):
    return a[0]


@_rule("neg")
def _neg(a, dt, at):
    return f"-{a[0]}"


@_rule("abs")
def _abs(a, dt, at):
    return a[0] if dt in ("u8", "b1") else f"tl.abs({a[0]})"


@_rule("sqrt")
def _sqrt(a, dt, at):
    # IEEE-rounded (plain tl.sqrt may be approximate); sqrt_rn is f32-only, libdevice's f64 is exact
    return f"libdevice.sqrt({a[0]})" if dt == "f64" else f"tl.sqrt_rn({a[0]})"


@_rule("sigmoid")
def _sigmoid(a, dt, at):
    return _true_div("1.0", f"(1.0 + libdevice.exp(-{a[0]}))", dt)


@_rule("reciprocal")
def _reciprocal(a, dt, at):
    return _true_div("1.0", a[0], dt)


@_rule("relu")
def _relu(a, dt, at):
    # `x < 0` rather than `x > 0` so that relu(nan) = nan and relu(-0.0) = -0.0, as in torch.
    return a[0] if dt == "b1" else f"tl.where({a[0]} < 0, 0, {a[0]})"


@_rule("gelu")
def _gelu(a, dt, at):
    # accuracy="bf16": the result is rounded to bf16 (the gelu_bf16 pass checked), so a cheaper
    # form within a small fraction of its rounding step does (triton_helpers.gelu_bf16).
    if at.get("accuracy", "exact") == "bf16":
        return f"helpers.gelu_bf16({a[0]})"
    return f"{a[0]} * 0.5 * (1.0 + libdevice.erf({a[0]} * 0.7071067811865476))"


def _float_only(fn_name: str) -> Lowering:
    # floor/ceil/trunc/round of an integer is the integer itself.
    return lambda a, dt, at: f"libdevice.{fn_name}({a[0]})" if is_float(dt) else a[0]


RULES["floor"] = _float_only("floor")
RULES["ceil"] = _float_only("ceil")
RULES["trunc"] = _float_only("trunc")
RULES["round"] = _float_only("nearbyint")  # round half to even, like torch.round


@_rule("sign")
def _sign(a, dt, at):
    # (x > 0) - (x < 0): sign(nan) = 0 and sign(-0.0) = 0, as torch gives on CPU and GPU.
    return a[0] if dt == "b1" else f"helpers.sign({a[0]})"


@_rule("logical_not")
def _logical_not(a, dt, at):
    return f"({a[0]} == 0)"


@_rule("bitwise_not")
def _bitwise_not(a, dt, at):
    if dt == "b1":
        return f"({a[0]} == 0)"
    # u8: xor with all ones, since Triton spells ~ as xor with -1, which an unsigned type cannot hold
    return f"({a[0]} ^ 255)" if dt == "u8" else f"~{a[0]}"


@_rule("isnan")
def _isnan(a, dt, at):
    return f"({a[0]} != {a[0]})"  # false for every integer, as wanted


@_rule("isinf")
def _isinf(a, dt, at):
    if not is_float(dt):
        return f"({a[0]} != {a[0]})"  # all false, with the operand's shape
    return f'(tl.abs({a[0]}) == float("inf"))'


# ----------------------------------------------------------------------------- binary

@_rule("add")
def _add(a, dt, at):
    return f"({a[0]} | {a[1]})" if dt == "b1" else f"({a[0]} + {a[1]})"


@_rule("sub")
def _sub(a, dt, at):
    return f"({a[0]} - {a[1]})"


@_rule("mul")
def _mul(a, dt, at):
    return f"({a[0]} & {a[1]})" if dt == "b1" else f"({a[0]} * {a[1]})"


@_rule("div")
def _div(a, dt, at):
    return _true_div(a[0], a[1], dt)


@_rule("floordiv")
def _floordiv(a, dt, at):
    if is_float(dt):
        return f"helpers.floordiv_float({a[0]}, {a[1]})"
    if is_signed_int(dt):
        return f"helpers.floordiv_int({a[0]}, {a[1]})"
    return f"({a[0]} // {a[1]})"  # unsigned: truncation is flooring


@_rule("truncdiv")
def _truncdiv(a, dt, at):
    if is_float(dt):
        return f"libdevice.trunc({_true_div(a[0], a[1], dt)})"
    return f"({a[0]} // {a[1]})"  # Triton's integer // truncates, like C


@_rule("remainder")
def _remainder(a, dt, at):
    if is_float(dt):
        return f"helpers.remainder_float({a[0]}, {a[1]})"
    if is_signed_int(dt):
        return f"helpers.remainder_int({a[0]}, {a[1]})"
    return f"({a[0]} % {a[1]})"


@_rule("fmod")
def _fmod(a, dt, at):
    return f"libdevice.fmod({a[0]}, {a[1]})" if is_float(dt) else f"({a[0]} % {a[1]})"


for _name in _LIBDEVICE_BINARY:
    RULES[_name] = (lambda n: lambda a, dt, at: f"libdevice.{n}({a[0]}, {a[1]})")(_name)


def _extreme(which: str) -> Lowering:
    def lower(a, dt, at):
        if dt == "b1":
            return f"({a[0]} {'|' if which == 'maximum' else '&'} {a[1]})"
        if is_float(dt):
            return f"helpers.{which}({a[0]}, {a[1]})"
        return f"tl.{which}({a[0]}, {a[1]})"
    return lower


RULES["maximum"] = _extreme("maximum")
RULES["minimum"] = _extreme("minimum")

for _name, _sym in _COMPARE.items():
    RULES[_name] = (lambda s: lambda a, dt, at: f"({a[0]} {s} {a[1]})")(_sym)
for _name, _sym in _BITWISE.items():
    RULES[_name] = (lambda s: lambda a, dt, at: f"({a[0]} {s} {a[1]})")(_sym)
for _name, _sym in _LOGICAL.items():
    RULES[_name] = (lambda s: lambda a, dt, at: f"({_truthy(a[0], dt)} {s} {_truthy(a[1], dt)})")(_sym)


@_rule("shift_left")
def _shift_left(a, dt, at):
    return f"helpers.shift_left({a[0]}, {a[1]}, {BITS[dt]})"


@_rule("shift_right")
def _shift_right(a, dt, at):
    fn = "shift_right_signed" if is_signed_int(dt) else "shift_right_unsigned"
    return f"helpers.{fn}({a[0]}, {a[1]}, {BITS[dt]})"


# ----------------------------------------------------------------------------- ternary and cast

@_rule("where")
def _where(a, dt, at):
    return f"tl.where({a[0]}, {a[1]}, {a[2]})"


def lower_cast(x: str, src: str, dst: str) -> str:
    """Cast between compute representations. A cast to a low-precision type rounds right here
    (then continues in f32), since an explicit cast is a rounding the program asked for."""
    if dst == "b1":
        return x if src == "b1" else f"({x} != 0)"
    src_c, dst_c = compute_dtype(src), compute_dtype(dst)
    if dst_c != dst:  # low precision: round to it, compute on in f32
        return f"{convert(x, dst)}.to({tl_dtype(dst_c)})"
    if src_c == dst_c and src != "b1":
        return x
    return f"{x}.to({tl_dtype(dst_c)})"  # float -> int truncates toward zero, like torch


def lower_pointwise(op_name: str, args: list[str], dtype: str, attrs: dict) -> str:
    """The Triton expression of one pointwise op; `dtype` is its (data) operands' IR dtype."""
    if op_name == "cast":
        return lower_cast(args[0], dtype, attrs["dtype"])
    tl_dtype(dtype)  # complex and other kernel-less dtypes fail here, with a clear message
    try:
        rule = RULES[op_name]
    except KeyError:
        raise NotImplementedError(f"no Triton lowering for pointwise op {op_name!r}") from None
    return rule(args, dtype, attrs)


def missing_rules() -> list[str]:
    """Pointwise ops of the op table without a lowering here (a test keeps this empty)."""
    from ..ir import OPS
    return sorted(n for n, d in OPS.items() if d.is_pointwise and n != "cast" and n not in RULES)

