"""attention: written-out attention becomes one aten SDPA extern (golden IR, values kept)."""
import torch
from textwrap import dedent

from ember.ir import interpret, parse
from pass_testing import random_inputs, run_golden

SDPA = 'reason="attention: SDPA, ember\'s flash-attention template or the library (codegen chooses)", ' \
       'target="aten.scaled_dot_product_attention.default"'


def _close_low_precision(before_text: str, after_text: str, seeds=(0, 1, 2)):
    """bf16: SDPA rounds differently from the f32 math form (it keeps the probabilities in bf16
    for the second matmul), so compare within bf16's tolerance, not bit for bit."""
    before, after = parse(dedent(before_text)), parse(dedent(after_text))
    for seed in seeds:
        ins = random_inputs(before, seed)
        want, got = interpret(before, ins)[0], interpret(after, ins)[0]
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)


# torch's math SDPA (F.scaled_dot_product_attention traced with the math backend), f32, no mask:
# sqrt(scale) on q and on k^T, matmuls on 3-d reshapes, softmax with the safe-softmax tail.
MATH_F32 = """
    func @f(%q: f32[2,3,5,4], %k: f32[2,3,6,4], %v: f32[2,3,6,4]) -> (f32[2,3,5,4]) {
      %0: f32[] = full[value=0.7071067811865476]
      %1: f32[2,3,5,4] = mul %q, %0
      %2: f32[2,3,4,6] = permute[dims=(0, 1, 3, 2)] %k
      %3: f32[2,3,4,6] = mul %2, %0
      %4: f32[6,5,4] = reshape[shape=(6, 5, 4)] %1
      %5: f32[6,4,6] = reshape[shape=(6, 4, 6)] %3
      %6: f32[6,5,6] = matmul %4, %5
      %7: f32[2,3,5,6] = reshape[shape=(2, 3, 5, 6)] %6
      %8: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %7
      %9: f32[2,3,5,6] = sub %7, %8
      %10: f32[2,3,5,6] = exp %9
      %11: f32[2,3,5,1] = reduce_sum[axes=(3,), keepdim=True] %10
      %12: f32[2,3,5,6] = div %10, %11
      %13: f32[] = full[value=-inf]
      %14: b1[2,3,5,6] = eq %7, %13
      %15: b1[2,3,5,6] = logical_not %14
      %16: i32[2,3,5,6] = cast[dtype="i32"] %15
      %17: i32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %16
      %18: b1[2,3,5,1] = cast[dtype="b1"] %17
      %19: b1[2,3,5,1] = logical_not %18
      %20: f32[2,3,5,6] = full[value=0.0]
      %21: f32[2,3,5,6] = where %19, %20, %12
      %22: f32[6,5,6] = reshape[shape=(6, 5, 6)] %21
      %23: f32[6,6,4] = reshape[shape=(6, 6, 4)] %v
      %24: f32[6,5,4] = matmul %22, %23
      %25: f32[2,3,5,4] = reshape[shape=(2, 3, 5, 4)] %24
      return %25
    }
    """


def test_math_sdpa_f32_without_mask():
    rec = run_golden("attention", MATH_F32, f"""
        func @f(%q: f32[2,3,5,4], %k: f32[2,3,6,4], %v: f32[2,3,6,4]) -> (f32[2,3,5,4]) [device="cpu"] {{
          %0: f32[2,3,5,4] = extern[args=[#0, #1, #2], kwargs={{"scale": 0.5}}, {SDPA}] %q, %k, %v
          return %0
        }}
        """)
    assert rec.stats == {"matched": 1, "sdpa_math": 1, "eager": 0, "causal": 0, "masked": 0, "gqa": 0,
                         "rejected": 0, "fused_op": 0}
    assert rec.details["matched"] == [{"softmax": "%12 = div", "form": "sdpa_math", "causal": False,
                                       "masked": False, "gqa": False}]


def test_math_sdpa_bf16_with_bool_mask_takes_the_inputs_before_the_upcast():
    # The bool mask became where(m, 0, -inf) in bf16, cast to f32 and added: SDPA gets %m itself.
    before = """
        func @f(%q: bf16[2,3,5,4], %k: bf16[2,3,6,4], %v: bf16[2,3,6,4], %m: b1[5,6]) -> (bf16[2,3,5,4]) {
          %0: bf16[] = full[value=-inf]
          %1: bf16[] = full[value=0.0]
          %2: bf16[5,6] = where %m, %1, %0
          %3: f32[2,3,5,4] = cast[dtype="f32"] %q
          %4: f32[2,3,6,4] = cast[dtype="f32"] %k
          %5: f32[2,3,6,4] = cast[dtype="f32"] %v
          %6: f32[] = full[value=0.7071067811865476]
          %7: f32[2,3,5,4] = mul %3, %6
          %8: f32[2,3,4,6] = permute[dims=(0, 1, 3, 2)] %4
          %9: f32[2,3,4,6] = mul %8, %6
          %10: f32[6,5,4] = reshape[shape=(6, 5, 4)] %7
          %11: f32[6,4,6] = reshape[shape=(6, 4, 6)] %9
          %12: f32[6,5,6] = matmul %10, %11
          %13: f32[2,3,5,6] = reshape[shape=(2, 3, 5, 6)] %12
          %14: f32[5,6] = cast[dtype="f32"] %2
          %15: f32[2,3,5,6] = add %13, %14
          %16: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %15
          %17: f32[2,3,5,6] = sub %15, %16
          %18: f32[2,3,5,6] = exp %17
          %19: f32[2,3,5,1] = reduce_sum[axes=(3,), keepdim=True] %18
          %20: f32[2,3,5,6] = div %18, %19
          %21: f32[] = full[value=-inf]
          %22: b1[2,3,5,6] = eq %15, %21
          %23: b1[2,3,5,6] = logical_not %22
          %24: i32[2,3,5,6] = cast[dtype="i32"] %23
          %25: i32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %24
          %26: b1[2,3,5,1] = cast[dtype="b1"] %25
          %27: b1[2,3,5,1] = logical_not %26
          %28: f32[2,3,5,6] = full[value=0.0]
          %29: f32[2,3,5,6] = where %27, %28, %20
          %30: f32[6,5,6] = reshape[shape=(6, 5, 6)] %29
          %31: f32[6,6,4] = reshape[shape=(6, 6, 4)] %5
          %32: f32[6,5,4] = matmul %30, %31
          %33: f32[2,3,5,4] = reshape[shape=(2, 3, 5, 4)] %32
          %34: bf16[2,3,5,4] = cast[dtype="bf16"] %33
          return %34
        }
        """
    after = f"""
        func @f(%q: bf16[2,3,5,4], %k: bf16[2,3,6,4], %v: bf16[2,3,6,4], %m: b1[5,6]) -> (bf16[2,3,5,4]) [device="cpu"] {{
          %0: bf16[2,3,5,4] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "scale": 0.5}}, {SDPA}] %q, %k, %v, %m
          return %0
        }}
        """
    rec = run_golden("attention", before, after, semantics=False)
    assert rec.stats["sdpa_math"] == 1 and rec.stats["masked"] == 1
    _close_low_precision(before, after)


def test_math_sdpa_with_a_float_mask_and_a_causal_mask():
    # A float mask input is added as it is; torch's is_causal mask (tril from iotas) is proven
    # causal by evaluating it at compile time, and becomes is_causal=True.
    run_golden("attention", MATH_F32.replace("%v: f32[2,3,6,4])", "%v: f32[2,3,6,4], %m: f32[2,1,5,6])")
               .replace("%8: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %7",
                        "%m7: f32[2,3,5,6] = add %7, %m\n      %8: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %m7")
               .replace("sub %7, %8", "sub %m7, %8").replace("eq %7, %13", "eq %m7, %13"), f"""
        func @f(%q: f32[2,3,5,4], %k: f32[2,3,6,4], %v: f32[2,3,6,4], %m: f32[2,1,5,6]) -> (f32[2,3,5,4]) [device="cpu"] {{
          %0: f32[2,3,5,4] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "scale": 0.5}}, {SDPA}] %q, %k, %v, %m
          return %0
        }}
        """)
    causal = MATH_F32.replace("%0: f32[] = full[value=0.7071067811865476]", """%0: f32[] = full[value=0.7071067811865476]
      %c0: i64[5,6] = iota[dim=1]
      %c1: i64[5,6] = iota[dim=0]
      %c2: b1[5,6] = le %c0, %c1
      %c3: f32[] = full[value=-inf]
      %c4: f32[] = full[value=0.0]
      %c5: f32[5,6] = where %c2, %c4, %c3""").replace(
        "%8: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %7",
        "%m7: f32[2,3,5,6] = add %7, %c5\n      %8: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %m7"
    ).replace("sub %7, %8", "sub %m7, %8").replace("eq %7, %13", "eq %m7, %13")
    rec = run_golden("attention", causal, f"""
        func @f(%q: f32[2,3,5,4], %k: f32[2,3,6,4], %v: f32[2,3,6,4]) -> (f32[2,3,5,4]) [device="cpu"] {{
          %0: f32[2,3,5,4] = extern[args=[#0, #1, #2], kwargs={{"is_causal": True, "scale": 0.5}}, {SDPA}] %q, %k, %v
          return %0
        }}
        """)
    assert rec.stats["causal"] == 1 and rec.stats["masked"] == 0


def test_hf_eager_with_padding_mask_and_heads_split_from_the_projection():
    # transformers' eager attention: matmul(q, k^T) * scale + mask; softmax; matmul with v. The
    # padding mask is where(pad, 0, finfo.min): finite, so no row can turn into NaN. k^T is one
    # permute of the projection's [B, S, H, D] view: k is that view permuted to [B, H, S, D].
    run_golden("attention", """
        func @f(%q: f32[2,2,8,16], %kx: f32[2,8,2,16], %v: f32[2,2,8,16], %pad: b1[2,1,1,8]) -> (f32[2,2,8,16]) {
          %0: f32[] = full[value=0.0]
          %1: f32[] = full[value=-3.4028234663852886e+38]
          %2: f32[2,1,1,8] = where %pad, %0, %1
          %3: f32[2,2,16,8] = permute[dims=(0, 2, 3, 1)] %kx
          %4: f32[4,8,16] = reshape[shape=(4, 8, 16)] %q
          %5: f32[4,16,8] = reshape[shape=(4, 16, 8)] %3
          %6: f32[4,8,8] = matmul %4, %5
          %7: f32[2,2,8,8] = reshape[shape=(2, 2, 8, 8)] %6
          %8: f32[] = full[value=0.25]
          %9: f32[2,2,8,8] = mul %7, %8
          %10: f32[2,2,8,8] = add %9, %2
          %11: f32[2,2,8,1] = reduce_max[axes=(3,), keepdim=True] %10
          %12: f32[2,2,8,8] = sub %10, %11
          %13: f32[2,2,8,8] = exp %12
          %14: f32[2,2,8,1] = reduce_sum[axes=(3,), keepdim=True] %13
          %15: f32[2,2,8,8] = div %13, %14
          %16: f32[4,8,8] = reshape[shape=(4, 8, 8)] %15
          %17: f32[4,8,16] = reshape[shape=(4, 8, 16)] %v
          %18: f32[4,8,16] = matmul %16, %17
          %19: f32[2,2,8,16] = reshape[shape=(2, 2, 8, 16)] %18
          return %19
        }
        """, f"""
        func @f(%q: f32[2,2,8,16], %kx: f32[2,8,2,16], %v: f32[2,2,8,16], %pad: b1[2,1,1,8]) -> (f32[2,2,8,16]) [device="cpu"] {{
          %0: f32[] = full[value=0.0]
          %1: f32[] = full[value=-3.4028234663852886e+38]
          %2: f32[2,1,1,8] = where %pad, %0, %1
          %3: f32[2,2,8,16] = permute[dims=(0, 2, 1, 3)] %kx
          %4: f32[2,2,8,16] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "scale": 0.25}}, {SDPA}] %q, %3, %v, %2
          return %4
        }}
        """)


def test_hand_written_causal_attention_becomes_is_causal():
    # bench/kernels.py's naive attention: q @ k^T / sqrt(d) + triu(full(-inf), 1), softmax, @ v.
    rec = run_golden("attention", """
        func @f(%q: f32[2,3,5,4], %k: f32[2,3,5,4], %v: f32[2,3,5,4]) -> (f32[2,3,5,4]) {
          %0: f32[5,5] = full[value=-inf]
          %1: i64[5] = iota[dim=0]
          %2: i64[1,5] = reshape[shape=(1, 5)] %1
          %3: i64[5,1] = reshape[shape=(5, 1)] %1
          %4: i64[5,5] = sub %2, %3
          %5: i64[] = full[value=1]
          %6: b1[5,5] = ge %4, %5
          %7: f32[] = full[value=0.0]
          %8: f32[5,5] = where %6, %0, %7
          %9: f32[2,3,4,5] = permute[dims=(0, 1, 3, 2)] %k
          %10: f32[6,5,4] = reshape[shape=(6, 5, 4)] %q
          %11: f32[6,4,5] = reshape[shape=(6, 4, 5)] %9
          %12: f32[6,5,5] = matmul %10, %11
          %13: f32[2,3,5,5] = reshape[shape=(2, 3, 5, 5)] %12
          %14: f32[] = full[value=2.0]
          %15: f32[2,3,5,5] = div %13, %14
          %16: f32[2,3,5,5] = add %15, %8
          %17: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %16
          %18: f32[2,3,5,5] = sub %16, %17
          %19: f32[2,3,5,5] = exp %18
          %20: f32[2,3,5,1] = reduce_sum[axes=(3,), keepdim=True] %19
          %21: f32[2,3,5,5] = div %19, %20
          %22: f32[6,5,5] = reshape[shape=(6, 5, 5)] %21
          %23: f32[6,5,4] = reshape[shape=(6, 5, 4)] %v
          %24: f32[6,5,4] = matmul %22, %23
          %25: f32[2,3,5,4] = reshape[shape=(2, 3, 5, 4)] %24
          return %25
        }
        """, f"""
        func @f(%q: f32[2,3,5,4], %k: f32[2,3,5,4], %v: f32[2,3,5,4]) -> (f32[2,3,5,4]) [device="cpu"] {{
          %0: f32[2,3,5,4] = extern[args=[#0, #1, #2], kwargs={{"is_causal": True, "scale": 0.5}}, {SDPA}] %q, %k, %v
          return %0
        }}
        """)
    assert rec.stats["eager"] == 1 and rec.stats["causal"] == 1


def test_gqa_repeat_kv_with_hf_causal_mask():
    # Llama's eager attention: k and v repeat_kv'd (reshape, expand, reshape) from 2 to 4 heads,
    # HF's causal mask where(kv_idx <= q_idx, 0, finfo.min). SDPA gets the 2-head k and v.
    rec = run_golden("attention", """
        func @f(%q: f32[2,4,8,8], %k: f32[2,2,8,8], %v: f32[2,2,8,8]) -> (f32[2,8,4,8]) {
          %0: i64[8,8] = iota[dim=1]
          %1: i64[8,8] = iota[dim=0]
          %2: b1[8,8] = le %0, %1
          %3: f32[] = full[value=0.0]
          %4: f32[] = full[value=-3.4028234663852886e+38]
          %5: f32[8,8] = where %2, %3, %4
          %6: f32[2,2,1,8,8] = reshape[shape=(2, 2, 1, 8, 8)] %k
          %7: f32[2,2,2,8,8] = expand[shape=(2, 2, 2, 8, 8)] %6
          %8: f32[2,4,8,8] = reshape[shape=(2, 4, 8, 8)] %7
          %9: f32[2,2,1,8,8] = reshape[shape=(2, 2, 1, 8, 8)] %v
          %10: f32[2,2,2,8,8] = expand[shape=(2, 2, 2, 8, 8)] %9
          %11: f32[2,4,8,8] = permute[dims=(0, 1, 3, 2)] %8
          %12: f32[8,8,8] = reshape[shape=(8, 8, 8)] %q
          %13: f32[8,8,8] = reshape[shape=(8, 8, 8)] %11
          %14: f32[8,8,8] = matmul %12, %13
          %15: f32[2,4,8,8] = reshape[shape=(2, 4, 8, 8)] %14
          %16: f32[] = full[value=0.3535533905932738]
          %17: f32[2,4,8,8] = mul %15, %16
          %18: f32[2,4,8,8] = add %17, %5
          %19: f32[2,4,8,1] = reduce_max[axes=(3,), keepdim=True] %18
          %20: f32[2,4,8,8] = sub %18, %19
          %21: f32[2,4,8,8] = exp %20
          %22: f32[2,4,8,1] = reduce_sum[axes=(3,), keepdim=True] %21
          %23: f32[2,4,8,8] = div %21, %22
          %24: f32[8,8,8] = reshape[shape=(8, 8, 8)] %23
          %25: f32[8,8,8] = reshape[shape=(8, 8, 8)] %10
          %26: f32[8,8,8] = matmul %24, %25
          %27: f32[2,4,8,8] = reshape[shape=(2, 4, 8, 8)] %26
          %28: f32[2,8,4,8] = permute[dims=(0, 2, 1, 3)] %27
          return %28
        }
        """, f"""
        func @f(%q: f32[2,4,8,8], %k: f32[2,2,8,8], %v: f32[2,2,8,8]) -> (f32[2,8,4,8]) [device="cpu"] {{
          %0: f32[2,4,8,8] = extern[args=[#0, #1, #2], kwargs={{"enable_gqa": True, "is_causal": True, "scale": 0.35355339059327373}}, {SDPA}] %q, %k, %v
          %1: f32[2,8,4,8] = permute[dims=(0, 2, 1, 3)] %0
          return %1
        }}
        """)
    assert rec.stats["gqa"] == 1 and rec.stats["causal"] == 1


def test_hf_eager_bf16_with_softmax_in_f32():
    # bf16 eager: the scale is applied in f32 (torch's opmath) and rounded back, the bf16 mask
    # added in bf16, softmax upcast to f32 and cast back before the second matmul.
    before = """
        func @f(%q: bf16[2,2,8,16], %k: bf16[2,2,8,16], %v: bf16[2,2,8,16], %pad: b1[2,1,8,8]) -> (bf16[2,2,8,16]) {
          %0: bf16[] = full[value=0.0]
          %1: bf16[] = full[value=-3.3895313892515355e+38]
          %2: bf16[2,1,8,8] = where %pad, %0, %1
          %3: bf16[2,2,16,8] = permute[dims=(0, 1, 3, 2)] %k
          %4: bf16[4,8,16] = reshape[shape=(4, 8, 16)] %q
          %5: bf16[4,16,8] = reshape[shape=(4, 16, 8)] %3
          %6: bf16[4,8,8] = matmul %4, %5
          %7: bf16[2,2,8,8] = reshape[shape=(2, 2, 8, 8)] %6
          %8: f32[2,2,8,8] = cast[dtype="f32"] %7
          %9: f32[] = full[value=0.25]
          %10: f32[2,2,8,8] = mul %8, %9
          %11: bf16[2,2,8,8] = cast[dtype="bf16"] %10
          %12: bf16[2,2,8,8] = add %11, %2
          %13: f32[2,2,8,8] = cast[dtype="f32"] %12
          %14: f32[2,2,8,1] = reduce_max[axes=(3,), keepdim=True] %13
          %15: f32[2,2,8,8] = sub %13, %14
          %16: f32[2,2,8,8] = exp %15
          %17: f32[2,2,8,1] = reduce_sum[axes=(3,), keepdim=True] %16
          %18: f32[2,2,8,8] = div %16, %17
          %19: bf16[2,2,8,8] = cast[dtype="bf16"] %18
          %20: bf16[4,8,8] = reshape[shape=(4, 8, 8)] %19
          %21: bf16[4,8,16] = reshape[shape=(4, 8, 16)] %v
          %22: bf16[4,8,16] = matmul %20, %21
          %23: bf16[2,2,8,16] = reshape[shape=(2, 2, 8, 16)] %22
          return %23
        }
        """
    after = f"""
        func @f(%q: bf16[2,2,8,16], %k: bf16[2,2,8,16], %v: bf16[2,2,8,16], %pad: b1[2,1,8,8]) -> (bf16[2,2,8,16]) [device="cpu"] {{
          %0: bf16[] = full[value=0.0]
          %1: bf16[] = full[value=-3.3895313892515355e+38]
          %2: bf16[2,1,8,8] = where %pad, %0, %1
          %3: bf16[2,2,8,16] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "scale": 0.25}}, {SDPA}] %q, %k, %v, %2
          return %3
        }}
        """
    run_golden("attention", before, after, semantics=False)
    _close_low_precision(before, after)


def test_3d_masked_fill_with_a_constant_band_mask():
    # masked_fill(drop, -inf) on 3-d scores, with a constant mask that leaves every row a key
    # (|i - j| <= 1): the plain softmax never sees an all -inf row, so SDPA agrees everywhere.
    run_golden("attention", """
        func @f(%q: f32[6,5,4], %k: f32[6,5,4], %v: f32[6,5,4]) -> (f32[6,5,4]) {
          %0: i64[5,5] = iota[dim=1]
          %1: i64[5,5] = iota[dim=0]
          %2: i64[5,5] = sub %0, %1
          %3: i64[5,5] = abs %2
          %4: i64[] = full[value=1]
          %5: b1[5,5] = gt %3, %4
          %6: f32[6,4,5] = permute[dims=(0, 2, 1)] %k
          %7: f32[6,5,5] = matmul %q, %6
          %8: f32[] = full[value=-inf]
          %9: f32[6,5,5] = where %5, %8, %7
          %10: f32[6,5,1] = reduce_max[axes=(2,), keepdim=True] %9
          %11: f32[6,5,5] = sub %9, %10
          %12: f32[6,5,5] = exp %11
          %13: f32[6,5,1] = reduce_sum[axes=(2,), keepdim=True] %12
          %14: f32[6,5,5] = div %12, %13
          %15: f32[6,5,4] = matmul %14, %v
          return %15
        }
        """, f"""
        func @f(%q: f32[6,5,4], %k: f32[6,5,4], %v: f32[6,5,4]) -> (f32[6,5,4]) [device="cpu"] {{
          %0: i64[5,5] = iota[dim=1]
          %1: i64[5,5] = iota[dim=0]
          %2: i64[5,5] = sub %0, %1
          %3: i64[5,5] = abs %2
          %4: i64[] = full[value=1]
          %5: b1[5,5] = gt %3, %4
          %6: b1[5,5] = logical_not %5
          %7: f32[6,5,4] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "scale": 1.0}}, {SDPA}] %q, %k, %v, %6
          return %7
        }}
        """)


def test_operands_regrouped_to_the_batch_dims_of_the_scores():
    # q and v arrive flattened to [B*H, ...], k as [B, H, ...]; the scores are [B, H, L, S]: SDPA
    # gets all three as [B, H, ...] (flat batch index n = b*H + h throughout), and the result is
    # reshaped back to the layout the graph returned.
    run_golden("attention", """
        func @f(%q: f32[6,5,4], %k: f32[2,3,6,4], %v: f32[6,6,4]) -> (f32[6,5,4]) {
          %0: f32[2,3,4,6] = permute[dims=(0, 1, 3, 2)] %k
          %1: f32[6,4,6] = reshape[shape=(6, 4, 6)] %0
          %2: f32[6,5,6] = matmul %q, %1
          %3: f32[2,3,5,6] = reshape[shape=(2, 3, 5, 6)] %2
          %4: f32[2,3,5,1] = reduce_max[axes=(3,), keepdim=True] %3
          %5: f32[2,3,5,6] = sub %3, %4
          %6: f32[2,3,5,6] = exp %5
          %7: f32[2,3,5,1] = reduce_sum[axes=(3,), keepdim=True] %6
          %8: f32[2,3,5,6] = div %6, %7
          %9: f32[6,5,6] = reshape[shape=(6, 5, 6)] %8
          %10: f32[6,5,4] = matmul %9, %v
          return %10
        }
        """, f"""
        func @f(%q: f32[6,5,4], %k: f32[2,3,6,4], %v: f32[6,6,4]) -> (f32[6,5,4]) [device="cpu"] {{
          %0: f32[2,3,5,4] = reshape[shape=(2, 3, 5, 4)] %q
          %1: f32[2,3,6,4] = reshape[shape=(2, 3, 6, 4)] %v
          %2: f32[2,3,5,4] = extern[args=[#0, #1, #2], kwargs={{"scale": 1.0}}, {SDPA}] %0, %k, %1
          %3: f32[6,5,4] = reshape[shape=(6, 5, 4)] %2
          return %3
        }}
        """)
