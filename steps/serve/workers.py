"""Several server processes on one port: each a whole server, as if on a machine of its own.

Every worker binds the port with SO_REUSEPORT, so the kernel spreads new
connections across them (no process hands sockets out), follows the alias on
its own, and writes its own prediction log (`contract.worker_log_path`;
`monitor` and `update` read the siblings with the file named). Prometheus
metrics go through the client library's multiprocess mode, so any worker's
/metrics adds up all of them.

The supervisor (this process) only starts the workers, restarts one that dies
once it was up, and stops them all on SIGTERM/SIGINT. A worker that dies
before it got its socket and its log (port taken, log unwritable) stops the
whole server with its exit code: restarting it would fail the same way.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

from steps.contract import worker_log_path
from steps.parameters import UsageError
from steps.serve.metrics import METRICS_DIR_ENV
from steps.settings import ServeConfig

STOP_SECONDS = 30.0


def serve_worker(config: ServeConfig, index: int, up) -> None:
    """Worker `index`: one whole server on config's port, beside the other workers, until SIGTERM."""
    import uvicorn

    from steps.serve.app import ServingApp
    from steps.serve.server import Server

    config = worker_config(config, index)
    # uvicorn shuts down gracefully, then re-raises the signal through the handler found at start: make that
    # a normal end. Ctrl-C reaches the workers too (one process group), so SIGINT ends them the same way.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    try:
        app = ServingApp(Server(config, shared_ports=True))  # opens the log
        sock = shared_port_socket(config.host, config.port)
    except (ValueError, OSError) as error:  # a log of another layout, a port taken by another user's process
        print(f"serve: worker {index}: error: {error}", file=sys.stderr)
        sys.exit(2)
    up.set()  # what could fail the same way at every restart has not
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


def worker_config(config: ServeConfig, index: int) -> ServeConfig:
    """Worker `index`'s settings: the server's (log_sync, log_inputs, ports, ...), alone, with a log of its own."""
    return dataclasses.replace(config, workers=1, prediction_log=worker_log_path(config.prediction_log, index))


def shared_port_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port that other processes of this user may bind too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def run_workers(config: ServeConfig) -> int:
    """Start config.workers servers on one port and keep them up; the exit code for the whole server."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise UsageError("workers > 1 needs SO_REUSEPORT (Linux, macOS, BSD); serve with workers=1 here")
    metrics_dir = tempfile.mkdtemp(prefix="rtdeploy-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir  # inherited by the workers, before they import prometheus_client
    context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing of this one's state is shared

    def start(index: int):
        up = context.Event()
        process = context.Process(target=serve_worker, args=(config, index, up), name=f"rtdeploy-worker-{index}")
        process.start()
        return process, up

    stopping = False

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = {index: start(index) for index in range(1, config.workers + 1)}
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for index, (process, up) in list(workers.items()):
                if process.is_alive():
                    continue
                _forget(process.pid, metrics_dir)
                if not up.is_set():
                    print(f"serve: worker {index} could not start (exit code {process.exitcode}); stopping all")
                    code = process.exitcode or 1
                    stopping = True
                    break
                print(f"serve: worker {index} (pid {process.pid}) exited with code {process.exitcode}; restarting it")
                workers[index] = start(index)
    finally:
        for process, _ in workers.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: each finishes its requests and writes its last heartbeat
        deadline = time.monotonic() + STOP_SECONDS
        for process, _ in workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def _forget(pid: int | None, metrics_dir: str) -> None:
    """A dead worker's live gauges (requests in flight, its version) no longer count."""
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid, metrics_dir)
