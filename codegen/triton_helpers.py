"""@triton.jit helpers shared by generated kernels (they call them as `helpers.<name>`).

Helpers and kernels use Triton builtins only, never triton.language's own @jit library functions
(tl.sum, tl.zeros_like, tl.cdiv, ...): see runtime.py for why.

Each helper pins down a torch semantic that a bare Triton operator gets wrong: Python-style integer
and float floor division, NaN-propagating max/min, shifts by out-of-range amounts, argmax ties.

This file is loaded twice, once per execution mode (runtime.helpers_for): `triton.jit` decides at
decoration time whether it builds an interpreted or a compiled function, and the two kinds cannot
call each other. The `libdevice` it uses is the real one when compiled and the torch-backed stand-in
when interpreted.
"""
import triton
import triton.language as tl

if triton.knobs.runtime.interpret:
    from . import interpreter_shims
    from . import interpreter_shims as libdevice
else:
    from triton.language.extra import libdevice


@triton.jit
def true_div(a, b):
    # tl.div_rn is IEEE-rounded but f32-only; f64 division is already exact.
    if a.dtype == tl.float64:
        return a / b
    else:
        return tl.div_rn(a, b)


@triton.jit
def floordiv_int(a, b):
    # Triton's // truncates toward zero; Python rounds toward -inf, which differs by one when the
    # division is inexact and the signs differ.
    q = a // b
    r = a % b
    return tl.where((r != 0) & ((a < 0) != (b < 0)), q - 1, q)


@triton.jit
def remainder_int(a, b):
    # Python's %: the result takes the divisor's sign. Triton's % takes the dividend's.
    r = a % b
    return tl.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)


@triton.jit
def remainder_float(a, b):
    r = libdevice.fmod(a, b)
    return tl.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)


@triton.jit
def floordiv_float(a, b):
    # torch.floor_divide on floats (the same algorithm as CPython's float //): go through fmod so
    # that the quotient is exact, floor it, round away a .5 artifact, keep the sign of a zero
    # quotient; b == 0 gives a / b (inf or nan).
    mod = libdevice.fmod(a, b)
    div = true_div(a - mod, b)
    div = tl.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1.0, div)
    floored = tl.floor(div)
    floored = tl.where(div - floored > 0.5, floored + 1.0, floored)
    signed_zero = libdevice.copysign(div * 0.0, true_div(a, b))  # used only where div == 0
    result = tl.where(div == 0, signed_zero, floored)
    return tl.where(b == 0, true_div(a, b), result)


@triton.jit
def maximum(a, b):
    # torch.maximum propagates a NaN from either side; the GPU max instruction drops it.
    return tl.where((a >= b) | (a != a), a, b)


@triton.jit
def minimum(a, b):
    return tl.where((a <= b) | (a != a), a, b)


@triton.jit
def add(a, b):
    return a + b


if triton.knobs.runtime.interpret:
    # The interpreter reduces with numpy when the combine function *is* Triton's own sum combine (it
    # compares identity) and element by element in Python otherwise; the two compute the same sum.
    add = getattr(tl.standard, "_sum_combine", add)


@triton.jit
def multiply(a, b):
    return a * b


@triton.jit
def sign(x):
    return (x > 0).to(x.dtype) - (x < 0).to(x.dtype)


@triton.jit
def shift_left(a, b, BITS: tl.constexpr):
    # torch gives 0 for a shift amount outside [0, BITS); in Triton (LLVM) that shift is undefined.
    ok = (b >= 0) & (b < BITS)
    return tl.where(ok, a << tl.where(ok, b, 0), 0)


@triton.jit
def shift_right_signed(a, b, BITS: tl.constexpr):
    # Out-of-range amounts fill with the sign bit, as torch does.
    ok = (b >= 0) & (b < BITS)
    return a >> tl.where(ok, b, BITS - 1)


@triton.jit
def shift_right_unsigned(a, b, BITS: tl.constexpr):
    ok = (b >= 0) & (b < BITS)
    return tl.where(ok, a >> tl.where(ok, b, 0), 0)


@triton.jit
def argmax_combine(v1, i1, v2, i2):
    # Keep (v1, i1) when v1 is larger, when v1 is NaN and v2 is not (NaN is the maximum, as in
    # torch.argmax), or on a tie (both NaN counts as a tie) when i1 comes first.
    nan1 = v1 != v1
    nan2 = v2 != v2
    tie = (v1 == v2) | (nan1 & nan2)
    take1 = (v1 > v2) | (nan1 & (v2 == v2)) | (tie & (i1 < i2))
    return tl.where(take1, v1, v2), tl.where(take1, i1, i2)


@triton.jit
def argmin_combine(v1, i1, v2, i2):
    nan1 = v1 != v1
    nan2 = v2 != v2
    tie = (v1 == v2) | (nan1 & nan2)
    take1 = (v1 < v2) | (nan1 & (v2 == v2)) | (tie & (i1 < i2))
    return tl.where(take1, v1, v2), tl.where(take1, i1, i2)


@triton.jit
def loop_bound(n):
    # A runtime loop bound, unchanged; the interpreter gets a version that unwraps its scalar array.
    return n


if triton.knobs.runtime.interpret:
    loop_bound = interpreter_shims.python_int


@triton.jit
def dot(a, b):
    # tl.dot of 16-bit tiles accumulating in f32 (the attention template's Q K^T and P V).
    return tl.dot(a, b)


if triton.knobs.runtime.interpret:
    @triton.jit
    def dot(a, b):  # noqa: F811 - the interpreter multiplies bf16 tiles' raw bits as numbers
        return tl.dot(a.to(tl.float32), b.to(tl.float32))


# Rounding casts to low-precision floats (`.to` rounds to nearest even on the GPU; the interpreter's
# bf16 and fp8 conversions do not, so they get torch's instead).
@triton.jit
def to_bf16(x):
    return x.to(tl.bfloat16)


@triton.jit
def to_f8e4m3(x):
    return x.to(tl.float8e4nv)


@triton.jit
def to_f8e5m2(x):
    return x.to(tl.float8e5)


if triton.knobs.runtime.interpret:
    import torch
    to_bf16 = interpreter_shims.rounding_cast(torch.bfloat16, tl.bfloat16)
    to_f8e4m3 = interpreter_shims.rounding_cast(torch.float8_e4m3fn, tl.float8e4nv)
    to_f8e5m2 = interpreter_shims.rounding_cast(torch.float8_e5m2, tl.float8e5)


@triton.jit
def welford_combine(mean_a, m2_a, n_a, mean_b, m2_b, n_b):
    # Chan et al.'s merge of two (mean, sum of squared deviations, count) partials; an empty
    # partial (n == 0) contributes nothing instead of dividing by zero.
    n = n_a + n_b
    delta = mean_b - mean_a
    w_b = tl.where(n == 0, 0.0, n_b / tl.where(n == 0, 1.0, n))
    return mean_a + delta * w_b, m2_a + m2_b + delta * delta * n_a * w_b, n


@triton.jit
def gelu_bf16(x):
    # gelu(x) = x * Phi(x) for a result that is rounded to bf16 (the IR's gelu[accuracy="bf16"]).
    # Phi(-a) = exp(-a^2 / 2) * R(a) for a = |x|, R a degree-9 polynomial fitted here to
    # Phi(-a) * exp(a^2 / 2) on [0, 5.5] (relative error 5.5e-5); Phi(x) = 1 - Phi(-x) for x >= 0.
    # One exp2 (the GPU's special-function unit) and ten FMAs, where libdevice's erf costs a long
    # two-branch polynomial with an exp: in the H100's matmul epilogue at BERT's MLP shape the
    # epilogue went from 100 to 84 us. Against float64, relative error <= 8.3e-5 wherever
    # |gelu(x)| >= 2^-20, absolute error <= 1.2e-9 below that (a tail clamped at a = 5.5): under
    # 1/23 of bf16's rounding step (2^-9 relative at the least). NaN stays NaN; +inf gives +inf.
    e = tl.exp2(x * x * -0.7213475204444817)        # exp(-x^2 / 2)
    a = tl.minimum(tl.abs(x), 5.5)
    r = -8.430614002463699e-07
    r = r * a + 2.5519460905343294e-05
    r = r * a + -0.0003389719931874424
    r = r * a + 0.0026166841853410006
    r = r * a + -0.013170388527214527
    r = r * a + 0.04633980616927147
    r = r * a + -0.12068061530590057
    r = r * a + 0.2448778748512268
    r = r * a + -0.398055762052536
    r = r * a + 0.49997249245643616
    q = e * r                                       # Phi(-|x|)
    return x * tl.where(x >= 0, 1.0 - q, q)
