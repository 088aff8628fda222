"""One-line configuration errors from pydantic's validation reports."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from sarcrop.errors import ConfigError


def config_error(
    exc: ValidationError, path: str | Path | None, *, unknown: str = "unknown key"
) -> ConfigError:
    """``<file>: <dotted.key>: <problem> (and N more)`` for the first problem pydantic found."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "config"
    message = unknown if error["type"] == "extra_forbidden" else error["msg"]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ConfigError(f"{where}: {message}{more}", path)
