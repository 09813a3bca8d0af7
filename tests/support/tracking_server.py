"""scripts/tracking-server.sh as the team tests run it: PostgreSQL and `mlflow server` with basic auth, on free
ports, its data in a fresh folder; the MLflow server can be stopped and started again (PostgreSQL stays up).

Whether PostgreSQL is here is asked of the file system, never read from the script's output: a broken script
prints the same words as a missing PostgreSQL, and must fail the tests, not skip them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from tests.support.server_process import free_port, wait_for

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tracking-server.sh"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-for-the-tests"
# Set (to 1) where PostgreSQL cannot be installed: only then, and only if it is absent, the team tests skip
ALLOW_NO_POSTGRES = "RTDEPLOY_ALLOW_NO_POSTGRES"


def postgres_bin() -> Path | None:
    """The folder the script takes initdb and pg_ctl from (PG_BIN, else the newest /usr/lib/postgresql/<n>/bin),
    or None when it holds no initdb: the same lookup as scripts/tracking-server.sh's."""
    if os.environ.get("PG_BIN"):
        folder = Path(os.environ["PG_BIN"])
    else:
        found = Path("/usr/lib/postgresql").glob("*/bin")
        folder = max(found, key=lambda bin: [int(n) for n in re.findall(r"\d+", bin.parent.name)], default=None)
    return folder if folder is not None and os.access(folder / "initdb", os.X_OK) else None


def skip_reason() -> str | None:
    """Why the team tests may skip here, or None: they must run (and a failure to start is a failure)."""
    if postgres_bin() is None and os.environ.get(ALLOW_NO_POSTGRES) == "1":
        where = "$PG_BIN" if os.environ.get("PG_BIN") else "/usr/lib/postgresql/*/bin"
        return f"PostgreSQL's binaries are absent (no initdb in {where}) and {ALLOW_NO_POSTGRES}=1"
    return None


class TrackingServer:
    def __init__(self):
        self.data = Path(tempfile.mkdtemp(prefix="rtdeploy-team-"))
        self.data.chmod(0o711)  # as root, the cluster runs as `postgres`, which must enter the folder
        self.port, self.pg_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = self.data / "tracking-server.out"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> None:
        env = os.environ | {
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        command = [
            str(SCRIPT),
            "--data",
            str(self.data),
            "--port",
            str(self.port),
            "--pg-port",
            str(self.pg_port),
            "--auth",
            "--workers",
            "2",
        ]
        with open(self.output, "ab") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        if not wait_for(lambda: self.healthy() or self.process.poll() is not None, timeout):
            raise RuntimeError(f"mlflow server not healthy after {timeout} s:\n{self.output.read_text()[-3000:]}")
        if not self.healthy():
            hint = "" if postgres_bin() else f"\n(where PostgreSQL cannot be installed, {ALLOW_NO_POSTGRES}=1 skips)"
            text = self.output.read_text()
            raise RuntimeError(f"tracking-server.sh exited with {self.process.returncode}:\n{text[-3000:]}{hint}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """The MLflow server only (all its workers); PostgreSQL keeps running."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)

    def remove(self) -> None:
        self.stop()
        subprocess.run([str(SCRIPT), "--data", str(self.data), "--stop"], capture_output=True, timeout=120)
        shutil.rmtree(self.data, ignore_errors=True)

    def env(self, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> dict[str, str]:
        """What README tells a team member to export."""
        return {
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
        }
