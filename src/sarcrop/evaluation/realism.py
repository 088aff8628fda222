"""Realism of backscatter: per-crop statistics measured the same way on real and simulated scenes.

A scene source (any layout :func:`~sarcrop.data.reader.open_scenes` reads) and a label source
are taken onto the scene grid (labels as :func:`~sarcrop.data.prepare.prepare` takes them), and
for each crop the module measures what a model trained on simulated data relies on:

- per composite period, the VH and VV median and interquartile range over the crop's pixels;
- per pixel, the lag-1 autocorrelation of the in-season acquisition series (dB) and the VH–VV
  correlation over time (median over pixels);
- speckle: the spatial lag-1 correlation and the standard deviation of single-acquisition
  residuals with both the pixel's season mean and the field's per-date mean removed (real GRD
  is multi-looked and resampled, so its speckle is spatially correlated);
- texture: the same correlation of the per-pixel season means around their field mean;
- field edges: the share of a crop's pixels on a field edge, and how much further edge pixels
  lie from the crop's interior time series than interior pixels do (mixed pixels);
- grassland mowing: sharp drops and rises of the VH series per pixel and season.

Fields are the parcels of :func:`~sarcrop.data.parcels.parcel_ids`: connected components
(4-neighbour) of each class. The labels carry no field ids, so neighbouring fields of the same
crop merge into one "field" and the within-field statistics (speckle, texture) cross their
boundaries. Fields of fewer than :data:`MIN_PIXELS` pixels are left out, on real and simulated
scenes alike: a bootstrap over fields draws a 10-pixel field as often as a 300-pixel one.
Each statistic is a :class:`Sample` of per-pixel (or per-field) values with their field ids, so
an interval comes from a bootstrap over fields rather than pixels, which would overstate
certainty.
:func:`compare` puts real locations beside a simulated scene: a simulated value is "inside"
when it lies in at least one real location's bootstrap interval (their union, which has a gap
where the locations disagree); a location's interval counts only when it rests on at least
:data:`MIN_FIELDS` fields. :func:`coverage` puts them beside several simulations, the draws of
a domain-randomised preset that a pre-training sees together: a statistic is "covered" when
the draws' range meets at least one real location's interval.
:func:`real_against_real` holds each real location against another's intervals the same way,
the yardstick for how many statistics a simulation can be expected to have inside.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sarcrop.data.composite import composite, period_indices
from sarcrop.data.labels import labels_from_file
from sarcrop.data.legends import worldcereal_code_map
from sarcrop.data.parcels import parcel_ids
from sarcrop.data.reader import Source, open_scenes
from sarcrop.data.season import Season
from sarcrop.data.units import linear_to_db
from sarcrop.options import CompositeOptions, LabelOptions, SceneOptions

BANDS: tuple[str, ...] = ("VH", "VV")
#: A field with fewer labelled pixels than this is not measured (nor a crop without a larger one).
MIN_PIXELS = 16
#: A location's interval counts only when it rests on at least this many fields: the bootstrap
#: of a single field gives a point, which no other sample meets.
MIN_FIELDS = 2
#: A step of the smoothed VH series at least this large (dB) counts as a sharp drop or rise.
MOWING_STEP_DB = 2.0

#: WorldCereal crop-type codes of the crops the simulator grows in Europe. Real Flanders
#: labels have winter wheat and "winter cereal" (mostly wheat): both stand for the simulated
#: winter wheat.
WORLDCEREAL_CROPS: dict[str, tuple[int, ...]] = {
    "maize": (1200,),
    "wheat": (1110, 1910),
    "potato": (5100,),
    "grassland": (9120,),
}

Reducer = Callable[[np.ndarray], float]


def crop_code_map(
    legend: str | Path, crops: Mapping[str, Sequence[int]] = WORLDCEREAL_CROPS
) -> dict[int, str]:
    """WorldCereal code → simulator crop name for ``crops`` (every other code is "other")."""
    out: dict[int, str] = {}
    for name, codes in crops.items():
        binary = worldcereal_code_map(legend, list(codes), name=name, include_subclasses=False)
        out.update({code: crop for code, crop in binary.items() if crop == name})
    return out


@dataclass(frozen=True)
class SceneData:
    """In-season acquisitions, composites and labels of one scene, all on the scene grid."""

    series: np.ndarray  # (t, 2, h, w) dB, VH then VV, NaN = nodata
    composites: np.ndarray  # (steps, 2, h, w) dB
    labels: np.ndarray  # (h, w) class index, -1 unlabelled
    classes: tuple[str, ...]
    season: Season
    resolution: float

    def describe(self) -> dict[str, object]:
        return {
            "season": self.season.to_dict(),
            "acquisitions": int(self.series.shape[0]),
            "resolution_m": self.resolution,
            "shape": list(self.labels.shape),
        }


def load_scene(
    source: Source,
    labels: str | Path,
    season: Season,
    *,
    label_options: LabelOptions = LabelOptions(),
    scenes: SceneOptions = SceneOptions(),
    composite_options: CompositeOptions = CompositeOptions(),
) -> SceneData:
    """Read ``source`` and ``labels`` onto the scene grid; keep the acquisitions in ``season``."""
    stack = open_scenes(
        source, bands=BANDS, crs=scenes.crs, resolution=scenes.resolution, orbit=scenes.orbit
    )
    area_labels, classes = labels_from_file(labels, stack.grid, label_options)
    indices = [i for period in period_indices(stack, season) for i in period]
    series = stack.read(indices, BANDS) if indices else np.empty((0, 2, *area_labels.shape))
    if stack.units == "linear":
        series = linear_to_db(series)
    composites = composite(
        stack,
        season,
        BANDS,
        **composite_options.model_dump(),
    )
    return SceneData(
        series=np.asarray(series, dtype=np.float64),
        composites=np.asarray(composites, dtype=np.float64),
        labels=area_labels,
        classes=tuple(classes),
        season=season,
        resolution=float(min(stack.grid.resolution)),
    )


# ---------------------------------------------------------------------------------------------
# Samples: values with their field ids, reduced to one number, bootstrapped over fields


@dataclass(frozen=True)
class Sample:
    """Per-unit ``values`` (rows), the field of each unit, and how they reduce to one number."""

    values: np.ndarray  # (n, k)
    fields: np.ndarray  # (n,)
    reduce: Reducer = field(compare=False)

    def estimate(self) -> float:
        return float(self.reduce(self.values)) if len(self.values) else float("nan")

    def interval(
        self, draws: int, rng: np.random.Generator, level: float = 0.9
    ) -> tuple[float, float]:
        """Percentile interval of the estimate when whole fields are resampled with replacement."""
        if not len(self.values):
            return float("nan"), float("nan")
        ids, inverse = np.unique(self.fields, return_inverse=True)
        groups = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
        estimates = []
        for _ in range(draws):
            chosen = rng.integers(0, len(ids), len(ids))
            estimates.append(self.reduce(self.values[np.concatenate([groups[i] for i in chosen])]))
        finite = np.asarray(estimates, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if not finite.size:
            return float("nan"), float("nan")
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(finite, [tail, 100 - tail])
        return float(low), float(high)


def _median(values: np.ndarray) -> float:
    column = values[:, 0]
    column = column[np.isfinite(column)]
    return float(np.median(column)) if column.size else float("nan")


def _iqr(values: np.ndarray) -> float:
    column = values[:, 0]
    column = column[np.isfinite(column)]
    if not column.size:
        return float("nan")
    q25, q75 = np.percentile(column, [25, 75])
    return float(q75 - q25)


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values[:, 0])) if len(values) else float("nan")


def _pair_correlation(values: np.ndarray) -> float:
    """Columns Σab, Σa², Σb² (per field) → the pooled correlation of the pairs."""
    ab, aa, bb = values[:, :3].sum(axis=0)
    return float(ab / np.sqrt(aa * bb)) if aa > 0 and bb > 0 else float("nan")


def _root_mean_square(values: np.ndarray) -> float:
    """Columns Σr², n (per field) → sqrt(Σr² / n)."""
    total, count = values[:, 3].sum(), values[:, 4].sum()
    return float(np.sqrt(total / count)) if count > 0 else float("nan")


def _edge_contrast(values: np.ndarray) -> float:
    """Columns deviation, edge flag → median deviation of edge minus interior pixels."""
    finite = np.isfinite(values[:, 0])
    edge = finite & (values[:, 1] == 1)
    interior = finite & (values[:, 1] == 0)
    if not edge.any() or not interior.any():
        return float("nan")
    return float(np.median(values[edge, 0]) - np.median(values[interior, 0]))


# ---------------------------------------------------------------------------------------------
# Statistics on plain arrays (the building blocks, testable on hand-made data)


def lag1_autocorrelation(series: np.ndarray) -> np.ndarray:
    """Lag-1 autocorrelation along axis 0 of each pixel's series; NaN where undefined.

    The usual estimator Σ(x_t − m)(x_{t+1} − m) / Σ(x_t − m)²: a constant series (zero
    variance), one with a missing value or fewer than three values has no defined value.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.shape[0] < 3:
        return np.full(x.shape[1:], np.nan)
    centred = x - x.mean(axis=0)
    denominator = (centred**2).sum(axis=0)
    numerator = (centred[:-1] * centred[1:]).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = numerator / denominator
    return np.where(denominator > 1e-12, out, np.nan)


def temporal_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along axis 0 of two series per pixel; NaN where undefined."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ca, cb = a - a.mean(axis=0), b - b.mean(axis=0)
    denominator = np.sqrt((ca**2).sum(axis=0) * (cb**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ca * cb).sum(axis=0) / denominator
    return np.where(denominator > 1e-12, out, np.nan)


def field_residuals(series: np.ndarray, fields: np.ndarray, *, pixel_mean: bool) -> np.ndarray:
    """``series`` (t, h, w) minus each field's per-date mean (and, with ``pixel_mean``, minus
    each pixel's own mean over time, i.e. the residual is double-centred). NaN outside fields
    and at pixels with any missing date."""
    x = np.asarray(series, dtype=np.float64)
    usable = (fields >= 0) & np.isfinite(x).all(axis=0)
    out = np.full(x.shape, np.nan)
    if not usable.any():
        return out
    ids = fields[usable]
    values = x[:, usable]  # (t, n)
    if pixel_mean:
        values = values - values.mean(axis=0)
    count = np.bincount(ids)
    for t in range(values.shape[0]):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(ids, weights=values[t]) / count
        out[t][usable] = values[t] - mean[ids]
    return out


def neighbour_pairs(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (a, b) of right and lower neighbours that lie in the same field."""
    h, w = fields.shape
    index = np.arange(h * w).reshape(h, w)
    firsts, seconds = [], []
    for a, b in ((index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :])):
        fa, fb = fields.ravel()[a.ravel()], fields.ravel()[b.ravel()]
        same = (fa >= 0) & (fa == fb)
        firsts.append(a.ravel()[same])
        seconds.append(b.ravel()[same])
    return np.concatenate(firsts), np.concatenate(seconds)


def spatial_sums(residuals: np.ndarray, fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-field columns (Σ r_a r_b, Σ r_a², Σ r_b², Σ r², n) over neighbour pairs and dates.

    ``residuals`` is (t, h, w) (or (h, w)); the first three columns give the lag-1 spatial
    correlation of the residuals inside fields, the last two their standard deviation.
    Returns (sums, field id of each row).
    """
    r = np.asarray(residuals, dtype=np.float64)
    r = r[None] if r.ndim == 2 else r
    flat = r.reshape(r.shape[0], -1)
    first, second = neighbour_pairs(fields)
    a, b = flat[:, first], flat[:, second]
    ok = np.isfinite(a) & np.isfinite(b)
    pair_field = np.broadcast_to(fields.ravel()[first], a.shape)[ok]
    n_fields = int(fields.max()) + 1 if (fields >= 0).any() else 0
    sums = np.zeros((n_fields, 5))
    sums[:, 0] = np.bincount(pair_field, weights=(a * b)[ok], minlength=n_fields)
    sums[:, 1] = np.bincount(pair_field, weights=(a * a)[ok], minlength=n_fields)
    sums[:, 2] = np.bincount(pair_field, weights=(b * b)[ok], minlength=n_fields)
    valid = np.isfinite(flat) & (fields.ravel() >= 0)[None]
    pixel_field = np.broadcast_to(fields.ravel(), flat.shape)[valid]
    sums[:, 3] = np.bincount(pixel_field, weights=flat[valid] ** 2, minlength=n_fields)
    sums[:, 4] = np.bincount(pixel_field, minlength=n_fields)
    used = sums[:, 4] > 0
    return sums[used], np.arange(n_fields)[used]


def spatial_autocorrelation(residuals: np.ndarray, fields: np.ndarray) -> float:
    """Lag-1 spatial correlation of residuals over same-field neighbour pairs (pooled)."""
    sums, _ = spatial_sums(residuals, fields)
    return _pair_correlation(sums) if len(sums) else float("nan")


def edge_flags(labels: np.ndarray) -> np.ndarray:
    """1 on a class's edge (a 4-neighbour has another label, unlabelled included), 0 in its
    interior (all 8 neighbours share the label), -1 otherwise. The image border counts as
    the same class (what lies beyond is unknown)."""
    padded = np.pad(labels, 1, mode="edge")
    h, w = labels.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    edge = np.zeros(labels.shape, dtype=bool)
    interior = np.ones(labels.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            differs = shifted(dy, dx) != labels
            interior &= ~differs
            if dy == 0 or dx == 0:
                edge |= differs
    out = np.full(labels.shape, -1, dtype=np.int8)
    out[interior] = 0
    out[edge] = 1
    out[labels < 0] = -1
    return out


def field_smooth(series: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """A 3×3 mean in linear power of a (t, h, w) dB series over neighbours in the same field."""
    power = 10 ** (np.asarray(series, dtype=np.float64) / 10)
    h, w = fields.shape
    padded = np.pad(power, ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    padded_fields = np.pad(fields, 1, constant_values=-1)
    total = np.zeros(power.shape)
    count = np.zeros(power.shape)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            value = padded[:, dy : dy + h, dx : dx + w]
            same = (padded_fields[dy : dy + h, dx : dx + w] == fields) & (fields >= 0)
            ok = same[None] & np.isfinite(value)
            total += np.where(ok, value, 0)
            count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return 10 * np.log10(total / count)


def sharp_changes(series: np.ndarray, step_db: float = MOWING_STEP_DB) -> np.ndarray:
    """Sharp drops and rises per pixel of a (t, h, w) dB series (NaN where any date is missing).

    The series is smoothed with a running median of three acquisitions, so a single speckle
    spike is not an event (smooth it in space first, :func:`field_smooth`); then each maximal
    run of same-sign steps whose total change is at least ``step_db`` counts once (a mowing
    drop, a regrowth rise).
    """
    x = np.asarray(series, dtype=np.float64)
    if x.shape[0] < 4:
        return np.full(x.shape[1:], np.nan)
    padded = np.concatenate([x[:1], x, x[-1:]])
    smooth = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    steps = np.diff(smooth, axis=0)
    count = np.zeros(x.shape[1:])
    run = np.zeros(x.shape[1:])
    for step in steps:
        continues = np.sign(step) == np.sign(run)
        run = np.where(continues, run + step, step)
        # A run is counted the moment it first reaches the threshold.
        crossed = (np.abs(run) >= step_db) & ~(continues & (np.abs(run - step) >= step_db))
        count += crossed
    return np.where(np.isfinite(x).all(axis=0), count, np.nan)


# ---------------------------------------------------------------------------------------------
# Measuring a scene


def measure(scene: SceneData, crops: Sequence[str]) -> dict[tuple[str, str], Sample]:
    """Every statistic for every crop of ``crops`` present in the scene, keyed (statistic, crop).

    Only fields of at least :data:`MIN_PIXELS` pixels are measured: a few (mostly edge) pixels
    say little about a field, yet the bootstrap over fields would give them a full field's weight.
    """
    fields = parcel_ids(scene.labels)
    labelled = fields >= 0
    large = np.zeros(fields.shape, dtype=bool)
    large[labelled] = np.bincount(fields[labelled])[fields[labelled]] >= MIN_PIXELS
    flags = edge_flags(scene.labels)
    complete = np.isfinite(scene.series).all(axis=(0, 1))
    out: dict[tuple[str, str], Sample] = {}
    for crop in crops:
        if crop not in scene.classes:
            continue
        mask = (scene.labels == scene.classes.index(crop)) & large
        if not mask.any():
            continue
        for name, sample in _crop_samples(scene, mask, fields, flags, complete, crop):
            out[(name, crop)] = sample
    return out


def _crop_samples(
    scene: SceneData,
    mask: np.ndarray,
    fields: np.ndarray,
    flags: np.ndarray,
    complete: np.ndarray,
    crop: str,
) -> list[tuple[str, Sample]]:
    out: list[tuple[str, Sample]] = []
    ids = fields[mask]

    def pixels(values: np.ndarray, reduce: Reducer, where: np.ndarray = mask) -> Sample:
        return Sample(np.column_stack([values[where]]), fields[where], reduce)

    for k in range(scene.composites.shape[0]):
        for b, band in enumerate(BANDS):
            image = scene.composites[k, b]
            out.append((f"{band} median p{k + 1}", pixels(image, _median)))
            out.append((f"{band} IQR p{k + 1}", pixels(image, _iqr)))
    series_ok = mask & complete
    crop_fields = np.where(series_ok, fields, -1)
    for b, band in enumerate(BANDS):
        out.append(
            (
                f"{band} temporal AC lag1",
                pixels(lag1_autocorrelation(scene.series[:, b]), _median, series_ok),
            )
        )
    out.append(
        (
            "VH-VV temporal correlation",
            pixels(
                temporal_correlation(scene.series[:, 0], scene.series[:, 1]), _median, series_ok
            ),
        )
    )
    for b, band in enumerate(BANDS):
        speckle = field_residuals(scene.series[:, b], crop_fields, pixel_mean=True)
        sums, owners = spatial_sums(speckle, crop_fields)
        out.append((f"{band} speckle spatial AC", Sample(sums, owners, _pair_correlation)))
        out.append((f"{band} speckle std dB", Sample(sums, owners, _root_mean_square)))
        season_mean = scene.series[:, b].mean(axis=0)[None]
        texture = field_residuals(season_mean, crop_fields, pixel_mean=False)
        sums, owners = spatial_sums(texture, crop_fields)
        out.append((f"{band} texture spatial AC", Sample(sums, owners, _pair_correlation)))
    out.append(("edge pixel share", Sample((flags[mask] == 1)[:, None].astype(float), ids, _mean)))
    out.append(("edge contrast dB", _edge_sample(scene, mask, fields, flags)))
    if crop == "grassland":
        changes = sharp_changes(field_smooth(scene.series[:, 0], crop_fields))
        out.append(("VH sharp changes per season", pixels(changes, _mean, series_ok)))
    return out


def _edge_sample(
    scene: SceneData, mask: np.ndarray, fields: np.ndarray, flags: np.ndarray
) -> Sample:
    """Per pixel: mean |composite − crop interior median| over periods and bands, edge flag."""
    comps = scene.composites  # (steps, 2, h, w)
    interior = mask & (flags == 0)
    pixels = comps[:, :, interior] if interior.any() else comps[:, :, mask]
    with warnings.catch_warnings():  # a period without data: NaN, its pixels are unobserved
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = np.nanmedian(pixels, axis=2)
    distance = np.abs(comps[:, :, mask] - reference[:, :, None])
    observed = np.isfinite(distance).all(axis=(0, 1))
    deviation = np.where(observed, np.where(observed, distance, 0).mean(axis=(0, 1)), np.nan)
    values = np.column_stack([deviation, flags[mask].astype(float)])
    return Sample(values, fields[mask], _edge_contrast)


# ---------------------------------------------------------------------------------------------
# Comparison


Interval = tuple[float, float]


def interval_union(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Closed intervals merged into sorted, disjoint pieces (intervals with a nan end dropped).

    Two locations that disagree leave a gap between their intervals: a value in it lies in
    neither, so the union is kept as pieces rather than one span.
    """
    pieces: list[list[float]] = []
    finite = (pair for pair in intervals if np.isfinite(pair[0]) and np.isfinite(pair[1]))
    for low, high in sorted(finite):
        if pieces and low <= pieces[-1][1]:
            pieces[-1][1] = max(pieces[-1][1], high)
        else:
            pieces.append([low, high])
    return tuple((low, high) for low, high in pieces)


def _within(value: float, pieces: Sequence[Interval]) -> bool:
    return any(low <= value <= high for low, high in pieces)


class _LocationIntervals:
    """The real side shared by a row and a coverage: intervals per location, read as one."""

    intervals: dict[str, Interval]

    @property
    def union(self) -> tuple[Interval, ...]:
        """The real interval: the union of the locations' intervals, as disjoint pieces."""
        return interval_union(self.intervals.values())


@dataclass(frozen=True)
class Row(_LocationIntervals):
    """One statistic of one crop: real values per location, the intervals of the locations with
    enough fields, and the simulated value."""

    statistic: str
    crop: str
    real: dict[str, float]
    intervals: dict[str, Interval]  # per location whose interval rests on >= MIN_FIELDS fields
    simulated: float
    fields: dict[str, int] = field(default_factory=dict)  # real fields measured, per location

    @property
    def inside(self) -> bool | None:
        """Whether the simulated value lies in at least one location's interval (None: no
        simulated value, or no location with an interval)."""
        pieces = self.union
        if not np.isfinite(self.simulated) or not pieces:
            return None
        return _within(self.simulated, pieces)

    @property
    def gap(self) -> float:
        """Signed distance to the real interval's nearest piece (0 inside, + above, − below)."""
        if self.inside is None:
            return float("nan")
        if self.inside:
            return 0.0
        distances = [
            self.simulated - (high if self.simulated > high else low) for low, high in self.union
        ]
        return min(distances, key=abs)

    def to_dict(self) -> dict[str, object]:
        return {
            "statistic": self.statistic,
            "crop": self.crop,
            "real": self.real,
            "real_intervals": {location: list(pair) for location, pair in self.intervals.items()},
            "real_union": [list(piece) for piece in self.union],
            "simulated": self.simulated,
            "inside": self.inside,
            "gap": self.gap,
            "real_fields": self.fields,
        }


def compare(
    real: Mapping[str, Mapping[tuple[str, str], Sample]],
    simulated: Mapping[tuple[str, str], Sample],
    *,
    draws: int = 200,
    seed: int = 0,
    min_fields: int = MIN_FIELDS,
) -> list[Row]:
    """Rows for every (statistic, crop) measured in at least one real location.

    The real interval is the union over locations of each location's field-bootstrap 90 %
    interval, so it holds the values of every location and their sampling spread but not the
    gap between two locations that disagree. A location with fewer than ``min_fields`` fields of
    the crop has no interval (one field bootstraps to a point).
    """
    return hold(real_intervals(real, draws=draws, seed=seed, min_fields=min_fields), simulated)


def real_intervals(
    real: Mapping[str, Mapping[tuple[str, str], Sample]],
    *,
    draws: int = 200,
    seed: int = 0,
    min_fields: int = MIN_FIELDS,
) -> list[Row]:
    """The real side of :func:`compare` (simulated values nan): bootstrap once, then
    :func:`hold` each of several simulations against the same intervals."""
    rng = np.random.default_rng(seed)
    keys = list(dict.fromkeys(key for samples in real.values() for key in samples))
    rows = []
    for key in keys:
        values: dict[str, float] = {}
        intervals: dict[str, Interval] = {}
        fields: dict[str, int] = {}
        for location, samples in real.items():
            if key not in samples:
                continue
            sample = samples[key]
            values[location] = sample.estimate()
            fields[location] = len(np.unique(sample.fields))
            if fields[location] >= min_fields:
                low, high = sample.interval(draws, rng)
                if np.isfinite(low) and np.isfinite(high):
                    intervals[location] = (low, high)
        rows.append(Row(key[0], key[1], values, intervals, float("nan"), fields))
    return rows


def hold(intervals: Sequence[Row], samples: Mapping[tuple[str, str], Sample]) -> list[Row]:
    """``intervals`` with their simulated value measured on ``samples`` (nan where unmeasured)."""
    held = []
    for row in intervals:
        sample = samples.get((row.statistic, row.crop))
        held.append(
            replace(row, simulated=sample.estimate() if sample is not None else float("nan"))
        )
    return held


@dataclass(frozen=True)
class Coverage(_LocationIntervals):
    """One statistic of one crop against several simulations: the real locations' intervals and
    the value of each simulation (e.g. each draw of a domain-randomised preset)."""

    statistic: str
    crop: str
    intervals: dict[str, Interval]
    simulated: tuple[float, ...]
    fields: dict[str, int] = field(default_factory=dict)

    @property
    def finite(self) -> list[float]:
        """The simulated values that could be measured (a crop may be absent from a draw)."""
        return [value for value in self.simulated if np.isfinite(value)]

    @property
    def covered(self) -> bool | None:
        """Whether the simulations' range [min, max] meets at least one location's interval: a
        pre-training on all of them has seen values like the real ones, though no single one
        need be inside."""
        values, pieces = self.finite, self.union
        if not values or not pieces:
            return None
        return any(min(values) <= high and max(values) >= low for low, high in pieces)

    @property
    def inside(self) -> int:
        """How many of the simulations lie inside at least one location's interval."""
        pieces = self.union
        return sum(_within(value, pieces) for value in self.finite)

    def to_dict(self) -> dict[str, object]:
        return {
            "statistic": self.statistic,
            "crop": self.crop,
            "real_intervals": {location: list(pair) for location, pair in self.intervals.items()},
            "real_union": [list(piece) for piece in self.union],
            "simulated": list(self.simulated),
            "covered": self.covered,
            "simulations_inside": self.inside,
            "real_fields": self.fields,
        }


def coverage(comparisons: Sequence[Sequence[Row]]) -> list[Coverage]:
    """One :class:`Coverage` per statistic from several :func:`compare` (or :func:`hold`) results.

    The comparisons must share their real side (the same real samples, bootstrap draws and
    seed), so that every simulation is held against the same intervals.
    """
    if not comparisons:
        raise ValueError("coverage needs at least one comparison")
    first = comparisons[0]
    for rows in comparisons[1:]:
        same = len(rows) == len(first) and all(
            (a.statistic, a.crop, a.intervals) == (b.statistic, b.crop, b.intervals)
            for a, b in zip(rows, first, strict=True)
        )
        if not same:
            raise ValueError(
                "comparisons differ in their real intervals: compare every simulation with the"
                " same real samples, draws and seed"
            )
    return [
        Coverage(
            row.statistic,
            row.crop,
            row.intervals,
            tuple(rows[i].simulated for rows in comparisons),
            row.fields,
        )
        for i, row in enumerate(first)
    ]


@dataclass(frozen=True)
class CrossCheck:
    """One real location held against another's interval, as a simulation is, beside the
    simulations held against the same interval, on one crop's statistics (or ``"all"``)."""

    reference: str  # the location whose bootstrap intervals are the yardstick
    location: str  # the location held against them
    crop: str
    statistics: int  # statistics measured in both locations
    real_inside: int
    simulated_inside: tuple[int, ...]  # per simulation, on the same statistics

    def to_dict(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "location": self.location,
            "crop": self.crop,
            "statistics": self.statistics,
            "real_inside": self.real_inside,
            "simulated_inside": list(self.simulated_inside),
        }


def real_against_real(
    real: Mapping[str, Mapping[tuple[str, str], Sample]],
    simulations: Sequence[Mapping[tuple[str, str], Sample]],
    *,
    draws: int = 200,
    seed: int = 0,
    min_fields: int = MIN_FIELDS,
) -> list[CrossCheck]:
    """How often one real location lies inside another's intervals: the yardstick for "inside".

    For each ordered pair of real locations, the second one's field-bootstrap intervals are the
    reference and the first one's values are held against them exactly as a simulated value is;
    every simulation is held against the same intervals, on the same statistics (those both
    locations measure). A real place of the same region, or the same place in another year,
    shows how many statistics any simulation can be expected to have inside. Statistics whose
    reference interval rests on fewer than ``min_fields`` fields are left out, as in
    :func:`compare`: one field gives a point, which no other sample meets.
    """
    checks = []
    for reference, samples in real.items():
        intervals = real_intervals(
            {reference: samples}, draws=draws, seed=seed, min_fields=min_fields
        )
        simulated = [hold(intervals, sim) for sim in simulations]
        for location, other in real.items():
            if location == reference:
                continue
            held = hold(intervals, other)
            comparable = [i for i, row in enumerate(held) if row.inside is not None]
            for crop in (*dict.fromkeys(held[i].crop for i in comparable), "all"):
                chosen = [i for i in comparable if crop in ("all", held[i].crop)]
                checks.append(
                    CrossCheck(
                        reference,
                        location,
                        crop,
                        len(chosen),
                        sum(held[i].inside is True for i in chosen),
                        tuple(sum(rows[i].inside is True for i in chosen) for rows in simulated),
                    )
                )
    return checks


def format_real_against_real(checks: Sequence[CrossCheck]) -> str:
    """A plain-text table: reference and held-out location, crop, the number of statistics,
    how many the real location has inside, and how many each simulation has (mean and range)."""
    lines = [["reference", "held out", "crop", "statistics", "real inside", "simulated inside"]]
    for check in checks:
        counts = check.simulated_inside
        simulated = "-"
        if len(counts) == 1:
            simulated = str(counts[0])
        elif counts:
            simulated = f"{sum(counts) / len(counts):.1f} ({min(counts)}-{max(counts)})"
        lines.append(
            [
                check.reference,
                check.location,
                check.crop,
                str(check.statistics),
                str(check.real_inside),
                simulated,
            ]
        )
    return _aligned(lines)


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table: statistic, crop, real per location, the real interval (the union of
    the locations' intervals, in pieces where they do not overlap), the fields per location (an
    interval needs :data:`MIN_FIELDS`), simulated, verdict, gap."""
    locations = _locations(rows)
    short = [loc[-6:] for loc in locations]
    header = [
        "statistic",
        "crop",
        *[f"real {s}" for s in short],
        "real interval",
        "fields",
        "simulated",
        "",
        "gap",
    ]
    lines = [header]
    for row in rows:
        verdict = {True: "inside", False: "outside", None: "n/a"}[row.inside]
        lines.append(
            [
                row.statistic,
                row.crop,
                *[_number(row.real.get(loc, float("nan"))) for loc in locations],
                _pieces(row.union),
                _fields(row.fields, locations),
                _number(row.simulated),
                verdict,
                "" if row.inside is not False else f"{row.gap:+.2f}",
            ]
        )
    return _aligned(lines)


def format_coverage(items: Sequence[Coverage]) -> str:
    """A plain-text table: statistic, crop, real interval and the fields per location, the
    simulations' range, how many simulations lie inside, and whether the range meets the
    interval."""
    locations = _locations(items)
    lines = [["statistic", "crop", "real interval", "fields", "simulated range", "inside", ""]]
    for item in items:
        values = item.finite
        verdict = {True: "covered", False: "not covered", None: "n/a"}[item.covered]
        lines.append(
            [
                item.statistic,
                item.crop,
                _pieces(item.union),
                _fields(item.fields, locations),
                f"[{_number(min(values))}, {_number(max(values))}]" if values else "-",
                f"{item.inside}/{len(item.simulated)}",
                verdict,
            ]
        )
    return _aligned(lines)


def _locations(rows: Sequence[Row] | Sequence[Coverage]) -> list[str]:
    return list(dict.fromkeys(loc for row in rows for loc in row.fields))


def _pieces(pieces: Sequence[Interval]) -> str:
    """``[a, b]``, or ``[a, b] ∪ [c, d]`` where the locations' intervals do not overlap."""
    if not pieces:
        return "-"
    return " ∪ ".join(f"[{_number(low)}, {_number(high)}]" for low, high in pieces)


def _fields(fields: Mapping[str, int], locations: Sequence[str]) -> str:
    """Fields per location, ``+``-separated in the order of the real columns."""
    return "+".join(str(fields.get(loc, 0)) for loc in locations)


def _aligned(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _number(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.2f}"
