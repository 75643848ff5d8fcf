"""codegen/launcher.py: the key of a kept kernel must never merge launches Triton compiles apart, and a launch through the
kept compiled kernel must compute what the ordinary launch computes, including after a change of
alignment or of an argument equal to 1 (each gets its own compiled kernel)."""
import pytest
import torch
import triton
import triton.language as tl

from ember.codegen.launcher import Launcher, launch_key


def _triton_key(arg):
    """Triton's own specialization of one argument (the C function JITFunction.run calls)."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend
    return native_specialize_impl(BaseBackend, arg, False, True, True)


INTS = [0, 1, 2, 15, 16, 17, 32, 2**31 - 1, 2**31, 2**31 + 16, -1, -16, -2**31, -2**31 - 1]


def test_one_key_means_one_triton_specialization():
    # The key must never file two launches that Triton compiles differently under one entry:
    # ints go in by value (finer than Triton), tensors by 16-byte alignment (exactly Triton's).
    for a in INTS:
        for b in INTS:
            if launch_key(False, (a,)) == launch_key(False, (b,)):
                assert _triton_key(a) == _triton_key(b), (a, b)
    t = torch.empty(64)
    views = (t, t[1:], t[4:], t[5:])
    for x in views:
        for y in views:
            same_key = launch_key(False, (x,)) == launch_key(False, (y,))
            assert same_key == (_triton_key(x) == _triton_key(y)), (x.storage_offset(), y.storage_offset())
    assert launch_key(True, (t,)) != launch_key(False, (t,))  # INDEX_64 is a constexpr


@triton.jit
def _scale(x_ptr, out_ptr, n, stride, XBLOCK: tl.constexpr, INDEX_64: tl.constexpr):
    i = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)
    m = i < n
    tl.store(out_ptr + i, tl.load(x_ptr + i * stride, mask=m) * 3.0, mask=m)


def test_interpreted_kernels_take_the_ordinary_path():
    launch = Launcher(_scale, torch.device("cpu"), num_warps=4, XBLOCK=16)
    assert not launch.fast
    x = torch.randn(40)
    out = torch.empty(40)
    launch(triton.cdiv(40, 16), x, out, 40, 1, INDEX_64=False)
    torch.testing.assert_close(out, x * 3)


@pytest.mark.gpu
def test_kept_kernels_compute_what_ordinary_launches_do():
    launch = Launcher(_scale, torch.device("cuda"), num_warps=4, XBLOCK=128)
    assert launch.fast
    base = torch.randn(4097, device="cuda")
    cases = [(base[:4000], 1), (base[:4000], 1),          # second call: the kept kernel
             (base[1:4001], 1),                           # misaligned pointer: another kernel
             (base[:4000:1], 1), (base[:2000 * 2].view(2000, 2)[:, 0], 2),  # stride 2: not 1
             (base[:17], 1)]
    for x, stride in cases:
        out = torch.empty(x.numel(), device="cuda")
        launch(triton.cdiv(x.numel(), 128), x, out, x.numel(), stride, INDEX_64=False)
        torch.testing.assert_close(out, x * 3)
    # aligned/stride 1, misaligned/stride 1, aligned/stride 2, aligned/n=17: four kernels kept
    assert len(launch._compiled) == 4


def test_a_profiler_hook_sends_launches_the_ordinary_way():
    # triton installs empty hook chains by default; they must not disable the kept kernels,
    # while a hook someone added must see every launch.
    from ember.codegen import launcher
    chain = triton.knobs.runtime.launch_enter_hook
    assert not launcher._launch_hooks_installed()
    seen = []
    chain.add(seen.append)
    try:
        assert launcher._launch_hooks_installed()
    finally:
        chain.remove(seen.append)
    assert not launcher._launch_hooks_installed()


def test_tma_scratch_is_one_buffer_per_stream_kept_when_outgrown(monkeypatch):
    """Triton's scratch allocator (device-built TMA descriptors): each stream reuses one buffer,
    so a CUDA graph capture allocates nothing in its pool; a buffer outgrown stays alive, as a
    captured graph may still write to it. (CPU: the GPU and its allocation are stood in for.)"""
    from ember.codegen import launcher
    monkeypatch.setattr(launcher, "_scratch_buffers", {})
    monkeypatch.setattr(launcher, "_outgrown", [])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda n, dtype, device: empty(n, dtype=dtype))
    a = launcher.scratch_allocator(4096, 128, 7)
    assert a.numel() == launcher.SCRATCH_MIN_BYTES
    assert launcher.scratch_allocator(8192, 128, 7) is a          # the same stream: the same buffer
    other = launcher.scratch_allocator(4096, 128, 8)               # another stream: its own
    assert other is not a
    big = launcher.scratch_allocator(launcher.SCRATCH_MIN_BYTES * 2, 128, 7)
    assert big is not a and big.numel() == launcher.SCRATCH_MIN_BYTES * 2
    assert launcher._outgrown == [a]
    assert launcher.scratch_allocator(16, 128, 7) is big


def test_a_descriptor_kernel_launches_with_embers_scratch_allocator_only_then():
    """TorchInductor sets its own allocator (torch.empty per launch) at each of its launches, a
    user may set one: ember's TMA launches use its per-stream buffer all the same, and leave the
    other one in place."""
    from triton.runtime import _allocation

    from ember.codegen import launcher
    seen = []

    class Kernel:
        src = "tl.make_tensor_descriptor(...)"

        def __getitem__(self, grid):
            return lambda *args, **kwargs: seen.append(_allocation._allocator.get())

    def theirs(size, alignment, stream):
        raise AssertionError("not for ember's launches")

    launch = Launcher(Kernel(), torch.device("cpu"), num_warps=4, XBLOCK=16)
    launch.scratch = True  # as a compiled TMA kernel's launcher on a GPU
    token = _allocation._allocator.set(theirs)
    try:
        launch(1, torch.zeros(4))
        assert seen == [launcher.scratch_allocator]
        assert _allocation._allocator.get() is theirs
    finally:
        _allocation._allocator.reset(token)
