"""Backend options are validated with errors that list what is valid; the backend works by name."""
import os
import subprocess
import sys

import pytest
import torch
from torch._dynamo.exc import BackendCompilerFailed


def _compile_and_run(**kwargs):
    torch._dynamo.reset()
    return torch.compile(lambda x: x.sin() + 1, backend="ember", **kwargs)(torch.randn(3))


def test_unknown_option_lists_valid_ones():
    with pytest.raises(BackendCompilerFailed, match=r"unknown ember option\(s\) \['bogus'\].*valid options:.*pipeline"):
        _compile_and_run(options={"bogus": 1})


def test_bad_option_value():
    with pytest.raises(BackendCompilerFailed, match="'verify' must be True or False"):
        _compile_and_run(options={"verify": "yes"})


def test_bad_pipeline():
    with pytest.raises(BackendCompilerFailed, match="ember option 'pipeline'"):
        _compile_and_run(options={"pipeline": "no-such-pass"})


def test_mode_is_rejected():
    with pytest.raises(BackendCompilerFailed, match="ember takes no \\['mode'\\]"):
        _compile_and_run(mode="max-autotune")


def test_backend_by_name_without_importing_ember():
    code = ("import sys, torch\n"
            "f = torch.compile(lambda x: torch.relu(x) * 2 + x.sum(), backend='ember')\n"
            "x = torch.randn(5)\n"
            "torch.testing.assert_close(f(x), torch.relu(x) * 2 + x.sum())\n"
            "assert 'ember.frontend.backend' in sys.modules  # loaded through the entry point\n"
            "print('OK')\n")
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd="/")  # not the repo root: ember must come from the installed entry point
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_autotune_budget_is_checked():
    from ember.options import Options, OptionsError
    assert Options.from_dict({"autotune_budget_s": 5}).autotune_budget_s == 5
    assert Options.from_dict({"autotune_budget_s": None}).autotune_budget_s is None
    for bad in (-1, True, "10"):
        with pytest.raises(OptionsError, match="autotune_budget_s"):
            Options.from_dict({"autotune_budget_s": bad})


@pytest.mark.parametrize("name,default", [("autotune_screen", 1.25), ("autotune_unplanned_margin", 1.5)])
def test_autotune_factors_are_checked(name, default):
    from ember.options import Options, OptionsError
    assert getattr(Options(), name) == default
    assert getattr(Options.from_dict({name: None}), name) is None
    assert getattr(Options.from_dict({name: 1}), name) == 1
    for bad in (0.9, -1, True, "1.25", float("nan")):
        with pytest.raises(OptionsError, match=name):
            Options.from_dict({name: bad})


def test_matmul_library_is_a_bool():
    from ember.options import Options, OptionsError
    assert Options().matmul_library is True
    assert Options.from_dict({"matmul_library": False}).matmul_library is False
    with pytest.raises(OptionsError, match="matmul_library"):
        Options.from_dict({"matmul_library": "no"})


def test_attention_library_is_checked_and_reaches_the_chooser():
    from ember.codegen.choice import Chooser
    from ember.options import Options, OptionsError
    opts = Options.from_dict({"attention_library": False})
    assert Chooser.for_options("cuda:0", opts).attention_library is False
    assert Chooser.for_options("cuda:0", Options()).attention_library is True
    with pytest.raises(OptionsError, match="attention_library"):
        Options.from_dict({"attention_library": "no"})


def test_races_are_timed_as_replays_where_graphs_are_replayed():
    """With cuda_graphs on, a GPU graph's races are timed from CUDA graph replays (no host time
    between kernels, as the compiled graph runs); off, by do_bench (the wrapper's own launches)."""
    from ember.codegen.choice import Chooser
    from ember.codegen.replay_timing import replay_median
    from ember.options import Options
    assert Chooser.for_options("cuda:0", Options()).timer is replay_median
    assert Chooser.for_options("cuda:0", Options.from_dict({"cuda_graphs": False})).timer is None
    assert Chooser.for_options("cpu", Options()).timer is None
