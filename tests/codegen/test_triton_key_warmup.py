"""Triton's install hash is computed ahead on a thread, once, and only where kernels compile."""
import threading

import pytest
import torch
import triton.runtime.cache

from ember.codegen import triton_key_warmup


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(triton_key_warmup, "_started", False)
    ran = []
    done = threading.Event()

    def fake_key():
        ran.append(threading.current_thread().name)
        done.set()
        return "key"
    monkeypatch.setattr(triton.runtime.cache, "triton_key", fake_key)
    return ran, done


def test_hashed_once_on_a_background_thread_where_a_gpu_compiles(fresh, monkeypatch):
    ran, done = fresh
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert triton_key_warmup.start() is True
    assert done.wait(10)
    assert triton_key_warmup.start() is False  # once per process
    assert ran == ["ember-triton-key"]


@pytest.mark.parametrize("interpret, gpu", [("1", True), ("0", False)])
def test_nothing_is_started_without_compiled_kernels(fresh, monkeypatch, interpret, gpu):
    ran, done = fresh
    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert triton_key_warmup.start() is False
    assert not done.wait(0.2) and ran == []
