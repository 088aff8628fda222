"""`sarcrop merge`: several dataset stores (locations) → one store."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "merge",
        help="merge dataset stores of several locations into one",
        description="Concatenate the patches of several dataset stores (same bands, timesteps "
        "and patch size) into one. Classes are unified by name, each patch keeps its split and "
        "its georeference, and normalisation is recomputed over the merged train split. Prepare "
        "each location with --split train or --split test to train on some and test on others.",
    )
    parser.add_argument("stores", nargs="+", type=Path, help="dataset stores to merge (.zarr)")
    parser.add_argument("--out", type=Path, required=True, help="merged store (.zarr)")
    parser.add_argument("--region", help="region name of the merged store (joined names)")
    parser.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="robust normalisation, e.g. 1 99 (default: plain min/max)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarcrop.cli.prepare import summary
    from sarcrop.data.merge import merge_stores
    from sarcrop.data.store import DatasetStore

    out = merge_stores(
        args.stores,
        args.out,
        region=args.region,
        percentiles=tuple(args.percentiles) if args.percentiles else None,
        progress=not args.quiet,
    )
    print(summary(DatasetStore(out)))
    return 0
