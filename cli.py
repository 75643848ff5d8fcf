"""`python -m ember ...`: inspect and run IR files.

    python -m ember ir check FILE          parse + verify; print canonical text (exit 0) or
                                           FILE:line:col: cause (exit 1)
    python -m ember ir run FILE [--pipeline P] [--execute]
                                           run the pass pipeline on FILE and print the result; with
                                           --execute, also compile it and compare against the
                                           reference interpreter on random inputs
    python -m ember passes                 list registered passes
    python -m ember cache ls               tuning decisions (key, choice, size, age), code files
    python -m ember cache clear            remove decisions, generated code and compiled graphs
    python -m ember cache export FILE      write decisions and code to FILE (.tar.gz, .tgz, .zip)
    python -m ember cache import FILE      merge an exported FILE into the cache
                                           (each takes --cache-dir DIR; default: EMBER_CACHE_DIR,
                                           else ~/.cache/ember; see docs/autotune.md)
"""
from __future__ import annotations

import argparse
import sys


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise SystemExit(f"{path}: cannot read: {e.strerror}")


def _load(path: str):
    from .ir import IRParseError, VerificationError, parse, verify
    try:
        g = parse(_read(path))
        verify(g)
    except IRParseError as e:
        print(f"{path}:{e.line}:{e.col}: {e.msg}", file=sys.stderr)
        return None
    except VerificationError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return None
    return g


def cmd_ir_check(args) -> int:
    g = _load(args.file)
    if g is None:
        return 1
    sys.stdout.write(str(g))
    return 0


def random_inputs(g, size: int = 3):
    """Random (never zero) inputs for a graph; every symbol is bound to `size`."""
    import torch
    from .ir import to_torch
    from .ir.interpreter import concretize
    env = {s: size for s in g.symbols}
    out = []
    for v in g.inputs:
        shape = concretize(tuple(v.type.shape), env)
        dt = to_torch(v.type.dtype)
        if dt.is_floating_point:
            t = torch.randn(shape, dtype=torch.float32).to(dt)
        elif dt == torch.bool:
            t = torch.rand(shape) > 0.5
        else:
            t = torch.randint(0, max(2, size), shape, dtype=dt)
        out.append(t.to(v.type.device))
    return out, env


def cmd_ir_run(args) -> int:
    g = _load(args.file)
    if g is None:
        return 1
    from .options import Options
    from .passes import PassContext, run_pipeline
    opts = Options(pipeline=args.pipeline) if args.pipeline else Options()
    original = g.copy()
    report = run_pipeline(g, opts.pipeline, PassContext(verify=True))
    for rec in report.records:
        print(f"// {rec.name}: changed={rec.changed} {rec.stats}", file=sys.stderr)
    sys.stdout.write(str(report.graph))
    if args.execute:
        import torch
        from .codegen import compile_graph
        from .ir import interpret
        inputs, env = random_inputs(original)
        expected = interpret(original, inputs, env)
        got = compile_graph(report.graph, opts)(inputs, env)
        for i, (a, b) in enumerate(zip(got, expected)):
            torch.testing.assert_close(a, b, equal_nan=True, msg=lambda m: f"output {i}: {m}")
        print(f"// executed: {len(got)} output(s) match the reference interpreter", file=sys.stderr)
    return 0


def cmd_passes(args) -> int:
    from .passes import list_passes
    for name, desc in sorted(list_passes().items()):
        print(f"{name:24s} {desc}")
    return 0


def _cache(args):
    from .autotune import TuningCache
    return TuningCache(args.cache_dir)  # None: the cache_dir option's default


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def cmd_cache_ls(args) -> int:
    import time
    cache = _cache(args)
    entries = cache.entries()
    print(f"{cache.tuning_dir}: {len(entries)} decision(s)")
    now = time.time()
    for e in entries:
        digest = e.path.stem[:12]
        if e.problem is not None:
            print(f"  {digest}  INVALID ({e.problem})  {e.path}")
            continue
        d = e.decision
        config = d.get("config")  # a decision is any JSON object; show what tune() writes
        config = " ".join(f"{k}={v}" for k, v in sorted(config.items())) if isinstance(config, dict) else ""
        print(f"  {digest}  {d.get('name')} {config}  {e.key.summary()}  "
              f"{e.size} B  {_age(now - e.mtime)} old")
    code = cache.code_files()
    size = sum(p.stat().st_size for p in code if p.exists())
    print(f"{cache.code_dir}: {len(code)} code file(s), {size / 1024:.1f} KiB")
    graphs = cache.graph_files()
    size = sum(p.stat().st_size for p in graphs if p.exists())
    print(f"{cache.graphs_dir}: {len(graphs)} compiled graph(s), {size / 1024:.1f} KiB")
    return 0


def cmd_cache_clear(args) -> int:
    cache = _cache(args)
    n = cache.clear()
    print(f"removed from {cache.root}: {n['decisions']} decision(s), {n['code_files']} code "
          f"file(s), {n['graphs']} compiled graph(s), {n['other_files']} other file(s)")
    return 0


def cmd_cache_export(args) -> int:
    from .autotune import ArchiveError
    try:
        n = _cache(args).export(args.file)
    except (ArchiveError, OSError) as e:
        print(f"ember cache export: {e}", file=sys.stderr)
        return 1
    print(f"exported {n['decisions']} decision(s), {n['code_files']} code file(s) and {n['graphs']} "
          f"compiled graph(s) to {args.file}")
    return 0


def cmd_cache_import(args) -> int:
    import warnings
    from .autotune import ArchiveError
    cache = _cache(args)
    try:
        with warnings.catch_warnings():  # skipped members are printed below instead
            warnings.simplefilter("ignore")
            report = cache.import_(args.file)
    except (ArchiveError, OSError) as e:
        print(f"ember cache import: {e}", file=sys.stderr)
        return 1
    for line in report.skipped:
        print(f"ember cache import: {args.file}: skipped {line}", file=sys.stderr)
    print(f"imported {report.decisions} decision(s), {report.code_files} code file(s) and "
          f"{report.graphs} compiled graph(s) into {cache.root}" + (f"; skipped {len(report.skipped)}" if report.skipped else ""))
    return 0


def _add_cache_commands(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", default=None,
                        help="cache folder (default: EMBER_CACHE_DIR, else ~/.cache/ember)")
    cache = sub.add_parser("cache", help="list, clear, export or import the tuning and code cache")
    cs = cache.add_subparsers(dest="cachecmd", required=True)
    cs.add_parser("ls", parents=[common], help="list decisions and code files").set_defaults(fn=cmd_cache_ls)
    cs.add_parser("clear", parents=[common], help="remove decisions and generated code").set_defaults(
        fn=cmd_cache_clear)
    for name, fn, what in (("export", cmd_cache_export, "archive to write (.tar.gz, .tgz or .zip)"),
                           ("import", cmd_cache_import, "archive made by `cache export`")):
        c = cs.add_parser(name, parents=[common], help=f"{name} an archive of the cache")
        c.add_argument("file", help=what)
        c.set_defaults(fn=fn)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ember", description="ember: IR and cache tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    ir = sub.add_parser("ir", help="check or run an IR file").add_subparsers(dest="ircmd", required=True)
    c = ir.add_parser("check", help="parse and verify; print the canonical text")
    c.add_argument("file")
    c.set_defaults(fn=cmd_ir_check)
    r = ir.add_parser("run", help="run the pass pipeline on an IR file")
    r.add_argument("file")
    r.add_argument("--pipeline", default=None, help="pipeline string (default: ember's default)")
    r.add_argument("--execute", action="store_true", help="compile and compare with the interpreter")
    r.set_defaults(fn=cmd_ir_run)
    sub.add_parser("passes", help="list registered passes").set_defaults(fn=cmd_passes)
    _add_cache_commands(sub)
    args = p.parse_args(argv)
    return args.fn(args)
