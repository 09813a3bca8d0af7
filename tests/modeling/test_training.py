"""Every optimizer name builds its optimizer."""

from __future__ import annotations

import pytest

from steps import contract
from steps.modeling.training import make_optimizer


@pytest.mark.parametrize("name", contract.OPTIMIZERS)
def test_every_optimizer_name_builds_an_optimizer(name):
    optimizer = make_optimizer(name, 0.05)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    assert (getattr(optimizer, "momentum", 0.0) > 0) == (name == "momentum")
