"""`update` entry point: the champion, adapted to new data with its own recipe, promoted only if it is better.

1. The champion's lineage (registry and run tags) leads to its float parent
   and the compression recipe that made the deployable from it.
2. New samples: a data set (all its splits), or the labelled traffic in the
   prediction logs since the champion was promoted; each labelled sample is
   taken or refused with a reason (`steps/labelled.py`). They are split and
   mixed with a class-balanced replay of the float parent's training data
   (`steps/update_data.py`) and logged as this run's `update_data/update.npz`,
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
import time
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.compress.recipes import RECIPE_CONFIGS, recipe_config, replay_steps, unquoted
from steps.config import GateRefused, StepFailed, as_parameters, parse_config, run_cli
from steps.datasets.data import Dataset, DatasetError, load_dataset
from steps.labelled import NOT_A_CLASS, labelled_samples
from steps.monitoring.traffic import log_files, parse_time, read
from steps.release.child_runs import child_env_manager, project_commit, run_step
from steps.release.lineage import data_of_run, lineage
from steps.release.registry import RegistryError, promoted_at, version_by_alias
from steps.release.tracking import log_config, step_run
from steps.settings import TrainConfig, UpdateConfig
from steps.update_data import mix, samples_digest
from steps.update_gate import gate_update

DATA_ARTIFACT = "update_data"
DATA_FILE = "update.npz"
FEEDBACK_SOURCE = "feedback:"  # data_source of an update from labelled traffic: feedback:<logs>@<since>-<until>


@dataclasses.dataclass(frozen=True)
class Origin:
    """What the champion was made from: its float parent's train run, and the recipe steps after it."""

    champion: ModelVersion
    float_run: dict  # a lineage entry (run_id, step, variant, parent_model, params)
    recipe: list[dict]  # lineage entries from the float parent up to the deployable, in the order they ran
    first_train: dict  # the train run the lineage starts from (the float parent itself before any update)

    @property
    def float_model_uri(self) -> str:
        return f"runs:/{self.float_run['run_id']}/{contract.KERAS_MODEL}"

    @property
    def image_size(self) -> int:
        """The side image folders were resized to for the float parent (new image folders get the same)."""
        return int(float(self.float_run["params"].get("image_size", TrainConfig().image_size)))


@dataclasses.dataclass(frozen=True)
class NewSamples:
    x: np.ndarray
    y: np.ndarray  # indices into the champion's classes
    source: str  # the path, or the prediction logs and time range
    refused: dict[str, int]  # reason -> labelled samples refused


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
    position = next((i for i, entry in enumerate(chain) if entry["step"] == contract.TRAIN), None)
    if position is None:
        raise RegistryError(
            f"the lineage of {model_name} v{champion.version} has no train run "
            f"({' <- '.join(str(entry['step']) for entry in chain)}): no float parent to fine-tune"
        )
    recipe = [step for entry in reversed(chain[:position]) for step in replayed(entry)]
    unknown = [entry["step"] for entry in recipe if entry["step"] not in RECIPE_CONFIGS]
    if unknown:
        raise RegistryError(
            f"the lineage of {model_name} v{champion.version} has steps update cannot re-run: {unknown}"
        )
    first_train = [entry for entry in chain if entry["step"] == contract.TRAIN][-1]
    return Origin(champion, chain[position], recipe, first_train)


def replayed(entry: dict) -> list[dict]:
    """A lineage entry as the steps that make it again: itself, or a search trial's prune, cluster, quantize."""
    return replay_steps(entry["made"], entry["params"]) if entry["step"] == contract.SEARCH_TRIAL else [entry]


def new_samples(config: UpdateConfig, origin: Origin, old: Dataset) -> NewSamples:
    if config.new_data == contract.NEW_DATA_FEEDBACK:
        return labelled_feedback(config, origin, old)
    data = load_dataset(config.new_data, image_size=origin.image_size)
    if data.input_shape != old.input_shape:
        raise DatasetError(f"{config.new_data} has images shaped {data.input_shape}; the model takes {old.input_shape}")
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    names = np.array(data.class_names)[np.concatenate([data.y_train, data.y_val, data.y_test])]
    index = {name: i for i, name in enumerate(old.class_names)}
    known = np.array([name in index for name in names], bool)
    if not known.any():
        raise DatasetError(
            f"no sample of {config.new_data} has one of the model's classes ({', '.join(old.class_names)}) as its "
            f"label (it has {', '.join(data.class_names)}); all {len(names)} refused"
        )
    refused = {} if known.all() else {NOT_A_CLASS: int((~known).sum())}
    y = np.array([index[name] for name in names[known]], np.int64)
    return NewSamples(x[known], y, data.source, refused)


def labelled_feedback(config: UpdateConfig, origin: Origin, old: Dataset) -> NewSamples:
    files = log_files(config.prediction_log)
    since = parse_time(config.since, "since") or promoted_at(origin.champion)
    until = parse_time(config.until, "until") or time.time()
    labelled = labelled_samples(read(files, since, until), config.model_name, old.class_names, old.input_shape)
    print(f"update: {labelled.describe()} from {', '.join(map(str, files))} since {since:.0f}")
    if len(labelled.y) == 0:
        raise DatasetError(
            f"no labelled traffic of {config.model_name} in {config.prediction_log} between {since:.0f} and "
            f"{until:.0f} (unix seconds; {labelled.describe()}): send true labels to the server's /feedback, "
            "widen since/until, or pass a data set as new_data"
        )
    source = f"{FEEDBACK_SOURCE}{','.join(map(str, files))}@{since:.3f}-{until:.3f}"
    return NewSamples(labelled.x, labelled.y, source, labelled.refused)


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


def run_children(config: UpdateConfig, origin: Origin, data_uri: str) -> list[str]:
    """train on the update data from the float parent, then the recipe; returns the child run ids in order."""
    env_manager = child_env_manager(config.env_manager)
    params, defaults = origin.float_run["params"], TrainConfig()
    train = TrainConfig(
        dataset=data_uri,
        image_size=origin.image_size,
        optimizer=unquoted(params.get("optimizer", defaults.optimizer)),
        # a tenth of the original training's rate, not of the last update's (a tenth of a tenth...)
        learning_rate=config.fine_tuning_rate(
            float(origin.first_train["params"].get("learning_rate", defaults.learning_rate))
        ),
        epochs=config.epochs,
        batch_size=config.batch_size,
        patience=config.patience,
        seed=config.seed,
        base_model=origin.float_model_uri,
    )
    run_ids = [run_step(contract.TRAIN, as_parameters(train), env_manager=env_manager, reuse=config.reuse_runs)]
    for entry in origin.recipe:
        parent = f"runs:/{run_ids[-1]}/{contract.KERAS_MODEL}"
        step = recipe_config(entry, parent, data_uri)
        run_ids.append(run_step(entry["step"], as_parameters(step), env_manager=env_manager, reuse=config.reuse_runs))
    return run_ids


def update(config: UpdateConfig) -> None:
    """Run (or find) the update in a run of its own; GateRefused (the run FAILED) if its challenger was refused."""
    origin = origin_of(config.model_name)
    old = data_of_run(origin.float_run["run_id"])
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
        data = mix(new.x, new.y, old, config.replay_fraction, config.seed)
        print(f"update: {len(new.y)} new samples from {new.source}; {data.describe()}")
        mlflow.log_metrics({contract.NEW_SAMPLES: len(new.y), contract.REFUSED_SAMPLES: sum(new.refused.values()),
                            contract.REPLAYED_SAMPLES: data.replayed})  # fmt: skip
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
        mlflow.set_tags({contract.TAG_MODEL_VERSION: version.version,
                         contract.VERSION_TAG_VALIDATION_STATUS: verdict.status,
                         contract.VERSION_TAG_VALIDATION_REASON: verdict.reason})  # fmt: skip
        if verdict.refused:
            raise GateRefused(f"v{version.version} not promoted: {verdict.reason}")


def main(argv: list[str] | None = None) -> None:
    update(parse_config(UpdateConfig, argv))


if __name__ == "__main__":
    run_cli(contract.UPDATE, main)
