"""A layer's sparsity ceiling, and one scale moving every layer relative to its own ceiling."""

from __future__ import annotations

from steps.compress.sensitivity import MAX_SPARSITY, SPARSITIES, scaled_targets, tolerated_sparsity


def rows(layer: str, drops: list[float]) -> list[dict]:
    return [{"layer": layer, "sparsity": s, "val_accuracy_drop": d} for s, d in zip(SPARSITIES, drops)]


def test_a_layers_ceiling_is_the_last_sparsity_before_its_drop_first_exceeds_the_tolerance():
    table = (
        rows("dense", [0, 0, 0.001, 0.004, 0.02, 0.1])
        + rows("conv", [0.03, 0, 0, 0, 0, 0])
        + rows(
            "head",
            [0, 0.02, 0, 0, 0, 0],  # recovering at 80% after failing at 70% does not count
        )
    )
    assert tolerated_sparsity(table, 0.005) == {"dense": 0.9, "conv": 0.0, "head": 0.5}


def test_one_scale_moves_every_layer_relative_to_its_own_ceiling_and_never_prunes_everything():
    assert scaled_targets({"dense": 0.9, "conv": 0.5}, 0.5) == {"dense": 0.45, "conv": 0.25}
    assert scaled_targets({"dense": 0.98}, 1.2) == {"dense": MAX_SPARSITY}
