"""The compiled-graph cache: a compile that has been done before skips AOTAutograd, lowering, the
passes and codegen, and loads what they produced.

A warm compile (every tuning decision and kernel already cached) still spent most of its time
re-deriving the same module: on GPT-2 (H100, f3ccf23) AOTAutograd 2.7 s and ember's lowering,
passes and codegen 1.1 s of an 8.1-s compile, to write a module that was already in the code
cache. Dynamo's tracing (2.8 s) cannot be skipped: it is what hands us the graph and installs the
guards. So the backend keys what Dynamo hands it, and the first compile of that key stores the
result; a later one (any process) loads it.

    key = graph_key(gm, example_inputs, options)      # None: this graph does not qualify
    hit = load(options.cache_dir, key, name)          # a callable for Dynamo, or None
    ... cold compile through AOTAutograd ...; store(options.cache_dir, key, compiled, ...)

**What the key holds** (sha256 of all of it): the Dynamo graph's code and the qualified name of
every function it calls (get_attr constants by value, HOP subgraphs by their code); each input's
shape, strides, offset, dtype, device (and the GPU's name), requires_grad, whether it is an
inference tensor, and which inputs share storage; ember's options (the dump folder aside), the
fingerprint of the pass pipeline (user passes' sources included), the hash of ember's own source
files, and the torch, Triton and Python versions.

**Which graphs qualify.** What the stored module cannot reproduce must not be stored, so only the
graphs for which AOTAutograd's runtime wrapping is the identity: grad mode off and no autocast
when Dynamo calls us (AOTAutograd's inference path, no AMP wrapper), plain dense tensors as inputs
(no SymInts: static shapes only; no subclasses); then, from AOTAutograd's metadata at the cold
compile, no input mutated, no output aliasing an input or another output, no effect tokens, no
functionalized RNG, the graph's inputs exactly Dynamo's (no duplicates removed, no synthetic
bases, no parameters lifted), and ember's binding taking every input as it comes (no folded
constants). A graph that does not qualify compiles as before; `STATS.bypassed` counts it.

**Files**: `<cache_dir>/graphs/<digest[:2]>/<digest>.json`, written atomically, holding the final
IR's text (parsed back on load: the IR round-trips), the generated module's source (rewritten
to the code cache if missing), how the binding plan maps arguments to IR inputs and IR outputs to
Dynamo's outputs, and the report's figures (kernels, externs, memory, autotune decisions). A file
that cannot be read, parsed or used is reported once (naming the file and the cause), treated as
a miss and overwritten by that compile; it never fails a compile. `dump_dir` set: nothing is
loaded (the dump describes a compile), results are still stored. A loaded graph is not dry-run
before its first call (see `load`): its kernels are expected in Triton's cache.

**Training graphs** (grad mode on) are cached one level down, by `training_graph_key`: the
forward and the backward AOTAutograd hands ember, keyed on their ATen graph and their (fake)
inputs' metadata with the same versions, sources and options, and on how many of the forward's
outputs reach the caller. AOTAutograd still runs at every compile (the autograd wrapping around
the two graphs is its own, rebuilt each time), so what its metadata says needs no check here;
ember's lowering, passes, codegen and dry run run only at the first compile. `TRAINING_STATS`
counts them apart from the inference graphs' `STATS`.

`graph_cache=False` turns all of this off.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import operator
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..atomic_io import write_text_atomic
from ..options import Options

log = logging.getLogger(__name__)

FORMAT = 1  # bump when what a file holds changes meaning
CONSTANT_HASH_LIMIT = 1 << 16  # get_attr constants up to this many elements are keyed by value
_SOURCE_PACKAGES = ("frontend", "ir", "passes", "codegen", "autotune")


@dataclass
class GraphCacheStats:
    hits: int = 0
    misses: int = 0      # keyed, not found (or unusable): compiled and, if it qualifies, stored
    stored: int = 0
    bypassed: int = 0    # graphs that do not qualify (module docstring), or the option off


STATS = GraphCacheStats()
TRAINING_STATS = GraphCacheStats()  # training forwards and backwards (training_graph_key)
_warned: set[str] = set()


class NotCacheable(Exception):
    """Why a graph does not qualify (the message)."""


def _report(path: Path, cause: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        warnings.warn(f"ember graph cache: {path}: {cause}; ignored, it will be rebuilt", stacklevel=3)


@functools.lru_cache(maxsize=1)
def ember_source_digest() -> str:
    """sha256 of every Python file of ember's own packages (not tests, bench or docs): any change
    to lowering, passes or codegen makes old entries misses."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = sorted(root.glob("*.py")) + sorted(p for pkg in _SOURCE_PACKAGES for p in (root / pkg).rglob("*.py"))
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _qualified(target: Any) -> str:
    if isinstance(target, str):
        return target
    try:
        return torch.fx.node._get_qualified_name(target)
    except Exception:  # noqa: BLE001 - an op overload or a callable object: its repr names it
        return f"{type(target).__qualname__}:{target!r}"


def _graph_text(gm: torch.fx.GraphModule, h, depth: int = 0) -> None:
    if depth > 8:
        raise NotCacheable("subgraphs nested too deep")
    h.update(gm.code.encode())
    for node in gm.graph.nodes:
        if node.op == "call_module":
            raise NotCacheable(f"a call of module {node.target!r} that Dynamo did not inline")
        if node.op == "call_function":
            h.update(b"fn " + _qualified(node.target).encode() + b"\n")
        elif node.op == "get_attr":
            value = operator.attrgetter(node.target)(gm)
            if isinstance(value, torch.fx.GraphModule):
                h.update(f"subgraph {node.target}\n".encode())
                _graph_text(value, h, depth + 1)
            elif type(value) in (torch.Tensor, torch.nn.Parameter) and value.layout == torch.strided:
                if value.numel() > CONSTANT_HASH_LIMIT:
                    raise NotCacheable(f"constant {node.target} has {value.numel()} elements")
                h.update(f"constant {node.target} {_tensor_meta(value)}\n".encode())
                h.update(value.detach().reshape(-1).cpu().view(torch.uint8).numpy().tobytes())
            else:
                raise NotCacheable(f"attribute {node.target} is a {type(value).__name__}")


@functools.lru_cache(maxsize=None)
def _device_label(device: torch.device) -> str:
    """The device and what it is (the GPU's name, as tuning keys give it), asked once per device:
    a graph's inputs are mostly parameters, hundreds on one GPU."""
    from ..autotune.keys import device_name
    return f"{device} ({device_name(device)})"


def _tensor_meta(t: torch.Tensor) -> str:
    return (f"{tuple(t.shape)} {t.stride()} +{t.storage_offset()} {t.dtype} {_device_label(t.device)} "
            f"grad={t.requires_grad} inference={t.is_inference()}")


def _options_text(options: Options) -> str:
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "dump_dir"}
    return repr(sorted(fields.items()))


def graph_key(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], options: Options) -> str:
    """The digest a compile of `gm` on inputs like `example_inputs` is stored under (see the
    module docstring); raises NotCacheable saying why the graph does not qualify."""
    if not options.graph_cache:
        raise NotCacheable("option graph_cache is off")
    if torch.is_grad_enabled():
        raise NotCacheable("grad mode is on")
    if any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda")):
        raise NotCacheable("autocast is on")
    h = _versions_and_options(options, "dynamo graph")
    storages: dict[int, int] = {}
    for i, t in enumerate(example_inputs):
        if type(t) not in (torch.Tensor, torch.nn.Parameter) or t.layout != torch.strided:
            raise NotCacheable(f"input {i} is a {type(t).__name__}, not a dense tensor")
        ptr = t.untyped_storage().data_ptr()
        shares = storages.setdefault(ptr, i) if ptr else i  # empty storages alias nothing
        h.update(f"input {i} {_tensor_meta(t)} storage-of {shares}\n".encode())
    _graph_text(gm, h)
    return h.hexdigest()


def _versions_and_options(options: Options, level: str):
    """A sha256 holding what every key holds besides the graph: the level it caches at, the
    versions, ember's sources, the pipeline and the options."""
    from ..passes import pipeline_fingerprint
    import triton
    h = hashlib.sha256(f"ember-graph-cache-v{FORMAT} {level}\n".encode())
    h.update(f"torch {torch.__version__} triton {triton.__version__} python {platform.python_version()}\n".encode())
    h.update(f"ember {ember_source_digest()}\npipeline {pipeline_fingerprint(options.pipeline)}\n".encode())
    h.update(f"options {_options_text(options)}\n".encode())
    return h


def training_graph_key(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], options: Options,
                       caller_outputs: int) -> str:
    """The digest of a training forward or backward as AOTAutograd hands it to ember (its inputs
    are fake tensors); raises NotCacheable saying why it does not qualify. `caller_outputs`:
    how many leading outputs reach the caller (the compiled graph copies those out)."""
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.multiprocessing.reductions import StorageWeakRef
    if not options.graph_cache:
        raise NotCacheable("option graph_cache is off")
    h = _versions_and_options(options, f"training graph, {caller_outputs} caller outputs")
    storages: dict[Any, int] = {}
    for i, t in enumerate(example_inputs):
        if type(t) not in (torch.Tensor, torch.nn.Parameter, FakeTensor) or t.layout != torch.strided:
            raise NotCacheable(f"input {i} is a {type(t).__name__}, not a dense tensor")
        storage = t.untyped_storage()
        shares = storages.setdefault(StorageWeakRef(storage), i) if storage.nbytes() else i
        h.update(f"input {i} {_tensor_meta(t)} storage-of {shares}\n".encode())
    _graph_text(gm, h)
    return h.hexdigest()


def path_for(cache_dir: str, digest: str) -> Path:
    return Path(cache_dir) / "graphs" / digest[:2] / f"{digest}.json"


@dataclass
class StoredMemory:
    """What the report reads of a memory plan (codegen/memory_plan.MemoryPlan), as stored."""
    peak_bytes_planned: int | str
    peak_bytes_unplanned: int | str
    figures: dict

    def summary(self) -> dict:
        return dict(self.figures)


@dataclass
class StoredModule:
    """What CompiledGraph reads of a GeneratedModule (codegen/wrapper.py), as stored."""
    source: str
    kernels: dict[str, str]
    wrapper_source: str
    externs: list[dict]
    num_kernels: int
    interpret: bool
    memory: StoredMemory


def why_not_storable(fx_graph, aot_meta, aot_gm: torch.fx.GraphModule, num_inputs: int) -> str | None:
    """Why a compiled inference graph must not be stored (None: it may): see the module doc."""
    from torch._functorch._aot_autograd.schemas import OutputType
    from .compile import CompiledFxGraph
    if not isinstance(fx_graph, CompiledFxGraph):
        return "the graph runs eagerly (not lowered)"
    if aot_meta is None:
        return "no AOTAutograd metadata"
    if aot_meta.mutated_inp_runtime_indices:
        return "it mutates inputs"
    if any(o.output_type != OutputType.non_alias for o in aot_meta.output_info) or aot_meta.num_intermediate_bases:
        return "an output aliases an input or another output"
    if aot_meta.tokens or getattr(aot_meta, "is_rng_op_functionalized", False):
        return "effect tokens or functionalized RNG"
    placeholders = sum(1 for n in aot_gm.graph.nodes if n.op == "placeholder")
    if placeholders != num_inputs:
        return f"AOTAutograd's graph takes {placeholders} inputs, Dynamo's {num_inputs}"
    return why_not_storable_plan(fx_graph)


def why_not_storable_plan(fx_graph) -> str | None:
    """Why a compiled graph's binding cannot be stored (None: it can): the stored plan takes
    every argument as it comes and returns tensors or plain numbers."""
    from .compile import CompiledFxGraph
    if not isinstance(fx_graph, CompiledFxGraph):
        return "the graph runs eagerly (not lowered)"
    plan = fx_graph.plan
    if plan.symbols or any(kind != "arg" for kind, _ in plan.inputs):
        return "symbolic sizes or folded constants"
    if any(kind == "expr" or (kind == "value" and not isinstance(v, (int, float, bool, type(None))))
           for kind, v in plan.outputs):
        return "an output that is not a tensor or a plain number"
    return None


def store(cache_dir: str, digest: str, fx_graph) -> Path | None:
    """Write fx_graph (a CompiledFxGraph that qualified) under digest; None if the IR does not
    round-trip or the folder cannot be written (reported, never raised)."""
    from ..ir import parse, print_graph
    compiled = fx_graph.compiled
    ir_text = print_graph(compiled.graph)
    path = path_for(cache_dir, digest)
    try:
        if print_graph(parse(ir_text)) != ir_text:
            raise ValueError("printed again, the parsed IR differs")
    except Exception as e:  # noqa: BLE001 - an IR printer/parser gap costs this graph its caching
        log.info("ember graph cache: %s not stored: its IR does not round-trip (%s)", fx_graph.name, e)
        return None
    doc = {
        "format": FORMAT, "name": fx_graph.name, "ir": ir_text,
        "module": {"source": compiled.module_source, "kernels": compiled.kernels,
                   "wrapper_source": compiled.wrapper_source, "externs": compiled.externs,
                   "num_kernels": compiled.num_kernels, "interpret": compiled.module_interpret},
        "memory": {"peak_bytes_planned": compiled.peak_bytes_planned,
                   "peak_bytes_unplanned": compiled.peak_bytes_unplanned, "figures": compiled.memory},
        "inputs": [x for _, x in fx_graph.plan.inputs],
        "outputs": [list(o) for o in fx_graph.plan.outputs],
        "copy_out": list(compiled.copy_out), "autotune": compiled.autotune,
    }
    try:
        write_text_atomic(path, json.dumps(doc, sort_keys=True, default=_no_json))
    except (OSError, TypeError, ValueError) as e:
        _report(path, f"cannot write ({e})")
        return None
    _warned.discard(str(path))
    return path


def _no_json(value):
    raise TypeError(f"{type(value).__name__} is not JSON")


def load(cache_dir: str, digest: str, name: str, options: Options) -> Callable | None:
    """The stored graph as the callable Dynamo runs (args -> outputs), or None (absent, or
    unusable: then reported once)."""
    fx_graph = load_compiled(cache_dir, digest, name, options)
    if fx_graph is None:
        return None

    def run(*args):
        return fx_graph(list(args))
    run.ember_graph = fx_graph  # for tests and reports: what runs
    return run


def load_compiled(cache_dir: str, digest: str, name: str, options: Options):
    """The stored graph as the CompiledFxGraph AOTAutograd runs (a boxed call), or None (absent,
    or unusable: then reported once)."""
    from ..codegen.compiled_graph import load_generated
    from ..ir import parse
    from .binding import BindingPlan
    from .compile import CompiledFxGraph
    path = path_for(cache_dir, digest)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        _report(path, f"cannot read ({e})")
        return None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT}")
        graph = parse(doc["ir"])
        m, mem = doc["module"], doc["memory"]
        generated = StoredModule(m["source"], dict(m["kernels"]), m["wrapper_source"], list(m["externs"]),
                                 int(m["num_kernels"]), bool(m["interpret"]),
                                 StoredMemory(mem["peak_bytes_planned"], mem["peak_bytes_unplanned"],
                                              dict(mem["figures"])))
        plan = BindingPlan(inputs=[("arg", int(i)) for i in doc["inputs"]],
                           outputs=[(str(kind), x) for kind, x in doc["outputs"]])
        if len(plan.inputs) != len(graph.inputs) or \
                any(kind == "ir" and not 0 <= x < len(graph.outputs) for kind, x in plan.outputs):
            raise ValueError("its binding does not fit its IR")
        # No dry run (precompile.py): the compile that stored this graph left its kernels in
        # Triton's cache at its first call, and a dry run's fake tensors cost more than the cache
        # hits it would overlap (GPT-2 on the H100: a warm first call of 5.4 s with it, 3.8 s
        # without). Kernels missing there (another TRITON_CACHE_DIR, an imported ember cache)
        # compile at their first launch, one after another.
        compiled = load_generated(graph, generated, options, [int(j) for j in doc["copy_out"]], doc["autotune"],
                                  dry_run=False)
    except Exception as e:  # noqa: BLE001 - any damage is a miss, never a failed compile
        _report(path, f"unusable ({type(e).__name__}: {e})")
        return None
    fx_graph = CompiledFxGraph(name, plan, compiled)
    fx_graph.graph_cache = "hit"
    return fx_graph
