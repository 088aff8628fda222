"""Labelled point time series (tables) for the pixel-wise Random Forest baseline.

Field surveys often come as a table rather than imagery: one row per labelled point with its
Sentinel-1 series in columns. WorldCereal's extractions name them ``SAR-<band>-ts<N>-<res>``
(e.g. ``SAR-VH-ts3-20m``), with step ``N`` the month ``start_date + N`` and values as scaled
uint16 dB (``dB = 20·log10(DN) − 83``; 0 and 65535 = no data, see
:func:`sarcrop.data.units.dn_to_db`). Float columns are taken as dB already.

:func:`read_point_timeseries` gives ``X (n, T, B)`` float32 dB with NaN for no data, the label
names and the step dates. :func:`point_features` scales ``X`` exactly as patches are scaled
(per-band min-max from training points, then NaN → 0) and flattens it time-major, the feature
layout :class:`sarcrop.evaluation.baseline.RandomForestBaseline` uses for image pixels, so a
forest trained on points and one trained on patches see the same kind of input.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sarcrop.data.normalization import Normalization, compute_normalization, normalize
from sarcrop.data.units import dn_to_db
from sarcrop.errors import InputDataError

_COLUMN = re.compile(r"^SAR-(?P<band>[A-Za-z]{2})-ts(?P<step>\d+)(?:-.*)?$")


class PointTimeSeries(NamedTuple):
    """Points as arrays: unpack as ``X, labels, times = read_point_timeseries(...)``."""

    X: np.ndarray
    """float32 ``(n, T, B)`` backscatter in dB, NaN = no data."""
    labels: np.ndarray
    """``(n,)`` label names (str objects)."""
    times: list[dt.date]
    """Date of each of the ``T`` steps."""


def read_point_timeseries(
    path: str | Path,
    bands: Sequence[str] = ("VH", "VV"),
    *,
    label_column: str = "label_full",
    start_column: str = "start_date",
) -> PointTimeSeries:
    """Read a point-timeseries parquet table into ``(X, labels, times)``.

    Steps are the ``ts<N>`` columns present for every band (they must be 0..T-1); their dates
    are monthly from the first row's ``start_column``. Raises :class:`InputDataError` naming
    the file when a band, the label column or a time step is missing.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise InputDataError("point table not found", path) from None
    except (OSError, ValueError) as exc:
        raise InputDataError(
            f"cannot read point table: {' '.join(str(exc).split())}", path
        ) from None
    bands = tuple(b.upper() for b in bands)
    if not bands:
        raise InputDataError("no band requested", path)
    steps: dict[str, dict[int, str]] = {}
    for column in table.columns:
        match = _COLUMN.match(str(column))
        if match:
            steps.setdefault(match["band"].upper(), {})[int(match["step"])] = str(column)
    missing = [b for b in bands if b not in steps]
    if missing:
        found = ", ".join(sorted(steps)) or "none"
        raise InputDataError(
            f"missing band {', '.join(missing)}: found SAR columns for {found}", path
        )
    count = len(steps[bands[0]])
    for band in bands:
        if sorted(steps[band]) != list(range(count)):
            raise InputDataError(
                f"band {band} has steps {sorted(steps[band])}, expected 0..{count - 1} "
                f"like {bands[0]}",
                path,
            )
    if label_column not in table.columns:
        raise InputDataError(f"no label column {label_column!r}", path)

    X = np.empty((len(table), count, len(bands)), dtype=np.float32)
    for b, band in enumerate(bands):
        for t in range(count):
            values = table[steps[band][t]].to_numpy()
            if values.dtype.kind in "ui":
                X[:, t, b] = dn_to_db(values)
            else:
                X[:, t, b] = values.astype(np.float32)
                X[~np.isfinite(X[:, t, b]), t, b] = np.nan
    labels = table[label_column].astype(str).to_numpy(dtype=object)
    return PointTimeSeries(X, labels, _monthly_dates(table, start_column, count, path))


def _monthly_dates(table: object, column: str, count: int, path: Path) -> list[dt.date]:
    import pandas as pd

    assert isinstance(table, pd.DataFrame)
    if column not in table.columns or table.empty:
        raise InputDataError(f"no {column!r} column to date the time steps", path)
    starts = pd.to_datetime(table[column], errors="coerce")
    if starts.isna().any() or starts.nunique() != 1:
        raise InputDataError(
            f"{column!r} must hold one valid date for all rows (found {starts.nunique()})", path
        )
    first = starts.iloc[0].date()
    return [
        dt.date(first.year + (first.month - 1 + n) // 12, (first.month - 1 + n) % 12 + 1, 1)
        for n in range(count)
    ]


def point_normalization(X: np.ndarray, bands: Sequence[str]) -> Normalization:
    """Per-band min-max statistics over points ``X (n, T, B)`` (pass training points only)."""
    X = np.asarray(X, dtype=np.float32)
    return compute_normalization([X.transpose(1, 2, 0)[..., None]], tuple(bands))


def point_features(X: np.ndarray, stats: Normalization) -> np.ndarray:
    """Features ``(n, T·B)`` for the Random Forest: scaled to [0, 1], NaN → 0, time-major.

    Zero for no data is the convention the patch pipeline uses (and early-season padding), so
    points with a missing month are kept instead of dropped.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise InputDataError(f"points must be (n, time, bands), got shape {X.shape}")
    scaled = normalize(X, stats, band_axis=-1)
    return scaled.reshape(len(X), -1)
