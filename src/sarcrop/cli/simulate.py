"""`sarcrop simulate`: write a simulated Sentinel-1 region (scenes, labels, parcels)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sarcrop.cli.shared import add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sarcrop.data.simulate.regions import REGIONS

    parser.add_argument("region", choices=sorted(REGIONS), help="region preset")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--year",
        type=int,
        default=None,
        help="season year (default: the paper's year for the region)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="area size in 10 m pixels (default: the preset's)",
    )
    parser.add_argument(
        "--revisit-days",
        type=int,
        default=None,
        help="days between acquisitions (default: the preset's 6 or 12)",
    )
    parser.add_argument(
        "--block-size",
        type=int,
        default=512,
        help="pixels per processing block, a multiple of 256 (memory only)",
    )
    parser.add_argument("--compress", choices=("zstd", "deflate", "lzw"), default="zstd")
    parser.add_argument(
        "--no-swath-edge", action="store_true", help="no nodata swath edge in the scenes"
    )
    parser.add_argument(
        "--product-resolution",
        type=float,
        default=None,
        metavar="M",
        help="simulate a coarser product read onto the 10 m grid, e.g. 20 (WorldCereal's σ⁰)",
    )
    parser.add_argument(
        "--no-randomise",
        action="store_true",
        help="simulate a domain-randomised preset (europe) at its centre, without the seed's "
        "draw of calendars, levels, field sizes and revisit",
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also write signatures.png: the noise-free class curves of the region simulated "
        "(for europe, the seed's calendars and levels; with --no-randomise, the preset's centre)",
    )
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from sarcrop.data.simulate import plot_signatures, simulate_region

    result = simulate_region(
        args.region,
        args.out,
        year=args.year,
        seed=args.seed,
        size=tuple(args.size) if args.size else None,
        revisit_days=args.revisit_days,
        block_size=args.block_size,
        compress=args.compress,
        swath_edge=not args.no_swath_edge,
        product_resolution=args.product_resolution,
        randomise=not args.no_randomise,
        progress=not args.quiet,
    )
    g = result.grid
    print(
        f"{result.region} {result.year} (seed {result.seed}): {g.height}×{g.width} px at 10 m, "
        f"EPSG:{g.crs.to_epsg()}, positive class {result.positive!r}"
    )
    print(f"  {len(result.scenes)} scenes (VH, VV dB)  {result.root / 'scenes'}")
    print(f"  labels ({len(result.classes)} classes)   {result.labels}")
    print(f"  {result.n_parcels} parcels             {result.parcels}")
    print(
        f"  season {result.season.start} + {result.season.steps}×{result.season.days} days  "
        f"{result.metadata}"
    )
    if args.plot:
        seed = None if args.no_randomise else result.seed  # the draw simulated, if any
        png = plot_signatures(result.region, result.root / "signatures.png", result.year, seed=seed)
        print(f"  class signatures          {png}")
    return 0
