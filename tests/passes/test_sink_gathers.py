"""sink_gathers: a loss gathers log-probabilities from the logits, not from a written log_softmax."""
import torch

from ember.ir import interpret, parse
from pass_testing import run_golden

LOSS = """
    func @f(%x: bf16[4,9], %t: i64[4,1]) -> (f32[4,1]) {
      %0: f32[4,9] = cast[dtype="f32"] %x
      %1: f32[4,1] = reduce_max[axes=(1,), keepdim=True] %0
      %2: f32[4,9] = sub %0, %1
      %3: f32[4,9] = exp %2
      %4: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %3
      %5: f32[4,1] = log %4
      %6: f32[4,9] = sub %2, %5
      %7: f32[4,1] = gather[dim=1] %6, %t
      return %7
    }
    """


def test_log_softmax_is_gathered_at_its_source():
    # The gather moves through both subtractions and the cast: it reads one bf16 logit per row,
    # and the full log_softmax (%6) is no longer computed. x - max stays for the exp.
    rec = run_golden("sink_gathers", LOSS, """
        func @f(%x: bf16[4,9], %t: i64[4,1]) -> (f32[4,1]) [device="cpu"] {
          %0: f32[4,9] = cast[dtype="f32"] %x
          %1: f32[4,1] = reduce_max[axes=(1,), keepdim=True] %0
          %2: f32[4,9] = sub %0, %1
          %3: f32[4,9] = exp %2
          %4: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %3
          %5: f32[4,1] = log %4
          %6: bf16[4,1] = gather[dim=1] %x, %t
          %7: f32[4,1] = cast[dtype="f32"] %6
          %8: f32[4,1] = sub %7, %1
          %9: f32[4,1] = sub %8, %5
          return %9
        }
        """, semantics=False)  # random ints are no valid class indices: values checked below
    assert rec.stats == {"sunk": 3}
    before, after = parse(LOSS), parse(LOSS)
    from ember.passes import PassContext, run_pipeline
    run_pipeline(after, "sink_gathers", PassContext(verify=True))
    x = torch.randn(4, 9).to(torch.bfloat16)
    t = torch.randint(0, 9, (4, 1))
    torch.testing.assert_close(interpret(after, [x, t])[0], interpret(before, [x, t])[0])


def test_an_index_narrower_than_the_input_or_a_broadcast_operand_along_dim_stays():
    # [4,1] index into [5,9]: torch.gather allows it, but the row value would need slicing.
    # An operand of [1,9] broadcasts across rows, so it cannot be gathered per row as it is.
    run_golden("sink_gathers", """
        func @f(%x: f32[5,9], %r: f32[5,1], %t: i64[4,1], %y: f32[4,9], %b: f32[1,9], %u: i64[4,1]) -> (f32[4,1], f32[4,1]) {
          %0: f32[5,9] = sub %x, %r
          %1: f32[4,1] = gather[dim=1] %0, %t
          %2: f32[4,9] = add %y, %b
          %3: f32[4,1] = gather[dim=1] %2, %u
          return %1, %3
        }
        """, None, semantics=False)
