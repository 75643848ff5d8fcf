"""`make demo`: compile a small built-in transformer with ember, check it against eager, show the IR
before and after the passes and the generated kernels, and time eager vs ember.

On a machine without a GPU the kernels run through Triton's CPU interpreter; the demo says so and
does not pretend its timings mean anything.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / (c // self.heads) ** 0.5)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """A GPT-style decoder: embeddings, causal attention blocks, a final norm and an LM head."""

    def __init__(self, vocab: int = 128, dim: int = 32, heads: int = 2, layers: int = 2, ctx: int = 64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(ctx, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def _section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * (70 - len(title))}")


def _time(fn, arg, reps: int) -> float:
    if ON_GPU:
        from triton.testing import do_bench
        return do_bench(lambda: fn(arg), return_mode="median")
    fn(arg)
    start = time.perf_counter()
    for _ in range(reps):
        fn(arg)
    return (time.perf_counter() - start) / reps * 1e3


def main() -> int:
    device = "cuda" if ON_GPU else "cpu"
    torch.manual_seed(0)
    if ON_GPU:
        model, batch, seq = TinyTransformer(vocab=8192, dim=512, heads=8, layers=4, ctx=512), 8, 512
    else:
        model, batch, seq = TinyTransformer(), 2, 16
    model = model.to(device).eval()
    idx = torch.randint(0, model.tok.num_embeddings, (batch, seq), device=device)

    dump = Path(os.environ.get("EMBER_DUMP_DIR") or tempfile.mkdtemp(prefix="ember-demo-"))
    os.environ["EMBER_DUMP_DIR"] = str(dump)
    print(f"ember demo: {sum(p.numel() for p in model.parameters()):,}-parameter transformer, "
          f"input {batch}x{seq}, device {device}" + ("" if ON_GPU else " (Triton CPU interpreter)"))
    print(f"dump folder: {dump}")

    compiled = torch.compile(model, backend="ember")
    with torch.no_grad():
        t0 = time.perf_counter()
        got = compiled(idx)
        compile_s = time.perf_counter() - t0
        want = model(idx)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    print(f"compiled in {compile_s:.1f}s; output matches eager "
          f"(max abs error {(got - want).abs().max().item():.2e})")

    graph_dir = sorted(p for p in dump.iterdir() if p.is_dir())[0]
    irs = sorted(graph_dir.glob("*.ir"))
    _section(f"IR before the passes ({irs[0].name})")
    print(irs[0].read_text())
    _section(f"IR after the passes ({irs[-1].name})")
    print(irs[-1].read_text())
    # Kernels are named k<N>_<op>; order them by N, the launch order.
    kernels = sorted((graph_dir / "kernels").glob("*.py"),
                     key=lambda p: int(p.stem[1:].split("_")[0]) if p.stem[1:].split("_")[0].isdigit() else 1 << 30)
    _section(f"{len(kernels)} Triton kernels; the first three")
    for k in kernels[:3]:
        print(f"# {k.name}\n{k.read_text()}")
    _section("wrapper")
    print((graph_dir / "wrapper.py").read_text())
    _section("report.json")
    print((graph_dir / "report.json").read_text())

    _section("timing")
    with torch.no_grad():
        eager_ms = _time(model, idx, reps=3)
        ember_ms = _time(compiled, idx, reps=3)
    if ON_GPU:
        print(f"eager {eager_ms:.3f} ms   ember {ember_ms:.3f} ms   speedup {eager_ms / ember_ms:.2f}x "
              f"(triton.testing.do_bench median, {torch.cuda.get_device_name()})")
    else:
        print(f"eager {eager_ms:.1f} ms   ember {ember_ms:.1f} ms per call -- no GPU here: ember's kernels "
              f"ran through Triton's CPU interpreter, so this is not a speed comparison.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
