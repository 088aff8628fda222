"""One-line configuration errors: from unreadable YAML files and pydantic's validation reports;
and the YAML files that ship inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sarcrop.errors import ConfigError


def config_error(
    exc: ValidationError, path: str | Path | None, *, unknown: str = "unknown key"
) -> ConfigError:
    """``<file>: <dotted.key>: <problem> (and N more)`` for the first problem pydantic found."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "config"
    message = unknown if error["type"] == "extra_forbidden" else error["msg"]
    message = message.removeprefix("Value error, ")  # pydantic's prefix to a validator's own
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(f"{where}: {message}{more}", path)


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
