"""Serving benchmark: rtdeploy's server against `mlflow models serve` on the same registered model.

In one run, on this machine: trains the digits model (`python -m steps.train`,
about 30 s) into a private tracking store, registers its float32 LiteRT
deployable, then drives each server with wrk (C, event-driven) at concurrency
1, 4, 16 and 64, one sample per request:
  - rtdeploy serve (models:/bench-digits@champion), as configured by default
  - the same with dynamic batching on
  - mlflow models serve of the same LiteRT pyfunc   <- the like-for-like reference
  - mlflow models serve of the Keras float parent (tensorflow flavor)
  - a no-op endpoint on rtdeploy's HTTP stack (Starlette, uvicorn, uvloop, httptools): the ceiling
Every server gets the same untimed warm-up load first. Each figure is the
median of REPEATS back-to-back wrk runs, with min-max. Memory is the resident
set of the server's whole process tree: for rtdeploy plus the peak of its
short-lived fetch child (which the server reports), for mlflow the launcher
process (`mlflow models serve`, which stays alive) plus its uvicorn worker.
Then the champion alias flips 10 times under load, each flip served before
the next, and failed requests are counted. wrk runs on the same 2 cores as
the servers: it takes CPU from them at high concurrency, the same for all.
Writes bench/RESULTS.md and README's block `serving`.

The other serving benchmarks, each a script of its own: bench/log_cost.py,
workers.py, protocols.py and log_sync.py.

    apt-get install wrk   # once
    python bench/serve.py [--seconds 8] [--repeats 3]
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest  # noqa: E402
from results import write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.release.infra import free_port  # noqa: E402

CONCURRENCY = (1, 4, 16, 64)
FLIPS = 10
FLIP_BUDGET_SECONDS = 10  # load time per flip: the default poll (5 s) + fetch ~3-4 s + warm-up
FLIP_CONCURRENCY = 16
OURS = "rtdeploy serve"
LIKE_FOR_LIKE = "mlflow models serve, same LiteRT pyfunc"
FETCH_PEAK_METRIC = "rtdeploy_fetch_peak_rss_bytes"


def process_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total, pids = 0.0, [pid]
    while pids:
        current = pids.pop()
        try:
            total += process_rss_mb(current)
            pids.extend(int(child) for child in Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except (OSError, StopIteration):
            continue
    return total


def metric_value(port: int, name: str) -> float | None:
    return next(
        (float(line.split()[-1]) for line in loadtest.metrics_text(port).splitlines() if line.startswith(name)), None
    )


def memory(server: loadtest.Server, process, port: int) -> tuple[float, str]:
    """The tree's resident memory, and what it is made of."""
    tree = tree_rss_mb(process.pid)
    if server.name.startswith(OURS):
        fetch_peak = (metric_value(port, FETCH_PEAK_METRIC) or 0) / 2**20
        return tree + fetch_peak, f"server {tree:.0f} + fetch child peak {fetch_peak:.0f}"
    if server.launcher_is_parent:
        launcher = process_rss_mb(process.pid)
        return tree, f"launcher {launcher:.0f} + worker {tree - launcher:.0f}"
    return tree, ""


def flip_under_load(port: int, script: Path, seconds: float) -> dict:
    """Steady load, then the same load while the champion alias flips between v1 and v2 ten times.

    Each flip waits until the server answers with the new version (poll + fetch in a child process +
    warm-up, a few seconds), so every flip is a real swap under load, not one the server skipped.
    """
    import mlflow

    steady = loadtest.run_wrk(port, script, FLIP_CONCURRENCY, seconds)
    client = mlflow.MlflowClient()
    swap_seconds = []

    def served_version() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as response:
            return json.load(response)["version"]

    def flip():
        time.sleep(2)  # let the load settle first
        for i in range(FLIPS):
            target = "2" if i % 2 == 0 else "1"
            started = time.time()
            client.set_registered_model_alias(loadtest.MODEL, contract.CHAMPION, target)
            while served_version() != target and time.time() - started < 60:
                time.sleep(0.1)
            swap_seconds.append(time.time() - started)

    flipper = threading.Thread(target=flip)
    flipper.start()
    during = loadtest.run_wrk(port, script, FLIP_CONCURRENCY, FLIPS * FLIP_BUDGET_SECONDS)
    flipper.join()
    return {
        "steady": steady,
        "during": during,
        "reloads": metric_value(port, "rtdeploy_reloads_total") or 0,
        "swap_seconds": swap_seconds,
    }


def servers(folder: str, keras_uri: str, litert_uri: str) -> list[loadtest.Server]:
    noop = [
        sys.executable,
        "-m",
        "uvicorn",
        "noop_app:app",
        "--port",
        "{port}",
        "--log-level",
        "warning",
        "--no-access-log",
        "--app-dir",
        str(loadtest.FIXTURES),
    ]
    batching = ["--max_batch_size", "32", "--max_batch_wait_ms", "0"]
    return [
        loadtest.Server(OURS, [*loadtest.SERVE, "--prediction_log", f"{folder}/p1.db"]),  # defaults: poll every 5 s
        loadtest.Server(
            f"{OURS}, batching on (max_batch_size 32, wait 0)",
            [*loadtest.SERVE, *batching, "--prediction_log", f"{folder}/p2.db"],
        ),
        loadtest.Server(LIKE_FOR_LIKE, [*loadtest.MLFLOW_SERVE, litert_uri], "/ping", launcher_is_parent=True),
        loadtest.Server(
            "mlflow models serve, Keras parent", [*loadtest.MLFLOW_SERVE, keras_uri], "/ping", launcher_is_parent=True
        ),
        loadtest.Server("no-op endpoint, same HTTP stack (ceiling)", noop, "/ping"),
    ]


def measure(server: loadtest.Server, env: dict, folder: str, script: Path, seconds: float, repeats: int):
    """One server alone, at each concurrency: its rows, and for rtdeploy as configured by default the alias flips."""
    port = free_port()
    print(f"bench: {server.name} on port {port}", flush=True)
    process = loadtest.start(server, env, port, folder)
    rows, flips = [], None
    try:
        loadtest.warm_up(port, script)
        for connections in CONCURRENCY:
            runs = [loadtest.run_wrk(port, script, connections, seconds) for _ in range(repeats)]
            rss, note = memory(server, process, port)
            rows.append(loadtest.Row(server.name, connections, runs, rss, note))
            print(
                f"  c={connections}: {rows[-1].spread('throughput', 0)}/s p50 {rows[-1].spread('p50')} ms "
                f"p99 {rows[-1].spread('p99')} ms rss {rss:.0f} MB",
                flush=True,
            )
        if server.name == OURS:
            flips = flip_under_load(port, script, seconds)
    finally:
        loadtest.stop(process)
    return rows, flips


def report(rows: list[loadtest.Row], flips: dict | None, repeats: int) -> str:
    by = {(row.server, row.connections): row for row in rows}
    lines = [f"Each figure: median of {repeats} wrk runs (min–max), after the same warm-up for every server.", ""]
    lines += ["Headline, like for like (the same LiteRT pyfunc deployable), throughput of rtdeploy / mlflow:", ""]
    for c in CONCURRENCY:
        ours, theirs = by[(OURS, c)], by[(LIKE_FOR_LIKE, c)]
        lines.append(
            f"- concurrency {c}: {ours.median('throughput') / theirs.median('throughput'):.1f}x throughput "
            f"({ours.median('throughput'):,.0f} vs {theirs.median('throughput'):,.0f} req/s), p99 "
            f"{ours.median('p99'):.2f} vs {theirs.median('p99'):.2f} ms, memory {ours.rss_mb:.0f} vs "
            f"{theirs.rss_mb:.0f} MB"
        )
    lines += [
        "",
        "| server | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) | errors | process tree RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        memory_note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.server} | {row.connections} | {row.spread('throughput', 0)} | {row.spread('p50')} | "
            f"{row.spread('p99')} | {row.errors()} | {row.rss_mb:.0f}{memory_note} |"
        )
    lines += ["", "Throughput of rtdeploy serve relative to each other server (medians):", ""]
    for c in CONCURRENCY:
        ratios = [
            f"{by[(OURS, c)].median('throughput') / by[(name, c)].median('throughput'):.2f}x {name}"
            for name in dict.fromkeys(row.server for row in rows)
            if name != OURS and (name, c) in by
        ]
        lines.append(f"- concurrency {c}: " + "; ".join(ratios))
    return "\n".join(lines + flips_report(flips))


def flips_report(flips: dict | None) -> list[str]:
    if not flips:
        return []
    swaps = flips["swap_seconds"]
    return [
        "",
        f"Alias flips under load (concurrency {FLIP_CONCURRENCY}, {FLIPS} flips, {int(flips['reloads'])} reloads "
        f"counted by the server; with the default poll_seconds, the alias move to the new version served in median "
        f"{statistics.median(swaps):.1f} s, "
        f"{min(swaps):.1f}–{max(swaps):.1f} s): {flips['during']['errors']} failed requests of "
        f"{flips['during']['requests']:,}; p99 during flips {flips['during']['p99']:.2f} ms vs steady "
        f"{flips['steady']['p99']:.2f} ms (p50 {flips['during']['p50']:.2f} vs {flips['steady']['p50']:.2f} ms).",
    ]


def main() -> None:
    args = loadtest.parse(loadtest.argument_parser(__doc__))
    with loadtest.trained() as setup:
        rows, flips = [], None
        for server in servers(setup.folder, setup.keras_uri, setup.litert_uri):
            measured, flipped = measure(server, setup.env, setup.folder, setup.script, args.seconds, args.repeats)
            rows += measured
            flips = flips or flipped
        serving = report(rows, flips, args.repeats)
        write_section("Serving (digits, one sample per request)", loadtest.reproduce(__file__, args), serving)
        write_readme_block("serving", loadtest.headline_of(serving))
        print(serving)


if __name__ == "__main__":
    main()
