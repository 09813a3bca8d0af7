"""The Open Inference Protocol: what v2 REST and v2 gRPC cost beside /invocations, and where one call's time goes.

One rtdeploy server with gRPC on, driven at concurrency 1, 16 and 64
(`--concurrency` sets others) over /invocations (MLflow's JSON, the
reference), v2 REST with JSON tensors, v2 REST with binary tensors (wrk), and
v2 gRPC with raw_input_contents (h2load, nghttp2's C load generator, posting
the same ModelInfer message on HTTP/2 streams); beside it, each in a process
of its own, the same server with dynamic batching on, the same data plane
behind grpc.aio alone (no Starlette, no uvicorn: bench/fixtures/bare_server.py),
and grpcio's own ceiling on this machine: a no-op ModelInfer servicer on
grpc.aio (bench/fixtures/noop_grpc.py). They take turns within each repeat.
Every row has the load generator's mean and max beside the percentiles, and
throughput × mean latency, which Little's law makes equal to the concurrency.
h2load sees gRPC errors as HTTP 200s, so errors are also counted from the
server's own count of gRPC calls answered with an error. Then a server with
stage timings on (RTDEPLOY_STAGE_TIMINGS=1) shows where one /invocations and
one gRPC call spend their time. The digits model is trained and registered
first in a private tracking store (`python -m steps.train`, about 30 s).
Writes bench/RESULTS.md and README's block `protocols`.

    apt-get install wrk nghttp2-client   # once
    python bench/protocols.py [--seconds 8] [--repeats 3] [--concurrency N [N ...]]
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest  # noqa: E402
from results import write_readme_block, write_section  # noqa: E402
from steps.release.infra import free_port  # noqa: E402

PROTOCOLS_CONCURRENCY = (1, 16, 64)
INVOCATIONS = "/invocations (MLflow JSON)"  # the reference the Open Inference Protocol's rows are compared with
JSON_TENSORS = "v2 REST, JSON tensors"
BINARY_TENSORS = "v2 REST, binary tensors"
GRPC = "v2 gRPC, raw tensors"
BARE_GRPC = "v2 gRPC, same data plane on a bare grpc.aio servicer (own process, no Starlette/uvicorn)"
GRPC_CEILING = "no-op ModelInfer on grpc.aio, same stubs (gRPC ceiling)"
BATCHED = ", batching on (max_batch_size 16, max_batch_wait_ms 1)"  # the rows of a second server, so configured
BATCHING = ["--max_batch_size", "16", "--max_batch_wait_ms", "1"]
GRPC_ANSWERS = 'rtdeploy_requests_total{endpoint="grpc_ModelInfer"'  # one line per status
STAGE_CONCURRENCY = 16
STAGES = ("receive", "decode", "queue", "invoke", "log", "encode", "send")  # metrics.StageTimes, in a call's order
STAGE_ENDPOINTS = {INVOCATIONS: "invocations", GRPC: "v2_grpc_infer"}  # the data plane's names for them


def no_refusals() -> float:
    return 0.0


def grpc_refusals(metrics_port: int) -> float:
    """ModelInfer calls the server answered with an error, from its own counter."""
    lines = [
        line
        for line in loadtest.metrics_text(metrics_port).splitlines()
        if line.startswith(GRPC_ANSWERS) and 'status="200"' not in line
    ]
    return sum(float(line.split()[-1]) for line in lines)


def logged_refusals(log: str) -> float:
    """ModelInfer calls answered with an error, from a server's prediction log (one without /metrics)."""
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT count(*) FROM refusals WHERE endpoint = 'grpc_ModelInfer'").fetchone()[0]


def protocol_requests(folder: Path, sample: list, model: str = loadtest.MODEL) -> dict[str, tuple[Path, str]]:
    """Each protocol's request for the same one sample to `model`: name -> (wrk script, or h2load's gRPC frame;
    path)."""
    from steps.serve.oip import grpc_predict_v2_pb2 as pb

    pixels = np.asarray(sample, "<f4")
    tensor = {"name": "input", "datatype": "FP32", "shape": list(pixels.shape)}
    bodies = {
        INVOCATIONS: (json.dumps({"instances": sample}).encode(), {}),
        JSON_TENSORS: (json.dumps({"inputs": [tensor | {"data": pixels.ravel().tolist()}]}).encode(), {}),
    }
    binary_input = tensor | {"parameters": {"binary_data_size": pixels.nbytes}}
    binary_output = {"name": "probabilities", "parameters": {"binary_data": True}}
    head = json.dumps({"inputs": [binary_input], "outputs": [binary_output]}).encode()
    bodies[BINARY_TENSORS] = (head + pixels.tobytes(), {"Inference-Header-Content-Length": str(len(head))})
    requests = {}
    for index, (name, (body, headers)) in enumerate(bodies.items()):
        (folder / f"v2-{index}.body").write_bytes(body)
        path = "/invocations" if name == INVOCATIONS else f"/v2/models/{model}/infer"
        requests[name] = (loadtest.wrk_script(folder / f"v2-{index}.body", headers), path)
    grpc_input = pb.ModelInferRequest.InferInputTensor(**tensor)
    infer = pb.ModelInferRequest(model_name=model, inputs=[grpc_input], raw_input_contents=[pixels.tobytes()])
    message = infer.SerializeToString()
    frame = folder / "grpc.frame"
    frame.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)  # gRPC's length-prefixed message
    requests[GRPC] = (frame, loadtest.GRPC_PATH)
    requests[INVOCATIONS + BATCHED] = requests[INVOCATIONS]
    for name in (GRPC + BATCHED, BARE_GRPC, GRPC_CEILING):
        requests[name] = (frame, loadtest.GRPC_PATH)
    return requests


def drive(request: tuple[Path, str], port: int, refusals: Callable[[], float], connections: int, seconds: float):
    """One load run of a protocol's request: h2load for gRPC (port: the gRPC port), else wrk (the HTTP port)."""
    target, path = request
    if path == loadtest.GRPC_PATH:
        return loadtest.run_h2load(port, refusals, target, connections, seconds)
    return loadtest.run_wrk(port, target, connections, seconds, path)


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


def start_servers(setup: loadtest.Setup, processes: list) -> dict[str, tuple[int, Callable[[], float]]]:
    """Every server the rows are measured on, each added to processes once started: rtdeploy with gRPC on, the
    same with batching on, the bare data plane and the no-op ceiling. Row name -> (the port its load goes to,
    the server's count of gRPC calls answered with an error)."""
    http, grpc_ports = {}, {}
    for variant, options in (("", []), (BATCHED, BATCHING)):
        http[variant], grpc_ports[variant] = free_port(), free_port()
        log = ["--prediction_log", f"{setup.folder}/protocols{len(processes)}.db"]
        server = loadtest.Server(
            f"protocols{variant}", [*loadtest.SERVE, "--grpc_port", str(grpc_ports[variant]), *log, *options]
        )
        print(f"bench: protocols{variant} on ports {http[variant]} (HTTP), {grpc_ports[variant]} (gRPC)", flush=True)
        processes.append(loadtest.start(server, setup.env, http[variant], setup.folder))
    bare_port, ceiling_port, bare_log = free_port(), free_port(), f"{setup.folder}/bare.db"
    bare = [
        sys.executable,
        str(loadtest.FIXTURES / "bare_server.py"),
        loadtest.CHAMPION_URI,
        str(bare_port),
        str(free_port()),
        bare_log,
    ]
    ceiling = [sys.executable, str(loadtest.FIXTURES / "noop_grpc.py"), str(ceiling_port)]
    commands = ((ceiling_port, ceiling), (bare_port, bare))
    others = [(port, subprocess.Popen(command, env=setup.env, start_new_session=True)) for port, command in commands]
    processes.extend(process for _, process in others)
    for port, process in others:
        wait_grpc_ready(port, process)
    return {
        INVOCATIONS: (http[""], no_refusals),
        JSON_TENSORS: (http[""], no_refusals),
        BINARY_TENSORS: (http[""], no_refusals),
        GRPC: (grpc_ports[""], partial(grpc_refusals, http[""])),
        INVOCATIONS + BATCHED: (http[BATCHED], no_refusals),
        GRPC + BATCHED: (grpc_ports[BATCHED], partial(grpc_refusals, http[BATCHED])),
        BARE_GRPC: (bare_port, partial(logged_refusals, bare_log)),
        GRPC_CEILING: (ceiling_port, no_refusals),
    }


def protocols(setup: loadtest.Setup, requests: dict, seconds: float, repeats: int, concurrencies) -> dict:
    """Each protocol's request for the same sample, on the servers of `start_servers`, taking turns at each
    concurrency after the same untimed warm-up: (name, concurrency) -> the runs."""
    processes = []
    try:
        where = start_servers(setup, processes)

        def once(name: str, connections: int, duration: float) -> dict:
            return drive(requests[name], *where[name], connections, duration)

        for name in requests:
            once(name, loadtest.WARMUP_CONCURRENCY, loadtest.WARMUP_SECONDS)
        return loadtest.in_turns(once, requests, concurrencies, repeats, seconds, label=lambda name: name[:24])
    finally:
        for process in processes:
            loadtest.stop(process)


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
        row = loadtest.Row(name, connections, protocol_runs)
        reference = runs[INVOCATIONS, connections]
        versus = "" if name == INVOCATIONS else loadtest.per_turn(protocol_runs, reference, as_change=False)
        lines.append(
            f"| {name} | {connections} | {row.spread('throughput', 0)} | {row.spread('p50')} | "
            f"{row.spread('p99')} | {row.spread('mean')} | {row.spread('max', 1)} | "
            f"{row.spread('in_flight', 1)} | {row.errors()} | {row.spread('wrk_cores')} | {versus} |"
        )
    return "\n".join(lines + headline(runs))


def headline(runs: dict[tuple[str, int], list[dict]]) -> list[str]:
    lines = ["", "Headline, v2 gRPC against /invocations (medians of the per-turn ratios):", ""]
    beside = {"the same data plane on bare grpc.aio": BARE_GRPC, "with batching on": GRPC + BATCHED}
    beside["grpc.aio's no-op ceiling"] = GRPC_CEILING
    for connections in sorted({c for _, c in runs}):
        grpc_runs, reference = runs[GRPC, connections], runs[INVOCATIONS, connections]
        in_flight = statistics.median(run["in_flight"] for run in grpc_runs)
        others = "; ".join(
            f"{label} {loadtest.per_turn(runs[name, connections], reference, as_change=False).split()[0]}"
            for label, name in beside.items()
        )
        lines.append(
            f"- concurrency {connections}: {loadtest.per_turn(grpc_runs, reference, as_change=False).split()[0]} "
            f"({statistics.median(r['throughput'] for r in grpc_runs):,.0f} vs "
            f"{statistics.median(r['throughput'] for r in reference):,.0f} req/s); throughput × mean latency "
            f"{in_flight:.1f} in flight of {connections} ({in_flight / connections - 1:+.0%}); {others}"
        )
    return lines


def stage_means(port: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(endpoint, stage) -> (seconds in all, calls) from a server's /metrics with stage timings on."""
    found: dict[tuple[str, str], list[float]] = {}
    for line in loadtest.metrics_text(port).splitlines():
        match = re.match(r'rtdeploy_stage_seconds_(sum|count)\{endpoint="([^"]+)",stage="([^"]+)"\} (\S+)', line)
        if match:
            found.setdefault((match[2], match[3]), [0.0, 0.0])[match[1] == "count"] = float(match[4])
    return {key: (total, count) for key, (total, count) in found.items()}


def timed_run(request: tuple[Path, str], port: int, metrics_port: int, endpoint: str, seconds: float) -> dict:
    """One load run at STAGE_CONCURRENCY: the client's mean (s) and throughput, and each of the endpoint's stages'
    mean over the run (s), from the server's stage counters before and after."""
    before = stage_means(metrics_port)
    client = drive(request, port, no_refusals, STAGE_CONCURRENCY, seconds)
    after = stage_means(metrics_port)
    run = {"client": client["mean"] / 1000, "throughput": client["throughput"]}
    for (which, stage), (total, count) in after.items():
        total_before, count_before = before.get((which, stage), (0.0, 0.0))
        if which == endpoint and count - count_before:
            run[stage] = (total - total_before) / (count - count_before)
    return run


def stage_timings(setup: loadtest.Setup, requests: dict, seconds: float, repeats: int) -> dict[str, list[dict]]:
    """Where one call's time goes, stage by stage: a server of its own with stage timings on (they cost a little),
    /invocations and gRPC taking turns at STAGE_CONCURRENCY: name -> per run, stage -> mean, and the client's."""
    port, grpc_port = free_port(), free_port()
    log = ["--prediction_log", f"{setup.folder}/stages.db"]
    server = loadtest.Server("stage timings", [*loadtest.SERVE, "--grpc_port", str(grpc_port), *log])
    print(f"bench: stage timings on ports {port} (HTTP) and {grpc_port} (gRPC)", flush=True)
    process = loadtest.start(server, setup.env | {"RTDEPLOY_STAGE_TIMINGS": "1"}, port, setup.folder)
    load_port = {INVOCATIONS: port, GRPC: grpc_port}
    means = {name: [] for name in STAGE_ENDPOINTS}
    try:
        for name in STAGE_ENDPOINTS:
            drive(requests[name], load_port[name], no_refusals, STAGE_CONCURRENCY, loadtest.WARMUP_SECONDS)
        for _ in range(repeats):
            for name, endpoint in STAGE_ENDPOINTS.items():
                means[name].append(timed_run(requests[name], load_port[name], port, endpoint, seconds))
    finally:
        loadtest.stop(process)
    return means


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


def main() -> None:
    parser = loadtest.argument_parser(__doc__)
    loadtest.add_concurrency(parser, PROTOCOLS_CONCURRENCY)
    args = loadtest.parse(parser, tools=("wrk", "h2load"))
    with loadtest.trained() as setup:
        requests = protocol_requests(Path(setup.folder), setup.sample)
        runs = protocols(setup, requests, args.seconds, args.repeats, args.concurrency or PROTOCOLS_CONCURRENCY)
        stages = stage_timings(setup, requests, args.seconds, args.repeats)
        table = protocols_report(runs, args.repeats) + "\n\n" + stages_report(stages, args.repeats)
        title = "Open Inference Protocol: v2 REST and gRPC beside /invocations"
        write_section(title, loadtest.reproduce(__file__, args), table)
        write_readme_block("protocols", loadtest.headline_of(table))
        print(table)


if __name__ == "__main__":
    main()
