"""What the in-process server tests share: tiny .tflite models, a stand-in registry, a server in a thread.

The stand-in registry answers the two questions the server asks of a real one
(where does the alias point; give me that version's files) from a dict, so the
real `runtime.load`, data plane and HTTP app run without mlflow or a child
process.
"""

from __future__ import annotations

import functools
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from steps.serve.alias_lookup import LookupFailed, alias_lookup

MODEL = "tiny"
REGISTRY_URI = "stand-in://registry"
GRAY_SHAPE, GRAY_CLASSES = (8, 8, 1), [str(i) for i in range(10)]
COLOUR_SHAPE, COLOUR_CLASSES = (8, 8, 3), ["red", "green", "blue"]


@functools.cache
def tiny_tflite(shape: tuple[int, int, int], n_classes: int) -> bytes:
    """A small untrained cnn as a float32 .tflite, built once per test process (tensorflow is slow to start)."""
    import tf_keras as keras

    import steps  # noqa: F401  (TF_USE_LEGACY_KERAS before tensorflow)
    from steps.modeling.architectures import build_model
    from steps.modeling.convert import to_tflite

    keras.utils.set_random_seed(0)
    return to_tflite(build_model("cnn", shape, n_classes, width=4))


@dataclass
class StandInRegistry:
    """Aliases -> versions -> .tflite files, with the server's `download` and `lookup` over them."""

    folder: Path
    aliases: dict[str, str] = field(default_factory=dict)
    versions: dict[str, tuple[Path, list[str]]] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)  # the versions fetched, in order
    peak_rss_bytes: int = 50_000_000  # what the fetch "child" reports
    reachable: bool = True  # False: every lookup fails as if the tracking server were down

    def add(self, version: str, tflite: bytes, class_names: list[str]) -> None:
        path = self.folder / f"v{version}.tflite"
        path.write_bytes(tflite)
        self.versions[version] = (path, class_names)

    def download(self, model_uri: str, folder: str) -> dict:
        name, _, alias = model_uri.removeprefix("models:/").partition("@")
        version = self.aliases[alias]
        self.downloads.append(version)
        path, class_names = self.versions[version]
        return {
            "name": name,
            "version": version,
            "alias": alias,
            "run_id": f"run-{version}",
            "tflite": str(path),
            "class_names": class_names,
            "registry_uri": REGISTRY_URI,
            "peak_rss_bytes": self.peak_rss_bytes,
        }

    def lookup(self, registry_uri: str):
        assert registry_uri == REGISTRY_URI

        def version_of(name: str, alias: str) -> str:
            if not self.reachable:
                raise LookupFailed(f"cannot ask {registry_uri} where models:/{name}@{alias} points", unreachable=True)
            if alias not in self.aliases:
                raise LookupFailed(f"models:/{name}@{alias} points at no version", unreachable=False)
            return self.aliases[alias]

        return version_of


class MlflowInProcess:
    """The real registry (the current MLFLOW_TRACKING_URI), fetched in the test process instead of a child."""

    @staticmethod
    def download(model_uri: str, folder: str) -> dict:
        from steps.serve.fetch import fetch

        return fetch(model_uri, folder)

    lookup = staticmethod(alias_lookup)


class InProcessServer:
    """The real app under uvicorn on 127.0.0.1, in a thread of the test process; `request` speaks HTTP to it.

    Not polling by default: a test runs `server.follower.check_once()` where the polling thread would.
    """

    def __init__(self, registry, log_path: Path, heartbeat_seconds: float | None = None, **settings):
        """registry: anything with the server's `download` and `lookup` (a StandInRegistry, MlflowInProcess);
        heartbeat_seconds: the server's default unless given; settings: ServeConfig's."""
        import uvicorn  # here, not above: the layer tests that need no HTTP server import this module too

        from steps.serve.app import ServingApp
        from steps.serve.server import HEARTBEAT_SECONDS, Server
        from steps.settings import ServeConfig

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        settings = {"model_uri": f"models:/{MODEL}@champion", "poll_seconds": 0, "port": self.port} | settings
        config = ServeConfig(prediction_log=str(log_path), **settings)
        self.server = Server(
            config,
            download=registry.download,
            lookup=registry.lookup,
            heartbeat_seconds=heartbeat_seconds or HEARTBEAT_SECONDS,
        )
        self.plane = self.server.plane
        self.uvicorn = uvicorn.Server(
            uvicorn.Config(ServingApp(self.server), log_level="warning", access_log=False, lifespan="on")
        )
        self.thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.01)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers with lower-case names, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def metric(self, line_start: str) -> float:
        """The value of the first /metrics line that starts with line_start (0 if none)."""
        text = self.request("GET", "/metrics")[2].decode()
        return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start)), 0.0)

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()
