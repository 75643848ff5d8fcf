"""conv_layout: 16-bit CUDA convolutions keep their activations channels-last (views and one
input copy), and sink_permutes then runs the batch norm / ReLU / residual add between them in
NHWC order."""
import pytest
import torch
import torch.nn as nn

from ember.passes import conv_layout as conv_layout_module
from pass_testing import run_golden

CONV = 'target="aten.convolution.default"'
ARGS = "args=[#0, #1, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1]"


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setattr(conv_layout_module, "DEVICES", ("cuda", "cpu"))


def test_conv_results_read_as_channels_last_and_the_image_copied_once(on_cpu):
    rec = run_golden("conv_layout", f"""
        func @f(%x: bf16[2,3,8,8], %w: bf16[4,3,3,3], %v: bf16[4,4,3,3]) -> (bf16[2,4,8,8]) {{
          %0: bf16[2,4,8,8] = extern[{ARGS}, {CONV}] %x, %w
          %1: bf16[2,4,8,8] = relu %0
          %2: bf16[2,4,8,8] = extern[{ARGS}, {CONV}] %1, %v
          return %2
        }}
        """, f"""
        func @f(%x: bf16[2,3,8,8], %w: bf16[4,3,3,3], %v: bf16[4,4,3,3]) -> (bf16[2,4,8,8]) [device="cpu"] {{
          %0: bf16[2,8,8,3] = permute[dims=(0, 2, 3, 1)] %x
          %1: bf16[2,8,8,3] = copy %0
          %2: bf16[2,3,8,8] = permute[dims=(0, 3, 1, 2)] %1
          %3: bf16[2,4,8,8] = extern[args=[#0, #1, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1], {CONV}] %2, %w
          %4: bf16[2,8,8,4] = permute[dims=(0, 2, 3, 1)] %3
          %5: bf16[2,4,8,8] = permute[dims=(0, 3, 1, 2)] %4
          %6: bf16[2,4,8,8] = relu %5
          %7: bf16[2,4,8,8] = extern[args=[#0, #1, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1], {CONV}] %6, %v
          %8: bf16[2,8,8,4] = permute[dims=(0, 2, 3, 1)] %7
          %9: bf16[2,4,8,8] = permute[dims=(0, 3, 1, 2)] %8
          return %9
        }}
        """)
    assert rec.stats == {"convolutions": 2}


def test_left_alone_in_f32_on_cpu_and_for_transposed_convolutions():
    for dtype, transposed, weight, patched in [("f32", "False", "4,3,3,3", True), ("bf16", "False", "4,3,3,3", False),
                                               ("bf16", "True", "3,4,3,3", True)]:
        text = f"""
        func @f(%x: {dtype}[2,3,8,8], %w: {dtype}[{weight}]) -> ({dtype}[2,4,8,8]) {{
          %0: {dtype}[2,4,8,8] = extern[args=[#0, #1, None, [1, 1], [1, 1], [1, 1], {transposed}, [0, 0], 1], {CONV}] %x, %w
          return %0
        }}
        """
        with pytest.MonkeyPatch.context() as mp:
            if patched:
                mp.setattr(conv_layout_module, "DEVICES", ("cuda", "cpu"))
            run_golden("conv_layout", text, None)


class _Bottleneck(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + x)


def test_bf16_resnet_blocks_match_eager_with_one_kernel_per_batch_norm(on_cpu, tmp_path):
    torch._dynamo.reset()
    torch.manual_seed(0)
    stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    model = nn.Sequential(stem, nn.BatchNorm2d(8), nn.ReLU(), _Bottleneck(8), _Bottleneck(8)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    model = model.to(torch.bfloat16)
    x = torch.randn(2, 3, 6, 6).to(torch.bfloat16)
    with torch.no_grad():
        compiled = torch.compile(model, backend="ember", options={"dump_dir": str(tmp_path)})
        got = compiled(x)
        torch.testing.assert_close(got, model(x), atol=5e-2, rtol=5e-2)
    final = next(tmp_path.rglob("final.ir")).read_text()
    # the image's copy, then one kernel per batch norm (with its ReLU / residual add), each in
    # NHWC order: no other op is left between the convolutions
    assert final.count("= copy") == 1 and final.count("fused[") == 5, final
    assert all(op in ("extern", "permute", "copy", "fused", "reshape") for op in
               (line.split(" = ")[1].split("[")[0].split(" ")[0] for line in final.splitlines()
                if line.startswith("  %"))), final
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
def test_cuda_bf16_resnet_blocks_run_channels_last_and_match_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          _Bottleneck(16), _Bottleneck(16)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    model = model.to("cuda", torch.bfloat16)
    x = torch.randn(4, 3, 32, 32, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        got = torch.compile(model, backend="ember")(x)
        torch.testing.assert_close(got, model(x), atol=5e-2, rtol=5e-2)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_left_alone_when_a_reshape_reads_the_result(on_cpu):
    # ViT's patch embedding flattens its convolution's output: channels-last would make that
    # reshape a copy, so the convolution keeps NCHW (and the image is not copied).
    run_golden("conv_layout", f"""
        func @f(%x: bf16[2,3,8,8], %w: bf16[4,3,3,3]) -> (bf16[2,4,64]) {{
          %0: bf16[2,4,8,8] = extern[{ARGS}, {CONV}] %x, %w
          %1: bf16[2,4,64] = reshape[shape=(2, 4, 64)] %0
          return %1
        }}
        """, None)
