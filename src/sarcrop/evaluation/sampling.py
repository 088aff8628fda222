"""Stratified random sampling of map pixels for accuracy and area estimation.

The strata are the map's classes (band ``class`` of a ``sarcrop predict`` map, 255 = nodata),
or the levels of another raster on the same grid (e.g. an uncertainty band binned by
``strata_edges``), crossed with the map classes by default: stratum code = ``level × 256 +
map class``. The map is read twice in row strips of about four million pixels, never whole:
the first pass counts the pixels ``N_h`` of every stratum per strip; the sample positions are
then drawn as ranks ``0..N_h-1`` with a seeded generator (stratum by stratum, in code order) and
the second pass turns ranks into rows and columns. The same map, options and seed give the
same points.

A sample is written as a GeoPackage with four layers:

- ``samples``: points at pixel centres (the map's CRS) with ``point_id``, ``stratum``,
  ``map_class``,
  ``level`` (strata raster level, -1 without one), ``row``, ``col``,
  ``inclusion_probability`` (``n_h / N_h``) and an empty ``reference`` column to fill in;
- ``strata``: ``stratum``, ``map_class`` (-1 where the stratum mixes classes), ``level``,
  ``pixels`` (``N_h``) and ``n`` (``n_h``), which ``assess`` needs for the estimators;
- ``map_classes``: ``map_class`` and ``pixels``, the pixel-counting areas;
- ``design``: ``key``/``value`` rows: the map, its grid, the options and the seed, and the
  map's classes (``class_names``, ``positive``), which label rasters are matched to.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.errors import ConfigError, InputDataError
from sarcrop.evaluation.rasters import (
    MapClasses,
    band_index,
    block_rows,
    check_same_grid,
    class_band,
    grid_of,
    map_class_pixels,
    map_classes,
    map_classes_at,
    open_raster,
    pixel_counts,
    read_map_classes,
    strips,
)
from sarcrop.options import Allocation, SamplingOptions, as_options, flag
from sarcrop.utils.atomic import atomic_path, write_text_atomic

LEVEL_FACTOR = 256
LAYERS = ("samples", "strata", "map_classes", "design")
POINT_COLUMNS = (
    "point_id",
    "x",
    "y",
    "row",
    "col",
    "stratum",
    "map_class",
    "level",
    "inclusion_probability",
    "reference",
)
"""The columns of a sample's points that :func:`write_sample` writes."""


# --- sample size and allocation ----------------------------------------------------------------


def sample_size_for_se(
    weights: Sequence[float], expected_accuracy: Sequence[float] | float, target_se: float
) -> int:
    """Total sample size for a target SE of overall accuracy (Olofsson et al. 2014, Eq. 13).

    ``n ≈ (Σ W_i S_i / S(Ô))²`` with ``S_i = √(U_i (1 - U_i))`` from the anticipated user's
    accuracy ``U_i`` of each stratum and its area weight ``W_i``, rounded up.
    """
    w = np.asarray(weights, dtype=float)
    u = np.asarray(expected_accuracy, dtype=float)
    if u.size not in (1, w.size):
        raise InputDataError(
            f"{u.size} expected accuracies for {w.size} strata: give 1 or {w.size}"
        )
    u = np.broadcast_to(u.reshape(-1), w.shape)
    if target_se <= 0:
        raise InputDataError(f"target standard error must be positive, got {target_se}")
    s = np.sqrt(u * (1 - u))
    return math.ceil(float((w / w.sum()) @ s / target_se) ** 2 - 1e-9)


def stratum_size_for_users_se(expected_accuracy: float, target_se: float) -> int:
    """Points a stratum (= map class) needs for a target SE of its user's accuracy: from
    ``V(Û) = U (1 - U) / (n - 1)`` (Olofsson et al. 2014, Eq. 6), ``n = U (1 - U) / SE² + 1``."""
    if target_se <= 0:
        raise InputDataError(f"target standard error must be positive, got {target_se}")
    u = expected_accuracy
    return math.ceil(u * (1 - u) / target_se**2 + 1 - 1e-9)


def _shares(weights: np.ndarray, n: int, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Shares of ``n`` in proportion to ``weights``, clamped to [lower, upper] with the excess
    or shortfall spread over the unclamped strata (repeated until nothing moves)."""
    fixed = np.full(len(weights), np.nan)
    while True:
        free = np.isnan(fixed)
        left = n - np.nansum(fixed)
        total = weights[free].sum()
        shares = np.where(free, left * weights / total if total > 0 else 0.0, fixed)
        low = free & (shares < lower)
        high = free & (shares > upper)
        if not (low.any() or high.any()) or free.sum() == 0:
            return shares
        fixed[low] = lower[low]
        fixed[high] = upper[high]


def _round_to_total(shares: np.ndarray, n: int, caps: np.ndarray) -> np.ndarray:
    """Integers summing to ``n`` (largest remainders first), none above its cap."""
    base = np.minimum(np.floor(shares + 1e-9), caps).astype(np.int64)
    order = np.argsort(-(shares - base), kind="stable")
    while base.sum() < n:
        room = [i for i in order if base[i] < caps[i]]
        if not room:
            break
        for i in room[: n - int(base.sum())]:
            base[i] += 1
    return base


def allocate(
    sizes: Mapping[int, int],
    n: int,
    allocation: Allocation = "min-then-proportional",
    *,
    min_per_stratum: int = 50,
    expected_accuracy: Sequence[float] | None = None,
) -> dict[int, int]:
    """Share ``n`` sample points among strata of ``sizes`` pixels (in stratum code order).

    ``proportional``: ``n_h ∝ N_h``; ``equal``: the same in each; ``neyman``: ``n_h ∝ N_h S_h``
    with ``S_h = √(U_h (1 - U_h))`` from the anticipated user's accuracies;
    ``min-then-proportional``: at least ``min_per_stratum`` each (or the whole stratum), the
    rest in proportion to ``N_h`` among the strata above the minimum. Whatever the rule, every
    stratum gets at least one point; an ``n`` below the number of strata is refused.
    """
    codes = sorted(sizes)
    big_n = np.array([sizes[c] for c in codes], dtype=float)
    if n < 1:
        raise InputDataError(f"sample size must be at least 1, got {n}")
    if n > big_n.sum():
        raise InputDataError(f"sample size {n} exceeds the {int(big_n.sum())} mapped pixels")
    lower = np.zeros_like(big_n)
    if allocation == "proportional":
        weights = big_n
    elif allocation == "equal":
        weights = (big_n > 0).astype(float)
    elif allocation == "neyman":
        if not expected_accuracy:
            raise InputDataError("neyman allocation needs the expected user's accuracies")
        u = np.asarray(expected_accuracy, dtype=float)
        if u.size not in (1, len(codes)):
            raise InputDataError(
                f"{u.size} expected accuracies for {len(codes)} strata {codes}: give 1 or "
                f"{len(codes)}"
            )
        weights = big_n * np.sqrt(np.broadcast_to(u * (1 - u), big_n.shape))
    elif allocation == "min-then-proportional":
        weights = big_n
        lower = np.minimum(float(min_per_stratum), big_n)
        if lower.sum() > n:
            raise InputDataError(
                f"sample size {n} is below {int(lower.sum())}, the minimum of "
                f"{min_per_stratum} per stratum over {len(codes)} strata"
            )
    else:  # pragma: no cover - guarded by the options' Literal
        raise InputDataError(f"unknown allocation {allocation!r}")
    filled = int((big_n > 0).sum())
    if n < filled:  # a stratum without a point would leave its pixels unestimated
        raise InputDataError(
            f"sample size {n} leaves {filled - n} of the {filled} strata without a point, and "
            f"their area without an estimate: draw at least {filled} points ({2 * filled} for "
            "a standard error from every stratum)"
        )
    lower = np.maximum(lower, np.minimum(1.0, big_n))
    shares = _shares(weights, n, lower, big_n)
    counts = _round_to_total(shares, n, big_n.astype(np.int64))
    return {c: int(k) for c, k in zip(codes, counts, strict=True)}


# --- the strata raster's levels ------------------------------------------------------------


def _levels(
    ds: rasterio.io.DatasetReader, band: int, window: Window, edges: Sequence[float] | None
) -> np.ndarray:
    values = ds.read(band, window=window, masked=True)
    data, missing = values.data, np.ma.getmaskarray(values)
    if data.dtype.kind == "f":
        missing = missing | ~np.isfinite(data)
        data = np.where(missing, 0, data)
    levels = np.digitize(data, edges) if edges else np.rint(data.astype(np.float64))
    held = levels[~missing]  # nodata (-9999 of an int16 raster) is no level
    if held.size and (held.min() < 0 or held.max() >= 2**23):
        raise InputDataError(
            "strata values outside 0..8388607: bin them with strata_edges", ds.name
        )
    out = np.where(missing, 0, levels).astype(np.int32)
    out[missing] = -1
    return out


@dataclass
class _Stratifier:
    """Reads map classes and stratum codes strip by strip (code -1 = not in any stratum)."""

    map_path: Path
    strata_path: Path | None
    options: SamplingOptions
    grid: Grid = field(init=False)
    classes: MapClasses = field(init=False)

    def __post_init__(self) -> None:
        with open_raster(self.map_path) as ds:
            self.grid = grid_of(ds)
            self._class_band = class_band(ds, self.map_path)
            self.classes = map_classes(ds, self.map_path)
        if self.strata_path is not None:
            with open_raster(self.strata_path) as st:
                check_same_grid(self.grid, st, self.strata_path)
                self._strata_band = band_index(st, self.options.strata_band, self.strata_path)

    def __iter__(self) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
        """``(window, map_class, stratum_code)`` of every strip."""
        with contextlib.ExitStack() as stack:
            ds = stack.enter_context(open_raster(self.map_path))
            st = stack.enter_context(open_raster(self.strata_path)) if self.strata_path else None
            for window in strips(self.grid, block_rows(ds, self._class_band)):
                classes = read_map_classes(ds, self._class_band, window)
                if st is None:
                    yield window, classes, classes
                    continue
                levels = _levels(st, self._strata_band, window, self.options.strata_edges)
                if self.options.cross_map_class:
                    codes = levels * LEVEL_FACTOR + classes
                else:
                    codes = levels.copy()
                codes[(levels < 0) | (classes < 0)] = -1
                yield window, classes, codes


# --- the sample --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stratum:
    """One stratum: its code, map class (``None`` if mixed), level, size ``N_h`` and ``n_h``."""

    code: int
    map_class: int | None
    level: int | None
    pixels: int
    n: int


@dataclass(frozen=True)
class Sample:
    """A drawn sample: the points, the strata and what ``assess`` needs to weight them."""

    points: pd.DataFrame
    """One row per point: x, y, row, col, stratum, map_class, level, inclusion_probability,
    reference (missing until filled)."""
    strata: tuple[Stratum, ...]
    map_pixels: dict[int, int]
    """Pixels of every map class (pixel-counting area)."""
    grid: Grid
    design: dict[str, str] = field(default_factory=dict)

    @property
    def stratum_pixels(self) -> dict[int, int]:
        return {s.code: s.pixels for s in self.strata}

    @property
    def strata_are_map_classes(self) -> bool:
        return all(s.level is None and s.map_class == s.code for s in self.strata)


def draw_sample(
    map_path: str | Path,
    n: int | None = None,
    *,
    strata: str | Path | None = None,
    options: SamplingOptions | None = None,
    target_se: float | None = None,
) -> Sample:
    """Draw a stratified random sample of ``n`` pixels of the map at ``map_path``.

    Without ``n``, the size comes from ``target_se`` (the standard error wanted for overall
    accuracy) and ``options.expected_accuracy`` (:func:`sample_size_for_se`).
    """
    options = (
        SamplingOptions() if options is None else as_options(SamplingOptions, options, "options")
    )
    map_path = Path(map_path)
    if n is not None and target_se is not None:
        raise InputDataError(
            "give a sample size (n, --n) or a target SE (target_se, --target-se), not both"
        )
    if strata is None and options.strata_edges:
        raise InputDataError(
            "strata_edges bin a strata raster: give one (strata, --strata)", map_path
        )
    _refuse_unused(options, strata is not None, n is None)
    stratifier = _Stratifier(map_path, Path(strata) if strata is not None else None, options)
    per_strip: list[dict[int, int]] = []
    map_pixels: dict[int, int] = {}
    mixed: dict[int, set[int]] = {}
    unstratified = 0  # mapped pixels under the strata raster's nodata
    for _window, classes, codes in stratifier:
        per_strip.append(pixel_counts(codes))
        # The population is the stratified pixels (a strata raster's nodata is left out).
        for c, k in pixel_counts(np.where(codes >= 0, classes, -1)).items():
            map_pixels[c] = map_pixels.get(c, 0) + k
        unstratified += int(((codes < 0) & (classes >= 0)).sum())
        if strata is not None and not options.cross_map_class:
            for code in np.unique(codes[codes >= 0]).tolist():
                mixed.setdefault(code, set()).update(np.unique(classes[codes == code]).tolist())
    sizes: dict[int, int] = {}
    for counts in per_strip:
        for c, k in counts.items():
            sizes[c] = sizes.get(c, 0) + k
    if not sizes:
        raise InputDataError("the map has no classified pixels to sample", strata or map_path)
    if n is None:
        if target_se is None or not options.expected_accuracy:
            raise InputDataError("give a sample size, or a target SE and expected accuracies")
        w = [sizes[c] for c in sorted(sizes)]
        acc = options.expected_accuracy
        n = sample_size_for_se(w, acc if len(acc) > 1 else acc[0], target_se)
    allocation = allocate(
        sizes,
        n,
        options.allocation,
        min_per_stratum=options.min_per_stratum,
        expected_accuracy=options.expected_accuracy,
    )
    points = _locate(stratifier, per_strip, _draw_ranks(sizes, allocation, options.seed))
    strata_rows = tuple(
        Stratum(
            code,
            *_describe(code, strata is not None, options, mixed),
            sizes[code],
            allocation[code],
        )
        for code in sorted(sizes)
    )
    points["inclusion_probability"] = [allocation[c] / sizes[c] for c in points["stratum"].tolist()]
    points["reference"] = pd.array([pd.NA] * len(points), dtype="Int64")
    points.insert(0, "point_id", np.arange(1, len(points) + 1))
    design = {
        "map": str(map_path),
        "strata_raster": "" if strata is None else str(strata),
        "grid": json.dumps(stratifier.grid.to_dict()),
        "options": options.model_dump_json(),
        "n": str(n),
        **stratifier.classes.design(),
    }
    if unstratified:
        design["unstratified_pixels"] = str(unstratified)
        warnings.warn(
            f"{unstratified:,} mapped pixels are nodata in the strata raster {strata}: they are "
            f"outside the sample's population, and the estimates stand for the other "
            f"{sum(sizes.values()):,} mapped pixels",
            stacklevel=2,
        )
    return Sample(points, strata_rows, dict(sorted(map_pixels.items())), stratifier.grid, design)


def _refuse_unused(options: SamplingOptions, has_raster: bool, sized_by_se: bool) -> None:
    """Refuse options given that this draw would not read, rather than ignore them."""
    given = options.model_fields_set
    raster = [flag(name) for name in ("strata_band", "cross_map_class") if name in given]
    if raster and not has_raster:
        raise ConfigError(
            f"{', '.join(raster).replace('--cross', '--no-cross')} read a strata raster, which "
            "is not given: add --strata RASTER (strata=), or leave them out"
        )
    if "min_per_stratum" in given and options.allocation != "min-then-proportional":
        raise ConfigError(
            f"--min-per-stratum is the minimum of the min-then-proportional allocation, which "
            f"{options.allocation} does not use: leave it out, or allocate min-then-proportional"
        )
    if options.expected_accuracy and options.allocation != "neyman" and not sized_by_se:
        raise ConfigError(
            f"--expected-accuracy sizes a sample for --target-se or allocates it by neyman, and "
            f"this is a sample of a given size allocated {options.allocation}: leave it out"
        )


def _describe(
    code: int, has_raster: bool, options: SamplingOptions, mixed: Mapping[int, set[int]]
) -> tuple[int | None, int | None]:
    if not has_raster:
        return code, None
    if options.cross_map_class:
        return code % LEVEL_FACTOR, code // LEVEL_FACTOR
    classes = mixed.get(code, set())
    return (next(iter(classes)) if len(classes) == 1 else None), code


def _draw_ranks(
    sizes: Mapping[int, int], allocation: Mapping[int, int], seed: int
) -> dict[int, np.ndarray]:
    """Sorted ranks ``0..N_h-1`` of the sampled pixels of each stratum, in code order."""
    rng = np.random.default_rng(seed)
    return {
        code: np.sort(rng.choice(sizes[code], size=allocation[code], replace=False))
        for code in sorted(sizes)
    }


def _locate(
    stratifier: _Stratifier, per_strip: list[dict[int, int]], ranks: Mapping[int, np.ndarray]
) -> pd.DataFrame:
    """Rows, columns and pixel centres of the ranked pixels (second pass over the strips)."""
    offset = dict.fromkeys(ranks, 0)
    parts: list[pd.DataFrame] = []
    for (window, classes, codes), counts in zip(stratifier, per_strip, strict=True):
        flat = codes.ravel()
        for code, count in counts.items():
            chosen, start = ranks[code], offset[code]
            offset[code] += count
            lo, hi = np.searchsorted(chosen, [start, start + count])
            if lo == hi:
                continue
            where = np.flatnonzero(flat == code)[chosen[lo:hi] - start]
            rows, cols = np.divmod(where, int(window.width))
            parts.append(
                pd.DataFrame(
                    {
                        "row": rows + int(window.row_off),
                        "col": cols + int(window.col_off),
                        "stratum": code,
                        "map_class": classes.ravel()[where],
                    }
                )
            )
    columns = ["row", "col", "stratum", "map_class"]
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    points = points.astype("int64").sort_values(["stratum", "row", "col"], ignore_index=True)
    has_levels = stratifier.strata_path is not None
    if has_levels and stratifier.options.cross_map_class:
        points["level"] = points["stratum"] // LEVEL_FACTOR
    else:
        points["level"] = points["stratum"] if has_levels else -1
    t = stratifier.grid.transform
    points.insert(0, "x", t.c + t.a * (points["col"] + 0.5) + t.b * (points["row"] + 0.5))
    points.insert(1, "y", t.f + t.d * (points["col"] + 0.5) + t.e * (points["row"] + 0.5))
    return points


# --- GeoPackage -----------------------------------------------------------------------------


CSV_COLUMNS = (*POINT_COLUMNS, "lon", "lat")
"""The columns :func:`write_points_csv` writes."""


def check_points_csv_path(out: str | Path, *, overwrite: bool = False) -> None:
    """Refuse, before a sample is drawn, a path that cannot take the points table or whose
    table would be lost: a folder, a path under a file or in a folder that cannot be written,
    a file that is not a points table, or a table with reference labels or values in columns
    :func:`write_points_csv` does not write (labels added by hand). ``overwrite`` replaces
    any table."""
    import os

    out = Path(out)
    if out.is_dir():
        raise InputDataError("is a folder: name the table's file, e.g. samples.csv", out)
    folder = next(p for p in out.absolute().parents if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputDataError(f"cannot be written: {folder} is not a writable folder", out)
    if not out.exists() or overwrite:
        return
    try:
        frame = pd.read_csv(out)
    except (OSError, ValueError):
        frame = pd.DataFrame()
    if "point_id" not in frame.columns:
        raise InputDataError(
            "exists and is not a points table of `sarcrop sample`: choose another name", out
        )
    held = _values_held(frame, CSV_COLUMNS)
    if held:
        raise InputDataError(
            f"holds a points table with {held}, which a new sample's table would replace: "
            "choose another name, or remove the file first",
            out,
        )


def write_points_csv(sample: Sample, out: str | Path, *, overwrite: bool = False) -> Path:
    """The points as a CSV table for labelling tools: ``point_id``, ``lon``/``lat`` (WGS 84),
    ``x``/``y`` (map CRS) and the sample's columns, where :func:`check_points_csv_path`
    allows. Labels come back with :func:`labels_from_table`."""
    from rasterio.warp import transform as warp

    check_points_csv_path(out, overwrite=overwrite)

    points = sample.points.copy()
    lon, lat = warp(sample.grid.crs, "EPSG:4326", points["x"].tolist(), points["y"].tolist())
    points.insert(1, "lon", np.round(lon, 7))
    points.insert(2, "lat", np.round(lat, 7))
    return write_text_atomic(out, points.to_csv(index=False))


def labels_from_table(
    sample: Sample, table: str | Path, label_column: str, id_column: str = "point_id"
) -> Sample:
    """A copy of ``sample`` with ``reference`` from the ``label_column`` of a CSV table whose
    ``id_column`` holds the sample's point ids (e.g. from :func:`write_points_csv`)."""
    table = Path(table)
    try:
        frame = pd.read_csv(table)
    except (OSError, ValueError) as exc:
        problem = " ".join(str(exc).split())
        raise InputDataError(f"not a readable CSV table: {problem}", table) from None
    for column in (id_column, label_column):
        if column not in frame.columns:
            raise InputDataError(
                f"no column {column!r} (columns: {', '.join(map(str, frame.columns))})", table
            )
    if frame[id_column].duplicated().any():
        raise InputDataError(f"point ids repeat in column {id_column!r}", table)
    unknown = set(frame[id_column]) - set(sample.points["point_id"])
    if unknown:
        raise InputDataError(f"{len(unknown)} point ids are not in the sample", table)
    _check_same_points(frame, id_column, sample, table)
    labels = _as_classes(frame.set_index(id_column)[label_column], table, label_column)
    points = sample.points.copy()
    points["reference"] = pd.array(points["point_id"].map(labels), dtype="Int64")
    return replace(sample, points=points, design={**sample.design, "reference_from": str(table)})


def _check_same_points(frame: pd.DataFrame, id_column: str, sample: Sample, table: Path) -> None:
    """Refuse a table whose points are not the sample's points of the same id (``x``/``y``
    within 1 % of a pixel, ``row``/``col`` exactly, where it has them): a sample drawn again
    into the same file numbers other pixels 1..n, and its labels would land on them."""
    t = sample.grid.transform
    pixel = min(math.hypot(t.a, t.d), math.hypot(t.b, t.e))
    drawn = sample.points.set_index("point_id").loc[frame[id_column]]
    for columns, tolerance in ((["x", "y"], 0.01 * pixel), (["row", "col"], 0.0)):
        if not set(columns) <= set(frame.columns):
            continue
        given = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        expected = drawn[columns].to_numpy(float)
        off = np.flatnonzero(np.nanmax(np.abs(given - expected), axis=1, initial=0) > tolerance)
        if off.size:
            i = int(off[np.argmin(frame[id_column].to_numpy()[off])])
            there = ", ".join(f"{v:g}" for v in given[i])
            here = ", ".join(f"{v:g}" for v in expected[i])
            raise InputDataError(
                f"point {frame[id_column].iloc[i]} is at {'/'.join(columns)} {there} in this "
                f"table and {here} in the sample: the table belongs to another draw; label the "
                "points of this one (sample --csv writes them)",
                table,
            )


def check_sample_path(out: str | Path, *, overwrite: bool = False) -> None:
    """Refuse, before a sample is drawn, a path that cannot take it or whose file would be
    lost: another format than a GeoPackage, a file that is not a sample, or a sample with
    reference labels (points labelled by hand would be gone). An unlabelled sample may be
    drawn again; ``overwrite`` replaces any file (an experiment's own samples)."""
    out = Path(out)
    if out.suffix.lower() != ".gpkg":
        raise InputDataError(
            "a sample is a GeoPackage of several layers: name it .gpkg (--csv writes the "
            "points as a table too)",
            out,
        )
    if not out.exists() or (overwrite and out.is_file()):
        return
    if out.is_dir() or not is_sample_file(out):
        raise InputDataError("exists and is not a sample: choose another output", out)
    import pyogrio

    held = _values_held(pyogrio.read_dataframe(out, layer="samples", read_geometry=False))
    if held:
        raise InputDataError(
            f"holds a sample with {held}, which a new sample would replace: choose another "
            "output, or remove the file first",
            out,
        )


def _values_held(points: pd.DataFrame, written: Sequence[str] = POINT_COLUMNS) -> str:
    """What a new sample would lose of ``points``: its reference labels and the values of any
    column not in ``written`` (labels entered in a field of their own); '' if nothing."""
    held = []
    for column in points.columns:
        if column in written and column != "reference":
            continue
        values = points[column]
        count = int((values.notna() & (values.astype(str).str.strip() != "")).sum())
        if count:
            what = "reference labels" if column == "reference" else f"values in column {column!r}"
            held.append(f"{count} {what}")
    return " and ".join(held)


def write_sample(sample: Sample, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``sample`` as a GeoPackage (layers described in the module docstring), where
    :func:`check_sample_path` allows."""
    import geopandas as gpd
    import pyogrio

    out = Path(out)
    check_sample_path(out, overwrite=overwrite)
    frame = gpd.GeoDataFrame(
        sample.points,
        geometry=gpd.points_from_xy(sample.points["x"], sample.points["y"]),
        crs=sample.grid.crs,
    )
    strata = pd.DataFrame(
        {
            "stratum": [s.code for s in sample.strata],
            "map_class": [-1 if s.map_class is None else s.map_class for s in sample.strata],
            "level": [-1 if s.level is None else s.level for s in sample.strata],
            "pixels": [s.pixels for s in sample.strata],
            "n": [s.n for s in sample.strata],
        }
    )
    classes = pd.DataFrame(
        {"map_class": list(sample.map_pixels), "pixels": list(sample.map_pixels.values())}
    )
    design = pd.DataFrame({"key": list(sample.design), "value": list(sample.design.values())})
    with atomic_path(out) as tmp:
        tmp.unlink()
        frame.to_file(tmp, driver="GPKG", layer="samples", engine="pyogrio")
        for name, table in (("strata", strata), ("map_classes", classes), ("design", design)):
            pyogrio.write_dataframe(table, tmp, layer=name, driver="GPKG", append=True)
    return out


def vector_layers(path: Path) -> list[str]:
    """The layers of a vector file, in order; a one-line error if it cannot be read."""
    import pyogrio

    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, OSError) as exc:
        problem = " ".join(str(exc).split())
        raise InputDataError(f"not a readable vector file: {problem}", path) from None


def is_sample_file(path: str | Path) -> bool:
    """Whether ``path`` holds the layers :func:`write_sample` writes."""
    return set(LAYERS) <= set(vector_layers(Path(path)))


def post_stratified_sample(
    path: str | Path, map_path: str | Path, label_column: str = "reference"
) -> Sample:
    """Labelled points drawn some other way (simple random, systematic) as a sample
    post-stratified by map class: strata = map classes with ``N_h`` counted on the map,
    ``n_h`` the points that fall in each (Olofsson et al. 2014, Section 4.2). Points on the
    map's nodata or outside it are left out with a warning."""
    import warnings

    import geopandas as gpd

    path, map_path = Path(path), Path(map_path)
    layers = vector_layers(path)
    layer = "samples" if "samples" in layers else layers[0]
    frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    _refuse_sample_points(frame.columns, layers, path)
    if label_column not in frame.columns:
        columns = ", ".join(c for c in frame.columns if c != "geometry")
        raise InputDataError(f"no label column {label_column!r} (columns: {columns})", path)
    kinds = set(frame.geom_type.dropna())
    if kinds != {"Point"}:
        raise InputDataError(
            f"holds {', '.join(sorted(kinds)) or 'no'} geometries, not points", path
        )
    with open_raster(map_path) as ds:
        grid, band = grid_of(ds), class_band(ds, map_path)
        classes_of_map = map_classes(ds, map_path)
        if frame.crs is None:
            raise InputDataError("points without a CRS", path)
        frame = frame.to_crs(ds.crs)
        x, y = frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy()
        mapped = map_classes_at(ds, band, x, y)
        map_pixels = map_class_pixels(ds, band)
    inside = np.isfinite(mapped)
    if not inside.all():
        warnings.warn(
            f"{int((~inside).sum())} points off the map or on its nodata are left out",
            stacklevel=2,
        )
    rows, cols = rasterio.transform.rowcol(grid.transform, x[inside], y[inside])
    classes = mapped[inside].astype(np.int64)
    points = pd.DataFrame(
        {
            "x": x[inside],
            "y": y[inside],
            "row": np.asarray(rows),
            "col": np.asarray(cols),
            "stratum": classes,
            "map_class": classes,
            "level": -1,
        }
    )
    points.insert(0, "point_id", np.arange(1, len(points) + 1))
    labels = frame[label_column][inside].reset_index(drop=True)
    points["reference"] = _as_classes(labels, path, label_column)
    n = pixel_counts(classes)
    points["inclusion_probability"] = [n[c] / map_pixels[c] for c in classes.tolist()]
    strata = tuple(Stratum(c, c, None, k, n.get(c, 0)) for c, k in sorted(map_pixels.items()))
    design = {
        "map": str(map_path),
        "grid": json.dumps(grid.to_dict()),
        "kind": "simple random or systematic sample, post-stratified by map class",
        **classes_of_map.design(),
    }
    return Sample(points, strata, dict(sorted(map_pixels.items())), grid, design)


def _refuse_sample_points(columns: Sequence[str], layers: Sequence[str], path: Path) -> None:
    """Refuse the points of a `sarcrop sample` without the layers of its design: read as a
    simple random sample, its strata's weights were lost and its estimates biased."""
    if not {"stratum", "inclusion_probability"} <= set(columns):
        return
    missing = ", ".join(name for name in LAYERS[1:] if name not in layers)
    raise InputDataError(
        f"holds a stratified sample's points (columns stratum, inclusion_probability) without "
        f"its layers {missing}, which weigh them: give the whole GeoPackage that "
        "`sarcrop sample` wrote",
        path,
    )


def read_sample(path: str | Path, label_column: str = "reference") -> Sample:
    """Read a sample GeoPackage written by :func:`write_sample` (labels possibly filled in)."""
    import pyogrio

    path = Path(path)
    missing = [name for name in LAYERS if name not in vector_layers(path)]
    if missing:
        raise InputDataError(
            f"not a sample file of `sarcrop sample` (no layer {', '.join(missing)})", path
        )
    points = pyogrio.read_dataframe(path, layer="samples", read_geometry=False)
    _refuse_repeats(points, path)
    if label_column not in points.columns:
        raise InputDataError(
            f"no label column {label_column!r} (columns: {', '.join(points.columns)})", path
        )
    strata = pyogrio.read_dataframe(path, layer="strata", read_geometry=False)
    classes = pyogrio.read_dataframe(path, layer="map_classes", read_geometry=False)
    design_rows = pyogrio.read_dataframe(path, layer="design", read_geometry=False)
    design = dict(zip(design_rows["key"], design_rows["value"], strict=True))
    if label_column != "reference":  # the labels are in another column: `reference` is empty
        points = points.drop(columns="reference", errors="ignore")
        points = points.rename(columns={label_column: "reference"})
    points["reference"] = _as_classes(points["reference"], path, label_column)
    rows = tuple(
        Stratum(
            int(r.stratum),
            None if r.map_class < 0 else int(r.map_class),
            None if r.level < 0 else int(r.level),
            int(r.pixels),
            int(r.n),
        )
        for r in strata.itertuples()
    )
    grid = Grid.from_dict(json.loads(design["grid"]))
    map_pixels = dict(
        zip(classes["map_class"].astype(int), classes["pixels"].astype(int), strict=True)
    )
    return Sample(points, rows, map_pixels, grid, design)


def _refuse_repeats(points: pd.DataFrame, path: Path) -> None:
    """Refuse a point id or a pixel held twice: a sample drawn without replacement has each
    once, and a copied point would count twice in its stratum."""
    for columns, what in ((["point_id"], "point id"), (["row", "col"], "pixel row, col")):
        if not set(columns) <= set(points.columns):
            continue
        twice = points.duplicated(columns, keep=False)
        if twice.any():
            key = points.loc[twice, columns].iloc[0].to_numpy()
            count = int((points[columns].to_numpy() == key).all(axis=1).sum())
            raise InputDataError(
                f"{what} {', '.join(map(str, key))} is held by {count} points: a sample drawn "
                "without replacement holds each once; remove the copies",
                path,
            )


def _as_classes(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Label values as nullable integers; text such as '1' is accepted, other text is not."""
    numbers = pd.to_numeric(values.replace("", pd.NA), errors="coerce")
    bad = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        example = values[bad].iloc[0]
        raise InputDataError(
            f"label column {column!r} holds {example!r}, not a map class number", path
        )
    if (numbers.dropna() % 1 != 0).any():
        raise InputDataError(f"label column {column!r} holds non-integer classes", path)
    return numbers.astype("Int64")
