"""`sarcrop merge`: several dataset stores (locations) → one store."""

from __future__ import annotations

import argparse
from pathlib import Path

from sarcrop.cli.shared import add_percentiles, add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", nargs="+", type=Path, help="dataset stores to merge (.zarr)")
    parser.add_argument("--out", type=Path, required=True, help="merged store (.zarr)")
    parser.add_argument("--region", help="region name of the merged store (joined names)")
    add_percentiles(parser, default="the stores' own; 0 100 for plain min/max")
    add_quiet(parser)


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
