"""One-line configuration errors: from unreadable YAML files and pydantic's validation reports;
and the YAML files that ship inside the package."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sarcrop.errors import ConfigError


def config_error(
    exc: ValidationError, path: str | Path | None, *, unknown: str = "unknown key"
) -> ConfigError:
    """``<file>: <dotted.key>: <problem> (and N more)`` for the first problem pydantic found,
    an unknown key first: a misspelt key also leaves the key it meant missing, and the
    misspelling is the problem to name (with the missing key it is closest to)."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    where = ".".join(str(part) for part in error["loc"]) or "config"
    message = unknown if error["type"] == "extra_forbidden" else error["msg"]
    message = message.removeprefix("Value error, ")  # pydantic's prefix to a validator's own
    if error["type"] == "extra_forbidden":
        message += _meant(error, errors)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(f"{where}: {message}{more}", path)


def _meant(extra: Any, errors: list[Any]) -> str:
    """``, did you mean 'regions'?`` where a missing key beside the unknown one is close to it."""
    parent = tuple(extra["loc"][:-1])
    missing = [
        str(e["loc"][-1])
        for e in errors
        if e["type"] == "missing" and e["loc"] and tuple(e["loc"][:-1]) == parent
    ]
    hint = did_you_mean(str(extra["loc"][-1]), missing)
    return f", {hint}" if hint else ""


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``did you mean 'x'?`` for the choice closest to a misspelt ``word``; empty if none is."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path``; a one-line error naming the file if it cannot be read."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", path) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"not a readable YAML file: {' '.join(str(exc).split())}", path) from None


def shipped_yaml(folder: str) -> dict[str, Path]:
    """Name → path of the YAML files in ``folder`` of the installed package (``configs``,
    ``configs/recipes``)."""
    files = resources.files("sarcrop").joinpath(*folder.split("/")).iterdir()
    return {Path(str(p)).stem: Path(str(p)) for p in files if str(p).endswith(".yaml")}
