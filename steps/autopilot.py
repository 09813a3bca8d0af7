"""`autopilot` entry point: monitor the served model on a schedule, and update it when it has drifted.

Every `interval_minutes` (at most `max_rounds` rounds and `max_minutes` in all:
it always ends) a round runs `monitor` on the last `consecutive` windows of
`interval_minutes`, as a child run. When it alerts for drift or accuracy and
the prediction logs hold at least `min_labels` labelled samples since the
champion was promoted, the round runs `update -P new_data=feedback`, another
child run. The update's gate decides: a refused challenger leaves champion,
aliases and servers as they were, and the round says so. Each round is a step
of the autopilot run's metrics (alert, labelled samples, updated, promoted).
"""

from __future__ import annotations

import time

import mlflow
from mlflow.exceptions import ExecutionException

from steps import contract
from steps.config import as_parameters, parse_config, run_cli
from steps.lineage import data_of_run
from steps.pipeline import detect_env_manager, run_step
from steps.settings import AutopilotConfig, MonitorConfig, UpdateConfig
from steps.tracking import log_config, step_run
from steps.update import labelled_feedback, origin_of


def child_runs(parent_id: str, step: str) -> list[mlflow.entities.Run]:
    """Runs of `step` started under the autopilot run, newest first."""
    return mlflow.search_runs(
        experiment_ids=[mlflow.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{contract.TAG_STEP}` = '{step}'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )


def labelled_since_promotion(config: AutopilotConfig) -> int:
    """Labelled samples the next update would take (the same reading update does)."""
    origin = origin_of(config.model_name)
    old = data_of_run(origin.float_run["run_id"])
    settings = UpdateConfig(new_data=contract.NEW_DATA_FEEDBACK, model_name=config.model_name,
                            prediction_log=config.prediction_log)  # fmt: skip
    try:
        return len(labelled_feedback(settings, origin, old).y)
    except ValueError:  # none at all (DatasetError), or no log yet (LogError)
        return 0


def run_round(config: AutopilotConfig, number: int, env_manager: str) -> dict[str, float]:
    """One round: monitor, and update if it alerts for a reason an update answers. Returns the round's metrics."""
    parent = mlflow.active_run().info.run_id
    now = time.time()
    monitor = MonitorConfig(
        prediction_log=config.prediction_log, model_name=config.model_name, window_minutes=config.interval_minutes,
        since=f"{now - config.consecutive * config.interval_minutes * 60:.3f}", until=f"{now:.3f}",
        min_samples=config.min_samples, consecutive=config.consecutive,
    )  # fmt: skip
    try:
        run_step(contract.MONITOR, as_parameters(monitor), env_manager=env_manager, reuse=False)
    except ExecutionException as error:  # no traffic in the windows yet: nothing to judge, not a failure
        print(f"autopilot: round {number}: monitor found nothing to judge ({error})")
        return dict.fromkeys((contract.ROUND_ALERTED, contract.LABELLED, contract.ROUND_UPDATED,
                              contract.ROUND_PROMOTED), 0.0)  # fmt: skip
    alert = child_runs(parent, contract.MONITOR)[0].data.tags.get(contract.TAG_ALERT, contract.ALERT_NONE)
    reasons = set(alert.split(",")) & set(contract.ALERTS_UPDATE_ANSWERS)
    labelled = labelled_since_promotion(config) if reasons else 0
    metrics = {contract.ROUND_ALERTED: float(alert != contract.ALERT_NONE), contract.LABELLED: float(labelled),
               contract.ROUND_UPDATED: 0.0, contract.ROUND_PROMOTED: 0.0}  # fmt: skip
    if not reasons:
        print(
            f"autopilot: round {number}: alert {alert}: no update "
            f"(it answers {' or '.join(contract.ALERTS_UPDATE_ANSWERS)})"
        )
        return metrics
    if labelled < config.min_labels:
        print(f"autopilot: round {number}: alert {alert}, but {labelled} labelled samples < min_labels "
              f"{config.min_labels}: waiting for more feedback")  # fmt: skip
        return metrics
    update = UpdateConfig(new_data=contract.NEW_DATA_FEEDBACK, model_name=config.model_name,
                          prediction_log=config.prediction_log, env_manager=env_manager)  # fmt: skip
    metrics[contract.ROUND_UPDATED] = 1.0
    try:
        run_step(contract.UPDATE, as_parameters(update), env_manager=env_manager, reuse=False)
    except ExecutionException:
        refused = child_runs(parent, contract.UPDATE)
        reason = refused[0].data.tags.get(contract.VERSION_TAG_VALIDATION_REASON, "see its run") if refused else ""
        print(f"autopilot: round {number}: update refused, champion unchanged: {reason}")
        return metrics
    metrics[contract.ROUND_PROMOTED] = 1.0
    print(f"autopilot: round {number}: alert {alert}: updated from {labelled} labelled samples and promoted")
    return metrics


def autopilot(config: AutopilotConfig) -> list[dict[str, float]]:
    env_manager = detect_env_manager() if config.env_manager == "auto" else config.env_manager
    deadline = time.monotonic() + config.max_minutes * 60
    rounds = []
    with step_run(contract.AUTOPILOT):
        log_config(config)
        for number in range(1, config.max_rounds + 1):
            started = time.monotonic()
            rounds.append(run_round(config, number, env_manager))
            mlflow.log_metrics(rounds[-1], step=number)
            next_round = started + config.interval_minutes * 60
            if number == config.max_rounds or next_round >= deadline:
                break
            time.sleep(max(0.0, next_round - time.monotonic()))
        mlflow.set_tag(contract.TAG_ROUNDS, str(len(rounds)))
    return rounds


def main(argv: list[str] | None = None) -> None:
    rounds = autopilot(parse_config(AutopilotConfig, argv))
    total = {key: int(sum(r[key] for r in rounds)) for key in rounds[0]}
    print(
        f"autopilot: {len(rounds)} round(s): {total[contract.ROUND_ALERTED]} alerted, "
        f"{total[contract.ROUND_UPDATED]} updated, {total[contract.ROUND_PROMOTED]} promoted"
    )


if __name__ == "__main__":
    run_cli(contract.AUTOPILOT, main)
