"""The matmul template's persistent TMA variant: a 2-d bf16/f16 product for Hopper GPUs.

Why a second kernel. On the H100 the tiled template (matmul_template.py: one program per output
tile, operand tiles loaded through pointer arithmetic) reached 81-90% of cuBLAS at 4096^3-8192^3.
A probe of the same tile loop as a *persistent* kernel (one program per SM walking its tiles, so
the next tile's loads overlap the last one's epilogue) that loads operand tiles with TMA
descriptors (`tl.make_tensor_descriptor`: the copy engine moves whole tiles into shared memory,
no address arithmetic in registers) and a TMA store reached 719 TFLOP/s at 8192^3 against
cuBLAS's 686 in the same run; in ember (pointer stores, below) it reached 92% of cuBLAS at 8192^3
and 102% at 4096^3 (docs/benchmarks.md). Both variants race in the autotuner (their configs
share one search space), so where TMA does not pay the tiled kernel wins.

What it needs, and what happens when that does not hold:
  * A descriptor's last dim must have stride 1 (a literal in the source), the other stride a
    multiple of 16 bytes and the start 16-byte aligned. So the kernel is written for one layout
    per operand: `layouts[i]` is the dim of operand i's source (the tensor the kernel reads: the
    matmul's operand, or its prologue's input) that is contiguous. A Linear's weight, read
    transposed, has dim 0 contiguous: its tile is loaded as [BLOCK_N, BLOCK_K] and transposed in
    registers (free: tl.dot reads shared memory either way).
  * The wrapper guards each launch (`runtime.tma_ready` on the operands) and launches the tiled
    kernel at its heuristic config when an operand's layout or alignment differs from the one the
    kernel was built for (the emitter's `launch_template`): slower, never wrong.
  * Out-of-bounds rows, columns and K steps read as zeros (TMA padding), so no loads are masked;
    a prologue whose f(0) is not 0 is re-masked on a partial K step, as in the tiled kernel.
  * The epilogue and the stores are the tiled kernel's (emit_epilogue; masked stores straight from
    registers). A TMA store stages the tile in shared memory: 64 KiB more at 128x256, which
    with any epilogue operand overflowed the H100's 227 KiB at 3 stages, and on 2048x1024x2048
    it was no faster than these stores (409 vs 420 TFLOP/s, bare product, same config).
  * Descriptors built on the device take Triton's scratch memory: launcher.py gives Triton an
    allocator (torch's caching allocator) when none is set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import sympy

from ..ir import Op, Value
from ..ir.types import TensorType
from .kernel_writer import Coord, Kernel, KernelWriter
from .matmul_template import (TMA_CONSTEXPRS, MatmulConfig, MatmulParts, THIN, _fits, _prologue,
                              emit_epilogue, heuristic_config)
from .triton_types import compute_dtype

TMA_PRODUCT_DTYPES = ("bf16", "f16")
TMA_SOURCE_DTYPES = ("f32", "bf16", "f16")   # what a descriptor may load (a prologue may cast f32)
INTERPRETER_SMS = 3  # programs on the CPU interpreter: fewer than tiles, so a program walks several


def _cfg(m: int, n: int, k: int, warps: int, stages: int) -> MatmulConfig:
    return MatmulConfig(m, n, k, warps, stages, TMA=True)


# The two tiles that won races on the H100: 128x256x64/8 warps/3 stages (the probe's best at 8192^3;
# mm_4096, mm_8192, linear+bias+gelu) and 128x128x64/8/4 (BERT's and ConvNeXt's MLP, ViT). 256x128
# and 128x128 with 4 warps won none in the model suite; each TMA config costs every large race of
# a cold compile one more compile (GPT-2 went from 69 candidates to 89 with four of them).
SEARCH_TMA = [_cfg(128, 256, 64, 8, 3), _cfg(128, 128, 64, 8, 4)]
# The 128x256 tile only for reductions at least this deep, or under a GELU epilogue. Its compile
# is the longest of any candidate (~4 s on the H100 host, the end of a cold compile's last batch),
# and in the model suite's 39 matmul races with TMA configs, every candidate timed (at 35b85cc, K
# 768 to 65536), it beat the library once, at K=2048 (Llama's LM head, by 1%). It is the
# template's best at 4096^3 and 8192^3 (mm_4096, mm_8192). Under a GELU the library is two
# kernels (the product, then a GELU pass), and at BERT's MLP shape (8192x768 @ 768x3072, H100,
# scratch probe) the 128x256 tile ran the product with gelu[accuracy="bf16"] in 84 us against
# 89 us at 128x128 (eager: 103).
DEEP_K = 4096


def tma_search_space(m: sympy.Expr, n: sympy.Expr, k: sympy.Expr, interpret: bool,
                     gelu_epilogue: bool = False) -> list[MatmulConfig]:
    """TMA configs worth timing: on a GPU, for products whose sides are both concrete and at least
    THIN (thin ones are launch-bound: a persistent kernel gains nothing there), the 128x256 tile
    only where K is at least DEEP_K or the epilogue computes a GELU; on the interpreter,
    where nothing is timed, the heuristic's tile and a small one as TMA configs, so that a test
    can ask for the kernel by name (a small tile: several tiles per program)."""
    if interpret:
        return [dataclasses.replace(heuristic_config("bf16", m, n, k), TMA=True), _cfg(16, 16, 32, 2, 3)]
    sizes = [sympy.sympify(x) for x in (m, n, k)]
    if not all(x.is_Integer for x in sizes) or min(int(sizes[0]), int(sizes[1])) < THIN:
        return []
    return [c for c in SEARCH_TMA if _fits(c.BLOCK_M, m) and _fits(c.BLOCK_N, n) and _fits(c.BLOCK_K, k)
            and (c.BLOCK_M * c.BLOCK_N <= 128 * 128 or int(sizes[2]) >= DEEP_K or gelu_epilogue)]


@dataclass
class TmaKernel:
    kernel: Kernel                       # config None; launched with a TMA MatmulConfig
    operands: list[tuple[Value, int]]    # each operand source and its contiguous dim (for the guard)


def tma_sources(parts: MatmulParts) -> list[Value]:
    """What the kernel loads for A and B: each operand's prologue input, else the operand."""
    return [parts.prologues[i].inputs[0] if i in parts.prologues else v
            for i, v in enumerate(parts.matmul.inputs)]


def tma_matmul_kernel(ops: Sequence[Op], outputs: Sequence[Value], parts: MatmulParts,
                      layouts: tuple[int, int], *, interpret: bool) -> TmaKernel | None:
    """The persistent TMA kernel for a matmul region split into `parts`, reading operand i's
    source with dim `layouts[i]` contiguous; None where TMA cannot load it (a batched product,
    an f32 product, a source of another dtype, a source computed inside the region)."""
    mm = parts.matmul
    dtype = mm.result.type.dtype
    sources = tma_sources(parts)
    if mm.result.type.rank != 2 or dtype not in TMA_PRODUCT_DTYPES or \
            any(s.type.dtype not in TMA_SOURCE_DTYPES or s.type.rank != 2 for s in sources) or \
            any(s.producer is not None and s.producer in ops for s in sources):
        return None
    m_size, n_size = mm.result.type.shape
    k_size = mm.inputs[0].type.shape[-1]
    w = KernelWriter("matmul", "matmul template, persistent TMA: " + ", ".join(op.name for op in ops),
                     axes=("m", "n"), block_names={"m": "BLOCK_M", "n": "BLOCK_N"}, sizes_as_args=True)
    M, N, K = w.size(m_size, "M"), w.size(n_size, "N"), w.size(k_size, "K")

    # ---- descriptors: operands (in the layout the kernel is built for), outputs where aligned
    descs = []
    for i, (src, contig) in enumerate(zip(sources, layouts)):
        ptr = w.tensor(src, "in")
        rows, cols = (M, K) if i == 0 else (K, N)
        blocks = ("BLOCK_M", "BLOCK_K") if i == 0 else ("BLOCK_K", "BLOCK_N")
        if contig == 0:  # stored transposed: describe the transpose, whose last dim is contiguous
            rows, cols, blocks = cols, rows, blocks[::-1]
        stride = w.stride(src, 1 - contig)
        descs.append(w.assign("a_desc" if i == 0 else "b_desc",
                              f"tl.make_tensor_descriptor({ptr}, shape=[{rows}, {cols}], strides=[{stride}, 1], "
                              f"block_shape=[{blocks[0]}, {blocks[1]}])"))
    w.line(f"tiles_m = ({M} + BLOCK_M - 1) // BLOCK_M")
    w.line(f"tiles_n = ({N} + BLOCK_N - 1) // BLOCK_N")
    if parts.prologues:
        w.line("rk = tl.arange(0, BLOCK_K)  # a partial K step's mask, for the prologues")

    # ---- each program walks tiles NUM_SMS apart, in the tiled kernel's GROUP_M order
    w.line("# flatten: the next tile's first loads are issued during this tile's epilogue")
    w.line("for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, NUM_SMS, flatten=True):")
    with w.indented():
        w.line("group_size = GROUP_M * tiles_n")
        w.line("first_m = (tile // group_size) * GROUP_M")
        w.line("group_m = tl.minimum(tiles_m - first_m, GROUP_M)")
        w.line("off_m = (first_m + (tile % group_size) % group_m) * BLOCK_M")
        w.line("off_n = ((tile % group_size) // group_m) * BLOCK_N")
        w.line("acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)")
        w.line(f"for k in range(0, {K}, BLOCK_K):")
        with w.indented():
            upcast = interpret  # the interpreter multiplies 16-bit tiles wrongly (matmul_template.py)
            if parts.prologues:
                w.line("if EVEN_K:")
                with w.indented():
                    _tma_step(w, parts, descs, layouts, None, upcast)
                w.line("else:")
                with w.indented():
                    w.line(f"k_left = rk < {K} - k  # a partial K step: re-zero what a prologue made of the padding")
                    _tma_step(w, parts, descs, layouts, ("k_left[None, :]", "k_left[:, None]"), upcast)
            else:
                _tma_step(w, parts, descs, layouts, None, upcast)
        w.line("rm = off_m + tl.arange(0, BLOCK_M)")
        w.line("rn = off_n + tl.arange(0, BLOCK_N)")
        w.line("if INDEX_64:  # some tensor spans 2**31 elements or more: epilogue index math in int64")
        w.line("    rm = rm.to(tl.int64)")
        w.line("    rn = rn.to(tl.int64)")
        w.line("rm2 = rm[:, None]")
        w.line("rn2 = rn[None, :]")
        w.line(f"mask = (rm2 < {M}) & (rn2 < {N})")
        w.axis_masks = {"m": f"(rm2 < {M})", "n": f"(rn2 < {N})"}
        coords = {0: Coord("rm2", "m"), 1: Coord("rn2", "n")}
        env = emit_epilogue(w, ops, parts, coords, outputs)
        for v in outputs:
            w.store(v, f"rm2 * {N} + rn2", env[v], compute_dtype(v.type.dtype), "mask")
    numel = TensorType("f32", mm.result.type.shape).numel
    kernel = w.finish(None, numel, TMA_CONSTEXPRS)
    return TmaKernel(kernel, list(zip(sources, layouts)))


def _tma_step(w: KernelWriter, parts: MatmulParts, descs: list[str], layouts: tuple[int, int],
              masks: tuple[str, str] | None, upcast: bool) -> None:
    """One K step: both tiles through their descriptors (transposed back when the source is),
    their prologues, and their product into acc."""
    tiles = []
    for i, desc in enumerate(descs):
        prefix = "a" if i == 0 else "b"
        at = ["off_m", "k"] if i == 0 else ["k", "off_n"]
        if layouts[i] == 0:
            tile = w.assign(prefix, f"{desc}.load([{at[1]}, {at[0]}]).T")
        else:
            tile = w.assign(prefix, f"{desc}.load([{at[0]}, {at[1]}])")
        p = parts.prologues.get(i)
        if p is not None:
            tile = _prologue(w, p, tile, masks[i] if masks else None, prefix)
        if upcast:
            tile = w.assign(prefix, f"{tile}.to(tl.float32)", "the interpreter multiplies 16-bit tiles wrongly")
        tiles.append(tile)
    precision = ", input_precision=\"ieee\"" if upcast else ""
    w.line(f"acc = tl.dot({tiles[0]}, {tiles[1]}, acc{precision})")
