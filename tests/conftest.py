import atexit
import os
import shutil
import tempfile

# Must run before anything imports triton: without EMBER_TEST_GPU=1 all
# Triton kernels run in the CPU interpreter (CI and dev machines have no GPU).
if os.environ.get("EMBER_TEST_GPU") != "1":
    os.environ["TRITON_INTERPRET"] = "1"

# Keep tests out of the user's kernel cache; one fresh dir per test session, removed after it.
if "EMBER_CACHE_DIR" not in os.environ:
    os.environ["EMBER_CACHE_DIR"] = tempfile.mkdtemp(prefix="ember-test-cache-")
    atexit.register(shutil.rmtree, os.environ["EMBER_CACHE_DIR"], True)

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def dump_dir(tmp_path, monkeypatch):
    path = tmp_path / "dump"
    monkeypatch.setenv("EMBER_DUMP_DIR", str(path))
    return path
