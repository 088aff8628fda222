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

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from sarcrop.data.composite import Method, Space, acquisitions_per_period, composite
from sarcrop.data.labels import labels_from_file, positive_indices
from sarcrop.data.normalization import compute_normalization
from sarcrop.data.reader import OrbitChoice, open_scenes
from sarcrop.data.scenes import SceneStack, Source
from sarcrop.data.season import Season
from sarcrop.data.split import SplitMethod, split_patches
from sarcrop.data.store import StoreMetadata, create_store
from sarcrop.errors import InputDataError


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
    season: Season,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    code_map: Mapping[int, str] | None = None,
    positive: Sequence[str] | None = None,
    bands: Sequence[str] = ("VH", "VV"),
    patch_size: int = 256,
    stride: int | None = None,
    split: SplitMethod = "patch",
    block: int = 4,
    train_fraction: float = 0.6,
    seed: int = 0,
    region: str | None = None,
    year: int | None = None,
    method: Method = "mean",
    space: Space = "linear",
    min_acquisitions: int = 1,
    orbit: OrbitChoice = "both",
    crs: str | None = None,
    resolution: float | None = None,
    min_valid_fraction: float = 0.0,
    percentiles: tuple[float, float] | None = None,
    progress: bool = True,
) -> Path:
    """Build a dataset store at ``out`` from ``images`` (any layout) and ``labels``.

    ``labels`` is a parcel file (``.gpkg``, ``.shp``, ``.geojson``, ``.parquet``; classes from
    ``label_column``, default ``"crop"``) or a class raster. ``positive`` is only recorded (and
    checked against the classes) as the store's default target. Returns ``out``.
    """
    bands = tuple(b.upper() for b in bands)
    stride = patch_size if stride is None else int(stride)
    if patch_size < 8 or not 0 < stride <= patch_size:
        raise InputDataError(
            f"need patch_size >= 8 and 0 < stride <= patch_size, got {patch_size}, {stride}"
        )
    if not 0.0 < train_fraction < 1.0:
        raise InputDataError(f"train fraction must be between 0 and 1, got {train_fraction}")
    if split not in ("patch", "block") or block < 1:
        raise InputDataError(f"split must be 'patch' or 'block' with block >= 1, got {split!r}")
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise InputDataError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")

    stack = (
        images
        if isinstance(images, SceneStack)
        else open_scenes(images, bands=bands, crs=crs, resolution=resolution, orbit=orbit)
    )
    stack.require_bands(bands)
    in_season = [a.time for a in stack.acquisitions if season.period_of(a.time) is not None]
    if not in_season:
        span = (
            f"{min(stack.times):%Y-%m-%d} to {max(stack.times):%Y-%m-%d}" if stack.times else "none"
        )
        raise InputDataError(
            f"no acquisition falls in the season {season.start} to "
            f"{season.end} (acquisitions: {span})",
            stack.description or None,
        )
    grid = stack.grid
    area_labels, classes = labels_from_file(
        labels, grid, column=label_column, class_names=class_names, code_map=code_map
    )
    if positive:
        try:
            positive_indices(classes, positive)
        except InputDataError as exc:
            raise InputDataError(exc.problem, labels) from None

    offsets_all = tile_offsets(grid.height, grid.width, patch_size, stride)
    rows = sorted({r for r, _ in offsets_all})
    cols = sorted({c for _, c in offsets_all})
    padded_width = cols[-1] + patch_size
    offsets: list[tuple[int, int]] = []
    pixels = np.zeros(len(classes) + 1, dtype=np.int64)  # index 0 = unlabelled

    iterator = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="prepare", unit="strip")
    with create_store(out, steps=season.steps, bands=len(bands), patch_size=patch_size) as writer:
        per_patch_pixels: list[np.ndarray] = []
        observed_any = False
        for row in iterator:
            h = min(patch_size, grid.height - row)
            window = Window(0, row, grid.width, h)
            strip = np.full(
                (season.steps, len(bands), patch_size, padded_width), np.nan, dtype=np.float32
            )
            strip[:, :, :h, : grid.width] = composite(
                stack,
                season,
                bands,
                window,
                method=method,
                space=space,
                min_acquisitions=min_acquisitions,
            )
            strip_labels = np.full((patch_size, padded_width), -1, dtype=np.int16)
            strip_labels[:h, : grid.width] = area_labels[row : row + h]
            observed = np.isfinite(strip).any(axis=(0, 1))
            observed_any = observed_any or bool(observed.any())
            strip_labels[~observed] = -1

            kept_images, kept_labels = [], []
            for col in cols:
                lab = strip_labels[:, col : col + patch_size]
                valid = np.count_nonzero(lab >= 0) / lab.size
                if valid == 0 or valid < min_valid_fraction:
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
        assignment = split_patches(
            offsets,
            train_fraction=train_fraction,
            seed=seed,
            method=split,
            block=block,
            stride=stride,
        )
        counts = {s: assignment.count(s) for s in ("train", "test")}
        if len(offsets) >= 2 and min(counts.values()) == 0:
            warnings.warn(
                f"the {split} split left the test or train set empty ({counts}); "
                "use a smaller block or the patch split",
                stacklevel=2,
            )
        train = [i for i, s in enumerate(assignment) if s == "train"]
        stats = compute_normalization(
            (np.asarray(writer.images[i]) for i in train), bands, percentiles=percentiles
        )
        class_pixels = {
            s: _named_counts(
                sum(
                    (per_patch_pixels[i] for i, a in enumerate(assignment) if a == s),
                    np.zeros_like(pixels),
                ),
                classes,
            )
            for s in ("train", "test")
        }
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
                "labels": str(labels),
                "label_column": label_column,
                "composite": {
                    "method": method,
                    "space": space,
                    "min_acquisitions": min_acquisitions,
                },
                "orbit": orbit,
                "acquisitions": [t.isoformat() for t in in_season],
                "acquisitions_per_period": acquisitions_per_period(stack, season),
                "split": {
                    "method": split,
                    "train_fraction": train_fraction,
                    "seed": seed,
                    "block": block if split == "block" else None,
                },
                "min_valid_fraction": min_valid_fraction,
            },
            statistics={"class_pixels": class_pixels, "patches": counts, "tiled": len(offsets_all)},
        )
    return Path(out)


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
    scenes = region_dir / str(files.get("scenes", "scenes"))
    return prepare(scenes if scenes.is_dir() else region_dir, out, **options)  # type: ignore[arg-type]
