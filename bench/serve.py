"""Serving benchmark: rtdeploy's server against `mlflow models serve` on the same registered model.

In one run, on this machine: trains the digits model (`python -m steps.train`,
about 30 s) into a private tracking store, registers its float32 LiteRT
deployable, then drives with wrk (C, event-driven: not the bottleneck) at
concurrency 1, 4, 16 and 64:
  - rtdeploy serve (models:/bench-digits@champion), as configured by default
  - the same with dynamic batching on
  - mlflow models serve of the Keras float parent (tensorflow flavor)
  - mlflow models serve of the same LiteRT pyfunc
  - a no-op endpoint on rtdeploy's HTTP stack (Starlette, uvicorn, uvloop, httptools): the ceiling
and reports p50/p95/p99, throughput, errors and server RSS (with every child
process). Then flips the champion alias 10 times under load, each flip served
before the next, and counts failed requests.

    apt-get install wrk   # once
    python bench/serve.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section  # noqa: E402

CONCURRENCY = (1, 4, 16, 64)
MODEL = "bench-digits"
FLIPS = 10
OURS = "rtdeploy serve (LiteRT)"
FLIP_BUDGET_SECONDS = 6  # load time per flip: poll 0.5 s + fetch ~3-4 s + warm-up
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
wrk.body = io.open("%s"):read("*a")
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format('JSON {"requests": %%d, "seconds": %%f, "errors": %%d, "p50": %%f, "p95": %%f, "p99": %%f}\\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


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


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (mlflow models serve forks workers)."""
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids.extend(int(child) for child in children)
        except (OSError, StopIteration):
            continue
    return total / 1024


def run_wrk(port: int, script: Path, connections: int, seconds: float) -> dict:
    threads = min(connections, 2)
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/invocations",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("JSON "))
    measured = json.loads(line[5:])
    measured["throughput"] = measured["requests"] / measured["seconds"]
    return measured


def start(args: list[str], env: dict, ready_path: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_ready(f"http://127.0.0.1:{port}{ready_path}", process)
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
    mlflow.MlflowClient().set_registered_model_alias(MODEL, "champion", "1")
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
            client.set_registered_model_alias(MODEL, "champion", target)
            while served_version() != target and time.time() - started < 60:
                time.sleep(0.1)
            swap_seconds.append(time.time() - started)

    flipper = threading.Thread(target=flip)
    flipper.start()
    during = run_wrk(port, script, 16, FLIPS * FLIP_BUDGET_SECONDS)
    flipper.join()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    reloads = next(
        (float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("rtdeploy_reloads_total")), 0
    )
    return {"steady": steady, "during": during, "reloads": reloads, "swap_seconds": swap_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="load duration per measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py needs wrk: apt-get install wrk")
    from sklearn.datasets import load_digits

    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        uri = f"sqlite:///{folder}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "TF_USE_LEGACY_KERAS": "1",
        }
        keras_uri, litert_uri = prepare_models(env)
        sample = (load_digits().images[:1] / 16.0).reshape(1, 8, 8, 1).tolist()
        body = Path(folder) / "body.json"
        body.write_text(json.dumps({"instances": sample}))
        script = Path(folder) / "post.lua"
        script.write_text(WRK_SCRIPT % body)
        (Path(folder) / "noop_app.py").write_text(NOOP_APP)

        def rtdeploy(log: str, *options: str):
            return lambda port: (
                [sys.executable, "-m", "steps.serve", "--model_uri", f"models:/{MODEL}@champion", "--port", str(port),
                 "--prediction_log", f"{folder}/{log}", *options],
                "/ready",
            )  # fmt: skip

        def mlflow_serve(model_uri: str):
            return lambda port: (
                [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "-p", str(port),
                 "--env-manager", "local"],
                "/ping",
            )  # fmt: skip

        servers = {
            OURS: rtdeploy("predictions.db", "--poll_seconds", "0.5"),
            "rtdeploy serve, batching on (max_batch_size 32, wait 0)": rtdeploy(
                "predictions-batching.db", "--max_batch_size", "32", "--max_batch_wait_ms", "0"
            ),
            "mlflow models serve, Keras parent": mlflow_serve(keras_uri),
            "mlflow models serve, same LiteRT pyfunc": mlflow_serve(litert_uri),
            "no-op endpoint, same HTTP stack (ceiling)": lambda port: (
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "noop_app:app",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--app-dir",
                    folder,
                ],
                "/ping",
            ),
        }
        rows, flips = [], None
        for name, command in servers.items():
            port = free_port()
            argv, ready = command(port)
            print(f"bench: {name} on port {port}", flush=True)
            process = start(argv, env, ready, port)
            try:
                for connections in CONCURRENCY:
                    measured = run_wrk(port, script, connections, args.seconds)
                    measured["rss_mb"] = tree_rss_mb(process.pid)
                    rows.append((name, connections, measured))
                    print(
                        f"  c={connections}: {measured['throughput']:.0f}/s p50 {measured['p50']:.2f} ms "
                        f"p99 {measured['p99']:.2f} ms errors {measured['errors']} rss {measured['rss_mb']:.0f} MB",
                        flush=True,
                    )
                if name == OURS:
                    flips = flip_under_load(port, script, args.seconds)
            finally:
                stop(process)
    write_section(
        "Serving (digits, one sample per request)",
        f"python bench/serve.py --seconds {args.seconds}",
        report(rows, flips),
    )
    print(report(rows, flips))


def report(rows, flips) -> str:
    lines = [
        "| server | concurrency | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | errors | server RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, connections, m in rows:
        lines.append(
            f"| {name} | {connections} | {m['throughput']:,.0f} | {m['p50']:.2f} | {m['p95']:.2f} | "
            f"{m['p99']:.2f} | {m['errors']} | {m['rss_mb']:.0f} |"
        )
    by = {(name, c): m for name, c, m in rows}
    lines.append("")
    for c in CONCURRENCY:
        ratios = [
            f"{by[(OURS, c)]['throughput'] / by[(name, c)]['throughput']:.2f}x {name}"
            for name in dict.fromkeys(n for n, *_ in rows)
            if name != OURS and (name, c) in by
        ]
        lines.append(f"- concurrency {c}: rtdeploy throughput = " + "; ".join(ratios))
    if flips:
        lines += [
            "",
            f"Alias flips under load (concurrency 16, {FLIPS} flips, "
            f"{int(flips['reloads'])} reloads counted by the server, alias move to new version served in "
            f"{min(flips['swap_seconds']):.1f}-{max(flips['swap_seconds']):.1f} s): "
            f"{flips['during']['errors']} failed requests of {flips['during']['requests']:,}; p99 during flips "
            f"{flips['during']['p99']:.2f} ms vs steady {flips['steady']['p99']:.2f} ms "
            f"(p50 {flips['during']['p50']:.2f} vs {flips['steady']['p50']:.2f} ms).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
