import dataclasses

import pytest

from ember.autotune import TuningKey
from ember.autotune import cache as cache_mod

BASE_KEY = TuningKey(kernel="a" * 64, shapes=((128, 64), (64,)), dtypes=("float16", "float16"),
                     device="NVIDIA H100 80GB HBM3", triton="3.6.0", torch="2.13.0", pipeline="p" * 64)


@pytest.fixture(autouse=True)
def _fresh_warning_memory():
    """Each test sees the 'reported once per file' memory empty, as a new process would."""
    cache_mod._warned.clear()
    yield
    cache_mod._warned.clear()


@pytest.fixture
def make_key():
    def make(**changes) -> TuningKey:
        return dataclasses.replace(BASE_KEY, **changes)
    return make
