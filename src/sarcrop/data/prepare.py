"""Scenes + labels → a dataset store of labelled, georeferenced patches.

:func:`prepare` composites the season (20-day means by default) strip by strip — one row of
patches at a time, so memory is bounded by ``strip × steps × bands`` whatever the area's size —
tiles each strip into ``patch_size`` patches, pairs them with the labels, splits them into
train/test and computes normalisation statistics on the train patches only.

Tiling covers the whole area: patches on the right and bottom edges extend past it and are
padded with no data (NaN images, -1 labels), so no field is lost. Pixels that were never
observed in the season are unlabelled (-1): there is nothing to classify them from. A patch is
kept when it has at least one labelled, observed pixel and at least ``min_valid_fraction`` of
such pixels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from sarcrop.data.composite import acquisitions_per_period, warn_empty_periods
from sarcrop.data.composite import composite as make_composite
from sarcrop.data.grid import Grid
from sarcrop.data.labels import labelled_pixels, labels_from_file, positive_indices
from sarcrop.data.normalization import Normalization, checked_percentiles, compute_normalization
from sarcrop.data.reader import open_scenes
from sarcrop.data.scenes import SceneStack, Source
from sarcrop.data.season import Season
from sarcrop.data.split import TEST, TRAIN, split_patches
from sarcrop.data.store import StoreMetadata, check_store_out, create_store
from sarcrop.errors import ConfigError, InputDataError
from sarcrop.options import (
    CompositeOptions,
    LabelOptions,
    SceneOptions,
    SplitOptions,
    TilingOptions,
    as_options,
    overlap_problem,
)
from sarcrop.utils.validation import band_names

TEST_STATISTICS = "test patches"


def tile_offsets(height: int, width: int, patch_size: int, stride: int) -> list[tuple[int, int]]:
    """(row, col) of the patches covering a ``height × width`` area (edges padded)."""
    if patch_size < 1 or stride < 1:
        raise ValueError("patch size and stride must be positive")
    rows = range(0, max(height - patch_size, 0) + stride, stride)
    cols = range(0, max(width - patch_size, 0) + stride, stride)
    return [(r, c) for r in rows for c in cols]


def prepare(
    images: Source | SceneStack,
    out: str | Path,
    *,
    labels: str | Path,
    season: Season | dt.date | str | Mapping[str, object],
    bands: Sequence[str] = ("VH", "VV"),
    positive: Sequence[str] | str | None = None,
    label_options: LabelOptions = LabelOptions(),
    region: str | None = None,
    year: int | None = None,
    scenes: SceneOptions = SceneOptions(),
    composite: CompositeOptions = CompositeOptions(),
    tiling: TilingOptions = TilingOptions(),
    split: SplitOptions = SplitOptions(),
    percentiles: Sequence[float] | None = None,
    progress: bool = True,
) -> Path:
    """Build a dataset store at ``out`` from ``images`` (any layout) and ``labels``.

    ``labels`` is a parcel file (``.gpkg``, ``.shp``, ``.geojson``, ``.parquet``), a label cube
    (``.nc``, ``.zarr``) or a class raster; ``label_options`` say how to read it. ``season``
    sets the composite periods (``season.steps`` of them, the model's timesteps; its first day
    alone gives the paper's 8 × 20 days). ``positive`` (a name or several) is only recorded
    (and checked against the classes) as the store's default target.
    Returns ``out``.
    """
    check_store_out(out)  # before minutes of compositing
    bands = tuple(band_names(bands))
    season = Season.of(season)
    positive = [positive] if isinstance(positive, str) else positive
    percentiles = checked_percentiles(percentiles)
    label_options = as_options(LabelOptions, label_options, "label_options").named(positive)
    scenes = as_options(SceneOptions, scenes, "scenes")
    composite = as_options(CompositeOptions, composite, "composite")
    tiling = as_options(TilingOptions, tiling, "tiling")
    split = as_options(SplitOptions, split, "split")
    if problem := overlap_problem(tiling, split):
        raise ConfigError(problem)
    stack = (
        images
        if isinstance(images, SceneStack)
        else open_scenes(
            images,
            bands=bands,
            crs=scenes.crs,
            resolution=scenes.resolution,
            orbit=scenes.orbit,
            band_map=scenes.band_map,
        )
    )
    stack.require_bands(bands)
    in_season = _in_season(stack, season)
    warn_empty_periods(
        stack, season, gaps=composite.gaps, min_acquisitions=composite.min_acquisitions
    )
    grid = stack.grid
    area_labels, classes = labels_from_file(labels, grid, label_options)
    if positive:
        try:
            wanted = positive_indices(classes, positive)
        except InputDataError as exc:
            raise InputDataError(exc.problem, labels) from None
        _require_pixels(area_labels, classes, wanted, labels)

    patch_size = tiling.patch_size
    stride = tiling.stride or patch_size
    _warn_small_area(grid.height, grid.width, patch_size)
    offsets_all = tile_offsets(grid.height, grid.width, patch_size, stride)
    with create_store(out, steps=season.steps, bands=len(bands), patch_size=patch_size) as writer:
        offsets: list[tuple[int, int]] = []
        per_patch_pixels: list[np.ndarray] = []
        observed_any = False
        for row, strip, strip_labels in _strips(
            stack, season, bands, grid, area_labels, offsets_all, tiling, composite, progress
        ):
            observed_any = observed_any or bool(np.isfinite(strip).any())
            kept_images, kept_labels = [], []
            for col in sorted({c for _, c in offsets_all}):
                lab = strip_labels[:, col : col + patch_size]
                valid = np.count_nonzero(lab >= 0) / lab.size
                if valid == 0 or valid < tiling.min_valid_fraction:
                    continue
                kept_images.append(strip[:, :, :, col : col + patch_size])
                kept_labels.append(lab)
                offsets.append((row, col))
                per_patch_pixels.append(np.bincount(lab.ravel() + 1, minlength=len(classes) + 1))
            if kept_images:
                writer.append(np.stack(kept_images), np.stack(kept_labels))

        if not offsets and not observed_any:
            raise InputDataError(
                "no valid pixel in any acquisition of the season (all nodata, NaN or Inf)",
                stack.description or None,
            )
        if not offsets:
            raise InputDataError(
                "no patch has both image data and labels; check that the labels overlap the scenes",
                str(labels),
            )
        assignment = _assign(offsets, split, stride)
        stats = split_normalization(
            lambda i: np.asarray(writer.images[i]), assignment, bands, percentiles
        )
        writer.metadata = StoreMetadata(
            bands=bands,
            season=season,
            grid=grid,
            patch_size=patch_size,
            stride=stride,
            offsets=offsets,
            classes=classes,
            split=assignment,
            normalization=stats,
            region=region,
            year=year,
            positive=list(positive) if positive else None,
            source={
                "images": stack.description or _describe(images),
                "labels": str(Path(labels).resolve()),  # a check elsewhere finds it
                "simulated": _simulated(labels),
                "label_column": label_options.column,
                "label_variable": label_options.variable,
                "composite": composite.model_dump(),
                "orbit": scenes.orbit,
                "acquisitions": [t.isoformat() for t in in_season],
                "acquisitions_per_period": acquisitions_per_period(stack, season),
                "split": {
                    **split.model_dump(),
                    "block": split.block if split.method == "block" else None,
                },
                "min_valid_fraction": tiling.min_valid_fraction,
            },
            statistics={
                "class_pixels": split_class_pixels(per_patch_pixels, assignment, classes),
                "patches": {s: assignment.count(s) for s in (TRAIN, TEST)},
                "tiled": len(offsets_all),
            },
        )
    return Path(out)


def _in_season(stack: SceneStack, season: Season) -> list[dt.datetime]:
    """Acquisition times inside the season (a monthly mean's by its middle); an error naming
    both spans when there is none."""
    in_season = [a.time for a in stack.acquisitions if season.period_of(a.middle) is not None]
    if not in_season:
        span = (
            f"{min(stack.times):%Y-%m-%d} to {max(stack.times):%Y-%m-%d}" if stack.times else "none"
        )
        raise InputDataError(
            f"no acquisition falls in the season {season.start} to "
            f"{season.last_day} (acquisitions: {span})",
            stack.description or None,
        )
    return in_season


def _strips(
    stack: SceneStack,
    season: Season,
    bands: tuple[str, ...],
    grid: Grid,
    area_labels: np.ndarray,
    offsets: list[tuple[int, int]],
    tiling: TilingOptions,
    options: CompositeOptions,
    progress: bool,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(row, composites, labels)`` of each row of patches, padded to whole patches.

    Composites are computed one strip at a time so memory stays bounded (a speckle filter
    reads the pixels it needs beyond the strip, so strips match the whole area). Pixels never
    observed are unlabelled.
    """
    p = tiling.patch_size
    width = max(c for _, c in offsets) + p
    rows = sorted({r for r, _ in offsets})
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="prepare", unit="strip")
    for row in rows:
        h = min(p, grid.height - row)
        window = Window(0, row, grid.width, h)
        strip = np.full((season.steps, len(bands), p, width), np.nan, dtype=np.float32)
        strip[:, :, :h, : grid.width] = make_composite(
            stack, season, bands, window, **options.model_dump()
        )
        strip_labels = np.full((p, width), -1, dtype=np.int16)
        strip_labels[:h, : grid.width] = area_labels[row : row + h]
        strip_labels[~np.isfinite(strip).any(axis=(0, 1))] = -1
        yield row, strip, strip_labels


def _warn_small_area(height: int, width: int, patch_size: int) -> None:
    """Warn where the area is smaller than a patch (a 640 m WorldCereal location, 64 px, under
    the default 256): its one patch is mostly padding and cannot be split in two."""
    if height < patch_size or width < patch_size:
        fits = max(8, 2 ** int(np.log2(max(1, min(height, width) // 2))))
        warnings.warn(
            f"the area is {height} × {width} px, smaller than one {patch_size} px patch: its "
            f"patches are mostly padding and few to split; --patch-size {fits} "
            "(tiling: patch_size) tiles it",
            stacklevel=3,
        )


def _assign(offsets: list[tuple[int, int]], split: SplitOptions, stride: int) -> list[str]:
    """The split of each patch; warns when a random split leaves one side empty."""
    assignment = split_patches(offsets, stride=stride, **split.model_dump())
    counts = {s: assignment.count(s) for s in (TRAIN, TEST)}
    if split.method in ("patch", "block") and min(counts.values()) == 0:
        remedy = (
            "use a smaller block or the patch split"
            if split.method == "block"
            else "tile the area into more patches (a smaller --patch-size)"
        )
        warnings.warn(
            f"the {split.method} split left the test or train set empty ({counts}); {remedy}",
            stacklevel=3,
        )
    return assignment


def split_normalization(
    image: Callable[[int], np.ndarray],
    split: Sequence[str],
    bands: Sequence[str],
    percentiles: tuple[float, float] | None = None,
) -> Normalization:
    """Statistics of the train patches (``image(i)`` reads patch ``i``).

    A store without train patches (a location kept whole for testing) records the statistics
    of its test patches, with ``"(test patches)"`` in the method so nobody mistakes them for
    training statistics: models are evaluated there with their checkpoint's statistics.
    """
    train = [i for i, s in enumerate(split) if s == TRAIN]
    if train:
        return compute_normalization((image(i) for i in train), bands, percentiles=percentiles)
    stats = compute_normalization(
        (image(i) for i in range(len(split))), bands, percentiles=percentiles
    )
    return dataclasses.replace(stats, method=f"{stats.method} ({TEST_STATISTICS})")


def split_class_pixels(
    per_patch: Sequence[np.ndarray], split: Sequence[str], classes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Pixels per class name (and ``unlabelled``) in each split.

    ``per_patch[i]`` counts patch ``i``'s pixels by label + 1 (index 0 = unlabelled).
    """
    totals = {s: np.zeros(len(classes) + 1, dtype=np.int64) for s in (TRAIN, TEST)}
    for counts, s in zip(per_patch, split, strict=True):
        totals[s] += counts
    return {s: _named_counts(totals[s], classes) for s in (TRAIN, TEST)}


def _named_counts(counts: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    named = {name: int(counts[i + 1]) for i, name in enumerate(classes)}
    named["unlabelled"] = int(counts[0])
    return named


def _describe(images: object) -> str:
    if isinstance(images, str | Path):
        return str(images)
    if isinstance(images, Sequence):
        return f"{len(images)} files"
    return type(images).__name__


def _require_pixels(
    labels: np.ndarray, classes: Sequence[str], wanted: Sequence[int], path: str | Path
) -> None:
    """Refuse a positive class that a legend names but no pixel of the area holds: a store
    without positives trains nothing and scores nothing."""
    counts = np.bincount(labels[labels >= 0].ravel(), minlength=len(classes))
    if counts.any() and not counts[list(wanted)].any():  # no label at all: named later
        names = ", ".join(repr(classes[i]) for i in wanted)
        held = labelled_pixels(dict(zip(classes, counts.tolist(), strict=True)))
        raise InputDataError(
            f"positive {names}: no pixel of the image area has it (labelled pixels: {held})",
            path,
        )


def read_region(region_dir: str | Path) -> dict[str, object]:
    """The ``region.json`` of a simulated region folder (empty if absent)."""
    path = Path(region_dir) / "region.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputDataError(f"cannot read region metadata: {exc}", path) from exc
    if not isinstance(data, dict):
        raise InputDataError("region metadata is not a JSON object", path)
    return data


def _simulated(labels: str | Path) -> bool:
    """Whether ``labels`` are a simulated region's: the ``region.json`` beside them names the
    simulator. Their ground is then also the file, not only the coordinates, which every draw
    of a preset shares (:mod:`sarcrop.data.split`)."""
    try:
        return bool(read_region(Path(labels).parent).get("simulator"))
    except InputDataError:  # a region.json of another making
        return False


def region_scenes(region_dir: str | Path) -> Path:
    """The scenes of a simulated region folder: the subfolder its ``region.json`` names.

    A folder without ``region.json`` holds the scenes itself.
    """
    region_dir = Path(region_dir)
    meta = read_region(region_dir)
    files = meta.get("files")
    name = files.get("scenes", "scenes") if isinstance(files, dict) else "scenes"
    scenes = region_dir / str(name)
    return scenes if meta and scenes.is_dir() else region_dir


def resolve_season(
    start: dt.date | None,
    region: Mapping[str, object],
    *,
    timesteps: int | None = None,
    days: int | None = None,
) -> Season | None:
    """The season starting at ``start``, else the one a ``region.json`` records (``None``
    without either); ``timesteps`` and ``days`` override its length.
    """
    given = {k: v for k, v in {"steps": timesteps, "days": days}.items() if v is not None}
    if start is not None:
        return Season(start, **given)
    if region.get("season"):
        return dataclasses.replace(Season.from_dict(region["season"]), **given)  # type: ignore[arg-type]
    return None


def prepare_region(region_dir: str | Path, out: str | Path, **options: object) -> Path:
    """:func:`prepare` for a simulated region folder: scenes, labels, season, region, year and
    positive class default to what its ``region.json`` records; ``options`` override them.
    """
    region_dir = Path(region_dir)
    meta = read_region(region_dir)
    files = meta.get("files") or {}
    assert isinstance(files, dict)
    defaults: dict[str, object] = {
        "labels": region_dir / str(files.get("labels", "labels.tif")),
        "region": meta.get("region"),
        "year": meta.get("year"),
    }
    if meta.get("season"):
        defaults["season"] = Season.from_dict(meta["season"])  # type: ignore[arg-type]
    if meta.get("positive"):
        positive = meta["positive"]
        defaults["positive"] = [positive] if isinstance(positive, str) else list(positive)  # type: ignore[call-overload]
    options = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    if "season" not in options:
        raise InputDataError("no season given and no region.json with a season", region_dir)
    return prepare(region_scenes(region_dir), out, **options)  # type: ignore[arg-type]
