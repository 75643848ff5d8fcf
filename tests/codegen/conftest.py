from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    # Triton's interpreter computes masked-off lanes too (a 0 divisor there is harmless: the lane is
    # never stored) and numpy warns about it; those warnings say nothing about ember's results.
    quiet = [pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter"),
             pytest.mark.filterwarnings("ignore::DeprecationWarning:triton.runtime.interpreter")]
    for item in items:
        if _HERE in Path(item.fspath).parents:
            for mark in quiet:
                item.add_marker(mark)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Run a test on CPU (Triton's interpreter) and, where CUDA is present, on the GPU (compiled)."""
    return request.param
