"""The compression variants `main` derives from one trained model, as named records.

Each planned variant names the entry point that makes it, the planned variant
(or the train step) it derives from, and the settings that differ from the
step's defaults. A partial plan brings the variants its members derive from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steps import contract

ALL_VARIANTS = "all"


@dataclass(frozen=True)
class PlannedVariant:
    key: str  # what `main -P variants=...` calls it, and the suffix of the pipeline's rtdeploy.run.<key> tag
    entry_point: str  # prune, cluster or quantize
    parent: str  # key of the planned variant it derives from, or "train" for the float model
    settings: dict = field(default_factory=dict)  # the step's settings that differ from its defaults


COMPRESSION_PLAN = (
    PlannedVariant("dynamic", contract.QUANTIZE, contract.TRAIN, {"mode": "dynamic"}),
    PlannedVariant("float16", contract.QUANTIZE, contract.TRAIN, {"mode": "float16"}),
    PlannedVariant("int8", contract.QUANTIZE, contract.TRAIN, {"mode": "int8"}),
    PlannedVariant("qat-int8", contract.QUANTIZE, contract.TRAIN, {"mode": "qat"}),
    PlannedVariant("pruned", contract.PRUNE, contract.TRAIN),
    PlannedVariant("pruned-int8", contract.QUANTIZE, "pruned", {"mode": "int8"}),
    PlannedVariant("pruned2:4", contract.PRUNE, contract.TRAIN, {"structure": "2:4"}),
    PlannedVariant("pruned2:4-int8", contract.QUANTIZE, "pruned2:4", {"mode": "int8"}),
    PlannedVariant("clustered", contract.CLUSTER, contract.TRAIN),
    PlannedVariant("clustered-int8", contract.QUANTIZE, "clustered", {"mode": "int8"}),
    # Deep Compression style: prune, cluster keeping the zeros, then quantization-aware int8 (PCQAT)
    PlannedVariant("pruned-clustered", contract.CLUSTER, "pruned", {"preserve_sparsity": True}),
    PlannedVariant("pruned-clustered-qat-int8", contract.QUANTIZE, "pruned-clustered", {"mode": "qat"}),
)


def plan_for(variants: str) -> list[PlannedVariant]:
    """The planned variants for a comma-separated list of keys, with those they derive from, in plan order."""
    if variants == ALL_VARIANTS:
        return list(COMPRESSION_PLAN)
    by_key = {planned.key: planned for planned in COMPRESSION_PLAN}
    wanted = [key.strip() for key in variants.split(",") if key.strip()]
    unknown = [key for key in wanted if key not in by_key]
    if unknown or not wanted:
        raise ValueError(
            f"variants={variants!r}: unknown {unknown}; use {ALL_VARIANTS!r} or some of: {', '.join(by_key)}"
        )
    needed = set()
    for key in wanted:
        while key in by_key and key not in needed:  # a variant needs its parent's step too
            needed.add(key)
            key = by_key[key].parent
    return [planned for planned in COMPRESSION_PLAN if planned.key in needed]
