"""conv_bias: a CUDA convolution's bias added by the kernel that reads its result, not by ATen.

ATen's cuDNN convolution does not take a bias: `aten.convolution` runs cuDNN, then adds the bias
with an elementwise kernel of its own, one more pass over the activations (Convolution.cpp,
`output.add_(reshape_bias(...))`; ConvNeXt's channels-last depthwise convolutions take that
path too). TorchInductor peels the bias off for the same reason. Here

    r = convolution(x, w, b, ...)  ->  c = convolution(x, w, None, ...); r = add(c, reshape(b, [1,C,1,...]))

so the add is a pointwise op like any other: ConvNeXt's bias add joins the LayerNorm kernel that
reads the result (after conv_layout and sink_permutes put both in NHWC order).

Where the result is read through a reshape that merges dims (ViT's patch embedding flattens H and
W), hoist_views cannot move that view above the add, so the add goes after the views, on the dim
the channels landed on. Where those views end in a concat (ViT's class token goes first), an add
on the piece would still be a kernel of its own (a concat reads its pieces from memory), so the
bias becomes a concat of its own, zeros for the other pieces, added to the concat's result:

    cat(cls, p) -> cat(cls, p) + cat(zeros, expand(reshape(b)))

which the concat's kernel computes (the patches' elements round once, conv + bias, as before).

Only where that add has a kernel to join: the result's readers, through views (permutes,
reshapes), are all pointwise ops, reductions or concats, and neither it nor a view of it is
returned. A
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


def _view_chain(v: Value, users: dict, returned: set) -> list[Op]:
    """The views (permutes, reshapes) read one after another from `v`, each the only reader of the
    last and none returned; [] when `v` is read otherwise."""
    chain: list[Op] = []
    while v not in returned and len(users.get(v, [])) == 1 and users[v][0].name in _VIEWS:
        chain.append(users[v][0])
        v = chain[-1].result
    return chain if v not in returned else []


def _channel_through(chain: list[Op]) -> int | None:
    """Where dim 1 (the channels) of the convolution's result is after `chain`, or None when a
    reshape merges or splits it (the bias then has no shape of its own there) or a size is
    symbolic."""
    pos = 1
    for view in chain:
        src = list(view.inputs[0].type.shape)
        if view.name == "permute":
            pos = list(view.attrs["dims"]).index(pos)
            continue
        dst = list(view.result.type.shape)
        if not all(isinstance(d, int) or getattr(d, "is_Integer", False) for d in src + dst):
            return None
        # The channels keep a dim of their own when the elements before them, and those up to
        # them, are a prefix of the new shape's products.
        before = 1
        for d in src[:pos]:
            before *= int(d)
        through = before * int(src[pos])
        acc, found = 1, None
        for j, d in enumerate(dst):
            if acc == before and acc * int(d) == through and int(d) == int(src[pos]):
                found = j
            acc *= int(d)
        if found is None:
            return None
        pos = found
    return pos


def _size_one_reshape(view: Op) -> bool:
    """A reshape that only inserts or removes size-1 dims (hoist_views moves those)."""
    return [d for d in view.inputs[0].type.shape if d != 1] == [d for d in view.result.type.shape if d != 1]


def _bias_view(b: Value, t: TensorType, channel: int) -> Op:
    """`b` reshaped to broadcast along dim `channel` of a value of type `t`."""
    shape = tuple(t.shape[i] if i == channel else 1 for i in range(t.rank))
    return Op("reshape", [b], {"shape": shape}, [TensorType(b.type.dtype, shape, b.type.device)])


def _add_bias(v: Value, b: Value, channel: int, g: Graph) -> list[Op]:
    """v + b (on dim `channel`), read from here on wherever `v` was."""
    view = _bias_view(b, v.type, channel)
    add = Op("add", [v, view.result], {}, [v.type])
    g.replace_all_uses(v, add.result)  # the add is not in g.ops yet: it keeps reading v
    return [view, add]


def _bias_after_concat(cat: Op, piece: Value, b: Value, channel: int, g: Graph) -> list[Op]:
    """concat(..., piece, ...) + concat(..., b broadcast to piece, ...), zeros for the other pieces.

    A concat reads its pieces from memory (fuse_groups): an add on the piece would be a kernel of
    its own. This add reads only the concat's result and a second concat of a broadcast view and
    constants, so both join the concat's kernel. Rounding is unchanged: the piece's elements get
    one bf16 rounding of conv + bias, as before, and the others x + 0 = x."""
    view = _bias_view(b, piece.type, channel)
    expand = Op("expand", [view.result], {"shape": piece.type.shape}, [piece.type])
    ops, pieces = [view, expand], []
    for u in cat.inputs:
        if u is piece:
            pieces.append(expand.result)
        else:
            ops.append(Op("full", [], {"value": 0.0}, [u.type]))
            pieces.append(ops[-1].result)
    biases = Op("concat", pieces, dict(cat.attrs), [cat.result.type])
    add = Op("add", [cat.result, biases.result], {}, [cat.result.type])
    g.replace_all_uses(cat.result, add.result)
    return ops + [biases, add]


def _readers_fuse(v: Value, users: dict, returned: set) -> bool:
    """Do only pointwise ops, reductions and concats read `v`, directly or through views?"""
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
            elif not (is_pointwise(r) and r.name != "copy" or r.opdef.kind == "reduction" or r.name == "concat"):
                return False
    return True


@graph_pass("conv_bias", options={},
            description="add a CUDA convolution's bias in the kernel reading its result (cuDNN adds it in a kernel of its own)")
def conv_bias(g: Graph, ctx: PassContext) -> PassResult:
    users, returned = g.users(), set(g.outputs)
    new_ops: list[Op] = []
    peeled = 0
    after: dict[Op, list[Op]] = {}  # ops to place right after a later op (a view, a concat)
    for op in g.ops:
        b = _bias(op)
        if b is None or not _readers_fuse(op.result, users, returned):
            new_ops.append(op)
            new_ops += after.pop(op, [])
            continue
        args = list(op.attrs["args"])
        index = args[2].index
        inputs = [v for i, v in enumerate(op.inputs) if i != index]
        args[2] = None
        args = [ExternArg(a.index - (a.index > index)) if isinstance(a, ExternArg) else a for a in args]
        r = op.result
        conv = Op("extern", inputs, {**op.attrs, "args": args}, [r.type])
        new_ops.append(conv)
        g.replace_all_uses(r, conv.result)
        chain = _view_chain(r, users, returned)
        channel = _channel_through(chain)
        end = chain[-1].result if chain else conv.result
        readers = users.get(chain[-1].result if chain else r, [])
        cat = readers[0] if channel is not None and len(readers) == 1 and readers[0].name == "concat" else None
        if cat is not None and b.type.dtype == r.type.dtype:
            after[cat] = _bias_after_concat(cat, end, b, channel, g)
        elif channel is not None and any(v.name == "reshape" and not _size_one_reshape(v) for v in chain):
            after[chain[-1]] = _add_bias(end, b, channel, g)
        else:
            # hoist_views moves permutes and size-1 reshapes above this add, to its reader.
            new_ops += _add_bias(conv.result, b, 1, g)
        peeled += 1
    if not peeled:
        return PassResult(changed=False, stats={"peeled": 0})
    g.ops = new_ops
    return PassResult(changed=True, stats={"peeled": peeled})
