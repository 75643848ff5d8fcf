"""codegen/compile_workers.py on the CPU, with real worker processes: the hook sends a kernel's
specialization to a worker, which imports the kernel's module and calls its `preload`; the
thread then waits for that before running Triton's own compile; a worker that fails or dies only
means the parent compiles. (On a GPU, tests/gpu/test_gpu_precompile.py checks real kernels.)"""
import sys
import textwrap
import types

import pytest

from ember.codegen import compile_workers

PROBE = '''
import os

class kernel:
    class fn:
        __module__ = __name__
        __qualname__ = "kernel"

    @staticmethod
    def preload(data):
        if data == "raise":
            raise RuntimeError("this config does not compile")
        if data == "die":
            os._exit(3)
        with open(os.environ["EMBER_PROBE_OUT"], "a") as f:
            f.write(data + "\\n")
'''


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module the workers can import by name (its folder is on the parent's sys.path, which
    the workers take over), defining a stand-in for a JITFunction."""
    name = f"ember_worker_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PROBE))
    out = tmp_path / "preloaded.txt"
    monkeypatch.setenv("EMBER_PROBE_OUT", str(out))  # before the workers spawn: they inherit it
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(compile_workers, "supported", lambda: True)
    module = __import__(name)
    yield module, out
    compile_workers.shutdown()
    compile_workers._broken = False
    sys.modules.pop(name, None)


def _send(module, data):
    info = types.SimpleNamespace(module=module, name="kernel", jit_function=module.kernel)
    compile_workers.hook(key=None, repr="kernel", fn=info, compile={"specialization_data": data},
                         is_manual_warmup=True, already_compiled=False)
    return compile_workers.take_pending()


def test_a_worker_preloads_the_kernel_before_the_parent_compiles(probe):
    module, out = probe
    assert _send(module, "spec-1") is None          # no pool yet: nothing is sent
    assert compile_workers.start(1)
    future = _send(module, "spec-1")
    assert future is not None and _send(module, "spec-1") is future  # one job per specialization

    def parent_compile():
        return out.read_text()                      # what the worker wrote is there already
    assert compile_workers.wait_then(future, parent_compile) == "spec-1\n"
    assert compile_workers.take_pending() is None   # taken once


def test_a_failing_or_dying_worker_leaves_the_compile_to_the_parent(probe):
    module, out = probe
    assert compile_workers.start(1)
    assert compile_workers.wait_then(_send(module, "raise"), lambda: "compiled here") == "compiled here"
    assert compile_workers.running()                # one bad kernel does not stop the pool
    assert compile_workers.wait_then(_send(module, "die"), lambda: "compiled here") == "compiled here"
    assert not compile_workers.running()            # a dead worker breaks the pool: threads only
    assert _send(module, "spec-2") is None and not out.exists()


def test_zero_workers_or_an_unknown_module_sends_nothing(probe):
    module, _ = probe
    assert not compile_workers.start(0) and not compile_workers.running()
    assert compile_workers.start(1)
    nowhere = types.SimpleNamespace(fn=types.SimpleNamespace(__module__="ember_generated_gone",
                                                             __qualname__="k"))
    info = types.SimpleNamespace(jit_function=nowhere)
    compile_workers.hook(fn=info, compile={"specialization_data": "x"}, already_compiled=False)
    assert compile_workers.take_pending() is None
