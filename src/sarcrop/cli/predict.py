"""`sarcrop predict`: a checkpoint + scenes → a crop map as a Cloud-Optimized GeoTIFF."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


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
    parser.add_argument("--images", required=True, help="scenes: folder, glob, cube or STAC")
    parser.add_argument("--out", type=Path, required=True, help="output map (.tif)")
    season = parser.add_mutually_exclusive_group()
    season.add_argument("--timesteps", type=int, help="in-season: use the first T composites")
    season.add_argument(
        "--until",
        type=dt.date.fromisoformat,
        metavar="DATE",
        help="in-season: use the composite periods complete by DATE",
    )
    parser.add_argument("--window", type=int, default=256, help="window size in pixels (256)")
    parser.add_argument("--overlap", type=int, default=32, help="window overlap in pixels (32)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per batch (4)")
    parser.add_argument(
        "--block-windows",
        type=int,
        default=8,
        help="windows per block, the unit of work and of resuming (8)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="class threshold (0.5)")
    parser.add_argument("--no-probability", action="store_true", help="omit the probability band")
    parser.add_argument("--no-classes", action="store_true", help="omit the class band")
    parser.add_argument("--orbit", choices=("ascending", "descending", "both"), default="both")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, help="run on a local Dask cluster of N processes")
    cluster.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster (tcp://host:8786)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per block computation, the same everywhere (1)",
    )
    parser.add_argument(
        "--engine",
        choices=("torch", "onnx"),
        default="torch",
        help="inference engine: torch, or onnx (ONNX Runtime on CPU, faster; needs onnxruntime)",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="discard finished blocks of an earlier run and start over",
    )
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
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        block_windows=args.block_windows,
        probability=not args.no_probability,
        classes=not args.no_classes,
        threshold=args.threshold,
        scheduler=args.scheduler,
        workers=args.workers,
        resume=not args.no_resume,
        progress=not args.quiet,
        threads=args.threads,
        engine=args.engine,
        open_options={"orbit": args.orbit},
    )
    print(out)
    return 0
