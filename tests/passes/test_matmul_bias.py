"""matmul_bias: a bias add left unfused after a 2-d matmul becomes one aten.addmm call."""
from pass_testing import run_golden


def test_unfused_bias_add_becomes_addmm():
    rec = run_golden("matmul_bias", """
        func @f(%x: f32[4,8], %w: f32[8,6], %b: f32[6]) -> (f32[2,2,6]) {
          %0: f32[4,6] = matmul %x, %w
          %1: f32[4,6] = add %0, %b
          %2: f32[2,2,6] = reshape[shape=(2, 2, 6)] %1
          return %2
        }
        """, """
        func @f(%x: f32[4,8], %w: f32[8,6], %b: f32[6]) -> (f32[2,2,6]) [device="cpu"] {
          %0: f32[4,6] = extern[args=[#0, #1, #2], reason="matmul + bias: cuBLAS adds the bias in its epilogue (until ember's matmul template)", target="aten.addmm.default"] %b, %x, %w
          %1: f32[2,2,6] = reshape[shape=(2, 2, 6)] %0
          return %1
        }
        """)
    assert rec.stats == {"folded": 1}


def test_bias_on_the_left_and_a_row_bias():
    run_golden("matmul_bias", """
        func @f(%x: f32[4,8], %w: f32[8,6], %b: f32[1,6]) -> (f32[4,6]) {
          %0: f32[4,6] = matmul %x, %w
          %1: f32[4,6] = add %b, %0
          return %1
        }
        """, """
        func @f(%x: f32[4,8], %w: f32[8,6], %b: f32[1,6]) -> (f32[4,6]) [device="cpu"] {
          %0: f32[4,6] = extern[args=[#0, #1, #2], reason="matmul + bias: cuBLAS adds the bias in its epilogue (until ember's matmul template)", target="aten.addmm.default"] %b, %x, %w
          return %0
        }
        """)


def test_left_alone_when_the_product_is_needed_elsewhere_or_the_add_is_not_a_bias():
    for text in ["""
        func @f(%x: f32[4,8], %w: f32[8,6], %b: f32[6]) -> (f32[4,6], f32[4,6]) {
          %0: f32[4,6] = matmul %x, %w
          %1: f32[4,6] = add %0, %b
          return %1, %0
        }
        """, """
        func @f(%x: f32[4,8], %w: f32[8,6], %b: f32[4,6]) -> (f32[4,6]) {
          %0: f32[4,6] = matmul %x, %w
          %1: f32[4,6] = add %0, %b
          return %1
        }
        """, """
        func @f(%x: f32[3,4,8], %w: f32[3,8,6], %b: f32[6]) -> (f32[3,4,6]) {
          %0: f32[3,4,6] = matmul %x, %w
          %1: f32[3,4,6] = add %0, %b
          return %1
        }
        """]:
        run_golden("matmul_bias", text, None)
