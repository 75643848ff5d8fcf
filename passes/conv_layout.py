"""conv_layout: keep a CUDA network's 16-bit activations channels-last between convolutions.

cuDNN computes half-precision 2-d convolutions in NHWC. Given NCHW tensors it transposes the
input and the output around every convolution: on the H100, ResNet-50's 53 convolutions ran 69
such transposes per call (1.1 ms), the kernels TorchInductor avoids by laying activations out
channels-last. This pass does the same in the IR, with views only:

- a convolution's result `r` is read as `permute(permute(r, NHWC), NCHW)`: the same tensor, but
  its readers now see a permute by (0, 3, 1, 2) of an [N, H, W, C] value, which is how cuDNN
  lays the result out when its input is channels-last; `sink_permutes` (which must follow) then
  runs the pointwise ops after it (batch norm, ReLU, the residual add) in NHWC order, and their
  results, permuted views again, reach the next convolution channels-last;
- a convolution that reads a graph input (the image, NCHW) gets it through one `copy` into NHWC
  order (a transpose kernel, once per call) so the first result is channels-last too.

Nothing here changes a value: permutes and a copy. Only convolutions that are 4-d, not
transposed, on CUDA and in bf16 or f16 are touched (f32 convolutions run NCHW kernels well), and
only those whose readers all take a permuted layout (pointwise ops, permutes, externs, outputs;
not a reshape, which would copy a channels-last result).
Canonicalize would fold the permute pairs back, so this runs after it; `sink_permutes` after this.
Stats: `convolutions`.
"""
from __future__ import annotations

from ..ir import Graph, Op, Value
from .context import PassContext
from .registry import PassResult, graph_pass
from .sink_permutes import permute_op, readers_accept

TARGET = "aten.convolution.default"
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
DEVICES = ("cuda",)          # cuDNN's layout; tests add "cpu" to exercise the rewrite
DTYPES = ("bf16", "f16")


def _eligible(op: Op) -> bool:
    if op.name != "extern" or op.attrs.get("target") != TARGET or len(op.results) != 1:
        return False
    t = op.result.type
    args = op.attrs.get("args", [])
    transposed = args[6] if len(args) > 6 else True
    return (t.rank == 4 and transposed is False and t.dtype in DTYPES
            and str(t.device).startswith(DEVICES))


@graph_pass("conv_layout", options={},
            description="lay 16-bit CUDA convolution activations out channels-last (views, one input copy)")
def conv_layout(g: Graph, ctx: PassContext) -> PassResult:
    inputs = set(g.inputs)
    subst: dict[Value, Value] = {}
    new_ops: list[Op] = []
    converted: dict[Value, Value] = {}   # graph input -> its channels-last copy, made once
    count = 0
    users = g.users()
    returned = set(g.outputs)
    for op in g.ops:
        op.inputs = [subst.get(v, v) for v in op.inputs]
        # Only where the readers take a permuted layout as it is (a reshape of a channels-last
        # result would copy it: ViT's patch embedding flattens its convolution's output).
        if not _eligible(op) or not readers_accept(op.result, users, returned):
            new_ops.append(op)
            continue
        x = op.inputs[0]
        if x in inputs and x.type.rank == 4:
            if x not in converted:
                to_nhwc = permute_op(x, TO_NHWC)
                copy = Op("copy", [to_nhwc.result], {}, [to_nhwc.result.type])
                back = permute_op(copy.result, TO_NCHW)
                new_ops += [to_nhwc, copy, back]
                converted[x] = back.result
            op.inputs[0] = converted[x]
        new_ops.append(op)
        nhwc = permute_op(op.result, TO_NHWC)
        nchw = permute_op(nhwc.result, TO_NCHW)
        new_ops += [nhwc, nchw]
        subst[op.result] = nchw.result
        count += 1
    if not count:
        return PassResult(changed=False, stats={"convolutions": 0})
    g.ops = new_ops
    g.outputs = [subst.get(v, v) for v in g.outputs]
    return PassResult(changed=True, stats={"convolutions": count})
