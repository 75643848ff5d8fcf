"""move_reshapes: a reshape moves across a one-operand pointwise op toward the side without a kernel."""
import pytest

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


def test_down_stays_when_the_op_feeds_a_row_reduction():
    # GPT-2 / BERT / Llama: the projection's product (bias added on [B*T,N]) is unflattened, the
    # residual added and the sum upcast for the norm. Moved down, the add and the upcast were the
    # matmul's epilogue (an f32 copy of the sum written for the norm; with cuBLAS, a kernel of
    # their own). Left here, they join the norm's row kernel and the matmul keeps its bias alone.
    run_golden("move_reshapes", """
        func @f(%x: bf16[6,4], %w: bf16[4,5], %b: bf16[5], %r: bf16[2,3,5]) -> (f32[2,3,5], bf16[2,3,5]) {
          %0: bf16[6,5] = matmul %x, %w
          %1: bf16[6,5] = add %b, %0
          %2: bf16[2,3,5] = reshape[shape=(2, 3, 5)] %1
          %3: bf16[2,3,5] = add %2, %r
          %4: f32[2,3,5] = cast[dtype="f32"] %3
          %5: f32[2,3,1] = reduce_sum[axes=(2,), keepdim=True] %4
          %6: f32[2,3,5] = sub %4, %5
          return %6, %3
        }
        """, None)


def test_down_stays_before_a_norm_whatever_the_residual_stream_after_it():
    # The first residual add of a deep model: its sum feeds this block's norm and, through the
    # later blocks' residual adds (each read by its own norm), the whole residual stream. Looking
    # for the norm depth first along that stream spent the search's limit before reaching it: an
    # 8-layer Llama's first two adds became matmul epilogues, one extra kernel each.
    blocks = []
    for i in range(24):
        prev = "%3" if i == 0 else f"%a{i - 1}"
        blocks.append(f"""
          %c{i}: f32[2,3,5] = cast[dtype="f32"] {prev}
          %s{i}: f32[2,3,1] = reduce_sum[axes=(2,), keepdim=True] %c{i}
          %a{i}: bf16[2,3,5] = add {prev}, %r""")
    run_golden("move_reshapes", f"""
        func @f(%x: bf16[6,4], %w: bf16[4,5], %r: bf16[2,3,5]) -> (f32[2,3,1], bf16[2,3,5]) {{
          %0: bf16[6,5] = matmul %x, %w
          %2: bf16[2,3,5] = reshape[shape=(2, 3, 5)] %0
          %3: bf16[2,3,5] = add %2, %r{"".join(blocks)}
          %t: f32[2,3,1] = add %s0, %s23
          return %t, %a23
        }}
        """, None)


def test_into_a_reduction_a_residual_add_and_its_upcast_follow_the_reshape():
    # The residual add on the matmul's [B*T,N] and the norm on [B,T,N]: the reshape moves above
    # the upcast, then (next sweep) above the add, onto the bias add's result and the residual,
    # both free views. It stops at the bias add (the library's addmm). The sum is also returned:
    # that reader gets it back through a view of the moved add.
    rec = run_golden("move_reshapes", """
        func @f(%x: bf16[6,4], %w: bf16[4,5], %b: bf16[5], %r: bf16[6,5]) -> (f32[2,3,5], bf16[6,5]) {
          %0: bf16[6,5] = matmul %x, %w
          %1: bf16[6,5] = add %0, %b
          %2: bf16[6,5] = add %1, %r
          %3: f32[6,5] = cast[dtype="f32"] %2
          %4: f32[2,3,5] = reshape[shape=(2, 3, 5)] %3
          %5: f32[2,3,1] = reduce_sum[axes=(2,), keepdim=True] %4
          %6: f32[2,3,5] = sub %4, %5
          return %6, %2
        }
        """, """
        func @f(%x: bf16[6,4], %w: bf16[4,5], %b: bf16[5], %r: bf16[6,5]) -> (f32[2,3,5], bf16[6,5]) [device="cpu"] {
          %0: bf16[6,5] = matmul %x, %w
          %1: bf16[6,5] = add %0, %b
          %2: bf16[2,3,5] = reshape[shape=(2, 3, 5)] %1
          %3: bf16[2,3,5] = reshape[shape=(2, 3, 5)] %r
          %4: bf16[2,3,5] = add %2, %3
          %5: bf16[6,5] = reshape[shape=(6, 5)] %4
          %6: f32[2,3,5] = cast[dtype="f32"] %4
          %7: f32[2,3,1] = reduce_sum[axes=(2,), keepdim=True] %6
          %8: f32[2,3,5] = sub %6, %7
          return %8, %5
        }
        """)
    assert rec.stats == {"up": 2, "down": 0}


def test_into_a_reduction_a_bias_broadcasts_in_the_kept_trailing_dims():
    # A [5] scale broadcasts the same in [6,5] and [2,3,5]; a [1,5] one becomes [5]; a
    # reshape of the residual composes with the new one (here: undone). The whole chain moves,
    # down to the graph input.
    rec = run_golden("move_reshapes", """
        func @f(%a: f32[6,5], %r: f32[2,3,5], %s: f32[5], %t: f32[1,5]) -> (f32[2,3,1]) {
          %0: f32[6,5] = exp %a
          %1: f32[6,5] = reshape[shape=(6, 5)] %r
          %2: f32[6,5] = mul %0, %s
          %3: f32[6,5] = add %2, %1
          %4: f32[6,5] = mul %3, %t
          %5: f32[2,3,5] = reshape[shape=(2, 3, 5)] %4
          %6: f32[2,3,1] = reduce_max[axes=(2,), keepdim=True] %5
          return %6
        }
        """, """
        func @f(%a: f32[6,5], %r: f32[2,3,5], %s: f32[5], %t: f32[1,5]) -> (f32[2,3,1]) [device="cpu"] {
          %0: f32[2,3,5] = reshape[shape=(2, 3, 5)] %a
          %1: f32[2,3,5] = exp %0
          %2: f32[2,3,5] = mul %1, %s
          %3: f32[2,3,5] = add %2, %r
          %4: f32[5] = reshape[shape=(5,)] %t
          %5: f32[2,3,5] = mul %3, %4
          %6: f32[2,3,1] = reduce_max[axes=(2,), keepdim=True] %5
          return %6
        }
        """)
    assert rec.stats == {"up": 4, "down": 0}


def test_into_a_reduction_not_when_the_reshape_splits_a_broadcast_dim():
    # [6,10] -> [6,2,5]: the [10] bias would have to be split too; no kept trailing dim holds it.
    run_golden("move_reshapes", """
        func @f(%a: f32[6,10], %b: f32[10]) -> (f32[6,2,1]) {
          %0: f32[6,10] = exp %a
          %1: f32[6,10] = add %0, %b
          %2: f32[6,2,5] = reshape[shape=(6, 2, 5)] %1
          %3: f32[6,2,1] = reduce_sum[axes=(2,), keepdim=True] %2
          return %3
        }
        """, None)


def test_into_a_reduction_not_through_a_transposed_operand_or_a_permute():
    # A permuted operand may not view as the new shape (the wrapper would copy it), and a
    # permute before the reduction is no reshape: both stay as they are.
    run_golden("move_reshapes", """
        func @f(%a: f32[5,6], %r: f32[6,5], %c: f32[6,5]) -> (f32[2,3,1], f32[5,1]) {
          %0: f32[6,5] = permute[dims=(1, 0)] %a
          %1: f32[6,5] = add %0, %r
          %2: f32[2,3,5] = reshape[shape=(2, 3, 5)] %1
          %3: f32[2,3,1] = reduce_sum[axes=(2,), keepdim=True] %2
          %4: f32[6,5] = exp %c
          %5: f32[6,5] = add %4, %r
          %6: f32[5,6] = permute[dims=(1, 0)] %5
          %7: f32[5,1] = reduce_sum[axes=(1,), keepdim=True] %6
          return %3, %7
        }
        """, None)


def test_a_deep_residual_stream_settles_in_a_few_sweeps(monkeypatch):
    # 12 GPT-2 blocks: the residual adds alternate between [B*T, N] and [B, T, N]. A down move
    # that took an add away from the pointwise op computing its other operand let the next add
    # move back, one op per sweep, until the sweep limit (955 sweeps, +900 ops, a minute).
    pytest.importorskip("transformers")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    import ember.passes.move_reshapes as mr
    from ember.codegen import compiled_graph

    sweeps = []
    run = mr._Mover.run
    monkeypatch.setattr(mr._Mover, "run", lambda self: sweeps.append(len(self.g.ops)) or run(self))

    class Compiled(Exception):
        pass

    def stop(self, inputs, symbols=None):
        raise Compiled
    monkeypatch.setattr(compiled_graph.CompiledGraph, "__call__", stop)
    cfg = GPT2Config(n_layer=12, n_head=2, n_embd=32, vocab_size=128, n_positions=64, use_cache=False)
    model = GPT2LMHeadModel(cfg).to(torch.bfloat16).eval()
    torch._dynamo.reset()
    with pytest.raises(Compiled), torch.no_grad():
        torch.compile(model, backend="ember")(torch.randint(0, 128, (2, 16)))
    assert 1 <= len(sweeps) <= 3, sweeps
    assert sweeps[-1] <= sweeps[0], sweeps  # moves replace ops; they must not pile up
