"""Layouts the wrapper knows when it is written (codegen/layouts.py): its own buffers and views of
them. A reshape of one is a plain `.view` or a copy every call, never a run-time test; inputs'
and externs' layouts are still asked at run time (test_data_movement_and_views.py)."""
import random

import pytest
import torch

from ember.codegen import layouts
from ember.codegen.matmul_emit import FixedChoice

from codegen_check import check_graph, parse_on, random_tensor


def _random_layout(rng: random.Random) -> torch.Tensor:
    shape = [rng.choice([1, 2, 3, 4, 6]) for _ in range(rng.randint(1, 4))]
    t = torch.empty(shape).permute(*rng.sample(range(len(shape)), len(shape)))
    d = rng.randrange(t.dim())
    if rng.random() < 0.4 and t.shape[d] > 1:
        t = t.narrow(d, 0, t.shape[d] - 1)
    if rng.random() < 0.3:
        t = t.unsqueeze(0).expand(2, *t.shape)
    return t


def _random_shape(numel: int, rng: random.Random) -> list[int]:
    out = []
    while numel > 1:
        f = rng.choice([p for p in range(2, numel + 1) if numel % p == 0])
        out.append(f)
        numel //= f
    if rng.random() < 0.3:
        out.insert(rng.randint(0, len(out)), 1)
    rng.shuffle(out)
    return out or [1]


def test_viewed_agrees_with_torch():
    # ATen's computeStride, transcribed: torch views exactly where `viewed` says so, and with
    # the same strides (size-1 dims aside, whose stride never matters).
    rng = random.Random(0)
    views = copies = 0
    for _ in range(2000):
        t = _random_layout(rng)
        new = _random_shape(t.numel(), rng)
        got = layouts.viewed(tuple(t.shape), tuple(t.stride()), new)
        try:
            want = t.view(new).stride()
        except RuntimeError:
            assert got == layouts.NO_VIEW, (t.shape, t.stride(), new)
            copies += 1
            continue
        assert got not in (layouts.NO_VIEW, layouts.UNKNOWN), (t.shape, t.stride(), new)
        assert all(a == b or n == 1 for a, b, n in zip(got, want, new)), (t.shape, t.stride(), new, got, want)
        views += 1
    assert views > 500 and copies > 500


def test_in_order_is_a_permuted_contiguous_buffer():
    t = torch.empty(2, 8, 3, 4).permute(0, 2, 1, 3)   # what the wrapper allocates for order (0, 2, 1, 3)
    assert layouts.in_order((2, 3, 8, 4), (0, 2, 1, 3)) == t.stride()


def test_heads_of_a_kernels_output_are_views_known_at_compile_time(device):
    # A QKV product split into heads: slices of a kernel's output, each reshaped to [B, S, H, D].
    # torch can view them, and the wrapper knows it: no run-time test, no copy kernel.
    g = parse_on(device, """
func @f(%x: f32[2,3,12]) -> (f32[2,2,3,2], f32[2,2,3,2]) [device="cpu"] {
  %0: f32[2,3,12] = exp %x
  %1: f32[2,3,4] = slice[dim=2, end=4, start=0, step=1] %0
  %2: f32[2,3,2,2] = reshape[shape=(2, 3, 2, 2)] %1
  %3: f32[2,2,3,2] = permute[dims=(0, 2, 1, 3)] %2
  %4: f32[2,3,4] = slice[dim=2, end=12, start=8, step=1] %0
  %5: f32[2,3,2,2] = reshape[shape=(2, 3, 2, 2)] %4
  %6: f32[2,2,3,2] = permute[dims=(0, 2, 1, 3)] %5
  %7: f32[2,2,3,2] = neg %6
  return %3, %7
}
""")
    heads = lambda t: t[..., :4].reshape(2, 3, 2, 2).permute(0, 2, 1, 3)  # noqa: E731
    compiled = check_graph(g, [random_tensor((2, 3, 12), torch.float32, device=device)],
                           lambda x: (heads(x.exp()), -x.exp()[..., 8:].reshape(2, 3, 2, 2).permute(0, 2, 1, 3)))
    assert "view_or_none" not in compiled.wrapper_source and "copy" not in compiled.wrapper_source
    assert compiled.num_kernels == 2


def test_a_reshape_torch_cannot_view_copies_every_call_and_counts(device):
    # A transposed kernel output flattened: no view is possible, known now; the copy is
    # unconditional and counted among the launches.
    g = parse_on(device, """
func @f(%x: f32[4,6]) -> (f32[24]) [device="cpu"] {
  %0: f32[4,6] = exp %x
  %1: f32[6,4] = permute[dims=(1, 0)] %0
  %2: f32[24] = reshape[shape=(24,)] %1
  %3: f32[24] = neg %2
  return %3
}
""")
    compiled = check_graph(g, [random_tensor((4, 6), torch.float32, device=device)],
                           lambda x: -x.exp().t().reshape(24))
    assert "view_or_none" not in compiled.wrapper_source and "_copy(" in compiled.wrapper_source
    assert compiled.num_kernels == 3


@pytest.mark.parametrize("impl", ["library", "template"])
def test_a_library_matmuls_result_is_viewed_without_a_test(impl):
    # torch.matmul (2-d) and torch.addmm (a matmul region whose epilogue is its bias) return
    # fresh contiguous tensors: their reshapes are views, known when the wrapper is written.
    g = parse_on("cpu", """
func @f(%x: f32[6,4], %w: f32[4,8], %b: f32[8]) -> (f32[2,3,2,4], f32[2,3,8]) [device="cpu"] {
  %0: f32[6,8] = matmul %x, %w
  %1: f32[2,3,2,4] = reshape[shape=(2, 3, 2, 4)] %0
  %2: f32[6,8] = fused[name="matmul0"] %x, %w, %b {
    ^(%in0: f32[6,4], %in1: f32[4,8], %in2: f32[8]):
    %0: f32[6,8] = matmul %in0, %in1
    %1: f32[6,8] = add %0, %in2
    yield %1
  }
  %3: f32[2,3,8] = reshape[shape=(2, 3, 8)] %2
  return %1, %3
}
""")
    ins = [random_tensor((6, 4), torch.float32), random_tensor((4, 8), torch.float32), random_tensor((8,), torch.float32)]
    compiled = check_graph(g, ins, lambda x, w, b: ((x @ w).reshape(2, 3, 2, 4), (x @ w + b).reshape(2, 3, 8)),
                           chooser=FixedChoice("cpu", impl), atol=1e-5, rtol=1e-5)
    assert "view_or_none" not in compiled.wrapper_source
    if impl == "library":
        assert "torch.mm(" in compiled.wrapper_source and "aten.addmm.out" in compiled.wrapper_source
        assert compiled.num_kernels == 0
