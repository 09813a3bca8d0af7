"""Real-size models: the lifecycle measured where the model's time dominates, on MobileNetV2 0.35 at 96 px
trained on `shapes` through README's command, and the published 1.0 at 224 px (random init: speed only).

In one run, on this machine (about 45 minutes on 2 cores, half of it `main`; wrk and h2load installed):
  1. `main` as README runs it at this scale, timed, with the peak resident memory of its whole process tree
     (sampled every half second). Kept in --store, so that `--reuse-main` measures the rest again on the
     same models without the training.
  2. Every variant that run made: gzip size, test accuracy with its 95% interval (its run's metrics), and
     LiteRT p50/p99 at 1 and 2 threads, timed here (median of repeats, each a fresh process); int8 vs float32, and
     pruned/clustered vs dense int8.
  3. Serving the champion at concurrency 1 and 16, taking turns: rtdeploy (MLflow JSON `/invocations`,
     `/predict` with a 320x240 JPEG, v2 REST JSON and binary tensors, v2 gRPC), rtdeploy with dynamic
     batching at several settings and with log_inputs 0.05, `mlflow models serve` of the same LiteRT pyfunc
     and of the float Keras parent, and the model alone in process (the ceiling); throughput, p50/p99, RSS.
  4. The same for MobileNetV2 1.0/224 int8 (random init, registered here): fewer rows.
  5. `/predict` at concurrency 1: the server-side latency its prediction log records, against the model's
     p50 plus the decode's p50 (the server's own decode function, timed here).
  6. Drift false alarms and detections on windows of fresh `shapes` images (another seed than the data
     set's; no image in two windows of one rate).
Writes bench/RESULTS.md ("Real-size models") and README's block `scale`.

    apt-get install wrk nghttp2-client   # once
    python bench/scale.py [--seconds 8] [--repeats 3] [--store DIR] [--reuse-main | --main-only]
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import protocols  # noqa: E402
from model_speed import ratio  # noqa: E402
from serve import tree_rss_mb  # noqa: E402

import loadtest  # noqa: E402
from results import spread, write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.core.timing import latency_percentiles_ms  # noqa: E402
from steps.release.infra import free_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SIDE = 96
MODEL = "shapes-classifier"
MAIN_PARAMETERS = ("dataset=shapes", "architecture=mobilenetv2", f"image_size={SIDE}", f"model_name={MODEL}")
README_COMMAND = "mlflow run . --env-manager local " + " ".join(f"-P {p}" for p in MAIN_PARAMETERS)
BIG = (1.0, 224)  # alpha, side: the published MobileNetV2, random init, for speed only
BIG_MODEL = "bench-mobilenetv2-224"
CONCURRENCY = (1, 16)
JPEG_SIZE = (320, 240)  # a camera frame as users send it; the server decodes and resizes it to SIDE
BATCHINGS = ((8, 0.0), (16, 1.0), (16, 2.0))  # (max_batch_size, max_batch_wait_ms) beside batching off
LOG_INPUTS_SHARE = 0.05  # the other log_inputs setting measured beside the default (1.0)
MEMORY_SAMPLE_SECONDS = 0.5
DRIFT_SEED = 7  # fresh shapes: the data set's own images are drawn with shapes.SEED
DRIFT_PER_CLASS = 100  # 1,000 fresh images: 20 disjoint windows of 50 per rate


def default_store() -> Path:
    return Path(os.environ.get("RTDEPLOY_CACHE") or Path.home() / ".cache" / "rtdeploy") / "bench-scale"


def store_env(store: Path) -> dict:
    return os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


# 1. main ------------------------------------------------------------------------------------------------------


def run_main(store: Path) -> dict:
    """README's command at this scale, in a fresh store: its wall time and the peak memory of its process tree."""
    if (store / "mlflow.db").exists():
        raise SystemExit(f"{store} already holds a tracking store: pass --reuse-main, or delete it to train again")
    store.mkdir(parents=True, exist_ok=True)
    command = ["mlflow", "run", str(REPO), "--env-manager", "local", "--experiment-name", "rtdeploy"]
    command += [arg for parameter in MAIN_PARAMETERS for arg in ("-P", parameter)]
    print(f"bench: {' '.join(command)} (output in {store}/main.log)", flush=True)
    peak, started = 0.0, time.perf_counter()
    with (store / "main.log").open("w") as log:
        process = subprocess.Popen(command, cwd=store, env=store_env(store), stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            peak = max(peak, tree_rss_mb(process.pid))
            time.sleep(MEMORY_SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"main exited with {process.returncode}; its output: {store}/main.log")
    record = {
        "seconds": seconds,
        "peak_tree_rss_mb": peak,
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "progress": [line for line in (store / "main.log").read_text().splitlines() if line.startswith("pipeline: [")],
    }
    (store / "main.json").write_text(json.dumps(record, indent=1))
    print(f"bench: main took {seconds / 60:.1f} min, peak tree RSS {peak:,.0f} MB", flush=True)
    return record


def recorded_main(store: Path) -> dict:
    """What run_main recorded of the main run kept in store."""
    try:
        return json.loads((store / "main.json").read_text())
    except FileNotFoundError:
        raise SystemExit(f"{store} holds no finished main run: run bench/scale.py without --reuse-main") from None


# 2. the variants ----------------------------------------------------------------------------------------------


def tflite_of(run_id: str, folder: Path) -> bytes:
    """A run's LiteRT deployable, as the server fetches it."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{contract.LITERT_MODEL}", dst_path=folder))
    return next(local.rglob("*.tflite")).read_bytes()


def the_main_run():
    import mlflow

    found = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.{contract.TAG_STEP} = '{contract.MAIN}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    if not found:
        raise SystemExit("the store holds no finished main run: run bench/scale.py without --reuse-main")
    return found[0]


def variants(folder: Path, sample: np.ndarray, repeats: int) -> dict:
    """Every variant of the main run: its metrics, its deployable, and its LiteRT latency here at 1 and 2
    threads; which one is the champion, and the float parent's Keras model."""
    import mlflow
    from model_speed import latencies

    from steps.release.lineage import variant_rows_of_pipeline

    main_run = the_main_run()
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, contract.CHAMPION)
    train_run = main_run.data.tags[contract.TAG_STEP_RUN.format(step=contract.TRAIN)]
    largest_first = sorted(variant_rows_of_pipeline(main_run.info.run_id), key=lambda r: -r[contract.SIZE_GZIP_BYTES])
    rows = {row.variant: {"row": row, "tflite": tflite_of(row.run_id, folder / row.run_id)} for row in largest_first}
    timed = latencies({name: variant["tflite"] for name, variant in rows.items()}, sample, 200, repeats)
    for (name, threads), latency in timed.items():
        rows[name][threads] = latency
    champion_variant = next(name for name, found in rows.items() if found["row"].run_id == champion.run_id)
    return {
        "rows": rows,
        "champion": champion_variant,
        "champion_version": champion.version,
        "keras_uri": f"runs:/{train_run}/{contract.KERAS_MODEL}",
    }


def variants_report(found: dict) -> list[str]:
    rows = found["rows"]
    lines = [
        "| variant | gzip size (B) | vs float32 | test accuracy [95% CI] | p50 1 thread (ms) | p99 1 thread (ms) | "
        "p50 2 threads (ms) | p50 vs dense int8 |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    dense = rows.get("int8")
    for name, measured in rows.items():
        metrics = measured["row"].metrics
        versus_int8 = ratio(measured[1]["p50"], dense[1]["p50"]) if dense and "int8" in name else ""
        champion = " (champion)" if name == found["champion"] else ""
        lines.append(
            f"| {name}{champion} | {int(metrics[contract.SIZE_GZIP_BYTES]):,} | "
            f"{metrics[contract.COMPRESSION_RATIO]:.1f}x | {metrics[contract.ACCURACY]:.4f} "
            f"[{metrics[contract.ACCURACY_LOW]:.3f}, {metrics[contract.ACCURACY_HIGH]:.3f}] | "
            f"{spread(measured[1]['p50'], 3)} | {spread(measured[1]['p99'], 3)} | {spread(measured[2]['p50'], 3)} | "
            f"{versus_int8} |"
        )
    return lines


# 3.-5. serving -------------------------------------------------------------------------------------------------

OURS = "rtdeploy"
MLFLOW_LITERT = "mlflow models serve, same LiteRT pyfunc"
MLFLOW_KERAS = "mlflow models serve, float Keras parent"
CEILING = "model alone in process (ceiling)"
JPEG = "/predict, 320x240 JPEG"


def batching_name(size: int, wait: float) -> str:
    return f"{OURS}, batching max_batch_size {size} max_batch_wait_ms {wait:g}"


LOG_FEW = f"{OURS}, log_inputs {LOG_INPUTS_SHARE}"


def jpeg_request(folder: Path) -> tuple[bytes, Path]:
    """A fresh 320x240 shapes photo as JPEG, and the wrk script that POSTs it to /predict."""
    from PIL import Image

    from steps.datasets import shapes

    images, _ = shapes.generate_shapes(max(JPEG_SIZE), per_class=1, classes=("star",), seed=DRIFT_SEED)
    frame = Image.fromarray(images[0]).resize(JPEG_SIZE)
    body = folder / "photo.jpg"
    frame.save(body, quality=90)
    return body.read_bytes(), loadtest.wrk_script(body, {"Content-Type": "image/jpeg"})


def serving_rows(model: str, keras_uri: str | None, sweep: bool) -> dict[str, tuple[str, str]]:
    """Row name -> (server key, request name) for one model: what is measured at each concurrency."""
    rows = {
        f"{OURS}, {protocols.INVOCATIONS}": (OURS, protocols.INVOCATIONS),
        f"{OURS}, {JPEG}": (OURS, JPEG),
        f"{OURS}, {protocols.JSON_TENSORS}": (OURS, protocols.JSON_TENSORS),
        f"{OURS}, {protocols.BINARY_TENSORS}": (OURS, protocols.BINARY_TENSORS),
        f"{OURS}, {protocols.GRPC}": (OURS, protocols.GRPC),
    }
    if sweep:
        for size, wait in BATCHINGS:
            rows[f"{batching_name(size, wait)}, {protocols.BINARY_TENSORS}"] = (
                batching_name(size, wait),
                protocols.BINARY_TENSORS,
            )
        rows[f"{LOG_FEW}, {protocols.BINARY_TENSORS}"] = (LOG_FEW, protocols.BINARY_TENSORS)
    rows[f"{MLFLOW_LITERT}, {protocols.INVOCATIONS}"] = (MLFLOW_LITERT, protocols.INVOCATIONS)
    if keras_uri:
        rows[f"{MLFLOW_KERAS}, {protocols.INVOCATIONS}"] = (MLFLOW_KERAS, protocols.INVOCATIONS)
    return rows


def servers_for(model: str, keras_uri: str | None, folder: Path, sweep: bool) -> dict[str, loadtest.Server]:
    serve = loadtest.serve_command(f"models:/{model}@{contract.CHAMPION}")
    servers = {OURS: loadtest.Server(OURS, [*serve, "--prediction_log", str(folder / f"{model}.db")])}
    if sweep:
        for size, wait in BATCHINGS:
            options = ["--max_batch_size", str(size), "--max_batch_wait_ms", str(wait)]
            name = batching_name(size, wait)
            servers[name] = loadtest.Server(
                name, [*serve, *options, "--prediction_log", str(folder / f"b{size}-{wait}.db")]
            )
        options = ["--log_inputs", str(LOG_INPUTS_SHARE), "--prediction_log", str(folder / "few.db")]
        servers[LOG_FEW] = loadtest.Server(LOG_FEW, [*serve, *options])
    servers[MLFLOW_LITERT] = loadtest.Server(
        MLFLOW_LITERT,
        [*loadtest.MLFLOW_SERVE, f"models:/{model}@{contract.CHAMPION}"],
        "/ping",
        launcher_is_parent=True,
    )
    if keras_uri:
        servers[MLFLOW_KERAS] = loadtest.Server(
            MLFLOW_KERAS, [*loadtest.MLFLOW_SERVE, keras_uri], "/ping", launcher_is_parent=True
        )
    return servers


def serve_side_by_side(model, keras_uri, sample, folder, env, args, sweep: bool) -> dict:
    """Every server started, each warmed up on each of its requests, then every row in turn at each concurrency
    (loadtest.in_turns); the rtdeploy server's /predict at concurrency 1 timed again against its log."""
    requests = protocols.protocol_requests(folder, sample.tolist(), model)
    jpeg, jpeg_script = jpeg_request(folder)
    requests[JPEG] = (jpeg_script, "/predict")
    rows = serving_rows(model, keras_uri, sweep)
    servers = servers_for(model, keras_uri, folder, sweep)
    grpc_port = free_port()
    servers[OURS].argv += ["--grpc_port", str(grpc_port)]
    ports, processes = {}, {}
    try:
        for key, server in servers.items():
            ports[key] = free_port()
            print(f"bench: {server.name} on port {ports[key]}", flush=True)
            processes[key] = loadtest.start(server, env, ports[key], str(folder))
        refusals = partial(protocols.grpc_refusals, ports[OURS])

        def once(row: str, connections: int, seconds: float) -> dict:
            server, request = rows[row]
            if request == protocols.GRPC:
                return protocols.drive(requests[request], grpc_port, refusals, connections, seconds)
            return protocols.drive(requests[request], ports[server], protocols.no_refusals, connections, seconds)

        for row in rows:
            once(row, loadtest.WARMUP_CONCURRENCY, loadtest.WARMUP_SECONDS)
        runs = loadtest.in_turns(once, rows, CONCURRENCY, args.repeats, args.seconds, label=lambda row: row[:40])
        memory = {key: tree_rss_mb(process.pid) for key, process in processes.items()}
        logged = predict_log_latency(ports[OURS], jpeg_script, folder / f"{model}.db", args)
    finally:
        for process in processes.values():
            loadtest.stop(process)
    return {"runs": runs, "rows": rows, "memory": memory, "jpeg": jpeg, "logged": logged}


def predict_log_latency(port: int, script: Path, log: Path, args) -> dict:
    """/predict at concurrency 1, `repeats` times: wrk's p50, and the p50 of the latency the server logged for
    the same requests (received to answered, decode included)."""
    found = {"end_to_end": [], "server": []}
    for _ in range(args.repeats):
        started = time.time()
        measured = loadtest.run_wrk(port, script, 1, args.seconds, "/predict")
        with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as connection:
            logged = [
                value
                for (value,) in connection.execute(
                    "SELECT latency_ms FROM predictions WHERE endpoint = 'predict' AND time >= ?", (started,)
                )
            ]
        found["end_to_end"].append(measured["p50"])
        found["server"].append(statistics.median(logged))
    return found


def in_process(tflite: bytes, sample: np.ndarray, repeats: int) -> dict:
    """The ceiling: one caller's p50/p99 and calls per second, and two callers' (the cores) calls per second."""
    from model_speed import concurrent_throughput, latencies

    return {
        1: latencies({"alone": tflite}, sample, 300, repeats, threads=(1,))["alone", 1]
        | {"throughput": concurrent_throughput(tflite, 1, sample, 1, repeats)},
        16: {"throughput": concurrent_throughput(tflite, 1, sample, 2, repeats)},
    }


def serving_report(served: dict, ceiling: dict, repeats: int) -> list[str]:
    lines = [
        "| server, request | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) | errors | process tree RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for connections in CONCURRENCY:
        for row, (server, _) in served["rows"].items():
            measured = loadtest.Row(row, connections, served["runs"][row, connections], served["memory"][server])
            lines.append(
                f"| {row} | {connections} | {measured.spread('throughput', 0)} | {measured.spread('p50')} | "
                f"{measured.spread('p99')} | {measured.errors()} | {measured.rss_mb:.0f} |"
            )
        alone = ceiling[connections]
        latencies = (
            f"{spread(alone['p50'], 3)} | {spread(alone['p99'], 3)}"
            if "p50" in alone
            else "(2 callers, one per core) | "
        )
        lines.append(f"| {CEILING} | {connections} | {spread(alone['throughput'], 0)} | {latencies} | 0 | |")
    lines += ["", f"Each figure: median of {repeats} runs (min–max), the rows taking turns after the same warm-up."]
    return lines


def throughput_ratio(served: dict, row: str, reference: str, connections: int) -> str:
    return loadtest.per_turn(served["runs"][row, connections], served["runs"][reference, connections], False)


def decode_p50(jpeg: bytes, repeats: int) -> list[float]:
    """The server's own decode of /predict's body (JPEG -> resized float32 pixels), timed here."""
    from steps.serve.protocol import image_input

    return [latency_percentiles_ms(lambda: image_input(jpeg, (SIDE, SIDE, 3)), 20, 300)[0] for _ in range(repeats)]


# 4. MobileNetV2 1.0/224 ------------------------------------------------------------------------------------------


def register_big(folder: Path) -> dict[str, bytes]:
    """MobileNetV2 1.0/224 (random init) in its four forms; the int8 one registered as BIG_MODEL's champion."""
    import mlflow
    from model_speed import deployables

    from steps.datasets.data import Dataset
    from steps.release.tracking import log_litert_model

    print(f"bench: MobileNetV2 {BIG[0]}/{BIG[1]}: converting 4 forms", flush=True)
    forms = deployables(*BIG)
    side = BIG[1]
    x = np.random.default_rng(2).random((2, side, side, 3), np.float32)
    y = np.arange(2)
    data = Dataset("random", "bench/scale.py", x, y, x, y, x, y, tuple(str(i) for i in range(10)))
    path = folder / "big-int8.tflite"
    path.write_bytes(forms["int8"])
    with mlflow.start_run(run_name=BIG_MODEL):
        uri = log_litert_model(path, data)
    version = mlflow.register_model(uri, BIG_MODEL)
    mlflow.MlflowClient().set_registered_model_alias(BIG_MODEL, contract.CHAMPION, version.version)
    return forms


def big_report(forms: dict[str, bytes], latencies: dict, served: dict, ceiling: dict, repeats: int) -> list[str]:
    from steps.modeling.measure import sizes

    lines = [
        "| form | gzip size (B) | p50 1 thread (ms) | p99 1 thread (ms) | p50 2 threads (ms) | "
        "p50 vs float32, 1 thread |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, tflite in forms.items():
        one, two = latencies[name, 1], latencies[name, 2]
        lines.append(
            f"| {name} | {sizes(tflite)[1]:,} | {spread(one['p50'], 3)} | {spread(one['p99'], 3)} | "
            f"{spread(two['p50'], 3)} | {ratio(one['p50'], latencies['float32', 1]['p50'])} |"
        )
    return [*lines, "", "Serving its int8 form (random init):", "", *serving_report(served, ceiling, repeats)]


# 6. drift on fresh shapes -------------------------------------------------------------------------------------


def drift_rates(predict, data) -> tuple[list[str], dict]:
    """The champion's reference profile on the validation split (as `register` makes it); clean and drifted
    windows cut from fresh shapes images, disjoint within each rate."""
    from drift import detections, reference_of

    from steps.datasets import shapes
    from steps.datasets.corruptions import DEFAULT_SEVERITY
    from steps.monitoring.drift_rates import WINDOW, rates_of
    from steps.monitoring.drift_statistics import DEFAULT_ALPHA
    from steps.monitoring.reference_profile import calibrate

    print(f"bench: drift windows on {DRIFT_PER_CLASS * len(shapes.CLASSES)} fresh shapes", flush=True)
    images, y = shapes.generate_shapes(SIDE, DRIFT_PER_CLASS, seed=DRIFT_SEED)
    x = images.astype(np.float32) / np.float32(255)
    reference = reference_of(predict, data)
    probabilities = predict(x)
    accuracy = float((probabilities.argmax(axis=1) == y).mean())
    calibrated = calibrate(reference, probabilities, x, window_sizes=(WINDOW,))
    rates = {"clean": rates_of(calibrated.calibration[WINDOW], (DEFAULT_ALPHA,), WINDOW, accuracy)[DEFAULT_ALPHA]}
    rates |= detections(predict, reference, x, y)
    lines = [
        f"| traffic ({rates['clean'].windows} disjoint windows of {WINDOW} fresh images) | severity | "
        f"windows flagged at drift_alpha {DEFAULT_ALPHA} | champion's accuracy |",
        "|---|---:|---:|---:|",
    ]
    for kind, rate in rates.items():
        severity = DEFAULT_SEVERITY.get(kind, "")
        label = "clean (false alarms)" if kind == "clean" else f"`{kind}` (detection)"
        lines.append(f"| {label} | {severity} | {rate} | {rate.accuracy:.3f} |")
    return lines, rates


# the report ---------------------------------------------------------------------------------------------------


def headline(record: dict, found: dict, served: dict, extra: dict) -> list[str]:
    """The bullets README shows: each Must-show figure beside its target."""
    rows = found["rows"]
    champion, baseline = rows[found["champion"]]["row"].metrics, rows[contract.FLOAT32_VARIANT]["row"].metrics
    change = (champion[contract.ACCURACY] - baseline[contract.ACCURACY]) * 100
    binary, invocations = f"{OURS}, {protocols.BINARY_TENSORS}", f"{OURS}, {protocols.INVOCATIONS}"
    grpc, few = f"{OURS}, {protocols.GRPC}", f"{LOG_FEW}, {protocols.BINARY_TENSORS}"
    mlflow_litert, mlflow_keras = (
        f"{MLFLOW_LITERT}, {protocols.INVOCATIONS}",
        f"{MLFLOW_KERAS}, {protocols.INVOCATIONS}",
    )
    model_p50 = statistics.median(rows[found["champion"]][1]["p50"])
    decode = statistics.median(extra["decode"])
    server_p50 = statistics.median(served["logged"]["server"])
    bound = model_p50 + decode + 0.5
    batching = "; ".join(
        f"max_batch_size {size}, wait {wait:g} ms: "
        + throughput_ratio(served, f"{batching_name(size, wait)}, {protocols.BINARY_TENSORS}", binary, 16)
        for size, wait in BATCHINGS
    )
    one, eight = extra["batch"]
    big = extra["big_latency"]
    return [
        f"- **`main` at 96 px** (`{README_COMMAND}`): {record['seconds'] / 60:.1f} min on this machine "
        f"(target: 45), its process tree at most {record['peak_tree_rss_mb']:,.0f} MB resident.",
        f"- **Champion** `{found['champion']}` (v{found['champion_version']}): test accuracy "
        f"{champion[contract.ACCURACY]:.4f} [{champion[contract.ACCURACY_LOW]:.3f}, "
        f"{champion[contract.ACCURACY_HIGH]:.3f}] vs float32 {baseline[contract.ACCURACY]:.4f} "
        f"[{baseline[contract.ACCURACY_LOW]:.3f}, {baseline[contract.ACCURACY_HIGH]:.3f}] ({change:+.2f} "
        f"points; target: at most 1 below), {champion[contract.COMPRESSION_RATIO]:.1f}x smaller gzipped (target 3.5x).",
        f"- **`/predict` with a 320x240 JPEG at concurrency 1**: server-side latency (the prediction log's) p50 "
        f"{server_p50:.3f} ms vs model p50 {model_p50:.3f} + decode p50 {decode:.3f} + 0.5 = {bound:.3f} ms "
        f"({'within' if server_p50 <= bound else 'OVER'} the bound); end to end (wrk) p50 "
        f"{spread(served['logged']['end_to_end'], 3)} ms.",
        f"- **Concurrency 16**: v2 binary tensors {throughput_ratio(served, binary, invocations, 16)} the "
        f"throughput of JSON `/invocations` (target 3x); gRPC {throughput_ratio(served, grpc, invocations, 16)}. "
        f"Batching on vs off (v2 binary): {batching} (target 1.3x). In process, per sample: batch 8 "
        f"{spread(eight, 3)} ms vs batch 1 {spread(one, 3)} ms.",
        f"- **Against `mlflow models serve`** (JSON `/invocations` both, same LiteRT pyfunc): "
        f"{throughput_ratio(served, invocations, mlflow_litert, 1)} at concurrency 1, "
        f"{throughput_ratio(served, invocations, mlflow_litert, 16)} at 16; against the float Keras parent "
        f"served by mlflow: {throughput_ratio(served, invocations, mlflow_keras, 16)} at 16.",
        f"- **log_inputs {LOG_INPUTS_SHARE} vs 1.0** (v2 binary): {throughput_ratio(served, few, binary, 1)} at "
        f"concurrency 1, {throughput_ratio(served, few, binary, 16)} at 16.",
        f"- **MobileNetV2 1.0/224**: int8 p50 {ratio(big['int8', 1]['p50'], big['float32', 1]['p50'])} float32's "
        f"at 1 thread (target at most 0.65x), {ratio(big['int8', 2]['p50'], big['float32', 2]['p50'])} at 2; "
        f"2 threads make float32 {ratio(big['float32', 1]['p50'], big['float32', 2]['p50'])} faster (target 1.6x).",
        f"- **Drift on fresh shapes** (champion): false alarms {extra['drift']['clean']}; detections "
        + ", ".join(f"`{kind}` {rate}" for kind, rate in extra["drift"].items() if kind != "clean")
        + ".",
    ]


def main() -> None:
    parser = loadtest.argument_parser(__doc__)
    parser.add_argument("--store", type=Path, default=default_store(), help="where main's tracking store is kept")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--reuse-main", action="store_true", help="measure the models of an earlier main run")
    which.add_argument("--main-only", action="store_true", help="run main and stop (the rest: --reuse-main)")
    args = loadtest.parse(parser, tools=("wrk", "h2load"))
    store = args.store.resolve()
    record = recorded_main(store) if args.reuse_main else run_main(store)
    if args.main_only:
        return
    from model_speed import latencies, per_sample_ms

    from steps.datasets.data import load_dataset
    from steps.modeling.litert_runtime import LiteRTClassifier

    started = time.perf_counter()
    env = store_env(store) | {"TF_USE_LEGACY_KERAS": "1"}  # mlflow serves the Keras parent with tf_keras
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    data = load_dataset("shapes", image_size=SIDE)
    sample = data.x_test[:1]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        found = variants(folder, sample, args.repeats)
        champion = found["rows"][found["champion"]]["tflite"]
        served = serve_side_by_side(MODEL, found["keras_uri"], sample, folder, env, args, sweep=True)
        ceiling = in_process(champion, sample, args.repeats)
        extra = {
            "decode": decode_p50(served["jpeg"], args.repeats),
            "batch": [per_sample_ms(champion, np.repeat(sample, n, axis=0), 400, args.repeats) for n in (1, 8)],
        }
        forms = register_big(folder)
        big_sample = np.random.default_rng(3).random((1, BIG[1], BIG[1], 3), np.float32)
        extra["big_latency"] = latencies(forms, big_sample, 50, args.repeats)
        big_served = serve_side_by_side(BIG_MODEL, None, big_sample, folder, env, args, sweep=False)
        big_ceiling = in_process(forms["int8"], big_sample, args.repeats)
        drift_lines, extra["drift"] = drift_rates(LiteRTClassifier(champion).predict_proba, data)
    bullets = headline(record, found, served, extra)
    body = [
        f"Headline (MobileNetV2 0.35 at {SIDE} px trained on `shapes` by `main` {record['finished']}; 1.0 at 224 px "
        "random init):",
        "",
        *bullets,
        "",
        "`main`'s steps, as it printed them:",
        "",
        "```",
        *record["progress"],
        "```",
        "",
        "### Every variant of that `main` run",
        "",
        *variants_report(found),
        "",
        "Accuracy and size are the variant runs' own metrics; the latencies are timed here, single-sample calls "
        f"through LiteRTClassifier, median (min–max) of {args.repeats} repeats, each a fresh process, the variants "
        "taking turns. XNNPACK's sparse path is off on "
        "x86 with AVX: pruned and clustered variants are smaller gzipped, not faster.",
        "",
        f"### Serving the champion (MobileNetV2 0.35/{SIDE})",
        "",
        *serving_report(served, ceiling, args.repeats),
        "",
        f"### MobileNetV2 {BIG[0]}/{BIG[1]}",
        "",
        *big_report(forms, extra["big_latency"], big_served, big_ceiling, args.repeats),
        "",
        "### Drift detection on fresh shapes",
        "",
        *drift_lines,
        "",
        f"({(time.perf_counter() - started) / 60:.0f} minutes after `main`.)",
    ]
    command = f"python bench/scale.py --seconds {args.seconds} --repeats {args.repeats}"
    write_section("Real-size models", command, "\n".join(body))
    write_readme_block("scale", "\n".join(bullets))
    print("\n".join(body))


if __name__ == "__main__":
    main()
