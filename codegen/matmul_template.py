"""ember's Triton matmul template: `[B.., M, K] @ [B.., K, N]` with a fused prologue and epilogue.

One program computes one BLOCK_M x BLOCK_N tile of one batch's product. The grid is 1-d (the
wrapper's Launcher takes a program count): the program id is split into a batch index and a tile
index, and tiles are visited in groups of GROUP_M rows (each group walks its rows column by
column), so programs that run at the same time share the B tiles they read and those stay in L2.

The K loop loads an A tile [BLOCK_M, BLOCK_K] and a B tile [BLOCK_K, BLOCK_N] and accumulates
their product in f32 with `tl.dot`. Rows past M and columns past N are read from row `m % M`
(column `n % N`): in bounds without a mask, and never stored. Only the K tail is masked (zeros
contribute nothing). A *prologue* (one one-input pointwise op, typically the cast of an f32
activation to bf16) is applied to a tile right after its load. The *epilogue* (the pointwise ops
of the region that read the product: bias, activation, residual, scale, cast) runs on the
accumulator tile before the one store, loading its other operands by their strides, broadcast
into the [.., M, N] domain exactly as in a pointwise kernel (kernel_writer.py, pointwise.py).

Numerics. f32 accumulation always. bf16/f16 operands go to the tensor cores as they are; f32
operands use full f32 products (`input_precision="ieee"`), as eager does by default, unless
`torch.backends.cuda.matmul.allow_tf32` was True at compile time ("tf32"); the choice is written
in the source, so it is part of the kernel's hash. The product is rounded to its dtype before the
epilogue reads it, as when the product goes through memory, so a fused region computes what the
unfused ops compute. The Triton interpreter (CPU) multiplies 16-bit tiles wrongly, so there they
are upcast to f32 first (exact: a product of two 16-bit floats fits in f32).

The source holds no configuration (block sizes, warps and stages are launch-time constexprs and
options), so its hash is the autotuner's kernel key and every config of a search space shares it.
Nor does it hold the sizes (M, N, K, the batch dims are arguments: KernelWriter's sizes_as_args):
products of one shape family with the same epilogue (a ConvNeXt stage's MLP and the next stage's)
are one kernel, and a config one race compiled is already compiled for the next. Triton still
specializes each size on being 1 or a multiple of 16.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import sympy

from ..ir import Op, Value
from ..ir.types import TensorType, broadcasts_to, shapes_equal
from .kernel_writer import Coord, Kernel, KernelWriter, storage_cast
from .launch_heuristics import next_power_of_2
from .pointwise import broadcast_coords, emit_rounded, rounded
from .pointwise_ops import lower_pointwise
from .triton_types import compute_dtype, tl_dtype

if TYPE_CHECKING:
    from .matmul_tma import TmaKernel

TEMPLATE_DTYPES = ("f32", "bf16", "f16")
CONSTEXPRS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "EVEN_K")
TMA_CONSTEXPRS = CONSTEXPRS + ("NUM_SMS",)  # the persistent TMA kernel's (matmul_tma.py)
MIN_BLOCK = 16  # tl.dot's smallest tile side


@dataclass(frozen=True)
class MatmulConfig:
    BLOCK_M: int
    BLOCK_N: int
    BLOCK_K: int
    num_warps: int = 4
    num_stages: int = 3
    GROUP_M: int = 8
    TMA: bool = False     # the persistent TMA kernel (matmul_tma.py) instead of the tiled one
    EVEN_K: bool = False  # K a multiple of BLOCK_K: set by MatmulKernel.with_config, not searched
    NUM_SMS: int = 0      # TMA: programs launched (the GPU's SMs): set by with_config, not searched

    @property
    def name(self) -> str:
        return (f"mm_{self.BLOCK_M}x{self.BLOCK_N}x{self.BLOCK_K}_g{self.GROUP_M}"
                f"_w{self.num_warps}_s{self.num_stages}" + ("_tma" if self.TMA else ""))

    def blocks(self) -> dict[str, int]:
        """The kernel's constexprs, in signature order (CONSTEXPRS, TMA_CONSTEXPRS)."""
        blocks = {"BLOCK_M": self.BLOCK_M, "BLOCK_N": self.BLOCK_N, "BLOCK_K": self.BLOCK_K,
                  "GROUP_M": self.GROUP_M, "EVEN_K": self.EVEN_K}
        return blocks | ({"NUM_SMS": self.NUM_SMS} if self.TMA else {})

    def as_dict(self) -> dict[str, int]:
        """What the search space varies (stored in the tuning cache): EVEN_K and NUM_SMS follow
        from K and the device. TMA is stored only when set, so decisions cached before it existed
        read back as the tiled kernel they were."""
        d = {"BLOCK_M": self.BLOCK_M, "BLOCK_N": self.BLOCK_N, "BLOCK_K": self.BLOCK_K,
             "GROUP_M": self.GROUP_M, "num_warps": self.num_warps, "num_stages": self.num_stages}
        return d | ({"TMA": True} if self.TMA else {})

    @classmethod
    def from_dict(cls, d: dict) -> "MatmulConfig":
        return cls(d["BLOCK_M"], d["BLOCK_N"], d["BLOCK_K"], d["num_warps"], d["num_stages"], d["GROUP_M"],
                   bool(d.get("TMA", False)))


def _cfg(m: int, n: int, k: int, warps: int, stages: int) -> MatmulConfig:
    return MatmulConfig(m, n, k, warps, stages)


# H100 (228 KiB shared memory per SM, 4 warp schedulers): 16-bit tiles up to 128x256 with 64-deep
# K steps fit 3 stages; the smaller ones are for thin products (decode batches, small N).
# 128x128x64 and 128x128x32 with 4 warps and 64x256x64 were left out at ee23ef3: over the 37
# matmul races of the model suite on the H100 none came within 2% of the race's best (though
# each had won a race in the run before: where they won, the next best was close), and every
# candidate costs a compile and a timing in each cold compile (docs/benchmarks.md).
SEARCH_16BIT = [
    _cfg(128, 256, 64, 8, 3), _cfg(256, 128, 64, 8, 3), _cfg(128, 128, 64, 8, 4),
    _cfg(128, 64, 64, 4, 4), _cfg(64, 128, 64, 4, 4), _cfg(64, 64, 64, 4, 3),
    _cfg(64, 32, 64, 4, 4), _cfg(32, 64, 64, 4, 4), _cfg(32, 32, 64, 2, 4),
    _cfg(16, 64, 128, 4, 3), _cfg(16, 32, 128, 2, 4), _cfg(16, 16, 64, 2, 3),
]
# f32 tiles take twice the bytes per element: shallower K steps, fewer stages.
SEARCH_F32 = [
    _cfg(128, 128, 32, 8, 3), _cfg(128, 64, 32, 4, 4), _cfg(64, 128, 32, 4, 4),
    _cfg(64, 64, 32, 4, 4), _cfg(32, 64, 32, 4, 3), _cfg(32, 32, 32, 2, 3), _cfg(16, 32, 32, 2, 3),
]


THIN = 128  # a side shorter than this is thin (see _worth)


def _worth(c: MatmulConfig, m: sympy.Expr, n: sympy.Expr) -> bool:
    """Tiles narrower than 64 only where a side is thin (a decode batch, a small N: there the
    product has few 64-wide tiles, and thin ones keep the SMs busy). When both sides are long they
    never won a race on the H100 (fewer FLOPs per byte loaded), and each candidate costs a compile
    and a timing in every cold compile. Symbolic sizes keep them all (nothing is timed there)."""
    sizes = [sympy.sympify(m), sympy.sympify(n)]
    if not all(x.is_Integer for x in sizes) or min(int(x) for x in sizes) < THIN:
        return True
    return c.BLOCK_M >= 64 and c.BLOCK_N >= 64


def _fits(block: int, size: sympy.Expr) -> bool:
    """A block no larger than the size (rounded up to a power of two, at least MIN_BLOCK): a larger
    one computes only masked-off rows. A symbolic size takes any block."""
    size = sympy.sympify(size)
    return not size.is_Integer or block <= max(MIN_BLOCK, next_power_of_2(int(size)))


# A product of fewer FLOPs than this (all batches) runs in a few microseconds whatever its tile: a
# classifier head (64x1000x768-2048: ViT, ResNet-50, ConvNeXt), BERT's pooler (16x768x768).
TINY_FLOPS = 2**28
TINY_CONFIGS = 2


def search_space(dtype: str, m: sympy.Expr, n: sympy.Expr, k: sympy.Expr,
                 batch: sympy.Expr = 1) -> list[MatmulConfig]:
    """The configs worth timing for a product of these sizes (never empty). A tiny product
    (TINY_FLOPS) keeps only its TINY_CONFIGS smallest tiles: the most programs for its few
    tiles. In the model suite's tiny races (on the H100, at 8e20a83) the template won twice, with
    the smallest tile each time (BERT's pooler 16x16x64, one of Llama's f32 products 16x32x32),
    and the library won the rest; each head's race compiled eight tiled configs (~1 s each) in
    every cold compile, beside the batch whose end the compile waits for."""
    configs = SEARCH_F32 if dtype == "f32" else SEARCH_16BIT
    fit = [c for c in configs if _fits(c.BLOCK_M, m) and _fits(c.BLOCK_N, n) and _fits(c.BLOCK_K, k)
           and _worth(c, m, n)]
    if not fit:
        return [min(configs, key=lambda c: c.BLOCK_M * c.BLOCK_N * c.BLOCK_K)]
    flops = 2 * sympy.sympify(batch) * sympy.sympify(m) * sympy.sympify(n) * sympy.sympify(k)
    if flops.is_Integer and int(flops) < TINY_FLOPS:
        return sorted(fit, key=lambda c: (c.BLOCK_M * c.BLOCK_N, c.BLOCK_K))[:TINY_CONFIGS]
    return fit


def heuristic_config(dtype: str, m: sympy.Expr, n: sympy.Expr, k: sympy.Expr) -> MatmulConfig:
    """The untimed choice (CPU interpreter, autotune off, symbolic sizes): each block the size
    rounded up to a power of two, between 16 and 128 (K: 64, 32 for f32); 8 warps for a
    128x128 tile. Symbolic sizes count as large."""
    def side(size, cap):
        size = sympy.sympify(size)
        return cap if not size.is_Integer else max(MIN_BLOCK, min(cap, next_power_of_2(int(size))))
    bm, bn = side(m, 128), side(n, 128)
    bk = side(k, 32 if dtype == "f32" else 64)
    warps = 8 if bm * bn >= 128 * 128 else 4 if bm * bn >= 64 * 64 else 2
    return MatmulConfig(bm, bn, bk, warps, 3 if dtype == "f32" else 4)


# ----------------------------------------------------------------------------- the kernel


@dataclass
class MatmulParts:
    """A matmul region's body split into what the template does where."""
    matmul: Op
    prologues: dict[int, Op]    # operand index (0: A, 1: B) -> the one-input op computing it
    epilogue: list[Op]          # every other op, in body order (pointwise ops and constants)


def split_matmul_body(ops: Sequence[Op], outputs: Sequence[Value]) -> MatmulParts | None:
    """The parts of a body the template can compute, or None: exactly one matmul of a template
    dtype; prologues are one-input pointwise ops whose only reader is the matmul; the epilogue is
    pointwise ops and constants over the product's shape (inputs broadcasting into it); every
    output has the product's shape and is computed by the matmul or the epilogue."""
    mms = [op for op in ops if op.name == "matmul"]
    if len(mms) != 1 or mms[0].result.type.dtype not in TEMPLATE_DTYPES:
        return None
    mm = mms[0]
    shape = mm.result.type.shape
    readers: dict[Value, list[Op]] = {}
    for op in ops:
        for v in op.inputs:
            readers.setdefault(v, []).append(op)
    prologues: dict[int, Op] = {}
    for i, v in enumerate(mm.inputs):
        p = v.producer
        if p is not None and p in ops:
            if p.opdef.kind not in ("unary", "cast") or len(p.inputs) != 1 or \
                    any(r is not mm for r in readers.get(v, [])) or v in outputs:
                return None
            prologues[i] = p
    epilogue = [op for op in ops if op is not mm and op not in prologues.values()]
    before = ops.index(mm)
    for op in epilogue:
        if op.name != "full" and op.opdef.kind not in ("unary", "binary", "ternary", "cast"):
            return None
        if len(op.results) != 1 or not broadcasts_to(op.result.type.shape, shape):
            return None
        if ops.index(op) < before and op.name != "full":
            return None  # computed before the product: a separate kernel's job
        if any(not broadcasts_to(v.type.shape, shape) for v in op.inputs):
            return None
    produced = {mm.result} | {op.result for op in epilogue}
    if not outputs or any(v not in produced or not shapes_equal(v.type.shape, shape) for v in outputs):
        return None
    return MatmulParts(mm, prologues, epilogue)


@dataclass
class MatmulKernel:
    """The template's kernel for one matmul (or matmul region), before a config is chosen."""
    kernel: Kernel              # config None; source without any config
    dtype: str                  # the product's dtype (picks the search space)
    batch: sympy.Expr           # product of the batch dims (1 for a 2-d matmul)
    m: sympy.Expr
    n: sympy.Expr
    k: sympy.Expr
    tma: "TmaKernel | None" = None  # the persistent TMA variant (matmul_tma.py), where it can run
    num_sms: int = 0                # programs the TMA variant launches (set by the emitter)
    interpret: bool = False
    gelu_epilogue: bool = False     # the epilogue computes a GELU (matmul_tma.tma_search_space)

    @property
    def source(self) -> str:
        """The autotuner's kernel key: both kernels' sources, so a change to either re-tunes, and
        the problem's sizes. The sources hold no sizes, and the tuning key buckets shapes (for
        symbolic sizes); a race on concrete sizes answers for those sizes only."""
        sizes = f"# sizes: batch {self.batch}, M {self.m}, N {self.n}, K {self.k}\n"
        return self.kernel.source + (self.tma.kernel.source if self.tma is not None else "") + sizes

    def search_space(self) -> list[MatmulConfig]:
        """The tiled space, and the TMA kernel's where it applies. On a GPU, where the TMA kernel
        applies, the TMA configs alone: in the model suite's races with every candidate timed (at
        35b85cc), wherever TMA configs ran no tiled config beat the library, and the tiled
        kernel at the heuristic's tile ran 1.19-1.39x slower than the TMA kernel at that tile
        (8 of 8 products of ViT, BERT, Llama and the kernel suite, every config timed, at
        c1c54af). Each tiled config cost a compile per race family in every cold compile (ViT's
        MLP: 2.2 s, as long as the TMA probe). The tiled kernel at its heuristic config still
        runs, compiled at its first launch, where an operand is not laid out for TMA
        (MatmulEmitter.launch_template)."""
        configs = search_space(self.dtype, self.m, self.n, self.k, self.batch)
        if self.tma is not None and self.num_sms:
            from .matmul_tma import tma_search_space
            tma = tma_search_space(self.m, self.n, self.k, self.interpret, self.gelu_epilogue)
            if tma and not self.interpret:
                return tma
            configs += tma
        return configs

    def heuristic(self) -> MatmulConfig:
        return heuristic_config(self.dtype, self.m, self.n, self.k)

    def with_config(self, cfg: MatmulConfig) -> Kernel:
        k_size = sympy.sympify(self.k)
        cfg = dataclasses.replace(cfg, EVEN_K=bool(k_size.is_Integer and int(k_size) % cfg.BLOCK_K == 0))
        tiles = self.batch * sympy.ceiling(self.m / cfg.BLOCK_M) * sympy.ceiling(self.n / cfg.BLOCK_N)
        k = self.kernel
        if cfg.TMA:
            if self.tma is None or not self.num_sms:
                raise ValueError(f"{cfg.name}: this matmul has no TMA kernel (matmul_tma.tma_matmul_kernel refused it)")
            cfg = dataclasses.replace(cfg, NUM_SMS=self.num_sms)
            k = self.tma.kernel
            # Persistent: one program per SM (fewer when there are fewer tiles) walks its tiles.
            return Kernel(k.kind, k.source, k.params, cfg, k.grid_numel, k.tensors, sympy.Min(tiles, self.num_sms))
        return Kernel(k.kind, k.source, k.params, cfg, k.grid_numel, k.tensors, tiles)


def matmul_kernel(ops: Sequence[Op], outputs: Sequence[Value], *, interpret: bool,
                  allow_tf32: bool = False, num_sms: int = 0,
                  tma_layout: Callable[[Value], int | None] | None = None) -> MatmulKernel | None:
    """The template kernel computing `outputs` from `ops` (a bare matmul, or a matmul region's
    body), or None when split_matmul_body refuses them. With `num_sms` programs to launch and
    `tma_layout` (the contiguous dim of an operand's source as far as compile time tells, or
    None) it also builds the persistent TMA variant (matmul_tma.py) where that can run."""
    ops, outputs = list(ops), list(outputs)
    parts = split_matmul_body(ops, outputs)
    if parts is None:
        return None
    mm = parts.matmul
    out_t = mm.result.type
    dtype, rank = out_t.dtype, out_t.rank
    names = [op.name for op in ops]
    w = KernelWriter("matmul", "matmul template: " + ", ".join(names), axes=("m", "n"),
                     block_names={"m": "BLOCK_M", "n": "BLOCK_N"}, sizes_as_args=True)
    shape = out_t.shape
    m_size, n_size = shape[-2], shape[-1]
    k_size = mm.inputs[0].type.shape[-1]
    M, N, K = w.size(m_size, "M"), w.size(n_size, "N"), w.size(k_size, "K")
    batch_dims = list(enumerate(shape[:-2]))
    batch = sympy.Integer(1)
    for _, d in batch_dims:
        batch *= sympy.sympify(d)

    # ---- which program computes which tile
    w.line("pid = tl.program_id(0)")
    w.line("if INDEX_64:  # some tensor spans 2**31 elements or more: index math in int64")
    w.line("    pid = pid.to(tl.int64)")
    w.line(f"tiles_m = ({M} + BLOCK_M - 1) // BLOCK_M")
    w.line(f"tiles_n = ({N} + BLOCK_N - 1) // BLOCK_N")
    coords: dict[int, Coord] = {}
    if batch_dims:
        w.line("batch = pid // (tiles_m * tiles_n)  # the flat batch index, split into batch<d> below")
        w.line("tile = pid % (tiles_m * tiles_n)")
        coords.update(w.decompose("batch", batch_dims, "batch", "b", "bsize"))
    else:
        w.line("tile = pid")
    w.line("# GROUP_M row tiles are walked column by column: programs running together share B tiles in L2")
    w.line("group_size = GROUP_M * tiles_n")
    w.line("first_m = (tile // group_size) * GROUP_M")
    w.line("group_m = tl.minimum(tiles_m - first_m, GROUP_M)")
    w.line("pid_m = first_m + (tile % group_size) % group_m")
    w.line("pid_n = (tile % group_size) // group_m")
    w.line("rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)")
    w.line("rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)")
    w.line("rk = tl.arange(0, BLOCK_K)")
    w.line(f"rm_in = rm % {M}  # rows past M re-read real rows (never stored): no load mask")
    w.line(f"rn_in = rn % {N}")

    # ---- operand tiles: the matmul's operands, or a prologue's input
    sources = []
    for i, v in enumerate(mm.inputs):
        p = parts.prologues.get(i)
        sources.append(p.inputs[0] if p is not None else v)
    ptrs = []
    for i, src in enumerate(sources):
        ptr = w.tensor(src, "in")
        base, _ = w.offset(src, [coords.get(d) for d in range(rank - 2)] + [None, None])
        row_c, col_c = ("rm_in[:, None]", "rk[None, :]") if i == 0 else ("rk[:, None]", "rn_in[None, :]")
        row = f"{row_c} * {w.stride(src, rank - 2)}"
        col = f"{col_c} * {w.stride(src, rank - 1)}"
        addr = " + ".join(filter(None, [ptr, f"({base})" if base else "", row, col]))
        ptrs.append(w.assign("a_ptrs" if i == 0 else "b_ptrs", addr))
    precision = ", input_precision=\"tf32\"" if dtype == "f32" and allow_tf32 and not interpret else \
        ", input_precision=\"ieee\"" if dtype == "f32" or interpret else ""
    w.line("acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)")
    w.line(f"for k in range(0, {K}, BLOCK_K):")
    with w.indented():
        # EVEN_K (K a multiple of BLOCK_K, known at launch): no K mask. A masked load in the loop
        # cost the H100 ~8% at 8192^3 (the loads cannot be issued as whole tiles).
        w.line("if EVEN_K:")
        with w.indented():
            _k_step(w, parts, sources, ptrs, None, interpret and dtype != "f32", precision)
        w.line("else:")
        with w.indented():
            w.line(f"k_left = rk < {K} - k  # the last K step is partial: zeros add nothing")
            _k_step(w, parts, sources, ptrs, ("k_left[None, :]", "k_left[:, None]"),
                    interpret and dtype != "f32", precision)
        for i, src in enumerate(sources):
            stride = w.stride(src, rank - 1 if i == 0 else rank - 2)
            w.line(f"{ptrs[i]} += BLOCK_K * {stride}")

    # ---- epilogue over the tile, then the stores
    w.line("rm2 = rm[:, None]")
    w.line("rn2 = rn[None, :]")
    w.line(f"mask = (rm2 < {M}) & (rn2 < {N})")
    w.axis_masks = {"m": f"(rm2 < {M})", "n": f"(rn2 < {N})"}
    coords[rank - 2] = Coord("rm2", "m")
    coords[rank - 1] = Coord("rn2", "n")
    env = emit_epilogue(w, ops, parts, coords, outputs)
    index = f"rm2 * {N} + rn2"
    if batch_dims:
        index = f"batch * {w.size(sympy.sympify(m_size) * sympy.sympify(n_size), 'MN')} + " + index
    for v in outputs:
        w.store(v, index, env[v], compute_dtype(v.type.dtype), "mask")
    numel = TensorType("f32", shape).numel
    kernel = w.finish(None, numel, CONSTEXPRS)
    mk = MatmulKernel(kernel, dtype, batch, sympy.sympify(m_size), sympy.sympify(n_size),
                      sympy.sympify(k_size), interpret=interpret,
                      gelu_epilogue=any(op.name == "gelu" for op in parts.epilogue))
    if num_sms and tma_layout is not None:
        from .matmul_tma import tma_matmul_kernel, tma_sources  # they import this module's helpers
        layouts = tuple(tma_layout(s) for s in tma_sources(parts))
        if None not in layouts:
            mk.tma = tma_matmul_kernel(ops, outputs, parts, layouts, interpret=interpret)
            mk.num_sms = num_sms
    return mk


def bias_add(parts: MatmulParts, outputs: Sequence[Value]) -> Op | None:
    """The epilogue's `add` of the product and a bias (an operand that broadcasts), when it is the
    product's only reader, the product is no result, and the product is 16-bit: the frontend's addmm (frontend/
    decompositions.py) rounds the product to its dtype before adding the bias, where ATen's
    addmm (cuBLAS) adds the bias to the f32 accumulator and rounds once. The template then does
    as ATen does (emit_epilogue): one rounding, and two conversions fewer per element."""
    mm = parts.matmul
    readers = [op for op in parts.epilogue if mm.result in op.inputs]
    if mm.result.type.dtype not in ("bf16", "f16") or mm.result in outputs or len(readers) != 1:
        return None
    add = readers[0]
    if add.name != "add" or add.inputs.count(mm.result) != 1:
        return None
    # A bias broadcasts (Linear's [N]); a residual of the product's shape is an add of its own
    # in eager too, after the product was rounded: that one keeps the rounding.
    other = next(v for v in add.inputs if v is not mm.result)
    return None if shapes_equal(other.type.shape, mm.result.type.shape) else add


def emit_epilogue(w: KernelWriter, ops: Sequence[Op], parts: MatmulParts, coords: dict[int, Coord],
                  outputs: Sequence[Value]) -> dict[Value, str]:
    """The epilogue's lines over the accumulator tile `acc` (coordinates rm2/rn2, load mask
    `mask`); returns each value's temporary. The product is rounded to its dtype first, except
    where a bias add is its only reader (bias_add): that add reads the f32 accumulator."""
    mm = parts.matmul
    rank = mm.result.type.rank
    if bias_add(parts, outputs) is not None:
        env: dict[Value, str] = {mm.result: "acc"}
    else:
        env = {mm.result: w.assign("t", rounded("acc", mm.result.type.dtype), "the product, in its dtype")}
    for op in parts.epilogue:
        for v in op.inputs:
            if v not in env and (v.producer is None or v.producer not in ops):
                env[v] = w.load(v, broadcast_coords(v, coords, rank), "mask")
        env[op.results[0]] = w.assign("t", emit_rounded(w, op, env, coords), op.name)
    return env


def _k_step(w: KernelWriter, parts: MatmulParts, sources: list[Value], ptrs: list[str],
            masks: tuple[str, str] | None, upcast: bool, precision: str) -> None:
    """Load one K step's A and B tiles (masked when `masks` is given), apply their prologues and
    accumulate their product."""
    tiles = []
    for i, _ in enumerate(sources):
        mask = masks[i] if masks is not None else None
        prefix = "a" if i == 0 else "b"
        load = f"tl.load({ptrs[i]}, mask={mask}, other=0.0)" if mask else f"tl.load({ptrs[i]})"
        tile = w.assign(prefix, load)
        p = parts.prologues.get(i)
        if p is not None:
            tile = _prologue(w, p, tile, mask, prefix)
        if upcast:
            tile = w.assign(prefix, f"{tile}.to(tl.float32)", "the interpreter multiplies 16-bit tiles wrongly")
        tiles.append(tile)
    w.line(f"acc = tl.dot({tiles[0]}, {tiles[1]}, acc{precision})")


def _prologue(w: KernelWriter, op: Op, tile: str, mask: str | None, prefix: str) -> str:
    """`op` applied to a loaded tile of its input, as the matmul operand's dtype. Masked-off K
    positions are zeroed again after any op but a cast: f(0) need not be 0 (exp, reciprocal)."""
    src = op.inputs[0].type.dtype
    dst = op.result.type.dtype
    x = tile if compute_dtype(src) == src else f"{tile}.to({tl_dtype(compute_dtype(src))})"
    if op.name == "cast":
        expr = storage_cast(x, compute_dtype(src), dst) if src != "b1" else f"{x}.to({tl_dtype(dst)})"
        return w.assign(prefix, expr, "prologue: cast")
    value = lower_pointwise(op.name, [x], src, op.attrs)
    expr = storage_cast(value, compute_dtype(dst), dst)
    if mask is not None:
        expr = f"tl.where({mask}, {expr}, 0.0)"
    return w.assign(prefix, expr, f"prologue: {op.name}")


def template_ops(op: Op) -> tuple[list[Op], list[Value]] | None:
    """(ops, outputs) the template computes for a top-level `matmul` or matmul `fused` op."""
    if op.name == "matmul":
        return [op], [op.result]
    if op.name == "fused":
        body = op.attrs["body"]
        return list(body.ops), list(body.outputs)
    return None

