"""Can a registered version serve? Checked the way it will be used: the real server, in a fresh process.

TFX's InfraValidator idea: before a version is promoted, `python -m
steps.serve` is started on it (a fixed version, no alias following, a private
prediction log, a free port on 127.0.0.1), asked for predictions of a few
samples over HTTP, and stopped. A version whose file is corrupt, whose
flavour the server cannot load, or whose answers differ from the ones the
gate judged never becomes champion.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

READY_TIMEOUT_SECONDS = 180  # the server's fetch child imports mlflow and downloads the version first
PROBE_SAMPLES = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving_problem(model_uri: str, x: np.ndarray, expected: np.ndarray) -> str | None:
    """None if a fresh server loads `model_uri` and answers `expected` classes for x[:PROBE_SAMPLES]; else why not."""
    x, expected = x[:PROBE_SAMPLES], np.asarray(expected)[:PROBE_SAMPLES]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="rtdeploy-infra-") as folder:
        output = Path(folder) / "server.log"
        command = [
            sys.executable,
            "-m",
            "steps.serve",
            "--model_uri",
            model_uri,
            "--port",
            str(port),
            "--poll_seconds",
            "0",
            "--prediction_log",
            str(Path(folder) / "predictions.db"),
        ]
        with output.open("w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            problem = _wait_ready(url, process)
            if problem is None:
                problem = _probe(url, x, expected)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if problem is not None:
            tail = output.read_text(errors="replace").strip().splitlines()[-3:]
            return f"{problem} (server output ends: {' | '.join(tail) or 'nothing'})"
    return None


def _wait_ready(url: str, process: subprocess.Popen) -> str | None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"the server exited with status {process.returncode} before it was ready"
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
                if response.status == 200:
                    return None
        except urllib.error.HTTPError as error:  # 503 until loaded; its message says "loading" or the failure
            message = json.loads(error.read() or b"{}").get("message", "")
            if message and "(loading)" not in message:
                return f"the server cannot load it: {message}"
        except OSError:  # not listening yet
            pass
        time.sleep(0.3)
    return f"the server was not ready after {READY_TIMEOUT_SECONDS} s"


def _probe(url: str, x: np.ndarray, expected: np.ndarray) -> str | None:
    body = json.dumps({"instances": x.tolist()}).encode()
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answered = np.argmax(json.load(response)["predictions"], axis=1)
    except (OSError, ValueError, KeyError) as error:  # HTTPError is an OSError
        return f"the server did not answer {len(x)} samples ({error})"
    differing = int((answered != expected).sum())
    if differing:
        return f"the server's answers differ from the evaluated model's on {differing} of {len(x)} samples"
    return None
