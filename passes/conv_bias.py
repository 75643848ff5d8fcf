"""conv_bias: a CUDA convolution's bias added by the kernel that reads its result, not by ATen.

ATen's cuDNN convolution does not take a bias: `aten.convolution` runs cuDNN, then adds the bias
with an elementwise kernel of its own, one more pass over the activations (Convolution.cpp,
`output.add_(reshape_bias(...))`; ConvNeXt's channels-last depthwise convolutions take that
path too). TorchInductor peels the bias off for the same reason. Here

    r = convolution(x, w, b, ...)  ->  c = convolution(x, w, None, ...); r = add(c, reshape(b, [1,C,1,...]))

so the add is a pointwise op like any other: ConvNeXt's bias add joins the LayerNorm kernel that
reads the result (after conv_layout and sink_permutes put both in NHWC order).

Only where that add has a kernel to join: the result's readers, through views (permutes,
reshapes), are all pointwise ops or reductions, and neither it nor a view of it is returned. A
result read by another extern (ConvNeXt's downsampling convolution feeds the next depthwise
convolution) keeps its bias: the add would be a kernel of its own, as ATen's is, and a backend
that adds the bias inside its kernel (the direct depthwise one) would lose that. Only on CUDA
(`DEVICES`; the CPU's oneDNN convolution adds the bias in its kernel). One rounding moves: the
convolution's result is rounded to its dtype before the bias is added (ATen's cuDNN path does
the same). Runs before conv_layout, which then reads the add as a pointwise reader.
Stats: `peeled`.
"""
from __future__ import annotations

from ..ir import ExternArg, Graph, Op, TensorType, Value
from .context import PassContext
from .fuse_domains import is_pointwise
from .registry import PassResult, graph_pass

TARGET = "aten.convolution.default"
DEVICES = ("cuda",)          # tests add "cpu" to exercise the rewrite
_VIEWS = ("permute", "reshape")


def _bias(op: Op) -> Value | None:
    """The bias operand of a convolution extern, or None."""
    if op.name != "extern" or op.attrs.get("target") != TARGET or len(op.results) != 1:
        return None
    args = op.attrs.get("args", [])
    if len(args) < 3 or not isinstance(args[2], ExternArg):
        return None
    t = op.result.type
    b = op.inputs[args[2].index]
    if t.rank < 3 or b.type.rank != 1 or not str(t.device).startswith(DEVICES):
        return None
    return b


def _readers_fuse(v: Value, users: dict, returned: set) -> bool:
    """Do only pointwise ops and reductions read `v`, directly or through views?"""
    todo, seen = [v], 0
    while todo:
        x = todo.pop()
        readers = users.get(x, [])
        if x in returned or not readers:
            return False
        for r in readers:
            seen += 1
            if seen > 16:
                return False
            if r.name in _VIEWS:
                todo.append(r.result)
            elif not (is_pointwise(r) and r.name != "copy" or r.opdef.kind == "reduction"):
                return False
    return True


@graph_pass("conv_bias", options={},
            description="add a CUDA convolution's bias in the kernel reading its result (cuDNN adds it in a kernel of its own)")
def conv_bias(g: Graph, ctx: PassContext) -> PassResult:
    users, returned = g.users(), set(g.outputs)
    new_ops: list[Op] = []
    peeled = 0
    for op in g.ops:
        b = _bias(op)
        if b is None or not _readers_fuse(op.result, users, returned):
            new_ops.append(op)
            continue
        args = list(op.attrs["args"])
        index = args[2].index
        inputs = [v for i, v in enumerate(op.inputs) if i != index]
        args[2] = None
        args = [ExternArg(a.index - (a.index > index)) if isinstance(a, ExternArg) else a for a in args]
        r = op.result
        conv = Op("extern", inputs, {**op.attrs, "args": args}, [r.type])
        t = r.type
        shape = (1, t.shape[1]) + (1,) * (t.rank - 2)
        view = Op("reshape", [b], {"shape": shape}, [TensorType(b.type.dtype, shape, b.type.device)])
        add = Op("add", [conv.result, view.result], {}, [t])
        new_ops += [conv, view, add]
        g.replace_all_uses(r, add.result)
        peeled += 1
    if not peeled:
        return PassResult(changed=False, stats={"peeled": 0})
    g.ops = new_ops
    return PassResult(changed=True, stats={"peeled": peeled})
