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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.data.labels import OTHER, UNLABELLED, UNLABELLED_NAME, class_key, class_tags
from sarcrop.errors import InputDataError
from sarcrop.options import Allocation, ReferenceOptions, SamplingOptions, as_options
from sarcrop.utils.atomic import atomic_path, write_text_atomic

MAP_NODATA = 255
LEVEL_FACTOR = 256
STRIP_PIXELS = 1 << 22
GDAL_CACHE_MB = 64
LAYERS = ("samples", "strata", "map_classes", "design")


# --- sample size and allocation ----------------------------------------------------------------


def sample_size_for_se(
    weights: Sequence[float], expected_accuracy: Sequence[float] | float, target_se: float
) -> int:
    """Total sample size for a target SE of overall accuracy (Olofsson et al. 2014, Eq. 13).

    ``n ≈ (Σ W_i S_i / S(Ô))²`` with ``S_i = √(U_i (1 - U_i))`` from the anticipated user's
    accuracy ``U_i`` of each stratum and its area weight ``W_i``, rounded up.
    """
    w = np.asarray(weights, dtype=float)
    u = np.broadcast_to(np.asarray(expected_accuracy, dtype=float), w.shape)
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
    stratum gets at least one point when ``n`` allows it.
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
    if n >= len(codes):  # every stratum needs a point, or its pixels weigh nothing
        lower = np.maximum(lower, np.minimum(1.0, big_n))
    shares = _shares(weights, n, lower, big_n)
    counts = _round_to_total(shares, n, big_n.astype(np.int64))
    return {c: int(k) for c, k in zip(codes, counts, strict=True)}


# --- reading the map and the strata raster ----------------------------------------------------


def grid_of(ds: rasterio.io.DatasetReader) -> Grid:
    return Grid(ds.crs, ds.transform, ds.width, ds.height)


def band_index(ds: rasterio.io.DatasetReader, band: str | int, path: str | Path) -> int:
    """A 1-based band index from a number or a band description."""
    text = str(band)
    if text.isdigit() and 1 <= int(text) <= ds.count:
        return int(text)
    for i, name in enumerate(ds.descriptions, start=1):
        if name == text:
            return i
    names = [d or str(i) for i, d in enumerate(ds.descriptions, start=1)]
    raise InputDataError(f"no band {text!r} (bands: {', '.join(names)})", path)


def class_band(ds: rasterio.io.DatasetReader, path: str | Path) -> int:
    """The map's class band: the one named ``class``, or the only band."""
    if "class" in ds.descriptions:
        return ds.descriptions.index("class") + 1
    if ds.count == 1:
        return 1
    raise InputDataError("no band named 'class' in a map of several bands", path)


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster with GDAL's block cache capped, so that memory stays bounded whatever
    the size of the map (the cache would otherwise keep every decoded tile up to 5 % of RAM)."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        try:
            ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            problem = " ".join(str(exc).split())
            raise InputDataError(f"not a readable raster: {problem}", path) from None
        with ds:
            yield ds


def check_same_grid(
    reference: Grid, ds: rasterio.io.DatasetReader, path: str | Path, what: str = "the map's"
) -> None:
    other = grid_of(ds)
    if not reference.same_as(other):
        raise InputDataError(
            f"grid {other.width}×{other.height} {other.crs} {tuple(other.transform)[:6]} differs "
            f"from {what} {reference.width}×{reference.height} {reference.crs} "
            f"{tuple(reference.transform)[:6]}",
            path,
        )


def strips(grid: Grid, block_rows: int = 1) -> Iterator[Window]:
    """Full-width row strips of about :data:`STRIP_PIXELS` pixels, top to bottom, a multiple
    of ``block_rows`` high (the raster's tile height, so that no tile is decoded twice)."""
    rows = max(1, STRIP_PIXELS // max(grid.width, 1)) // block_rows * block_rows
    rows = max(rows, block_rows)
    for r0 in range(0, grid.height, rows):
        yield Window(0, r0, grid.width, min(rows, grid.height - r0))


def block_rows(ds: rasterio.io.DatasetReader, band: int = 1) -> int:
    """The tile height of a band (1 for strip-organised files of one row per block)."""
    return max(1, int(ds.block_shapes[band - 1][0]))


def read_map_classes(ds: rasterio.io.DatasetReader, band: int, window: Window) -> np.ndarray:
    """Map classes of a window as int32, -1 on nodata."""
    values = ds.read(band, window=window)
    nodata = ds.nodatavals[band - 1]
    out = values.astype(np.int32)
    out[values == (MAP_NODATA if nodata is None else int(nodata))] = -1
    return out


def map_class_pixels(ds: rasterio.io.DatasetReader, band: int) -> dict[int, int]:
    """Pixels of each class of a map (nodata left out), read strip by strip."""
    pixels: dict[int, int] = {}
    for window in strips(grid_of(ds), block_rows(ds, band)):
        for c, k in _counts(read_map_classes(ds, band, window)).items():
            pixels[c] = pixels.get(c, 0) + k
    return pixels


def _levels(
    ds: rasterio.io.DatasetReader, band: int, window: Window, edges: Sequence[float] | None
) -> np.ndarray:
    values = ds.read(band, window=window, masked=True)
    data, missing = values.data, np.ma.getmaskarray(values)
    if data.dtype.kind == "f":
        missing = missing | ~np.isfinite(data)
        data = np.where(missing, 0, data)
    levels = np.digitize(data, edges) if edges else np.rint(data.astype(np.float64))
    if levels.size and (levels.min() < 0 or levels.max() >= 2**23):
        raise InputDataError(
            "strata values outside 0..8388607: bin them with strata_edges", ds.name
        )
    out = levels.astype(np.int32)
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
        raise InputDataError("give a sample size (--n) or a target SE (--target-se), not both")
    if strata is None and options.strata_edges:
        raise InputDataError("strata_edges bin a strata raster: give one (--strata)", map_path)
    stratifier = _Stratifier(map_path, Path(strata) if strata is not None else None, options)
    per_strip: list[dict[int, int]] = []
    map_pixels: dict[int, int] = {}
    mixed: dict[int, set[int]] = {}
    for _window, classes, codes in stratifier:
        per_strip.append(_counts(codes))
        # The population is the stratified pixels (a strata raster's nodata is left out).
        for c, k in _counts(np.where(codes >= 0, classes, -1)).items():
            map_pixels[c] = map_pixels.get(c, 0) + k
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
    return Sample(points, strata_rows, dict(sorted(map_pixels.items())), stratifier.grid, design)


def _describe(
    code: int, has_raster: bool, options: SamplingOptions, mixed: Mapping[int, set[int]]
) -> tuple[int | None, int | None]:
    if not has_raster:
        return code, None
    if options.cross_map_class:
        return code % LEVEL_FACTOR, code // LEVEL_FACTOR
    classes = mixed.get(code, set())
    return (next(iter(classes)) if len(classes) == 1 else None), code


def _counts(values: np.ndarray) -> dict[int, int]:
    codes, counts = np.unique(values[values >= 0], return_counts=True)
    return dict(zip(codes.tolist(), counts.tolist(), strict=True))


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


# --- reference labels from a raster ---------------------------------------------------------


@dataclass(frozen=True)
class MapClasses:
    """What a map's class numbers are: a crop-type map's class names by index, or a one-crop
    map's crop (its ``POSITIVE`` tag), class 1 against the rest, 0."""

    names: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many classes the map can hold (a one-crop map: 0 and 1)."""
        return len(self.names) or 2

    def design(self) -> dict[str, str]:
        """The entries of a sample's ``design`` that keep them."""
        return {"class_names": json.dumps(list(self.names)), "positive": ",".join(self.positive)}


def map_class_names(ds: rasterio.io.DatasetReader) -> tuple[str, ...]:
    """A crop-type map's class names by index (its ``CLASS_NAMES`` tag); empty for a binary
    map."""
    names = ds.tags().get("CLASS_NAMES")
    return tuple(json.loads(names)) if names else ()


def map_classes(ds: rasterio.io.DatasetReader, path: str | Path) -> MapClasses:
    """The classes of the map open as ``ds``: ``CLASS_NAMES``, or the ``POSITIVE`` tag of its
    class band (as ``predict`` writes it) or of the file (a map from elsewhere)."""
    band = class_band(ds, path)
    named = ds.tags(band).get("POSITIVE") or ds.tags().get("POSITIVE", "")
    return MapClasses(map_class_names(ds), tuple(p for p in named.split(",") if p))


def sample_map_classes(sample: Sample) -> MapClasses | None:
    """The classes of the map a sample was drawn from: kept in its design, else read from the
    map where it still is (a sample of an older sarcrop); None when neither says."""
    design = sample.design
    if "class_names" in design:
        positive = design.get("positive", "")
        names = tuple(json.loads(design["class_names"]))
        return MapClasses(names, tuple(p for p in positive.split(",") if p))
    map_path = design.get("map")
    if map_path and Path(map_path).is_file():
        with open_raster(map_path) as ds:
            return map_classes(ds, map_path)
    return None


def check_one_crop_labels(
    labels: ReferenceOptions | None, map_path: str | Path, classes: MapClasses | None = None
) -> None:
    """Refuse ``positive_codes`` (labels read as one crop, 1, against the rest, 0) for a
    crop-type map, whose class 0 and 1 are two of its crops: every accuracy and area would be
    of other classes than they say. ``classes``: the map's, where known (else read)."""
    if labels is None or labels.positive_codes is None:
        return
    if classes is None:
        with open_raster(map_path) as ds:
            classes = map_classes(ds, map_path)
    names = classes.names
    if names:
        raise InputDataError(
            f"--positive-codes reads the labels as one crop against the rest (1 and 0), and "
            f"this crop-type map has {len(names)} classes ({', '.join(names)}): name the "
            "label codes with --legend (WorldCereal) or --code-map to match them to its "
            "classes, give labels of its class numbers, or map one crop (predict --positive)",
            map_path,
        )


def check_reference_classes(
    referenced: Iterable[int], classes: MapClasses, source: str | Path
) -> None:
    """Refuse reference classes a map of ``classes`` cannot hold: crop codes (WorldCereal's
    1200 for maize) read as map classes would make every accuracy and area meaningless."""
    count = classes.count
    stray = sorted({int(c) for c in referenced} - set(range(count)) - {UNLABELLED})
    if stray:
        shown = ", ".join(map(str, stray[:6])) + (", …" if len(stray) > 6 else "")
        hint = (
            "name its codes with --legend (a WorldCereal legend CSV) or --code-map (a JSON "
            "object of code: class name) to match them to the map's classes by name"
            if classes.names
            else "give the map's crop with --positive-codes (e.g. 1200, WorldCereal maize)"
        )
        raise InputDataError(
            f"reference classes {shown} are not classes of the map (0 to {count - 1}, and -1 "
            f"for no class); for a raster of crop codes {hint}",
            source,
        )


@dataclass
class LabelReader:
    """Label raster values → reference classes of a map (int64, -1 = unlabelled), built by
    :func:`label_reader`. Values are read as they are, as one crop (``positive``) against the
    rest, or by name (``names``: value → class name; ``rest``: the name of values not listed,
    None where they are refused), matched to the map's ``classes`` by name."""

    path: str | Path
    nodata: float | None
    positive: tuple[int, ...] | None = None
    names: dict[int, str] | None = None
    rest: str | None = None
    classes: MapClasses = field(default_factory=MapClasses)
    folded: set[str] = field(default_factory=set)
    """Label classes met that the crop-type map has not, counted as its ``other``."""
    _matched: dict[int, int] = field(default_factory=dict)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        data = np.asarray(values, dtype=np.float64)
        missing = ~np.isfinite(data)
        if self.nodata is not None:
            missing |= data == self.nodata
        codes = np.rint(np.nan_to_num(data)).astype(np.int64)
        if self.names is None:
            out = codes if self.positive is None else np.isin(codes, self.positive)
        else:
            found, inverse = np.unique(codes[~missing], return_inverse=True)
            table = np.array([self._match(v) for v in found.tolist()], dtype=np.int64)
            out = np.zeros(codes.shape, dtype=np.int64)
            out[~missing] = table[inverse.ravel()]
        out = out.astype(np.int64)
        out[missing] = UNLABELLED
        return out

    def _match(self, value: int) -> int:
        if value in self._matched:
            return self._matched[value]
        assert self.names is not None
        name = self.names.get(value, self.rest)
        if name is None:
            raise InputDataError(
                f"label value {value} has no class name (its CLASS_<i> tags name "
                f"{', '.join(self.names.values())})",
                self.path,
            )
        matched = _map_class(name, self.classes)
        if matched == NO_MATCH:
            raise InputDataError(
                f"label class {name!r} is not a class of the map ({', '.join(self.classes.names)}"
                "), which has no 'other' class to count it in: give a --code-map naming each "
                "code as one of its classes (or 'unlabelled')",
                self.path,
            )
        names = self.classes.names
        if names and matched >= 0 and class_key(name) != class_key(names[matched]):
            self.folded.add(name)  # the map's other
        self._matched[value] = matched
        return matched

    def warn_folded(self, stacklevel: int = 3) -> None:
        """Say which label classes the map has not and were counted as its ``other``."""
        if self.folded:
            import warnings

            names = ", ".join(map(repr, sorted(self.folded)[:12]))
            more = f" and {len(self.folded) - 12} more" if len(self.folded) > 12 else ""
            are = "classes" if len(self.folded) > 1 else "class"
            warnings.warn(
                f"{self.path}: label {are} {names}{more} not in the map's classes "
                f"({', '.join(self.classes.names)}): counted as its 'other'",
                stacklevel=stacklevel,
            )


def label_reader(
    ds: rasterio.io.DatasetReader,
    reference: ReferenceOptions,
    classes: MapClasses | None,
    path: str | Path,
    map_path: str | Path | None = None,
) -> LabelReader:
    """How the values of the label raster open as ``ds`` (at ``path``) become reference
    classes of a map of ``classes`` (None: not known), as ``reference`` says: see
    :class:`~sarcrop.options.ReferenceOptions`. Options that cannot be read so are refused
    here, before a value is read; a label class that matches none of a crop-type map's (one
    without ``other``) when it is met."""
    band = reference.label_band
    if band > ds.count:
        raise InputDataError(f"no band {band} ({ds.count} bands)", path)
    nodata = ds.nodatavals[band - 1]
    check_one_crop_labels(reference, map_path or path, classes or MapClasses())
    named = _value_names(ds, reference, classes, map_path or path)
    if named is not None:
        assert classes is not None  # names are only matched to a map's known classes
        return LabelReader(path, nodata, names=named[0], rest=named[1], classes=classes)
    positive = reference.positive_codes
    if positive is not None:
        require_positive_codes(ds, reference, path)
    else:
        tags = ds.tags()
        if "POSITIVE" in tags and "CLASSES" in tags:  # a simulated region, a one-crop map
            positive = (json.loads(tags["CLASSES"]).index(tags["POSITIVE"]),)
    return LabelReader(path, nodata, positive=positive)


NO_MATCH = -2
"""A label class that no class of the map holds (a crop-type map without ``other``)."""


def _value_names(
    ds: rasterio.io.DatasetReader,
    reference: ReferenceOptions,
    classes: MapClasses | None,
    map_path: str | Path,
) -> tuple[dict[int, str], str | None] | None:
    """Label values → class names and the name of values not listed (None: refused), where
    the labels are read by name: codes named by a legend or a code map (as ``prepare`` reads
    them; unlisted codes are ``other``), or, for a crop-type map, a raster naming its classes
    (``CLASS_<i>`` tags, else a ``CLASSES`` list). None: values are read as they are."""
    from sarcrop.data.legends import worldcereal_code_map

    by_code = reference.legend is not None or reference.code_map is not None
    if by_code and (classes is None or not (classes.names or classes.positive)):
        known = "has no POSITIVE tag naming its crop" if classes else "is not at hand"
        raise InputDataError(
            f"--legend and --code-map name the label codes to match them to the map's classes, "
            f"and the map {known}: give its crop's codes with --positive-codes",
            map_path,
        )
    if reference.legend is not None:
        assert classes is not None
        # A one-crop map was trained on its crop with every sub-class (prepare --positive).
        positive = None if classes.names else classes.positive
        return worldcereal_code_map(reference.legend, positive=positive), OTHER
    if reference.code_map is not None:
        return dict(reference.code_map), OTHER
    if classes is None or not (classes.names or classes.positive):
        return None
    if reference.positive_codes is not None:
        return None
    tags = ds.tags()
    named = class_tags(tags)
    if not named and "CLASSES" in tags:
        named = dict(enumerate(json.loads(tags["CLASSES"])))
    if named and not classes.names:  # a one-crop map: its crop, by name, against the rest
        crop = {class_key(p) for p in classes.positive}
        if not crop & {class_key(n) for n in named.values()}:
            raise InputDataError(
                f"the map's crop ({', '.join(classes.positive)}) is none of the label "
                f"classes ({', '.join(named.values())}): give its codes with --positive-codes",
                map_path,
            )
    return (named, None) if named else None


def _map_class(name: str, classes: MapClasses) -> int:
    """The map class of a label class ``name`` (names compared as ``class_key``): a crop-type
    map's class of that name, else its ``other`` (else :data:`NO_MATCH`); a one-crop map's
    crop (1) or the rest (0). ``unlabelled`` labels nothing (-1)."""
    key = class_key(name)
    if key == UNLABELLED_NAME:
        return UNLABELLED
    if not classes.names:
        return int(key in {class_key(p) for p in classes.positive})
    folded = {class_key(n): i for i, n in enumerate(classes.names)}
    return folded.get(key, folded.get(OTHER, NO_MATCH))


def require_positive_codes(
    ds: rasterio.io.DatasetReader, reference: ReferenceOptions, path: str | Path
) -> None:
    """Refuse ``positive_codes`` that no pixel of the label band holds: a slip of one digit
    (1220 for WorldCereal's maize, 1200) or another band made the crop's area 0 without a sign.
    Read block by block, up to the first pixel of the crop."""
    codes = reference.positive_codes
    if codes is None:
        return
    band = reference.label_band
    nodata = ds.nodatavals[band - 1]
    held: set[float] = set()
    for _, window in ds.block_windows(band):
        values = ds.read(band, window=window)
        if np.isin(values, codes).any():
            return
        valid = np.isfinite(values)
        if nodata is not None:
            valid &= values != nodata
        held.update(np.unique(values[valid])[:100].tolist())
    listed = ", ".join(f"{v:g}" for v in sorted(held)[:12]) + (", …" if len(held) > 12 else "")
    given = ", ".join(str(c) for c in codes)
    raise InputDataError(
        f"--positive-codes {given}: no pixel of band {band} holds them (its codes: "
        f"{listed or 'none'})",
        path,
    )


def values_at(ds: rasterio.io.DatasetReader, band: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixel values of ``band`` at points ``(x, y)`` (float, NaN outside or on nodata), read
    point by point, so that a sample never reads a whole raster."""
    values = ds.sample(zip(x.tolist(), y.tolist(), strict=True), indexes=band, masked=True)
    return np.array([np.nan if v.mask.any() else float(v[0]) for v in values])


def reference_at(
    labels: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    crs: object,
    reference: ReferenceOptions | None = None,
    classes: MapClasses | None = None,
    map_path: str | Path | None = None,
) -> np.ndarray:
    """Reference classes of a label raster at points ``(x, y)`` in ``crs`` (-1 = none), for
    a map of ``classes`` (:func:`label_reader`)."""
    reference = reference or ReferenceOptions()
    with open_raster(labels) as ds:
        read = label_reader(ds, reference, classes, labels, map_path)
        if ds.crs != crs:
            raise InputDataError(f"CRS {ds.crs} differs from the sample's {crs}", labels)
        found = read(values_at(ds, reference.label_band, x, y))
    read.warn_folded(4)  # the caller of fill_reference
    return found


def fill_reference(
    sample: Sample, labels: str | Path, options: ReferenceOptions | None = None
) -> Sample:
    """A copy of ``sample`` with its ``reference`` column read from a label raster, as
    ``options`` say (as :func:`~sarcrop.evaluation.assessment.assess` reads one), for the
    classes of the map sampled; points on the raster's nodata (or outside it) get -1, no
    reference class (they count in areas). Reference classes the map cannot hold are refused
    (:func:`check_reference_classes`)."""
    options = None if options is None else as_options(ReferenceOptions, options, "options")
    classes = sample_map_classes(sample)
    map_path = sample.design.get("map")
    points = sample.points.copy()
    found = reference_at(
        labels,
        points["x"].to_numpy(),
        points["y"].to_numpy(),
        sample.grid.crs,
        options,
        classes,
        map_path,
    )
    if classes is not None:
        check_reference_classes(found.tolist(), classes, labels)
    points["reference"] = pd.array(found, dtype="Int64")
    design = {**sample.design, "reference_from": str(labels)}
    return Sample(points, sample.strata, sample.map_pixels, sample.grid, design)


# --- GeoPackage -----------------------------------------------------------------------------


def write_points_csv(sample: Sample, out: str | Path) -> Path:
    """The points as a CSV table for labelling tools: ``point_id``, ``lon``/``lat`` (WGS 84),
    ``x``/``y`` (map CRS) and the sample's columns. Labels come back with
    :func:`labels_from_table`."""
    from rasterio.warp import transform as warp

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
    labels = _as_classes(frame.set_index(id_column)[label_column], table, label_column)
    points = sample.points.copy()
    points["reference"] = pd.array(points["point_id"].map(labels), dtype="Int64")
    return replace(sample, points=points, design={**sample.design, "reference_from": str(table)})


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
    labelled = int(read_sample(out).points["reference"].notna().sum())
    if labelled:
        raise InputDataError(
            f"holds a sample with {labelled} reference labels, which a new sample would "
            "replace: choose another output, or remove the file first",
            out,
        )


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
        mapped = values_at(ds, band, x, y)
        map_pixels = map_class_pixels(ds, band)
    inside = np.isfinite(mapped)
    if not inside.all():
        warnings.warn(f"{int((~inside).sum())} points off the map are left out", stacklevel=2)
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
    n = _counts(classes)
    points["inclusion_probability"] = [n[c] / map_pixels[c] for c in classes.tolist()]
    strata = tuple(Stratum(c, c, None, k, n.get(c, 0)) for c, k in sorted(map_pixels.items()))
    design = {
        "map": str(map_path),
        "grid": json.dumps(grid.to_dict()),
        "kind": "simple random or systematic sample, post-stratified by map class",
        **classes_of_map.design(),
    }
    return Sample(points, strata, dict(sorted(map_pixels.items())), grid, design)


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
    if label_column not in points.columns:
        raise InputDataError(
            f"no label column {label_column!r} (columns: {', '.join(points.columns)})", path
        )
    strata = pyogrio.read_dataframe(path, layer="strata", read_geometry=False)
    classes = pyogrio.read_dataframe(path, layer="map_classes", read_geometry=False)
    design_rows = pyogrio.read_dataframe(path, layer="design", read_geometry=False)
    design = dict(zip(design_rows["key"], design_rows["value"], strict=True))
    points = (
        points.rename(columns={label_column: "reference"})
        if label_column != "reference"
        else points
    )
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
