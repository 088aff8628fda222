"""`sarcrop predict`: a checkpoint + scenes → a crop map as a Cloud-Optimized GeoTIFF."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from sarcrop.options import (
    ExecutionOptions,
    MapOptions,
    SceneOptions,
    WindowOptions,
    add_flags,
    from_flags,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "predict",
        help="map a whole region with a checkpoint (streaming, resumable, COG output)",
        description="Predict a crop map over the whole area of the scenes, in overlapping "
        "windows blended without seams, block by block with memory bounded whatever the area. "
        "Band 1 is the probability (0-250 = p x 250), band 2 the class (0/1); 255 is nodata. "
        "An interrupted run resumes from <out>.partial/ when restarted with the same arguments.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="checkpoint (.safetensors)")
    parser.add_argument(
        "--images",
        required=True,
        help="scenes: folder, glob, cube, STAC, or a simulated region folder",
    )
    parser.add_argument("--out", type=Path, required=True, help="output map (.tif)")
    season = parser.add_mutually_exclusive_group()
    season.add_argument("--timesteps", type=int, help="in-season: use the first T composites")
    season.add_argument(
        "--until",
        type=dt.date.fromisoformat,
        metavar="DATE",
        help="in-season: use the composite periods complete by DATE",
    )
    add_flags(parser.add_argument_group("windows"), WindowOptions)
    add_flags(parser.add_argument_group("map"), MapOptions)
    add_flags(parser.add_argument_group("scenes"), SceneOptions)
    add_flags(parser.add_argument_group("execution"), ExecutionOptions)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarcrop.prediction import predict_map

    out = predict_map(
        args.model,
        args.images,
        args.out,
        timesteps=args.timesteps,
        until=args.until,
        windows=from_flags(WindowOptions, args),
        execution=from_flags(ExecutionOptions, args),
        output=from_flags(MapOptions, args),
        scenes=from_flags(SceneOptions, args),
        progress=not args.quiet,
    )
    print(out)
    return 0
