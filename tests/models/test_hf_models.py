"""GPT-2, BERT and Llama from tiny configs: ember matches eager, forward graphs call only
matmul/conv/attention externs, training steps match, and every dumped .ir round-trips."""
import json
import subprocess
import sys

import pytest
import torch

import ember.ir as eir
from model_zoo import MODELS, outputs_of, token_ids

# In a forward graph, these are the only library calls allowed: matmuls (until ember's templates),
# convolutions and attention.
ALLOWED_FORWARD_EXTERNS = ("aten.convolution", "aten._scaled_dot_product", "aten.scaled_dot_product",
                           "matmul", "aten.matmul", "aten.mm", "aten.bmm", "aten.addmm")


def _without_comments(text: str) -> str:
    """Dumps start with `// ...` provenance lines; the rest is the canonical text."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("//"))


def _reports(dump):
    return {p.parent.name: json.loads(p.read_text()) for p in dump.glob("*/report.json")}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_forward_matches_eager(name, dump_dir):
    torch._dynamo.reset()
    model = MODELS[name]().eval()
    ids = token_ids(2, 8)
    with torch.no_grad():
        want = outputs_of(name, model(ids))
        got = outputs_of(name, torch.compile(model, backend="ember")(ids))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)

    reports = _reports(dump_dir)
    assert reports, "ember compiled no graph"
    for graph, rep in reports.items():
        bad = [e for e in rep["externs"] if not str(e.get("target", e.get("op"))).startswith(ALLOWED_FORWARD_EXTERNS)]
        assert not bad, f"{graph}: unexpected externs {bad}"

    # Every dumped IR file parses, verifies, and prints back unchanged.
    files = sorted(dump_dir.glob("*/*.ir"))
    assert files
    for f in files:
        text = _without_comments(f.read_text())
        g = eir.parse(text)
        eir.verify(g)
        assert eir.print_graph(g) == text, f
        assert eir.print_graph(eir.parse(eir.print_graph(g))) == text


def test_ir_check_cli_accepts_a_dumped_file(dump_dir):
    torch._dynamo.reset()
    model = MODELS["gpt2"]().eval()
    with torch.no_grad():
        torch.compile(model, backend="ember")(token_ids(1, 4))
    f = sorted(dump_dir.glob("*/final.ir"))[0]
    run = subprocess.run([sys.executable, "-m", "ember", "ir", "check", str(f)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == _without_comments(f.read_text())


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gpt2_training_step_gradients_match_eager():
    torch._dynamo.reset()
    eager = MODELS["gpt2"]().train()
    compiled_model = MODELS["gpt2"]().train()
    compiled_model.load_state_dict(eager.state_dict())
    ids = token_ids(2, 8)
    eager(ids, labels=ids).loss.backward()
    loss = torch.compile(compiled_model, backend="ember")(ids, labels=ids).loss
    loss.backward()
    want, got = _grads(eager), _grads(compiled_model)
    assert want.keys() == got.keys() and len(want) > 10
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-3, atol=1e-4, msg=lambda m: f"{n}: {m}")


def test_mlp_training_step_gradients_match_eager():
    torch._dynamo.reset()

    def make():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.LayerNorm(32),
                                   torch.nn.Linear(32, 4))
    eager, comp = make(), make()
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    torch.nn.functional.cross_entropy(eager(x), y).backward()
    torch.nn.functional.cross_entropy(torch.compile(comp, backend="ember")(x), y).backward()
    for (n, a), (_, b) in zip(eager.named_parameters(), comp.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{n}: {m}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_forward_with_fusion_matches_eager(name, tmp_path):
    """The opt-in `fuse` pass on whole models: same outputs, fewer kernels than without it."""
    model = MODELS[name]().eval()
    ids = token_ids(2, 8)
    kernels = {}
    for i, pipeline in enumerate(("canonicalize,cse,dce", "canonicalize,cse,dce,fuse")):
        torch._dynamo.reset()
        dump = tmp_path / str(i)
        with torch.no_grad():
            got = outputs_of(name, torch.compile(model, backend="ember",
                                                 options={"pipeline": pipeline, "dump_dir": str(dump)})(ids))
            want = outputs_of(name, model(ids))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
        kernels[pipeline] = sum(r["kernel_count"] for r in _reports(dump).values())
    assert kernels["canonicalize,cse,dce,fuse"] < kernels["canonicalize,cse,dce"], kernels
