"""How the wrapper emits a `matmul` and a matmul region (a `fused` op holding one, made by the
fuse_matmul pass): ember's template (matmul_template.py) at a chosen config, or the library.

For each such op the graph's Chooser (choice.py) picks one implementation:
  * "library": torch.matmul (runtime.mm_aligned for a 2-d CUDA product whose sizes are not
    multiples of 16 bytes), or torch.addmm when a 2-d region's epilogue is exactly a bias add.
    For a region the library path runs its prologue as a kernel of its own, then the library
    matmul, then the rest of the epilogue as ONE fused pointwise kernel (a nested region), never
    op by op. Left out when `Options.matmul_library` is False (the template alone), and the only
    implementation where the template cannot run (f64, integer products, ...).
  * the template at one config of its search space (pruned by the problem's sizes).
Untimed, the heuristic takes the template at a size-appropriate config (the CPU interpreter,
`autotune=False`: so CPU tests run the template and its epilogues); for symbolic sizes on a GPU,
where nothing can be timed, the library (when it may race), as a safe default.

The decision is made once per op, the first time the wrapper asks how an op is lowered (the
memory planner asks before anything is emitted), and every later question reads it back.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Sequence

import sympy
import torch

from ..ir import Graph, Op, RegionBody, Value
from ..ir.dtypes import itemsize
from ..ir.externs import ExternArg
from ..ir.types import TensorType, dims_equal
from .choice import Chooser, Implementation
from .matmul_tma import INTERPRETER_SMS
from .matmul_template import MatmulConfig, MatmulKernel, matmul_kernel, split_matmul_body, template_ops

if TYPE_CHECKING:
    from .wrapper import WrapperBuilder

LIBRARY = "library"
ADDMM_REASON = "matmul + bias: the library adds the bias in its epilogue (chosen over ember's template)"


def is_matmul_region(op: Op) -> bool:
    return op.name == "fused" and any(b.name == "matmul" for b in op.attrs["body"].ops)


class MatmulEmitter:
    def __init__(self, builder: "WrapperBuilder"):
        self.b = builder
        self.allow_tf32 = bool(torch.backends.cuda.matmul.allow_tf32) and not builder.interpret
        self._chosen: dict[Op, Implementation] = {}
        self._templates: dict[Op, MatmulKernel | None] = {}
        self._library_bodies: dict[Op, Graph] = {}
        self._library_only: set[Op] = set()   # matmuls inside a library body: already decided
        self.num_sms = _tma_programs(builder.graph.device, builder.interpret)  # 0: no TMA variant
        self._names: dict[str, str] = dict(builder.template_names)  # unnamed source -> kernel name

    # ------------------------------------------------------------------ the decision
    def template(self, op: Op) -> MatmulKernel | None:
        if op not in self._templates:
            ops, outputs = template_ops(op)
            outer = dict(zip(op.attrs["body"].inputs, op.inputs)) if op.name == "fused" else {}
            self._templates[op] = None if op in self._library_only else \
                matmul_kernel(ops, outputs, interpret=self.b.interpret, allow_tf32=self.allow_tf32,
                              num_sms=self.num_sms, tma_layout=lambda v: self._contiguous_dim(outer.get(v, v)))
        return self._templates[op]

    def _contiguous_dim(self, v: Value) -> int | None:
        """The dim of a 2-d operand source `v` (a value of the graph) that is contiguous, as far as
        compile time tells: the wrapper's known strides, else a permute's (a Linear's weight read
        transposed is a permute of a contiguous parameter), else a timing run's stated input
        layout, else dim 1. None for a source of another rank. The launch checks the truth
        (launch_template)."""
        if v.type.rank != 2:
            return None
        strides = self.b.strides.get(v)
        if strides is not None and strides[0] == 1 and strides[1] != 1:
            return 0
        if strides is not None:
            return 1
        p = v.producer
        if p is None:
            order = self.b.chooser.input_layouts.get(v.name)
        else:
            order = tuple(p.attrs["dims"]) if p.name == "permute" else None
        return order.index(1) if order is not None else 1

    def choice(self, op: Op) -> Implementation:
        if op in self._chosen:
            return self._chosen[op]
        library = Implementation(LIBRARY, {}, is_library=True)
        mk = self.template(op)
        if mk is None:
            pick = library
        else:
            heuristic_cfg = mk.heuristic()
            chooser = self.b.chooser
            untimed_template = chooser.interpret or not chooser.autotune
            space = mk.search_space()
            # A race's first template candidate is its screen's probe (tuner.screened_out): the
            # TMA kernel at the heuristic's tile where it is offered. In the model suite's races
            # (at 35b85cc) it ran 1.05-1.45x faster than the tiled kernel at that tile on BERT,
            # ConvNeXt, Llama and ViT (up to 1.1x slower on GPT-2's products, which the library
            # wins anyway), and the tiled probe had screened out races the TMA kernel won
            # (ConvNeXt's and BERT's MLP).
            # Where the TMA kernel is offered, the race has no tiled config (search_space).
            probe = dataclasses.replace(heuristic_cfg, TMA=True)
            tma_race = not untimed_template and probe in space
            configs = list(dict.fromkeys([probe, *space] if tma_race else [heuristic_cfg, *space]))
            impls = [Implementation(c.name, c.as_dict()) for c in configs]
            if chooser.matmul_library:
                impls.insert(0, library)

            def heuristic(xs: Sequence[Implementation]) -> Implementation:
                if not untimed_template and xs[0].is_library:
                    return xs[0]  # symbolic sizes on a GPU: nothing to time; the library is safe
                named = [x for x in xs if x.name == heuristic_cfg.name]
                # A TMA race has no tiled config: its default is its probe.
                return named[0] if named else next(x for x in xs if not x.is_library)

            pick = chooser.choose("matmul", mk.source, [v.type for v in op.inputs], impls,
                                  self._runner_maker(op), heuristic)
        self._chosen[op] = pick
        return pick

    def uses_template(self, op: Op) -> bool:
        return not self.choice(op).is_library

    def lowering(self, op: Op) -> str:
        """memory_plan's terms: a template allocates its results ("kernel" / "region"); the
        library's matmul writes a buffer the wrapper allocates through mm/bmm's out= form
        ("library_out") or is torch's ("matmul": a broadcast batched product); a library region
        runs its library body ("unfused")."""
        template = self.uses_template(op)
        if op.name == "matmul":
            return "kernel" if template else ("library_out" if _library_out(op) else "matmul")
        return "region" if template else "unfused"

    def storage_bytes(self, v: Value) -> sympy.Expr | None:
        """The bytes of a library product written into padded rows (mm_aligned), else None."""
        op = v.producer
        if op is None or op.name != "matmul" or op in self._templates and self.uses_template(op):
            return None
        padded = aligned_mm_sizes(op)
        if padded is None:
            return None
        return padded[0] * padded[2] * itemsize(v.type.dtype)

    def kernel(self, op: Op):
        """The chosen template config's Kernel for `op` (uses_template(op) must hold)."""
        return self.template(op).with_config(MatmulConfig.from_dict(self.choice(op).config))

    def kernel_names(self, op: Op) -> dict[str, str]:
        """The names of `op`'s template kernels (the tiled one, the TMA one), by unnamed source.
        A source is named after the first op that asks for it, k<index>_<region name> (+"_tma"),
        and keeps that name for every op of the graph with the same source and in every timing
        run of them. Template sources hold no sizes, so the products of one shape family (a
        ConvNeXt stage's MLP and the next stage's) share one source, and with one name a config
        compiled for one race is already compiled for the next (Triton keys a kernel by its
        source and name)."""
        mk = self.template(op)
        label = (op.attrs.get("name") or "fused") if op.name == "fused" else "matmul"
        kernels = [(mk.kernel.source, "")] + ([(mk.tma.kernel.source, "_tma")] if mk.tma is not None else [])
        for source, suffix in kernels:
            self._names.setdefault(source, f"k{self.b.op_index(op)}_{label}{suffix}")
        return {source: self._names[source] for source, _ in kernels}

    # ------------------------------------------------------------------ emitting
    def emit_template(self, op: Op) -> None:
        """A bare matmul through the template: allocate the result, one launch."""
        b = self.b
        b.alloc(op.result, b.names[op.result])
        b._set_index64(op.result, b.static_index64(op.result))
        self.launch_template(op, "matmul", b.names)
        b.num_kernels += 1

    def launch_template(self, op: Op, name: str, names: dict[Value, str], indent: int = 1) -> None:
        """Launch `op`'s template kernel. The TMA kernel is written for its operands' layouts
        (matmul_tma.py); behind a run-time test of them, the tiled kernel at its heuristic config
        runs where they differ (an input laid out otherwise, an unaligned view)."""
        b = self.b
        kernel = self.kernel(op)
        named = self.kernel_names(op)
        if not kernel.config.TMA:
            b.launch(kernel, name, names, indent, named[kernel.source])
            return
        mk = self.template(op)
        tests = " and ".join(f"tma_ready({names[v]}, {dim})" for v, dim in mk.tma.operands)
        b.line(f"if {tests}:", indent)
        b.launch(kernel, name, names, indent + 1, named[kernel.source])
        b.line("else:  # an operand is not laid out as the TMA kernel reads it: the tiled kernel", indent)
        b.launch(mk.with_config(mk.heuristic()), name, names, indent + 1, named[mk.kernel.source])

    def emit_library(self, op: Op) -> None:
        """A bare matmul through the library: torch.matmul, or mm_aligned for unaligned sizes."""
        b = self.b
        a, w = (b.names[v] for v in op.inputs)
        out, t = b.names[op.result], op.result.type
        padded = aligned_mm_sizes(op)
        if padded is None and _library_out(op):
            b.alloc(op.result, out)
            b.line(f"torch.{'mm' if t.rank == 2 else 'bmm'}({a}, {w}, out={out})")
            b._set_index64(op.result, b.static_index64(op.result))
        elif padded is None:
            b.line(f"{out} = torch.matmul({a}, {w})")
            b._set_index64(op.result, b.static_index64(op.result))  # a new contiguous tensor
            if op.result.type.rank == 2:   # mm's result: its reshapes are views, known here
                b.mark_contiguous(op.result)
        else:
            # cuBLAS has only slow kernels for sizes that are not multiples of 16 bytes (GPT-2's
            # 50257-word vocabulary): multiply padded copies into padded rows, keep the [M, N] corner.
            m, k, n = (b.sizes.ref(d) for d in padded)
            storage = TensorType(t.dtype, (padded[0], padded[2]), t.device)
            b.alloc(op.result, f"{out}_padded", storage=storage)
            b.line(f"{out} = mm_aligned({a}, {w}, {m}, {k}, {n}, {out}_padded)  # sizes padded to 16 bytes")
            b._set_index64(op.result, b.static_index64_of(storage))
        why = "the template cannot compute it" if self.template(op) is None and op not in self._library_only \
            else "the library was chosen over ember's template"
        b.externs.append({"op": "matmul", "target": "aten.matmul", "reason": why})

    # ------------------------------------------------------------------ the library body of a region
    def body_of(self, op: Op) -> Graph:
        """What a matmul region runs: its own body for the template, else its library body."""
        if not is_matmul_region(op) or self.uses_template(op):
            return op.attrs["body"]
        if op not in self._library_bodies:
            self._library_bodies[op] = self._library_body(op.attrs["body"], op.attrs.get("name") or "fused")
        return self._library_bodies[op]

    def _library_body(self, body: Graph, name: str) -> Graph:
        """The region's body rewritten for the library: prologue ops as they are, then
        extern[aten.addmm] for a 2-d product plus a bias, else the matmul (marked library) and one
        nested region holding the whole epilogue."""
        parts = split_matmul_body(body.ops, body.outputs)
        mms = [o for o in body.ops if o.name == "matmul"]
        self._library_only.update(mms)
        if parts is None:  # nothing the template could do: op by op, with the library's matmul
            return body
        mm, epilogue = parts.matmul, parts.epilogue
        out = Graph(body.name, body.device)
        out.symbols, out.inputs = body.symbols, list(body.inputs)
        out.ops = [o for o in body.ops if o in parts.prologues.values()]
        bias = _bias_of(mm, epilogue, body.outputs)
        if bias is not None:
            a, w = mm.inputs
            addmm = Op("extern", [bias, a, w], {"target": "aten.addmm.default",
                                                "args": [ExternArg(0), ExternArg(1), ExternArg(2)],
                                                "kwargs": {}, "outputs": (0,), "reason": ADDMM_REASON},
                       [epilogue[0].result.type])
            out.ops.append(addmm)
            out.outputs = [addmm.result]
            return out
        out.ops.append(mm)
        results = {mm.result: mm.result}
        if epilogue:
            nested = _region(body, epilogue, [v for v in body.outputs if v is not mm.result], f"{name}_epilogue")
            out.ops.append(nested)
            produced = [v for v in body.outputs if v is not mm.result]
            results.update(zip(produced, nested.results))
        out.outputs = [results[v] for v in body.outputs]
        return out

    # ------------------------------------------------------------------ timing runs (GPU only)
    def _runner_maker(self, op: Op) -> Callable[[Implementation, list[torch.Tensor]], Callable[[], Any]]:
        layouts = [_layout_of(v) for v in op.inputs]
        from .code_cache import scratch_dir
        cache_dir = self.b.chooser.cache_dir or scratch_dir()
        op_index = self.b.op_index(op)
        template_names = self.kernel_names(op)  # the winner's kernel keeps its name in the graph's module

        def make_runner(impl: Implementation, tensors: list[torch.Tensor]) -> Callable[[], Any]:
            """`op` alone in a graph, compiled with `impl` imposed: what the wrapper would run."""
            from .code_cache import load_module, write_generated
            from .wrapper import generate_module
            g = Graph("tune", self.b.graph.device)
            g.symbols = list(self.b.graph.symbols)
            ins = [g.add_input(f"x{i}", v.type) for i, v in enumerate(op.inputs)]
            attrs = {k: (v.copy() if isinstance(v, Graph) else v) for k, v in op.attrs.items()}
            clone = Op(op.name, ins, attrs, [r.type for r in op.results])
            g.ops, g.outputs = [clone], list(clone.results)
            chooser = FixedChoice(g.device, impl)
            chooser.input_layouts = {v.name: order for v, order in zip(ins, layouts) if order is not None}
            generated = generate_module(g, chooser, op_index_base=op_index, template_names=template_names)
            path, _ = write_generated(cache_dir, generated)
            call = load_module(path, generated.interpret).call
            args = [_with_layout(t, order) for t, order in zip(tensors, layouts)]
            return lambda: call(args)
        return make_runner


class FixedChoice(Chooser):
    """A Chooser that always answers with the implementation named like `impl` (timing runs, tests)."""

    def __init__(self, device: str, impl: Implementation | str):
        super().__init__(device, cache_dir=None, autotune=False)
        self.name = impl if isinstance(impl, str) else impl.name

    def choose(self, what, template_source, operands, impls, make_runner, heuristic=None):
        if self.name == "template":  # tests: the template at whatever config the heuristic takes
            pick = (heuristic or (lambda xs: xs[0]))([i for i in impls if not i.is_library])
        else:
            pick = next((i for i in impls if i.name == self.name), None)
            if pick is None:
                raise ValueError(f"no implementation named {self.name!r} among {[i.name for i in impls]}")
        self._record(what, None, pick, "fixed", {})
        return pick


def _tma_programs(device: str, interpret: bool) -> int:
    """Programs the persistent TMA matmul launches: one per SM on a GPU with TMA (compute
    capability 9.0+, Hopper), a few on the interpreter (tests), 0 (no TMA variant) elsewhere."""
    if interpret:
        return INTERPRETER_SMS
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return 0
    index = torch.device(device).index
    props = torch.cuda.get_device_properties(index if index is not None else torch.cuda.current_device())
    return props.multi_processor_count if (props.major, props.minor) >= (9, 0) else 0


def _bias_of(mm: Op, epilogue: list[Op], outputs: list[Value]) -> Value | None:
    """The bias when the epilogue is exactly `add(product, bias)` on a 2-d product, the bias an
    [n] or [1, n] input of the product's dtype, and the add's result the one output."""
    if len(epilogue) != 1 or epilogue[0].name != "add" or mm.result.type.rank != 2:
        return None
    add = epilogue[0]
    if outputs != [add.result] or add.inputs.count(mm.result) != 1:
        return None
    bias = add.inputs[1] if add.inputs[0] is mm.result else add.inputs[0]
    n, t = mm.result.type.shape[1], bias.type
    ok = (t.rank == 1 and dims_equal(t.shape[0], n)) or \
        (t.rank == 2 and dims_equal(t.shape[0], 1) and dims_equal(t.shape[1], n))
    if not ok or t.dtype != mm.result.type.dtype or bias.producer is not None:
        return None
    return bias


def _region(outer: Graph, ops: list[Op], outputs: list[Value], name: str) -> Op:
    """A `fused` op holding `ops` (all of `outer`'s body values they read become its operands)."""
    rb = RegionBody(outer)
    for op in ops:
        rb.copy(op)
    return rb.finish(outputs, name)


def _layout_of(v: Value) -> tuple[int, ...] | None:
    """The dim order a permute gives its (presumably contiguous) input's memory: a Linear's
    transposed weight is read column-major, and tuning should see that layout."""
    p = v.producer
    return tuple(p.attrs["dims"]) if p is not None and p.name == "permute" else None


def _with_layout(t: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    if dims is None:
        return t
    inverse = [dims.index(i) for i in range(len(dims))]
    return t.permute(inverse).contiguous().permute(dims)


PAD_MIN_SIZE = 256        # smaller sizes gain little from an aligned GEMM; copies would cost more
PAD_DEVICES = ("cuda",)   # cuBLAS's concern; tests add "cpu" to run the code path here


def _library_out(op: Op) -> bool:
    """Can the library write `op`'s product into a buffer the wrapper allocates (mm.out or
    bmm.out: both operands 2-d, or 3-d with one batch size; or mm_aligned's padded rows)?"""
    a, w = (v.type for v in op.inputs)
    if aligned_mm_sizes(op) is not None:
        return True
    if a.dtype != w.dtype or a.dtype != op.result.type.dtype:
        return False
    return (a.rank == w.rank == 2) or (a.rank == w.rank == 3 and dims_equal(a.shape[0], w.shape[0]))


def aligned_mm_sizes(op: Op) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr] | None:
    """(M, K, N) for runtime.mm_aligned, each rounded up to a multiple of 16 bytes where it is a
    concrete size >= PAD_MIN_SIZE that is not one, for a 2-d CUDA matmul; None when no size
    needs it (the matmul is left to torch.matmul). Sizes stay as written where not padded."""
    a, b = op.inputs
    t = op.result.type
    if t.rank != 2 or not str(t.device).startswith(PAD_DEVICES):
        return None
    per = max(1, 16 // itemsize(t.dtype))
    sizes, changed = [], False
    for d in (a.type.shape[0], a.type.shape[1], b.type.shape[1]):
        d = sympy.sympify(d)
        if d.is_Integer and int(d) >= PAD_MIN_SIZE and int(d) % per:
            sizes.append(sympy.Integer(-(-int(d) // per) * per))
            changed = True
        else:
            sizes.append(d)
    return tuple(sizes) if changed else None
