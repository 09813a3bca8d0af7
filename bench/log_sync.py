"""Prediction log durability: `serve -P log_sync=normal` against `full`, and what one fsync costs here.

Both serve the same registered digits model (trained and registered first in a
private tracking store: `python -m steps.train`, about 30 s), side by side, the
repeats taking turns, at concurrency 1 and 16 (`--concurrency` sets others),
one sample per request to /invocations. Beside them, the median time of one
fdatasync of a 4 KiB write in the same folder, over written and appended
blocks: what `full` adds to each commit. Writes bench/RESULTS.md and README's
block `log-sync`.

    apt-get install wrk   # once
    python bench/log_sync.py [--seconds 8] [--repeats 3] [--concurrency N [N ...]]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest  # noqa: E402
from results import write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402

LOG_SYNC_CONCURRENCY = (1, 16)


def log_sync(setup: loadtest.Setup, seconds: float, repeats: int, concurrencies) -> dict[tuple[str, int], list[dict]]:
    """Throughput of serve with log_sync=normal and full, side by side and taking turns."""
    servers = {
        mode: loadtest.Server(
            f"log_sync={mode}",
            [*loadtest.SERVE, "--prediction_log", f"{setup.folder}/sync-{mode}.db", "--log_sync", mode],
        )
        for mode in contract.LOG_SYNC_MODES
    }
    return loadtest.side_by_side(servers, setup, seconds, repeats, concurrencies)


def fsync_ms(folder: str, times: int = 50) -> tuple[float, float]:
    """The median time of one fdatasync after a 4 KiB write in folder, over written blocks (as a WAL reused
    after a checkpoint) and appended ones (as a growing WAL): what `full` adds to each commit."""
    path = Path(folder) / "fsync.probe"
    medians = []
    for append in (False, True):
        spent = []
        with path.open("wb") as probe:
            probe.write(bytes(4096))
            os.fsync(probe.fileno())
            for _ in range(times):
                if not append:
                    probe.seek(0)
                probe.write(bytes(4096))
                probe.flush()
                started = time.perf_counter()
                os.fdatasync(probe.fileno())
                spent.append(time.perf_counter() - started)
        medians.append(statistics.median(spent) * 1000)
    path.unlink()
    return medians[0], medians[1]


def log_sync_report(runs: dict[tuple[str, int], list[dict]], repeats: int, fsync: tuple[float, float]) -> str:
    lines = [
        f"/invocations, one sample per request; median of {repeats} wrk runs (min–max), the two servers side by "
        f"side taking turns. `normal`: SQLite synchronous=NORMAL in WAL mode, no fsync on commit (an answered "
        f"prediction survives a crash or kill -9 of the server; a power loss or an OS crash may lose the last "
        "commits, not the log's consistency); `full`: synchronous=FULL, an fsync of the WAL at every commit, one "
        "per group of requests committed together, on the event loop (an answered prediction survives a power "
        "loss too, on a disk that honours flushes). One fdatasync of a 4 KiB write in this folder took "
        f"{fsync[0]:.2f} ms over written blocks, {fsync[1]:.2f} ms appended (medians of 50). Change: the median "
        "of the per-turn ratios to normal's throughput in the same turn.",
        "",
        "| log_sync | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) | mean (ms) | errors | change vs normal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (mode, connections), mode_runs in runs.items():
        row = loadtest.Row(mode, connections, mode_runs)
        normal = runs[contract.LOG_SYNC_NORMAL, connections]
        change = "" if mode == contract.LOG_SYNC_NORMAL else loadtest.per_turn(mode_runs, normal, as_change=True)
        figures = " | ".join(
            row.spread(key, 0 if key == "throughput" else 2) for key in ("throughput", "p50", "p99", "mean")
        )
        lines.append(f"| {mode} | {connections} | {figures} | {row.errors()} | {change} |")
    return "\n".join(lines)


def main() -> None:
    parser = loadtest.argument_parser(__doc__)
    loadtest.add_concurrency(parser, LOG_SYNC_CONCURRENCY)
    args = loadtest.parse(parser)
    with loadtest.trained() as setup:
        runs = log_sync(setup, args.seconds, args.repeats, args.concurrency or LOG_SYNC_CONCURRENCY)
        table = log_sync_report(runs, args.repeats, fsync_ms(setup.folder))
        write_section("Prediction log durability: log_sync normal and full", loadtest.reproduce(__file__, args), table)
        write_readme_block("log-sync", loadtest.table_of(table))
        print(table)


if __name__ == "__main__":
    main()
