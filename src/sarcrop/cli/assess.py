"""`sarcrop assess`: a map + reference labels → accuracy and area with 95 % CIs (JSON, Markdown)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from sarcrop.cli.sample import add_reference_flags
from sarcrop.options import OutsideParcels, ReferenceOptions, from_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", type=Path, metavar="MAP", help="classified map (.tif)")
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        help="sample of `sarcrop sample` with labels (.gpkg), or a label raster on the "
        "map's grid or parcels (every labelled pixel)",
    )
    parser.add_argument(
        "--label-column",
        help="column holding the reference class (reference for points, as `sarcrop sample` "
        "writes them; crop for parcels, as `prepare` reads them)",
    )
    parser.add_argument(
        "--labels-csv",
        type=Path,
        metavar="TABLE",
        help="take the labels of a sample from this CSV table (point_id and --label-column)",
    )
    parser.add_argument(
        "--outside-parcels",
        choices=get_args(OutsideParcels),
        help="a census from parcels: the ground outside every parcel is background (a "
        "negative: the parcels are every field) or unlabelled (they are some of the fields); "
        "as prepare reads it (background)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="writes OUT.json and OUT.md (default: <reference name>.assessment beside the map)",
    )
    add_reference_flags(parser, "reference labels (label raster)")


def run(args: argparse.Namespace) -> int:
    from sarcrop.evaluation.area import Z95
    from sarcrop.evaluation.assessment import assess, write_assessment

    result = assess(
        args.map,
        args.reference,
        label_column=args.label_column,
        options=from_flags(ReferenceOptions, args),
        labels_table=args.labels_csv,
        outside_parcels=args.outside_parcels,
    )
    out = args.out or args.map.with_name(args.reference.stem + ".assessment")
    json_path, md_path = write_assessment(result, out)
    print(json_path)
    print(md_path)
    oa = result.estimates.overall
    print("estimate ± half-width of the 95 % interval (1.96 SE)")
    print(f"overall accuracy {oa.value:.4f} ± {Z95 * oa.se:.4f}")
    for i, c in enumerate(result.classes):
        px = result.area_pixels(i)
        ha = result.hectares(px.value)
        where = (
            f"{ha:,.2f} ha ± {result.hectares(Z95 * px.se):,.2f}"
            if ha is not None
            else f"{px.value:,.0f} px ± {Z95 * px.se:,.0f}"
        )
        mapped = result.map_pixels.get(c, 0)
        print(f"class {result.label(c)}: estimated area {where} (mapped {mapped:,} px)")
    print(f"design: {result.design}")
    return 0
