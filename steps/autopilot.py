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
from dataclasses import dataclass, field

import mlflow

from steps import contract
from steps.adapt.new_data import labelled_feedback
from steps.adapt.origin import origin_of
from steps.datasets.data import DatasetError
from steps.monitoring.traffic import LogError, log_files, time_range
from steps.parameters import StepFailed, as_parameters, parse_config, run_cli
from steps.release.child_runs import child_env_manager, run_step
from steps.release.lineage import data_of_run
from steps.release.tracking import log_config, step_run
from steps.settings import AutopilotConfig, MonitorConfig, UpdateConfig


def child_runs(parent_id: str, step: str) -> list[mlflow.entities.Run]:
    """Runs of `step` started under the autopilot run, newest first."""
    return mlflow.search_runs(
        experiment_ids=[mlflow.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{contract.TAG_STEP}` = '{step}'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )


def labelled_since_promotion(config: AutopilotConfig) -> int:
    """Labelled samples the next update would take (the same reading update does); an unreadable log raises."""
    origin = origin_of(config.model_name)
    old = data_of_run(origin.float_run.run_id)
    settings = UpdateConfig(
        new_data=contract.NEW_DATA_FEEDBACK, model_name=config.model_name, prediction_log=config.prediction_log
    )
    try:
        return len(labelled_feedback(settings, origin, old).y)
    except DatasetError:  # readable logs, no labelled sample in them yet (a LogError is not this: it goes on)
        return 0


@dataclass
class Round:
    """What one round did (its metrics, one step of the autopilot run each) and, if it failed, why."""

    number: int
    metrics: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROUND_METRICS, 0.0))
    failure: str | None = None

    def failed(self, reason: str) -> Round:
        self.metrics[contract.ROUND_FAILED] = 1.0
        self.failure = reason
        print(f"autopilot: round {self.number} failed: {reason}")
        return self


ROUND_METRICS = (
    contract.ROUND_ALERTED,
    contract.LABELLED,
    contract.ROUND_UPDATED,
    contract.ROUND_PROMOTED,
    contract.ROUND_FAILED,
)


def run_round(config: AutopilotConfig, number: int, env_manager: str) -> Round:
    """One round: monitor, and update if it alerts for a reason an update answers. "Nothing to judge" and a
    refused update are outcomes; a step that exits 1 or 2, an unreadable log and incomplete monitoring fail it."""
    round_ = Round(number)
    try:  # read here, so a missing or corrupt log is named in one line rather than inside monitor's output
        time_range(log_files(config.prediction_log))
    except LogError as error:
        return round_.failed(str(error))
    parent = mlflow.active_run().info.run_id
    now = time.time()
    monitor = MonitorConfig(
        prediction_log=config.prediction_log,
        model_name=config.model_name,
        window_minutes=config.interval_minutes,
        since=f"{now - config.consecutive * config.interval_minutes * 60:.3f}",
        until=f"{now:.3f}",
        min_samples=config.min_samples,
        consecutive=config.consecutive,
    )
    try:
        run_step(contract.MONITOR, as_parameters(monitor), env_manager=env_manager, reuse=False)
    except StepFailed as failure:
        return round_.failed(f"monitor: {failure}")
    judged = child_runs(parent, contract.MONITOR)[0].data
    alert = judged.tags.get(contract.TAG_ALERT, contract.ALERT_NONE)
    if contract.ALERT_INCOMPLETE in alert.split(","):
        return round_.failed(f"monitor could not run every check ({alert}); its run's notes say which")
    if not judged.metrics.get(contract.JUDGED_WINDOWS):
        print(f"autopilot: round {number}: too little traffic to judge (min_samples={config.min_samples})")
        return round_
    round_.metrics[contract.ROUND_ALERTED] = float(alert != contract.ALERT_NONE)
    reasons = set(alert.split(",")) & set(contract.ALERTS_UPDATE_ANSWERS)
    if not reasons:
        print(
            f"autopilot: round {number}: alert {alert}: no update "
            f"(it answers {' or '.join(contract.ALERTS_UPDATE_ANSWERS)})"
        )
        return round_
    labelled = labelled_since_promotion(config)
    round_.metrics[contract.LABELLED] = float(labelled)
    if labelled < config.min_labels:
        print(
            f"autopilot: round {number}: alert {alert}, but {labelled} labelled samples < min_labels "
            f"{config.min_labels}: waiting for more feedback"
        )
        return round_
    update = UpdateConfig(
        new_data=contract.NEW_DATA_FEEDBACK,
        model_name=config.model_name,
        prediction_log=config.prediction_log,
        env_manager=env_manager,
    )
    round_.metrics[contract.ROUND_UPDATED] = 1.0
    try:
        run_step(contract.UPDATE, as_parameters(update), env_manager=env_manager, reuse=False)
    except StepFailed as failure:
        if failure.exit_code != contract.EXIT_REFUSED:
            return round_.failed(f"update: {failure}")
        print(f"autopilot: round {number}: the gate refused the update, champion unchanged (reason above)")
        return round_
    round_.metrics[contract.ROUND_PROMOTED] = 1.0
    print(f"autopilot: round {number}: alert {alert}: updated from {labelled} labelled samples and promoted")
    return round_


def autopilot(config: AutopilotConfig) -> list[Round]:
    """Rounds until max_rounds or max_minutes; stops (StepFailed, exit 1) after max_failures failed in a row."""
    env_manager = child_env_manager(config.env_manager)
    deadline = time.monotonic() + config.max_minutes * 60
    rounds: list[Round] = []
    with step_run(contract.AUTOPILOT):
        log_config(config)
        for number in range(1, config.max_rounds + 1):
            started = time.monotonic()
            rounds.append(run_round(config, number, env_manager))
            mlflow.log_metrics(rounds[-1].metrics, step=number)
            mlflow.set_tag(contract.TAG_ROUNDS, str(len(rounds)))
            if rounds[-1].failure is not None:
                mlflow.set_tag(contract.TAG_ROUND_FAILURE.format(number=number), rounds[-1].failure[:5000])
            in_a_row = failures_in_a_row(rounds)
            if in_a_row >= config.max_failures:
                raise StepFailed(
                    f"round {number}: {rounds[-1].failure} ({in_a_row} failed round(s) in a row, "
                    f"max_failures={config.max_failures})"
                )
            next_round = started + config.interval_minutes * 60
            if number == config.max_rounds or next_round >= deadline:
                break
            time.sleep(max(0.0, next_round - time.monotonic()))
    return rounds


def failures_in_a_row(rounds: list[Round]) -> int:
    count = 0
    for round_ in reversed(rounds):
        if round_.failure is None:
            break
        count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    rounds = autopilot(parse_config(AutopilotConfig, argv))
    total = {key: int(sum(r.metrics[key] for r in rounds)) for key in ROUND_METRICS}
    print(
        f"autopilot: {len(rounds)} round(s): {total[contract.ROUND_ALERTED]} alerted, "
        f"{total[contract.ROUND_UPDATED]} updated, {total[contract.ROUND_PROMOTED]} promoted, "
        f"{total[contract.ROUND_FAILED]} failed"
    )


if __name__ == "__main__":
    run_cli(contract.AUTOPILOT, main)
