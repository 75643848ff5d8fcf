"""The graph cache for training (graph_cache.training_graph_key): a training forward and backward
compiled before are loaded once AOTAutograd has traced them, skipping ember's pipeline, and give
eager's outputs and gradients; what the key holds makes a miss; damage costs a recompile."""
import dataclasses
import json
import warnings

import pytest
import torch

from ember.frontend import graph_cache
from ember.ir import parse, print_graph
from test_graph_cache import MLP, count_pipeline  # noqa: F401 - count_pipeline is a fixture


def train_step(model, x, **options):
    """One forward and backward of a fresh compile, as a new process would do it; returns the
    output, the gradients and what the training level of the cache counted."""
    torch._dynamo.reset()
    for p in model.parameters():
        p.grad = None
    before = dataclasses.replace(graph_cache.TRAINING_STATS)
    out = torch.compile(model, backend="ember", options=options)(x)
    out.pow(2).sum().backward()
    after = graph_cache.TRAINING_STATS
    delta = {f.name: getattr(after, f.name) - getattr(before, f.name) for f in dataclasses.fields(after)}
    return out.detach(), [p.grad.clone() for p in model.parameters()], delta


def eager_step(model, x):
    for p in model.parameters():
        p.grad = None
    out = model(x)
    out.pow(2).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


def assert_matches_eager(model, x, out, grads):
    want_out, want_grads = eager_step(model, x)
    torch.testing.assert_close(out, want_out)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want)


def test_a_second_training_compile_loads_the_forward_and_the_backward(tmp_path, count_pipeline):
    model, x = MLP(), torch.randn(5, 8)
    out, grads, delta = train_step(model, x, cache_dir=str(tmp_path))
    assert_matches_eager(model, x, out, grads)
    assert (delta["misses"], delta["stored"], delta["hits"]) == (2, 2, 0)
    assert sorted(name[-3:] for name in count_pipeline) == ["_bw", "_fw"]
    assert len(list((tmp_path / "graphs").rglob("*.json"))) == 2

    x2 = torch.randn(5, 8)  # fresh values, same shapes: both stored graphs
    out, grads, delta = train_step(model, x2, cache_dir=str(tmp_path))
    assert (delta["hits"], delta["misses"], delta["stored"]) == (2, 0, 0)
    assert len(count_pipeline) == 2  # nothing went through ember's pipeline again
    assert_matches_eager(model, x2, out, grads)


def test_what_the_training_key_holds_makes_a_miss(tmp_path):
    model = MLP()
    train_step(model, torch.randn(5, 8), cache_dir=str(tmp_path))
    _, _, delta = train_step(model, torch.randn(6, 8), cache_dir=str(tmp_path))  # another shape
    assert (delta["hits"], delta["misses"]) == (0, 2)
    _, _, delta = train_step(model, torch.randn(5, 8), cache_dir=str(tmp_path), pipeline="canonicalize,dce")
    assert (delta["hits"], delta["misses"]) == (0, 2)


def test_the_option_turns_the_training_level_off(tmp_path, count_pipeline):
    model, x = MLP(), torch.randn(5, 8)
    for _ in range(2):
        out, grads, delta = train_step(model, x, cache_dir=str(tmp_path), graph_cache=False)
        assert (delta["bypassed"], delta["stored"], delta["hits"]) == (2, 0, 0)
    assert len(count_pipeline) == 4 and not (tmp_path / "graphs").exists()
    assert_matches_eager(model, x, out, grads)


def test_a_damaged_training_entry_is_reported_once_and_rebuilt(tmp_path):
    model, x = MLP(), torch.randn(5, 8)
    train_step(model, x, cache_dir=str(tmp_path))
    entries = sorted((tmp_path / "graphs").rglob("*.json"))
    for entry in entries:
        entry.write_bytes(b"{not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, grads, delta = train_step(model, x, cache_dir=str(tmp_path))
    assert_matches_eager(model, x, out, grads)
    assert (delta["hits"], delta["misses"], delta["stored"]) == (0, 2, 2)
    messages = [str(w.message) for w in caught if "graph cache" in str(w.message)]
    assert len(messages) == 2 and all("rebuilt" in m for m in messages)
    for entry in entries:  # overwritten whole, with IR that reads back
        doc = json.loads(entry.read_text())
        assert print_graph(parse(doc["ir"])) == doc["ir"]


def test_a_dump_always_compiles_a_training_graph(tmp_path, dump_dir, count_pipeline):
    model, x = MLP(), torch.randn(5, 8)
    train_step(model, x, cache_dir=str(tmp_path))
    _, _, delta = train_step(model, x, cache_dir=str(tmp_path))
    assert delta["hits"] == 0 and len(count_pipeline) == 4
    assert list(dump_dir.rglob("final.ir"))


def test_inputs_sharing_a_storage_key_apart_from_separate_ones():
    from ember.options import Options
    gm = torch.fx.symbolic_trace(lambda a, b: a + b)
    base = torch.randn(4)
    shared = graph_cache.training_graph_key(gm, [base, base], Options(), 1)
    separate = graph_cache.training_graph_key(gm, [torch.randn(4), torch.randn(4)], Options(), 1)
    assert shared != separate
    assert graph_cache.training_graph_key(gm, [torch.randn(4), torch.randn(4)], Options(), 0) != separate
    with pytest.raises(graph_cache.NotCacheable, match="input 1 is a int"):
        graph_cache.training_graph_key(gm, [torch.randn(4), 3], Options(), 1)
