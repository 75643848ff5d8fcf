"""ember's flash-attention forward kernel: the Triton source, its search space, and a launcher.

One program computes BLOCK_M query rows of one (batch, query head) against all the keys it may
see, never holding the [M, N] score matrix: per key block it computes the scores S = Q K^T in
f32 (tl.dot), keeps a running row max m and row sum l of exp(S - m), rescales the f32 output
accumulator by exp(m_old - m_new) when the max grows (online softmax), and adds P V. At the end
out = acc / l in the input dtype, and optionally the row logsumexp (f32 [B, H, M], what a
backward pass needs).

Shapes and layouts: Q [B, Hq, M, D], K and V [B, Hkv, N, D], any strides (runtime arguments;
Triton specializes a stride of 1). GQA: query head h reads K/V head h // (Hq / Hkv) (torch's
enable_gqa, repeat_interleave). D is a literal of the source (1..256); BLOCK_D is D rounded up to
a power of two (at least 16, tl.dot's minimum), the padding masked on load and store.

Units: without an additive mask the scores are kept in base 2 (scale * log2(e) folded into one
multiply, then exp2). An additive mask (HF's padding masks hold the dtype's lowest value,
-3.4e38) would overflow to -inf once multiplied by log2(e), turning a fully masked row's uniform
weights into 0/0; with such masks the scores stay in natural units and only s - max is scaled.

Masks: `is_causal` is top-left aligned like torch's SDPA (`ones(M, N).tril()`: row i sees keys
j <= i, also when M != N). Key blocks right of the diagonal are never visited (the key loop of a
program ends at min(N, its last row + 1)); blocks left of it (and, without causal, every block
but a ragged last one) run without any element mask; only diagonal and ragged blocks compare
indices. An attention mask is bool (True: take part) or additive (any float dtype), of any shape
broadcastable to [B, Hq, M, N]: the launcher passes stride 0 for size-1 dims.

Fully masked rows (every key -inf or False): the kernel writes 0 and logsumexp -inf, as torch's
math SDPA (`_safe_softmax`) and its CPU kernels do. torch's CUDA kernels differ among themselves
there (cuDNN turns a bool mask into -65504, i.e. the mean of V), so codegen offers this kernel
on CUDA only where no row can be fully masked (attention_emit.py).

The source holds no block sizes (they are constexpr parameters), so its hash is the autotuner's
key for every config of one op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .kernel_writer import NAME_PLACEHOLDER
from .launch_heuristics import next_power_of_2
from .triton_types import convert

MAX_HEAD_DIM = 256
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# H100: 227 KiB of shared memory per block; leave room for the compiler's own scratch.
SHARED_MEMORY_LIMIT = 200 * 1024
# f32 registers per thread for the accumulator and the score tile, above which ptxas spills.
REGISTER_LIMIT = 128


@dataclass(frozen=True)
class AttentionSpec:
    """What the kernel source depends on (besides block sizes, which are launch parameters)."""
    head_dim: int                  # D, of q, k and v
    dtype: str                     # "bf16", "f16" or "f32" (q, k, v and the output)
    scale: float                   # applied to Q K^T
    causal: bool = False
    mask: str | None = None        # None, "bool" or "add"
    lse: bool = False              # also write the f32 row logsumexp

    @property
    def block_d(self) -> int:
        return max(16, next_power_of_2(self.head_dim))


@dataclass(frozen=True)
class AttentionConfig:
    BLOCK_M: int
    BLOCK_N: int
    num_warps: int
    num_stages: int

    @property
    def name(self) -> str:
        return f"flash_{self.BLOCK_M}x{self.BLOCK_N}_w{self.num_warps}_s{self.num_stages}"

    def as_dict(self) -> dict:
        return {"BLOCK_M": self.BLOCK_M, "BLOCK_N": self.BLOCK_N, "num_warps": self.num_warps,
                "num_stages": self.num_stages}


# ----------------------------------------------------------------------------- configs

def _fits(cfg: AttentionConfig, block_d: int, itemsize: int) -> bool:
    """Q tile plus num_stages K and V tiles in shared memory; accumulator and scores in registers."""
    shared = (cfg.BLOCK_M * block_d + cfg.num_stages * 2 * cfg.BLOCK_N * block_d) * itemsize
    threads = cfg.num_warps * 32
    registers = (cfg.BLOCK_M * block_d + cfg.BLOCK_M * cfg.BLOCK_N) // threads
    return shared <= SHARED_MEMORY_LIMIT and registers <= REGISTER_LIMIT


def _clip(block: int, length: int | None) -> int:
    """A block no longer than the sequence needs (at least 16: tl.dot's smallest tile)."""
    return block if length is None else min(block, max(16, next_power_of_2(length)))


def search_space(head_dim: int, itemsize: int, m: int | None, n: int | None) -> list[AttentionConfig]:
    """H100 configs for one op: blocks clipped to the sequence lengths (None: symbolic, not
    clipped), pruned where the tiles do not fit. Never empty: the smallest config always fits.
    64x128 tiles, and two-stage pipelines where three stages fit, are left out: they never won a
    race on the H100, and each candidate costs a compile and a timing in every cold compile.
    So are (at ee23ef3) 128x64 and 128x128 with 4 warps, 128x32 and 64x64 with 8, and 64x32 with
    8 up to D=128 (where the heuristic does not want it): none came within 2% of the best in
    the model suite's attention races on the H100. Up to D=64, neither did 128x128 tiles nor
    four-stage pipelines (at 35b85cc, with every candidate timed: BERT, GPT-2 and ViT, where the
    best four-stage config ran 2-8% behind the best three-stage one and 128x128 40% and more);
    each compiles in ~1.5 s on the H100 host."""
    block_d = max(16, next_power_of_2(head_dim))
    out: list[AttentionConfig] = []
    tiles = [(128, 64, 8), (128, 128, 8), (128, 32, 4), (64, 64, 4), (64, 32, 4)]
    stage_counts = (3, 4)
    if head_dim <= 64:
        tiles.remove((128, 128, 8))
        stage_counts = (3,)
    if head_dim > 128:
        tiles.append((64, 32, 8))
    for bm, bn, warps in tiles:
        fitting = [cfg for cfg in (AttentionConfig(_clip(bm, m), _clip(bn, n), warps, stages)
                                   for stages in stage_counts) if _fits(cfg, block_d, itemsize)]
        if not fitting:  # a big tile or head: two stages may still fit
            two = AttentionConfig(_clip(bm, m), _clip(bn, n), warps, 2)
            fitting = [two] if _fits(two, block_d, itemsize) else []
        out += [cfg for cfg in fitting if cfg not in out]
    if not out:
        out.append(AttentionConfig(_clip(16, m), _clip(16, n), 4, 1))
    return out


def heuristic_config(configs: list[AttentionConfig], head_dim: int) -> AttentionConfig:
    """The untimed default (CPU interpreter, autotune off, symbolic sizes): the usual Hopper
    picks by head dim: 64x64 tiles with 4 warps up to D=64, 128x64 with 8 warps up to 128, 64x32
    with 8 warps beyond; the first config of the space with the largest tiles not above those,
    else the first one."""
    if head_dim <= 64:
        want = AttentionConfig(64, 64, 4, 3)  # won the H100's D=64 races (BERT, GPT-2 at 512)
    elif head_dim <= 128:
        want = AttentionConfig(128, 64, 8, 3)
    else:
        want = AttentionConfig(64, 32, 8, 2)
    if want in configs:
        return want
    smaller = [c for c in configs if c.BLOCK_M <= want.BLOCK_M and c.BLOCK_N <= want.BLOCK_N
               and c.num_warps == want.num_warps]
    pool = smaller or configs
    return max(pool, key=lambda c: (c.BLOCK_M * c.BLOCK_N, c.num_stages == want.num_stages))


# ----------------------------------------------------------------------------- source

def _dot(spec: AttentionSpec, a: str, b: str) -> str:
    """a @ b accumulated in f32: full f32 products for f32 inputs (torch computes f32 attention
    without TF32 unless asked), tensor-core 16-bit products otherwise."""
    if spec.dtype == "f32":
        return f'tl.dot({a}, {b}, input_precision="ieee")'
    return f"helpers.dot({a}, {b})"


def _key_block(spec: AttentionSpec, edge: bool) -> list[str]:
    """The body of one key-block iteration; `edge`: the block may need element masks (the
    causal diagonal, a ragged last block), else every loaded element is in range and kept."""
    d_mask = spec.block_d != spec.head_dim
    lines = ["offs_n = start_n + tl.arange(0, BLOCK_N)",
             "if INDEX_64:",
             "    offs_n = offs_n.to(tl.int64)"]
    k_mask = [c for c in ("(offs_n < N)[None, :]" if edge else "", "d_ok[:, None]" if d_mask else "") if c]
    v_mask = [c for c in ("(offs_n < N)[:, None]" if edge else "", "d_ok[None, :]" if d_mask else "") if c]
    k_args = f", mask={' & '.join(k_mask)}, other=0.0" if k_mask else ""
    v_args = f", mask={' & '.join(v_mask)}, other=0.0" if v_mask else ""
    lines.append(f"k = tl.load(k_base + offs_n[None, :] * k_sn + offs_d[:, None] * k_sd{k_args})")
    lines.append(f"qk = {_dot(spec, 'q', 'k')}  # [BLOCK_M, BLOCK_N], f32")
    if spec.mask is not None:
        m_mask = "row_ok[:, None] & (offs_n < N)[None, :]" if edge else "row_ok[:, None]"
        lines.append(f"mk = tl.load(mask_base + offs_m[:, None] * mask_sm + offs_n[None, :] * mask_sn, "
                     f"mask={m_mask}, other=0)")
    if spec.mask == "add":
        lines.append("s = qk * SCALE + mk.to(tl.float32)  # natural units: see the module doc")
    else:
        lines.append("s = qk * QK_SCALE  # base-2 units")
    keep = []
    if edge:
        keep.append("(offs_n < N)[None, :]")
        if spec.causal:
            keep.append("(offs_n[None, :] <= offs_m[:, None])")
    if spec.mask == "bool":
        keep.append("(mk != 0)")
    if keep:
        lines.append(f"s = tl.where({' & '.join(keep)}, s, float('-inf'))")
    lines.append("m_new = tl.maximum(m_i, tl.max(s, 1))")
    if spec.mask is not None:
        # A row can be all -inf so far: subtract 0 there, not -inf (-inf - -inf is NaN).
        lines.append("m_use = tl.where(m_new == float('-inf'), 0.0, m_new)")
    else:
        lines.append("m_use = m_new  # key 0 is in every row's first block: the max is finite")
    if spec.mask == "add":
        lines += ["p = tl.math.exp2((s - m_use[:, None]) * LOG2E)",
                  "alpha = tl.math.exp2((m_i - m_use) * LOG2E)"]
    else:
        lines += ["p = tl.math.exp2(s - m_use[:, None])",
                  "alpha = tl.math.exp2(m_i - m_use)"]
    lines += ["l_i = l_i * alpha + tl.sum(p, 1)",
              f"v = tl.load(v_base + offs_n[:, None] * v_sn + offs_d[None, :] * v_sd{v_args})",
              f"acc = acc * alpha[:, None] + {_dot(spec, convert('p', spec.dtype) if spec.dtype != 'f32' else 'p', 'v')}",
              "m_i = m_new"]
    return lines


def template_source(spec: AttentionSpec) -> str:
    """The kernel's source, named NAME_PLACEHOLDER (see kernel_writer.Kernel.named)."""
    if not 1 <= spec.head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"head dim {spec.head_dim} outside 1..{MAX_HEAD_DIM}")
    d_mask = spec.block_d != spec.head_dim
    params = ["q_ptr", "k_ptr", "v_ptr"] + (["mask_ptr"] if spec.mask else []) + ["out_ptr"] + \
        (["lse_ptr"] if spec.lse else []) + ["B", "H", "M", "N", "GROUP",
                                             "q_sb", "q_sh", "q_sm", "q_sd", "k_sb", "k_sh", "k_sn", "k_sd",
                                             "v_sb", "v_sh", "v_sn", "v_sd"]
    if spec.mask:
        params += ["mask_sb", "mask_sh", "mask_sm", "mask_sn"]
    params += ["o_sb", "o_sh", "o_sm", "o_sd"]
    if spec.lse:
        params += ["lse_sb", "lse_sh", "lse_sm"]
    params += ["BLOCK_M: tl.constexpr", "BLOCK_N: tl.constexpr", "INDEX_64: tl.constexpr"]
    what = ", ".join(filter(None, ["causal" if spec.causal else "", f"{spec.mask} mask" if spec.mask else "",
                                   "logsumexp" if spec.lse else ""])) or "no mask"
    body = [
        f"BLOCK_D: tl.constexpr = {spec.block_d}",
        f"SCALE: tl.constexpr = {spec.scale!r}",
        f"QK_SCALE: tl.constexpr = {spec.scale * LOG2E!r}  # scale * log2(e): scores in base 2",
        f"LOG2E: tl.constexpr = {LOG2E!r}",
        f"LN2: tl.constexpr = {LN2!r}",
        "pid = tl.program_id(0)",
        "if INDEX_64:  # some tensor spans 2**31 elements or more: index math in int64",
        "    pid = pid.to(tl.int64)",
        "m_blocks = tl.cdiv(M, BLOCK_M)",
        "bh = pid // m_blocks",
        "# Last query block first: under a causal mask it has the most keys, so the longest",
        "# programs start first and the short ones fill the tail.",
        "start_m = (m_blocks - 1 - pid % m_blocks) * BLOCK_M",
        "b = bh // H",
        "h = bh % H",
        "hk = h // GROUP  # GQA: the K/V head this query head reads",
        "offs_m = start_m + tl.arange(0, BLOCK_M)",
        "offs_d = tl.arange(0, BLOCK_D)",
        "row_ok = offs_m < M",
    ]
    if d_mask:
        body.append(f"d_ok = offs_d < {spec.head_dim}  # D padded to a power of two")
    qo_mask = "row_ok[:, None] & d_ok[None, :]" if d_mask else "row_ok[:, None]"
    body += [
        f"q = tl.load(q_ptr + b * q_sb + h * q_sh + offs_m[:, None] * q_sm + offs_d[None, :] * q_sd, "
        f"mask={qo_mask}, other=0.0)",
        "k_base = k_ptr + b * k_sb + hk * k_sh",
        "v_base = v_ptr + b * v_sb + hk * v_sh",
    ]
    if spec.mask:
        body.append("mask_base = mask_ptr + b * mask_sb + h * mask_sh")
    body += [
        "m_i = tl.full([BLOCK_M], float('-inf'), dtype=tl.float32)",
        "l_i = tl.zeros([BLOCK_M], dtype=tl.float32)",
        "acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)",
    ]
    if spec.causal:
        body += ["# top-left causal: row i sees keys j <= i; no key block right of the last row's",
                 "hi = tl.minimum(N, start_m + BLOCK_M)",
                 "# blocks ending at or before the first row's diagonal need no element mask",
                 "full_end = tl.minimum((hi // BLOCK_N) * BLOCK_N, ((start_m + 1) // BLOCK_N) * BLOCK_N)"]
    else:
        body += ["hi = N", "full_end = (N // BLOCK_N) * BLOCK_N  # a ragged last block needs masks"]
    body.append("for start_n in range(0, helpers.loop_bound(full_end), BLOCK_N):")
    body += ["    " + line for line in _key_block(spec, edge=False)]
    body.append("for start_n in range(helpers.loop_bound(full_end), helpers.loop_bound(hi), BLOCK_N):"
                "  # diagonal or ragged blocks")
    body += ["    " + line for line in _key_block(spec, edge=True)]
    body += [
        "# A fully masked row has l == 0 and acc == 0: it gives 0 (torch's math SDPA does too).",
        "l_div = tl.where(l_i == 0.0, 1.0, l_i)",
        "out = acc / l_div[:, None]",
        f"tl.store(out_ptr + b * o_sb + h * o_sh + offs_m[:, None] * o_sm + offs_d[None, :] * o_sd, "
        f"{convert('out', spec.dtype)}, mask={qo_mask})",
    ]
    if spec.lse:
        if spec.mask == "add":
            body.append("lse = m_i + tl.log(l_i)  # natural units; -inf for a fully masked row")
        else:
            body.append("lse = (m_i + tl.math.log2(l_i)) * LN2  # base 2 -> natural log")
        body.append("tl.store(lse_ptr + b * lse_sb + h * lse_sh + offs_m * lse_sm, lse, mask=row_ok)")
    header = ["@triton.jit", f"def {NAME_PLACEHOLDER}({', '.join(params)}):",
              f'    """flash-attention forward, D={spec.head_dim}, {spec.dtype}, {what}."""']
    return "\n".join(header + ["    " + line for line in body]) + "\n"


# ----------------------------------------------------------------------------- launching

def _as_4d(t: torch.Tensor) -> torch.Tensor:
    while t.dim() < 4:
        t = t.unsqueeze(0)
    return t


def launch_attention(launch, block_m: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None, out: torch.Tensor, lse: torch.Tensor | None = None,
                     *, INDEX_64: bool = False) -> None:
    """Launch the kernel (through `launch`, a codegen/launcher.Launcher) on tensors of rank 3 or
    4 (3-d ones as [1, N, L, E]); the mask, of any rank up to 4, broadcasts to [B, Hq, M, N]
    with stride 0 along its size-1 dims. The generated wrapper calls this for each launch."""
    q4, k4, v4, o4 = _as_4d(q), _as_4d(k), _as_4d(v), _as_4d(out)
    b, h, m, _ = q4.shape
    n = k4.shape[2]
    programs = -(-m // block_m) * b * h
    if programs == 0:
        return
    args = [q4, k4, v4]
    strides = [*q4.stride(), *k4.stride(), *v4.stride()]
    if mask is not None:
        m4 = _as_4d(mask)
        args.append(m4)
        strides += [s if size != 1 else 0 for s, size in zip(m4.stride(), m4.shape)]
    args.append(o4)
    strides += list(o4.stride())
    if lse is not None:
        l3 = lse
        while l3.dim() < 3:
            l3 = l3.unsqueeze(0)
        args.append(l3)
        strides += list(l3.stride())
    launch(programs, *args, b, h, m, n, h // k4.shape[1], *strides, INDEX_64=INDEX_64)


def default_scale(head_dim: int, scale: float | None) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None else float(scale)


def compile_kernel(spec: AttentionSpec, cache_dir: str, interpret: bool, name: str = "attention_kernel"):
    """The kernel as a Triton JITFunction named `name`, from `<cache_dir>/code/<hash>.py` (Triton
    reads kernel sources from files)."""
    from .code_cache import kernel_file_text, load_module, write_module
    # The file the wrapper's module loads this kernel from when it is named the same
    # (code_cache.kernel_file_text): a race's winner is then already compiled.
    path, _ = write_module(cache_dir, kernel_file_text(template_source(spec).replace(NAME_PLACEHOLDER, name), interpret))
    return getattr(load_module(path, interpret), name)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                    *, is_causal: bool = False, scale: float | None = None, config: AttentionConfig | None = None,
                    return_lse: bool = False, cache_dir: str | None = None):
    """Run the template once, outside any compiled graph (tests, benchmarks, the autotuner):
    SDPA's arguments (GQA when k has fewer heads than q). Returns out, or (out, lse)."""
    from .launcher import Launcher
    from .runtime import needs_int64
    from ..ir.dtypes import from_torch
    from ..options import Options
    mask_kind = None if mask is None else "bool" if mask.dtype == torch.bool else "add"
    d = q.shape[-1]
    spec = AttentionSpec(d, from_torch(q.dtype), default_scale(d, scale), is_causal, mask_kind, return_lse)
    if config is None:
        space = search_space(d, q.element_size(), q.shape[-2], k.shape[-2])
        config = heuristic_config(space, d)
    interpret = q.device.type != "cuda"
    fn = compile_kernel(spec, cache_dir or Options().cache_dir, interpret)
    launch = Launcher(fn, q.device, config.num_warps, num_stages=config.num_stages,
                      BLOCK_M=config.BLOCK_M, BLOCK_N=config.BLOCK_N)
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device) if return_lse else None
    tensors = [t for t in (q, k, v, mask, out) if t is not None]
    launch_attention(launch, config.BLOCK_M, q, k, v, mask, out, lse, INDEX_64=needs_int64(*tensors))
    return (out, lse) if return_lse else out
