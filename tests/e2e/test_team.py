"""The lifecycle against a team's tracking server: PostgreSQL and `mlflow server` with proxied artifacts and basic
authentication, started by scripts/tracking-server.sh on free ports. Nothing in the project changes but the
environment (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD).

`main` -> `register` -> `serve` -> alias moves -> `rollback` work as with SQLite; a request without credentials is
refused and a read-only user cannot promote; two replicas keep answering while the tracking server is down and
follow the alias once it is back; four processes registering and promoting at once leave the aliases consistent.

Each test registers the versions it moves under a model name of its own, from the deployables of the one main run
(no retraining), so none depends on another's registry writes, on the order they run in, or on which variant a
noisy latency measurement ranks first. They skip only where PostgreSQL is absent and RTDEPLOY_ALLOW_NO_POSTGRES=1
(tracking_server.skip_reason); a tracking server that does not start is an error showing the script's output.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest

from steps import contract
from steps.datasets.data import load_dataset
from steps.release import registry
from steps.release.lineage import variant_rows_of_pipeline
from steps.release.tracking import experiment_id, log_litert_model
from tests.support.commands import entry_point_runs, mlflow_run
from tests.support.server_process import ServerProcess, wait_for
from tests.support.serving import tiny_tflite
from tests.support.tracking_server import TrackingServer, skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
MODEL = "team-digits"
EXPERIMENT = "team"


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The tracking server, and this process and its children pointed at it as the administrator."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    server = TrackingServer()
    previous = mlflow.get_tracking_uri()
    try:  # removed however it ends: a server that failed to start may have left PostgreSQL running
        server.start()
        with pytest.MonkeyPatch.context() as monkeypatch:
            for name, value in server.env().items():
                monkeypatch.setenv(name, value)
            monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
            monkeypatch.chdir(tmp_path_factory.mktemp("team"))
            mlflow.set_tracking_uri(server.url)
            yield server
    finally:
        mlflow.set_tracking_uri(previous)
        server.remove()


@pytest.fixture(scope="module")
def main_run(team):
    """`mlflow run .` with a short training and one compressed variant, through the tracking server: two
    deployables (float32 and int8), as many as a test registers."""
    result = mlflow_run("-P", "epochs=3", "-P", "variants=int8", "-P", f"model_name={MODEL}", experiment=EXPERIMENT)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = entry_point_runs("main")
    return run


def aliases(name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in mlflow.MlflowClient().get_registered_model(name).aliases.items()}


def champion_and_another(name: str, main_run) -> None:
    """`name` version 1 (champion) and 2 (no alias): two different variant runs of the main run, registered as
    `register` registers them (with their lineage tags), whatever `main` itself chose."""
    first, second = variant_rows_of_pipeline(main_run.info.run_id)[:2]
    versions = [registry.register_deployable(name, row.run_id).version for row in (first, second)]
    assert versions == ["1", "2"], f"{name} was not a new model: {versions}"
    registry.move_champion(name, "1")


def test_the_lifecycle_runs_unchanged_with_runs_registry_and_artifacts_on_the_server(team, main_run, tmp_path):
    assert aliases(MODEL)[contract.CHAMPION] == "1"  # main registered and promoted its choice through the server
    assert not Path("mlruns").exists() and not Path("mlflow.db").exists()  # nothing written beside the user
    assert list((team.data / "artifacts").rglob("*.tflite"))  # the deployables went through the proxy
    name = "team-lifecycle"
    champion_and_another(name, main_run)
    server = ServerProcess(f"models:/{name}@{contract.CHAMPION}", tmp_path / "p.db")
    try:
        x = load_dataset("digits").x_test[:64]
        expected = mlflow.pyfunc.load_model(f"models:/{name}@{contract.CHAMPION}").predict(x).argmax(axis=1)
        status, headers, answer = server.invoke({"instances": x.tolist()})
        assert status == 200 and headers["x-model-version"] == "1"
        assert np.array_equal(np.argmax(answer["predictions"], axis=1), expected)

        promote = mlflow_run(
            "-e", "promote", "-P", f"model_name={name}", "-P", "version=2", "-P", "force=true", experiment=EXPERIMENT
        )
        assert promote.returncode == 0, promote.stderr[-3000:]
        assert (aliases(name)[contract.CHAMPION], aliases(name)[contract.PREVIOUS]) == ("2", "1")
        assert server.wait_for_version("2", timeout=60)

        rollback = mlflow_run("-e", "rollback", "-P", f"model_name={name}", experiment=EXPERIMENT)
        assert rollback.returncode == 0, rollback.stderr[-3000:]
        assert (aliases(name)[contract.CHAMPION], aliases(name)[contract.PREVIOUS]) == ("1", "2")
        assert server.wait_for_version("1", timeout=60)
        assert server.version_info()["registry_reachable"] is True
    finally:
        server.stop()


def test_a_request_without_credentials_is_refused_and_a_reader_cannot_promote(team, main_run):
    name = "team-auth"
    champion_and_another(name, main_run)
    url = f"{team.url}/api/2.0/mlflow/registered-models/alias"
    assert http(f"{url}?name={name}&alias={contract.CHAMPION}", credentials=None)[0] == 401
    status, _ = http(f"{team.url}/api/2.0/mlflow/users/create", {"username": "reader", "password": "reader-pass-1234"})
    assert status == 200  # the administrator makes a user; others get READ (the script's default_permission)
    reader = ("reader", "reader-pass-1234")
    assert http(f"{url}?name={name}&alias={contract.CHAMPION}", credentials=reader)[0] == 200
    move = {"name": name, "alias": contract.CHAMPION, "version": "2"}
    assert http(url, move, credentials=reader)[0] == 403

    before = aliases(name)
    env = os.environ | team.env(*reader)
    result = subprocess.run(
        [sys.executable, "-m", "steps.promote", "--model_name", name, "--version", "2", "--force", "true"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == contract.EXIT_USAGE, result.stderr[-3000:]  # a refused credential is the user's to fix
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "the tracking server refused" in result.stderr and "EDIT or MANAGE" in result.stderr
    assert aliases(name) == before


def http(url: str, body: dict | None = None, credentials=(None, None)) -> tuple[int, dict | None]:
    """A request to the tracking server's REST API, as the administrator unless told otherwise (None: anonymous)."""
    from tests.support.tracking_server import ADMIN, ADMIN_PASSWORD

    if credentials == (None, None):
        credentials = (ADMIN, ADMIN_PASSWORD)
    headers = {"Content-Type": "application/json"}
    if credentials is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def test_two_replicas_serve_through_a_tracking_server_outage_and_follow_the_alias_after_it(team, main_run, tmp_path):
    name = "team-outage"
    champion_and_another(name, main_run)
    replicas = start_replicas(f"models:/{name}@{contract.CHAMPION}", tmp_path, 2)
    payload = {"instances": load_dataset("digits").x_test[:2].tolist()}
    failures, answered, stop = [], [0], threading.Event()

    def traffic(replica: ServerProcess) -> None:
        while not stop.is_set():
            try:
                status, _, answer = replica.invoke(payload)
            except OSError as error:
                failures.append(repr(error))
                continue
            if status != 200:
                failures.append((status, answer))
            answered[0] += 1

    senders = [threading.Thread(target=traffic, args=(replica,)) for replica in replicas for _ in range(2)]
    for sender in senders:
        sender.start()
    try:
        assert [replica.version_info()["version"] for replica in replicas] == ["1", "1"]
        team.stop()
        for replica in replicas:
            assert wait_for(lambda: replica.version_info()["registry_reachable"] is False, timeout=30)
            assert replica.metrics()["rtdeploy_registry_reachable"] == 0
            assert "cannot ask" in replica.version_info()["last_error"]
        during = answered[0]
        time.sleep(2)
        assert answered[0] > during  # still answering with the tracking server gone
        team.start()
        for replica in replicas:
            assert wait_for(lambda: replica.version_info()["registry_reachable"] is True, timeout=60)
            assert replica.metrics()["rtdeploy_registry_reachable"] == 1
        registry.move_champion(name, "2")
        for replica in replicas:
            assert replica.wait_for_version("2", timeout=60), replica.version_info()
    finally:
        stop.set()
        for sender in senders:
            sender.join()
        for replica in replicas:
            replica.stop()
        if not team.healthy():  # the tests after this one need it, even when this one failed with it down
            team.stop()
            team.start()
    assert failures == []


def start_replicas(model_uri: str, folder: Path, count: int) -> list[ServerProcess]:
    """`count` servers of model_uri, started side by side: each waits for its model from the tracking server."""
    with ThreadPoolExecutor(count) as pool:
        starting = [pool.submit(ServerProcess, model_uri, folder / f"r{i}.db") for i in range(1, count + 1)]
    errors = [future.exception() for future in starting if future.exception() is not None]
    if errors:  # the ones that did start are stopped, not left behind
        for future in starting:
            if future.exception() is None:
                future.result().stop()
        raise errors[0]
    return [future.result() for future in starting]


RACER = """
import sys
import mlflow
from steps.release import registry
name, source = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()  # the test's go, sent to all four at once
version = mlflow.register_model(source, name).version
print("moved", version, registry.move_champion(name, version))
"""


def test_four_processes_registering_and_promoting_at_once_leave_the_aliases_consistent(team, tmp_path):
    """`previous` is the champion before the last move, in the order the moves were stamped."""
    name = "team-race"
    digits = load_dataset("digits")
    with mlflow.start_run(experiment_id=experiment_id(EXPERIMENT)) as run:  # any deployable: none is served
        path = tmp_path / "tiny.tflite"
        path.write_bytes(tiny_tflite(digits.x_train.shape[1:], digits.n_classes))
        log_litert_model(path, digits)
    source = f"runs:/{run.info.run_id}/{contract.LITERT_MODEL}"
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, name, source], **pipes, text=True) for _ in range(4)]
    for racer in racers:  # each has imported mlflow (or died: its stderr is shown below) and prints nothing more
        racer.stdout.readline()  # until its go, so nothing is left in the pipe's buffer for communicate to miss
    for racer in racers:
        with contextlib.suppress(OSError):
            racer.stdin.write("go\n")
            racer.stdin.flush()
    outputs = [racer.communicate(timeout=300) for racer in racers]
    failed = [err[-4000:] for racer, (_, err) in zip(racers, outputs) if racer.returncode != 0]
    assert not failed, "\n\n".join(failed)
    moved = sorted(line.split()[1] for out, _ in outputs for line in out.splitlines() if line.startswith("moved"))
    assert moved == ["1", "2", "3", "4"]  # four versions, numbered once each
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{name}'")
    stamps = {str(v.version): float(v.tags[contract.VERSION_TAG_PROMOTED_AT]) for v in versions}
    order = sorted(stamps, key=stamps.get)
    assert len(set(stamps.values())) == 4
    found = {alias: str(v) for alias, v in mlflow.MlflowClient().get_registered_model(name).aliases.items()}
    assert (found[contract.CHAMPION], found[contract.PREVIOUS]) == (order[-1], order[-2])
