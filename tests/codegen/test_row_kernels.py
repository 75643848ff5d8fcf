"""Row kernels (codegen/row_kernel.py): a fused region with reductions is one kernel, persistent or
looped, and computes what eager torch computes. Graphs go through the real fuse pass, so these
also check that the pass builds regions the row kernel can run."""
import pytest
import torch
import torch.nn.functional as F

from ember.codegen import launch_heuristics
from ember.passes import run_pipeline

from codegen_check import check_graph, parse_on, random_tensor


@pytest.fixture(params=["persistent", "looped"])
def strategy(request, monkeypatch):
    if request.param == "looped":
        # Loop in chunks of 4 over reduced extents of a few dozen: several iterations, a ragged
        # last chunk.
        monkeypatch.setattr(launch_heuristics, "PERSISTENT_REDUCTION_MAX", 4)
        monkeypatch.setattr(launch_heuristics, "LOOPED_RBLOCK", 4)
    return request.param


def _fused(device, text, regions=1):
    g = parse_on(device, text)
    run_pipeline(g, "fuse")
    assert sum(op.name == "fused" for op in g.ops) == regions, g
    return g


def _one_kernel(compiled, strategy):
    assert compiled.num_kernels == 1, compiled.kernels
    (src,) = compiled.kernels.values()
    assert ("for roffset" in src) == (strategy == "looped"), src


SOFTMAX = """\
func @f[s0](%x: bf16[s0,37]) -> (bf16[s0,37]) [device="cpu"] {
  %0: f32[s0,37] = cast[dtype="f32"] %x
  %1: f32[s0,1] = reduce_max[axes=(1,), keepdim=True] %0
  %2: f32[s0,37] = sub %0, %1
  %3: f32[s0,37] = exp %2
  %4: f32[s0,1] = reduce_sum[axes=(1,), keepdim=True] %3
  %5: f32[s0,37] = div %3, %4
  %6: bf16[s0,37] = cast[dtype="bf16"] %5
  return %6
}
"""


def test_softmax(device, strategy):
    g = _fused(device, SOFTMAX)
    x = random_tensor((5, 37), torch.bfloat16) * 4
    compiled = check_graph(g, [x], lambda x: torch.softmax(x.float(), -1).to(torch.bfloat16), atol=1e-2, rtol=1e-2)
    _one_kernel(compiled, strategy)


LAYER_NORM = """\
func @f(%x: f32[6,24], %w: f32[24], %b: f32[24]) -> (f32[6,24], f32[6,1], f32[6]) [device="cpu"] {
  %0: f32[6,1] = reduce_sum[axes=(1,), keepdim=True] %x
  %1: f32[] = full[value=24.0]
  %2: f32[6,1] = div %0, %1
  %3: f32[6,24] = sub %x, %2
  %4: f32[6,24] = mul %3, %3
  %5: f32[6,1] = reduce_sum[axes=(1,), keepdim=True] %4
  %6: f32[6,1] = div %5, %1
  %7: f32[] = full[value=1e-05]
  %8: f32[6,1] = add %6, %7
  %9: f32[6,1] = rsqrt %8
  %10: f32[6,24] = mul %3, %9
  %11: f32[6,24] = mul %10, %w
  %12: f32[6,24] = add %11, %b
  %13: f32[6] = reduce_sum[axes=(1,), keepdim=False] %4
  return %12, %9, %13
}
"""


def test_layer_norm_with_row_outputs(device, strategy):
    g = _fused(device, LAYER_NORM)
    x, w, b = (random_tensor(s, torch.float32) for s in ((6, 24), (24,), (24,)))

    def eager(x, w, b):
        mean = x.mean(1, keepdim=True)
        var = ((x - mean) ** 2).mean(1, keepdim=True)
        return F.layer_norm(x, (24,), w, b), torch.rsqrt(var + 1e-5), ((x - mean) ** 2).sum(1)

    _one_kernel(check_graph(g, [x, w, b], eager, atol=1e-5, rtol=1e-5), strategy)


RMS_NORM = """\
func @f[s0](%x: bf16[s0,40], %w: bf16[40]) -> (bf16[s0,40]) [device="cpu"] {
  %0: f32[s0,40] = cast[dtype="f32"] %x
  %1: f32[s0,40] = mul %0, %0
  %2: f32[s0,1] = reduce_sum[axes=(1,), keepdim=True] %1
  %3: f32[] = full[value=40.0]
  %4: f32[s0,1] = div %2, %3
  %5: f32[] = full[value=1e-06]
  %6: f32[s0,1] = add %4, %5
  %7: f32[s0,1] = rsqrt %6
  %8: f32[s0,40] = mul %0, %7
  %9: f32[40] = cast[dtype="f32"] %w
  %10: f32[s0,40] = mul %8, %9
  %11: bf16[s0,40] = cast[dtype="bf16"] %10
  return %11
}
"""


def test_rms_norm_with_symbolic_rows(device, strategy):
    g = _fused(device, RMS_NORM)
    for rows in (3, 9):
        x, w = random_tensor((rows, 40), torch.bfloat16), random_tensor((40,), torch.bfloat16)

        def eager(x, w):
            xf = x.float()
            return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()).to(torch.bfloat16)

        _one_kernel(check_graph(g, [x, w], eager, atol=2e-2, rtol=2e-2), strategy)


MIDDLE_AXES = """\
func @f(%x: f32[3,5,4,6]) -> (f32[3,5,4,6], i64[3,1,4,6]) [device="cpu"] {
  %0: f32[3,1,1,6] = reduce_max[axes=(1, 2), keepdim=True] %x
  %1: f32[3,5,4,6] = sub %x, %0
  %2: f32[3,5,4,6] = exp %1
  %3: f32[3,1,1,6] = reduce_sum[axes=(1, 2), keepdim=True] %2
  %4: f32[3,5,4,6] = div %2, %3
  %5: f32[3,5,4,6] = neg %x
  %6: i64[3,1,4,6] = argmax[axes=(1,), keepdim=True] %5
  return %4, %6
}
"""


def test_reduction_over_middle_axes_and_unfusible_argmax(device, strategy):
    # A softmax over dims (1, 2) of a 4-d tensor: rows are (dim 0, dim 3), not contiguous. The
    # argmax reduces another axis set: it and its neg prologue are a second region.
    g = _fused(device, MIDDLE_AXES, regions=2)
    x = random_tensor((3, 5, 4, 6), torch.float32)

    def eager(x):
        return torch.softmax(x.flatten(1, 2), 1).view(3, 5, 4, 6), (-x).argmax(1, keepdim=True)

    compiled = check_graph(g, [x], eager, atol=1e-5, rtol=1e-5)
    assert compiled.num_kernels == 2


ARG_AND_INDEX = """\
func @f(%x: f32[5,30], %y: i8[5,30]) -> (i64[5], f32[5,30], i8[5]) [device="cpu"] {
  %0: i64[5] = argmin[axes=(1,), keepdim=False] %x
  %1: f32[5,30] = iota[dim=1]
  %2: f32[5,30] = mul %x, %1
  %3: f32[5,1] = reduce_min[axes=(1,), keepdim=True] %2
  %4: f32[5,30] = sub %2, %3
  %5: i8[5] = reduce_sum[axes=(1,), keepdim=False] %y
  return %0, %4, %5
}
"""


def test_argmin_iota_and_integer_sum_that_wraps(device, strategy):
    g = _fused(device, ARG_AND_INDEX)
    x = random_tensor((5, 30), torch.float32)
    y = random_tensor((5, 30), torch.int8, low=-100, high=100)

    def eager(x, y):
        z = x * torch.arange(30, dtype=torch.float32, device=x.device)
        return x.argmin(1), z - z.amin(1, keepdim=True), y.sum(1, dtype=torch.int8)

    compiled = check_graph(g, [x, y], eager)
    # The i8 sum reads nothing the rest reads: no bytes saved by merging it, so its own kernel.
    assert compiled.num_kernels == 2


def test_strided_input_rows(device, strategy):
    g = _fused(device, LAYER_NORM)
    x = random_tensor((24, 6), torch.float32).t()  # columns are rows: stride (1, 6)
    w, b = random_tensor((24,), torch.float32), random_tensor((24,), torch.float32)
    check_graph(g, [x, w, b], atol=1e-5, rtol=1e-5)


LOG_SOFTMAX = """\
func @f(%x: f32[5,37]) -> (f32[5,37], f32[5,37]) [device="cpu"] {
  %0: f32[5,1] = reduce_max[axes=(1,), keepdim=True] %x
  %1: f32[5,37] = sub %x, %0
  %2: f32[5,37] = exp %1
  %3: f32[5,1] = reduce_sum[axes=(1,), keepdim=True] %2
  %4: f32[5,1] = log %3
  %5: f32[5,37] = sub %1, %4
  %6: f32[5,37] = div %2, %3
  return %5, %6
}
"""


def test_online_softmax_reads_x_twice_when_looped(device, strategy):
    # Looped: the max and the rescaled sum share the first loop; the second stores both outputs.
    # Rows hold -inf entries, a row of only -inf (NaN in torch, and here) and a row with a NaN.
    g = _fused(device, LOG_SOFTMAX)
    x = random_tensor((5, 37), torch.float32) * 30
    x[0, ::3] = float("-inf")
    x[1] = float("-inf")
    x[2, 5] = float("nan")
    compiled = check_graph(g, [x], lambda x: (torch.log_softmax(x, -1), torch.softmax(x, -1)))
    _one_kernel(compiled, strategy)
    (src,) = compiled.kernels.values()
    assert src.count("for roffset") == (2 if strategy == "looped" else 0), src


def test_low_precision_softmax_math_stays_staged(device, strategy):
    # A bf16 exp rounds each term: the online rescaling could not reproduce that, so three loops.
    g = _fused(device, LOG_SOFTMAX.replace("f32", "bf16"))
    x = random_tensor((5, 37), torch.bfloat16) * 4
    def want(x):
        m = x.amax(-1, keepdim=True)
        e = (x - m).exp()
        s = e.sum(-1, keepdim=True)
        return (x - m) - s.log(), e / s
    compiled = check_graph(g, [x], want, atol=2e-2, rtol=2e-2)
    (src,) = compiled.kernels.values()
    assert src.count("for roffset") == (3 if strategy == "looped" else 0), src


def test_welford_layer_norm_reads_x_twice_when_looped(device, strategy):
    # The mean's sum and the variance's sum of squared deviations share the first loop; rows of
    # different offsets and scales, a NaN row, and row outputs (the rstd and a sum of squares)
    # stored. Expected values in f64.
    g = _fused(device, LAYER_NORM)
    x = random_tensor((6, 24), torch.float32)
    x[0] = x[0] * 0.1 + 100
    x[1] = x[1] * 1e3
    x[4, 7] = float("nan")
    w, b = random_tensor((24,), torch.float32), random_tensor((24,), torch.float32)
    def want(x, w, b):
        x, w, b = x.double(), w.double(), b.double()
        m = x.mean(-1, keepdim=True)
        d2 = (x - m) * (x - m)
        rstd = torch.rsqrt(d2.mean(-1, keepdim=True) + 1e-5)
        return [t.float() for t in ((x - m) * rstd * w + b, rstd, d2.sum(-1))]
    compiled = check_graph(g, [x, w, b], want, atol=1e-3, rtol=1e-3)
    (src,) = compiled.kernels.values()
    assert src.count("for roffset") == (2 if strategy == "looped" else 0), src
    assert ("welford_combine" in src) == (strategy == "looped")


LOSS_BACKWARD = """\
func @f(%g: f32[], %n: f32[], %t: i64[6,1], %keep: b1[6,1], %x: f32[6,37], %m: f32[6,1], %l: f32[6,1]) -> (f32[6,37]) [device="cpu"] {
  %0: f32[] = div %g, %n
  %1: i64[6,37] = iota[dim=1]
  %2: b1[6,37] = eq %1, %t
  %3: f32[] = full[value=-1.0]
  %4: f32[6,37] = full[value=0.0]
  %5: f32[6,37] = where %2, %3, %4
  %6: f32[] = full[value=0.0]
  %7: f32[6,1] = where %keep, %0, %6
  %8: f32[6,37] = mul %5, %7
  %9: f32[6,1] = reduce_sum[axes=(1,), keepdim=True] %8
  %10: f32[6,37] = sub %x, %m
  %11: f32[6,37] = sub %10, %l
  %12: f32[6,37] = exp %11
  %13: f32[6,37] = mul %12, %9
  %14: f32[6,37] = sub %8, %13
  return %14
}
"""


def test_a_scalar_feeds_row_and_full_ops_in_one_kernel(device, strategy):
    # Cross-entropy's backward: the scalar grad / count scales a per-row mask (a row op) and,
    # through it, the one-hot target (full ops). A scalar is one value for every row, so it is a
    # row value: the whole backward is one kernel, not two with the one-hot tensor in between.
    g = _fused(device, LOSS_BACKWARD)
    x = random_tensor((6, 37), torch.float32)
    m = x.amax(-1, keepdim=True)
    l = (x - m).exp().sum(-1, keepdim=True).log()
    t = torch.randint(0, 37, (6, 1))
    keep = torch.tensor([[True], [False], [True], [True], [False], [True]])
    grad, n = torch.tensor(1.5), torch.tensor(4.0)
    def want(grad, n, t, keep, x, m, l):
        onehot = torch.zeros(6, 37, device=x.device).scatter_(1, t, -1.0)  # want() runs on the test's device
        row = torch.where(keep, grad / n, torch.tensor(0.0, device=x.device))
        d = onehot * row
        return d - (x - m - l).exp() * d.sum(-1, keepdim=True)
    compiled = check_graph(g, [grad, n, t, keep, x, m, l], want, atol=1e-5, rtol=1e-5)
    _one_kernel(compiled, strategy)


BIAS_GRAD = """\
func @f(%g: bf16[40,24], %x: bf16[40,24]) -> (bf16[40,24], bf16[24]) [device="cpu"] {
  %0: f32[40,24] = cast[dtype="f32"] %g
  %1: f32[40,24] = cast[dtype="f32"] %x
  %2: f32[40,24] = mul %0, %1
  %3: bf16[40,24] = cast[dtype="bf16"] %2
  %4: f32[24] = reduce_sum[axes=(0,), keepdim=False] %2
  %5: bf16[24] = cast[dtype="bf16"] %4
  return %3, %5
}
"""


def test_a_column_sum_takes_neighbouring_columns_and_stores_its_gradient_in_one_loop(device, strategy):
    """A Linear's bias gradient beside the gradient it sums (reducing the rows keeps the innermost
    dim): a program takes several neighbouring columns (launch_heuristics.outer_reduction_config),
    and the gradient, which reads no reduction, is stored in the sum's own loop."""
    g = _fused(device, BIAS_GRAD)
    gr, x = random_tensor((40, 24), torch.bfloat16), random_tensor((40, 24), torch.bfloat16)

    def want(gr, x):
        prod = gr.float() * x.float()
        return prod.to(torch.bfloat16), prod.sum(0).to(torch.bfloat16)
    compiled = check_graph(g, [gr, x], want, atol=1e-2, rtol=1e-2)
    _one_kernel(compiled, strategy)
    (src,) = compiled.kernels.values()
    assert src.count("for roffset") == (1 if strategy == "looped" else 0), src
    assert "XBLOCK=8" in compiled.module_source, compiled.module_source


def test_outer_reductions_launch_wide_programs():
    outer = launch_heuristics.outer_reduction_config
    # GPT-2's MLP bias gradient on the H100: 3072 columns of 4096 rows, 192 programs of 16.
    assert outer(3072, 4096) == launch_heuristics.LaunchConfig(16, 256, False, 8)
    assert outer(65536, 4096).XBLOCK == 32 and outer(768, 4096).XBLOCK == 8
    assert outer(768, 64) == launch_heuristics.LaunchConfig(8, 64, True, 1)
    assert launch_heuristics.keeps_innermost((40, 24), (0,))
    assert not launch_heuristics.keeps_innermost((40, 24), (1,))
    assert not launch_heuristics.keeps_innermost((40, 1), (0,))
