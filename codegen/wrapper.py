"""Graph -> one Python module: the Triton kernels plus a readable wrapper `call` that runs them.

The wrapper walks the graph in order. Per op it writes a comment with the op's IR line, then either
allocates the (contiguous) result and launches a kernel on one line, or applies a torch view, or
calls a library function (a matmul the autotuner gave to the library; ATen externs, extern_emit.py).
Matmuls and matmul regions are matmul_emit.py's: ember's template or the library, as the graph's
Chooser decides. Sizes derived from symbols are computed once at the top of `call`. Buffers of
known size are slots of one arena that memory_plan.py places (`buf2 = arena_float32[0:128].view((8, 16))
# arena +0`); one of symbolic size is a torch.empty or, where memory_plan.py finds a dead buffer
of provably the same byte size, takes its storage (`buf2 = buf0  # reuses buf0 (dead after %1)`).
The strides of the buffers it allocates, and of views of them, are known as it writes (layouts.py):
a reshape of one is a `.view` or a copy; only inputs and extern results are tested at run time.

    def call(inputs, s0):
        x, w = inputs
        d0 = 64*s0
        # %0: f32[s0,64] = relu %x
        buf0 = torch.empty((s0, 64), dtype=torch.float32, device=DEVICE)
        launch_k0_relu(cdiv(d0, 1024), x, buf0, d0, x.stride(0), x.stride(1), INDEX_64=False)

Kernels launch through module-level `Launcher`s (launcher.py: one per kernel and block sizes), which
skip Triton's per-call argument binding after a kernel's first launch.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..ir import Graph, Op, Value, to_torch
from ..ir.printer import format_attrs
from ..ir.types import TensorType, shapes_equal
from . import attention_emit, extern_emit, layouts, runtime
from .choice import Chooser
from .code_cache import content_hash, kernel_file_text
from .data_movement import concat_kernel, gather_kernel, index_kernel, pad_kernel
from .inplace import inplace_operands
from .kernel_writer import Kernel
from .matmul_emit import MatmulEmitter, is_matmul_region
from .memory_plan import MemoryPlan, dead_after_ops, plan_memory
from .module_header import module_header
from .naming import Namer, SizeNames
from .pointwise import can_lower, fused_pointwise_kernel, pointwise_kernel
from .python_literals import python_literal
from .reduction import reduction_kernel
from .row_kernel import fused_row_kernel
from .triton_types import UnsupportedDtype

_KERNEL_BUILDERS = {"index": index_kernel, "gather": gather_kernel, "concat": concat_kernel,
                    "pad": pad_kernel}
_VIEWS = ("reshape", "permute", "expand", "slice")


@dataclass
class GeneratedModule:
    source: str                       # the whole module: header, kernels, wrapper
    kernels: dict[str, str]           # kernel name -> its source
    wrapper_source: str               # the `call` function
    externs: list[dict]
    num_kernels: int                  # launches every call makes (conditional reshape copies excluded)
    interpret: bool
    memory: MemoryPlan                # which buffers reuse dead ones' storage; peak bytes


def uses_interpreter(device: str) -> bool:
    return not device.startswith("cuda")


class WrapperBuilder:
    def __init__(self, graph: Graph, chooser: Chooser | None = None, outputs_in_arena: bool = False,
                 op_index_base: int = 0, template_names: dict[str, str] | None = None):
        self.graph = graph
        # A timing run's template kernels keep the names the whole graph gives them
        # (MatmulEmitter.kernel_names): unnamed source -> name.
        self.template_names = dict(template_names or {})
        self.outputs_in_arena = outputs_in_arena
        # Added to op indices in kernel names: a race's candidate, compiled as its op alone in a
        # graph, is named as the op's kernel will be in the whole graph's module, so that module
        # finds the winner in Triton's cache (the name is part of its key) instead of compiling it.
        self.op_index_base = op_index_base
        self._op_indices: dict[Op, int] | None = None
        # Picks library call or template config per matmul / attention (choice.py); the default
        # one never times anything (the heuristic choice), for callers without options.
        self.chooser = chooser or Chooser(graph.device, cache_dir=None, autotune=False)
        self.interpret = uses_interpreter(graph.device)
        self.namer = Namer(reserved=[str(s) for s in graph.symbols])
        self.sizes = SizeNames(self.namer, list(graph.symbols))
        self.names: dict[Value, str] = {}
        self.ir_names: dict[Value, str] = {}
        self.body: list[str] = []
        self.kernels: dict[str, str] = {}
        self._kernel_names: dict[str, str] = {}   # kernel source (unnamed) -> name, to share kernels
        self._op_index = 0                        # the op being emitted: kernels are numbered by it
        self.externs: list[dict] = []
        self.num_kernels = 0
        self.strides: dict[Value, layouts.Strides] = {}   # layouts known at compile time (layouts.py)
        self.orders: dict[Value, tuple[int, ...]] = {}    # buffers allocated in another dim order
        self.index64: dict[Value, str] = {}   # value -> its INDEX_64 flag expression (see static_index64)
        self._region_kernels: dict[Op, Kernel | None] = {}
        self._attention: dict[Op, attention_emit.TemplateChoice | None] = {}
        self._launchers: dict[str, str] = {}      # Launcher(...) definition -> its module-level name
        self.memory = MemoryPlan()  # planned in build(), once every op's lowering is known
        self._arena_views: dict[str, str] = {}   # torch dtype -> the arena viewed as it, when used
        self.inplace: dict[Op, int] = {}   # elementwise ops writing over an operand (inplace.py)
        self._pointwise_regions: set[Op] = set()   # regions whose one kernel is elementwise
        self.matmuls = MatmulEmitter(self)  # template or library, per matmul and matmul region

    # ------------------------------------------------------------------ helpers
    def line(self, text: str, indent: int = 1) -> None:
        self.body.append("    " * indent + text)

    def op_comment(self, op: Op) -> str:
        lhs = ", ".join(f"{self.ir_names[r]}: {r.type.format(self.graph.device)}" for r in op.results)
        operands = ", ".join(self.ir_names[v] for v in op.inputs)
        return f"# {lhs} = {op.name}{format_attrs(op.name, op.attrs)}" + (f" {operands}" if operands else "")

    def alloc(self, v: Value, name: str, indent: int = 1, order: tuple[int, ...] | None = None,
              storage: TensorType | None = None) -> None:
        """`name = ` a buffer for `v` (a slot of the arena, a dead one's storage or fresh),
        contiguous, or with its dims laid out in memory in `order` (outermost first; a permute of a
        contiguous buffer). `storage`: a larger contiguous buffer to allocate instead (`v` is then
        a view of it that the caller's code makes; memory_plan was told its bytes)."""
        t = v.type
        if v.producer in self.inplace and order is None and storage is None:
            over = self.names[v.producer.inputs[self.inplace[v.producer]]]
            self.strides[v] = layouts.contiguous(t.shape)
            self.line(f"{name} = inplace_or_empty({over}, {self.sizes.shape(t.shape)}, {_torch_dtype(t.dtype)})"
                      f"  # over {over}, read last here", indent)
            return
        memory = t if order is None else TensorType(t.dtype, tuple(t.shape[i] for i in order), t.device)
        memory = storage or memory
        back = "" if order is None else f".permute({', '.join(map(str, layouts.inverse(order)))})"
        if storage is None:
            self.strides[v] = layouts.contiguous(t.shape) if order is None else layouts.in_order(t.shape, order)
        if order is not None:
            self.orders[v] = order
        offset = self.memory.slots.get(v)
        if offset is not None:
            self.line(f"{name} = {self.arena_slice(memory, offset)}{back}  # arena +{offset}", indent)
            return
        reuse = self.memory.reuses.get(v)
        if reuse is not None:
            donor = self.names[reuse.donor]
            self.line(f"{name} = {self.reinterpret(donor, reuse.donor, memory)}{back}  "
                      f"# reuses {donor} (dead after {reuse.dead_after})", indent)
            return
        device = "DEVICE" if t.device == self.graph.device else repr(t.device)
        self.line(f"{name} = torch.empty({self.sizes.shape(memory.shape)}, dtype={_torch_dtype(t.dtype)}, "
                  f"device={device}){back}", indent)

    def arena_slice(self, t: TensorType, offset: int) -> str:
        """The arena's bytes at `offset` as a contiguous tensor of type `t` (offset is a multiple
        of every dtype's size: placement.ALIGN)."""
        dtype = _torch_dtype(t.dtype)
        view = self._arena_views.setdefault(dtype, self.namer.claim(f"arena_{dtype.split('.')[-1]}"))
        size = to_torch(t.dtype).itemsize
        numel = int(sympy.sympify(t.numel))
        start = offset // size
        return f"{view}[{start}:{start + numel}].view({self.sizes.shape(t.shape)})"

    def storage_bytes(self, v: Value):
        """memory_plan's hook: bytes of a buffer larger than its type (a padded library product)."""
        return self.matmuls.storage_bytes(v)

    def mark_contiguous(self, v: Value) -> None:
        """`v` is a fresh contiguous tensor (a library matmul's result)."""
        self.strides[v] = layouts.contiguous(v.type.shape)

    def reinterpret(self, donor: str, old: Value, new: TensorType) -> str:
        """`donor` (a contiguous buffer) as a contiguous tensor of type `new`; the plan
        guarantees equal byte sizes. A dtype change goes through 1-d, where `.view(dtype)` is always
        valid for a contiguous tensor whose bytes divide evenly."""
        shape = self.sizes.shape(new.shape)
        if old in self.orders:  # allocated in another dim order: its memory, contiguous
            donor = f"{donor}.permute({', '.join(map(str, self.orders[old]))})"
        if old.type.dtype != new.dtype:
            return f"{donor}.view(-1).view({_torch_dtype(new.dtype)}).view({shape})"
        if shapes_equal(old.type.shape, new.shape):
            return donor
        return f"{donor}.view({shape})"

    # ------------------------------------------------------------------ int64 indexing
    # A kernel indexes in int64 only when a tensor it touches is too large for int32. Deciding
    # that at every launch from the tensors' sizes and strides cost ~20 us of Python per launch
    # (more than Triton's own launch), so it is decided as early as possible: at compile time for
    # the buffers the wrapper allocates (contiguous, known sizes), once per call for the graph's
    # inputs (`inputs_64`), and views inherit the flag of what they view (a view never reaches
    # beyond its base's elements). Only extern results and symbolic-size buffers are checked at
    # each launch.
    def static_index64(self, v: Value) -> str | None:
        return self.static_index64_of(v.type)

    def static_index64_of(self, t: TensorType) -> str | None:
        numel = sympy.sympify(t.numel)
        if not numel.is_Integer:
            return None
        return "True" if int(numel) >= runtime.INT32_INDEX_LIMIT else "False"

    def index64_of(self, v: Value, names: dict[Value, str]) -> str:
        return self.index64.get(v) or f"needs_int64({names[v]})"

    def index64_expr(self, tensors: list[Value], names: dict[Value, str]) -> str:
        flags = list(dict.fromkeys(self.index64_of(v, names) for v in tensors))
        if "True" in flags:
            return "True"
        flags = [f for f in flags if f != "False"]
        return " or ".join(flags) if flags else "False"

    def op_index(self, op: Op) -> int:
        """The number kernel_name gives the kernels `op` launches first (races ask for it before
        the op is emitted: choices are made while the wrapper is planned)."""
        if self._op_indices is None:
            self._op_indices = {o: self.op_index_base + i for i, o in enumerate(self.graph.ops)}
        return self._op_indices[op]

    def kernel_name(self, kernel: Kernel, op_name: str, want: str | None = None) -> str:
        """The module-level name of `kernel`: one per source. `want`: the name to claim for a new
        source instead of k<op index>_<op_name> (a template's, see MatmulEmitter.kernel_names)."""
        name = self._kernel_names.get(kernel.source)
        if name is None:
            # Numbered by the op that first launches it, not by how many kernels came before:
            # a kernel's name (part of Triton's cache key) then does not depend on what the
            # matmuls before it chose, so the kernels precompile.py compiles while their races
            # are still running keep their names in the module that follows the races.
            name = self.namer.claim(want or f"k{self._op_index}_{op_name}")
            self._kernel_names[kernel.source] = name
            self.kernels[name] = kernel.named(name)
        return name

    def launch(self, kernel: Kernel, op_name: str, names: dict[Value, str], indent: int = 1,
               want: str | None = None) -> None:
        name = self.kernel_name(kernel, op_name, want)
        args = []
        for p in kernel.params:
            if p.kind == "tensor":
                args.append(names[p.value])
            elif p.kind == "size":
                args.append(self.sizes.ref(p.expr))
            else:
                args.append(f"{names[p.value]}.stride({p.dim})")
        cfg = kernel.config
        args.append(f"INDEX_64={self.index64_expr(kernel.tensors, names)}")
        numel = sympy.sympify(kernel.grid_numel)
        if numel == 0:
            self.line("pass  # empty result: nothing to launch", indent)
            return
        if kernel.programs is not None:  # a template counts its own programs (matmul: tiles)
            programs = self.sizes.ref(kernel.programs)
        elif numel.is_Integer:
            programs = str(-(-int(numel) // cfg.XBLOCK))
        else:
            programs = f"cdiv({self.sizes.ref(numel)}, {cfg.XBLOCK})"
        self.line(f"{self.launcher_name(name, cfg)}({', '.join([programs] + args)})", indent)

    def launcher_name(self, kernel_name: str, cfg) -> str:
        """The module-level Launcher (codegen/launcher.py) for `kernel_name` with `cfg`'s block
        sizes and warps; one per distinct pair, shared by the launch sites that use it."""
        return self.launcher_for(kernel_name, cfg.num_warps, cfg.blocks(), cfg.num_stages)

    def launcher_for(self, kernel_name: str, num_warps: int, blocks: dict[str, int],
                     num_stages: int | None = None) -> str:
        """The Launcher for `kernel_name` with these constexpr block sizes (signature order)."""
        stages = f", num_stages={num_stages}" if num_stages is not None else ""
        sizes = ", ".join(f"{k}={v}" for k, v in blocks.items())
        definition = f"Launcher({kernel_name}, DEVICE, num_warps={num_warps}{stages}, {sizes})"
        name = self._launchers.get(definition)
        if name is None:
            name = self.namer.claim(f"launch_{kernel_name}")
            self._launchers[definition] = name
        return name

    # ------------------------------------------------------------------ ops
    def emit(self, op: Op) -> None:
        comment = self.op_comment(op)
        self.line(comment)
        try:
            self._emit(op)
        except UnsupportedDtype as e:
            raise UnsupportedDtype(f"{comment[2:]}: {e}") from None

    def lowering(self, op: Op) -> str:
        """How `op` is emitted, in the terms memory_plan.py plans with: "kernel" (allocates its
        result, one launch), "view" (a torch view of its input), "matmul" or "extern" (library
        calls: torch allocates), "region" (a fused region as one kernel) or "unfused" (the ops of
        `body_of(op)` one by one). A matmul or matmul region is the template's "kernel"/"region"
        or the library's "matmul"/"unfused", as the chooser decides (matmul_emit.py)."""
        if op in self.inplace:
            return "inplace"   # a kernel writing over an operand's storage: torch's, not planned
        if op.name == "matmul" or is_matmul_region(op):
            return self.matmuls.lowering(op)
        if can_lower(op) or op.opdef.kind == "reduction" or op.name in _KERNEL_BUILDERS:
            return "kernel"
        if op.name in _VIEWS:
            return "view"
        if op.name == "extern" and self.attention_template(op) is not None:
            return "kernel"  # ember's flash-attention template, into a buffer the wrapper allocates
        if op.name == "extern":
            return "library_out" if extern_emit.out_variant(op) else op.name
        if op.name == "fused":
            return "region" if self.region_kernel(op) is not None else "unfused"
        raise NotImplementedError(f"codegen has no lowering for op {op.name!r}")

    def elementwise(self, op: Op) -> bool:
        """Is `op` one kernel that reads every operand at the index it writes (inplace.py)?"""
        kind = self.lowering(op)
        if kind == "kernel":
            return can_lower(op)
        # A concat in a pointwise region reads its pieces at shifted coordinates: not elementwise.
        return (kind == "region" and self.region_kernel(op) is not None and op in self._pointwise_regions
                and not any(b.name == "concat" for b in op.attrs["body"].ops))

    def _emit(self, op: Op) -> None:
        kind = self.lowering(op)
        if kind == "inplace":
            kind = "region" if op.name == "fused" else "kernel"
        if kind == "kernel" and op.name == "matmul":
            self.matmuls.emit_template(op)
        elif op.name == "extern" and kind == "kernel":
            attention_emit.emit(self, op, self.attention_template(op))
        elif kind == "kernel":
            if can_lower(op):
                kernel = pointwise_kernel([op])
            elif op.opdef.kind == "reduction":
                kernel = reduction_kernel(op)
            else:
                kernel = _KERNEL_BUILDERS[op.name](op)
            self.kernel_op(op, kernel)
        elif kind == "view":
            self.view_op(op)
        elif kind == "matmul" or (kind == "library_out" and op.name == "matmul"):
            self.matmuls.emit_library(op)
        elif kind in ("extern", "library_out"):
            extern_emit.emit(self, op)
        else:  # "region" or "unfused"
            self.region_op(op)

    def kernel_op(self, op: Op, kernel: Kernel) -> None:
        self.alloc(op.result, self.names[op.result])
        self._set_index64(op.result, self.static_index64(op.result))
        self.launch(kernel, op.name, self.names)
        self.num_kernels += 1

    def attention_template(self, op: Op) -> "attention_emit.TemplateChoice | None":
        """For an SDPA extern: the template config the chooser picked (None: the library call).
        Asked once per op: memory planning needs the answer before the op is emitted."""
        if op not in self._attention:
            self._attention[op] = attention_emit.choose(self, op)
        return self._attention[op]

    def region_kernel(self, op: Op) -> Kernel | None:
        """The one kernel a fused region becomes, or None when its body must run op by op."""
        if is_matmul_region(op):
            return self.matmuls.kernel(op) if self.matmuls.uses_template(op) else None
        if op not in self._region_kernels:
            body = op.attrs["body"]
            try:
                kernel = fused_pointwise_kernel(body)
                if kernel is not None:
                    self._pointwise_regions.add(op)
                else:
                    kernel = fused_row_kernel(body)
            except UnsupportedDtype:
                kernel = None  # op by op, where emit names the failing op
            self._region_kernels[op] = kernel
        return self._region_kernels[op]

    def region_op(self, op: Op) -> None:
        """A fused region: one kernel when its body is a pointwise chain over one iteration space
        or a row kernel's domain (or a matmul template's), else the ops of its body (body_of: a
        matmul region's library body) emitted one by one."""
        body = self.body_of(op)
        for v, outer in zip(body.inputs, op.inputs):
            self.names[v], self.ir_names[v] = self.names[outer], f"%{v.name}"
            self._set_index64(v, self.index64.get(outer))
        kernel = self.region_kernel(op)
        if kernel is not None:
            names = dict(self.names)
            for v, r in zip(body.outputs, op.results):
                self.alloc(r, self.names[r])
                names[v] = self.names[r]
                self._set_index64(r, self.static_index64(r))
                self._set_index64(v, self.static_index64(r))
            if is_matmul_region(op):
                self.matmuls.launch_template(op, op.attrs.get("name") or "fused", names)
            else:
                self.launch(kernel, op.attrs.get("name") or "fused", names)
            self.num_kernels += 1
            return
        for n, inner in enumerate(r for bop in body.ops for r in bop.results):
            self.ir_names[inner] = f"%{n}"
            self.names[inner] = self.namer.claim(f"{self.names[op.results[0]]}_{n}")
        for bop in body.ops:
            self.emit(bop)
        for v, r in zip(body.outputs, op.results):
            self.line(f"{self.names[r]} = {self.names[v]}")
            self._set_index64(r, self.index64.get(v))
            if v in self.strides:
                self.strides[r] = self.strides[v]

    def body_of(self, op: Op) -> Graph:
        return self.matmuls.body_of(op)

    def _set_index64(self, v: Value, flag: str | None) -> None:
        if flag is not None:
            self.index64[v] = flag

    def view_op(self, op: Op) -> None:
        # A view (or, for a reshape torch cannot view, a contiguous copy of the same elements)
        # spans no more than its input.
        self._set_index64(op.result, self.index64.get(op.inputs[0]))
        layouts.emit_view(self, op)

    def literal(self, obj, op: Op) -> str:
        return python_literal(obj, lambda i: self.names[op.inputs[i]], self.sizes.ref)

    # ------------------------------------------------------------------ whole module
    def build(self) -> GeneratedModule:
        g = self.graph
        for v in g.inputs:
            self.ir_names[v] = f"%{v.name}"
            self.names[v] = self.namer.claim(v.name)
        n = 0
        for op in g.ops:
            for r in op.results:
                self.ir_names[r] = f"%{n}"
                self.names[r] = self.namer.claim(f"buf{n}")
                n += 1
        for v in g.inputs:
            self.index64[v] = "inputs_64"
        self.inplace = inplace_operands(g, self.elementwise)
        self.memory = plan_memory(g, self.lowering, self.body_of, self.outputs_in_arena, self.storage_bytes,
                                  self.elementwise)
        dead_after = dead_after_ops(g, self.body_of, self.memory)
        for i, op in enumerate(g.ops):
            self._op_index = self.op_index_base + i
            self.emit(op)
            # Names are looked up after emitting: a region run op by op names its body's values
            # only then (and a region run as one kernel never names them).
            names = [self.names[v] for v in dead_after.get(i, []) if v in self.names]
            if names:
                self.line(f"del {', '.join(names)}")
        return self._assemble()

    def _assemble(self) -> GeneratedModule:
        g = self.graph
        params = ", ".join(["inputs"] + [str(s) for s in g.symbols])
        head = [f"def call({params}):"]
        unpack = ", ".join(self.names[v] for v in g.inputs)
        if g.inputs:
            head.append(f"    {unpack}{',' if len(g.inputs) == 1 else ''} = inputs")
        for v in g.inputs:
            if v.type.device != g.device:  # e.g. a 0-d CPU scalar in a CUDA graph: kernels read device memory
                head.append(f"    {self.names[v]} = {self.names[v]}.to(DEVICE)")
        if g.inputs and any("inputs_64" in line for line in self.body):
            head.append(f"    inputs_64 = needs_int64({unpack})")
        for name, expr in self.sizes.definitions:
            head.append(f"    {name} = {expr}")
        if self._arena_views:
            head.append(f"    arena = new_arena({self.memory.arena_bytes}, DEVICE)"
                        f"  # {len(self.memory.slots)} buffers, placed by memory_plan.py")
            head += [f"    {name} = arena.view({dtype})" for dtype, name in sorted(self._arena_views.items())]
        outputs = ", ".join(self.names[v] for v in g.outputs)
        wrapper = "\n".join(head + self.body + [f"    return [{outputs}]"]) + "\n"
        kernels = "".join(f"{name} = kernel_from(__file__, {content_hash(kernel_file_text(source, self.interpret))!r}, "
                          f"{name!r}, INTERPRET)\n" for name, source in self.kernels.items())
        launchers = "".join(f"{name} = {definition}\n" for definition, name in self._launchers.items())
        header = module_header(g, self.interpret, attention=any(self._attention.values()))
        source = "\n\n".join(filter(None, [header, kernels, launchers, wrapper]))
        return GeneratedModule(source, dict(self.kernels), wrapper, self.externs, self.num_kernels,
                               self.interpret, self.memory)


def generate_module(graph: Graph, chooser: Chooser | None = None,
                    outputs_in_arena: bool = False, op_index_base: int = 0,
                    template_names: dict[str, str] | None = None) -> GeneratedModule:
    """`outputs_in_arena`: the graph's outputs share the arena with its intermediates (memory_plan.py).
    `op_index_base`, `template_names`: see WrapperBuilder (timing runs)."""
    return WrapperBuilder(graph, chooser, outputs_in_arena, op_index_base, template_names).build()


def _torch_dtype(dtype: str) -> str:
    from ..ir import to_torch
    return str(to_torch(dtype))  # "torch.float32"
