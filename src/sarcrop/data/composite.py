"""20-day composites: the model's input, computed identically by ``prepare`` and ``predict``.

Each season period gets one image per band: by default the per-pixel mean of the period's
acquisitions in linear power, returned in dB (``10*log10(mean(10**(dB/10)))``), which is what
"mean backscatter" means physically; averaging dB values (``space="db"``) is offered for
comparison with pipelines that do it. Nodata is skipped per pixel, and so is zero or negative
power in a linear stack (a fill, or noise removal's undershoot: no backscatter, and no dB value);
a period with fewer than ``min_acquisitions`` valid values at a pixel is NaN there.

Acquisitions are read one period at a time (the next one while the last one is reduced), so
memory is bounded by the window times the acquisitions of two periods, whatever the season length
or area size.

A period without an acquisition (monthly composites read under 20-day periods, a satellite
gap) is interpolated linearly in time from the last acquisition before it and the first after
it, within the season or one period outside it (``gaps="interpolate"``, :func:`reach`), each in
a period of at least ``min_acquisitions`` acquisitions (one of fewer is no data). Left
empty, it reads as 0 like the not yet observed steps of an early-season map, which a model never
saw mid-season. An early-season map (``predict --until``) reads nothing after its last period,
so a gap there stays empty.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from rasterio.windows import Window
from scipy.ndimage import uniform_filter

from sarcrop.data.scenes import SceneStack
from sarcrop.data.season import Season
from sarcrop.data.units import db_to_linear

Method = Literal["mean", "median", "first"]
Space = Literal["linear", "db"]
Gaps = Literal["interpolate", "empty"]


def composite_dates(season: Season) -> list[dt.date]:
    """The date labelling each composite: the first day of its period."""
    return [start for start, _ in season.periods()]


def period_indices(stack: SceneStack, season: Season) -> list[list[int]]:
    """Stack time indices falling in each period (outside the season: in none), by the time
    each slice stands for (a monthly mean's middle)."""
    periods: list[list[int]] = [[] for _ in range(season.steps)]
    for index, acquisition in enumerate(stack.acquisitions):
        period = season.period_of(acquisition.middle)
        if period is not None:
            periods[period].append(index)
    return periods


def reach(season: Season) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the acquisitions the composites of ``season`` read: the season and one
    period either side of it, from which a gap at its edge is interpolated (monthly means,
    read at mid-month, can leave the first or last 20-day period empty)."""
    margin = dt.timedelta(days=season.days)
    start = dt.datetime.combine(season.start - margin, dt.time())
    return start, dt.datetime.combine(season.end + margin, dt.time())


def gap_neighbours(
    stack: SceneStack, season: Season, min_acquisitions: int = 1
) -> dict[int, tuple[int, int, float]]:
    """The periods without an acquisition that have one on either side within :func:`reach`,
    each with the last acquisition before it, the first after it, and the weight of the latter
    at the period's middle (linear in time).

    Only acquisitions of periods holding ``min_acquisitions`` or more are drawn on (the period
    either side of the season counted alike): a period of fewer is no data, so it must not
    fill the gap beside it either.
    """
    wider = Season(season.start - dt.timedelta(days=season.days), season.steps + 2, season.days)
    periods = [wider.period_of(t) for t in stack.middles]
    counts = Counter(periods)
    around = sorted(
        (t, i)
        for i, (t, period) in enumerate(zip(stack.middles, periods, strict=True))
        if period is not None and counts[period] >= min_acquisitions
    )
    gaps: dict[int, tuple[int, int, float]] = {}
    for step, (first, last) in enumerate(season.periods()):
        if counts[step + 1]:  # the period holds an acquisition: no gap
            continue
        period_start, period_end = (dt.datetime.combine(d, dt.time()) for d in (first, last))
        before = [(t, i) for t, i in around if t < period_start]
        after = [(t, i) for t, i in around if t >= period_end]
        if not before or not after:
            continue
        (t0, i0), (t1, i1) = before[-1], after[0]
        middle = period_start + (period_end - period_start) / 2
        gaps[step] = (i0, i1, (middle - t0) / (t1 - t0))
    return gaps


def acquisitions_per_period(stack: SceneStack, season: Season) -> list[int]:
    """How many acquisitions fall in each period (0 = that composite will be all NaN)."""
    return [len(indices) for indices in period_indices(stack, season)]


def warn_empty_periods(
    stack: SceneStack,
    season: Season,
    check: str = "--season-start, --timesteps and --days",
    gaps: Gaps = "interpolate",
    min_acquisitions: int = 1,
) -> None:
    """Warn, in one line, of composite periods without an acquisition, interpolated or empty
    (``gaps``, ``min_acquisitions`` as :func:`composite` takes them): a season start or length
    off by months produces them without any other sign. ``check``: the options that set the
    season where the warning is raised."""
    empty = [i for i, n in enumerate(acquisitions_per_period(stack, season)) if n == 0]
    if not empty:
        return
    filled = gap_neighbours(stack, season, min_acquisitions) if gaps == "interpolate" else {}
    periods = season.periods()

    def listed(steps: list[int]) -> str:  # days inclusive, so that neighbours share none
        day = dt.timedelta(days=1)
        spans = ", ".join(f"{i + 1} ({periods[i][0]} to {periods[i][1] - day})" for i in steps[:4])
        more = f" and {len(steps) - 4} more" if len(steps) > 4 else ""
        return f"period{'s' if len(steps) > 1 else ''} {spans}{more}"

    left = [i for i in empty if i not in filled]
    verb = "has" if len(empty) == 1 else "have"
    parts = [f"{len(empty)} of the {season.steps} composite periods {verb} no acquisition"]
    if filled:
        parts.append(f"interpolated in time: {listed(sorted(filled))}")
    if left:
        parts.append(f"empty (read as not yet observed): {listed(left)}")
    warnings.warn("; ".join(parts) + f"; check {check} against the acquisitions", stacklevel=3)


def composite(
    stack: SceneStack,
    season: Season,
    bands: Sequence[str],
    window: Window | None = None,
    *,
    method: Method = "mean",
    space: Space = "linear",
    min_acquisitions: int = 1,
    speckle_filter: int | None = None,
    gaps: Gaps = "interpolate",
) -> np.ndarray:
    """Float32 ``(season.steps, len(bands), h, w)`` composites in dB; NaN where too few values.

    ``method``: ``"mean"``, ``"median"`` or ``"first"`` (the earliest valid value in the period).
    ``space``: where the mean/median is taken, linear power (default) or dB.
    ``speckle_filter``: size of a boxcar (moving average, in linear power, nodata-aware) applied
    to each acquisition before compositing; off by default, as the temporal mean already
    reduces speckle.
    ``gaps``: ``"interpolate"`` a period without an acquisition between two with some (see
    :func:`gap_neighbours`: only periods of ``min_acquisitions`` or more are drawn on), or
    leave it ``"empty"`` (NaN).
    """
    if method not in ("mean", "median", "first"):
        raise ValueError(f"method must be mean, median or first, got {method!r}")
    if space not in ("linear", "db"):
        raise ValueError(f"space must be linear or db, got {space!r}")
    if min_acquisitions < 1:
        raise ValueError(f"min_acquisitions must be >= 1, got {min_acquisitions}")
    if speckle_filter is not None and speckle_filter < 1:
        raise ValueError(f"speckle_filter must be a window size >= 1, got {speckle_filter}")
    if gaps not in ("interpolate", "empty"):
        raise ValueError(f"gaps must be interpolate or empty, got {gaps!r}")
    bands = [b.upper() for b in bands]
    stack.require_bands(bands)
    target = stack.target(window)
    size = speckle_filter or 1
    read, inner = _with_margin(stack, window, size // 2)
    out = np.empty((season.steps, len(bands), target.height, target.width), dtype=np.float32)
    linear = stack.units == "linear"
    options = (linear, size, inner, method, space, min_acquisitions)
    alone = (linear, size, inner, method, space, 1)  # an interpolated gap's two acquisitions
    # Each period is reduced in a worker thread while the next one is read: the read waits on
    # GDAL and the reduction on numpy, both without the GIL. Waiting for one reduction before
    # starting the next keeps at most two periods in memory.
    filled = gap_neighbours(stack, season, min_acquisitions) if gaps == "interpolate" else {}
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending: Future[None] | None = None
        for step, indices in enumerate(period_indices(stack, season)):
            if step in filled:
                before, after, weight = filled[step]
                data = stack.read([before, after], bands, read)
                _interpolate(data, out[step], weight, alone)
                continue
            if not indices:
                out[step] = np.nan
                continue
            data = stack.read(indices, bands, read)  # (n, b, h, w) in stack units
            if pending is not None:
                pending.result()
            pending = worker.submit(_composite_period, data, out[step], *options)
        if pending is not None:
            pending.result()
    return out


def _interpolate(
    data: np.ndarray, out: np.ndarray, weight: float, options: tuple[Any, ...]
) -> None:
    """Write into ``out`` the dB value between the two acquisitions of ``data``, each read as
    a composite of its own, at ``weight`` from the first to the second; where one of them has
    no value, the other's."""
    first, second = np.empty_like(out), np.empty_like(out)
    _composite_period(data[:1], first, *options)
    _composite_period(data[1:], second, *options)
    np.copyto(out, first + np.float32(weight) * (second - first))
    np.copyto(out, first, where=np.isnan(second))
    np.copyto(out, second, where=np.isnan(first))


def _composite_period(
    data: np.ndarray,
    out: np.ndarray,
    linear: bool,
    size: int,
    inner: tuple[slice, slice],
    method: Method,
    space: Space,
    min_acquisitions: int,
) -> None:
    """Write into ``out`` (b, h, w) the composite of one period's ``(n, b, h', w')``
    acquisitions, ``h', w'`` including a margin of ``size // 2`` for the speckle filter."""
    if linear:  # zero or negative power is no backscatter: not averaged in
        np.copyto(data, np.float32(np.nan), where=data <= 0)
    if size > 1:
        if not linear:
            data, linear = db_to_linear(data), True
        data = _boxcar(data, size)[(..., *inner)]
    rows = max(1, _CHUNK // max(data.shape[0] * data.shape[1] * data.shape[3], 1))
    for top in range(0, out.shape[1], rows):
        part = data[:, :, top : top + rows]
        out[:, top : top + rows] = _reduce(part, linear, method, space, min_acquisitions)


# Values (acquisitions x bands x pixels) reduced at once: few enough for the temporaries to stay
# in the CPU cache, enough for numpy's per-call overhead not to show.
_CHUNK = 1 << 17


def _reduce(
    data: np.ndarray, linear: bool, method: Method, space: Space, min_acquisitions: int
) -> np.ndarray:
    """The composite of ``(n, b, h, w)`` acquisitions (left unchanged), in dB."""
    owned = False  # whether ``data`` is an array of this function (free to overwrite)
    if space == "linear" and not linear:
        data, linear, owned = _db_to_linear(data, owned), True, True
    elif space == "db" and linear:
        data, linear, owned = _linear_to_db(data), False, True
    if method == "mean":
        result, count = _nanmean(data, owned)
    else:
        valid = np.isfinite(data)
        count = valid.sum(axis=0)
        if method == "median":
            result = _nanmedian(data, count)
        else:
            first = np.argmax(valid, axis=0)
            result = np.take_along_axis(data, first[None], axis=0)[0]
    np.copyto(result, np.float32(np.nan), where=count < min_acquisitions)
    return _linear_to_db(result) if linear else result


# The helpers below give bit for bit the values of sarcrop.data.units' conversions and of a
# float64 ``sum(axis=0)``, with fewer temporary arrays: compositing runs beside the raw read
# of the scenes, and every full pass over the acquisitions shows in its speed.


def _db_to_linear(data: np.ndarray, owned: bool) -> np.ndarray:
    """:func:`db_to_linear`, in place where ``data`` may be overwritten."""
    power = np.divide(data, np.float32(10.0), out=data if owned else None, dtype=np.float32)
    return np.power(np.float32(10.0), power, out=power, dtype=np.float32)


def _linear_to_db(values: np.ndarray) -> np.ndarray:
    """:func:`linear_to_db` of a float32 array without boolean gathers and scatters (a masked
    ``log10`` is several times slower than one over every value)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(values)
    np.multiply(out, np.float32(10.0), out=out)
    np.copyto(out, np.float32(np.nan), where=~(values > 0))
    return out


def _nanmean(data: np.ndarray, owned: bool) -> tuple[np.ndarray, np.ndarray]:
    """Float32 mean over axis 0 ignoring non-finite values (summed in float64, in order), and
    the count of values per pixel."""
    valid = np.isfinite(data)
    count = valid.sum(axis=0, dtype=np.min_scalar_type(len(data)))  # narrow: a faster sum
    if owned:
        np.copyto(data, 0, where=~valid)
    else:
        data = np.where(valid, data, np.float32(0))
    total = data[0].astype(np.float64)
    for layer in data[1:]:
        total += layer
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(total, count, out=total)
    return total.astype(np.float32), count


def _with_margin(
    stack: SceneStack, window: Window | None, margin: int
) -> tuple[Window | None, tuple[slice, slice]]:
    """``window`` grown by ``margin`` pixels inside the area, and where ``window`` lies in it.

    A spatial filter near a window's edge needs the pixels beyond it: reading them makes the
    composites of a window equal to those of the whole area cut to that window, so strips
    (``prepare``) and blocks (``predict``) agree with each other wherever they are cut.
    """
    if window is None or margin == 0:
        return window, (slice(None), slice(None))
    grid = stack.grid
    row, col = int(window.row_off), int(window.col_off)
    top, left = max(row - margin, 0), max(col - margin, 0)
    bottom = min(row + int(window.height) + margin, max(grid.height, row + int(window.height)))
    right = min(col + int(window.width) + margin, max(grid.width, col + int(window.width)))
    grown = Window(left, top, right - left, bottom - top)
    inner = (
        slice(row - top, row - top + int(window.height)),
        slice(col - left, col - left + int(window.width)),
    )
    return grown, inner


def _nanmedian(data: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-pixel median over axis 0 ignoring NaN, without warnings for all-NaN pixels."""
    ordered = np.sort(data, axis=0)  # NaN sorts last
    low = np.clip((count - 1) // 2, 0, None)
    high = np.clip(count // 2, 0, None)
    a = np.take_along_axis(ordered, low[None], axis=0)[0]
    b = np.take_along_axis(ordered, high[None], axis=0)[0]
    return ((a + b) / 2).astype(np.float32)


def _boxcar(data: np.ndarray, size: int) -> np.ndarray:
    """Nodata-aware moving average over the two spatial axes (NaN stays NaN)."""
    valid = np.isfinite(data)
    filled = np.where(valid, data, 0).astype(np.float32)
    spatial = (1,) * (data.ndim - 2) + (size, size)
    total = uniform_filter(filled, size=spatial, mode="nearest")
    weight = uniform_filter(valid.astype(np.float32), size=spatial, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = total / weight
    return np.where(valid, smoothed, np.nan).astype(np.float32)
