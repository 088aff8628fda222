"""Labelled point time series (tables) for the pixel-wise Random Forest baseline.

Field surveys often come as a table rather than imagery: one row per labelled point with its
Sentinel-1 series in columns, read from Parquet (``.parquet``) or CSV (``.csv``, ``.csv.gz``).
WorldCereal's extractions name them ``SAR-<band>-ts<N>-<res>`` (e.g. ``SAR-VH-ts3-20m``), with
step ``N`` the month ``start_date + N``.

Units are decided per column from its values, not its dtype: a missing cell or a CSV round trip
turns WorldCereal's scaled uint16 values (``dB = 20·log10(DN) − 83``, 0 and 65535 = no data, see
:func:`sarcrop.data.units.dn_to_db`) into floats, which must not then be taken as dB. Whole
numbers in 0..65535 that convert to plausible dB are DN; otherwise dB is kept and linear power
converted (:func:`sarcrop.data.units.detect_units`); anything else is refused.

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
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

from sarcrop.data.normalization import Normalization, compute_normalization, normalize
from sarcrop.data.units import DN_NODATA, detect_units, dn_to_db, linear_to_db
from sarcrop.errors import InputDataError

if TYPE_CHECKING:
    import pandas as pd

_COLUMN = re.compile(r"^SAR-(?P<band>[A-Za-z]{2})-ts(?P<step>\d+)(?P<rest>-.*)?$")
_FORMATS = (".parquet", ".csv", ".csv.gz")

ColumnUnits = Literal["dn", "db", "linear", "empty"]
_NAMES = {"dn": "scaled DN", "db": "dB", "linear": "linear power"}


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
    """Read a point table (``.parquet``, ``.csv``, ``.csv.gz``) into ``(X, labels, times)``.

    Steps are the ``ts<N>`` columns, 0..T-1 for every band; their dates are monthly from the
    first row's ``start_column``. Each column's units come from its values (scaled DN, dB or
    linear power, all converted to dB), and a band must not mix them. Raises
    :class:`InputDataError` naming the file when a band, the label column or a step column is
    missing, or a column's values fit no units.
    """
    path = Path(path)
    table = _read_table(path)
    bands = tuple(b.upper() for b in bands)
    if not bands:
        raise InputDataError("no band requested", path)
    steps: dict[str, dict[int, str]] = {}
    rest: dict[str, str] = {}
    for column in table.columns:
        match = _COLUMN.match(str(column))
        if match:
            band, step = match["band"].upper(), int(match["step"])
            if step in steps.setdefault(band, {}):
                raise InputDataError(
                    f"two columns for {band} step {step}: {steps[band][step]} and {column}; "
                    "keep one (e.g. one resolution)",
                    path,
                )
            steps[band][step] = str(column)
            rest.setdefault(band, match["rest"] or "")
    missing = [b for b in bands if b not in steps]
    if missing:
        found = ", ".join(sorted(steps)) or "none"
        raise InputDataError(
            f"missing band {', '.join(missing)}: found SAR columns for {found}", path
        )
    count = max(max(steps[band]) for band in bands) + 1
    absent = [
        f"SAR-{band}-ts{t}{rest[band]}"
        for band in bands
        for t in range(count)
        if t not in steps[band]
    ]
    if absent:
        complete = [b for b in bands if len(steps[b]) == count]
        found = f"found for {', '.join(complete)}" if complete else f"ts{count - 1} is present"
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise InputDataError(
            f"missing column{'s' if len(absent) > 1 else ''} {shown}: every band needs steps "
            f"0..{count - 1} ({found})",
            path,
        )
    if label_column not in table.columns:
        raise InputDataError(f"no label column {label_column!r}", path)

    X = np.empty((len(table), count, len(bands)), dtype=np.float32)
    for b, band in enumerate(bands):
        seen: dict[ColumnUnits, str] = {}
        for t in range(count):
            column = steps[band][t]
            values = _numeric(table[column], column, path)
            units = _column_units(values)
            if units is None:
                raise InputDataError(f"column {column} {_describe(values)}", path)
            if units == "dn":
                X[:, t, b] = dn_to_db(values)
            elif units == "linear":
                X[:, t, b] = linear_to_db(values)
            elif units == "db":
                X[:, t, b] = values
            else:  # only no-data values (NaN, 0 or 65535)
                X[:, t, b] = np.nan
            if units != "empty":
                seen.setdefault(units, column)
        if len(seen) > 1:
            mixed = ", ".join(f"{column} is {_NAMES[u]}" for u, column in seen.items())
            raise InputDataError(f"band {band} mixes units: {mixed}", path)
    labels = table[label_column].astype(str).to_numpy(dtype=object)
    return PointTimeSeries(X, labels, _monthly_dates(table, start_column, count, path))


def _read_table(path: Path) -> pd.DataFrame:
    """Parquet or CSV by suffix: a CSV given to the Parquet reader fails with a cryptic error."""
    import pandas as pd

    name = path.name.lower()
    if not name.endswith(_FORMATS):
        raise InputDataError(
            f"point table must be {', '.join(_FORMATS[:-1])} or {_FORMATS[-1]}", path
        )
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=None, engine="python")  # ',' or ';' (a European export)
    except FileNotFoundError:
        raise InputDataError("point table not found", path) from None
    except (OSError, ValueError) as exc:
        raise InputDataError(
            f"cannot read point table: {' '.join(str(exc).split())}", path
        ) from None


def _numeric(series: pd.Series, column: str, path: Path) -> np.ndarray:
    """A column as float64 with NaN for missing or non-finite cells."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        example = series.dropna().iloc[0] if series.notna().any() else None
        raise InputDataError(f"column {column} is not numeric (e.g. {example!r})", path)
    values = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _column_units(values: np.ndarray) -> ColumnUnits | None:
    """Units of one SAR column from its values (NaN = no data); None if they fit none.

    Whole numbers in 0..65535 that give plausible dB are scaled DN, whatever the dtype (a
    missing cell makes a DN column float). DN is tried first: dB has a negative median and
    linear power is well below 1, so neither is mistaken for DN.
    """
    finite = values[np.isfinite(values)]
    if (
        finite.size
        and np.all(finite == np.round(finite))
        and finite.min() >= DN_NODATA[0]
        and finite.max() <= DN_NODATA[1]
    ):
        valid = finite[(finite != DN_NODATA[0]) & (finite != DN_NODATA[1])]
        if valid.size == 0:
            return "empty"
        if detect_units(dn_to_db(valid)) == "db":
            return "dn"
    if finite.size == 0:
        return "empty"
    return detect_units(finite)


def _describe(values: np.ndarray) -> str:
    """What a refused column looks like, so the user can tell which units it holds."""
    p01, p50, p99 = np.nanpercentile(values, [1, 50, 99])
    return (
        f"fits neither scaled DN, dB nor linear power: median {p50:.4g}, "
        f"1-99 % range {p01:.4g}..{p99:.4g}"
    )


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
