"""Building one Triton kernel: its parameters, index arithmetic, loads, body lines and stores.

Every kernel family (pointwise, reduction, data movement) writes through a `KernelWriter`, which owns
the conventions shared by all of them:

- A kernel iterates over a block of *linear output indices* (`xindex`, and `rindex` over the reduced
  extent in reductions), split into per-dim coordinates with the sizes; outputs are contiguous, so a
  store goes to `out_ptr + xindex`.
- An input is read at `sum(coord[d] * stride[d])` with its strides passed at run time, so one kernel
  serves any layout. Dims of literal size 1 contribute nothing: that is numpy broadcasting, and it
  also makes the (meaningless) stride of a size-1 dim irrelevant.
- Concrete sizes are literals in the source; symbolic sizes are kernel arguments that the wrapper
  computes from the symbol values. A writer made with `sizes_as_args` passes concrete sizes as
  arguments too (the matmul templates: their races, one per problem size, then share compiled
  kernels, and Triton still specializes an argument on being 1 or a multiple of 16).
- Kernel parameter names are positional (`in0_ptr`, `out0_ptr`), never IR names, so that two ops
  with the same computation produce the same source and share one compiled kernel.
- Low-precision loads are upcast to their compute dtype (triton_types.compute_dtype) and stores cast
  back.

A kernel body is a list of lines over SSA temporaries, so a fused region (several ops, several loads
and stores) is written the same way as a single op.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import NamedTuple

import sympy

from ..ir import Value
from .launch_heuristics import LaunchConfig
from .triton_types import compute_dtype, convert, tl_dtype

NAME_PLACEHOLDER = "KERNEL_NAME"


class Coord(NamedTuple):
    """A per-dim coordinate expression and the block axis it varies along ("x" or "r")."""
    expr: str
    axis: str


@dataclass
class Param:
    name: str
    kind: str                       # "tensor" | "size" | "stride"
    value: Value | None = None      # tensor and stride params
    dim: int | None = None          # stride params
    expr: sympy.Expr | None = None  # size params


@dataclass
class Kernel:
    """A generated kernel, ready for the wrapper to name and launch."""
    kind: str
    source: str                     # contains NAME_PLACEHOLDER where the kernel's name goes
    params: list[Param]
    config: LaunchConfig
    grid_numel: sympy.Expr          # programs = cdiv(grid_numel, XBLOCK); nothing to launch when 0
    tensors: list[Value] = field(default_factory=list)
    programs: sympy.Expr | None = None  # a template's own program count (matmul tiles), else None

    def named(self, name: str) -> str:
        return self.source.replace(NAME_PLACEHOLDER, name)


def is_one(d: sympy.Expr) -> bool:
    return sympy.sympify(d) == 1


class KernelWriter:
    def __init__(self, kind: str, summary: str, axes: tuple[str, ...] = ("x",),
                 block_names: dict[str, str] | None = None, sizes_as_args: bool = False):
        self.kind = kind
        self.sizes_as_args = sizes_as_args
        self.summary = summary
        self.axes = axes
        # The constexpr naming each axis's block size: XBLOCK/RBLOCK, or a template's own
        # (the matmul template's BLOCK_M/BLOCK_N).
        self.block_names = {a: (block_names or {}).get(a, f"{a.upper()}BLOCK") for a in axes}
        self.block_shape = "[" + ", ".join(self.block_names[a] for a in axes) + "]"
        self.params: list[Param] = []
        self.lines: list[str] = []
        self._indent = 1
        self._ptrs: dict[Value, str] = {}
        self._sizes: dict[sympy.Expr | tuple[sympy.Expr, str], str] = {}
        self._counts: dict[str, int] = {}
        # Per block axis, the mask of its coordinate alone (shaped along that axis only), where a
        # kernel has one (the matmul templates' epilogues). With them a broadcast input is loaded
        # at its own shape ([1, BLOCK_N] for a bias) and broadcast after the load, not loaded at
        # every element of the block.
        self.axis_masks: dict[str, str] | None = None

    # ------------------------------------------------------------------ names and parameters
    def fresh(self, prefix: str) -> str:
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return f"{prefix}{n}"

    def tensor(self, value: Value, role: str) -> str:
        """The pointer parameter for `value`; role is "in" or "out"."""
        if value not in self._ptrs:
            name = self.fresh(role) + "_ptr"
            self._ptrs[value] = name
            self.params.append(Param(name, "tensor", value=value))
        return self._ptrs[value]

    def size(self, expr, hint: str) -> str:
        """A size as kernel source: a literal when concrete (unless sizes_as_args), else a runtime
        argument."""
        expr = sympy.sympify(expr)
        if self.literal(expr):
            return str(int(expr))
        # A concrete size is an argument per role: were M, N and K one argument where they are
        # equal, a square product's source would differ from every other shape's.
        key = (expr, hint) if expr.is_Integer else expr
        if key not in self._sizes:
            name = hint if hint not in {p.name for p in self.params} else self.fresh(hint + "_")
            self._sizes[key] = name
            self.params.append(Param(name, "size", expr=expr))
        return self._sizes[key]

    def literal(self, size) -> bool:
        """Whether `size` is written into the source as a number."""
        return sympy.sympify(size).is_Integer and not self.sizes_as_args

    def stride(self, value: Value, dim: int) -> str:
        ptr = self._ptrs[value]
        name = f"{ptr[:-len('_ptr')]}_stride{dim}"
        if not any(p.name == name for p in self.params):
            self.params.append(Param(name, "stride", value=value, dim=dim))
        return name

    # ------------------------------------------------------------------ body
    def line(self, text: str = "") -> None:
        self.lines.append("    " * self._indent + text if text else "")

    @contextlib.contextmanager
    def indented(self):
        self._indent += 1
        try:
            yield
        finally:
            self._indent -= 1

    def assign(self, prefix: str, expr: str, comment: str = "") -> str:
        name = self.fresh(prefix)
        self.line(f"{name} = {expr}" + (f"  # {comment}" if comment else ""))
        return name

    def program_start(self) -> str:
        """Emit the first index of this program's block, in int64 when INDEX_64 asks for it."""
        self.line("pid = tl.program_id(0)")
        self.line("if INDEX_64:  # some tensor spans 2**31 elements or more: index math in int64")
        self.line("    pid = pid.to(tl.int64)")
        return "pid * XBLOCK"

    def decompose(self, index: str, dims: list[tuple[int, sympy.Expr]], prefix: str, axis: str,
                  size_hint: str) -> dict[int, Coord]:
        """Split a linear (row-major) index over `dims` [(dim, size), ...] into coordinates.

        Dims of literal size 1 get the coordinate "0" and cost nothing."""
        coords: dict[int, Coord] = {}
        live = [(d, n) for d, n in dims if not is_one(n)]
        for d, n in dims:
            if is_one(n):
                coords[d] = Coord("0", axis)
        literal, symbolic = 1, []  # product of the sizes of the dims inside the current one
        for pos in range(len(live) - 1, -1, -1):
            d, n = live[pos]
            factors = ([str(literal)] if literal != 1 else []) + symbolic
            if not factors:
                div = index
            else:
                inner = factors[0] if len(factors) == 1 else f"({' * '.join(factors)})"
                div = f"{index} // {inner}"
            if pos == 0:
                expr = div
            else:
                size = self.size(n, f"{size_hint}{d}")
                expr = f"{div} % {size}" if div == index else f"({div}) % {size}"
            name = f"{prefix}{d}"
            self.line(f"{name} = {expr}")
            coords[d] = Coord(name, axis)
            if pos == 0:
                break
            if self.literal(n):
                literal *= int(n)
            else:
                symbolic.append(self.size(n, f"{size_hint}{d}"))
        return coords

    def offset(self, value: Value, dim_coords: list[Coord | None]) -> tuple[str, set[str]]:
        """sum(coord * stride) over the dims of `value` that can vary; returns (expr, axes used)."""
        terms, axes = [], set()
        for d, (size, c) in enumerate(zip(value.type.shape, dim_coords)):
            if c is None or c.expr == "0" or is_one(size):
                continue
            terms.append(f"{c.expr} * {self.stride(value, d)}")
            axes.add(c.axis)
        return " + ".join(terms), axes

    def load(self, value: Value, dim_coords: list[Coord | None], mask: str, comment: str = "",
             axes: tuple[str, ...] | None = None) -> str:
        """Load `value` at the given per-dim coordinates as a block over `axes` (default: all
        of the kernel's; a row kernel loads per-row values as [XBLOCK, 1] with axes ("x",))."""
        want = axes or self.axes
        ptr = self.tensor(value, "in")
        off, used = self.offset(value, dim_coords)
        addr = f"{ptr} + ({off})" if off else ptr
        # A coordinate that is one value for the whole block (a matmul's batch index) varies along
        # no block axis: only the block's own axes decide whether the address needs broadcasting.
        convert = f".to({tl_dtype(compute_dtype(value.type.dtype))})" \
            if compute_dtype(value.type.dtype) != value.type.dtype else ""
        if used & set(self.axes) != set(want):
            # The address does not vary along every block axis (a broadcast input): the load
            # returns a full block like every other value.
            shape = "[" + ", ".join(self.block_names[a] if a in want else "1" for a in self.axes) + "]"
            if self.axis_masks is not None:
                # Loaded at its own shape, masked along the axes it varies on, then broadcast:
                # a 128x128 tile reads 128 bias values, not 16384 (a tenth of a GEMM's time).
                masks = [self.axis_masks[a] for a in self.axes if a in used]
                load = f"tl.load({addr}, mask={' & '.join(masks)})" if masks else f"tl.load({addr})"
                return self.assign(ptr[:-len("_ptr")] + "_", f"tl.broadcast_to({load}{convert}, {shape})", comment)
            addr = f"tl.broadcast_to({addr}, {shape})"
        return self.assign(ptr[:-len("_ptr")] + "_", f"tl.load({addr}, mask={mask}){convert}", comment)

    def store(self, value: Value, index: str, expr: str, from_dtype: str, mask: str) -> None:
        ptr = self.tensor(value, "out")
        self.line(f"tl.store({ptr} + {index}, {storage_cast(expr, from_dtype, value.type.dtype)}, mask={mask})")

    # ------------------------------------------------------------------ result
    def finish(self, config: LaunchConfig | None, grid_numel: sympy.Expr,
               constexprs: tuple[str, ...] | None = None) -> Kernel:
        """The kernel; `constexprs` are the config's compile-time parameters in launch order
        (default: each axis's block size), INDEX_64 always comes last."""
        order = {"tensor": 0, "size": 1, "stride": 2}
        params = sorted(self.params, key=lambda p: order[p.kind])  # stable within a kind
        if constexprs is None:
            constexprs = tuple(self.block_names[a] for a in self.axes)
        names = [p.name for p in params] + [f"{c}: tl.constexpr" for c in constexprs]
        names.append("INDEX_64: tl.constexpr")
        header = ["@triton.jit", f"def {NAME_PLACEHOLDER}({', '.join(names)}):",
                  f'    """{self.summary}"""']
        source = "\n".join(header + self.lines) + "\n"
        tensors = [p.value for p in params if p.kind == "tensor"]
        return Kernel(self.kind, source, params, config, sympy.sympify(grid_numel), tensors)


def storage_cast(expr: str, from_dtype: str, to_dtype: str) -> str:
    """Convert a value in compute dtype `from_dtype` to the storage dtype `to_dtype`."""
    if to_dtype == "b1" and from_dtype != "b1":
        return f"({expr} != 0)"
    if tl_dtype(from_dtype) != tl_dtype(to_dtype):
        return convert(expr, to_dtype)
    return expr
