"""Cost of the prediction log on the request path: this server's log against its first layout's.

At concurrency 16, one sample per request, three rtdeploy servers on the same
registered model: this server with inputs and probabilities logged
(log_inputs 1.0) and without inputs (0.0), and the server of BASELINE_COMMIT,
whose log has one row per request and no samples, inputs or heartbeats (its
code is taken with `git archive` and run in the same environment). The three
run side by side and the repeats take turns, so a slower stretch of the shared
machine hits each alike. The model is trained and registered first in a
private tracking store (`python -m steps.train`, about 30 s). Repeats are at
7 by default (LOG_COST_REPEATS): the loss is a few percent, about the machine's
run-to-run spread. Writes bench/RESULTS.md and README's block `log-cost`.

    apt-get install wrk   # once
    python bench/log_cost.py [--seconds 8] [--repeats 3]
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest  # noqa: E402
from results import write_readme_block, write_section  # noqa: E402

BASELINE_COMMIT = "e31f9ee"  # the last server writing the first prediction-log layout (one row per request)
LOG_COST_CONCURRENCY = 16
LOG_COST_REPEATS = 7  # at least: the loss is a few percent, the machine's run-to-run spread about as much
LAYOUTS = {"l1.db": 0, "l2a.db": 2}  # prediction log -> the layout (user_version) of the code meant to write it


def baseline_code(folder: str) -> str:
    """BASELINE_COMMIT's steps/ in folder/baseline: the working folder from which `-m steps.serve` runs it."""
    baseline = Path(folder) / "baseline"
    baseline.mkdir()
    repository = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(repository), "archive", BASELINE_COMMIT, "steps"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    return str(baseline)


def log_cost(setup: loadtest.Setup, seconds: float, repeats: int) -> dict[str, list[dict]]:
    """Throughput at concurrency 16 with this server's log (inputs kept, or not) and with BASELINE_COMMIT's."""
    folder = setup.folder
    baseline = baseline_code(folder)
    servers = [
        loadtest.Server(
            f"first layout ({BASELINE_COMMIT})", [*loadtest.SERVE, "--prediction_log", f"{folder}/l1.db"], cwd=baseline
        ),
        loadtest.Server(
            "second layout, inputs kept (log_inputs 1.0)",
            [*loadtest.SERVE, "--prediction_log", f"{folder}/l2a.db", "--log_inputs", "1.0"],
        ),
        loadtest.Server(
            "second layout, no inputs (log_inputs 0.0)",
            [*loadtest.SERVE, "--prediction_log", f"{folder}/l2b.db", "--log_inputs", "0.0"],
        ),
    ]
    runs = loadtest.side_by_side(
        {server.name: server for server in servers}, setup, seconds, repeats, [LOG_COST_CONCURRENCY]
    )
    for log, layout in LAYOUTS.items():  # each ran the code it was meant to
        with sqlite3.connect(Path(folder) / log) as connection:
            assert connection.execute("PRAGMA user_version").fetchone()[0] == layout, f"{log} is not layout {layout}"
    return {name: server_runs for (name, _), server_runs in runs.items()}


def log_cost_report(runs: dict[str, list[dict]], repeats: int) -> str:
    (baseline, base_runs), *others = runs.items()
    lines = [
        f"Throughput at concurrency {LOG_COST_CONCURRENCY}, one sample per request: median of {repeats} wrk runs "
        "(min–max); the servers ran side by side and took turns. Change: the median of the per-turn ratios to the "
        "first layout's throughput in the same turn (min–max).",
        "",
        "| prediction log | throughput (req/s) | p50 (ms) | p99 (ms) | errors | change vs first layout |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, server_runs in runs.items():
        row = loadtest.Row(name, LOG_COST_CONCURRENCY, server_runs)
        change = "" if name == baseline else loadtest.per_turn(server_runs, base_runs, as_change=True)
        lines.append(
            f"| {name} | {row.spread('throughput', 0)} | {row.spread('p50')} | {row.spread('p99')} | "
            f"{row.errors()} | {change} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = loadtest.argument_parser(__doc__)
    parser.set_defaults(repeats=LOG_COST_REPEATS)
    args = loadtest.parse(parser)
    repeats = args.repeats
    with loadtest.trained() as setup:
        cost = log_cost_report(log_cost(setup, args.seconds, repeats), repeats)
        write_section("Prediction log cost on the request path", loadtest.reproduce(__file__, args), cost)
        write_readme_block("log-cost", loadtest.table_of(cost))
        print(cost)


if __name__ == "__main__":
    main()
