"""Where an alias points, asked of the registry without importing mlflow (the server polls this).

A SQLite registry is read directly (read-only, one indexed row); an MLflow
tracking server over its REST API. Any other store (PostgreSQL, MySQL,
Databricks) is asked through mlflow's client, imported on first use: correct
everywhere, at the cost of mlflow's memory in the server process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request

from steps.core.sqlite_files import read_only
from steps.parameters import REFUSALS

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
TIMEOUT_SECONDS = 10


class LookupFailed(Exception):
    """The registry did not answer where the alias points; the server keeps what it serves.

    `unreachable`: no answer at all (down, network, a 5xx), as opposed to an answer that the alias is unset
    or the credentials are refused.
    """

    def __init__(self, message: str, unreachable: bool):
        super().__init__(message)
        self.unreachable = unreachable


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """models:/<name>@<alias> or models:/<name>/<version> -> (name, alias, version)."""
    match = MODEL_URI.match(model_uri)
    if match is None:
        raise ValueError(f"model_uri {model_uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    return match["name"], match["alias"], match["version"]


def alias_lookup(registry_uri: str):
    """A function (name, alias) -> version, for the registry at registry_uri."""
    if registry_uri.startswith("sqlite:///"):
        return _sqlite_lookup(registry_uri)
    if registry_uri.startswith(("http://", "https://")):
        return _rest_lookup(registry_uri)
    return _mlflow_lookup(registry_uri)


def _sqlite_lookup(registry_uri: str):
    path = registry_uri.removeprefix("sqlite:///").split("?", 1)[0]

    def version_of(name: str, alias: str) -> str:
        try:
            with read_only(path, timeout=TIMEOUT_SECONDS) as connection:
                rows = connection.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", (name, alias)
                ).fetchall()
        except sqlite3.Error as error:
            raise LookupFailed(f"cannot read the registry {registry_uri} ({error})", unreachable=True) from error
        if len(rows) != 1:
            raise LookupFailed(f"models:/{name}@{alias} points at no version in {registry_uri}", unreachable=False)
        return str(rows[0][0])

    return version_of


def _rest_lookup(registry_uri: str):
    headers = {}
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    elif user := os.environ.get("MLFLOW_TRACKING_USERNAME"):
        secret = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(secret).decode()}"

    def version_of(name: str, alias: str) -> str:
        query = urllib.parse.urlencode({"name": name, "alias": alias})
        url = f"{registry_uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias?{query}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_SECONDS) as r:
                return str(json.load(r)["model_version"]["version"])
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            message = f"models:/{name}@{alias}: {registry_uri} answered {error.code} ({detail})"
            raise LookupFailed(message, unreachable=error.code >= 500) from error
        except (OSError, ValueError, KeyError) as error:
            message = f"cannot ask {registry_uri} where models:/{name}@{alias} points ({error})"
            raise LookupFailed(message, unreachable=True) from error

    return version_of


def _mlflow_lookup(registry_uri: str):
    answered = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", *REFUSALS)  # the store spoke

    def version_of(name: str, alias: str) -> str:
        import mlflow  # only for stores this module cannot read itself
        from mlflow.exceptions import MlflowException
        from requests.exceptions import RequestException
        from sqlalchemy.exc import SQLAlchemyError

        try:
            client = mlflow.MlflowClient(registry_uri=registry_uri)
            return str(client.get_model_version_by_alias(name, alias).version)
        except (MlflowException, RequestException, SQLAlchemyError, OSError) as error:  # anything else is a bug
            unreachable = getattr(error, "error_code", None) not in answered
            raise LookupFailed(f"models:/{name}@{alias} in {registry_uri}: {error}", unreachable) from error

    return version_of
