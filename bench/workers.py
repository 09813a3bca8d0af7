"""Several server processes on one port: `serve -P workers=1` against `workers=2`.

Both serve the same registered digits model (trained and registered first in a
private tracking store: `python -m steps.train`, about 30 s), side by side, the
repeats taking turns, at concurrency 16 and 64, one sample per request. wrk
needs CPU too on this 2-core machine; the cores it used (its CPU time over the
run's wall time) are reported beside each figure. Writes bench/RESULTS.md and
README's block `workers`.

    apt-get install wrk   # once
    python bench/workers.py [--seconds 8] [--repeats 3]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest  # noqa: E402
from results import write_readme_block, write_section  # noqa: E402

WORKER_COUNTS = (1, 2)
WORKERS_CONCURRENCY = (16, 64)


def wait_for_workers(port: int, count: int, timeout: float = 120) -> None:
    """Until every worker serves: a worker listens once its model is loaded."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = loadtest.metrics_text(port).splitlines()
        if count == 1 or sum(line.startswith("rtdeploy_model_version{") for line in lines) == count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{count} workers on port {port} not all serving after {timeout} s")


def workers(setup: loadtest.Setup, seconds: float, repeats: int) -> dict[tuple[int, int], list[dict]]:
    """Throughput of serve with 1 and 2 worker processes, side by side and taking turns."""
    servers = {
        count: loadtest.Server(
            f"workers={count}",
            [*loadtest.SERVE, "--workers", str(count), "--prediction_log", f"{setup.folder}/w{count}.db"],
        )
        for count in WORKER_COUNTS
    }
    return loadtest.side_by_side(servers, setup, seconds, repeats, WORKERS_CONCURRENCY, ready=wait_for_workers)


def workers_report(runs: dict[tuple[int, int], list[dict]], repeats: int) -> str:
    lines = [
        f"One sample per request; median of {repeats} wrk runs (min–max), the two servers side by side taking "
        f"turns. This machine has {os.cpu_count()} cores, shared by the server processes and wrk: the wrk column "
        "is the cores wrk itself used (its CPU time over the run's wall time), CPU the workers could not have.",
        "",
        "| server processes | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) | errors | wrk used (cores) "
        "| change vs 1 process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (count, connections), server_runs in runs.items():
        row = loadtest.Row(f"workers={count}", connections, server_runs)
        single = runs[WORKER_COUNTS[0], connections]
        change = "" if count == WORKER_COUNTS[0] else loadtest.per_turn(server_runs, single, as_change=True)
        lines.append(
            f"| {count} | {connections} | {row.spread('throughput', 0)} | {row.spread('p50')} | "
            f"{row.spread('p99')} | {row.errors()} | {row.spread('wrk_cores')} | {change} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = loadtest.parse(loadtest.argument_parser(__doc__))
    with loadtest.trained() as setup:
        table = workers_report(workers(setup, args.seconds, args.repeats), args.repeats)
        write_section("Several server processes on one port", loadtest.reproduce(__file__, args), table)
        write_readme_block("workers", loadtest.table_of(table))
        print(table)


if __name__ == "__main__":
    main()
