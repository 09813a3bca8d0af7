"""Step settings as dataclasses, and the CLI that fills them.

Each step defines one frozen dataclass whose field defaults are the only
defaults (MLproject repeats them; a test keeps the two equal) and whose field
`help` metadata is the one-line description shown by `--help` and README.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable, Sequence, TypeVar

C = TypeVar("C")

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
        raise ValueError(f"{name}={value!r} is not valid; use one of: {', '.join(allowed)}")


def require_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


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
                help=f"{field.metadata.get('help', '')} (default: {field.default!r})",
            )
    args = vars(parser.parse_args(argv))
    try:
        return [cls(**{f.name: args[f.name] for f in dataclasses.fields(cls)}) for cls in classes]
    except ValueError as error:  # a dataclass check failed: report it like a usage error
        parser.error(str(error))


def as_parameters(config: Any) -> dict[str, str]:
    """The config as MLflow parameters: every field, as the string MLflow stores."""
    return {key: str(value) for key, value in dataclasses.asdict(config).items()}


def run_cli(step: str, main: Callable[[list[str]], None]) -> None:
    """Run a stage's `main`; a user's mistake (bad value, missing file, no server) exits with its message."""
    try:
        main(sys.argv[1:])
    except (ValueError, FileNotFoundError, ConnectionError) as error:  # DatasetError, ModelLoadError, config checks
        sys.exit(f"{step}: error: {error}")
    except Exception as error:  # a tracking server with authentication refusing (MlflowException, by its code)
        fix = REFUSALS.get(getattr(error, "error_code", None))
        if fix is None:
            raise
        sys.exit(f"{step}: error: the tracking server refused ({getattr(error, 'message', error)}): {fix}")


# What to do when a tracking server with authentication (`mlflow server --app-name basic-auth`) says no
REFUSALS = {
    "UNAUTHENTICATED": "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server",
    "PERMISSION_DENIED": "this user may not change that; an administrator can grant EDIT or MANAGE on the "
    "experiment or registered model, or run this step as a user who has it",
}
