"""conv_bias: a CUDA convolution's bias is added by the kernel reading its result (cuDNN adds it in
a kernel of its own), where that reader is a pointwise op or a reduction, through views."""
import re

import pytest
import torch
import torch.nn as nn

from ember.passes import conv_bias as conv_bias_module
from ember.passes import conv_layout as conv_layout_module
from pass_testing import run_golden

CONV = 'target="aten.convolution.default"'
BIAS = "args=[#0, #1, #2, [1, 1], [3, 3], [1, 1], False, [0, 0], 4]"
NO_BIAS = "args=[#0, #1, None, [1, 1], [3, 3], [1, 1], False, [0, 0], 4]"


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setattr(conv_bias_module, "DEVICES", ("cuda", "cpu"))


def test_bias_of_a_convolution_read_by_a_norm_joins_the_norm(on_cpu):
    # ConvNeXt's depthwise convolution, then the block's permute to NHWC and its LayerNorm's
    # reductions: the bias add reads the convolution's result where the norm did. (f64: in bf16 the
    # add rounds once more than the interpreter's convolution, which adds the bias in f32.)
    rec = run_golden("conv_bias", f"""
        func @f(%x: f64[2,4,8,8], %w: f64[4,1,7,7], %b: f64[4]) -> (f64[2,8,8,1]) {{
          %0: f64[2,4,8,8] = extern[{BIAS}, {CONV}] %x, %w, %b
          %1: f64[2,8,8,4] = permute[dims=(0, 2, 3, 1)] %0
          %2: f64[2,8,8,1] = reduce_sum[axes=(3,), keepdim=True] %1
          return %2
        }}
        """, f"""
        func @f(%x: f64[2,4,8,8], %w: f64[4,1,7,7], %b: f64[4]) -> (f64[2,8,8,1]) [device="cpu"] {{
          %0: f64[2,4,8,8] = extern[{NO_BIAS}, {CONV}] %x, %w
          %1: f64[1,4,1,1] = reshape[shape=(1, 4, 1, 1)] %b
          %2: f64[2,4,8,8] = add %0, %1
          %3: f64[2,8,8,4] = permute[dims=(0, 2, 3, 1)] %2
          %4: f64[2,8,8,1] = reduce_sum[axes=(3,), keepdim=True] %3
          return %4
        }}
        """)
    assert rec.stats == {"peeled": 1}


def test_bias_kept_where_the_add_would_be_a_kernel_of_its_own(on_cpu):
    # Read by another convolution (ConvNeXt's downsampling feeds the next depthwise one), or
    # returned: the add has no kernel to join, so ATen adds the bias as before.
    for tail, out in [(f"%1: bf16[2,4,8,8] = extern[{NO_BIAS}, {CONV}] %0, %w\n          %2: bf16[2,4,8,8] = relu %0\n"
                       "          %3: bf16[2,4,8,8] = add %1, %2\n          return %3", "bf16[2,4,8,8]"),
                      ("%1: bf16[2,4,8,8] = relu %0\n          return %1, %0", "bf16[2,4,8,8], bf16[2,4,8,8]")]:
        run_golden("conv_bias", f"""
        func @f(%x: bf16[2,4,8,8], %w: bf16[4,1,7,7], %b: bf16[4]) -> ({out}) {{
          %0: bf16[2,4,8,8] = extern[{BIAS}, {CONV}] %x, %w, %b
          {tail}
        }}
        """, None)


def test_left_alone_off_cuda():
    run_golden("conv_bias", f"""
        func @f(%x: bf16[2,4,8,8], %w: bf16[4,1,7,7], %b: bf16[4]) -> (bf16[2,4,8,8]) {{
          %0: bf16[2,4,8,8] = extern[{BIAS}, {CONV}] %x, %w, %b
          %1: bf16[2,4,8,8] = relu %0
          return %1
        }}
        """, None)


class _LayerNorm2d(nn.LayerNorm):
    def forward(self, x):  # timm's LayerNorm2d: over channels, in NHWC order
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Block(nn.Module):
    """ConvNeXt's block: depthwise 7x7, LayerNorm in NHWC, MLP, layer scale, residual."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.rand(c))

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.fc2(torch.nn.functional.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        return x + y * self.gamma.reshape(1, -1, 1, 1)


def test_bf16_convnext_stem_and_blocks_match_eager_with_no_bias_kernel(on_cpu, monkeypatch, tmp_path):
    monkeypatch.setattr(conv_layout_module, "DEVICES", ("cuda", "cpu"))
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), _LayerNorm2d(8), _Block(8), _Block(8)).eval()
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    model = model.to(torch.bfloat16)
    x = torch.randn(2, 3, 16, 16).to(torch.bfloat16)
    with torch.no_grad():
        got = torch.compile(model, backend="ember", options={"dump_dir": str(tmp_path)})(x)
        torch.testing.assert_close(got, model(x), atol=5e-2, rtol=5e-2)
    final = next(tmp_path.rglob("final.ir")).read_text()
    convs = [line for line in final.splitlines() if "aten.convolution" in line]
    # every convolution's bias joined the LayerNorm kernel reading it (3 norms, 2 regions per
    # block's MLP, 1 per block's layer scale and residual): no add of its own anywhere
    assert len(convs) == 3 and all("#2" not in line for line in convs), convs
    assert not re.search(r"^  %\S+: \S+ = add ", final, re.M) and final.count("fused[") == 9, final


VIT_CONV = "args=[#0, #1, #2, [4, 4], [0, 0], [1, 1], False, [0, 0], 1]"
VIT_CONV_NO_BIAS = "args=[#0, #1, None, [4, 4], [0, 0], [1, 1], False, [0, 0], 1]"


def test_bias_of_patches_read_through_a_flatten_into_a_concat_is_a_second_concat(on_cpu):
    # ViT's patch embedding: the result is flattened (a reshape merging H and W, which hoist_views
    # cannot move above an add), transposed and concatenated after the class token. A concat reads
    # its pieces from memory, so an add on the patches would be a kernel of its own; the bias
    # becomes a concat of zeros and the broadcast bias, added to the concat's result, which the
    # concat's kernel computes.
    rec = run_golden("conv_bias", f"""
        func @f(%x: f64[2,3,8,8], %w: f64[4,3,4,4], %b: f64[4], %cls: f64[2,1,4]) -> (f64[2,5,4]) {{
          %0: f64[2,4,2,2] = extern[{VIT_CONV}, {CONV}] %x, %w, %b
          %1: f64[2,4,4] = reshape[shape=(2, 4, 4)] %0
          %2: f64[2,4,4] = permute[dims=(0, 2, 1)] %1
          %3: f64[2,5,4] = concat[dim=1] %cls, %2
          return %3
        }}
        """, f"""
        func @f(%x: f64[2,3,8,8], %w: f64[4,3,4,4], %b: f64[4], %cls: f64[2,1,4]) -> (f64[2,5,4]) [device="cpu"] {{
          %0: f64[2,4,2,2] = extern[{VIT_CONV_NO_BIAS}, {CONV}] %x, %w
          %1: f64[2,4,4] = reshape[shape=(2, 4, 4)] %0
          %2: f64[2,4,4] = permute[dims=(0, 2, 1)] %1
          %3: f64[2,5,4] = concat[dim=1] %cls, %2
          %4: f64[1,1,4] = reshape[shape=(1, 1, 4)] %b
          %5: f64[2,4,4] = expand[shape=(2, 4, 4)] %4
          %6: f64[2,1,4] = full[value=0.0]
          %7: f64[2,5,4] = concat[dim=1] %6, %5
          %8: f64[2,5,4] = add %3, %7
          return %8
        }}
        """)
    assert rec.stats == {"peeled": 1}


def test_bias_goes_after_a_flatten_that_a_pointwise_op_reads(on_cpu):
    # A reshape merging the spatial dims cannot move above the add: the add goes after it, on the
    # channels' new dim, where the relu reading it takes it into its kernel.
    rec = run_golden("conv_bias", f"""
        func @f(%x: f64[2,3,8,8], %w: f64[4,3,4,4], %b: f64[4]) -> (f64[2,4,4]) {{
          %0: f64[2,4,2,2] = extern[{VIT_CONV}, {CONV}] %x, %w, %b
          %1: f64[2,4,4] = reshape[shape=(2, 4, 4)] %0
          %2: f64[2,4,4] = relu %1
          return %2
        }}
        """, f"""
        func @f(%x: f64[2,3,8,8], %w: f64[4,3,4,4], %b: f64[4]) -> (f64[2,4,4]) [device="cpu"] {{
          %0: f64[2,4,2,2] = extern[{VIT_CONV_NO_BIAS}, {CONV}] %x, %w
          %1: f64[2,4,4] = reshape[shape=(2, 4, 4)] %0
          %2: f64[1,4,1] = reshape[shape=(1, 4, 1)] %b
          %3: f64[2,4,4] = add %1, %2
          %4: f64[2,4,4] = relu %3
          return %4
        }}
        """)
    assert rec.stats == {"peeled": 1}


class _PatchEmbed(nn.Module):
    """timm ViT's stem: patches, flattened and transposed, after the class token, plus positions,
    then the first block's LayerNorm."""

    def __init__(self, c=8):
        super().__init__()
        self.proj = nn.Conv2d(3, c, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, c))
        self.pos = nn.Parameter(torch.randn(1, 17, c))
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        x = self.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return x, self.norm(x)


def test_bf16_vit_patch_embedding_matches_eager_with_no_bias_kernel(on_cpu, tmp_path):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _PatchEmbed().eval().to(torch.bfloat16)
    x = torch.randn(2, 3, 16, 16).to(torch.bfloat16)
    with torch.no_grad():
        got = torch.compile(model, backend="ember", options={"dump_dir": str(tmp_path)})(x)
        for g, w in zip(got, model(x)):
            torch.testing.assert_close(g, w, atol=5e-2, rtol=5e-2)
    final = next(tmp_path.rglob("final.ir")).read_text()
    convs = [line for line in final.splitlines() if "aten.convolution" in line]
    # the bias joined the concat's kernel: the convolution, that kernel and the norm's
    assert len(convs) == 1 and "#2" not in convs[0], convs
    assert not re.search(r"^  %\S+: \S+ = (add|concat) ", final, re.M) and final.count("fused[") == 2, final
