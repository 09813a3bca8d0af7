"""Where a champion came from: its float parent's train run and the recipe steps that made the deployable from
it, read off the registry and the runs' lineage tags. What `update` starts from, and `autopilot` asks about."""

from __future__ import annotations

import dataclasses

from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.compress.recipes import RECIPE_CONFIGS, RecipeStep, replay_steps
from steps.release.lineage import LineageEntry, lineage
from steps.release.registry import RegistryError, version_by_alias
from steps.settings import TrainConfig


@dataclasses.dataclass(frozen=True)
class Origin:
    """What the champion was made from: its float parent's train run, and the recipe steps after it."""

    champion: ModelVersion
    float_run: LineageEntry  # its float parent's train run
    recipe: list[RecipeStep]  # the steps from the float parent up to the deployable, in the order they ran
    first_train: LineageEntry  # the train run the lineage starts from (the float parent itself before any update)

    @property
    def float_model_uri(self) -> str:
        return f"runs:/{self.float_run.run_id}/{contract.KERAS_MODEL}"

    @property
    def image_size(self) -> int:
        """The side image folders were resized to for the float parent (new image folders get the same)."""
        return int(float(self.float_run.params.get("image_size", TrainConfig().image_size)))


def origin_of(model_name: str) -> Origin:
    champion = version_by_alias(model_name, contract.CHAMPION)
    if champion is None:
        raise RegistryError(f"model {model_name!r} has no {contract.CHAMPION}: run `mlflow run .` (main) first")
    if contract.VERSION_TAG_SOURCE_RUN not in champion.tags:
        raise RegistryError(
            f"{model_name} v{champion.version} has no lineage (no {contract.VERSION_TAG_SOURCE_RUN!r} tag): it was "
            "not registered by rtdeploy, so there is no float parent or recipe to update; register a model made "
            "by `mlflow run .` instead"
        )
    chain = lineage(model_name, champion.version)  # from the deployable back to the first float model
    position = next((i for i, entry in enumerate(chain) if entry.step == contract.TRAIN), None)
    if position is None:
        raise RegistryError(
            f"the lineage of {model_name} v{champion.version} has no train run "
            f"({' <- '.join(entry.step for entry in chain)}): no float parent to fine-tune"
        )
    recipe = [step for entry in reversed(chain[:position]) for step in replayed(entry)]
    unknown = [step.step for step in recipe if step.step not in RECIPE_CONFIGS]
    if unknown:
        raise RegistryError(
            f"the lineage of {model_name} v{champion.version} has steps update cannot re-run: {unknown}"
        )
    first_train = [entry for entry in chain if entry.step == contract.TRAIN][-1]
    return Origin(champion, chain[position], recipe, first_train)


def replayed(entry: LineageEntry) -> list[RecipeStep]:
    """A lineage entry as the steps that make it again: itself, or a search trial's prune, cluster, quantize."""
    if entry.step == contract.SEARCH_TRIAL:
        return replay_steps(entry.made, entry.params)
    return [RecipeStep(entry.step, entry.params)]
