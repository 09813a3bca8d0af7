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

Cost of the prediction log on the request path (`--only log-cost`): at
concurrency 16, this server with inputs and probabilities logged
(log_inputs 1.0) and without inputs (0.0), against the server of
BASELINE_COMMIT, whose log has one row per request and no samples, inputs or
heartbeats (its code is taken with `git archive`, run in the same environment
on the same model). The three run side by side and the repeats take turns,
so a slower stretch of the shared machine hits each alike.

    apt-get install wrk   # once
Several processes on one port (`--only workers`): `serve -P workers=1` and
`workers=2` side by side, taking turns, at concurrency 16 and 64. wrk needs
CPU too on this 2-core machine; the cores it used (its CPU time over the
run's wall time) are reported beside each figure.

The Open Inference Protocol (`--only protocols`): one rtdeploy server with
gRPC on, driven at concurrency 1, 16 and 64 over /invocations (MLflow's JSON,
the reference), v2 REST with JSON tensors, v2 REST with binary tensors (wrk),
and v2 gRPC with raw_input_contents (h2load, nghttp2's C load generator,
posting the same ModelInfer message on HTTP/2 streams); beside it, each in a
process of its own, the same server with dynamic batching on, the same data
plane behind grpc.aio alone (no Starlette, no uvicorn), and grpcio's own
ceiling on this machine: a no-op ModelInfer servicer on grpc.aio. They take
turns within each repeat. Every row has the load generator's mean and max
beside the percentiles, and throughput × mean latency, which Little's law
makes equal to the concurrency. h2load sees gRPC errors as HTTP 200s, so
errors are also counted from the server's own count of gRPC calls answered
with an error. Then a server with stage timings on (RTDEPLOY_STAGE_TIMINGS=1)
shows where one /invocations and one gRPC call spend their time.

Prediction log durability (`--only log-sync`): `serve -P log_sync=normal` and
`full` side by side, taking turns, at concurrency 1 and 16 (`--concurrency`
sets others, for this section and the protocols).

    apt-get install wrk nghttp2-client   # once
    python bench/serve.py [--seconds 8] [--repeats 3] [--only serving|log-cost|workers|protocols|log-sync]
                          [--concurrency N [N ...]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402

CONCURRENCY = (1, 4, 16, 64)
MODEL = "bench-digits"
FLIPS = 10
WARMUP_SECONDS = 3  # untimed load at concurrency 16 before any measurement, the same for every server
FLIP_BUDGET_SECONDS = 10  # load time per flip: the default poll (5 s) + fetch ~3-4 s + warm-up
OURS = "rtdeploy serve"
LIKE_FOR_LIKE = "mlflow models serve, same LiteRT pyfunc"
FETCH_PEAK_METRIC = "rtdeploy_fetch_peak_rss_bytes"
BASELINE_COMMIT = "e31f9ee"  # the last server writing the first prediction-log layout (one row per request)
LOG_COST_CONCURRENCY = 16
LOG_COST_REPEATS = 7  # at least: the loss is a few percent, the machine's run-to-run spread about as much
WORKER_COUNTS = (1, 2)
WORKERS_CONCURRENCY = (16, 64)
PROTOCOLS_CONCURRENCY = (1, 16, 64)
LOG_SYNC_CONCURRENCY = (1, 16)
INVOCATIONS = "/invocations (MLflow JSON)"  # the reference the Open Inference Protocol's rows are compared with
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_ANSWERS = 'rtdeploy_requests_total{endpoint="grpc_ModelInfer"'  # one line per status
GRPC_CEILING = "no-op ModelInfer on grpc.aio, same stubs (gRPC ceiling)"
GRPC = "v2 gRPC, raw tensors"
BARE_GRPC = "v2 gRPC, same data plane on a bare grpc.aio servicer (own process, no Starlette/uvicorn)"
BATCHED = ", batching on (max_batch_size 16, max_batch_wait_ms 1)"  # the rows of a second server, so configured
BATCHING = ["--max_batch_size", "16", "--max_batch_wait_ms", "1"]
STAGE_CONCURRENCY = 16
STAGES = ("receive", "decode", "queue", "invoke", "log", "encode", "send")  # metrics.StageTimes, in a call's order
BARE_SERVER = """
import asyncio
import sys

import uvloop

from steps.serve.server import Server
from steps.settings import ServeConfig


async def serve(config):
    async with Server(config).lifespan(None):  # the data plane, its log, the alias follower and gRPC: no HTTP
        await asyncio.Event().wait()

model_uri, grpc_port, port, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
uvloop.run(serve(ServeConfig(model_uri=model_uri, grpc_port=grpc_port, port=port, prediction_log=log)))
"""
NOOP_GRPC = """
import sys
import grpc
import uvloop
from steps.serve.oip import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc
class NoOp(pb_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request, context):
        return pb.ModelInferResponse(model_name=request.model_name, raw_output_contents=[bytes(40)])
async def main():
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(NoOp(), server)
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()
uvloop.run(main())
"""
NOOP_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
async def invocations(request):
    await request.body()
    return Response(b'{"predictions": [[1.0]]}', media_type="application/json")
app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]),
                        Route("/ping", lambda r: Response(b"ok"), methods=["GET"])])
"""
# wrk script: POST the body; at the end print one JSON line with percentiles and errors.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("%s", "rb"):read("*a")
%s
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format('JSON {"requests": %%d, "seconds": %%f, "errors": %%d, "p50": %%f, "p95": %%f, "p99": %%f, '
    .. '"mean": %%f, "max": %%f}\\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000))
end
"""


@dataclass
class Server:
    name: str
    argv: list[str]  # "{port}" stands for the port, chosen when the server starts
    ready_path: str
    launcher_is_parent: bool = False  # mlflow models serve: the CLI process stays alive beside its worker

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


@dataclass
class Row:
    server: str
    connections: int
    runs: list[dict]  # one wrk result per repeat
    rss_mb: float  # whole process tree after the runs
    note: str = ""  # how the memory figure is made up

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    def spread(self, key: str, digits: int = 2) -> str:
        values = [run[key] for run in self.runs]
        return f"{self.median(key):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def per_turn(runs: list[dict], reference: list[dict], as_change: bool) -> str:
    """Throughput against the reference's run of the same turn: the median ratio (min–max), as a change
    (+5.0%) or a factor (1.05x)."""
    ratios = [run["throughput"] / base["throughput"] - as_change for run, base in zip(runs, reference)]
    median, low, high = statistics.median(ratios), min(ratios), max(ratios)
    return f"{median:+.1%} ({low:+.1%}–{high:+.1%})" if as_change else f"{median:.2f}x ({low:.2f}–{high:.2f})"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready ({url})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout} s")


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
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)), None)


def memory(server: Server, process: subprocess.Popen, port: int) -> tuple[float, str]:
    """The tree's resident memory, and what it is made of."""
    tree = tree_rss_mb(process.pid)
    if server.name.startswith(OURS):
        fetch_peak = (metric_value(port, FETCH_PEAK_METRIC) or 0) / 2**20
        return tree + fetch_peak, f"server {tree:.0f} + fetch child peak {fetch_peak:.0f}"
    if server.launcher_is_parent:
        launcher = process_rss_mb(process.pid)
        return tree, f"launcher {launcher:.0f} + worker {tree - launcher:.0f}"
    return tree, ""


def wrk_script(body: Path, headers: dict[str, str] | None = None) -> str:
    extra = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in (headers or {}).items())
    return WRK_SCRIPT % (body, extra)


def run_wrk(port: int, script: Path, connections: int, seconds: float, path: str = "/invocations") -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [
            "wrk",
            f"-t{min(connections, 2)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("JSON "))
    measured = json.loads(line[5:])
    measured["throughput"] = measured["requests"] / measured["seconds"]
    measured["wrk_cores"] = children_cpu_since(before) / measured["seconds"]  # wrk: the only child waited for
    return measured


def children_cpu_since(before) -> float:
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def grpc_refusals(metrics_port: int | None) -> float:
    """ModelInfer calls the server answered with an error, from its own counter (0 for a server without one)."""
    if metrics_port is None:
        return 0.0
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    lines = [line for line in text.splitlines() if line.startswith(GRPC_ANSWERS) and 'status="200"' not in line]
    return sum(float(line.split()[-1]) for line in lines)


def logged_refusals(log: str) -> float:
    """ModelInfer calls answered with an error, from a server's prediction log (one without /metrics)."""
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT count(*) FROM refusals WHERE endpoint = 'grpc_ModelInfer'").fetchone()[0]


H2LOAD_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}  # h2load prints each time in the unit that suits it


def h2load_figures(output: str) -> dict:
    """h2load's own summary: the time for request's min, max, mean and sd (ms), and the slowest and fastest
    client's request rate (a client starved by the server shows as a low minimum)."""
    times = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output).groups()
    low, high, mean, sd = (float(re.match(r"[\d.]+", t)[0]) * H2LOAD_UNITS[re.sub(r"[\d.]", "", t)] for t in times)
    rates = re.search(r"req/s\s+:\s+([\d.]+)\s+([\d.]+)", output).groups()
    client_min, client_max = float(rates[0]), float(rates[1])
    return {"min": low, "max": high, "mean": mean, "sd": sd, "client_min": client_min, "client_max": client_max}


def run_h2load(port: int, refusals, frame: Path, connections: int, seconds: float) -> dict:
    """gRPC unary calls, one gRPC frame per HTTP/2 stream, `connections` at a time; the run_wrk figures.
    Mean and max are h2load's own; the percentiles come from its per-request log. Errors are h2load's
    (transport) and the calls the server answered with an error (`refusals()`, a count it keeps): a gRPC
    error is an HTTP 200 with a non-zero grpc-status trailer, which h2load does not read.

    h2load appends to its --log-file: a log left by an earlier run would be read as this run's. (It was: every
    gRPC row's percentiles once came from all the h2load runs before it, the no-op ceiling's among them, which
    made the gRPC rows look as if a few calls stalled far beyond p99.) So each run gets an empty log, and the
    log must hold exactly the calls h2load counted."""
    log = frame.parent / "h2load.log"
    log.unlink(missing_ok=True)
    refused_before = refusals()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [
            "h2load",
            f"-t{min(connections, 2)}",
            f"-c{connections}",
            "-m1",
            f"-D{max(1, round(seconds))}",
            "-d",
            str(frame),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--log-file",
            str(log),
            f"http://127.0.0.1:{port}{GRPC_PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = children_cpu_since(before)
    counts = re.search(r"(\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", result.stdout)
    done, transport_errors = int(counts.group(1)), sum(int(n) for n in counts.groups()[1:])
    elapsed = float(re.search(r"finished in ([\d.]+)s", result.stdout).group(1))
    latencies = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line)
    if len(latencies) != done:
        raise RuntimeError(f"h2load's log holds {len(latencies)} calls, its summary {done}: not this run's log")
    errors = transport_errors + int(refusals() - refused_before)
    p50, p95, p99 = (latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] for q in (50, 95, 99))
    return {
        "requests": done,
        "seconds": elapsed,
        "throughput": done / elapsed,
        "errors": errors,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "wrk_cores": cpu / elapsed,
    } | h2load_figures(result.stdout)


def start(server: Server, env: dict, port: int, log: Path, cwd: str | None = None) -> subprocess.Popen:
    with log.open("w") as output:
        process = subprocess.Popen(
            server.command(port), env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}{server.ready_path}", process)
    except RuntimeError as error:
        raise RuntimeError(f"{server.name}: {error}; its output ends:\n{log.read_text()[-3000:]}") from None
    return process


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def prepare_models(env: dict) -> tuple[str, str]:
    """Train digits, register its float32 deployable twice (v1 champion, v2 for the flips); returns run URIs."""
    import mlflow

    subprocess.run([sys.executable, "-m", "steps.train"], env=env, check=True, stdout=subprocess.DEVNULL)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    keras_uri = f"runs:/{run.info.run_id}/keras_model"
    litert_uri = f"runs:/{run.info.run_id}/litert_model"
    for _ in range(2):
        mlflow.register_model(litert_uri, MODEL)
    mlflow.MlflowClient().set_registered_model_alias(MODEL, contract.CHAMPION, "1")
    return keras_uri, litert_uri


def flip_under_load(port: int, script: Path, seconds: float) -> dict:
    """Steady load, then the same load while the champion alias flips between v1 and v2 ten times.

    Each flip waits until the server answers with the new version (poll + fetch in a child process +
    warm-up, a few seconds), so every flip is a real swap under load, not one the server skipped.
    """
    import mlflow

    steady = run_wrk(port, script, 16, seconds)
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
            client.set_registered_model_alias(MODEL, contract.CHAMPION, target)
            while served_version() != target and time.time() - started < 60:
                time.sleep(0.1)
            swap_seconds.append(time.time() - started)

    flipper = threading.Thread(target=flip)
    flipper.start()
    during = run_wrk(port, script, 16, FLIPS * FLIP_BUDGET_SECONDS)
    flipper.join()
    return {
        "steady": steady,
        "during": during,
        "reloads": metric_value(port, "rtdeploy_reloads_total") or 0,
        "swap_seconds": swap_seconds,
    }


def servers(folder: str, keras_uri: str, litert_uri: str) -> list[Server]:
    rtdeploy = [sys.executable, "-m", "steps.serve", "--model_uri", f"models:/{MODEL}@champion", "--port", "{port}"]
    mlflow_serve = [sys.executable, "-m", "mlflow", "models", "serve", "-p", "{port}", "--env-manager", "local", "-m"]
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
        folder,
    ]
    return [
        Server(OURS, [*rtdeploy, "--prediction_log", f"{folder}/p1.db"], "/ready"),  # defaults: poll every 5 s
        Server(
            f"{OURS}, batching on (max_batch_size 32, wait 0)",
            [*rtdeploy, "--max_batch_size", "32", "--max_batch_wait_ms", "0", "--prediction_log", f"{folder}/p2.db"],
            "/ready",
        ),
        Server(LIKE_FOR_LIKE, [*mlflow_serve, litert_uri], "/ping", launcher_is_parent=True),
        Server("mlflow models serve, Keras parent", [*mlflow_serve, keras_uri], "/ping", launcher_is_parent=True),
        Server("no-op endpoint, same HTTP stack (ceiling)", noop, "/ping"),
    ]


def measure(server: Server, env: dict, script: Path, seconds: float, repeats: int) -> tuple[list[Row], dict | None]:
    port = free_port()
    print(f"bench: {server.name} on port {port}", flush=True)
    process = start(server, env, port, script.parent / f"server-{port}.log")
    rows, flips = [], None
    try:
        run_wrk(port, script, 16, WARMUP_SECONDS)  # the same untimed warm-up for every server
        for connections in CONCURRENCY:
            runs = [run_wrk(port, script, connections, seconds) for _ in range(repeats)]
            rss, note = memory(server, process, port)
            rows.append(Row(server.name, connections, runs, rss, note))
            print(
                f"  c={connections}: {rows[-1].spread('throughput', 0)}/s p50 {rows[-1].spread('p50')} ms "
                f"p99 {rows[-1].spread('p99')} ms rss {rss:.0f} MB",
                flush=True,
            )
        if server.name == OURS:
            flips = flip_under_load(port, script, seconds)
    finally:
        stop(process)
    return rows, flips


def log_cost(folder: str, env: dict, script: Path, seconds: float, repeats: int) -> str:
    """Throughput at concurrency 16 with this server's log (inputs kept, or not) and with BASELINE_COMMIT's."""
    baseline = Path(folder) / "baseline"
    baseline.mkdir()
    repository = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(repository), "archive", BASELINE_COMMIT, "steps"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    serve = [sys.executable, "-m", "steps.serve", "--model_uri", f"models:/{MODEL}@champion", "--port", "{port}"]
    servers = {  # name -> (server, working folder: which code `-m steps.serve` runs)
        f"first layout ({BASELINE_COMMIT})": (
            Server("", [*serve, "--prediction_log", f"{folder}/l1.db"], "/ready"),
            str(baseline),
        ),
        "second layout, inputs kept (log_inputs 1.0)": (
            Server("", [*serve, "--prediction_log", f"{folder}/l2a.db", "--log_inputs", "1.0"], "/ready"),
            None,
        ),
        "second layout, no inputs (log_inputs 0.0)": (
            Server("", [*serve, "--prediction_log", f"{folder}/l2b.db", "--log_inputs", "0.0"], "/ready"),
            None,
        ),
    }
    ports, processes = {}, []
    try:
        for name, (server, cwd) in servers.items():
            ports[name] = free_port()
            print(f"bench: log cost, {name} on port {ports[name]}", flush=True)
            processes.append(start(server, env, ports[name], Path(folder) / f"server-{ports[name]}.log", cwd))
            run_wrk(ports[name], script, LOG_COST_CONCURRENCY, WARMUP_SECONDS)
        runs = {name: [] for name in servers}
        for repeat in range(repeats):
            for name in servers:  # taking turns: a slow stretch of the machine falls on each alike
                runs[name].append(run_wrk(ports[name], script, LOG_COST_CONCURRENCY, seconds))
            print(
                f"  repeat {repeat + 1}: " + ", ".join(f"{r[-1]['throughput']:,.0f}" for r in runs.values()), flush=True
            )
    finally:
        for process in processes:
            stop(process)
    for log, layout in ((f"{folder}/l1.db", 0), (f"{folder}/l2a.db", 2)):  # each ran the code it was meant to
        with sqlite3.connect(log) as connection:
            assert connection.execute("PRAGMA user_version").fetchone()[0] == layout, f"{log} is not layout {layout}"
    return log_cost_report(runs, repeats)


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
        row = Row(name, LOG_COST_CONCURRENCY, server_runs, 0.0)
        change = "" if name == baseline else per_turn(server_runs, base_runs, as_change=True)
        errors = sum(run["errors"] for run in server_runs)
        lines.append(
            f"| {name} | {row.spread('throughput', 0)} | {row.spread('p50')} | {row.spread('p99')} | "
            f"{errors} | {change} |"
        )
    return "\n".join(lines)


def workers(folder: str, env: dict, script: Path, seconds: float, repeats: int) -> str:
    """Throughput of serve with 1 and 2 worker processes, side by side and taking turns."""
    serve = [sys.executable, "-m", "steps.serve", "--model_uri", f"models:/{MODEL}@champion", "--port", "{port}"]
    ports, processes = {}, []
    try:
        for count in WORKER_COUNTS:
            log = f"{folder}/w{count}.db"
            server = Server("", [*serve, "--workers", str(count), "--prediction_log", log], "/ready")
            ports[count] = free_port()
            print(f"bench: workers={count} on port {ports[count]}", flush=True)
            processes.append(start(server, env, ports[count], Path(folder) / f"server-{ports[count]}.log"))
            wait_for_workers(ports[count], count)  # a worker listens once its model is loaded
            run_wrk(ports[count], script, 16, WARMUP_SECONDS)
        runs = {(count, c): [] for c in WORKERS_CONCURRENCY for count in WORKER_COUNTS}
        for connections in WORKERS_CONCURRENCY:
            for repeat in range(repeats):
                for count in WORKER_COUNTS:
                    runs[count, connections].append(run_wrk(ports[count], script, connections, seconds))
                latest = (f"workers={n} {runs[n, connections][-1]['throughput']:,.0f}" for n in WORKER_COUNTS)
                print(f"  c={connections} repeat {repeat + 1}: {', '.join(latest)}", flush=True)
    finally:
        for process in processes:
            stop(process)
    return workers_report(runs, repeats)


def protocol_requests(folder: Path, sample: list) -> dict[str, tuple[Path, str]]:
    """Each protocol's request for the same one sample: name -> (wrk script, or h2load's gRPC frame; path)."""
    from steps.serve.oip import grpc_predict_v2_pb2 as pb

    pixels = np.asarray(sample, "<f4")
    tensor = {"name": "input", "datatype": "FP32", "shape": list(pixels.shape)}
    bodies = {
        INVOCATIONS: (json.dumps({"instances": sample}).encode(), {}),
        "v2 REST, JSON tensors": (json.dumps({"inputs": [tensor | {"data": pixels.ravel().tolist()}]}).encode(), {}),
    }
    binary_input = tensor | {"parameters": {"binary_data_size": pixels.nbytes}}
    binary_output = {"name": "probabilities", "parameters": {"binary_data": True}}
    head = json.dumps({"inputs": [binary_input], "outputs": [binary_output]}).encode()
    bodies["v2 REST, binary tensors"] = (head + pixels.tobytes(), {"Inference-Header-Content-Length": str(len(head))})
    requests = {}
    for index, (name, (body, headers)) in enumerate(bodies.items()):
        (folder / f"v2-{index}.body").write_bytes(body)
        script = folder / f"v2-{index}.lua"
        script.write_text(wrk_script(folder / f"v2-{index}.body", headers))
        path = "/invocations" if name == INVOCATIONS else f"/v2/models/{MODEL}/infer"
        requests[name] = (script, path)
    grpc_input = pb.ModelInferRequest.InferInputTensor(**tensor)
    infer = pb.ModelInferRequest(model_name=MODEL, inputs=[grpc_input], raw_input_contents=[pixels.tobytes()])
    message = infer.SerializeToString()
    frame = folder / "grpc.frame"
    frame.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)  # gRPC's length-prefixed message
    requests[GRPC] = (frame, GRPC_PATH)
    requests[INVOCATIONS + BATCHED] = requests[INVOCATIONS]
    for name in (GRPC + BATCHED, BARE_GRPC, GRPC_CEILING):
        requests[name] = (frame, GRPC_PATH)
    return requests


def wait_grpc_ready(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    """Until the gRPC server on port says it is ready (a model loaded)."""
    import grpc

    from steps.serve.oip import grpc_predict_v2_pb2 as pb
    from steps.serve.oip import grpc_predict_v2_pb2_grpc as pb_grpc

    deadline = time.time() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while time.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gRPC server on {port} exited with {process.returncode} before it was ready")
            try:
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                    return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:  # the no-op ceiling: it answers, so it is up
                    return
            time.sleep(0.3)
    raise RuntimeError(f"gRPC server on {port} not ready after {timeout} s")


def protocols(folder: str, env: dict, sample: list, seconds: float, repeats: int, concurrencies) -> str:
    """One server with gRPC on; each protocol's request for the same sample, taking turns, at each concurrency.
    Beside it, in processes of their own: the same server with dynamic batching on (/invocations and gRPC),
    the same data plane behind grpc.aio alone, and grpc.aio's no-op ceiling. Then the stages of one call,
    timed by a server of their own (stage timings cost a little)."""
    http, grpc_ports = {"": free_port(), BATCHED: free_port()}, {"": free_port(), BATCHED: free_port()}
    bare_port, ceiling_port = free_port(), free_port()
    uri = f"models:/{MODEL}@champion"
    requests = protocol_requests(Path(folder), sample)
    processes = []
    for variant, options in (("", []), (BATCHED, BATCHING)):
        log = ["--prediction_log", f"{folder}/protocols{len(processes)}.db"]
        serve = [
            sys.executable,
            "-m",
            "steps.serve",
            "--model_uri",
            uri,
            "--port",
            "{port}",
            "--grpc_port",
            str(grpc_ports[variant]),
            *log,
            *options,
        ]
        print(f"bench: protocols{variant} on ports {http[variant]} (HTTP), {grpc_ports[variant]} (gRPC)", flush=True)
        processes.append(start(Server("", serve, "/ready"), env, http[variant], Path(folder) / f"server-{variant}.log"))
    (Path(folder) / "noop_grpc.py").write_text(NOOP_GRPC)
    (Path(folder) / "bare_server.py").write_text(BARE_SERVER)
    bare_log = f"{folder}/bare.db"
    bare = [sys.executable, f"{folder}/bare_server.py", uri, str(bare_port), str(free_port()), bare_log]
    ceiling = [sys.executable, f"{folder}/noop_grpc.py", str(ceiling_port)]
    others = [subprocess.Popen(command, env=env, start_new_session=True) for command in (ceiling, bare)]
    targets = {  # gRPC rows: name -> (port, the server's count of calls answered with an error)
        GRPC: (grpc_ports[""], lambda: grpc_refusals(http[""])),
        GRPC + BATCHED: (grpc_ports[BATCHED], lambda: grpc_refusals(http[BATCHED])),
        BARE_GRPC: (bare_port, lambda: logged_refusals(bare_log)),
        GRPC_CEILING: (ceiling_port, lambda: 0.0),
    }

    def once(name: str, connections: int, duration: float) -> dict:
        target, path = requests[name]
        if name in targets:
            return run_h2load(*targets[name], target, connections, duration)
        return run_wrk(http[BATCHED if name.endswith(BATCHED) else ""], target, connections, duration, path)

    runs = {(name, c): [] for c in concurrencies for name in requests}
    try:
        for started, its_port in zip(others, (ceiling_port, bare_port)):
            wait_grpc_ready(its_port, started)
        for name in requests:
            once(name, 16, WARMUP_SECONDS)  # the same untimed warm-up for every protocol
        for connections in concurrencies:
            for repeat in range(repeats):
                for name in requests:
                    runs[name, connections].append(once(name, connections, seconds))
                latest = (f"{name[:24]} {runs[name, connections][-1]['throughput']:,.0f}" for name in requests)
                print(f"  c={connections} repeat {repeat + 1}: {', '.join(latest)}", flush=True)
    finally:
        for each in (*processes, *others):
            stop(each)
    stages = stage_timings(folder, env, requests, seconds, repeats)
    return protocols_report(runs, repeats) + "\n\n" + stages


def protocols_report(runs: dict[tuple[str, int], list[dict]], repeats: int) -> str:
    lines = [
        f"One sample per request, one rtdeploy server (gRPC on); median of {repeats} runs (min–max), the "
        "protocols taking turns. HTTP/1.1 rows are driven by wrk, the gRPC rows by h2load (HTTP/2, one stream per "
        "connection); mean and max are the load generator's own. In flight is throughput × mean latency, "
        "Little's law: for a closed loop of clients it equals the concurrency, unless clients sat idle or the "
        "figures disagree. The client column is the cores the load generator itself used on this "
        f"{os.cpu_count()}-core machine, CPU the servers could not have. The rows marked batching on are a "
        "second server of the same code with dynamic batching on (a request waits up to 1 ms for others to run "
        "and commit with), compared with the first server's /invocations. The last two rows run in processes of "
        "their own beside the servers: the same data plane (model, prediction log, metrics, alias follower) "
        "behind grpc.aio alone, without Starlette or uvicorn, and grpcio's own ceiling here, a servicer that "
        "answers without reading the request (no model, no log).",
        "",
        "| protocol | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) | mean (ms) | max (ms) | in flight "
        f"| errors | client used (cores) | throughput vs {INVOCATIONS} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, connections), protocol_runs in runs.items():
        for run in protocol_runs:
            run["in_flight"] = run["throughput"] * run["mean"] / 1000
        row = Row(name, connections, protocol_runs, 0.0)
        reference = runs[INVOCATIONS, connections]
        versus = "" if name == INVOCATIONS else per_turn(protocol_runs, reference, as_change=False)
        errors = sum(run["errors"] for run in protocol_runs)
        lines.append(
            f"| {name} | {connections} | {row.spread('throughput', 0)} | {row.spread('p50')} | "
            f"{row.spread('p99')} | {row.spread('mean')} | {row.spread('max', 1)} | "
            f"{row.spread('in_flight', 1)} | {errors} | {row.spread('wrk_cores')} | {versus} |"
        )
    lines += ["", "Headline, v2 gRPC against /invocations (medians of the per-turn ratios):", ""]
    for connections in sorted({c for _, c in runs}):
        grpc_runs, reference = runs[GRPC, connections], runs[INVOCATIONS, connections]
        in_flight = statistics.median(run["in_flight"] for run in grpc_runs)
        beside = {"the same data plane on bare grpc.aio": BARE_GRPC, "with batching on": GRPC + BATCHED}
        beside["grpc.aio's no-op ceiling"] = GRPC_CEILING
        others = "; ".join(
            f"{label} {per_turn(runs[name, connections], reference, as_change=False).split()[0]}"
            for label, name in beside.items()
        )
        lines.append(
            f"- concurrency {connections}: {per_turn(grpc_runs, reference, as_change=False).split()[0]} "
            f"({statistics.median(r['throughput'] for r in grpc_runs):,.0f} vs "
            f"{statistics.median(r['throughput'] for r in reference):,.0f} req/s); throughput × mean latency "
            f"{in_flight:.1f} in flight of {connections} ({in_flight / connections - 1:+.0%}); {others}"
        )
    return "\n".join(lines)


def stage_means(port: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(endpoint, stage) -> (seconds in all, calls) from a server's /metrics with stage timings on."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found: dict[tuple[str, str], list[float]] = {}
    for line in text.splitlines():
        match = re.match(r'rtdeploy_stage_seconds_(sum|count)\{endpoint="([^"]+)",stage="([^"]+)"\} (\S+)', line)
        if match:
            found.setdefault((match[2], match[3]), [0.0, 0.0])[match[1] == "count"] = float(match[4])
    return {key: (total, count) for key, (total, count) in found.items()}


def stage_timings(folder: str, env: dict, requests: dict, seconds: float, repeats: int) -> str:
    """Where one call's time goes, stage by stage: a server with stage timings on, /invocations and gRPC
    taking turns at STAGE_CONCURRENCY; each stage's mean over a run, median of the runs."""
    port, grpc_port = free_port(), free_port()
    model, log = ["--model_uri", f"models:/{MODEL}@champion"], ["--prediction_log", f"{folder}/stages.db"]
    serve = [sys.executable, "-m", "steps.serve", *model, "--port", "{port}", "--grpc_port", str(grpc_port), *log]
    print(f"bench: stage timings on ports {port} (HTTP) and {grpc_port} (gRPC)", flush=True)
    timed_env = env | {"RTDEPLOY_STAGE_TIMINGS": "1"}
    process = start(Server("", serve, "/ready"), timed_env, port, Path(folder) / f"server-{port}.log")
    endpoints = {INVOCATIONS: "invocations", GRPC: "v2_grpc_infer"}  # the data plane's names for them
    means = {name: [] for name in endpoints}  # name -> per run: stage -> mean seconds, and the client's mean
    try:
        for name in endpoints:
            run_protocol(requests, name, port, grpc_port, STAGE_CONCURRENCY, WARMUP_SECONDS)
        for _ in range(repeats):
            for name, endpoint in endpoints.items():
                before = stage_means(port)
                client = run_protocol(requests, name, port, grpc_port, STAGE_CONCURRENCY, seconds)
                after = stage_means(port)
                run = {"client": client["mean"] / 1000, "throughput": client["throughput"]}
                for (which, stage), (total, count) in after.items():
                    done = count - before.get((which, stage), (0.0, 0.0))[1]
                    if which == endpoint and done:
                        run[stage] = (total - before.get((which, stage), (0.0, 0.0))[0]) / done
                means[name].append(run)
    finally:
        stop(process)
    return stages_report(means, repeats)


def run_protocol(requests: dict, name: str, port: int, grpc_port: int, connections: int, seconds: float) -> dict:
    target, path = requests[name]
    if path == GRPC_PATH:
        return run_h2load(grpc_port, lambda: 0.0, target, connections, seconds)
    return run_wrk(port, target, connections, seconds, path)


def stages_report(means: dict[str, list[dict]], repeats: int) -> str:
    def cell(runs: list[dict], key: str) -> str:
        values = [run[key] * 1e6 for run in runs if key in run]
        return f"{statistics.median(values):,.0f}" if values else "–"

    lines = [
        f"Where one call's time goes (µs, at concurrency {STAGE_CONCURRENCY}): a server of its own with stage "
        "timings on (`RTDEPLOY_STAGE_TIMINGS=1`, which costs each call a few µs), the two protocols taking turns; "
        f"each stage's mean over a run, median of {repeats} runs. receive: the gRPC call accepted -> its request "
        "read and parsed; decode: the request's input -> the model's batch (for /invocations the JSON parse); "
        "queue: waiting for a batch (batching is off); invoke: the model; log: waiting for the prediction's group "
        "commit; encode: the answer made; send: the gRPC response and status sent. handler is the handler alone; "
        "not seen by the server is the client's mean latency less receive, handler and send: the request "
        "waiting to be accepted, the transport, and the client itself.",
        "",
        "| protocol | throughput (req/s) | client mean | "
        + " | ".join(STAGES)
        + " | handler | not seen by the server |",
        "|---|---:|---:|" + "---:|" * (len(STAGES) + 2),
    ]
    for name, runs in means.items():
        for run in runs:
            seen = sum(run.get(stage, 0.0) for stage in ("receive", "handler", "send"))
            run["unseen"] = run["client"] - seen
            run["throughput_us"] = run["throughput"] / 1e6  # cell() scales by 1e6
        stages = " | ".join(cell(runs, stage) for stage in STAGES)
        handler, unseen = cell(runs, "handler"), cell(runs, "unseen")
        lines.append(
            f"| {name} | {cell(runs, 'throughput_us')} | {cell(runs, 'client')} | {stages} | {handler} | {unseen} |"
        )
    return "\n".join(lines)


def log_sync(folder: str, env: dict, script: Path, seconds: float, repeats: int, concurrencies) -> str:
    """Throughput of serve with log_sync=normal and full, side by side and taking turns."""
    serve = [sys.executable, "-m", "steps.serve", "--model_uri", f"models:/{MODEL}@champion", "--port", "{port}"]
    ports, processes = {}, []
    try:
        for mode in contract.LOG_SYNC_MODES:
            log = ["--prediction_log", f"{folder}/sync-{mode}.db", "--log_sync", mode]
            ports[mode] = free_port()
            print(f"bench: log_sync={mode} on port {ports[mode]}", flush=True)
            output = Path(folder) / f"server-{ports[mode]}.log"
            processes.append(start(Server("", [*serve, *log], "/ready"), env, ports[mode], output))
            run_wrk(ports[mode], script, 16, WARMUP_SECONDS)
        runs = {(mode, c): [] for c in concurrencies for mode in contract.LOG_SYNC_MODES}
        for connections in concurrencies:
            for repeat in range(repeats):
                for mode in contract.LOG_SYNC_MODES:
                    runs[mode, connections].append(run_wrk(ports[mode], script, connections, seconds))
                latest = (
                    f"{mode} {runs[mode, connections][-1]['throughput']:,.0f}" for mode in contract.LOG_SYNC_MODES
                )
                print(f"  c={connections} repeat {repeat + 1}: {', '.join(latest)}", flush=True)
    finally:
        for process in processes:
            stop(process)
    return log_sync_report(runs, repeats, fsync_ms(folder))


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
        row = Row(mode, connections, mode_runs, 0.0)
        normal = runs[contract.LOG_SYNC_NORMAL, connections]
        change = "" if mode == contract.LOG_SYNC_NORMAL else per_turn(mode_runs, normal, as_change=True)
        errors = sum(run["errors"] for run in mode_runs)
        figures = " | ".join(
            row.spread(key, 0 if key == "throughput" else 2) for key in ("throughput", "p50", "p99", "mean")
        )
        lines.append(f"| {mode} | {connections} | {figures} | {errors} | {change} |")
    return "\n".join(lines)


def wait_for_workers(port: int, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if count == 1 or sum(line.startswith("rtdeploy_model_version{") for line in text.splitlines()) == count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{count} workers on port {port} not all serving after {timeout} s")


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
        row = Row(f"workers={count}", connections, server_runs, 0.0)
        single = runs[WORKER_COUNTS[0], connections]
        change = "" if count == WORKER_COUNTS[0] else per_turn(server_runs, single, as_change=True)
        errors = sum(run["errors"] for run in server_runs)
        lines.append(
            f"| {count} | {connections} | {row.spread('throughput', 0)} | {row.spread('p50')} | "
            f"{row.spread('p99')} | {errors} | {row.spread('wrk_cores')} | {change} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="load duration per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="wrk runs per figure (median, min-max reported)")
    parser.add_argument(
        "--only", choices=("serving", "log-cost", "workers", "protocols", "log-sync"), help="one section (default: all)"
    )
    concurrency_help = "the protocols' and log-sync's concurrencies (default: 1 16 64 and 1 16)"
    parser.add_argument("--concurrency", type=int, nargs="+", help=concurrency_help)
    args = parser.parse_args()
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            sys.exit(f"bench/serve.py needs {tool}: apt-get install {package}")
    if args.repeats < 3:
        sys.exit("--repeats must be at least 3: a figure is a median with its spread")
    from sklearn.datasets import load_digits

    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "TF_USE_LEGACY_KERAS": "1",  # the Keras parent is a tf_keras model: mlflow must load it with tf_keras
        }
        keras_uri, litert_uri = prepare_models(env)
        sample = (load_digits().images[:1] / 16.0).reshape(1, 8, 8, 1).tolist()
        body = Path(folder) / "body.json"
        body.write_text(json.dumps({"instances": sample}))
        script = Path(folder) / "post.lua"
        script.write_text(wrk_script(body))
        (Path(folder) / "noop_app.py").write_text(NOOP_APP)
        command = f"python bench/serve.py --seconds {args.seconds} --repeats {args.repeats}"
        if args.only in (None, "log-cost"):
            repeats = max(args.repeats, LOG_COST_REPEATS)
            cost = log_cost(folder, env, script, args.seconds, repeats)
            write_section("Prediction log cost on the request path", f"{command} --only log-cost", cost)
            write_readme_block("log-cost", table_of(cost))
            print(cost)
        if args.only in (None, "workers"):
            table = workers(folder, env, script, args.seconds, args.repeats)
            write_section("Several server processes on one port", f"{command} --only workers", table)
            write_readme_block("workers", table_of(table))
            print(table)
        if args.only in (None, "protocols"):
            concurrencies = args.concurrency or PROTOCOLS_CONCURRENCY
            table = protocols(folder, env, sample, args.seconds, args.repeats, concurrencies)
            title = "Open Inference Protocol: v2 REST and gRPC beside /invocations"
            write_section(title, f"{command} --only protocols{concurrency_option(args)}", table)
            write_readme_block("protocols", headline_of(table))
            print(table)
        if args.only in (None, "log-sync"):
            table = log_sync(folder, env, script, args.seconds, args.repeats, args.concurrency or LOG_SYNC_CONCURRENCY)
            title = "Prediction log durability: log_sync normal and full"
            write_section(title, f"{command} --only log-sync{concurrency_option(args)}", table)
            write_readme_block("log-sync", table_of(table))
            print(table)
        if args.only in (None, "serving"):
            rows, flips = [], None
            for server in servers(folder, keras_uri, litert_uri):
                measured, flipped = measure(server, env, script, args.seconds, args.repeats)
                rows += measured
                flips = flips or flipped
            serving = report(rows, flips, args.repeats)
            write_section("Serving (digits, one sample per request)", f"{command} --only serving", serving)
            write_readme_block("serving", headline_of(serving))
            print(serving)


def table_of(body: str) -> str:
    """A section's first table: what README shows of it (the rest stays in RESULTS.md)."""
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def headline_of(body: str) -> str:
    """A section's headline bullets (the list after its "Headline" line) and its alias-flip line, if any."""
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Headline"))
    bullets = [line for line in lines[start + 1 :] if line.strip()]
    bullets = bullets[: next((i for i, line in enumerate(bullets) if not line.startswith("- ")), len(bullets))]
    flips = [f"- {line}" for line in lines if line.startswith("Alias flips")]
    return "\n".join([lines[start], "", *bullets, *flips])


def concurrency_option(args) -> str:
    return f" --concurrency {' '.join(map(str, args.concurrency))}" if args.concurrency else ""


def report(rows: list[Row], flips: dict | None, repeats: int) -> str:
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
        errors = sum(run["errors"] for run in row.runs)
        memory_note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.server} | {row.connections} | {row.spread('throughput', 0)} | {row.spread('p50')} | "
            f"{row.spread('p99')} | {errors} | {row.rss_mb:.0f}{memory_note} |"
        )
    lines += ["", "Throughput of rtdeploy serve relative to each other server (medians):", ""]
    for c in CONCURRENCY:
        ratios = [
            f"{by[(OURS, c)].median('throughput') / by[(name, c)].median('throughput'):.2f}x {name}"
            for name in dict.fromkeys(row.server for row in rows)
            if name != OURS and (name, c) in by
        ]
        lines.append(f"- concurrency {c}: " + "; ".join(ratios))
    if flips:
        swaps = flips["swap_seconds"]
        lines += [
            "",
            f"Alias flips under load (concurrency 16, {FLIPS} flips, {int(flips['reloads'])} reloads counted by the "
            f"server; with the default poll_seconds, the alias move to the new version served in median "
            f"{statistics.median(swaps):.1f} s, "
            f"{min(swaps):.1f}–{max(swaps):.1f} s): {flips['during']['errors']} failed requests of "
            f"{flips['during']['requests']:,}; p99 during flips {flips['during']['p99']:.2f} ms vs steady "
            f"{flips['steady']['p99']:.2f} ms (p50 {flips['during']['p50']:.2f} vs {flips['steady']['p50']:.2f} ms).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
