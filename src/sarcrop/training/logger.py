"""Per-step and per-epoch metrics in ``metrics.csv``, written atomically.

Same rows and columns as Lightning's CSVLogger, but the file is replaced atomically on every
flush (never left half-written by a killed run) and lives at a fixed path in the run's output
directory. A resumed run keeps the rows of the epochs it does not repeat.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from sarcrop.utils.atomic import write_text_atomic


class MetricsCSVLogger(Logger):
    """Lightning logger writing one ``metrics.csv``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                self.rows = [
                    {key: value for key, value in row.items() if value != ""}
                    for row in csv.DictReader(handle)
                ]
        self._fresh = True
        self._dirty = False

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> int:
        return 0

    @property
    def root_dir(self) -> str:
        return str(self.path.parent)

    @property
    def log_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Hyper-parameters are recorded in ``run.json`` and the exported checkpoint."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._fresh and step is not None:
            # Resuming: drop the rows of the partial epoch that is now being repeated.
            self.rows = [row for row in self.rows if int(float(row.get("step", -1))) < step]
            self._fresh = False
        row: dict[str, Any] = {"step": step}
        row.update({key: _scalar(value) for key, value in metrics.items()})
        self.rows.append(row)
        self._dirty = True

    @rank_zero_only
    def save(self) -> None:
        if not self._dirty:
            return
        columns: list[str] = []
        for row in self.rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())
        self._dirty = False

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
