"""The wrapper's attention: an SDPA extern runs ember's flash-attention template or the library.

The attention pass (and sdpa_variants) leave attention as one
`extern[aten.scaled_dot_product_attention.default]`. For each one the wrapper asks the graph's
Chooser (choice.py) between the library call and the template (attention_template.py) at each
point of its search space: timed on the GPU, the heuristic template config on the CPU
interpreter or without autotuning. The chosen template is one kernel launch into a buffer the
wrapper allocates (memory_plan sees a "kernel"); the library stays an extern call.

The template is offered only where it computes what SDPA computes:
  * dropout_p == 0; q, k, v of one dtype among bf16, f16, f32, rank 3 or 4, one concrete head
    dim D <= 256 for q, k and v; k and v with the same heads, q's heads a multiple of them
    (GQA needs enable_gqa), the same batch; a bool or float mask broadcastable to the scores;
  * on CUDA, no row that can be fully masked (see attention_template's module doc): no mask,
    is_causal (top-left: row i always sees key 0), or a mask attention_mask.classify proves
    leaves every row a key (HF's finite padding masks). A bool mask from an input could mask a
    whole row, where torch's CUDA kernels disagree with each other: the library keeps it. On
    CPU the template's 0 for such rows is what torch's CPU SDPA gives, so every mask is offered.
`Options.attention_library=False` leaves the library out of the race (to measure the template
alone), wherever the template is offered.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy
import torch

from ..ir import Op, Value
from ..ir.dtypes import itemsize
from ..ir.ops import ExternArg
from ..ir.types import dims_equal
from .attention_template import (MAX_HEAD_DIM, AttentionConfig, AttentionSpec, compile_kernel, default_scale,
                                 heuristic_config, launch_attention, search_space, template_source)
from .choice import Implementation, concrete_shape
from .kernel_writer import Kernel
from .launch_heuristics import LaunchConfig

if TYPE_CHECKING:
    from .wrapper import WrapperBuilder

SDPA_TARGET = "aten.scaled_dot_product_attention.default"
_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}
# SDPA has no out= form: its result is allocated outside the wrapper's memory plan. A returned
# result is memory the caller gets either way (the plan would hold it to the end), so there SDPA
# races as a planned candidate: the fastest wins, with no margin (autotune.tuner.fastest).
LIBRARY = Implementation("sdpa", {}, is_library=True, unplanned=True)
RETURNED_LIBRARY = dataclasses.replace(LIBRARY, unplanned=False)


@dataclass
class SdpaCall:
    """An SDPA extern's arguments, operands as IR values."""
    q: Value
    k: Value
    v: Value
    mask: Value | None
    dropout_p: float
    is_causal: bool
    scale: float | None
    enable_gqa: bool


@dataclass
class TemplateChoice:
    spec: AttentionSpec
    config: AttentionConfig
    call: SdpaCall


def bind_sdpa(op: Op) -> SdpaCall | None:
    """The SDPA call an extern makes, or None for another target or arguments not understood."""
    if op.name != "extern" or op.attrs["target"] != SDPA_TARGET or len(op.results) != 1:
        return None
    bound = dict(_DEFAULTS)
    args, kwargs = list(op.attrs["args"]), dict(op.attrs["kwargs"])
    if len(args) > len(_PARAMS) or set(kwargs) - set(_PARAMS):
        return None
    bound.update(zip(_PARAMS, args))
    bound.update(kwargs)

    def operand(x):
        return op.inputs[x.index] if isinstance(x, ExternArg) else x
    q, k, v, mask = (operand(bound[p]) for p in _PARAMS[:4])
    if not all(isinstance(t, Value) for t in (q, k, v)) or not (mask is None or isinstance(mask, Value)):
        return None
    scalars = [bound[p] for p in _PARAMS[4:]]
    if any(isinstance(s, (ExternArg, Value, sympy.Expr)) for s in scalars):
        return None
    return SdpaCall(q, k, v, mask, float(bound["dropout_p"]), bool(bound["is_causal"]),
                    None if bound["scale"] is None else float(bound["scale"]), bool(bound["enable_gqa"]))


def _broadcasts(mask_shape: tuple, scores: tuple) -> bool:
    if len(mask_shape) > len(scores):
        return False
    return all(dims_equal(m, 1) or dims_equal(m, s) for m, s in zip(mask_shape[::-1], scores[::-1]))


def why_not_template(call: SdpaCall, graph) -> str | None:
    """Why the template cannot compute this call exactly as SDPA does (None: it can)."""
    q, k, v = call.q.type, call.k.type, call.v.type
    if call.dropout_p != 0.0:
        return "dropout"
    if not q.dtype == k.dtype == v.dtype or q.dtype not in ("bf16", "f16", "f32"):
        return f"dtypes {q.dtype}, {k.dtype}, {v.dtype}"
    if not q.rank == k.rank == v.rank or q.rank not in (3, 4):
        return f"rank {q.rank}"
    d = sympy.sympify(q.shape[-1])
    if not d.is_Integer or not 1 <= int(d) <= MAX_HEAD_DIM or not all(dims_equal(t.shape[-1], d) for t in (k, v)):
        return f"head dims {q.shape[-1]}, {k.shape[-1]}, {v.shape[-1]}"
    if not dims_equal(k.shape[-2], v.shape[-2]) or not dims_equal(k.shape[-3], v.shape[-3]):
        return "k and v differ in length or heads"
    if q.rank == 4 and not (dims_equal(q.shape[0], k.shape[0]) and dims_equal(q.shape[0], v.shape[0])):
        return "batch sizes differ"
    hq, hk = sympy.sympify(q.shape[-3]), sympy.sympify(k.shape[-3])
    if not dims_equal(hq, hk):
        if not call.enable_gqa or not (hq.is_Integer and hk.is_Integer) or int(hq) % int(hk):
            return f"{hq} query heads over {hk} key heads"
    scores = tuple(q.shape[:-1]) + (k.shape[-2],)
    if call.mask is not None:
        mt = call.mask.type
        if mt.dtype not in ("b1", "bf16", "f16", "f32") or not _broadcasts(tuple(mt.shape), scores):
            return f"mask {mt}"
        if call.is_causal:
            return "both a mask and is_causal"
    if str(q.device).startswith("cuda") and call.mask is not None and _rows_may_be_empty(call.mask, scores, graph):
        return "a row may be fully masked (torch's CUDA kernels differ there)"
    return None


def _rows_may_be_empty(mask: Value, scores: tuple, graph) -> bool:
    """Unless attention_mask.classify proves every row keeps a key. A mask computed by a fused
    region (fuse ran after the attention pass) is judged by what the region's body yields."""
    from ..passes.attention_mask import classify
    ops = graph.ops
    p = mask.producer
    if p is not None and p.name == "fused":
        body = p.attrs["body"]
        mask, ops = body.outputs[p.results.index(mask)], body.ops
    return classify(mask, False, scores, ops).empty_rows is not False


def choose(b: "WrapperBuilder", op: Op) -> TemplateChoice | None:
    """The template and its config when the chooser picks it for `op`, else None (the library)."""
    call = bind_sdpa(op)
    if call is None or why_not_template(call, b.graph) is not None:
        return None
    q, k = call.q.type, call.k.type
    d = int(q.shape[-1])
    mask = None if call.mask is None else "bool" if call.mask.type.dtype == "b1" else "add"
    spec = AttentionSpec(d, q.dtype, default_scale(d, call.scale), call.is_causal, mask)
    length = (lambda x: int(x) if sympy.sympify(x).is_Integer else None)
    configs = search_space(d, itemsize(q.dtype), length(q.shape[-2]), length(k.shape[-2]))
    default = heuristic_config(configs, d)
    # The default first: a race's screen (autotune/tuner.py) times the first config listed.
    configs = [default] + [c for c in configs if c != default]
    returned = op.result in b.graph.outputs
    impls = ([RETURNED_LIBRARY if returned else LIBRARY] if b.chooser.attention_library else []) + \
        [Implementation(c.name, c.as_dict()) for c in configs]
    by_name = {c.name: c for c in configs}
    operands = [call.q.type, call.k.type, call.v.type] + ([call.mask.type] if call.mask is not None else [])
    source = template_source(spec)
    # The tuning key tells the two races apart: a decision made under the margin must not answer
    # the race without one, nor the other way round.
    key_source = source + ("\n# result returned: SDPA races without the unplanned margin\n" if returned else "")
    # The name emit() will give it (WrapperBuilder.kernel_name): the winner is then in Triton's
    # cache when the graph's module first runs it.
    kernel_name = f"k{b.op_index(op)}_attention"

    def make_runner(impl: Implementation, tensors: list[torch.Tensor]):
        qt, kt, vt = tensors[:3]
        mt = tensors[3] if len(tensors) > 3 else None
        if impl.is_library:
            return lambda: torch.ops.aten.scaled_dot_product_attention.default(
                qt, kt, vt, attn_mask=mt, is_causal=call.is_causal, scale=call.scale, enable_gqa=call.enable_gqa)
        return _template_runner(spec, by_name[impl.name], b.chooser, qt, kt, vt, mt, kernel_name)

    pick = b.chooser.choose("attention", key_source, operands, impls, make_runner,
                            lambda xs: next(x for x in xs if x.name == default.name))
    if pick.is_library:
        return None
    return TemplateChoice(spec, by_name[pick.name], call)


def _template_runner(spec, cfg: AttentionConfig, chooser, q, k, v, mask, name: str):
    from ..options import Options
    from .launcher import Launcher
    fn = compile_kernel(spec, chooser.cache_dir or Options().cache_dir, interpret=q.device.type != "cuda", name=name)
    launch = Launcher(fn, q.device, cfg.num_warps, num_stages=cfg.num_stages,
                      BLOCK_M=cfg.BLOCK_M, BLOCK_N=cfg.BLOCK_N)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    return lambda: launch_attention(launch, cfg.BLOCK_M, q, k, v, mask, out)


def output_order(b: "WrapperBuilder", op: Op) -> tuple[int, ...] | None:
    """The dim order to lay the template's result out in: P when every reader permutes it by P.

    Attention's result [B, H, S, D] goes to the output projection as permute(0, 2, 1, 3) and a
    reshape to [B*S, H*D]; on a contiguous result that reshape cannot be a view and the wrapper
    copied it every call (one kernel per layer). The template writes through the output's
    strides, so it writes [B, S, H, D] memory directly and both views are free. Not for a
    returned result (the caller gets it in the layout eager's SDPA gives) or other readers."""
    readers = b.graph.users().get(op.result, [])
    if op.result in b.graph.outputs or not readers or any(r.name != "permute" for r in readers):
        return None
    orders = {tuple(r.attrs["dims"]) for r in readers}
    return orders.pop() if len(orders) == 1 else None


def emit(b: "WrapperBuilder", op: Op, choice: TemplateChoice) -> None:
    """One launch of the chosen template into a wrapper-allocated (possibly reused) buffer."""
    cfg, call = choice.config, choice.call
    kernel = Kernel("attention", template_source(choice.spec), [],
                    LaunchConfig(XBLOCK=cfg.BLOCK_M, num_warps=cfg.num_warps), sympy.Integer(0))
    name = b.kernel_name(kernel, "attention")
    launcher = b.launcher_for(name, cfg.num_warps, {"BLOCK_M": cfg.BLOCK_M, "BLOCK_N": cfg.BLOCK_N},
                              num_stages=cfg.num_stages)
    out = b.names[op.result]
    b.alloc(op.result, out, order=output_order(b, op))
    b._set_index64(op.result, b.static_index64(op.result))
    tensors = [call.q, call.k, call.v] + ([call.mask] if call.mask is not None else []) + [op.result]
    mask = b.names[call.mask] if call.mask is not None else "None"
    b.line(f"launch_attention({launcher}, {cfg.BLOCK_M}, {b.names[call.q]}, {b.names[call.k]}, "
           f"{b.names[call.v]}, {mask}, {out}, INDEX_64={b.index64_expr(tensors, b.names)})")
    b.num_kernels += 1
