"""`sarcrop sample`: a map → a stratified random sample of pixels to label (GeoPackage)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sarcrop.errors import ConfigError
from sarcrop.options import ReferenceOptions, SamplingOptions, add_flags, flag, from_flags


def add_reference_flags(parser: argparse.ArgumentParser, title: str) -> None:
    """ReferenceOptions as flags (``--label-band``, ``--positive-codes``, ``--legend``,
    ``--code-map``)."""
    group = parser.add_argument_group(title)
    add_flags(group, ReferenceOptions, exclude=("positive_codes",))
    group.add_argument(
        "--positive-codes",
        type=int,
        nargs="+",
        metavar="CODE",
        help="label values of a one-crop map's crop, e.g. 1200 (default: the raster's "
        "classes; a crop-type map: name them with --legend or --code-map)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", type=Path, metavar="MAP", help="classified map (.tif)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int, help="total sample size")
    size.add_argument(
        "--target-se",
        type=float,
        metavar="SE",
        help="sample size for this SE of overall accuracy (needs --expected-accuracy)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output sample (.gpkg)")
    parser.add_argument(
        "--csv",
        type=Path,
        metavar="TABLE",
        help="also write the points as a CSV table (point_id, lon/lat) for labelling tools",
    )
    parser.add_argument(
        "--strata", type=Path, metavar="RASTER", help="strata raster on the map's grid"
    )
    parser.add_argument(
        "--fill-from",
        type=Path,
        metavar="LABELS",
        help="fill the reference column from this label raster",
    )
    group = parser.add_argument_group("sampling")
    add_flags(group, SamplingOptions, exclude=("expected_accuracy", "strata_edges"))
    group.add_argument(
        "--expected-accuracy",
        type=float,
        nargs="+",
        metavar="U",
        help="anticipated user's accuracy: one for all strata or one per stratum",
    )
    group.add_argument(
        "--strata-edges",
        type=float,
        nargs="+",
        metavar="EDGE",
        help="bin edges turning strata raster values into levels",
    )
    add_reference_flags(parser, "reference labels (--fill-from)")


def run(args: argparse.Namespace) -> int:
    from sarcrop.evaluation.reference import check_one_crop_labels, fill_reference
    from sarcrop.evaluation.sampling import (
        check_points_csv_path,
        check_sample_path,
        draw_sample,
        write_points_csv,
        write_sample,
    )

    check_sample_path(args.out)
    if args.csv is not None:  # before a point is drawn: a bad table leaves no sample behind
        if args.csv.absolute() == args.out.absolute():
            raise ConfigError(f"--csv {args.csv} is the sample's own file: name another")
        check_points_csv_path(args.csv)
    labels = from_flags(ReferenceOptions, args)
    if args.fill_from is None and labels.model_fields_set:
        given = ", ".join(flag(name) for name in sorted(labels.model_fields_set))
        raise ConfigError(
            f"{given} read the labels of --fill-from, which is not given: add --fill-from "
            "LABELS, or give them to assess with its --reference"
        )
    if args.fill_from is not None:
        check_one_crop_labels(labels, args.map)  # before a point is drawn
    sample = draw_sample(
        args.map,
        args.n,
        strata=args.strata,
        options=from_flags(SamplingOptions, args),
        target_se=args.target_se,
    )
    if args.fill_from is not None:
        sample = fill_reference(sample, args.fill_from, labels)
    out = write_sample(sample, args.out)
    if args.csv is not None:
        print(write_points_csv(sample, args.csv))
    sizes = ", ".join(f"{s.code}: {s.n}/{s.pixels}" for s in sample.strata)
    print(out)
    print(f"{len(sample.points)} points in {len(sample.strata)} strata (n/N: {sizes})")
    return 0
