import pytest

from ember.passes import registry


@pytest.fixture
def fresh_registry():
    """Passes a test registers are gone after it."""
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
