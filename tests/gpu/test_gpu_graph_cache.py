"""The graph cache (frontend/graph_cache.py) on the lent H100, with EMBER_TEST_GPU=1: a model
compiled again after Dynamo's reset loads its stored graphs (no AOTAutograd, no tuning), replays
them as CUDA graphs like the first compile did, and matches eager on fresh inputs."""
import dataclasses

import pytest
import torch

from ember.autotune import STATS as TUNING
from ember.codegen import cuda_graphs
from ember.frontend import graph_cache
from model_zoo import MODELS, outputs_of, token_ids

BF16 = dict(rtol=5e-2, atol=5e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_second_compile_loads_its_graphs(name, tmp_path):
    model = MODELS[name]().to("cuda", torch.bfloat16).eval()
    options = {"cache_dir": str(tmp_path), "autotune_budget_s": 30.0}
    for round_ in ("cold", "warm"):
        torch._dynamo.reset()
        graphs, tuning = dataclasses.replace(graph_cache.STATS), dataclasses.replace(TUNING)
        captured = set(cuda_graphs._live)
        compiled = torch.compile(model, backend="ember", options=options)
        with torch.no_grad():
            for _ in range(3):  # the third call replays a captured CUDA graph
                ids = token_ids(2, 32, device="cuda")
                got, want = outputs_of(name, compiled(ids)), outputs_of(name, model(ids))
                for g, w in zip(got, want):
                    torch.testing.assert_close(g, w, **BF16)
        assert set(cuda_graphs._live) - captured  # this round's graphs were captured and replayed
        if round_ == "cold":
            assert graph_cache.STATS.stored > graphs.stored
        else:
            assert graph_cache.STATS.hits > graphs.hits and graph_cache.STATS.misses == graphs.misses
            assert (TUNING.benchmarks, TUNING.misses) == (tuning.benchmarks, tuning.misses)
