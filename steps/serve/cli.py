"""`serve` entry point and the `rtdeploy-serve` console script: one blocking server."""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import dataclass

from steps.config import parse_config, require_positive, run_cli, setting


@dataclass(frozen=True)
class ServeConfig:
    """Serve a registered LiteRT deployable over HTTP, following its alias."""

    model_uri: str = setting(
        "models:/digits-classifier@champion", "models:/<name>@<alias> (followed) or models:/<name>/<version>"
    )
    host: str = setting("127.0.0.1", "address to bind; 0.0.0.0 exposes the server to the network")
    port: int = setting(8080, "TCP port")
    poll_seconds: float = setting(5.0, "how often to check where the alias points (0: never)")
    max_batch_size: int = setting(1, "samples merged into one model invocation; 1 turns dynamic batching off")
    max_batch_wait_ms: float = setting(
        2.0, "how long a request may wait for others to batch with; 0 batches only requests that arrived together"
    )
    max_queue: int = setting(256, "prediction requests in progress at most; more are answered 503 (Retry-After)")
    max_body_bytes: int = setting(4 * 1024 * 1024, "largest request body accepted (413 above)")
    prediction_log: str = setting("predictions.db", "SQLite file of the durable prediction and feedback log")

    def __post_init__(self):
        for name in ("port", "max_batch_size", "max_queue", "max_body_bytes"):
            require_positive(name, getattr(self, name))
        if self.poll_seconds < 0 or self.max_batch_wait_ms < 0:
            raise ValueError("poll_seconds and max_batch_wait_ms must be >= 0")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from steps.serve.app import ServingApp
    from steps.serve.server import Server

    config = parse_config(ServeConfig, argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"serve: {config.model_uri} on http://{config.host}:{config.port} (prediction log {config.prediction_log})")
    # SIGTERM is how orchestrators (and `kill`) stop a server: uvicorn shuts down gracefully, then re-raises
    # the signal through the handler found at start. Make that a normal end, so `mlflow run` marks it FINISHED.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(ServingApp(Server(config)), host=config.host, port=config.port, log_level="warning", access_log=False)


def console_script() -> None:
    run_cli("rtdeploy-serve", main)


if __name__ == "__main__":
    console_script()
