"""attention: torch's backend SDPA ops (what F.scaled_dot_product_attention becomes on CUDA) with
unread extra outputs become the one SDPA extern; with the logsumexp read (training) they stay."""
from pass_testing import run_golden

REASON = "reason=\"attention: SDPA, ember's flash-attention template or the library (codegen chooses)\""
SDPA = f'{REASON}, target="aten.scaled_dot_product_attention.default"'


def test_flash_op_with_unread_logsumexp_becomes_sdpa():
    rec = run_golden("attention", """
        func @f(%q: f32[2,4,8,16], %k: f32[2,4,8,16], %v: f32[2,4,8,16]) -> (f32[2,4,8,16]) {
          %0: f32[2,4,8,16], %1: f32[2,4,8] = extern[args=[#0, #1, #2, 0.0, True], kwargs={"scale": 0.25}, outputs=(0, 1), target="aten._scaled_dot_product_flash_attention_for_cpu.default"] %q, %k, %v
          return %0
        }
        """, f"""
        func @f(%q: f32[2,4,8,16], %k: f32[2,4,8,16], %v: f32[2,4,8,16]) -> (f32[2,4,8,16]) [device="cpu"] {{
          %0: f32[2,4,8,16] = extern[args=[#0, #1, #2], kwargs={{"is_causal": True, "scale": 0.25}}, {SDPA}] %q, %k, %v
          return %0
        }}
        """)
    assert rec.stats["fused_op"] == 1 and rec.stats["matched"] == 0
    assert rec.details["fused_ops"] == [{"op": "aten._scaled_dot_product_flash_attention_for_cpu.default",
                                         "causal": True, "masked": False, "gqa": False}]


def test_efficient_op_keeps_its_additive_mask_and_gqa_is_enabled():
    # The efficient kernel's attn_bias (a mask made additive by torch) is SDPA's attn_mask; k/v
    # with fewer heads than q came from enable_gqa.
    rec = run_golden("attention", """
        func @f(%q: f32[1,4,8,16], %k: f32[1,2,8,16], %v: f32[1,2,8,16], %m: f32[1,4,8,8]) -> (f32[1,4,8,16]) {
          %0: f32[1,4,8,16], %1: f32[1,4,0], %2: i64[], %3: i64[] = extern[args=[#0, #1, #2, #3, False], outputs=(0, 1, 2, 3), target="aten._scaled_dot_product_efficient_attention.default"] %q, %k, %v, %m
          return %0
        }
        """, f"""
        func @f(%q: f32[1,4,8,16], %k: f32[1,2,8,16], %v: f32[1,2,8,16], %m: f32[1,4,8,8]) -> (f32[1,4,8,16]) [device="cpu"] {{
          %0: f32[1,4,8,16] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "enable_gqa": True}}, {SDPA}] %q, %k, %v, %m
          return %0
        }}
        """, semantics=False)  # the efficient op has no CPU kernel; SDPA's own numerics are tested in codegen
    assert rec.stats["fused_op"] == 1 and rec.details["fused_ops"][0]["masked"]


def test_read_logsumexp_or_dropout_keeps_the_op():
    # A training forward returns the logsumexp for the backward: the library op stays.
    run_golden("attention", """
        func @f(%q: f32[2,4,8,16], %k: f32[2,4,8,16], %v: f32[2,4,8,16]) -> (f32[2,4,8,16], f32[2,4,8]) {
          %0: f32[2,4,8,16], %1: f32[2,4,8] = extern[args=[#0, #1, #2, 0.0, False], outputs=(0, 1), target="aten._scaled_dot_product_flash_attention_for_cpu.default"] %q, %k, %v
          return %0, %1
        }
        """, None)
    run_golden("attention", """
        func @f(%q: f32[2,4,8,16], %k: f32[2,4,8,16], %v: f32[2,4,8,16]) -> (f32[2,4,8,16]) {
          %0: f32[2,4,8,16], %1: f32[2,4,8] = extern[args=[#0, #1, #2, 0.1, False], outputs=(0, 1), target="aten._scaled_dot_product_flash_attention_for_cpu.default"] %q, %k, %v
          return %0
        }
        """, None, semantics=False)  # dropout: random


# What transformers' Llama gives the CUDA SDPA when it passes a mask (its packed-sequence check
# keeps one under torch.compile): k and v repeat_kv'd from 2 to 4 heads, and a bool causal mask
# built from iotas, which torch makes additive for cuDNN with -65504 (not -inf) where it drops.
CAUSAL_REPEATED = """
    func @f(%q: {t}[2,4,8,16], %k: {t}[2,2,8,16], %v: {t}[2,2,8,16]) -> ({t}[2,4,8,16]) {{
      %0: i64[8,8] = iota[dim=1]
      %1: i64[8,8] = iota[dim=0]
      %2: b1[8,8] = le %0, %1
      %3: b1[2,1,8,8] = expand[shape=(2, 1, 8, 8)] %2
      %4: b1[2,1,8,8] = logical_not %3
      %5: {t}[] = full[value=-65504.0]
      %6: {t}[] = full[value=0.0]
      %7: {t}[2,1,8,8] = where %4, %5, %6
      %8: {t}[2,2,1,8,16] = reshape[shape=(2, 2, 1, 8, 16)] %k
      %9: {t}[2,2,2,8,16] = expand[shape=(2, 2, 2, 8, 16)] %8
      %10: {t}[2,4,8,16] = reshape[shape=(2, 4, 8, 16)] %9
      %11: {t}[2,2,1,8,16] = reshape[shape=(2, 2, 1, 8, 16)] %v
      %12: {t}[2,2,2,8,16] = expand[shape=(2, 2, 2, 8, 16)] %11
      %13: {t}[2,4,8,16] = reshape[shape=(2, 4, 8, 16)] %12
      {op}
      return %14
    }}
    """
CUDNN = ('%14: {t}[2,4,8,16], %15: f32[2,4,8,1], %16: i64[], %17: i64[] = extern[args=[#0, #1, #2, #3, False], '
         'kwargs={{"scale": 0.25}}, outputs=(0, 1, 6, 7), target="aten._scaled_dot_product_cudnn_attention.default"] '
         '%q, %10, %13, %7')
CPU_FLASH = ('%14: {t}[2,4,8,16], %15: f32[2,4,8] = extern[args=[#0, #1, #2, 0.0, False], kwargs={{"attn_mask": #3, '
             '"scale": 0.25}}, outputs=(0, 1), target="aten._scaled_dot_product_flash_attention_for_cpu.default"] '
             '%q, %10, %13, %7')
GQA_CAUSAL = """
    func @f(%q: {t}[2,4,8,16], %k: {t}[2,2,8,16], %v: {t}[2,2,8,16]) -> ({t}[2,4,8,16]) [device="cpu"] {{
      %0: {t}[2,4,8,16] = extern[args=[#0, #1, #2], kwargs={{"enable_gqa": True, "is_causal": True, "scale": 0.25}}, {sdpa}] %q, %k, %v
      return %0
    }}
    """


def test_cudnn_op_with_constant_causal_mask_and_repeat_kv_becomes_causal_gqa_sdpa():
    # The mask is evaluated at compile time (exactly causal: -65504 drops like -inf there), so the
    # ops building it go; k and v are read with their 2 heads through enable_gqa, so the two
    # repeat_kv copies go too.
    rec = run_golden("attention", CAUSAL_REPEATED.format(t="bf16", op=CUDNN.format(t="bf16")),
                     GQA_CAUSAL.format(t="bf16", sdpa=SDPA), semantics=False)  # cuDNN: no CPU kernel
    assert rec.details["fused_ops"] == [{"op": "aten._scaled_dot_product_cudnn_attention.default",
                                         "causal": True, "masked": False, "gqa": True}]


def test_fused_op_mask_and_repeat_kv_rewrite_keeps_values():
    # The same rewrite on the CPU flash op, whose values the reference interpreter can compare.
    run_golden("attention", CAUSAL_REPEATED.format(t="f32", op=CPU_FLASH.format(t="f32")),
               GQA_CAUSAL.format(t="f32", sdpa=SDPA))


def test_fused_op_keeps_a_mask_read_from_an_input_and_a_half_repeated_kv():
    # A mask from an input is not known at compile time: it stays. Only k is repeat_kv'd (v
    # already has 4 heads): SDPA must get the repeated k, so nothing changes there either.
    rec = run_golden("attention", """
        func @f(%q: f32[2,4,8,16], %k: f32[2,2,8,16], %v: f32[2,4,8,16], %m: f32[2,1,8,8]) -> (f32[2,4,8,16]) {
          %0: f32[2,2,1,8,16] = reshape[shape=(2, 2, 1, 8, 16)] %k
          %1: f32[2,2,2,8,16] = expand[shape=(2, 2, 2, 8, 16)] %0
          %2: f32[2,4,8,16] = reshape[shape=(2, 4, 8, 16)] %1
          %3: f32[2,4,8,16], %4: f32[2,4,8] = extern[args=[#0, #1, #2, 0.0, False], kwargs={"attn_mask": #3, "scale": 0.25}, outputs=(0, 1), target="aten._scaled_dot_product_flash_attention_for_cpu.default"] %q, %2, %v, %m
          return %3
        }
        """, f"""
        func @f(%q: f32[2,4,8,16], %k: f32[2,2,8,16], %v: f32[2,4,8,16], %m: f32[2,1,8,8]) -> (f32[2,4,8,16]) [device="cpu"] {{
          %0: f32[2,2,1,8,16] = reshape[shape=(2, 2, 1, 8, 16)] %k
          %1: f32[2,2,2,8,16] = expand[shape=(2, 2, 2, 8, 16)] %0
          %2: f32[2,4,8,16] = reshape[shape=(2, 4, 8, 16)] %1
          %3: f32[2,4,8,16] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "scale": 0.25}}, {SDPA}] %q, %2, %v, %m
          return %3
        }}
        """)
    assert rec.details["fused_ops"][0]["masked"] and not rec.details["fused_ops"][0]["gqa"]


def test_fused_op_keeps_a_constant_mask_that_is_not_causal():
    # A sliding window (keys within 2 of the query) is constant but not causal: it stays, as the
    # additive mask it is.
    run_golden("attention", """
        func @f(%q: f32[1,2,8,16], %k: f32[1,2,8,16], %v: f32[1,2,8,16]) -> (f32[1,2,8,16]) {
          %0: i64[8,8] = iota[dim=1]
          %1: i64[8,8] = iota[dim=0]
          %2: i64[8,8] = sub %1, %0
          %3: i64[] = full[value=2]
          %4: b1[8,8] = gt %2, %3
          %5: f32[] = full[value=-65504.0]
          %6: f32[] = full[value=0.0]
          %7: f32[8,8] = where %4, %5, %6
          %8: f32[1,2,8,16], %9: f32[1,2,8] = extern[args=[#0, #1, #2, 0.0, False], kwargs={"attn_mask": #3, "scale": 0.25}, outputs=(0, 1), target="aten._scaled_dot_product_flash_attention_for_cpu.default"] %q, %k, %v, %7
          return %8
        }
        """, f"""
        func @f(%q: f32[1,2,8,16], %k: f32[1,2,8,16], %v: f32[1,2,8,16]) -> (f32[1,2,8,16]) [device="cpu"] {{
          %0: i64[8,8] = iota[dim=1]
          %1: i64[8,8] = iota[dim=0]
          %2: i64[8,8] = sub %1, %0
          %3: i64[] = full[value=2]
          %4: b1[8,8] = gt %2, %3
          %5: f32[] = full[value=-65504.0]
          %6: f32[] = full[value=0.0]
          %7: f32[8,8] = where %4, %5, %6
          %8: f32[1,2,8,16] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "scale": 0.25}}, {SDPA}] %q, %k, %v, %7
          return %8
        }}
        """)
