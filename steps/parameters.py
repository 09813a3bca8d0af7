"""Step settings as dataclasses, and the CLI that fills them.

Each step defines one frozen dataclass whose field defaults are the only
defaults (MLproject repeats them; a test keeps the two equal) and whose field
`help` metadata is the one-line description shown by `--help` and README.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, Callable, Sequence, TypeVar

from steps import contract

C = TypeVar("C")


class UsageError(ValueError):
    """A user's mistake (a value, an id, a path, a file): the step exits 2 with one line naming it and the fix."""


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def setting(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line description."""
    return dataclasses.field(default=default, metadata={"help": help})


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def require_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    """Fail with a message that names the parameter and lists the valid values."""
    if value not in allowed:
        raise UsageError(f"{name}={value!r} is not valid; use one of: {', '.join(allowed)}")


def require_positive(name: str, value: float) -> None:
    if not value > 0:
        raise UsageError(f"{name} must be > 0, got {value}")


def parse_config(cls: type[C], argv: Sequence[str] | None = None) -> C:
    """Build `cls` from `--name value` arguments; unknown names are an error."""
    (config,) = parse_configs((cls,), argv, description=cls.__doc__ or "")
    return config


def parse_configs(classes: Sequence[type], argv: Sequence[str] | None = None, description: str = "") -> list:
    """One command line for several configs: each gets the fields it declares (shared names go to all)."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    seen = set()
    for cls in classes:
        for field in dataclasses.fields(cls):
            if field.name in seen:
                continue
            seen.add(field.name)
            type_name = field.type if isinstance(field.type, str) else field.type.__name__
            dashed = f"--{field.name.replace('_', '-')}"  # what a shell user types out of habit; same option
            parser.add_argument(
                f"--{field.name}",
                *([dashed] if "_" in field.name else []),
                type={"bool": parse_bool, "int": int, "float": float}.get(type_name, str),
                default=field.default,
                # argparse %-formats help strings: a literal "70%" would crash --help
                help=f"{field.metadata.get('help', '')} (default: {field.default!r})".replace("%", "%%"),
            )
    args = vars(parser.parse_args(argv))
    try:
        return [cls(**{f.name: args[f.name] for f in dataclasses.fields(cls)}) for cls in classes]
    except ValueError as error:  # a dataclass check failed: report it like a usage error
        parser.error(str(error))


def as_parameters(config: Any) -> dict[str, str]:
    """The config as MLflow parameters: every field, as the string MLflow stores."""
    return {key: str(value) for key, value in dataclasses.asdict(config).items()}


class StepFailed(RuntimeError):
    """The step could not do its work, through no mistake in what it was given (a child step failed, the tracking
    server is unreachable): exit 1 with one line. `exit_code` is a child step's own, when one failed."""

    def __init__(self, message: str, exit_code: int = contract.EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


class GateRefused(Exception):
    """The gate refused the candidate: nothing went wrong and nothing was promoted (exit 3)."""


def run_cli(step: str, main: Callable[[list[str]], None]) -> None:
    """Run a stage's `main` under the exit-code contract (contract.EXIT_*): a user's mistake, a failure the user
    can act on and a gate refusal each end in one stderr line `<step>: ...` and their own code; a bug keeps
    its traceback (exit 1), so it is never mistaken for a mistake in the input."""
    sys.argv[0] = step  # argparse names the step in its usage errors, as run_cli does in every other line
    try:
        main(sys.argv[1:])
    except GateRefused as refusal:
        _exit(contract.EXIT_REFUSED, f"{step}: refused by the gate: {refusal}")
    except StepFailed as failure:  # a child step's mistake in what it was given is this step's user's mistake
        if failure.exit_code == contract.EXIT_USAGE:
            _exit(contract.EXIT_USAGE, f"{step}: error: {failure}")
        _exit(contract.EXIT_FAILURE, f"{step}: failed: {failure}")
    except (UsageError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as mistake:
        _exit(contract.EXIT_USAGE, f"{step}: error: {mistake}")
    except Exception as error:  # MlflowException: the tracking store's answer, told apart by its code
        code = getattr(error, "error_code", None)
        if code is None or not hasattr(error, "get_http_status_code"):
            raise
        exit_code, line = store_answer(code, str(getattr(error, "message", error)))
        _exit(exit_code, f"{step}: {line}")


def store_answer(code: str, message: str) -> tuple[int, str]:
    """What an MLflow error means for the user: (exit code, the line without the step's name)."""
    message = " ".join(message.split())[:500]  # one line, even when the server answered a page
    if code in REFUSALS:
        return contract.EXIT_USAGE, f"error: the tracking server refused ({message}); {REFUSALS[code]}"
    if code in NOT_FOUND:
        return contract.EXIT_USAGE, f"error: {message}; {NOT_FOUND[code]}"
    return contract.EXIT_FAILURE, f"failed: the tracking store answered {code} ({message}); {UNANSWERED}"


def is_missing(error: Exception) -> bool:
    """An MLflow error that says the thing named does not exist (or is malformed), as opposed to the store
    refusing the credentials or not answering: only this one may be reported as "check the id"."""
    return getattr(error, "error_code", None) in NOT_FOUND or isinstance(error, OSError)


def _exit(code: int, line: str) -> None:
    print(line, file=sys.stderr, flush=True)
    if code in (contract.EXIT_USAGE, contract.EXIT_REFUSED):
        record_exit_code(code)
    sys.exit(code)


def record_exit_code(code: int) -> None:
    """Put the code on the run `mlflow run` made for this process, where a parent step finds it (`mlflow run`
    turns every failure into 1). Only for a mistake or a refusal: the store answered then; a store that does
    not answer ends in 1 anyway, and waiting for it here would only delay the exit."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    import mlflow

    try:
        mlflow.MlflowClient().set_tag(run_id, contract.TAG_EXIT_CODE, str(code))
    except Exception as error:  # the parent then sees 1, as it would without this tag
        print(f"(could not record exit code {code} on run {run_id}: {error})", file=sys.stderr)


# What to do when a tracking server with authentication (`mlflow server --app-name basic-auth`) says no
REFUSALS = {
    "UNAUTHENTICATED": "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server",
    "PERMISSION_DENIED": "this user may not change that; an administrator can grant EDIT or MANAGE on the "
    "experiment or registered model, or run this step as a user who has it",
}
# What to do when the store has no such thing, or refuses the value as malformed: the user named it
NOT_FOUND = {
    "RESOURCE_DOES_NOT_EXIST": "check the run id, model name or version (the MLflow UI lists them) and "
    "MLFLOW_TRACKING_URI (which store is asked)",
    "INVALID_PARAMETER_VALUE": "check the id or URI given (runs:/<run_id>/<path>, models:/<name>/<version> "
    "or models:/<name>@<alias>)",
}
UNANSWERED = "check that MLFLOW_TRACKING_URI points at a running tracking server, then run the step again"
