"""User-facing errors.

Every problem caused by the user's input (files, configs, checkpoints) is raised as a
:class:`SarcropError` whose message is one line naming the file and the problem. The CLI prints
it without a traceback and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path


class SarcropError(Exception):
    """A problem with the user's input, reported as one line."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        if self.path:  # GDAL's messages start with the path, which the line names first
            problem = problem.replace(f"{self.path}: ", "")
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class InputDataError(SarcropError):
    """Scenes, labels or parcels that cannot be used."""


class ConfigError(SarcropError):
    """An experiment or training configuration that is invalid."""


class CheckpointError(SarcropError):
    """A checkpoint that is not a sarcrop checkpoint or does not fit the data."""
