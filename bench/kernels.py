"""Kernel cases and the measured ceilings they are a percentage of.

Memory-bound ops on 16384x4096 (GB/s = bytes read + written once / time, vs the device-to-device
copy bandwidth measured in the same run), bf16 matmuls (TFLOP/s vs cuBLAS mm 8192^3 measured in the
same run), linear+bias+gelu at two sizes, and causal attention written naively as softmax(QK^T/sqrt(d) + mask)V
for eager / TorchInductor / ember, with SDPA as a reference row.

Attention FLOPs are counted over the causal triangle, 2*B*H*S^2*D, for every row (see
_causal_attention_flops). ember's attention row runs what its codegen chose for the one SDPA op
the attention pass makes of the naive formulation: its own flash-attention template or the
library SDPA, timed against each other at compile time; the run's progress line names the choice
("chose attention=flash_128x64_w8_s3" or "attention=sdpa"). For the template alone, run with
--ember-options '{"attention_library": false}'.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .check import relative_error
from .timing import sync
from .workload import Case, Config, Workload

# ember with cuBLAS left out of the matmul race: what ember's own Triton template reaches alone.
TEMPLATE_ONLY = {"ember template-only": {"matmul_library": False}}

# ---- the functions under test (module-level so Dynamo sees plain code) -----------------------


def softmax(x):
    return torch.softmax(x, dim=-1)


def layer_norm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps=1e-5)


def rms_norm(x, w):
    # The HF Llama formulation (what the llama case runs): fp32 statistics, cast back, scale.
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
    return w * h.to(x.dtype)


def gelu_bias(x, b):
    return F.gelu(x + b)


def mm(a, b):
    return a @ b


def linear_bias_gelu(x, w, b):
    return F.gelu(F.linear(x, w, b))


def naive_attention(q, k, v):
    s = q.shape[-2]
    mask = torch.full((s, s), float("-inf"), device=q.device, dtype=q.dtype).triu(1)
    # This shape (matmul, / scale, + additive mask, softmax, matmul) is one TorchInductor's
    # attention pattern matcher rewrites to SDPA; ember has to find the same fusion itself.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + mask
    return torch.softmax(scores, dim=-1) @ v


def sdpa_causal(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


# ---- cases ---------------------------------------------------------------------------------

def _rand(cfg: Config, *shape, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, device=cfg.device, dtype=cfg.dtype) * scale


def _rows_cols(cfg: Config) -> tuple[int, int]:
    return (64, 256) if cfg.smoke else (16384, 4096)


def _membound(fn, n_vectors: int, extra_args):
    """A memory-bound case: x (rows x cols) in, same shape out, plus n_vectors length-cols params."""
    def build(cfg: Config) -> Workload:
        m, n = _rows_cols(cfg)
        x = _rand(cfg, m, n)
        size = cfg.dtype.itemsize
        return Workload(fn, (x, *extra_args(cfg, n)), kind="kernel", shape=f"{m}x{n}", dtype=cfg.dtype,
                        bytes=(2 * m * n + n_vectors * n) * size, ceiling="copy_GBs")
    return build


def _mm(size: int, smoke_size: int):
    def build(cfg: Config) -> Workload:
        n = smoke_size if cfg.smoke else size
        # 1/sqrt(n) keeps outputs O(1), so bf16 rounding, not overflow, sets the error.
        a, b = _rand(cfg, n, n, scale=n ** -0.5), _rand(cfg, n, n)
        return Workload(mm, (a, b), kind="kernel", shape=f"{n}^3", dtype=cfg.dtype,
                        flops=2 * n ** 3, ceiling="mm_TFLOPs", variants=TEMPLATE_ONLY)
    return build


def _linear(m: int, k: int, n: int):
    """linear+bias+gelu, an MLP up-projection of m tokens from k to n features."""
    def build(cfg: Config) -> Workload:
        rows, inner, cols = (32, 64, 128) if cfg.smoke else (m, k, n)
        x, w, b = _rand(cfg, rows, inner), _rand(cfg, cols, inner, scale=inner ** -0.5), _rand(cfg, cols)
        return Workload(linear_bias_gelu, (x, w, b), kind="kernel", shape=f"{rows}x{inner} @ {inner}x{cols}",
                        dtype=cfg.dtype, flops=2 * rows * cols * inner, ceiling="mm_TFLOPs", variants=TEMPLATE_ONLY)
    return build


def _causal_attention_flops(b: int, h: int, s: int, d: int) -> int:
    """Work a causal kernel must do: QK^T and PV over the lower triangle, 2 * (2*b*h*s*s*d) / 2.
    Counting the full square would credit SDPA (which skips the masked half) with ~1.1 PFLOP/s on an
    H100, above the chip's peak; the anchors count the triangle too (SDPA at ~600 TFLOP/s)."""
    return 2 * b * h * s * s * d


def _attention(cfg: Config) -> Workload:
    b, h, s, d = (1, 2, 32, 16) if cfg.smoke else (8, 16, 4096, 128)
    q, k, v = (_rand(cfg, b, h, s, d) for _ in range(3))
    return Workload(naive_attention, (q, k, v), kind="kernel", shape=f"{b}x{h}x{s}x{d} causal", dtype=cfg.dtype,
                    flops=_causal_attention_flops(b, h, s, d), ceiling="ref:SDPA", refs={"SDPA": sdpa_causal})


CASES = [
    Case("softmax", "kernels", _membound(softmax, 0, lambda cfg, n: ())),
    Case("layer_norm", "kernels", _membound(layer_norm, 2, lambda cfg, n: (_rand(cfg, n), _rand(cfg, n)))),
    Case("rms_norm", "kernels", _membound(rms_norm, 1, lambda cfg, n: (_rand(cfg, n),))),
    Case("gelu_bias", "kernels", _membound(gelu_bias, 1, lambda cfg, n: (_rand(cfg, n),))),
    Case("mm_4096", "kernels", _mm(4096, 64)),
    Case("mm_8192", "kernels", _mm(8192, 128)),
    # A large up-projection, where the product is ~90% of eager's time, and BERT-base's (16x512
    # tokens, 768 -> 3072: the model suite's), where the separate GELU pass is ~40% of it.
    Case("linear_bias_gelu", "kernels", _linear(8192, 4096, 16384)),
    Case("linear_bias_gelu_bert", "kernels", _linear(8192, 768, 3072)),
    Case("attention", "kernels", _attention),
]


# ---- ceilings ------------------------------------------------------------------------------

def measure_ceilings(cfg: Config, copy_numel: int = 1 << 27, size: int = 8192) -> dict:
    """Device-to-device copy bandwidth and cuBLAS mm 8192^3, measured with the same timer as the
    cases. Each has a check (the copy must be exact; the mm against an fp32 product).
    copy_numel: 2^27 bf16 = 256 MiB each way, far beyond the 50 MB L2, so HBM sets the rate."""
    out: dict = {}
    timer = cfg.timer
    n = copy_numel
    src = torch.randn(n, device=cfg.device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(cfg.device)
    exact = torch.equal(dst, src)
    ms = timer(lambda: dst.copy_(src))
    out["copy_GBs"] = {"what": "d2d copy GB/s (bytes read + written)", "bytes": 2 * n * 2, "ms": ms,
                       "value": 2 * n * 2 / (ms * 1e-3) / 1e9, "status": "ok" if exact else "WRONG"}
    del src, dst
    a = torch.randn(size, size, device=cfg.device, dtype=cfg.dtype) * size ** -0.5
    b = torch.randn(size, size, device=cfg.device, dtype=cfg.dtype)
    c = a @ b
    sync(cfg.device)
    finite = bool(torch.isfinite(c).all()) and relative_error(c[:64].float(), (a[:64].float() @ b.float())) < 2e-2
    ms = timer(lambda: a @ b)
    dt = str(cfg.dtype).replace("torch.", "")
    out["mm_TFLOPs"] = {"what": f"cuBLAS {dt} mm {size}^3 TFLOP/s", "flops": 2 * size ** 3, "ms": ms,
                        "value": 2 * size ** 3 / (ms * 1e-3) / 1e12, "status": "ok" if finite else "WRONG"}
    del a, b, c
    if cfg.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out
