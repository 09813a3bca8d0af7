"""`update` entry point: the champion, adapted to new data with its own recipe, promoted only if it is better.

1. The champion's lineage (registry and run tags) leads to its float parent
   and the compression recipe that made the deployable from it.
2. New samples: a data set (all its splits), or the labelled traffic in the
   prediction logs since the champion was promoted; each labelled sample is
   taken or refused with a reason (`steps/adapt/labelled.py`). With
   learning_rate=tune, the fine-tuning rate and replay share are chosen first,
   on validation data (`steps/adapt/tuning.py`). The new samples are split and
   mixed with a class-balanced replay of the float parent's training data
   (`steps/adapt/update_data.py`) and logged as this run's `update_data/update.npz`,
   the data set every child step loads.
3. Child runs, as `main` makes them: `train` fine-tunes the float parent
   (warm start, early stopping on the new validation samples), then each step
   of the recipe runs again with its recorded settings on the new parent (a
   `search` trial as prune, cluster and quantize with its per-layer targets).
4. A nested `gate` run registers the result (alias challenger; version tags:
   parent version, new data source and digest), compares it with the champion
   on the old test split and on the new held-out samples, checks that a fresh
   server process serves it (`steps/release/infra.py`), and promotes it only if all
   pass. A refusal leaves champion and aliases as they were, is recorded on
   the version, and exits non-zero.

An update with the same commit, champion, new data and settings as one that
reached a verdict is not run again (reuse_runs=false forces it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path

import mlflow

from steps import contract
from steps.adapt.new_data import NewSamples, new_samples
from steps.adapt.origin import Origin, origin_of
from steps.adapt.tuning import choose, describe, tune
from steps.adapt.update_data import mix, samples_digest
from steps.adapt.update_gate import gate_update
from steps.compress.recipes import recipe_config, unquoted
from steps.datasets.data import Dataset
from steps.parameters import GateRefused, StepFailed, as_parameters, parse_config, run_cli
from steps.release.child_runs import child_env_manager, project_commit, run_step
from steps.release.lineage import data_of_run
from steps.release.tracking import log_config, step_run
from steps.settings import LEARNING_RATE, TUNE, TUNE_REPLAY_FRACTIONS, TrainConfig, UpdateConfig

DATA_ARTIFACT = "update_data"
DATA_FILE = "update.npz"


def update_key(config: UpdateConfig, champion: str, digest: str, commit: str | None) -> str:
    """The same commit, champion, new data and settings: the same update (where the data came from, not)."""
    settings = {k: v for k, v in as_parameters(config).items() if k not in ("since", "until", "reuse_runs")}
    return hashlib.sha256(json.dumps([commit, champion, digest, settings], sort_keys=True).encode()).hexdigest()[:16]


def finished_update(key: str) -> mlflow.entities.Run | None:
    """The newest update run with this key that reached a verdict (a refused one counts: its exit failed it)."""
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{contract.TAG_UPDATE_KEY}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    return next((run for run in runs if contract.VERSION_TAG_VALIDATION_STATUS in run.data.tags), None)


def report_reused(previous: mlflow.entities.Run) -> str | None:
    """Point this run at the finished update it repeats; returns that one's refusal, if it was refused."""
    tags = previous.data.tags
    status = tags.get(contract.VERSION_TAG_VALIDATION_STATUS, "no verdict")
    mlflow.set_tags({contract.TAG_REUSED_UPDATE: previous.info.run_id, contract.VERSION_TAG_VALIDATION_STATUS: status})
    print(
        f"update: run {previous.info.run_id} already made this update (same commit, champion, new data and "
        f"settings): v{tags.get(contract.TAG_MODEL_VERSION, '?')} {status}; pass reuse_runs=false to run it again"
    )
    return tags.get(contract.VERSION_TAG_VALIDATION_REASON, "") if status == contract.VALIDATION_FAILED else None


def original_step_size(params: dict[str, str]) -> float:
    """The learning rate the original training used, worked out from its run's parameters as it was (`auto`
    picks by architecture; runs before `auto` logged a number; the oldest logged none)."""
    defaults = TrainConfig()
    return TrainConfig(
        learning_rate=unquoted(params.get("learning_rate", str(LEARNING_RATE))),
        architecture=unquoted(params.get("architecture", defaults.architecture)),
        base_model=unquoted(params.get("base_model", "")),
    ).step_size()


def fine_tuning_config(config: UpdateConfig, origin: Origin, data_uri: str) -> TrainConfig:
    """The settings of update's train child: the float parent's training replayed, fine-tuning from it."""
    params, defaults = origin.float_run.params, TrainConfig()
    return TrainConfig(
        dataset=data_uri,
        image_size=origin.image_size,
        optimizer=unquoted(params.get("optimizer", defaults.optimizer)),
        augment=unquoted(params.get("augment", defaults.augment)),  # the champion's training, replayed
        # a tenth of the original training's rate, not of the last update's (a tenth of a tenth...)
        learning_rate=str(config.fine_tuning_rate(original_step_size(origin.first_train.params))),
        epochs=config.epochs,
        batch_size=config.batch_size,
        patience=config.patience,
        seed=config.seed,
        base_model=origin.float_model_uri,
        robustness=unquoted(params.get("robustness", defaults.robustness)),
        distill=config.distill,
    )


def tuned(config: UpdateConfig, origin: Origin, old: Dataset, new: NewSamples) -> UpdateConfig:
    """learning_rate=tune: the settings with the rate and replay share chosen on validation, the choice logged."""
    from steps.modeling.keras_io import load_keras_model
    from steps.reports.figures import update_tuning_figure

    print(
        f"update: learning_rate={TUNE}: fine-tuning the float parent once per learning rate and replay share "
        f"{TUNE_REPLAY_FRACTIONS} (replay_fraction={config.replay_fraction} is not used), judged on validation data"
    )
    fine_tuning = fine_tuning_config(config, origin, "-")
    parent = load_keras_model(origin.float_model_uri)
    original = old if origin.first_train.run_id == origin.float_run.run_id else data_of_run(origin.first_train.run_id)
    reference, candidates = tune(parent, old, new.x, new.y, fine_tuning, config.seed, original)
    best, in_budget = choose(candidates, reference, config.max_old_drop, config.max_robust_accuracy_drop)
    rows = [candidate.as_dict(reference) for candidate in candidates]
    mlflow.log_dict({"float_parent": dataclasses.asdict(reference), "candidates": rows}, contract.UPDATE_TUNING)
    mlflow.log_figure(
        update_tuning_figure(rows, best.as_dict(reference), config.max_old_drop), contract.UPDATE_TUNING_FIGURE
    )
    mlflow.log_metrics(
        {
            contract.TUNED_LEARNING_RATE: best.learning_rate,
            contract.TUNED_REPLAY_FRACTION: best.replay_fraction,
            contract.TUNED_IN_BUDGET: float(in_budget),
        }
    )
    verdict = (
        "the best new validation accuracy within max_old_drop and max_robust_accuracy_drop"
        if in_budget
        else "no candidate kept the old validation split within budget; the one that kept most (the gate decides)"
    )
    print(f"update: chose {describe(best, reference)}: {verdict}")
    return dataclasses.replace(config, learning_rate=str(best.learning_rate), replay_fraction=best.replay_fraction)


def run_children(config: UpdateConfig, origin: Origin, data_uri: str) -> list[str]:
    """train on the update data from the float parent, then the recipe; returns the child run ids in order."""
    env_manager = child_env_manager(config.env_manager)
    train = fine_tuning_config(config, origin, data_uri)
    run_ids = [run_step(contract.TRAIN, as_parameters(train), env_manager=env_manager, reuse=config.reuse_runs)]
    for step in origin.recipe:
        parent = f"runs:/{run_ids[-1]}/{contract.KERAS_MODEL}"
        settings = dataclasses.replace(recipe_config(step, parent, data_uri), distill=config.distill)
        run_ids.append(run_step(step.step, as_parameters(settings), env_manager=env_manager, reuse=config.reuse_runs))
    return run_ids


def update(config: UpdateConfig) -> None:
    """Run (or find) the update in a run of its own; GateRefused (the run FAILED) if its challenger was refused."""
    origin = origin_of(config.model_name)
    old = data_of_run(origin.float_run.run_id)
    new = new_samples(config, origin, old)
    digest = samples_digest(new.x, new.y)
    key = update_key(config, origin.champion.version, digest, project_commit())
    previous = finished_update(key) if config.reuse_runs else None
    with step_run(contract.UPDATE) as run:
        log_config(config)
        mlflow.set_tags({contract.TAG_MODEL_NAME: config.model_name, contract.TAG_UPDATE_KEY: key})
        if previous is not None:
            refusal = report_reused(previous)
            if refusal is not None:
                raise GateRefused(refusal)
            return
        if config.learning_rate == TUNE:
            config = tuned(config, origin, old, new)
        data = mix(new.x, new.y, old, config.replay_fraction, config.seed)
        print(f"update: {len(new.y)} new samples from {new.source}; {data.describe()}")
        mlflow.log_metrics(
            {
                contract.NEW_SAMPLES: len(new.y),
                contract.REFUSED_SAMPLES: sum(new.refused.values()),
                contract.REPLAYED_SAMPLES: data.replayed,
            }
        )
        if new.refused:
            mlflow.log_dict(new.refused, "refused_samples.json")
        with tempfile.TemporaryDirectory() as folder:
            mlflow.log_artifact(str(data.save(Path(folder) / DATA_FILE)), DATA_ARTIFACT)
        data_uri = f"runs:/{run.info.run_id}/{DATA_ARTIFACT}/{DATA_FILE}"
        try:
            children = run_children(config, origin, data_uri)
        except StepFailed as failure:
            raise StepFailed(
                f"{failure}; nothing was registered, {config.model_name}@{contract.CHAMPION} is unchanged",
                failure.exit_code,
            ) from failure
        version, verdict, accuracies = gate_update(config, origin.champion, children[-1], data, new.source, digest)
        mlflow.log_metrics(accuracies)
        mlflow.set_tags(
            {
                contract.TAG_MODEL_VERSION: version.version,
                contract.VERSION_TAG_VALIDATION_STATUS: verdict.status,
                contract.VERSION_TAG_VALIDATION_REASON: verdict.reason,
            }
        )
        if verdict.refused:
            raise GateRefused(f"v{version.version} not promoted: {verdict.reason}")


def main(argv: list[str] | None = None) -> None:
    update(parse_config(UpdateConfig, argv))


if __name__ == "__main__":
    run_cli(contract.UPDATE, main)
