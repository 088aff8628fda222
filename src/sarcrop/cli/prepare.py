"""`sarcrop prepare`: scenes + labels → a dataset store of labelled patches."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sarcrop.errors import InputDataError

if TYPE_CHECKING:
    from sarcrop.data.store import DatasetStore


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "prepare",
        help="composite scenes, tile them with labels into a dataset store",
        description="Composite a season of Sentinel-1 scenes (20-day means by default), tile "
        "them into labelled patches, split train/test and write a Zarr dataset store. When "
        "--images is a simulated region folder (with region.json), labels, season, region, "
        "year and positive class default to it.",
    )
    parser.add_argument(
        "--images", required=True, help="scenes: folder, glob, cube or simulated region folder"
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="class raster (.tif) or parcels (.gpkg, .shp, .geojson, .parquet)",
    )
    parser.add_argument("--label-column", help="parcel attribute holding the crop (crop)")
    parser.add_argument("--positive", nargs="+", help="positive class name(s), e.g. rice")
    parser.add_argument(
        "--season-start", type=dt.date.fromisoformat, help="first day of the season (YYYY-MM-DD)"
    )
    parser.add_argument("--steps", type=int, help="composite periods (8)")
    parser.add_argument("--days", type=int, help="days per composite period (20)")
    parser.add_argument("--bands", nargs="+", default=["VH", "VV"], help="bands (VH VV)")
    parser.add_argument("--patch-size", type=int, default=256, help="patch size in pixels (256)")
    parser.add_argument("--stride", type=int, help="tiling step in pixels (patch size)")
    parser.add_argument(
        "--split",
        choices=("patch", "block"),
        default="patch",
        help="random patches (paper) or blocks of neighbouring patches",
    )
    parser.add_argument("--block", type=int, default=4, help="block size in patches (4)")
    parser.add_argument("--train-fraction", type=float, default=0.6, help="train share (0.6)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (0)")
    parser.add_argument("--orbit", choices=("ascending", "descending", "both"), default="both")
    parser.add_argument(
        "--method",
        choices=("mean", "median", "first"),
        default="mean",
        help="composite statistic (mean)",
    )
    parser.add_argument(
        "--min-valid-fraction",
        type=float,
        default=0.0,
        help="skip patches with fewer labelled, observed pixels (0)",
    )
    parser.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="robust normalisation, e.g. 1 99 (default: plain min/max)",
    )
    parser.add_argument("--crs", help="target CRS of the composites, e.g. EPSG:32631")
    parser.add_argument("--resolution", type=float, help="target pixel size in CRS units, e.g. 10")
    parser.add_argument(
        "--legend",
        type=Path,
        help="WorldCereal legend CSV mapping the label raster's crop codes to names",
    )
    parser.add_argument(
        "--code-map",
        help="JSON object mapping label raster codes to class names, e.g. "
        "'{\"1200\": \"maize\"}' (codes not listed become 'other')",
    )
    parser.add_argument("--region", help="region name recorded in the store")
    parser.add_argument("--year", type=int, help="year recorded in the store")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, required=True, help="output store (.zarr)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarcrop.data.prepare import prepare, prepare_region, read_region
    from sarcrop.data.season import Season
    from sarcrop.data.store import DatasetStore

    options: dict[str, object] = {
        "labels": args.labels,
        "label_column": args.label_column,
        "positive": args.positive,
        "bands": tuple(args.bands),
        "patch_size": args.patch_size,
        "stride": args.stride,
        "split": args.split,
        "block": args.block,
        "train_fraction": args.train_fraction,
        "seed": args.seed,
        "orbit": args.orbit,
        "method": args.method,
        "min_valid_fraction": args.min_valid_fraction,
        "percentiles": tuple(args.percentiles) if args.percentiles else None,
        "region": args.region,
        "year": args.year,
        "crs": args.crs,
        "resolution": args.resolution,
        "code_map": _code_map(args),
        "progress": not args.quiet,
    }
    images = Path(args.images)
    region = read_region(images) if images.is_dir() else {}
    season = None
    if args.season_start is not None:
        season = Season(args.season_start, args.steps or 8, args.days or 20)
    elif region.get("season"):
        season = Season.from_dict(region["season"])  # type: ignore[arg-type]
        season = dataclasses.replace(
            season, steps=args.steps or season.steps, days=args.days or season.days
        )
    else:
        raise InputDataError(
            "--season-start is required (no region.json with a season)", args.images
        )
    options["season"] = season
    if region:
        out = prepare_region(images, args.out, **options)
    else:
        if args.labels is None:
            raise InputDataError("--labels is required (no region.json with labels)", args.images)
        out = prepare(args.images, args.out, **{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]
    print(summary(DatasetStore(out), args.positive))
    return 0


def _code_map(args: argparse.Namespace) -> dict[int, str] | None:
    """Raster code → class name from ``--legend`` (with ``--positive``) or ``--code-map``."""
    import json

    from sarcrop.errors import ConfigError

    if args.legend is not None and args.code_map is not None:
        raise ConfigError("give either --legend or --code-map, not both")
    if args.legend is not None:
        from sarcrop.data.legends import worldcereal_code_map

        return worldcereal_code_map(args.legend, positive=args.positive)
    if args.code_map is None:
        return None
    try:
        mapping = json.loads(args.code_map)
        return {int(code): str(name) for code, name in mapping.items()}
    except (json.JSONDecodeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"--code-map must be a JSON object of code: name ({exc})") from None


def summary(store: DatasetStore, positive: Sequence[str] | None = None) -> str:
    """A few lines describing a store: patches, class pixels, positive share, statistics."""
    meta = store.metadata
    counts = {s: len(store.indices(s)) for s in ("train", "test")}
    lines = [
        f"wrote {store.path}",
        f"  patches: {len(store)} ({counts['train']} train, {counts['test']} test) of "
        f"{meta.patch_size}x{meta.patch_size} px, {store.steps} steps x "
        f"{'|'.join(store.bands)} from {meta.season.start}",
    ]
    pixels: dict[str, dict[str, int]] = meta.statistics.get("class_pixels", {})  # type: ignore[assignment]
    positive = positive or meta.positive
    for split in ("train", "test"):
        per_class = pixels.get(split)
        if not per_class:
            continue
        text = ", ".join(f"{name} {n}" for name, n in per_class.items() if n)
        lines.append(f"  {split} pixels: {text}")
        if positive:
            wanted = {p.casefold() for p in positive}
            labelled = sum(n for name, n in per_class.items() if name != "unlabelled")
            pos = sum(n for name, n in per_class.items() if name.casefold() in wanted)
            share = pos / labelled if labelled else 0.0
            lines.append(f"  {split} positive ({'+'.join(positive)}): {share:.1%} of labelled")
    norm = meta.normalization
    stats = ", ".join(
        f"{b} [{lo:.2f}, {hi:.2f}] dB" for b, lo, hi in zip(store.bands, norm.min, norm.max)
    )
    lines.append(f"  normalisation ({norm.method}, train only): {stats}")
    return "\n".join(lines)
