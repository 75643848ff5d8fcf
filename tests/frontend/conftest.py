"""Shared checks for the frontend tests: compile with ember, compare with eager, and check that every
IR file the compile dumped parses back to text that prints identically."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ember.ir import parse


def roundtrip_dump(dump: Path) -> list[dict]:
    """Parse and re-print every .ir under `dump`; return the report.json contents."""
    for ir_file in sorted(dump.rglob("*.ir")):
        text = ir_file.read_text()
        body = "\n".join(line for line in text.splitlines() if not line.startswith("//")) + "\n"
        assert str(parse(text)) == body, f"{ir_file} does not round-trip"
    return [json.loads(p.read_text()) for p in sorted(dump.rglob("report.json"))]


def _clone_args(args):
    return [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
            for a in args]


@pytest.fixture
def check(tmp_path):
    """check(fn, *args, dynamic=False, options=None, strict=True) -> reports of the dumped graphs.

    Runs fn eagerly and compiled (fullgraph, ember backend by name), compares the outputs with
    torch.testing.assert_close (its dtype-aware tolerances unless rtol/atol are given)."""
    counter = iter(range(1000))

    def run(fn, *args, dynamic=False, options=None, strict=True, rtol=None, atol=None):
        torch._dynamo.reset()
        dump = tmp_path / f"dump{next(counter)}"
        opts = {"dump_dir": str(dump), "strict_lowering": strict, **(options or {})}
        compiled = torch.compile(fn, backend="ember", dynamic=dynamic, fullgraph=True, options=opts)
        expected = fn(*_clone_args(args))
        got = compiled(*_clone_args(args))
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, equal_nan=True)
        return roundtrip_dump(dump)

    return run


@pytest.fixture
def check_grads(tmp_path):
    """check_grads(fn, *args, ...) -> reports: outputs and the gradients of every input that
    requires grad (loss = sum of each output times a fixed random weight) match eager."""
    counter = iter(range(1000))

    def run(fn, *args, dynamic=False, options=None, strict=True, rtol=None, atol=None):
        torch._dynamo.reset()
        dump = tmp_path / f"grads{next(counter)}"
        opts = {"dump_dir": str(dump), "strict_lowering": strict, **(options or {})}
        compiled = torch.compile(fn, backend="ember", dynamic=dynamic, fullgraph=True, options=opts)
        results = []
        for f in (fn, compiled):
            inputs = _clone_args(args)
            outs = f(*inputs)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            gen = torch.Generator().manual_seed(1)
            loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)).sum() for o in outs if o.requires_grad)
            loss.backward()
            results.append(([o.detach() for o in outs],
                            [a.grad for a in inputs if isinstance(a, torch.Tensor) and a.requires_grad]))
        torch.testing.assert_close(results[1], results[0], rtol=rtol, atol=atol)
        return roundtrip_dump(dump)

    return run
