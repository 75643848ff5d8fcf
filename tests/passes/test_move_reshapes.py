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
    # Up: the reshape is only returned (no kernel to join). Down: the reshape's input is a
    # graph input (no kernel to join). A cast whose result is also returned never moves up.
    run_golden("move_reshapes", """
        func @f(%x: bf16[2,3,4], %y: f32[6,4]) -> (f32[6,4], f32[2,3,4], f32[2,3,4], f32[6,4]) {
          %0: f32[2,3,4] = cast[dtype="f32"] %x
          %1: f32[6,4] = reshape[shape=(6, 4)] %0
          %2: f32[2,3,4] = reshape[shape=(2, 3, 4)] %y
          %3: f32[2,3,4] = neg %2
          %4: f32[6,4] = exp %1
          return %1, %3, %0, %4
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


def test_down_a_linear_epilogue_on_3d_moves_below_the_unflattening_reshape():
    # nn.Linear on [B,T,K]: the matmul runs on [B*T,K] and is unflattened before GELU (which reads
    # its input twice) and the residual add. Every op moves to [B*T,N]: the residual is viewed
    # in that shape, and fuse_matmul can take the whole chain as the matmul's epilogue.
    rec = run_golden("move_reshapes", """
        func @f(%x: f32[6,4], %w: f32[4,5], %r: f32[2,3,5]) -> (f32[2,3,5]) {
          %0: f32[6,5] = matmul %x, %w
          %1: f32[2,3,5] = reshape[shape=(2, 3, 5)] %0
          %2: f32[] = full[value=0.5]
          %3: f32[2,3,5] = mul %1, %2
          %4: f32[2,3,5] = erf %1
          %5: f32[2,3,5] = mul %3, %4
          %6: f32[2,3,5] = add %r, %5
          return %6
        }
        """, """
        func @f(%x: f32[6,4], %w: f32[4,5], %r: f32[2,3,5]) -> (f32[2,3,5]) [device="cpu"] {
          %0: f32[6,5] = matmul %x, %w
          %1: f32[] = full[value=0.5]
          %2: f32[6,5] = mul %0, %1
          %3: f32[6,5] = erf %0
          %4: f32[6,5] = mul %2, %3
          %5: f32[6,5] = reshape[shape=(6, 5)] %r
          %6: f32[6,5] = add %5, %4
          %7: f32[2,3,5] = reshape[shape=(2, 3, 5)] %6
          return %7
        }
        """)
    assert rec.stats == {"up": 0, "down": 4}
