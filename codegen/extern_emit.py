"""How the wrapper emits an ATen extern: a `torch.ops` call, or its out= form into a buffer the
wrapper allocates (the arena, memory_plan.py) where the library has one that writes in place."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..ir import Op
from ..ir.ops import resolve_target

if TYPE_CHECKING:
    from .wrapper import WrapperBuilder

# Externs whose result is a new contiguous tensor (a library matmul region's addmm): reshapes of
# it are views, known when the wrapper is written.
FRESH_CONTIGUOUS = ("aten.addmm.default", "aten.mm.default")
# Library externs with an out= form that writes the caller's buffer in place (structured kernels:
# no copy behind it), so their results can live in the arena like a kernel's.
OUT_VARIANTS = {"aten.addmm.default": "aten.addmm.out", "aten.mm.default": "aten.mm.out",
                "aten.bmm.default": "aten.bmm.out"}


def out_variant(op: Op) -> str | None:
    """The out= overload the wrapper calls for a library extern that has one, else None."""
    if op.name != "extern" or tuple(op.attrs["outputs"]) != (0,) or len(op.results) != 1:
        return None
    return OUT_VARIANTS.get(op.attrs["target"])


def emit(b: "WrapperBuilder", op: Op) -> None:
    """The extern's call; its result is allocated first where the out= form is called."""
    target = op.attrs["target"]
    fn = resolve_target(target)  # fails now, at compile time, for an unknown target
    args = [b.literal(a, op) for a in op.attrs["args"]]
    args += [f"{k}={b.literal(v, op)}" for k, v in sorted(op.attrs["kwargs"].items())]
    call = f"torch.ops.{target}({', '.join(args)})"
    results = ", ".join(b.names[r] for r in op.results)
    outputs = tuple(op.attrs["outputs"])
    out_form = out_variant(op)
    if out_form:
        b.alloc(op.result, results)
        b.line(f"torch.ops.{out_form}({', '.join(args + [f'out={results}'])})")
    elif outputs == (0,) and _returns_one_tensor(fn):
        b.line(f"{results} = {call}")
    else:
        b.line(f"{results}{',' if len(op.results) == 1 else ''} = extern_results({call}, {outputs})")
    b.externs.append({"op": "extern", "target": target, "reason": op.attrs.get("reason", "")})
    if target in FRESH_CONTIGUOUS and not out_form:
        b.mark_contiguous(op.result)
        b._set_index64(op.result, b.static_index64(op.result))


def _returns_one_tensor(fn) -> bool:
    schema = getattr(fn, "_schema", None)
    return schema is not None and len(schema.returns) == 1 and str(schema.returns[0].type) == "Tensor"
