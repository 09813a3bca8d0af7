"""The compression plan of `main`: named records whose parents come first; a partial plan brings its parents."""

from __future__ import annotations

import pytest

from steps import contract
from steps.core.plan import COMPRESSION_PLAN, plan_for


def test_the_compression_plan_is_named_records_whose_parents_come_first():
    keys = [planned.key for planned in COMPRESSION_PLAN]
    assert len(keys) == len(set(keys)) == 12
    for index, planned in enumerate(COMPRESSION_PLAN):
        assert planned.entry_point in contract.COMPRESSION_STEPS
        assert planned.parent == contract.TRAIN or planned.parent in keys[:index]


def test_a_partial_plan_brings_the_steps_its_variants_derive_from():
    assert [planned.key for planned in plan_for("pruned-clustered-qat-int8, int8")] == [
        "int8",
        "pruned",
        "pruned-clustered",
        "pruned-clustered-qat-int8",
    ]
    assert len(plan_for("all")) == 12
    with pytest.raises(ValueError, match="unknown \\['pruned90'\\]; use 'all' or some of: dynamic"):
        plan_for("pruned90")
