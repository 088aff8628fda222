"""``assess``: a map + reference labels → error matrix, accuracies and areas with 95 % CIs.

The reference is either a sample GeoPackage of ``sarcrop sample`` with its label column filled
in (stratified estimators, :mod:`sarcrop.evaluation.area`), other labelled points
(post-stratified), or a label raster on the map's grid or field parcels of a test area (a census
of every labelled pixel: the true values of the labelled area, with zero SE).
Results are written as JSON (everything) and Markdown (the tables a report needs).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from sarcrop.errors import InputDataError
from sarcrop.evaluation.area import (
    UNLABELLED,
    Z95,
    Estimate,
    Estimates,
    census_estimates,
    olofsson_estimates,
    sample_counts,
    stehman_estimates,
)
from sarcrop.evaluation.rasters import (
    block_rows,
    check_same_grid,
    class_band,
    grid_of,
    map_class_pixels,
    map_classes,
    map_classes_at,
    open_raster,
    read_map_classes,
    strips,
)
from sarcrop.evaluation.reference import (
    check_one_crop_labels,
    check_reference_classes,
    label_reader,
)
from sarcrop.evaluation.sampling import (
    Sample,
    Stratum,
    is_sample_file,
    labels_from_table,
    post_stratified_sample,
    read_sample,
)
from sarcrop.options import LabelOptions, OutsideParcels, ReferenceOptions, as_options, flag
from sarcrop.utils.atomic import write_text_atomic


@dataclass(frozen=True)
class Assessment:
    """Estimates with what they came from: sample counts, map pixel counts and pixel size."""

    estimates: Estimates
    counts: np.ndarray
    """``(k, k)`` sample counts, rows: map class, columns: reference class."""
    map_pixels: dict[int, int]
    """Pixels mapped as each class (the pixel-counting area)."""
    pixel_area_m2: float | None
    """Area of one pixel in m², ``None`` when the map's CRS is not in metres or does not keep
    areas (Web Mercator)."""
    design: str
    strata: tuple[Stratum, ...] = ()
    unlabelled: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    """Names of the map's classes by index (a crop-type map's ``CLASS_NAMES``), else empty."""

    @property
    def classes(self) -> tuple[int, ...]:
        return self.estimates.classes

    def label(self, c: int) -> str:
        """How class ``c`` is shown: 'unlabelled', its number and, where known, its name."""
        if c == UNLABELLED:
            return "unlabelled"
        return f"{c} {self.class_names[c]}" if 0 <= c < len(self.class_names) else str(c)

    @property
    def total_pixels(self) -> int:
        return int(sum(self.map_pixels.values()))

    def area_pixels(self, index: int) -> Estimate:
        """Estimated area of reference class ``classes[index]`` in pixels."""
        return self.estimates.area[index].scaled(self.total_pixels)

    def class_area(self, cls: int | str) -> Estimate:
        """Estimated area of the reference class numbered ``cls`` (1: the crop of a binary
        map), or named so on a crop-type map, in pixels: :meth:`area_pixels` takes a position
        in ``classes``, which starts with -1 (no reference class) where some points have
        none."""
        if isinstance(cls, str):
            cls = self._class_number(cls)
        if cls not in self.classes:
            raise InputDataError(
                f"no reference class {cls}: the classes are {', '.join(map(str, self.classes))}"
            )
        return self.area_pixels(self.classes.index(cls))

    def _class_number(self, name: str) -> int:
        """The number of the map class ``name`` (names compared as training compares them)."""
        from sarcrop.data.labels import class_key

        keys = [class_key(n) for n in self.class_names]
        if class_key(name) in keys:
            return keys.index(class_key(name))
        known = (
            f"its classes are {', '.join(self.class_names)}"
            if self.class_names
            else ("a one-crop map's classes are numbers: 1 its crop, 0 the rest")
        )
        raise InputDataError(f"no map class named {name!r}: {known}")

    def hectares(self, pixels: float) -> float | None:
        return None if self.pixel_area_m2 is None else pixels * self.pixel_area_m2 / 1e4

    def to_dict(self) -> dict[str, Any]:
        e = self.estimates
        area = {}
        for i, c in enumerate(self.classes):
            px = self.area_pixels(i)
            counted = self.map_pixels.get(c, 0)
            area[str(c)] = {
                "proportion": e.area[i].to_dict(),
                "pixels": px.to_dict(),
                "hectares": None
                if self.pixel_area_m2 is None
                else px.scaled(self.pixel_area_m2 / 1e4).to_dict(),
                "pixel_count": counted,
                "pixel_count_hectares": self.hectares(counted),
            }
        return {
            "design": self.design,
            "estimator": e.method,
            "sources": self.sources,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "sample_size": int(self.counts.sum()),
            "unlabelled_points": self.unlabelled,
            "total_pixels": self.total_pixels,
            "pixel_area_m2": self.pixel_area_m2,
            "z": Z95,
            "error_matrix_counts": self.counts.tolist(),
            "error_matrix_proportions": e.proportions.tolist(),
            "overall_accuracy": e.overall.to_dict(),
            "users_accuracy": {str(c): u.to_dict() for c, u in zip(self.classes, e.users)},
            "producers_accuracy": {str(c): p.to_dict() for c, p in zip(self.classes, e.producers)},
            "area": area,
            "strata": [
                {
                    "stratum": s.code,
                    "map_class": s.map_class,
                    "level": s.level,
                    "pixels": s.pixels,
                    "n": s.n,
                }
                for s in self.strata
            ],
        }

    def to_markdown(self, title: str = "Accuracy and area") -> str:
        return "\n".join(_markdown(self, title)) + "\n"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _matrix(a: Assessment, rows: np.ndarray, digits: int) -> list[str]:
    classes = a.classes
    head = "| map \\ reference | " + " | ".join(a.label(c) for c in classes) + " | total |"
    lines = [head, "|---" * (len(classes) + 2) + "|"]
    for c, row in zip(classes, rows, strict=True):
        if c == UNLABELLED:  # never a map class
            continue
        cells = " | ".join(_fmt(float(v), digits) for v in row)
        lines.append(f"| {a.label(c)} | {cells} | {_fmt(float(row.sum()), digits)} |")
    total = " | ".join(_fmt(float(v), digits) for v in rows.sum(axis=0))
    lines.append(f"| total | {total} | {_fmt(float(rows.sum()), digits)} |")
    return lines


def _markdown(a: Assessment, title: str) -> list[str]:
    e, classes = a.estimates, a.classes
    size = (
        f"{a.pixel_area_m2:g} m² pixels"
        if a.pixel_area_m2
        else "pixels (no hectares: the CRS is not in metres of equal area)"
    )
    lines = [
        f"# {title}",
        "",
        f"- Design: {a.design}; estimator: {e.method}.",
        f"- Reference: {a.sources.get('reference', '?')}; map: {a.sources.get('map', '?')}.",
        f"- Population: {a.total_pixels:,} mapped {size}; sample size {int(a.counts.sum()):,}"
        + (f" ({a.unlabelled} points without a label left out)" if a.unlabelled else "")
        + ".",
        "- Intervals: estimate ± 1.96 SE (95 %)."
        + (
            " Reference 'unlabelled' (no reference class, e.g. roads) counts in areas, not in "
            "accuracies."
            if UNLABELLED in classes
            else ""
        ),
        "",
        "## Error matrix, sample counts",
        "",
        *_matrix(a, a.counts.astype(float), 0),
        "",
        "## Error matrix, estimated area proportions",
        "",
        *_matrix(a, e.proportions, 4),
        "",
        "## Accuracy",
        "",
        "| measure | class | estimate | SE | 95 % CI |",
        "|---|---|---|---|---|",
        _acc_row("overall", "", e.overall),
    ]
    mapped = [i for i, c in enumerate(classes) if c != UNLABELLED]
    lines += [_acc_row("user's", a.label(classes[i]), e.users[i]) for i in mapped]
    lines += [_acc_row("producer's", a.label(classes[i]), e.producers[i]) for i in mapped]
    unit = "ha" if a.pixel_area_m2 else "px"
    lines += [
        "",
        "## Area per class",
        "",
        f"| class | pixel count (map) | pixel-count area ({unit}) | estimated area (px) | "
        f"estimated area ({unit}) | SE ({unit}) | 95 % CI ({unit}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(classes):
        px = a.area_pixels(i)
        scale = (a.pixel_area_m2 / 1e4) if a.pixel_area_m2 else 1.0
        est = px.scaled(scale)
        low, high = est.ci95
        counted = a.map_pixels.get(c, 0)
        lines.append(
            f"| {a.label(c)} | {counted:,} | {_fmt(counted * scale, 2)} | {_fmt(px.value, 0)} | "
            f"{_fmt(est.value, 2)} | {_fmt(est.se, 2)} | {_fmt(low, 2)} – {_fmt(high, 2)} |"
        )
    return lines


def _acc_row(measure: str, cls: str, e: Estimate) -> str:
    low, high = e.ci95
    return f"| {measure} | {cls} | {_fmt(e.value)} | {_fmt(e.se)} | {_fmt(low)} – {_fmt(high)} |"


AREA_SCALE_TOLERANCE = 0.01
"""How far a CRS's areal scale may depart from 1 over the map for its pixels to be hectares."""


def _pixel_area(grid: Any, name: str | None = None) -> float | None:
    """Area of one pixel in m², where the CRS is in metres and keeps areas over the map (its
    areal scale within 1 % of 1 at the centre and corners); else None, areas in pixels: Web
    Mercator's transform at 52° N counts 2.6× the ground's area. ``name``: the map, in the
    warning that says so."""
    if grid.crs is None or not grid.crs.is_projected:
        return None
    units = (grid.crs.linear_units or "").lower()
    if units not in ("metre", "meter", "m"):
        return None
    scale = _areal_scale(grid)
    if scale is None or abs(scale - 1) > AREA_SCALE_TOLERANCE:
        shown = "an unknown factor" if scale is None else f"{scale:.3g}"
        warnings.warn(
            f"{name or 'the map'}: CRS {grid.crs.to_string()} does not keep areas (it scales "
            f"them by {shown} over the map): areas are given in pixels, not hectares; hectares "
            "need an equal-area or local projection (e.g. UTM, EPSG:3035)",
            stacklevel=3,
        )
        return None
    t = grid.transform
    return abs(t.a * t.e - t.b * t.d)


def _areal_scale(grid: Any) -> float | None:
    """The CRS's areal scale factor at the map's centre or corner where it departs most from 1
    (None where PROJ cannot tell)."""
    import pyproj

    try:
        crs = pyproj.CRS.from_user_input(grid.crs.to_wkt())
        to_degrees = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        cols = np.array([0.5, 0, 1, 0, 1]) * grid.width
        rows = np.array([0.5, 0, 0, 1, 1]) * grid.height
        t = grid.transform
        x, y = t.c + t.a * cols + t.b * rows, t.f + t.d * cols + t.e * rows
        lon, lat = to_degrees.transform(x, y)
        scales = np.asarray(pyproj.Proj(crs).get_factors(lon, lat).areal_scale, dtype=float)
    except (pyproj.exceptions.ProjError, pyproj.exceptions.CRSError):
        return None
    if not np.isfinite(scales).all():
        return None
    return float(scales[np.argmax(np.abs(scales - 1))])


def assess_sample(
    sample: Sample, *, sources: dict[str, str] | None = None, path: str | Path | None = None
) -> Assessment:
    """Estimates from a sample whose ``reference`` column is filled in (``path`` names the
    sample file in errors)."""
    points = sample.points
    labelled = points[points["reference"].notna()]
    unlabelled = len(points) - len(labelled)
    if labelled.empty:
        raise InputDataError("no sample point has a reference label", path)
    if unlabelled:
        warnings.warn(
            f"{unlabelled} sample points without a reference label are left out, so the "
            "estimates stand for the map only if those points are like the others; a point of "
            "no class (a road, a house) is labelled -1 and counts",
            stacklevel=2,
        )
    strata = labelled["stratum"].to_numpy(np.int64)
    labelled_n = labelled["stratum"].value_counts()
    empty = [s for s in sample.strata if s.pixels and not labelled_n.get(s.code, 0)]
    if empty:
        named = ", ".join(f"{s.code} ({s.pixels:,} px)" for s in empty)
        raise InputDataError(
            f"strata {named} have no labelled point, so their pixels' classes cannot be "
            "estimated (they would count as wrong, and the areas would not add up to the "
            "map): label at least 2 points in each stratum",
            path,
        )
    thin = [s.code for s in sample.strata if labelled_n.get(s.code, 0) < min(2, s.pixels)]
    if thin:
        warnings.warn(
            f"strata {thin} have 1 labelled point: their variance counts as 0, so the SEs are "
            "too small; label at least 2 points in each stratum",
            stacklevel=2,
        )
    mapped = labelled["map_class"].to_numpy(np.int64)
    ref = labelled["reference"].to_numpy(np.int64)
    classes = tuple(sorted(set(sample.map_pixels) | set(ref.tolist())))
    counts = sample_counts(mapped, ref, classes)
    if sample.strata_are_map_classes and UNLABELLED not in classes:
        sizes = [sample.stratum_pixels.get(c, 0) for c in classes]
        est = olofsson_estimates(counts, sizes, classes=classes)
    else:
        est = stehman_estimates(strata, mapped, ref, sample.stratum_pixels, classes=classes)
        if sample.strata_are_map_classes:
            est = replace(est, method="stratified by map class, Stehman (2014) estimators")
    design = sample.design.get("kind", f"stratified random sample, {len(sample.strata)} strata")
    if "unstratified_pixels" in sample.design:
        outside = int(sample.design["unstratified_pixels"])
        design += f" ({outside:,} mapped pixels without a stratum outside the population)"
    if thin:
        strata_word = "stratum" if len(thin) == 1 else "strata"
        design += f"; SEs omit the variance of {len(thin)} {strata_word} of 1 labelled point"
    return Assessment(
        est,
        counts,
        dict(sample.map_pixels),
        _pixel_area(sample.grid, sample.design.get("map") or (sources or {}).get("map")),
        design,
        sample.strata,
        unlabelled,
        sources or {},
    )


def assess_census(
    map_path: str | Path, labels: str | Path, options: ReferenceOptions | None = None
) -> Assessment:
    """Every mapped pixel counted against the label raster: the true values, with zero SE
    (mapped pixels without a label are reference :data:`UNLABELLED`)."""
    options = options or ReferenceOptions()
    pairs: dict[tuple[int, int], int] = {}
    with open_raster(map_path) as ds, open_raster(labels) as lab:
        grid = grid_of(ds)
        check_same_grid(grid, lab, labels)
        read = label_reader(lab, options, map_classes(ds, map_path), labels, map_path)
        band = class_band(ds, map_path)
        for window in strips(grid, block_rows(ds, band)):
            mapped = read_map_classes(ds, band, window)
            _add_pairs(pairs, mapped, read(lab.read(options.label_band, window=window)))
    read.warn_folded()
    sources = {"map": str(map_path), "reference": f"{labels} (every mapped pixel)"}
    return _census(pairs, grid, labels, sources)


def parcel_classes(codes: np.ndarray, names: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Parcel class codes → the crop-type map's class indices, as in training: a listed
    ``other`` gathers the parcels of unlisted crops and the pixels outside every parcel, which
    are otherwise unlabelled like parcels without a value."""
    from sarcrop.data.labels import OTHER, class_key

    folded = {class_key(name): k for k, name in enumerate(classes)}
    table = np.full(len(names) + 1, UNLABELLED, dtype=np.int64)  # last: code -1
    if OTHER in folded:
        table[: len(names)] = folded[OTHER]
    for code, name in enumerate(names):
        if class_key(name) in folded:
            table[code] = folded[class_key(name)]
    return table[codes]


def assess_parcels(
    map_path: str | Path,
    parcels: str | Path,
    label_column: str,
    outside_parcels: OutsideParcels | None = None,
) -> Assessment:
    """A census against field parcels (polygons) of a test area, rasterised onto the map's grid
    by their ``label_column``. Binary map: parcels of its positive class (the ``POSITIVE``
    tag of its class band, as ``predict`` writes it, or of the file) are class 1, other
    parcels and pixels outside every parcel class 0 (as in training; unlabelled with
    ``outside_parcels="unlabelled"``, where the parcels are some of the fields, and said where
    most of the ground is outside them and it is not given).
    Crop-type map: each parcel is its crop's class (:func:`parcel_classes`). Parcels without a
    value are unlabelled."""
    from sarcrop.data.labels import (
        labels_from_parcels,
        positive_indices,
        warn_background_majority,
    )

    with open_raster(map_path) as ds:
        grid, band = grid_of(ds), class_band(ds, map_path)
        mapped = read_map_classes(ds, band, Window(0, 0, grid.width, grid.height))
        of_map = map_classes(ds, map_path)
    positive, classes = list(of_map.positive), of_map.names
    if not positive and not classes:
        raise InputDataError("the map has no POSITIVE tag naming its crop", map_path)
    outside = outside_parcels or "background"
    codes, names = labels_from_parcels(parcels, grid, column=label_column, outside_parcels=outside)
    if outside_parcels is None:
        warn_background_majority(Path(parcels), codes, stacklevel=4)
    if classes:
        ref = parcel_classes(codes, names, classes)
    else:
        try:
            wanted = positive_indices(names, positive)
        except InputDataError as exc:
            raise InputDataError(str(exc), parcels) from None
        ref = np.where(codes < 0, UNLABELLED, np.isin(codes, wanted)).astype(np.int64)
    pairs: dict[tuple[int, int], int] = {}
    _add_pairs(pairs, mapped, ref)
    sources = {"map": str(map_path), "reference": f"{parcels} (parcels, column {label_column!r})"}
    return _census(pairs, grid, parcels, sources)


def _add_pairs(pairs: dict[tuple[int, int], int], mapped: np.ndarray, ref: np.ndarray) -> None:
    """Count (map class, reference class) pairs of mapped pixels into ``pairs``."""
    ok = mapped >= 0  # unlabelled pixels stay, as reference UNLABELLED
    keys, k = np.unique(np.stack([mapped[ok], ref[ok]]), axis=1, return_counts=True)
    for (m, r), c in zip(keys.T.tolist(), k.tolist(), strict=True):
        pairs[(m, r)] = pairs.get((m, r), 0) + c


def _census(
    pairs: dict[tuple[int, int], int], grid: Any, labels: str | Path, sources: dict[str, str]
) -> Assessment:
    """Census estimates from every mapped pixel's (map, reference) pair."""
    if not any(r != UNLABELLED for _, r in pairs):
        raise InputDataError("no mapped pixel has a label", labels)
    classes = tuple(sorted({m for m, _ in pairs} | {r for _, r in pairs}))
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for (m, r), c in pairs.items():
        counts[index[m], index[r]] = c
    est = census_estimates(counts, classes)
    map_pixels = {c: int(t) for c, t in zip(classes, counts.sum(axis=1), strict=True) if t}
    area = _pixel_area(grid, sources.get("map"))
    return Assessment(est, counts, map_pixels, area, "census", (), 0, sources)


def _is_vector_file(path: Path) -> bool:
    return path.suffix.lower() in (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".parquet")


def _has_polygons(path: Path) -> bool:
    """Whether a vector file holds parcels (polygons) rather than points."""
    import pyogrio

    try:
        kind = str(pyogrio.read_info(path).get("geometry_type") or "")
    except (pyogrio.errors.DataSourceError, OSError, ValueError) as exc:
        raise InputDataError(f"cannot read the reference: {exc}", path) from None
    return "polygon" in kind.lower()


def _check_map(sample: Sample, map_path: Path) -> None:
    """The map must be the one sampled: same grid, same class at every point, and (without a
    strata raster, whose nodata leaves pixels out) the same pixels of each class, on which
    the estimates' weights rest."""
    with open_raster(map_path) as ds:
        check_same_grid(sample.grid, ds, map_path, "the sampled map's")
        points = sample.points
        x, y = points["x"].to_numpy(), points["y"].to_numpy()
        band = class_band(ds, map_path)
        changed = int(np.sum(map_classes_at(ds, band, x, y) != points["map_class"]))
        now = {} if sample.design.get("strata_raster") else map_class_pixels(ds, band)
    drawn = f"when they were drawn from {sample.design.get('map', '?')}"
    if changed:
        raise InputDataError(
            f"{changed} of {len(points)} sample points have another class in this map than "
            + drawn,
            map_path,
        )
    classes = sorted(set(now) | set(sample.map_pixels))
    moved = [c for c in classes if now.get(c, 0) != sample.map_pixels.get(c, 0)]
    if now and moved:
        counts = ", ".join(
            f"class {c}: {sample.map_pixels.get(c, 0):,} px then, {now.get(c, 0):,} now"
            for c in moved
        )
        raise InputDataError(
            f"this map's classes cover other pixels than {drawn} ({counts}), and the "
            "estimates weigh those: draw a new sample of this map",
            map_path,
        )


def assess(
    map_path: str | Path,
    reference: str | Path,
    *,
    label_column: str | None = None,
    options: ReferenceOptions | None = None,
    labels_table: str | Path | None = None,
    outside_parcels: OutsideParcels | None = None,
) -> Assessment:
    """Accuracy and area of the map at ``map_path`` against ``reference``: a sample of
    ``sarcrop sample`` (``label_column`` holding map class numbers), any other file of labelled
    points (a simple random or systematic sample, post-stratified by map class), or a label
    raster or parcel polygons of a test area (census), read as ``options`` say (label band,
    codes of the crop). ``label_column`` defaults to ``reference`` for points (the column
    ``sarcrop sample`` writes) and to ``crop`` for parcels, as ``prepare`` reads them.
    ``labels_table``: a CSV table with the labels of a sample's points
    (``point_id`` and ``label_column``). ``outside_parcels``: what the ground outside every
    parcel is in a census from parcels, as ``prepare`` reads it ("background", a negative,
    where the parcels are every field; "unlabelled" where they are some)."""
    map_path, reference = Path(map_path), Path(reference)
    options = None if options is None else as_options(ReferenceOptions, options, "options")
    if reference.suffix.lower() in (".csv", ".tsv", ".txt"):
        raise InputDataError(
            "a table of labels is read beside the sample it labels: --reference SAMPLE.gpkg "
            f"--labels-csv {reference.name} (labels_table=)",
            reference,
        )
    with open_raster(map_path) as ds:
        classes = map_classes(ds, map_path)
    check_one_crop_labels(options, map_path, classes)
    if outside_parcels is not None and not (
        _is_vector_file(reference) and _has_polygons(reference)
    ):
        raise InputDataError(
            "outside_parcels (--outside-parcels) reads a census from parcels, and this is no "
            "parcel file: leave it out",
            reference,
        )
    result = _assess(map_path, reference, label_column, options, labels_table, outside_parcels)
    referenced = [c for c, n in zip(result.classes, result.counts.sum(axis=0), strict=True) if n]
    check_reference_classes(referenced, classes, labels_table or reference, result.map_pixels)
    return replace(result, class_names=classes.names)


def _assess(
    map_path: Path,
    reference: Path,
    column: str | None,
    options: ReferenceOptions | None,
    labels_table: str | Path | None,
    outside_parcels: OutsideParcels | None = None,
) -> Assessment:
    if not _is_vector_file(reference):
        kind = "a label raster, whose labels are its band (--label-band)"
        _refuse_unread(reference, kind, column, labels_table)
        return assess_census(map_path, reference, options)
    sampled = is_sample_file(reference)  # read once: it opens the file
    parcels = not sampled and _has_polygons(reference)
    if not sampled:
        kind = "a file of parcels" if parcels else "a file of points, not a `sarcrop sample`"
        _refuse_unread(reference, f"{kind}, labelled in its own column", None, labels_table)
    label_column = column or (LabelOptions().column if parcels else "reference")
    given = [] if options is None else [flag(name) for name in options.model_fields_set]
    if given:
        raise InputDataError(
            f"{', '.join(sorted(given))} read a label raster, and this is a file of points or "
            f"parcels, whose labels are read from its {label_column!r} column: leave them out",
            reference,
        )
    if parcels:
        return assess_parcels(map_path, reference, label_column, outside_parcels)
    if not sampled:
        sample = post_stratified_sample(reference, map_path, label_column)
    elif labels_table is not None:
        sample = labels_from_table(read_sample(reference), labels_table, label_column)
        _check_map(sample, map_path)
        reference = Path(labels_table)
    else:
        sample = read_sample(reference, label_column)
        _check_map(sample, map_path)
    sources = {"map": str(map_path), "reference": f"{reference} (column {label_column!r})"}
    return assess_sample(sample, sources=sources, path=reference)


def _refuse_unread(
    reference: Path, kind: str, column: str | None, labels_table: str | Path | None
) -> None:
    """Refuse options that ``reference`` (``kind``) would leave unread, rather than ignore
    them: a label column for a raster, a labels table for anything but a sample."""
    unread = []
    if labels_table is not None:
        unread.append("labels_table (--labels-csv) labels the points of a sample")
    if column is not None:
        unread.append("label_column (--label-column) names a column of points or parcels")
    if unread:
        raise InputDataError(
            f"{' and '.join(unread)}, and this is {kind}: leave "
            f"{'them' if len(unread) > 1 else 'it'} out",
            reference,
        )


def area_record(
    assessment: Assessment,
    cls: int = 1,
    *,
    scenario: str,
    truth: Assessment | None = None,
    data: str = "simulated",
) -> dict[str, Any]:
    """One row of the experiment report's area table (manifest key ``area_estimates``):
    the estimate of class ``cls`` with its 95 % CI, the pixel count and, from a census
    ``truth``, the true area and the share of the mapped ground it leaves unlabelled (where
    neither it nor the estimate knows the crop); in hectares where the CRS is in metres, else
    in pixels."""
    scale = assessment.pixel_area_m2 / 1e4 if assessment.pixel_area_m2 else 1.0
    est = assessment.class_area(cls).scaled(scale)
    low, high = est.ci95
    true, unlabelled = None, 0.0
    if truth is not None and cls in truth.classes:
        true = truth.class_area(cls).value * scale
    if truth is not None and UNLABELLED in truth.classes:
        unlabelled = truth.class_area(UNLABELLED).value / max(truth.total_pixels, 1)
    return {
        "scenario": scenario,
        "class": cls,
        "data": data,
        "unit": "ha" if assessment.pixel_area_m2 else "px",
        "estimate": est.value,
        "se": est.se,
        "ci95_low": low,
        "ci95_high": high,
        "pixel_count": assessment.map_pixels.get(cls, 0) * scale,
        "true": true,
        "unlabelled_share": unlabelled,
        "sample_size": int(assessment.counts.sum()),
        "estimator": assessment.estimates.method,
    }


def write_assessment(
    assessment: Assessment, out: str | Path, *, title: str | None = None
) -> tuple[Path, Path]:
    """Write ``OUT.json`` and ``OUT.md``; return both paths. ``title``: the Markdown's heading,
    by default "Accuracy and area of" the map's file name, as ``sarcrop assess`` writes it."""
    if title is None:
        mapped = assessment.sources.get("map")
        title = f"Accuracy and area of {Path(mapped).name}" if mapped else "Accuracy and area"
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".json", ".md") else out
    json_path = write_text_atomic(
        stem.with_name(stem.name + ".json"), json.dumps(assessment.to_dict(), indent=2) + "\n"
    )
    md_path = write_text_atomic(stem.with_name(stem.name + ".md"), assessment.to_markdown(title))
    return json_path, md_path
