"""sink_permutes: pointwise ops run in the memory order of their permuted operands."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from pass_testing import run_golden


def test_convnext_block_tail_runs_in_nhwc_order():
    # y (NHWC) * gamma, permuted back to NCHW, plus the shortcut: both ops sink the permute, the
    # shortcut is read through the inverse permute, and the result is a permuted view of an
    # NHWC-ordered value that a convolution reads.
    rec = run_golden("sink_permutes", """
        func @f(%y: f32[2,5,5,8], %g: f32[1,8,1,1], %x: f32[2,8,5,5], %w: f32[8,1,3,3]) -> (f32[2,8,5,5], f32[2,8,5,5]) {
          %0: f32[2,8,5,5] = permute[dims=(0, 3, 1, 2)] %y
          %1: f32[2,8,5,5] = mul %0, %g
          %2: f32[2,8,5,5] = add %1, %x
          %3: f32[2,8,5,5] = extern[target="aten.convolution.default", args=[#0, #1, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 8]] %2, %w
          return %2, %3
        }
        """, """
        func @f(%y: f32[2,5,5,8], %g: f32[1,8,1,1], %x: f32[2,8,5,5], %w: f32[8,1,3,3]) -> (f32[2,8,5,5], f32[2,8,5,5]) [device="cpu"] {
          %0: f32[1,1,1,8] = permute[dims=(0, 2, 3, 1)] %g
          %1: f32[2,5,5,8] = mul %y, %0
          %2: f32[2,5,5,8] = permute[dims=(0, 2, 3, 1)] %x
          %3: f32[2,5,5,8] = add %1, %2
          %4: f32[2,8,5,5] = permute[dims=(0, 3, 1, 2)] %3
          %5: f32[2,8,5,5] = extern[args=[#0, #1, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 8], target="aten.convolution.default"] %4, %w
          return %4, %5
        }
        """)
    assert rec.stats == {"sunk": 2}


def test_a_smaller_operand_takes_one_size1_reshape_when_its_dims_keep_their_order():
    # [5] broadcasts along the last dim of [8,5]; in y's order ([5,8]) it must broadcast along
    # the first: [5,1], a size-1 reshape (which hoist_views can move up the operand's chain).
    run_golden("sink_permutes", """
        func @f(%y: f32[5,8], %b: f32[5]) -> (f32[8,5]) {
          %0: f32[8,5] = permute[dims=(1, 0)] %y
          %1: f32[8,5] = add %0, %b
          return %1
        }
        """, """
        func @f(%y: f32[5,8], %b: f32[5]) -> (f32[8,5]) [device="cpu"] {
          %0: f32[5,1] = reshape[shape=(5, 1)] %b
          %1: f32[5,8] = add %y, %0
          %2: f32[8,5] = permute[dims=(1, 0)] %1
          return %2
        }
        """)


def test_left_alone_for_reshape_readers_reductions_and_a_majority_in_order():
    for text in ["""
        func @f(%y: f32[2,5,8]) -> (f32[2,40]) {
          %0: f32[2,8,5] = permute[dims=(0, 2, 1)] %y
          %1: f32[2,8,5] = exp %0
          %2: f32[2,40] = reshape[shape=(2, 40)] %1
          return %2
        }
        """, """
        func @f(%y: f32[2,5,8]) -> (f32[2,8]) {
          %0: f32[2,8,5] = permute[dims=(0, 2, 1)] %y
          %1: f32[2,8,5] = exp %0
          %2: f32[2,8] = reduce_sum[axes=(2,), keepdim=False] %1
          return %2
        }
        """, """
        func @f(%y: f32[2,5,8], %c: b1[2,8,5], %a: f32[2,8,5]) -> (f32[2,8,5]) {
          %0: f32[2,8,5] = permute[dims=(0, 2, 1)] %y
          %1: f32[2,8,5] = where %c, %0, %a
          return %1
        }
        """]:
        run_golden("sink_permutes", text, None)


class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.randn(c))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))) * self.gamma
        return y.permute(0, 3, 1, 2) + x


def test_convnext_blocks_match_eager_and_return_channels_last():
    torch._dynamo.reset()
    model = nn.Sequential(_Block(8), _Block(8)).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        got = torch.compile(model, backend="ember")(x)
        torch.testing.assert_close(got, model(x), atol=1e-4, rtol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last)
