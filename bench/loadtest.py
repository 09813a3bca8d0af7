"""What the serving benchmarks share: a private tracking store with the digits model registered, servers started
on free ports and stopped, wrk and h2load driving them, and the rows, ratios and tables their figures make.

bench/serve.py, log_cost.py, workers.py, protocols.py and log_sync.py each measure one thing with these. Every
figure is the median of --repeats load runs of --seconds each, with min–max, after the same untimed warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from steps import contract
from steps.release.infra import free_port

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the servers the benchmarks run and wrk's report script
MODEL = "bench-digits"
CHAMPION_URI = f"models:/{MODEL}@{contract.CHAMPION}"


def serve_command(model_uri: str) -> list[str]:
    """rtdeploy's server of model_uri on "{port}"; a benchmark adds its options."""
    return [sys.executable, "-m", "steps.serve", "--model_uri", model_uri, "--port", "{port}"]


SERVE = serve_command(CHAMPION_URI)
MLFLOW_SERVE = [sys.executable, "-m", "mlflow", "models", "serve", "-p", "{port}"]
MLFLOW_SERVE += ["--env-manager", "local", "-m"]  # + the model URI: mlflow's own server, the reference
WARMUP_SECONDS = 3  # untimed load before any measurement, the same for every server
WARMUP_CONCURRENCY = 16
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
TOOLS = {"wrk": "wrk", "h2load": "nghttp2-client"}  # load generator -> the apt package that has it
H2LOAD_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}  # h2load prints each time in the unit that suits it


@dataclass
class Server:
    name: str
    argv: list[str]  # "{port}" stands for the port, chosen when the server starts
    ready_path: str = "/ready"
    launcher_is_parent: bool = False  # mlflow models serve: the CLI process stays alive beside its worker
    cwd: str | None = None  # the working folder, so which code `-m steps.serve` runs (None: the store's folder)

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


@dataclass
class Row:
    server: str
    connections: int
    runs: list[dict]  # one wrk result per repeat
    rss_mb: float = 0.0  # whole process tree after the runs
    note: str = ""  # how the memory figure is made up

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    def spread(self, key: str, digits: int = 2) -> str:
        values = [run[key] for run in self.runs]
        return f"{self.median(key):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"

    def errors(self) -> int:
        return sum(run["errors"] for run in self.runs)


def per_turn(runs: list[dict], reference: list[dict], as_change: bool) -> str:
    """Throughput against the reference's run of the same turn: the median ratio (min–max), as a change
    (+5.0%) or a factor (1.05x)."""
    ratios = [run["throughput"] / base["throughput"] - as_change for run, base in zip(runs, reference)]
    median, low, high = statistics.median(ratios), min(ratios), max(ratios)
    return f"{median:+.1%} ({low:+.1%}–{high:+.1%})" if as_change else f"{median:.2f}x ({low:.2f}–{high:.2f})"


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The options every serving benchmark has; a script adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="load duration per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="load runs per figure (median, min-max reported)")
    return parser


def add_concurrency(parser: argparse.ArgumentParser, default: tuple[int, ...]) -> None:
    default_text = " ".join(map(str, default))
    parser.add_argument("--concurrency", type=int, nargs="+", help=f"connections at a time (default: {default_text})")


def parse(parser: argparse.ArgumentParser, tools: Iterable[str] = ("wrk",)) -> argparse.Namespace:
    """The arguments, once the load generators are installed and a figure can have a spread."""
    args = parser.parse_args()
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"bench/{parser.prog} needs {tool}: apt-get install {TOOLS[tool]}")
    if args.repeats < 3:
        sys.exit("--repeats must be at least 3: a figure is a median with its spread")
    return args


def reproduce(script: str, args: argparse.Namespace) -> str:
    """The command that measures a section again, as bench/RESULTS.md records it."""
    command = f"python bench/{Path(script).name} --seconds {args.seconds} --repeats {args.repeats}"
    concurrency = getattr(args, "concurrency", None)
    return command + (f" --concurrency {' '.join(map(str, concurrency))}" if concurrency else "")


@dataclass
class Setup:
    folder: str  # temporary, the working folder: the tracking store, prediction logs, the servers' output
    env: dict  # the servers' environment
    sample: list  # one digits image, shape (1, 8, 8, 1): every request's input
    script: Path  # wrk: POST {"instances": sample} as JSON
    keras_uri: str  # the trained run's Keras parent
    litert_uri: str  # its float32 LiteRT deployable, registered as MODEL v1 (champion) and v2


@contextmanager
def trained() -> Iterator[Setup]:
    """A private tracking store in a temporary folder, the digits model trained and registered in it."""
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
        yield Setup(folder, env, sample, wrk_script(body), keras_uri, litert_uri)


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


def start(server: Server, env: dict, port: int, folder: str) -> subprocess.Popen:
    """The server on port, once ready; its output in folder/server-<port>.log."""
    log = Path(folder) / f"server-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            server.command(port),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=server.cwd,
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


def metrics_text(port: int) -> str:
    """A server's /metrics page (Prometheus text)."""
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def wrk_script(body: Path, headers: dict[str, str] | None = None) -> Path:
    """A wrk script beside body (body.lua) that POSTs it as JSON, with headers, and ends with report.lua's line."""
    request = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    request.append(f'wrk.body = io.open("{body}", "rb"):read("*a")')
    request += [f'wrk.headers["{name}"] = "{value}"' for name, value in (headers or {}).items()]
    script = body.with_suffix(".lua")
    script.write_text("\n".join(request) + "\n" + (FIXTURES / "report.lua").read_text())
    return script


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


def warm_up(port: int, script: Path) -> None:
    """The same untimed load for every server before it is measured."""
    run_wrk(port, script, WARMUP_CONCURRENCY, WARMUP_SECONDS)


def children_cpu_since(before) -> float:
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def h2load_figures(output: str) -> dict:
    """h2load's own summary: the time for request's min, max, mean and sd (ms), and the slowest and fastest
    client's request rate (a client starved by the server shows as a low minimum)."""
    times = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output).groups()
    low, high, mean, sd = (float(re.match(r"[\d.]+", t)[0]) * H2LOAD_UNITS[re.sub(r"[\d.]", "", t)] for t in times)
    rates = re.search(r"req/s\s+:\s+([\d.]+)\s+([\d.]+)", output).groups()
    client_min, client_max = float(rates[0]), float(rates[1])
    return {"min": low, "max": high, "mean": mean, "sd": sd, "client_min": client_min, "client_max": client_max}


def run_h2load(port: int, refusals: Callable[[], float], frame: Path, connections: int, seconds: float) -> dict:
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


def in_turns(run: Callable, keys: Iterable, concurrencies: Iterable[int], repeats: int, seconds: float, label=str):
    """At each concurrency, `repeats` times, one `run(key, connections, seconds)` of each key in turn, so that a
    slower stretch of the shared machine falls on each alike: (key, concurrency) -> the runs."""
    keys, concurrencies = list(keys), list(concurrencies)
    runs = {(key, c): [] for c in concurrencies for key in keys}
    for connections in concurrencies:
        for repeat in range(repeats):
            for key in keys:
                runs[key, connections].append(run(key, connections, seconds))
            latest = (f"{label(key)} {runs[key, connections][-1]['throughput']:,.0f}" for key in keys)
            print(f"  c={connections} repeat {repeat + 1}: {', '.join(latest)}", flush=True)
    return runs


def side_by_side(
    servers: dict[Hashable, Server], setup: Setup, seconds: float, repeats: int, concurrencies, ready=None
) -> dict[tuple, list[dict]]:
    """Every server started (after the one before it is warm), then wrk on each in turn (`in_turns`).
    `ready(port, key)`, if given, waits for more than the server's ready path."""
    ports, processes = {}, []
    try:
        for key, server in servers.items():
            ports[key] = free_port()
            print(f"bench: {server.name} on port {ports[key]}", flush=True)
            processes.append(start(server, setup.env, ports[key], setup.folder))
            if ready:
                ready(ports[key], key)
            warm_up(ports[key], setup.script)

        def once(key, connections: int, duration: float) -> dict:
            return run_wrk(ports[key], setup.script, connections, duration)

        return in_turns(once, servers, concurrencies, repeats, seconds, label=lambda key: servers[key].name)
    finally:
        for process in processes:
            stop(process)


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
