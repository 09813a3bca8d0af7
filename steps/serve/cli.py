"""`serve` entry point and the `rtdeploy-serve` console script: one blocking server."""

from __future__ import annotations

import logging
import signal
import socket
import sys

from steps.contract import SERVE, worker_log_path
from steps.parameters import UsageError, parse_config, run_cli
from steps.serve.alias_lookup import parse_model_uri
from steps.serve.predlog import check_layout, check_writable
from steps.serve.workers import run_workers
from steps.settings import ServeConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ServeConfig, argv)
    check_start(config)
    import uvicorn

    from steps.serve.app import ServingApp
    from steps.serve.server import Server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.workers > 1:
        logs = worker_log_path(config.prediction_log, "*")
        print(
            f"serve: {config.model_uri} on http://{config.host}:{config.port}, {config.workers} processes "
            f"(prediction logs {logs})"
        )
        sys.exit(run_workers(config))
    print(f"serve: {config.model_uri} on http://{config.host}:{config.port} (prediction log {config.prediction_log})")
    # SIGTERM is how orchestrators (and `kill`) stop a server: uvicorn shuts down gracefully, then re-raises
    # the signal through the handler found at start. Make that a normal end, so `mlflow run` marks it FINISHED.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(ServingApp(Server(config)), host=config.host, port=config.port, log_level="warning", access_log=False)


def check_start(config: ServeConfig) -> None:
    """The user's mistakes found before any model is fetched, each in one line (exit 2), not as a traceback
    from the app's start: a model URI the server cannot follow, a log it cannot write, a gRPC port taken."""
    try:
        parse_model_uri(config.model_uri)
    except ValueError as error:
        raise UsageError(f"{error}; pass a registered model's URI, e.g. models:/digits-classifier@champion") from None
    check_writable(config.prediction_log)  # the workers' logs go beside it, in the same folder
    for index in range(1, config.workers + 1) if config.workers > 1 else [None]:  # each log a worker opens
        check_layout(config.prediction_log if index is None else worker_log_path(config.prediction_log, index))
    if config.grpc_port:
        require_free_port(config.host, config.grpc_port, "grpc_port")


def require_free_port(host: str, port: int, name: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UsageError(f"{name} {port} cannot be bound on {host} ({error.strerror}); choose a free port")


def console_script() -> None:
    run_cli(SERVE, main)


if __name__ == "__main__":
    console_script()
