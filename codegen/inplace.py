"""Elementwise kernels that write their result over a library result they are the last to read.

A convolution's output is torch's (cuDNN has no out= form that writes the caller's buffer), so it
is not in the wrapper's arena (memory_plan.py); the kernel after it (a batch norm's scale and
shift, a ReLU, a residual add: one fused region) used to write a second buffer of the same size.
ResNet-50 then kept two activations where it needs one, and its CUDA graph pool held both.

When an elementwise kernel is the last reader of such a result, reads it through a view of the
result's own shape and dtype, and reads no other view of it, the kernel can write into it: each
element is loaded and stored by the same program at the same address, the load first. The
wrapper tests at run time that the view is contiguous (`inplace_or_empty`: cuDNN's layout shows
only then; the kernel writes contiguous memory), and allocates a new buffer otherwise, so the
result is right either way. The op's result is then torch's storage, not a planned buffer.

Only externs known to return new memory may be written over; an extern that can return a view
of its input (most ATen ops can) never is.
"""
from __future__ import annotations

from typing import Callable

from ..ir import Graph, Op, Value
from ..ir.types import shapes_equal

# Externs whose result never shares its inputs' storage (a view of an input written over would
# change the input).
FRESH_RESULT_EXTERNS = frozenset({"aten.convolution.default"})
_SAME_ELEMENTS = ("reshape", "permute")   # views that keep every element: a kernel reading one reads all
_VIEWS = _SAME_ELEMENTS + ("expand", "slice")


def _base(v: Value, through: tuple[str, ...]) -> Value:
    while v.producer is not None and v.producer.name in through:
        v = v.producer.inputs[0]
    return v


def inplace_operands(graph: Graph, elementwise: Callable[[Op], bool]) -> dict[Op, int]:
    """Op -> index of the operand it may write its result over: `op` is elementwise (`elementwise`
    says so: one kernel reading every operand at the index it writes), has one result, and that
    operand is a reshape/permute view (or the value itself) of a fresh extern result that nothing
    after `op` reads through any view, that is not returned, has the result's shape and dtype, and
    is the only operand of `op` on that storage."""
    last_reader: dict[Value, int] = {}
    for i, op in enumerate(graph.ops):
        for v in op.inputs:
            last_reader[_base(v, _VIEWS)] = i
    returned = {_base(v, _VIEWS) for v in graph.outputs}
    out: dict[Op, int] = {}
    for i, op in enumerate(graph.ops):
        if len(op.results) != 1 or not elementwise(op):
            continue
        storages = [_base(v, _VIEWS) for v in op.inputs]
        for k, v in enumerate(op.inputs):
            base = _base(v, _SAME_ELEMENTS)
            producer = base.producer
            if (producer is not None and producer.name == "extern"
                    and producer.attrs["target"] in FRESH_RESULT_EXTERNS and len(producer.results) == 1
                    and storages[k] is base and storages.count(base) == 1
                    and last_reader.get(base) == i and base not in returned
                    and v.type.dtype == op.result.type.dtype and shapes_equal(v.type.shape, op.result.type.shape)):
                out[op] = k
                break
    return out
