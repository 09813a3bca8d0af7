"""The real-time server, for real: a server process on 127.0.0.1 serving a registered LiteRT model from a
sqlite registry, fetched by its child process. Every scoring format agrees with mlflow.pyfunc, the alias is
followed without failed requests (polled over SQLite and over a real `mlflow server`), a corrupt version is
refused, acknowledged predictions survive kill -9, the serving process never imports tensorflow, mlflow or
pandas, and Triton's official clients speak the Open Inference Protocol to it over REST and gRPC. The layers
one by one, and the HTTP app in-process, are in tests/test_serve_*.py."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import grpc
import mlflow
import numpy as np
import pytest
from PIL import Image

from steps import contract
from steps.core.sqlite_files import read_only
from steps.datasets.data import load_dataset
from steps.modeling.architectures import build_model
from steps.modeling.convert import to_tflite
from steps.monitoring.traffic import log_files
from steps.release.tracking import log_litert_model
from steps.serve.alias_lookup import LookupFailed, alias_lookup
from steps.serve.oip import grpc_predict_v2_pb2 as pb
from steps.serve.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.support.commands import PROJECT, run_command
from tests.support.server_process import ServerProcess, free_port, wait_for
from tests.support.stores import store_in

pytestmark = pytest.mark.e2e  # every test here starts processes

MODEL = "served-digits"
SAMPLE_SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, digits):
    """A sqlite registry with MODEL v1 (champion), v2 (same weights as float16) and v3 (corrupt file)."""
    folder = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(folder, monkeypatch) as uri:
        model = build_model("cnn", SAMPLE_SHAPE, 10, width=8)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
        for mode in ("none", "float16", "none"):
            with mlflow.start_run() as run:
                path = folder / f"{run.info.run_id}.tflite"
                path.write_bytes(to_tflite(model, mode))
                log_litert_model(path, digits)
            mlflow.register_model(f"runs:/{run.info.run_id}/{contract.LITERT_MODEL}", MODEL)
        client = mlflow.MlflowClient()
        corrupt = Path(client.get_model_version_download_uri(MODEL, "3").removeprefix("file://"))
        for tflite in corrupt.rglob("*.tflite"):
            tflite.write_bytes(b"not a flatbuffer" * 100)
        client.set_registered_model_alias(MODEL, contract.CHAMPION, "1")
        yield uri


def serve(registry_uri: str, log_path: Path, *extra: str, alias: str = contract.CHAMPION, wait_for: str = "/ready"):
    return ServerProcess(
        f"models:/{MODEL}@{alias}", log_path, *extra, env={"MLFLOW_TRACKING_URI": registry_uri}, wait_for=wait_for
    )


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    process = serve(registry, tmp_path_factory.mktemp("serve") / "predictions.db")
    yield process
    process.stop()


def test_the_serving_process_never_imports_tensorflow_mlflow_or_pandas(registry):
    """tensorflow is not needed to run a .tflite; mlflow (110 MB) and pandas (50 MB) would double the memory;
    grpc only when grpc_port asks for it."""
    heavy = ("tensorflow", "tf_keras", "keras", "mlflow", "pandas", "grpc")
    script = (
        "import sys; from steps.serve import app, cli, dataplane, runtime, server; import steps.datasets.images; "
        f"m = runtime.fetch('models:/{MODEL}/1').model; m.warm(4); "
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {heavy!r}))"
    )
    result = run_command([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_deployable_runs_as_pyfunc_with_neither_tensorflow_nor_rtdeploy_importable(registry):
    script = (
        "import sys\n"
        "for name in ('steps', 'tensorflow', 'tf_keras', 'keras'): sys.modules[name] = None  # import fails\n"
        "import mlflow, numpy as np\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}/1')\n"
        "print(model.predict(np.zeros((3, 8, 8, 1), np.float32)).shape)"
    )
    result = run_command([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "(3, 10)"


def test_every_scoring_format_gives_the_same_classes_as_pyfunc(server, digits):
    x = digits.x_test[:16]
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(x).argmax(axis=1)
    flat = x.reshape(len(x), -1)
    columns = [f"p{i}" for i in range(flat.shape[1])]
    payloads = {
        "instances": {"instances": x.tolist()},
        "inputs": {"inputs": x.tolist()},
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": flat.tolist()}},
        "dataframe_records": {"dataframe_records": [dict(zip(columns, row)) for row in flat.tolist()]},
        "one column of tensors": {"dataframe_split": {"columns": ["image"], "data": [[s] for s in x.tolist()]}},
        "instances as records": {"instances": [{"image": sample} for sample in x.tolist()]},
    }
    for name, payload in payloads.items():
        status, headers, answer = server.invoke(payload)
        assert status == 200, (name, answer)
        assert np.array_equal(np.argmax(answer["predictions"], axis=1), expected), name
        assert headers["x-model-version"] == "1" and headers["x-request-id"]
    csv = ",".join(columns) + "\n" + "\n".join(",".join(map(str, row)) for row in flat.tolist())
    status, _, body = server.request("POST", "/invocations", csv.encode(), "text/csv")
    assert status == 200 and np.array_equal(np.argmax(json.loads(body)["predictions"], axis=1), expected)


def test_predict_takes_an_image_and_feedback_takes_its_true_label(server, digits):
    image = Image.fromarray((digits.x_test[0, ..., 0] * 255).astype(np.uint8)).resize((32, 32))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    status, headers, body = server.request("POST", "/predict?k=3", buffer.getvalue(), "image/png")
    answer = json.loads(body)
    assert status == 200, answer
    assert answer["label"] in [str(i) for i in range(10)] and len(answer["top_k"]) == 3
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    feedback = json.dumps({"request_id": headers["x-request-id"], "label": str(digits.y_test[0])}).encode()
    assert server.request("POST", "/feedback", feedback)[0] == 200  # twice: a retried feedback is recorded too
    assert server.request("POST", "/feedback", feedback)[0] == 200
    unknown = json.dumps({"request_id": "no-such-request", "label": "3"}).encode()
    assert server.request("POST", "/feedback", unknown)[0] == 404


def test_tritons_clients_over_rest_and_grpc_get_the_pyfunc_classes_and_protocol_errors(registry, digits, tmp_path):
    """tritonclient.http and tritonclient.grpc, unchanged, on the whole test split as binary tensors."""
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(digits.x_test).argmax(axis=1)
    expected = [f"{index}={index}" for index in pyfunc]  # label = class name; argmax of probabilities
    np.save(tmp_path / "pixels.npy", digits.x_test)
    grpc_port = free_port()
    server = serve(registry, tmp_path / "p.db", "--grpc_port", str(grpc_port))
    try:
        result = run_command(
            [
                sys.executable,
                str(PROJECT / "tests" / "support" / "oip_clients.py"),
                f"127.0.0.1:{server.port}",
                f"127.0.0.1:{grpc_port}",
                MODEL,
                str(tmp_path / "pixels.npy"),
            ]
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        assert server.stop() == 0
    inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    for transport, answers in seen.items():
        assert answers["live"] and answers["ready"] and answers["model_ready"] and answers["still_ready"], transport
        assert answers["metadata"]["name"] == MODEL and answers["metadata"]["versions"] == ["1"]
        assert answers["metadata"]["inputs"] == inputs
        assert [o["name"] for o in answers["metadata"]["outputs"]] == ["probabilities", "label"]
        assert answers["classes"] == expected, transport
    mistakes = {
        transport: {case: status.split(":")[0] for case, status in seen[transport]["mistakes"].items()}
        for transport in seen
    }
    assert mistakes["http"] == {
        "datatype": "400",
        "shape": "400",
        "unknown model": "404",
        "unknown version": "404",
        "truncated binary": "400",
        "metadata of an unknown model": "404",
    }
    assert mistakes["grpc"] == {
        "datatype": "StatusCode.INVALID_ARGUMENT",
        "shape": "StatusCode.INVALID_ARGUMENT",
        "unknown model": "StatusCode.NOT_FOUND",
        "unknown version": "StatusCode.NOT_FOUND",
        "truncated binary": "StatusCode.INVALID_ARGUMENT",
        "metadata of an unknown model": "StatusCode.NOT_FOUND",
    }
    assert "FP64" in seen["grpc"]["mistakes"]["datatype"]  # the messages name the problem
    assert "truncated" in seen["http"]["mistakes"]["truncated binary"]


def test_alias_move_is_served_without_a_failed_request_and_a_corrupt_version_is_refused(server, digits):
    client = mlflow.MlflowClient()
    payload = {"instances": digits.x_test[:2].tolist()}
    failures, versions, stop = [], set(), threading.Event()

    def load():
        while not stop.is_set():
            status, headers, answer = server.invoke(payload)
            if status != 200:
                failures.append((status, answer))
            versions.add(headers.get("x-model-version"))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        client.set_registered_model_alias(MODEL, contract.CHAMPION, "2")
        assert server.wait_for_version("2"), "the new champion was not served within 30 s"
        client.set_registered_model_alias(MODEL, contract.CHAMPION, "3")  # corrupt: must not replace v2
        assert wait_for(lambda: "cannot be loaded" in (server.version_info()["last_error"] or "")), (
            "the corrupt version was not tried within 30 s"
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert {"1", "2"} <= versions and "3" not in versions
    assert server.version_info()["version"] == "2"
    metrics = server.request("GET", "/metrics")[2].decode()
    assert "rtdeploy_failed_reloads_total 1.0" in metrics and "rtdeploy_reloads_total 1.0" in metrics
    client.set_registered_model_alias(MODEL, contract.CHAMPION, "1")
    assert server.wait_for_version("1")


def test_the_fetch_child_peak_memory_is_reported_as_part_of_the_server(server):
    """The child imports mlflow (over 100 MB) for a few seconds: a memory budget must count it."""
    peak = server.version_info()["fetch_peak_rss_bytes"]
    assert peak > 50_000_000
    metrics = server.request("GET", "/metrics")[2].decode().splitlines()
    assert [float(line.split()[1]) for line in metrics if line.startswith("rtdeploy_fetch_peak_rss_bytes ")] == [peak]


def test_the_alias_is_polled_without_mlflow_and_agrees_with_the_mlflow_client(registry, tmp_path):
    """SQLite read directly, a tracking server over REST (a real `mlflow server` here), anything else via mlflow."""
    client = mlflow.MlflowClient()
    expected = str(client.get_model_version_by_alias(MODEL, contract.CHAMPION).version)
    with mlflow_server(registry, tmp_path) as rest_uri:
        for uri in (registry, rest_uri):
            version_of = alias_lookup(uri)
            assert version_of(MODEL, contract.CHAMPION) == expected, uri
            with pytest.raises(LookupFailed, match="no-such-alias"):
                version_of(MODEL, "no-such-alias")
    with pytest.raises(LookupFailed, match="cannot ask"):
        alias_lookup(rest_uri)(MODEL, contract.CHAMPION)  # the tracking server is gone: a clear failure


@contextlib.contextmanager
def mlflow_server(registry_uri: str, folder: Path):
    """A real `mlflow server` over the sqlite registry on a free port; its URL."""
    port = free_port()
    tracking_server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            registry_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=folder,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(f"{url}/health"), timeout=120), "mlflow server did not start"
        yield url
    finally:
        tracking_server.terminate()
        tracking_server.wait(timeout=30)


def test_a_serving_only_install_serves_the_champion_without_tensorflow(registry, digits, tmp_path):
    """README's serving host: serving-requirements.txt and the project without its dependencies, in a fresh
    virtualenv; the registry reached through a tracking server, as a serving host would."""
    venv = tmp_path / "serving-venv"
    python = str(venv / "bin" / "python")
    install = [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "-q", "-r", str(PROJECT / "serving-requirements.txt")],
        [python, "-m", "pip", "install", "-q", "--no-deps", str(PROJECT)],
    ]
    for command in install:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    missing = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, cwd=tmp_path)
    assert missing.returncode != 0  # not installed there at all
    serving_size, full_size = folder_bytes(venv), folder_bytes(Path(sys.prefix))
    print(f"serving-only virtualenv {serving_size / 1e6:.0f} MB, full {full_size / 1e6:.0f} MB")
    assert serving_size < full_size / 4

    x = digits.x_test[:32]
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(x).argmax(axis=1)
    with mlflow_server(registry, tmp_path) as url:
        server = ServerProcess(
            f"models:/{MODEL}/1", tmp_path / "p.db", env={"MLFLOW_TRACKING_URI": url}, python=python, cwd=tmp_path
        )
        try:
            status, _, answer = server.invoke({"instances": x.tolist()})
            assert status == 200 and np.array_equal(np.argmax(answer["predictions"], axis=1), expected)
            assert server.version_info()["fetch_peak_rss_bytes"] > 0  # the fetch child ran in that environment too
        finally:
            assert server.stop() == 0


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_a_prediction_log_of_another_layout_stops_the_start_and_is_left_as_it_was(registry, tmp_path, workers):
    """With several workers, one that cannot open its log stops them all: restarting it would fail alike."""
    named = tmp_path / "old.db"
    old_log = named if workers == 1 else Path(contract.worker_log_path(str(named), 2))
    with sqlite3.connect(old_log) as connection:
        connection.execute("CREATE TABLE predictions (request_id TEXT, input_summary TEXT)")
        connection.execute("INSERT INTO predictions VALUES ('r1', '{}')")
    before = old_log.read_bytes()
    result = run_command(
        [
            sys.executable,
            "-m",
            "steps.serve",
            "--model_uri",
            f"models:/{MODEL}/1",
            "--prediction_log",
            str(named),
            "--workers",
            str(workers),
            "--port",
            str(free_port()),
        ],
        timeout=120,
    )
    assert result.returncode != 0
    assert "has an older layout" in result.stderr and "pass another --prediction_log" in result.stderr
    assert "Traceback" not in result.stderr
    assert old_log.read_bytes() == before


def test_a_grpc_port_already_taken_stops_the_start_in_one_line(registry, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_command(
            [
                sys.executable,
                "-m",
                "steps.serve",
                "--model_uri",
                f"models:/{MODEL}/1",
                "--prediction_log",
                str(tmp_path / "p.db"),
                "--port",
                str(free_port()),
                "--grpc_port",
                str(taken.getsockname()[1]),
            ],
            timeout=120,
        )
    assert result.returncode != 0
    assert "grpc_port" in result.stderr and "choose a free port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command, workers", [("module", 1), ("script", 1), ("module", 2)])
def test_a_prediction_log_in_a_missing_folder_stops_the_start_in_one_line_before_the_model_is_fetched(
    tmp_path, monkeypatch, command, workers
):
    """Exit 2 (a user's mistake) with `serve: error: ...` naming the path and the fix. The store named does not
    exist: had the server asked it for the model first, that would have been the error."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'no-store' / 'mlflow.db'}")
    log = tmp_path / "missing-folder" / "predictions.db"
    program = (
        [sys.executable, "-m", "steps.serve"]
        if command == "module"
        else [str(Path(sys.executable).parent / "rtdeploy-serve")]
    )
    result = run_command(
        [
            *program,
            "--model_uri",
            f"models:/{MODEL}@champion",
            "--prediction_log",
            str(log),
            "--port",
            str(free_port()),
            "--workers",
            str(workers),
        ],
        timeout=120,
    )
    assert result.returncode == contract.EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"serve: error: prediction_log {log}: folder {log.parent} does not exist; create it (mkdir -p) or pass a "
        "--prediction_log in an existing folder"
    ]
    assert result.stdout == ""  # not even the line a starting server prints
    assert not (tmp_path / "no-store").exists() and not log.parent.exists()


def test_a_server_started_before_its_alias_exists_answers_503_then_serves_once_it_is_set(registry, tmp_path):
    client = mlflow.MlflowClient()
    server = serve(registry, tmp_path / "p.db", alias="staging", wait_for="/ping")
    try:
        status, headers, body = server.request("GET", "/ready")
        assert status == 503 and headers["retry-after"] == "1"
        assert f"models:/{MODEL}@staging" in json.loads(body)["message"]  # names what it waits for
        client.set_registered_model_alias(MODEL, "staging", "1")
        assert server.wait_for_status("/ready", 200, timeout=30), "not serving 30 s after the alias was set"
        assert server.version_info()["version"] == "1" and server.version_info()["last_error"] is None
    finally:
        client.delete_registered_model_alias(MODEL, "staging")
        server.stop()


def test_acknowledged_predictions_survive_kill_9(registry, digits, tmp_path):
    log_path = tmp_path / "predictions.db"
    first = serve(registry, log_path)
    acknowledged = []
    for row in digits.x_test[:50]:
        status, headers, _ = first.invoke({"instances": [row.tolist()]})
        assert status == 200
        acknowledged.append(headers["x-request-id"])
    first.stop(signal.SIGKILL)
    with sqlite3.connect(log_path) as connection:
        logged = {row[0] for row in connection.execute("SELECT request_id FROM predictions")}
    assert set(acknowledged) <= logged
    second = serve(registry, log_path)  # the log opens again after the crash, and keeps growing
    try:
        assert second.invoke({"instances": [digits.x_test[0].tolist()]})[0] == 200
    finally:
        exit_code = second.stop()
    assert exit_code == 0  # SIGTERM (docker stop, kubectl, kill) is a graceful, normal end
    with sqlite3.connect(log_path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] >= len(acknowledged) + 1


def test_two_workers_share_the_port_each_logs_its_own_and_their_metrics_add_up(registry, digits, tmp_path):
    grpc_port = free_port()
    server = serve(registry, tmp_path / "p.db", "--workers", "2", "--grpc_port", str(grpc_port))
    try:  # a worker listens once its model is loaded: the first to answer /ready may be alone for a while
        assert wait_for(lambda: len(worker_pids(server.metrics())) == 2, timeout=60)
        payload = {"instances": digits.x_test[:1].tolist()}
        statuses = [server.invoke(payload)[0] for _ in range(100)]  # a connection each: the kernel spreads them
        assert statuses == [200] * 100
        logs = log_files(str(tmp_path / "p.db"))  # what monitor and update read when given the name passed
        assert [path.name for path in logs] == ["p.worker1.db", "p.worker2.db"]
        per_worker = [count_rows(path, "predictions") for path in logs]
        assert sum(per_worker) == 100 and min(per_worker) > 0, per_worker
        metrics = server.metrics()  # whichever worker answers, it counts both
        assert metrics['rtdeploy_requests_total{endpoint="invocations",status="200"}'] == 100
        tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 8, 8, 1])
        raw = [digits.x_test[:1].astype("<f4").tobytes()]
        infer = pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=raw)
        for _ in range(40):  # a connection each: the gRPC port is shared the same way
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                assert pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer).model_version == "1"
        grpc_rows = [count_rows(path, "predictions WHERE endpoint = 'v2_grpc_infer'") for path in logs]
        assert sum(grpc_rows) == 40 and min(grpc_rows) > 0, grpc_rows
        pids = worker_pids(metrics)
        assert len(pids) == 2
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)  # a worker that dies is replaced, and its gauges no longer count
        assert wait_for(lambda: len(answering_pids(server) - {victim}) == 2, timeout=60)
        assert victim not in worker_pids(server.metrics())
        assert server.invoke(payload)[0] == 200
    finally:
        assert server.stop() == 0
    assert not list(tmp_path.glob("p.worker*.db-wal"))  # each worker closed its log on the way out


def answering_pids(server: ServerProcess) -> set[int]:
    try:
        return worker_pids(server.metrics())
    except OSError:  # the connections queued at a killed worker are reset
        return set()


def worker_pids(metrics: dict[str, float]) -> set[int]:
    """The processes /metrics reports a served version for."""
    return {int(key.split('pid="')[1].split('"')[0]) for key in metrics if key.startswith("rtdeploy_model_version{")}


def count_rows(path: Path, table: str) -> int:
    with read_only(path) as connection:
        return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_dynamic_batching_merges_concurrent_requests_and_keeps_answers_apart(registry, digits, tmp_path):
    batched = serve(registry, tmp_path / "p.db", "--max_batch_size", "16", "--max_batch_wait_ms", "5")
    try:
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(digits.x_test[:64]).argmax(axis=1)
        results = {}

        def one(i):
            status, _, answer = batched.invoke({"instances": [digits.x_test[i].tolist()]})
            results[i] = (status, int(np.argmax(answer["predictions"][0])))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(results[i] == (200, expected[i]) for i in range(64))
        metrics = batched.request("GET", "/metrics")[2].decode()
        single = float(
            next(
                line.split()[-1]
                for line in metrics.splitlines()
                if line.startswith('rtdeploy_batch_size_bucket{le="1.0"}')
            )
        )
        total = float(
            next(line.split()[-1] for line in metrics.splitlines() if line.startswith("rtdeploy_batch_size_count"))
        )
        assert total < 64 and single < total  # some invocations carried several requests
    finally:
        batched.stop()


def test_a_full_queue_answers_503_with_retry_after_instead_of_growing(registry, digits, tmp_path):
    tight = serve(registry, tmp_path / "p.db", "--max_queue", "1")
    try:
        statuses, retry_after = [], []
        payload = json.dumps({"instances": digits.x_test[:32].tolist()}).encode()

        def hammer():
            for _ in range(25):
                status, headers, _ = tight.request("POST", "/invocations", payload)
                statuses.append(status)
                if status == 503:
                    retry_after.append(headers.get("retry-after"))

        threads = [threading.Thread(target=hammer) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(statuses) <= {200, 503} and statuses.count(200) > 0
        assert statuses.count(503) > 0, "16 concurrent clients never found the one-slot queue full"
        assert set(retry_after) == {"1"}
        assert tight.request("GET", "/ping")[0] == 200
    finally:
        tight.stop()


def test_infra_validation_serves_a_version_in_a_fresh_process_and_names_what_stops_another(registry, digits):
    from steps.modeling.pyfunc import predict_classes
    from steps.release.infra import serving_problem

    x = digits.x_test[:16]
    expected = predict_classes(f"models:/{MODEL}/1", x)
    assert serving_problem(f"models:/{MODEL}/1", x, expected) is None
    assert "differ from the evaluated model's on 16 of 16" in serving_problem(f"models:/{MODEL}/1", x, expected + 1)
    assert "the server cannot load it" in serving_problem(f"models:/{MODEL}/3", x, expected)
