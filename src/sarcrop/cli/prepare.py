"""`sarcrop prepare`: scenes + labels → a dataset store of labelled patches."""

from __future__ import annotations

import argparse
import glob
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from sarcrop.cli.shared import add_names, add_percentiles, add_quiet, iso_date
from sarcrop.errors import InputDataError
from sarcrop.options import OutsideParcels, SplitMethod

if TYPE_CHECKING:
    from sarcrop.data.season import Season
    from sarcrop.data.store import DatasetStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sarcrop.options import (
        CompositeOptions,
        LabelOptions,
        SceneOptions,
        SplitOptions,
        TilingOptions,
        add_flags,
    )

    parser.add_argument(
        "--images", required=True, help="scenes: folder, glob, cube or simulated region folder"
    )
    parser.add_argument("--out", type=Path, required=True, help="output store (.zarr)")
    add_names(parser, "--bands", "bands (VH VV, or VH,VV)", default=["VH", "VV"])
    add_names(parser, "--positive", "positive class name(s), e.g. rice")
    parser.add_argument("--region", help="region name recorded in the store")
    parser.add_argument("--year", type=int, help="year recorded in the store")
    add_quiet(parser)

    labels = parser.add_argument_group("labels")
    labels.add_argument(
        "--labels",
        type=Path,
        help="class raster (.tif), label cube (.nc, .zarr) or parcels (.gpkg, .shp, .geojson, "
        ".parquet)",
    )
    fields = LabelOptions.model_fields
    # --column and --variable: the names of label_options' keys (LabelOptions' fields)
    labels.add_argument(
        "--label-column",
        "--column",
        help=f"{fields['column'].description} ({fields['column'].default})",
    )
    labels.add_argument("--label-variable", "--variable", help=fields["variable"].description)
    labels.add_argument(
        "--outside-parcels",
        choices=get_args(OutsideParcels),
        help=f"{fields['outside_parcels'].description} ({fields['outside_parcels'].default})",
    )
    labels.add_argument(
        "--legend",
        type=Path,
        help="WorldCereal legend CSV mapping the label raster's crop codes to names",
    )
    labels.add_argument(
        "--code-map",
        help="JSON object mapping label raster codes to class names, e.g. "
        '\'{"1200": "maize", "0": "unlabelled"}\' (codes not listed become \'other\'; '
        "'unlabelled' ones label nothing)",
    )

    season = parser.add_argument_group("season")
    season.add_argument(
        "--season-start", type=iso_date, help="first day of the season (YYYY-MM-DD)"
    )
    season.add_argument("--timesteps", type=int, help="composite periods (8)")
    season.add_argument("--days", type=int, help="days per composite period (20)")

    add_flags(parser.add_argument_group("scenes"), SceneOptions, prefix="scenes_")
    add_flags(parser.add_argument_group("compositing"), CompositeOptions, prefix="composite_")
    add_flags(parser.add_argument_group("tiling"), TilingOptions, prefix="tiling_")
    split = parser.add_argument_group("train/test split")
    method = SplitOptions.model_fields["method"]
    split.add_argument(
        "--split",
        choices=get_args(SplitMethod),
        help="random patches (paper), blocks of neighbouring patches, or the whole location "
        f"as train or as test ({method.default})",
    )
    add_flags(split, SplitOptions, exclude=("method",), prefix="split_")
    add_percentiles(parser)


def run(args: argparse.Namespace) -> int:
    from sarcrop.data.prepare import prepare, prepare_region, read_region
    from sarcrop.data.scenes import has_scheme
    from sarcrop.data.store import DatasetStore
    from sarcrop.options import (
        CompositeOptions,
        LabelOptions,
        SceneOptions,
        SplitOptions,
        TilingOptions,
        from_flags,
        validated,
    )

    label_options = {
        "column": args.label_column,
        "variable": args.label_variable,
        "code_map": args.code_map,
        "legend": args.legend,
        "outside_parcels": args.outside_parcels,
    }
    options: dict[str, object] = {
        "labels": args.labels,
        "positive": args.positive,
        "bands": tuple(args.bands),
        "label_options": validated(
            LabelOptions, {k: v for k, v in label_options.items() if v is not None}
        ),
        "scenes": from_flags(SceneOptions, args, prefix="scenes_"),
        "composite": from_flags(CompositeOptions, args, prefix="composite_"),
        "tiling": from_flags(TilingOptions, args, prefix="tiling_"),
        "split": from_flags(SplitOptions, args, prefix="split_", method=args.split),
        "percentiles": tuple(args.percentiles) if args.percentiles else None,
        "region": args.region,
        "year": args.year,
        "progress": not args.quiet,
    }
    images = Path(args.images)
    if not images.exists() and not glob.has_magic(args.images) and not has_scheme(args.images):
        raise InputDataError("no such file or folder", args.images)  # before asking for more
    region = read_region(images) if images.is_dir() else {}
    options["season"] = _season(args, region)
    if region:
        out = prepare_region(images, args.out, **options)
    else:
        if args.labels is None:
            raise InputDataError("--labels is required (no region.json with labels)", args.images)
        out = prepare(args.images, args.out, **{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]
    print(summary(DatasetStore(out), args.positive))
    return 0


def _season(args: argparse.Namespace, region: dict[str, object]) -> Season:
    """The season from the flags, else from the region folder's ``region.json``."""
    from sarcrop.data.prepare import resolve_season

    season = resolve_season(args.season_start, region, timesteps=args.timesteps, days=args.days)
    if season is None:
        raise InputDataError(
            "--season-start is required (no region.json with a season)", args.images
        )
    return season


def summary(store: DatasetStore, positive: Sequence[str] | None = None) -> str:
    """A few lines describing a store: patches, class pixels, positive share, statistics."""
    from sarcrop.data.labels import class_key

    meta = store.metadata
    counts = {s: len(store.indices(s)) for s in ("train", "test")}
    lines = [
        f"wrote {store.path}",
        f"  patches: {len(store)} ({counts['train']} train, {counts['test']} test) of "
        f"{meta.patch_size}x{meta.patch_size} px, {store.steps} timesteps x "
        f"{'|'.join(store.bands)} from {meta.season.start}",
    ]
    pixels: dict[str, dict[str, int]] = meta.statistics.get("class_pixels", {})  # type: ignore[assignment]
    positive = positive or meta.positive
    for split in ("train", "test"):
        per_class = pixels.get(split) or {}
        if not any(per_class.values()):  # a whole location in the other split
            continue
        text = ", ".join(f"{name} {n}" for name, n in per_class.items() if n)
        lines.append(f"  {split} pixels: {text}")
        labelled = sum(n for name, n in per_class.items() if name != "unlabelled")
        if positive and labelled:
            wanted = {class_key(p) for p in positive}
            pos = sum(n for name, n in per_class.items() if class_key(name) in wanted)
            share = pos / labelled
            lines.append(f"  {split} positive ({'+'.join(positive)}): {share:.1%} of labelled")
        elif positive:
            lines.append(f"  {split}: no labelled pixels")
    norm = meta.normalization
    stats = ", ".join(
        f"{b} [{lo:.2f}, {hi:.2f}] dB" for b, lo, hi in zip(store.bands, norm.min, norm.max)
    )
    origin = norm.method if counts["train"] == 0 else f"{norm.method}, train only"
    lines.append(f"  normalisation ({origin}): {stats}")
    return "\n".join(lines)
