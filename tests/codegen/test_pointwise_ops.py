"""Every pointwise op of the op table, compiled to a Triton kernel, against eager torch and the
reference interpreter: floats (with NaN/inf/-0.0/half-way values mixed in), f16/bf16 for a
representative subset, integers and bools for the ops that take them, and casts."""
import math

import pytest
import torch

from ember.codegen.compiled_graph import compile_graph
from ember.codegen.pointwise_ops import missing_rules
from ember.ir import Builder, TensorType, to_torch

from codegen_check import check_graph, parse_on, random_tensor

SHAPE = (7, 33)  # 231 elements: one partly masked block

SPECIALS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 0.5, 1.5, 2.5, -0.5, -2.5, 3.0, -7.0]


def _with_specials(t: torch.Tensor) -> torch.Tensor:
    flat = t.reshape(-1).clone()
    flat[:len(SPECIALS)] = torch.tensor(SPECIALS, dtype=t.dtype)
    return flat.reshape(t.shape)


def _floordiv(a, b):
    return torch.div(a, b, rounding_mode="floor")


def _truncdiv(a, b):
    return torch.div(a, b, rounding_mode="trunc")


# name -> (eager function, input domain (low, high) or None for randn, whether specials are mixed in)
FLOAT_UNARY = {
    "neg": (torch.neg, None, True), "abs": (torch.abs, None, True), "copy": (torch.clone, None, True),
    "exp": (torch.exp, None, False), "exp2": (torch.exp2, None, False),
    "expm1": (torch.expm1, None, False), "log": (torch.log, (0.1, 10), False),
    "log2": (torch.log2, (0.1, 10), False), "log10": (torch.log10, (0.1, 10), False),
    "log1p": (torch.log1p, (-0.9, 5), False), "sqrt": (torch.sqrt, (0.0, 10), False),
    "rsqrt": (torch.rsqrt, (0.1, 10), False), "sin": (torch.sin, None, False),
    "cos": (torch.cos, None, False), "tan": (torch.tan, (-1.4, 1.4), False),
    "asin": (torch.asin, (-0.95, 0.95), False), "acos": (torch.acos, (-0.95, 0.95), False),
    "atan": (torch.atan, None, False), "sinh": (torch.sinh, None, False),
    "cosh": (torch.cosh, None, False), "tanh": (torch.tanh, None, False),
    "asinh": (torch.asinh, None, False), "acosh": (torch.acosh, (1.05, 10), False),
    "atanh": (torch.atanh, (-0.95, 0.95), False), "erf": (torch.erf, None, False),
    "erfc": (torch.erfc, None, False), "erfinv": (torch.erfinv, (-0.95, 0.95), False),
    "lgamma": (torch.lgamma, (0.1, 6), False), "sigmoid": (torch.sigmoid, None, True),
    "gelu": (torch.nn.functional.gelu, None, False),
    "relu": (torch.relu, None, True), "floor": (torch.floor, (-5, 5), True),
    "ceil": (torch.ceil, (-5, 5), True), "trunc": (torch.trunc, (-5, 5), True),
    "round": (torch.round, (-5, 5), True), "sign": (torch.sign, None, True),
    "reciprocal": (torch.reciprocal, (0.5, 4), True), "logical_not": (torch.logical_not, None, True),
    "isnan": (torch.isnan, None, True), "isinf": (torch.isinf, None, True),
}

FLOAT_BINARY = {
    "add": (torch.add, None), "sub": (torch.sub, None), "mul": (torch.mul, None),
    "div": (torch.div, None), "floordiv": (_floordiv, None), "truncdiv": (_truncdiv, None),
    "remainder": (torch.remainder, None), "fmod": (torch.fmod, None),
    "pow": (torch.pow, (0.1, 3)), "atan2": (torch.atan2, None), "hypot": (torch.hypot, None),
    "copysign": (torch.copysign, None), "maximum": (torch.maximum, None),
    "minimum": (torch.minimum, None), "eq": (torch.eq, None), "ne": (torch.ne, None),
    "lt": (torch.lt, None), "le": (torch.le, None), "gt": (torch.gt, None), "ge": (torch.ge, None),
    "logical_and": (torch.logical_and, None), "logical_or": (torch.logical_or, None),
    "logical_xor": (torch.logical_xor, None),
}

INT_UNARY = {"neg": torch.neg, "abs": torch.abs, "copy": torch.clone, "relu": torch.relu,
             "floor": torch.floor, "ceil": torch.ceil, "trunc": torch.trunc, "round": torch.round,
             "sign": torch.sign, "logical_not": torch.logical_not, "bitwise_not": torch.bitwise_not,
             "isnan": torch.isnan, "isinf": torch.isinf}

INT_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "floordiv": _floordiv,
              "truncdiv": _truncdiv, "remainder": torch.remainder, "fmod": torch.fmod,
              "maximum": torch.maximum, "minimum": torch.minimum, "eq": torch.eq, "ne": torch.ne,
              "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge,
              "logical_and": torch.logical_and, "logical_or": torch.logical_or,
              "logical_xor": torch.logical_xor, "bitwise_and": torch.bitwise_and,
              "bitwise_or": torch.bitwise_or, "bitwise_xor": torch.bitwise_xor,
              "shift_left": torch.bitwise_left_shift, "shift_right": torch.bitwise_right_shift}

BOOL_UNARY = {"copy": torch.clone, "sign": torch.sign, "logical_not": torch.logical_not,
              "bitwise_not": torch.bitwise_not, "isnan": torch.isnan, "isinf": torch.isinf}
BOOL_BINARY = {"add": torch.add, "mul": torch.mul, "maximum": torch.maximum, "minimum": torch.minimum,
               "eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "ge": torch.ge,
               "logical_and": torch.logical_and, "logical_or": torch.logical_or,
               "logical_xor": torch.logical_xor, "bitwise_and": torch.bitwise_and,
               "bitwise_or": torch.bitwise_or, "bitwise_xor": torch.bitwise_xor}

LOW_PRECISION_OPS = ["add", "sub", "mul", "div", "floordiv", "maximum", "lt", "exp", "tanh", "sigmoid",
                     "relu", "sqrt", "neg", "round"]


def _graph(op: str, dtypes: list[str], shapes=None, device="cpu", **attrs):
    b = Builder(op, device=device)
    shapes = shapes or [SHAPE] * len(dtypes)
    ins = [b.input(f"x{i}", TensorType(dt, s, device)) for i, (dt, s) in enumerate(zip(dtypes, shapes))]
    return b.build([b.op(op, *ins, **attrs)])


def test_every_pointwise_op_has_a_lowering():
    assert missing_rules() == []


def test_tables_here_cover_every_pointwise_op():
    from ember.ir import OPS
    pointwise = {n for n, d in OPS.items() if d.is_pointwise and d.kind in ("unary", "binary")}
    assert pointwise <= set(FLOAT_UNARY) | set(FLOAT_BINARY) | set(INT_UNARY) | set(INT_BINARY)


@pytest.mark.parametrize("op", sorted(FLOAT_UNARY))
def test_float_unary(op, device):
    fn, domain, specials = FLOAT_UNARY[op]
    x = random_tensor(SHAPE, torch.float32, *(domain or (None, None)))
    if specials:
        x = _with_specials(x)
    check_graph(_graph(op, ["f32"], device=device), [x], fn)


def test_gelu_at_bf16_accuracy_is_within_its_stated_error(device):
    # gelu[accuracy="bf16"] (triton_helpers.gelu_bf16) against float64, over [-14, 14] and the
    # specials: relative error <= 8.5e-5 where |gelu| >= 2^-20, absolute <= 1.5e-9 below that,
    # NaN where the input is NaN and +inf at +inf. Its own bounds, not f32's: the pass that
    # writes it (gelu_bf16) only does so where the result is rounded to bf16.
    x = torch.cat([torch.linspace(-14, 14, 40001), torch.randn(999) * 3,
                   torch.tensor([math.nan, math.inf, 0.0, -0.0, 5.5, -5.5])])
    g = _graph("gelu", ["f32"], shapes=[tuple(x.shape)], device=device, accuracy="bf16")
    got = compile_graph(g)([x.to(device)], None)[0].cpu().double()
    ref = torch.nn.functional.gelu(x.double())
    finite = x.isfinite()
    err = (got - ref)[finite].abs()
    large = ref[finite].abs() >= 2**-20
    assert (err[large] / ref[finite][large].abs()).max() <= 8.5e-5
    assert err[~large].max() <= 1.5e-9
    assert got[x.isnan()].isnan().all() and got[x == math.inf].eq(math.inf).all()


def test_gelu_rejects_an_unknown_accuracy():
    with pytest.raises(ValueError, match="accuracy must be one of"):
        _graph("gelu", ["f32"], accuracy="f16")


@pytest.mark.parametrize("op", sorted(FLOAT_BINARY))
def test_float_binary(op, device):
    fn, domain = FLOAT_BINARY[op]
    a = random_tensor(SHAPE, torch.float32, *(domain or (None, None))) * (1 if domain else 3)
    b = random_tensor(SHAPE, torch.float32)
    if domain is None:  # NaN, inf, signed zeros on both sides, and in every pairing
        a = _with_specials(a)
        b = _with_specials(b.flip(1)).reshape(-1)
        b[len(SPECIALS):2 * len(SPECIALS)] = torch.tensor(SPECIALS)
        b = b.reshape(SHAPE)
    check_graph(_graph(op, ["f32", "f32"], device=device), [a, b], fn)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("op", LOW_PRECISION_OPS)
def test_low_precision(op, dtype, device):
    tdt = to_torch(dtype)
    if op in FLOAT_UNARY:
        fn, domain, _ = FLOAT_UNARY[op]
        ins = [random_tensor(SHAPE, tdt, *(domain or (None, None)))]
    else:
        fn, _ = FLOAT_BINARY[op]
        ins = [random_tensor(SHAPE, tdt) * 3, random_tensor(SHAPE, tdt)]
    check_graph(_graph(op, [dtype] * len(ins), device=device), ins, fn)


@pytest.mark.parametrize("dtype", ["f64"])
@pytest.mark.parametrize("op", ["add", "div", "exp", "floordiv", "remainder", "sigmoid", "maximum", "sqrt",
                                "round", "reciprocal", "truncdiv", "lgamma"])
def test_f64(op, dtype, device):
    fn = FLOAT_UNARY[op][0] if op in FLOAT_UNARY else FLOAT_BINARY[op][0]
    n = 1 if op in FLOAT_UNARY else 2
    ins = [random_tensor(SHAPE, torch.float64, 0.1, 4) if op in ("sqrt", "lgamma") else
           random_tensor(SHAPE, torch.float64) * 3 for _ in range(n)]
    check_graph(_graph(op, [dtype] * n, device=device), ins, fn)


def _int_operands(op: str, dtype: str):
    tdt = to_torch(dtype)
    if op in ("shift_left", "shift_right"):
        bits = torch.iinfo(tdt).bits
        low = 0 if dtype == "u8" else -2
        return [random_tensor(SHAPE, tdt), random_tensor(SHAPE, tdt, low, bits + 3)]
    a = random_tensor(SHAPE, tdt, *((0, 200) if dtype == "u8" else (-1000, 1000)))
    b = random_tensor(SHAPE, tdt, *((1, 20) if dtype == "u8" else (-20, 20)))
    if op in ("floordiv", "truncdiv", "remainder", "fmod"):
        b = torch.where(b == 0, torch.ones_like(b), b)  # integer division by zero is undefined
    if dtype != "u8" and op not in ("floordiv", "truncdiv", "remainder", "fmod", "mul"):
        a, b = random_tensor(SHAPE, tdt), random_tensor(SHAPE, tdt)  # full range: wraps on overflow
    return [a, b]


@pytest.mark.parametrize("op", sorted(INT_BINARY))
def test_int_binary(op, device):
    check_graph(_graph(op, ["i32", "i32"], device=device), _int_operands(op, "i32"), INT_BINARY[op])


@pytest.mark.parametrize("dtype", ["i8", "u8", "i64"])
@pytest.mark.parametrize("op", ["add", "mul", "floordiv", "remainder", "truncdiv", "maximum",
                                "shift_left", "shift_right", "bitwise_xor"])
def test_int_binary_other_widths(op, dtype, device):
    check_graph(_graph(op, [dtype, dtype], device=device), _int_operands(op, dtype), INT_BINARY[op])


@pytest.mark.parametrize("dtype", ["i32", "i8", "u8", "i64"])
@pytest.mark.parametrize("op", sorted(INT_UNARY))
def test_int_unary(op, dtype, device):
    check_graph(_graph(op, [dtype], device=device), [random_tensor(SHAPE, to_torch(dtype))], INT_UNARY[op])


@pytest.mark.parametrize("op", sorted(BOOL_UNARY))
def test_bool_unary(op, device):
    check_graph(_graph(op, ["b1"], device=device), [random_tensor(SHAPE, torch.bool)], BOOL_UNARY[op])


@pytest.mark.parametrize("op", sorted(BOOL_BINARY))
def test_bool_binary(op, device):
    ins = [random_tensor(SHAPE, torch.bool), random_tensor(SHAPE, torch.bool)]
    check_graph(_graph(op, ["b1", "b1"], device=device), ins, BOOL_BINARY[op])


@pytest.mark.parametrize("dtype", ["f32", "f16", "i64", "b1"])
def test_where(dtype, device):
    tdt = to_torch(dtype)
    ins = [random_tensor(SHAPE, torch.bool), random_tensor(SHAPE, tdt), random_tensor(SHAPE, tdt)]
    check_graph(_graph("where", ["b1", dtype, dtype], device=device), ins, torch.where)


CASTS = [("f32", "i32"), ("f32", "i8"), ("f32", "i64"), ("f32", "f16"), ("f32", "bf16"), ("f16", "f32"),
         ("bf16", "f32"), ("f16", "bf16"), ("f32", "f64"), ("f64", "f32"), ("f32", "b1"), ("b1", "f32"),
         ("b1", "i64"), ("i32", "f32"), ("i64", "i8"), ("i32", "u8"), ("u8", "i32"), ("i64", "b1"),
         ("bf16", "i32"), ("i8", "f16")]


@pytest.mark.parametrize("src,dst", CASTS)
def test_cast(src, dst, device):
    tsrc, tdst = to_torch(src), to_torch(dst)
    if src in ("f32", "f16", "bf16", "f64"):
        x = random_tensor(SHAPE, torch.float32) * 50
        if dst in ("i8", "u8"):
            x = x.clamp(-100, 100)
        if dst in ("b1", "f16", "bf16", "f64"):
            x = _with_specials(x)  # NaN -> True, -0.0 -> False, inf survives
        x = x.to(tsrc)
    else:
        x = random_tensor(SHAPE, tsrc)
    check_graph(_graph("cast", [src], dtype=dst, device=device), [x], lambda t: t.to(tdst))


def test_cast_to_low_precision_rounds_mid_kernel(device):
    # f32 -> bf16 -> f32 must lose the low mantissa bits even though the kernel computes in f32.
    b = Builder("roundtrip", device=device)
    x = b.input("x", TensorType("f32", SHAPE, device))
    y = b.op("cast", b.op("cast", x, dtype="bf16"), dtype="f32")
    g = b.build([y])
    check_graph(g, [random_tensor(SHAPE, torch.float32)], lambda t: t.to(torch.bfloat16).float())


@pytest.mark.parametrize("value,dtype", [(2.5, "f32"), (math.inf, "f32"), (math.nan, "f16"), (-3, "i32"),
                                         (True, "b1"), (0.1, "bf16"), (7, "i64")])
def test_full(value, dtype, device):
    b = Builder("full", device=device)
    t = TensorType(dtype, (5, 9), device)
    g = b.build([b.op("full", result_types=[t], value=value)])
    check_graph(g, [], lambda: torch.full((5, 9), value, dtype=to_torch(dtype)))


@pytest.mark.parametrize("dim,dtype", [(0, "i64"), (1, "f32"), (2, "i32"), (1, "f16")])
def test_iota(dim, dtype, device):
    shape = (3, 5, 4)
    b = Builder("iota", device=device)
    g = b.build([b.op("iota", result_types=[TensorType(dtype, shape, device)], dim=dim)])

    def eager():
        view = [1, 1, 1]
        view[dim] = shape[dim]
        return torch.arange(shape[dim]).reshape(view).expand(shape).to(to_torch(dtype))
    check_graph(g, [], eager)


@pytest.mark.parametrize("f8", ["f8e4m3", "f8e5m2"])
def test_fp8_casts(f8, device):
    # torch has no fp8 arithmetic (nor does the reference interpreter), so: casts in and out.
    b = Builder("f8", device=device)
    x = b.input("x", TensorType("f32", SHAPE, device))
    q = b.input("q", TensorType(f8, SHAPE, device))
    g = b.build([b.op("cast", b.op("cast", x, dtype=f8), dtype="f32"), b.op("cast", q, dtype="f32")])
    tf8 = to_torch(f8)
    # Values stay in range: fp8 overflow differs (the GPU saturates, torch gives NaN/inf).
    x_t = random_tensor(SHAPE, torch.float32) * 3
    q_t = (random_tensor(SHAPE, torch.float32) * 3).to(tf8)
    check_graph(g, [x_t, q_t], lambda t, u: (t.to(tf8).float(), u.float()))


def test_softmax_like_graph(device):
    g = parse_on(device, """
func @softmax[s0](%x: f16[s0,37]) -> (f16[s0,37]) [device="cpu"] {
  %0: f16[s0,1] = reduce_max[axes=(1,), keepdim=True] %x
  %1: f16[s0,37] = sub %x, %0
  %2: f32[s0,37] = cast[dtype="f32"] %1
  %3: f32[s0,37] = exp %2
  %4: f32[s0,1] = reduce_sum[axes=(1,), keepdim=True] %3
  %5: f32[s0,37] = div %3, %4
  %6: f16[s0,37] = cast[dtype="f16"] %5
  return %6
}
""")
    x = random_tensor((6, 37), torch.float16)
    compiled = check_graph(g, [x], lambda t: torch.softmax(t.float() - t.amax(1, keepdim=True).float(), 1).half())
    assert compiled.num_kernels == 7


def test_a_region_of_several_ops_is_one_kernel():
    # Fusion is a later pass, but the pointwise generator already takes a region: loads of values
    # from outside it, one line per op, stores of the region's outputs.
    from ember.codegen.pointwise import pointwise_kernel
    b = Builder("region")
    x = b.input("x", TensorType("f16", (4, 8)))
    y = b.input("y", TensorType("f16", (8,)))
    t = b.op("mul", x, y)
    u = b.op("sigmoid", t)
    v = b.op("add", u, x)
    g = b.build([v])
    kernel = pointwise_kernel(g.ops, outputs=[v])
    src = kernel.source
    assert src.count("tl.load(") == 2 and src.count("tl.store(") == 1
    assert "# mul" in src and "# sigmoid" in src and "# add" in src
    assert [p.name for p in kernel.params if p.kind == "tensor"] == ["in0_ptr", "in1_ptr", "out0_ptr"]


def test_complex_has_no_kernel():
    from ember.codegen import compile_graph
    from ember.codegen.triton_types import UnsupportedDtype
    with pytest.raises(UnsupportedDtype, match="neg %x0: no Triton kernel for dtype c64"):
        compile_graph(_graph("neg", ["c64"]))
