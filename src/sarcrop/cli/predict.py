"""`sarcrop predict`: a checkpoint (or several, averaged) + scenes → a crop map (binary or crop
type) as a COG."""

from __future__ import annotations

import argparse
from pathlib import Path

from sarcrop.cli.shared import add_quiet, iso_date
from sarcrop.errors import SarcropError
from sarcrop.options import (
    ExecutionOptions,
    MapOptions,
    SceneOptions,
    WindowOptions,
    add_flags,
    from_flags,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        type=Path,
        nargs="?",
        metavar="MODEL",
        help="checkpoint (.safetensors, or a shipped name, e.g. europe-maize)",
    )
    parser.add_argument(
        "--models",
        type=Path,
        nargs="+",
        metavar="MODEL",
        help="checkpoints to average (mean probability and a between-model spread band)",
    )
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
        type=iso_date,
        metavar="DATE",
        help="in-season: use the composite periods complete by DATE",
    )
    parser.add_argument(
        "--season-start",
        type=iso_date,
        metavar="DATE",
        help="map the season starting on DATE (another year): the model's composite periods "
        "moved there (default: the model's own season)",
    )
    add_flags(parser.add_argument_group("windows"), WindowOptions)
    add_flags(parser.add_argument_group("map"), MapOptions)
    add_flags(parser.add_argument_group("scenes"), SceneOptions)
    add_flags(parser.add_argument_group("execution"), ExecutionOptions)
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from sarcrop.prediction import predict_map

    models = ([args.model] if args.model else []) + (args.models or [])
    if not models:
        raise SarcropError("give a checkpoint (MODEL) or --models A B ...")
    out = predict_map(
        models[0] if len(models) == 1 else models,
        args.images,
        args.out,
        timesteps=args.timesteps,
        until=args.until,
        season_start=args.season_start,
        windows=from_flags(WindowOptions, args),
        execution=from_flags(ExecutionOptions, args),
        output=from_flags(MapOptions, args),
        scenes=from_flags(SceneOptions, args),
        progress=not args.quiet,
    )
    print(out)
    return 0
