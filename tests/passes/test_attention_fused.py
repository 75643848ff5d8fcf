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
