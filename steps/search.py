"""`search` entry point: the smallest deployable within the accuracy budget, found by an Optuna study.

1. Sensitivity (`steps.compress.sensitivity`): each large layer pruned alone at rising
   sparsity gives its ceiling, the highest sparsity it tolerates by itself.
2. Trials: one global scale times those ceilings sets every layer's sparsity
   (a sensitivity-scaled target, Deep Compression's recipe); clusters per layer
   group (conv, dense: 0 = none, down to 3 = zero and two values); post-training
   or quantization-aware int8. Prune -> cluster -> quantize, each on a copy.
3. Objective and constraint: minimise the deployable's gzip size subject to its
   validation-accuracy drop vs the float32 baseline <= max_accuracy_drop, as an
   Optuna constraint (TPE's constraints_func: infeasible trials inform the
   sampler without being chosen), not a penalty. A trial whose pruned model
   already loses more than HOPELESS_DROP beyond the budget is pruned (Optuna's
   ThresholdPruner) before clustering and quantization are paid for.
4. Every trial is a nested MLflow run with the standard variant metrics, so the
   UI compares trials like `main`'s variants. The choice uses the validation
   split only; the chosen trial's test accuracy (with its 95% interval) is what
   is reported. It is registered through the same gate as `main`'s.

With `storage` (sqlite:///..., postgresql://...), several search processes on
one or many machines join one study (Optuna's own distributed mode); the
sensitivity table is computed once and kept in the study.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import mlflow

from steps import contract
from steps.compress.recipes import FINE_TUNING, TRIAL_QUANTIZE_MODE, stage_epochs
from steps.core.selection import Budget, within_budget
from steps.datasets.data import Dataset
from steps.parameters import GateRefused, StepFailed, UsageError, parse_config, run_cli
from steps.release.lineage import checked_inputs
from steps.release.tracking import log_config, log_dataset, step_run
from steps.settings import ClusterConfig, PruneConfig, QuantizeConfig, SearchConfig

SENSITIVITY_EPOCHS = 2  # fine-tuning per (layer, sparsity): enough to tell a layer that recovers (fewer if epochs is)
SCALE_RANGE = (0.5, 1.2)  # times each layer's ceiling: below is too timid, above the ceilings rarely holds
SCALE_STEP = 0.05
# The study's first trials, before any random one: every large layer one step below its own ceiling (all at
# their ceilings lost 12 validation samples: pruned together, layers lose more than each alone), few shared values
# per kernel, post-training int8: the edge of the budget, where the smallest deployables are, instead of wherever
# random draws land. Several cluster counts (conv, dense), because at that edge whether a trial keeps within the
# one validation sample the budget allows is close to a coin flip. Measured on digits (search seeds 42, 43, 44):
# of these four, at least one was within the budget for each seed, at 28-34x; scales 0.8-0.9 gave 14-21x.
FIRST_SCALE = 1 - SCALE_STEP
FIRST_CLUSTERS = ((4, 4), (3, 8), (8, 8), (3, 16))
STARTUP_TRIALS = 5  # random draws (after the first trials) before TPE models the study; Optuna's default is 10
# Distinct values per kernel in a layer group (0 leaves it unclustered). Sparsity-preserving clustering keeps
# one centroid at zero, so TFMOT's least, 3, is zero plus two values: binary weights besides the pruned ones.
CLUSTER_CHOICES = (0, 3, 4, 8, 16, 32)
HOPELESS_DROP = 0.03  # pruned alone this far beyond the budget, clustering and QAT will not bring it back
SENSITIVITY_ATTR = "sensitivity"  # study user attribute: the table, shared by every process of the study
SETTINGS_ATTR = "fine_tuning"  # trial user attribute: what besides its parameters decides its result
REPEATS_ATTR = "repeats"  # trial user attribute: the earlier trial whose result it took
TRIAL_METRICS = (contract.VAL_ACCURACY_DROP, contract.SIZE_GZIP_BYTES, contract.COMPRESSION_RATIO)  # kept per trial
SQLITE_WAIT_SECONDS = 60  # how long a search process waits for another's write to a shared SQLite study
STORAGE_ATTEMPTS = 3


def main(argv: list[str] | None = None) -> None:
    config = parse_config(SearchConfig, argv)
    check_storage(config.storage)  # a mistyped URL would otherwise surface only after TensorFlow and the model
    data = checked_inputs(config.dataset, config.image_size, config.model_uri, "model_uri")
    from steps.compress.variants import load_parent

    parent = load_parent(config.model_uri, data, robustness=config.robustness)
    verdict = None
    with step_run(contract.SEARCH) as run:
        log_config(config)
        log_dataset(data)
        study = open_study(config, run.info.run_id)
        mlflow.set_tag(contract.TAG_STUDY, study.study_name)
        tolerated = shared_sensitivity(study, parent, data, config)
        optimise(study, parent, data, config, tolerated)
        trials = finished_trials(study)
        best = report_study(study, trials, config, parent.baseline.gzip_bytes)
        if best is not None and config.register:
            verdict = register_best(best, config)
    if best is None:  # nothing to deploy is a failure of the search (exit 1), not a mistake in its settings
        raise StepFailed(nothing_within(trials, config))
    if verdict is not None and verdict.refused:
        raise GateRefused(verdict.reason)


STORAGE_EXAMPLES = "use sqlite:///<file>.db or postgresql://<user>:<password>@<host>/<database>"


def check_storage(url: str) -> None:
    """A storage URL SQLAlchemy cannot open is the user's mistake, told in one line (UsageError) before the data,
    TensorFlow and the model are loaded: parsed by make_url, its dialect and driver imported (cheap, no
    connection), and a SQLite file's folder present. Whether the server answers is known only by connecting."""
    if not url:
        return
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    shown = re.sub(r":[^:@/]*@", ":***@", url)  # the URL may carry a password; the line goes to logs
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UsageError(f"storage={shown!r} is not a database URL; {STORAGE_EXAMPLES}") from None
    try:
        parsed.get_dialect().import_dbapi()
    except sqlalchemy.exc.NoSuchModuleError:
        raise UsageError(
            f"storage={shown!r}: SQLAlchemy has no database {parsed.drivername!r}; {STORAGE_EXAMPLES}"
        ) from None
    except ImportError as error:
        raise UsageError(
            f"storage={shown!r}: its driver {error.name!r} is not installed; install it or {STORAGE_EXAMPLES}"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise UsageError(f"storage={shown!r}: the folder {folder} does not exist; create it or name another")


def open_study(config: SearchConfig, run_id: str):
    """Create the study, or join it when several processes share `storage`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial of our own instead
    name = config.study_name or f"rtdeploy-search-{run_id}"
    storage = shared_storage(config.storage) if config.storage else None
    joined = 0
    if storage:
        try:
            joined = len(optuna.load_study(study_name=name, storage=storage).trials)
        except KeyError:  # not created yet: this process creates it
            joined = 0
    # A process that joins later starts its sampler elsewhere, or two would propose the same first trials.
    startup = len(FIRST_CLUSTERS) + STARTUP_TRIALS  # Optuna counts the enqueued first trials as startup trials
    sampler = optuna.samplers.TPESampler(
        seed=config.seed + joined, n_startup_trials=startup, constraints_func=_constraint
    )
    pruner = optuna.pruners.ThresholdPruner(upper=config.max_accuracy_drop + HOPELESS_DROP)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction="minimize", load_if_exists=True
    )
    study.set_user_attr("max_accuracy_drop", config.max_accuracy_drop)
    return study


def shared_storage(url: str):
    """Optuna's RDB storage at url, for several processes at once. SQLite waits up to a minute for another
    process's write instead of its default 5 s; and processes that start together on a fresh file can collide
    while creating its tables (an OperationalError) or stamping its schema version (an IntegrityError on
    alembic_version, seen in CI; optuna wraps the one on its own version row as StorageInternalError), so the
    later one tries again and finds them made."""
    import optuna
    import sqlalchemy

    collisions = (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.IntegrityError,
        optuna.exceptions.StorageInternalError,
    )
    engine = {"connect_args": {"timeout": SQLITE_WAIT_SECONDS}} if url.startswith("sqlite") else {}
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except collisions:
            if attempt == STORAGE_ATTEMPTS:
                raise
            time.sleep(attempt)


BUDGET_ATTRS = {  # a trial's drop -> the budget it is held to, both kept as user attributes of the trial
    contract.VAL_ACCURACY_DROP: "max_accuracy_drop",
    contract.VAL_ROBUST_ACCURACY_DROP: "max_robust_accuracy_drop",
}


def _constraint(trial) -> list[float]:
    """Per budget (accuracy, robust accuracy), 0 when the trial is within it on the validation split (selection's
    within_budget), else how far over; a drop that was not measured (robustness off, a pruned trial) counts 0."""
    attrs = trial.user_attrs
    return [
        0.0 if drop not in attrs or within_budget(attrs[drop], attrs[name]) else attrs[drop] - attrs[name]
        for drop, name in BUDGET_ATTRS.items()
    ]


def shared_sensitivity(study, parent, data: Dataset, config: SearchConfig) -> dict[str, float]:
    """Each large layer's ceiling: from the study if another process made it, else measured and kept there."""
    from steps.compress.sensitivity import sensitivity_table, tolerated_sparsity
    from steps.reports.figures import sensitivity_figure

    rows = study.user_attrs.get(SENSITIVITY_ATTR)
    if rows is None:
        short = _prune_config(config, min(SENSITIVITY_EPOCHS, config.epochs))
        rows = sensitivity_table(parent.model, data, short)
        study.set_user_attr(SENSITIVITY_ATTR, rows)
    else:
        print(f"search: sensitivity of study {study.study_name} reused ({len(rows)} rows)")
    # One validation sample of slack: a layer's drop is measured on a finite split, and the scale trims it anyway.
    tolerance = config.max_accuracy_drop + 1 / len(data.y_val)
    tolerated = tolerated_sparsity(rows, tolerance)
    mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, "sensitivity.json")
    mlflow.log_dict(tolerated, "sensitivity_ceilings.json")
    mlflow.log_figure(sensitivity_figure(rows, tolerated, tolerance), "sensitivity.png")
    print("search: sparsity ceilings " + ", ".join(f"{layer} {value:.0%}" for layer, value in tolerated.items()))
    return tolerated


def optimise(study, parent, data: Dataset, config: SearchConfig, tolerated: dict[str, float]) -> None:
    def objective(trial) -> float:
        return run_trial(trial, parent, data, config, tolerated)

    for params in first_trials(tolerated, layer_groups(parent.model), config.quantization_choices):
        study.enqueue_trial(params, skip_if_exists=True)  # once per study, however many processes join it
    timeout = config.timeout_minutes * 60 or None  # 0 means no limit, for either (not both: SearchConfig)
    study.optimize(objective, n_trials=config.n_trials or None, timeout=timeout, gc_after_trial=True)


def run_trial(trial, parent, data: Dataset, config: SearchConfig, tolerated: dict[str, float]) -> float:
    """Prune, cluster and quantize one candidate in a nested run; its gzip size (validation drop kept aside)."""
    import optuna

    from steps.compress.compression import cluster_model, prune_model, quantize
    from steps.compress.sensitivity import scaled_targets, val_accuracy
    from steps.compress.variants import log_variant, start_variant_run

    started = time.monotonic()
    scale = trial.suggest_float("prune_scale", *scale_range(tolerated), step=SCALE_STEP)
    groups = layer_groups(parent.model)
    clusters = {
        group: trial.suggest_categorical(f"clusters_{group}", CLUSTER_CHOICES) for group in sorted(set(groups.values()))
    }
    quantization = trial.suggest_categorical("quantization", config.quantization_choices)
    sparsity = scaled_targets(tolerated, scale)
    layer_clusters = {layer: clusters[group] for layer, group in groups.items() if clusters[group]}
    for name in BUDGET_ATTRS.values():
        trial.set_user_attr(name, getattr(config, name))
    trial.set_user_attr(SETTINGS_ATTR, json.dumps(_fine_tuning(config) | {"epochs": config.epochs}, sort_keys=True))
    twin = earlier_twin(trial)
    if twin is not None:
        return repeat(trial, twin)
    suffix = f"t{trial.number}-s{scale:.2f}-" + "-".join(f"{g}{c}" for g, c in clusters.items()) + f"-{quantization}"
    recipe = {
        "study": trial.study.study_name,
        "trial": trial.number,
        "layer_sparsity": sparsity,
        "layer_clusters": layer_clusters,
        "quantization": quantization,
        "epochs": config.epochs,
    }
    with mlflow.start_run(nested=True) as run:
        variant = start_variant_run(contract.SEARCH_TRIAL, suffix, parent, config, data, **recipe)
        mlflow.set_tags(
            {
                contract.TAG_STEP: contract.SEARCH_TRIAL,
                contract.TAG_STUDY: trial.study.study_name,
                contract.TAG_TRIAL: str(trial.number),
            }
        )
        mlflow.log_params({f"trial.{key}": value for key, value in trial.params.items()})
        trial.set_user_attr("run_id", run.info.run_id)
        model = prune_model(parent.model, data, _prune_config(config, config.epochs), layer_sparsity=sparsity).model
        pruned_drop = parent.baseline.val_accuracy - val_accuracy(model, data)
        trial.report(pruned_drop, step=0)
        hopeless = trial.should_prune()
        if hopeless:  # what the sampler's constraint sees for it: already far over the budget
            trial.set_user_attr(contract.VAL_ACCURACY_DROP, pruned_drop)
        if not hopeless:
            steps = [{"step": contract.PRUNE}]
            if layer_clusters:
                model = cluster_model(model, data, _cluster_config(config), layer_clusters=layer_clusters).model
                steps.append({"step": contract.CLUSTER})
            quantize_config = _quantize_config(config, TRIAL_QUANTIZE_MODE[quantization])
            tflite, kernel_sparsity = quantize(model, data, quantize_config, steps)
            metrics = log_variant(variant, None, tflite, data, parent, kernel_sparsity, config.robustness)
        mlflow.set_tag(contract.TAG_TRIAL_STATE, "pruned" if hopeless else "complete")  # the run itself FINISHED
    if hopeless:
        print(f"search: trial {trial.number} pruned: pruning alone loses {pruned_drop:+.4f} on validation")
        raise optuna.TrialPruned()
    for key in (*TRIAL_METRICS, contract.VAL_ROBUST_ACCURACY_DROP):
        if key in metrics:  # the robust drop only when robustness was measured
            trial.set_user_attr(key, metrics[key])
    over = config.budget.exceeded(metrics)
    print(
        f"search: trial {trial.number} ({variant}): {metrics[contract.SIZE_GZIP_BYTES]:,} B gzipped, "
        f"{metrics[contract.COMPRESSION_RATIO]:.1f}x, validation drop {metrics[contract.VAL_ACCURACY_DROP]:+.4f} "
        f"({'over budget: ' + '; '.join(over) if over else 'within budget'}), {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return metrics[contract.SIZE_GZIP_BYTES]


def earlier_twin(trial):
    """A finished trial with the same parameters and fine-tuning settings, if any. TPE proposes such repeats (a
    fifth of the trials in one 15-minute search), and measuring one again gives the same numbers: fine-tuning is
    seeded and its kernels deterministic."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for other in trial.study.get_trials(deepcopy=False, states=states):
        same = other.params == trial.params and other.user_attrs.get(SETTINGS_ATTR) == trial.user_attrs[SETTINGS_ATTR]
        if same and REPEATS_ATTR not in other.user_attrs and contract.VAL_ACCURACY_DROP in other.user_attrs:
            return other
    return None


def repeat(trial, twin) -> float:
    """The twin's result for this trial, so the sampler sees it again, in a nested run that names the twin; not
    a second deployable (the choice counts the twin only)."""
    import optuna

    trial.set_user_attr(REPEATS_ATTR, twin.number)
    for drop in BUDGET_ATTRS:
        if drop in twin.user_attrs:
            trial.set_user_attr(drop, twin.user_attrs[drop])
    state = "pruned" if twin.state == optuna.trial.TrialState.PRUNED else "complete"
    with mlflow.start_run(nested=True, run_name=f"t{trial.number}-repeats-t{twin.number}"):
        mlflow.set_tags(
            {
                contract.TAG_STEP: contract.SEARCH_TRIAL,
                contract.TAG_STUDY: trial.study.study_name,
                contract.TAG_TRIAL: str(trial.number),
                contract.TAG_TRIAL_STATE: f"repeated ({state})",
            }
        )
        mlflow.log_param(REPEATS_ATTR, twin.number)
    print(f"search: trial {trial.number} repeats trial {twin.number} ({state}): its result, not measured again")
    if twin.state == optuna.trial.TrialState.PRUNED:
        raise optuna.TrialPruned()
    return twin.value


def scale_range(tolerated: dict[str, float]) -> tuple[float, float]:
    """SCALE_RANGE, cut at the first step where every layer has reached MAX_SPARSITY: a larger scale would give
    the same targets again (with ceilings of 98%, scales 1.05 to 1.2 were one trial four times over)."""
    from steps.compress.sensitivity import MAX_SPARSITY

    low, high = SCALE_RANGE
    ceilings = [ceiling for ceiling in tolerated.values() if ceiling > 0]
    if ceilings:
        saturated = max(MAX_SPARSITY / ceiling for ceiling in ceilings)
        high = min(high, low + SCALE_STEP * math.ceil((saturated - low) / SCALE_STEP - 1e-9))
    return low, round(high, 10)


def first_trials(tolerated: dict[str, float], groups: dict[str, str], quantizations: list[str]) -> list[dict]:
    """The parameters of the study's first trials: FIRST_SCALE of the ceilings, each of FIRST_CLUSTERS for the
    groups the model has, post-training int8 when allowed (a fraction of QAT's time)."""
    low, high = scale_range(tolerated)
    scale = round(min(max(FIRST_SCALE, low), high), 10)
    quantization = "ptq" if "ptq" in quantizations else quantizations[0]
    present = set(groups.values())
    first = []
    for pair in FIRST_CLUSTERS:
        clusters = {f"clusters_{group}": count for group, count in zip(("conv", "dense"), pair) if group in present}
        params = {"prune_scale": scale, **clusters, "quantization": quantization}
        if params not in first:  # a model with one group repeats some pairs
            first.append(params)
    return first


def layer_groups(model) -> dict[str, str]:
    """Clusterable layer -> its group for the search: conv or dense."""
    from steps.compress.compression import WEIGHT_LAYERS

    return {
        layer.name: "dense" if type(layer).__name__ == "Dense" else "conv"
        for layer in model.layers
        if isinstance(layer, WEIGHT_LAYERS)
    }


def _prune_config(config: SearchConfig, epochs: int) -> PruneConfig:
    return PruneConfig(**_fine_tuning(config), epochs=epochs)


def _cluster_config(config: SearchConfig) -> ClusterConfig:
    return ClusterConfig(**_fine_tuning(config), epochs=stage_epochs(config.epochs)[contract.CLUSTER])


def _quantize_config(config: SearchConfig, mode: str) -> QuantizeConfig:
    return QuantizeConfig(**_fine_tuning(config), epochs=stage_epochs(config.epochs)[contract.QUANTIZE], mode=mode)


def _fine_tuning(config: SearchConfig) -> dict:
    return {key: getattr(config, key) for key in FINE_TUNING}


def finished_trials(study) -> list[dict]:
    """Every trial of the study that measured a deployable, from every process that joined it."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    done = [t for t in complete if REPEATS_ATTR not in t.user_attrs]  # a repeat's deployable is its twin's
    return [
        {
            "number": t.number,
            "run_id": t.user_attrs["run_id"],
            **{
                key: t.user_attrs[key]
                for key in (*TRIAL_METRICS, contract.VAL_ROBUST_ACCURACY_DROP)
                if key in t.user_attrs
            },
        }
        for t in done
    ]


def best_trial(trials: list[dict], budget: Budget) -> dict | None:
    """The smallest deployable within the budget on validation; ties go to the smaller drop, then the earlier."""
    feasible = [t for t in trials if budget.admits(t)]
    key = (contract.SIZE_GZIP_BYTES, contract.VAL_ACCURACY_DROP, "number")
    return min(feasible, key=lambda t: tuple(t[k] for k in key), default=None)


def nothing_within(trials: list[dict], config: SearchConfig) -> str:
    """Why a search chose nothing, and what to change."""
    closest = min(trials, key=lambda t: t[contract.VAL_ACCURACY_DROP], default=None)
    lost = "" if closest is None else f" (the closest: {'; '.join(config.budget.exceeded(closest))})"
    return (
        f"no trial of {len(trials)} complete is within {config.budget} on the validation split{lost}; raise the "
        "budget, give it more time (timeout_minutes) or fine-tune longer (epochs)"
    )


def report_study(study, trials: list[dict], config: SearchConfig, baseline_gzip: int) -> dict | None:
    """The study's history and trade-off plots, its trials as a table, and the choice, on the active run."""
    from steps.reports.figures import study_figure

    best = best_trial(trials, config.budget)
    if trials:
        mlflow.log_table({key: [t.get(key) for t in trials] for key in trials[0]}, "trials.json")
        mlflow.log_figure(study_figure(trials, best and best["number"], config.budget, baseline_gzip), "study.png")
    pruned = sum(t.state.name == "PRUNED" for t in study.get_trials(deepcopy=False))
    mlflow.log_metrics({"trials_complete": len(trials), "trials_pruned": pruned})
    if best is None:
        return None
    chosen = mlflow.get_run(best["run_id"]).data.metrics
    mlflow.set_tag(contract.TAG_BEST_RUN, best["run_id"])
    mlflow.set_tag(contract.TAG_BEST_VARIANT, mlflow.get_run(best["run_id"]).data.tags[contract.TAG_VARIANT])
    mlflow.log_metric(contract.BEST_COMPRESSION_RATIO, best[contract.COMPRESSION_RATIO])
    for key in (
        contract.ACCURACY,
        contract.ACCURACY_LOW,
        contract.ACCURACY_HIGH,
        contract.SIZE_GZIP_BYTES,
        contract.SIZE_XZ_BYTES,
        contract.VAL_ACCURACY_DROP,
    ):
        mlflow.log_metric(key, chosen[key])  # the chosen trial's: the test split is reported for it alone
    print(
        f"search: best trial {best['number']} ({len(trials)} complete trials; run {best['run_id']}): "
        f"{best[contract.COMPRESSION_RATIO]:.1f}x smaller gzipped than float32 "
        f"({int(chosen[contract.SIZE_GZIP_BYTES]):,} B; xz {int(chosen[contract.SIZE_XZ_BYTES]):,} B), validation "
        f"drop {best[contract.VAL_ACCURACY_DROP]:+.4f}; test accuracy {chosen[contract.ACCURACY]:.4f} "
        f"[{chosen[contract.ACCURACY_LOW]:.4f}, {chosen[contract.ACCURACY_HIGH]:.4f}]"
    )
    return best


def register_best(best: dict, config: SearchConfig):
    """The chosen trial through the same gate as main's choice, in a nested `register` run; the verdict."""
    from steps.release.promotion import register_challenger
    from steps.release.registry import describe

    with mlflow.start_run(nested=True, run_name=contract.REGISTER):
        mlflow.set_tag(contract.TAG_STEP, contract.REGISTER)
        mlflow.set_tag(contract.TAG_BEST_RUN, best["run_id"])
        version, verdict = register_challenger(config.model_name, best["run_id"], config)
    print(f"search: {describe(version)}: gate {verdict.status}: {verdict.reason}")
    return verdict


if __name__ == "__main__":
    run_cli(contract.SEARCH, main)
