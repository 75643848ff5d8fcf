"""Races timed from CUDA graph replays (codegen/replay_timing.py), on the lent H100 with
EMBER_TEST_GPU=1: a time comes back for a capturable call and, through do_bench, for one the
capture refuses, which leaves the process able to capture and to draw random numbers after."""
import logging
import math

import pytest
import torch

from ember.codegen.replay_timing import replay_median


@pytest.mark.gpu
def test_a_capturable_call_is_timed_and_really_runs(caplog):
    caplog.set_level(logging.DEBUG, logger="ember.codegen.replay_timing")
    a = torch.randn(512, 512, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(512, 512, device="cuda", dtype=torch.bfloat16)
    calls = []

    def fn():
        calls.append(1)
        torch.mm(a, a, out=out)
    ms = replay_median(fn)
    assert math.isfinite(ms) and ms > 0
    assert len(calls) >= 3  # the warm-up, the estimate's capture, the timed graph's captures
    assert "do_bench instead" not in caplog.text  # timed from replays, its events in the graph
    torch.testing.assert_close(out, a @ a)


@pytest.mark.gpu
def test_a_call_the_capture_refuses_is_timed_by_do_bench():
    a = torch.randn(256, device="cuda")
    ms = replay_median(lambda: float(a.sum().item()))  # a host read: not capturable
    assert math.isfinite(ms) and ms > 0
    torch.randn(8, device="cuda")  # the CUDA generator is not left in capture mode
    assert math.isfinite(replay_median(lambda: a * 2))
