"""Resolve a registered model and download its deployable, in a child process of the server.

Importing mlflow costs a process about 110 MB of resident memory and 3 s of
CPU. The server needs it only when the model changes, so it runs this module
as `python -m steps.serve.fetch <model_uri> <folder>` and reads one JSON line:
the version it resolved to, the .tflite path, the class names, the registry
URI the server then polls without mlflow (`steps.serve.alias_lookup`), and this
child's peak resident memory, which the server reports as part of its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from steps.contract import CLASS_NAMES as CLASS_NAMES_KEY


class FetchFailed(Exception):
    """The URI does not resolve, or the version holds nothing the server can run."""

    def __init__(self, message: str, version: str | None = None):
        super().__init__(message)
        self.version = version


def fetch(model_uri: str, folder: str | Path) -> dict:
    import mlflow
    import yaml  # mlflow's own dependency
    from mlflow.exceptions import MlflowException
    from mlflow.models.model import MLMODEL_FILE_NAME

    from steps.serve.alias_lookup import parse_model_uri

    name, alias, version = parse_model_uri(model_uri)
    client = mlflow.MlflowClient()
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        uri = f"models:/{name}/{found.version}"
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(folder)))
    except MlflowException as error:
        raise FetchFailed(f"{model_uri} cannot be fetched ({error.message})") from error
    tflite = sorted(local.rglob("*.tflite"))
    if not tflite:
        raise FetchFailed(f"{uri} holds no .tflite file: register a LiteRT deployable (litert_model)", found.version)
    try:  # read as YAML: mlflow's Model class would import pandas, which a serving host does not install
        metadata = (yaml.safe_load((local / MLMODEL_FILE_NAME).read_text()) or {}).get("metadata") or {}
    except Exception as error:  # a deployable without a readable MLmodel file
        raise FetchFailed(f"{uri} has no readable MLmodel file ({error})", found.version) from error
    return {
        "name": name,
        "version": str(found.version),
        "alias": alias,
        "run_id": found.run_id or "",
        "tflite": str(tflite[0]),
        "class_names": metadata.get(CLASS_NAMES_KEY),
        "registry_uri": mlflow.get_registry_uri(),
    }


def main(argv: list[str]) -> int:
    """Print one JSON line: what fetch() returns, or the error (with the registry URI to poll)."""
    if len(argv) != 2:
        print(json.dumps({"error": "usage: python -m steps.serve.fetch <model_uri> <folder>"}))
        return 2
    try:
        print(json.dumps({**fetch(*argv), "peak_rss_bytes": peak_rss_bytes()}))
        return 0
    except (FetchFailed, ValueError) as error:
        failure = {"error": str(error), "version": getattr(error, "version", None)}
    except Exception as error:  # the registry's own failures: unreachable, locked, permissions
        failure = {"error": f"{argv[0]} cannot be fetched: {type(error).__name__}: {error}", "version": None}
    import mlflow  # already imported by fetch() unless the arguments were bad

    print(json.dumps({**failure, "registry_uri": mlflow.get_registry_uri(), "peak_rss_bytes": peak_rss_bytes()}))
    return 1


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory (VmHWM): the server counts it as its own, briefly. None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
