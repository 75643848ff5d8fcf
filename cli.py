"""`python -m ember ...`: inspect and run IR files.

    python -m ember ir check FILE          parse + verify; print canonical text (exit 0) or
                                           FILE:line:col: cause (exit 1)
    python -m ember ir run FILE [--pipeline P] [--execute]
                                           run the pass pipeline on FILE and print the result; with
                                           --execute, also compile it and compare against the
                                           reference interpreter on random inputs
    python -m ember passes                 list registered passes
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ember", description="ember: IR tools")
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
    args = p.parse_args(argv)
    return args.fn(args)
