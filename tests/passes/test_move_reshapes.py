"""move_reshapes: a reshape moves across a one-operand pointwise op toward the side without a kernel."""
from pass_testing import run_golden


def test_up_a_cast_of_an_input_joins_the_reduction_behind_a_reshape():
    # GPT-2's loss: the logits are upcast, flattened to [tokens, vocab] and reduced. Moved up, the
    # reshape views the bf16 input and the cast sits next to the reduction (fuse's prologue).
    rec = run_golden("move_reshapes", """
        func @f(%x: bf16[2,3,7]) -> (f32[6,1]) {
          %0: f32[2,3,7] = cast[dtype="f32"] %x
          %1: f32[6,7] = reshape[shape=(6, 7)] %0
          %2: f32[6,1] = reduce_max[axes=(1,), keepdim=True] %1
          return %2
        }
        """, """
        func @f(%x: bf16[2,3,7]) -> (f32[6,1]) [device="cpu"] {
          %0: bf16[6,7] = reshape[shape=(6, 7)] %x
          %1: f32[6,7] = cast[dtype="f32"] %0
          %2: f32[6,1] = reduce_max[axes=(1,), keepdim=True] %1
          return %2
        }
        """)
    assert rec.stats == {"up": 1, "down": 0}


def test_down_a_cast_after_a_reshape_joins_the_kernel_that_made_its_input():
    # The loss backward: the gradient is computed on [tokens, vocab], unflattened and cast to
    # bf16. Moved down, the reshape follows the cast, which becomes the kernel's epilogue. A
    # one-element operand ([1,1] scale) becomes 0-d so it broadcasts in either shape.
    rec = run_golden("move_reshapes", """
        func @f(%x: f32[6,7], %y: f32[6,7], %s: f32[1,1,1]) -> (bf16[2,3,7]) {
          %0: f32[6,7] = add %x, %y
          %1: f32[2,3,7] = reshape[shape=(2, 3, 7)] %0
          %2: f32[2,3,7] = mul %1, %s
          %3: bf16[2,3,7] = cast[dtype="bf16"] %2
          return %3
        }
        """, """
        func @f(%x: f32[6,7], %y: f32[6,7], %s: f32[1,1,1]) -> (bf16[2,3,7]) [device="cpu"] {
          %0: f32[6,7] = add %x, %y
          %1: f32[] = reshape[shape=()] %s
          %2: f32[6,7] = mul %0, %1
          %3: bf16[6,7] = cast[dtype="bf16"] %2
          %4: bf16[2,3,7] = reshape[shape=(2, 3, 7)] %3
          return %4
        }
        """)
    assert rec.stats == {"up": 0, "down": 2}


def test_stays_when_nothing_would_fuse_or_the_value_has_other_readers():
    # Up: the reshape's only reader is a matmul (no kernel to join). Down: the reshape's input is
    # a graph input (no kernel to join). Returned or shared values never move.
    run_golden("move_reshapes", """
        func @f(%x: bf16[2,3,4], %w: f32[4,5], %y: f32[6,4]) -> (f32[6,5], f32[2,3,4], f32[6,4]) {
          %0: f32[2,3,4] = cast[dtype="f32"] %x
          %1: f32[6,4] = reshape[shape=(6, 4)] %0
          %2: f32[6,5] = matmul %1, %w
          %3: f32[2,3,4] = reshape[shape=(2, 3, 4)] %y
          %4: f32[2,3,4] = neg %3
          %5: f32[6,4] = exp %y
          %6: f32[6,4] = reshape[shape=(6, 4)] %4
          %7: f32[6,4] = add %6, %5
          return %2, %4, %7
        }
        """, None)


def test_an_op_with_two_full_operands_does_not_move():
    # The add reads two full values: a reshape would have to move onto both. (A matmul reads the
    # reshape, so nothing below would fuse either.)
    run_golden("move_reshapes", """
        func @f(%x: f32[2,3,7], %y: f32[2,3,7], %w: f32[7,4]) -> (f32[6,4]) {
          %0: f32[2,3,7] = add %x, %y
          %1: f32[6,7] = reshape[shape=(6, 7)] %0
          %2: f32[6,4] = matmul %1, %w
          return %2
        }
        """, None)
