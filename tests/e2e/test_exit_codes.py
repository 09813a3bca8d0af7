"""Every entry point's exit code and last line, as README's "Exit codes" promises them, on a table of bad inputs.

0 done, 1 failure, 2 a user's mistake, 3 refused by the gate. A mistake ends in one stderr line
`<step>: error: <problem>; <fix>`, never a traceback, and before TensorFlow is imported when no model is needed.
Each row runs the real command (`python -m steps.<module>`) against a private SQLite store, or against a
SQLite-backed `mlflow server --app-name basic-auth` for the refused credentials. The rows run two at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pytest

from steps import contract
from tests.support.commands import PROJECT
from tests.support.server_process import free_port, wait_for
from tests.support.stores import store_in

pytestmark = pytest.mark.e2e

MISSING_RUN = "0123456789abcdef0123456789abcdef"  # a well-formed run id that no store has
ADMIN_PASSWORD = "admin-password-for-the-exit-tests"
TINY = ("--epochs", "2", "--width", "4")
CASE_TIMEOUT = 120  # a mistake is found in seconds; a step that goes on instead (or loops) fails its row


@dataclass(frozen=True)
class Case:
    module: str  # python -m steps.<module>
    args: tuple[str, ...]
    code: int
    says: str  # the last stderr line starts with `<step>: error:` (or refused/failed) and contains this
    step: str = ""  # the line's prefix, when it is not the module's name
    refused_credentials: bool = False  # against the basic-auth server, with a wrong password
    no_tensorflow: bool = True  # the mistake is found before TensorFlow is imported


@dataclass
class Outcome:
    code: int
    stderr: str
    tensorflow_imported: bool
    lines: list[str] = field(default_factory=list)


def cases(files: dict[str, str]) -> list[Case]:
    f = files
    usage, failure = contract.EXIT_USAGE, contract.EXIT_FAILURE
    litert = f"runs:/{MISSING_RUN}/{contract.LITERT_MODEL}"
    keras = f"runs:/{MISSING_RUN}/{contract.KERAS_MODEL}"
    return [
        Case("train", ("--dataset", f["missing"]), usage, "not found"),
        Case("train", ("--dataset", f["corrupt_npz"]), usage, "cannot read"),
        Case("train", ("--dataset", f["empty_folder"]), usage, "has 0 class sub-folder"),
        Case("train", ("--base_model", f["missing_model"]), usage, "does not exist"),
        Case("train", ("--optimizer", "adamw"), usage, "optimizer='adamw' is not valid"),
        Case(
            "train", ("--architecture", "mobilenetv2"), usage, "needs images of at least 32x32 px, the data's are 8x8"
        ),
        Case("train", ("--dataset", f["chance_npz"], *TINY), failure, "no better than chance", no_tensorflow=False),
        Case("pipeline", ("--dataset", f["missing"]), usage, "not found", step="main"),
        Case("pipeline", ("--variants", "int3"), usage, "int3", step="main"),
        Case("pipeline", ("--min_accuracy", "90"), usage, "min_accuracy must be in [0, 1], got 90", step="main"),
        Case("pipeline", ("--architecture", "mobilenetv3small"), usage, "the data's are 8x8", step="main"),
        Case("pipeline", ("--base_model", f["missing_model"]), usage, "does not exist", step="main"),
        Case("prune", ("--model_uri", keras), usage, "check the run id"),
        Case("prune", ("--model_uri", f["missing_model"]), usage, "does not exist"),
        Case("cluster", ("--model_uri", f["corrupt_model"]), usage, "cannot load a Keras model", no_tensorflow=False),
        Case("quantize", ("--model_uri", keras, "--mode", "int4"), usage, "mode='int4' is not valid"),
        Case("evaluate", ("--model_uri", litert), usage, "check the run id"),
        Case("evaluate", ("--model_uri", f["missing_model"]), usage, "does not exist"),
        Case("evaluate", ("--model_uri", "models:/no-such-model@champion"), usage, "no-such-model"),
        Case("register", ("--run_id", MISSING_RUN), usage, "check the run id"),
        Case("register", ("--run_id", f["plain_run"]), usage, "not a main (pipeline) run"),
        Case("register", ("--run_id", "x", "--objective", "speed"), usage, "objective='speed' is not valid"),
        Case("promote", ("--model_name", f["model"], "--version", "999"), usage, "has no version 999"),
        Case("promote", ("--model_name", "no-such-model", "--version", "1"), usage, "has no version 1"),
        Case("rollback", ("--model_name", f["model"]), usage, "no 'previous' version"),
        Case("serve", ("--prediction_log", f["log_in_missing_folder"]), usage, "missing-folder"),
        Case("serve", ("--model_uri", "runs:/abc/model"), usage, "is not models:/<name>@<alias>"),
        Case("monitor", ("--prediction_log", f["missing_log"]), usage, "matches no file"),
        Case("monitor", ("--prediction_log", f["corrupt_log"]), usage, "not a readable SQLite prediction log"),
        Case("monitor", ("--prediction_log", f["corrupt_log"], "--since", "yesterday"), usage, "is not a time"),
        Case(
            "simulate", ("--url", f"http://127.0.0.1:{f['closed_port']}", "--requests", "3"), usage, "no server answers"
        ),
        Case("simulate", ("--dataset", f["missing"]), usage, "not found"),
        Case("update", ("--new_data", f["missing"], "--model_name", f["model"]), usage, "has no champion"),
        Case("update", ("--new_data", "feedback", "--model_name", "no-such-model"), usage, "has no champion"),
        Case(
            "autopilot", ("--prediction_log", f["missing_log"], "--model_name", f["model"]), failure, f["missing_log"]
        ),
        Case(
            "autopilot", ("--prediction_log", f["corrupt_log"], "--model_name", f["model"]), failure, f["corrupt_log"]
        ),
        Case("search", ("--model_uri", keras, "--storage", "notaurl"), usage, "storage"),
        Case("search", ("--model_uri", keras), usage, "check the run id"),
        Case(
            "promote",
            ("--model_name", "m", "--version", "1"),
            usage,
            "the tracking server refused",
            refused_credentials=True,
        ),
        Case("rollback", ("--model_name", "m"), usage, "the tracking server refused", refused_credentials=True),
        Case("register", ("--run_id", MISSING_RUN), usage, "the tracking server refused", refused_credentials=True),
        Case("train", ("--epochs", "1"), usage, "the tracking server refused", refused_credentials=True),
    ]


# Run before the step: records whether tensorflow was imported by the time the process exits.
PROBE = textwrap.dedent(
    """
    import atexit, os, runpy, sys
    marker = os.environ["RTDEPLOY_TF_MARKER"]
    atexit.register(lambda: open(marker, "w").write(str("tensorflow" in sys.modules)))
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(f"steps.{module}", run_name="__main__", alter_sys=True)
    """
)


def run_case(case: Case, folder: Path, auth_env: dict[str, str]) -> Outcome:
    marker = folder / f"tf-{abs(hash(case))}.txt"
    env = os.environ | {"RTDEPLOY_TF_MARKER": str(marker), "PYTHONPATH": str(PROJECT)}
    if case.refused_credentials:
        env |= auth_env | {"MLFLOW_TRACKING_PASSWORD": "not-the-password"}
    try:
        result = subprocess.run(
            [sys.executable, "-c", PROBE, case.module, *case.args],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            timeout=CASE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as timeout:
        return Outcome(-1, f"no answer within {CASE_TIMEOUT} s: {timeout.stderr!r}"[-3000:], False)
    imported = marker.exists() and marker.read_text() == "True"
    return Outcome(result.returncode, result.stderr, imported, [line for line in result.stderr.splitlines() if line])


@pytest.fixture(scope="module")
def basic_auth_server(tmp_path_factory) -> dict[str, str]:
    """A SQLite-backed `mlflow server --app-name basic-auth`; the environment of its administrator."""
    folder = tmp_path_factory.mktemp("auth")
    config = folder / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    env = os.environ | {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "exit-code-tests",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    output = open(folder / "server.out", "wb")
    server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        assert wait_for(lambda: healthy() or server.poll() is not None, 120), "basic-auth server did not start"
        assert healthy(), (folder / "server.out").read_text()[-3000:]
        yield {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin"}
    finally:
        server.terminate()
        server.wait(timeout=60)
        output.close()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, basic_auth_server) -> list[tuple[Case, Outcome]]:
    """Every row run once, two at a time, in a store holding a plain run and a model with no versions."""
    folder = tmp_path_factory.mktemp("exit-codes")
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(folder, monkeypatch):
        files = bad_inputs(folder)
        table = cases(files)
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda case: run_case(case, folder, basic_auth_server), table))
        for name in ("corrupt_npz", "corrupt_log", "corrupt_model"):  # nothing already written is lost
            assert Path(files[name]).read_bytes() == CORRUPT
    return list(zip(table, results))


CORRUPT = b"\x00not what it claims to be" * 64


def bad_inputs(folder: Path) -> dict[str, str]:
    """Paths and store entries the rows name (in the current store)."""
    for name in ("corrupt.npz", "corrupt.db", "corrupt.keras"):
        (folder / name).write_bytes(CORRUPT)
    (folder / "empty-folder").mkdir()
    write_unlearnable(folder / "unlearnable.npz")
    client = mlflow.MlflowClient()
    plain_run = client.create_run(client.create_experiment("plain")).info.run_id
    client.set_terminated(plain_run)
    client.create_registered_model("exit-model")  # no versions, no aliases
    return {
        "missing": str(folder / "missing.npz"),
        "corrupt_npz": str(folder / "corrupt.npz"),
        "empty_folder": str(folder / "empty-folder"),
        "chance_npz": str(folder / "unlearnable.npz"),
        "missing_model": str(folder / "missing.keras"),
        "corrupt_model": str(folder / "corrupt.keras"),
        "plain_run": plain_run,
        "model": "exit-model",
        "log_in_missing_folder": str(folder / "missing-folder" / "predictions.db"),
        "missing_log": str(folder / "missing.db"),
        "corrupt_log": str(folder / "corrupt.db"),
        "closed_port": str(free_port()),
    }


def write_unlearnable(path: Path) -> None:
    """Ten balanced classes of one identical image: no model can beat chance (0.10), and the 320 validation
    samples are enough to show it (at most 0.15 even at the top of the interval)."""
    labels = np.arange(2000) % 10
    np.savez(
        path,
        x_train=np.zeros((1600, 4, 4), np.uint8),
        y_train=labels[:1600],
        x_test=np.zeros((400, 4, 4), np.uint8),
        y_test=labels[1600:],
    )


class Placeholders(dict):
    """The rows before their files exist: each name stands for itself (for the test ids)."""

    def __missing__(self, key: str) -> str:
        return key


ROWS = cases(Placeholders())


@pytest.mark.parametrize("row", range(len(ROWS)), ids=[f"{case.module}-{case.says[:30]}" for case in ROWS])
def test_a_bad_input_ends_in_its_exit_code_and_one_line_without_a_traceback(outcomes, row):
    case, outcome = outcomes[row]
    step = case.step or case.module
    kind = {contract.EXIT_USAGE: "error", contract.EXIT_FAILURE: "failed", contract.EXIT_REFUSED: "refused"}
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.code == case.code, outcome.stderr[-3000:]
    assert outcome.lines, "nothing on stderr"
    last = outcome.lines[-1]
    assert last.startswith(f"{step}: {kind[case.code]}"), last
    assert case.says in last, last
    if case.no_tensorflow:
        assert not outcome.tensorflow_imported, f"{step} imported TensorFlow before refusing: {last}"


def test_the_table_covers_the_entry_points():
    assert len(ROWS) >= 25 and len({case.module for case in ROWS}) >= 10
