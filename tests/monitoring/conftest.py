import pytest

from tests.support.drift_samples import synthetic_reference


@pytest.fixture(scope="module")
def reference():
    """A reference profile of synthetic held-out samples (tests/support/drift_samples.py)."""
    return synthetic_reference()
