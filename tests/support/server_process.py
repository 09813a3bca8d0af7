"""A real server process on 127.0.0.1, as the end-to-end tests start it, and how they wait on it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

from steps.release.infra import free_port


def wait_for(condition, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


class ServerProcess:
    """`python -m steps.serve` for model_uri, polling every 0.3 s, with this test's environment plus `env` (and
    another virtualenv's python, run from cwd, to serve from that environment)."""

    def __init__(
        self,
        model_uri: str,
        log_path,
        *extra: str,
        env: dict | None = None,
        wait_for: str = "/ready",
        port: int | None = None,
        python: str = sys.executable,
        cwd=None,
    ):
        self.port = port or free_port()
        self.log_path = log_path
        args = [
            python,
            "-m",
            "steps.serve",
            "--model_uri",
            model_uri,
            "--port",
            str(self.port),
            "--poll_seconds",
            "0.3",
            "--prediction_log",
            str(log_path),
            *extra,
        ]
        self.process = subprocess.Popen(
            args, env=os.environ | (env or {}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
        )
        if not self.wait_for_status(wait_for, 200):
            self.process.kill()
            raise RuntimeError(f"server did not get ready:\n{self.process.stdout.read()}")

    def wait_for_status(self, path: str, status: int, timeout: float = 60) -> bool:
        def answers() -> bool:
            try:
                return self.request("GET", path)[0] == status
            except OSError:
                return False

        return wait_for(answers, timeout)

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def invoke(self, payload) -> tuple[int, dict, dict]:
        status, headers, body = self.request("POST", "/invocations", json.dumps(payload).encode())
        return status, headers, json.loads(body)

    def version_info(self) -> dict:
        return json.loads(self.request("GET", "/version")[2])

    def metrics(self) -> dict[str, float]:
        """/metrics as {sample line without its value: value}."""
        lines = self.request("GET", "/metrics")[2].decode().splitlines()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}

    def wait_for_version(self, version: str, timeout: float = 30) -> bool:
        """Poll + fetch (a child process that imports mlflow, ~3 s) + warm-up."""
        return wait_for(lambda: self.version_info()["version"] == version, timeout)

    def stop(self, sig=signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)
