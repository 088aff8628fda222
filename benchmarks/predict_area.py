"""Benchmark whole-region prediction: wall time, km²/min and peak memory per area size.

For each ``--size N`` the script simulates an N × N px (10 m) Korea-like region with one
acquisition per 20-day composite period (compressed GeoTIFFs, ~50 MB per 1000² px; cached in
``--root``), builds a recurrent U-Net checkpoint for its season (random weights unless
``--checkpoint`` is given: speed does not depend on the weights) and runs ``predict_map`` in a
fresh child process, so the measured peak RSS is prediction alone. Peak RSS is reported for the
prediction process (``ru_maxrss``), the largest child (Dask workers) and the sampled sum over the
whole process tree. With several ``--engine`` values every case runs once per engine, back to
back, and the maps of the engines are compared (largest probability-level difference).

    python benchmarks/predict_area.py --size 2000 --size 4000 --root /tmp/sarcrop-bench
    python benchmarks/predict_area.py --size 8000 --workers 4 --threads 1
    python benchmarks/predict_area.py --size 1024 --engine torch --engine onnx
    python benchmarks/predict_area.py --images my/scenes --checkpoint model.safetensors
    python benchmarks/predict_area.py --size 2000 --tile 10          # also 20000², tiled 10 × 10

``--tile K`` adds, for each simulated size, the same region tiled K × K by one GDAL VRT per scene
(an area K² times larger that reads the real compressed tiles, without simulating it).

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from xml.sax.saxutils import escape

import psutil


def simulate(root: Path, size: int) -> Path:
    from sarcrop.data.simulate import simulate_region

    folder = root / f"korea-{size}"
    if not (folder / "region.json").exists():
        print(f"simulating {size}×{size} px in {folder} …", file=sys.stderr, flush=True)
        simulate_region("korea", folder, size=(size, size), revisit_days=20, seed=0)
    return folder / "scenes"


def tiled(scenes: Path, k: int) -> Path:
    """One VRT per scene of ``scenes`` that repeats it ``k`` × ``k`` times (same metadata)."""
    import rasterio

    out = scenes.parent.parent / f"{scenes.parent.name}-x{k}" / "scenes"
    out.mkdir(parents=True, exist_ok=True)
    for tif in sorted(scenes.glob("*.tif")):
        with rasterio.open(tif) as src:
            width, height, transform = src.width, src.height, src.transform
            tags, crs, nodata = src.tags(), src.crs.to_wkt(), src.nodata
            descriptions, dtype = src.descriptions, src.dtypes[0]
        geo = (transform.c, transform.a, transform.b, transform.f, transform.d, transform.e)
        metadata = "".join(
            f'<MDI key="{escape(key)}">{escape(value)}</MDI>' for key, value in tags.items()
        )
        bands = []
        for band, description in enumerate(descriptions, start=1):
            sources = "".join(
                f"<SimpleSource><SourceFilename>{escape(str(tif.resolve()))}</SourceFilename>"
                f"<SourceBand>{band}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
                f'<DstRect xOff="{col * width}" yOff="{row * height}" '
                f'xSize="{width}" ySize="{height}"/></SimpleSource>'
                for row in range(k)
                for col in range(k)
            )
            bands.append(
                f'<VRTRasterBand dataType="{dtype.capitalize()}" band="{band}">'
                f"<Description>{escape(description or '')}</Description>"
                f"<NoDataValue>{nodata}</NoDataValue>{sources}</VRTRasterBand>"
            )
        (out / f"{tif.stem}.vrt").write_text(
            f'<VRTDataset rasterXSize="{width * k}" rasterYSize="{height * k}">'
            f"<SRS>{escape(crs)}</SRS><GeoTransform>{', '.join(map(repr, geo))}</GeoTransform>"
            f"<Metadata>{metadata}</Metadata>{''.join(bands)}</VRTDataset>\n",
            encoding="utf-8",
        )
    return out


def checkpoint(root: Path, widths: list[int]) -> Path:
    import torch

    from sarcrop.data.simulate import get_region
    from sarcrop.models import build_model
    from sarcrop.training.checkpoint import CheckpointMetadata, save_checkpoint

    preset = get_region("korea")
    season = preset.season(preset.reference_year)
    path = root / f"recurrent_unet-{'-'.join(map(str, widths))}.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = build_model("recurrent_unet", 2, season.steps, widths=widths)
        meta = CheckpointMetadata(
            architecture="recurrent_unet",
            options={"widths": widths},
            bands=["VH", "VV"],
            time_steps=season.steps,
            season=season.to_dict(),
            normalization={"min": [-30.0, -25.0], "max": [-5.0, 0.0], "bands": ["VH", "VV"]},
            region="korea",
        )
        save_checkpoint(path, model, meta)
    return path


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_child(args: argparse.Namespace) -> None:
    """The measured part: one predict_map in this (fresh) process."""
    from sarcrop.options import ExecutionOptions, WindowOptions
    from sarcrop.prediction import predict_map

    me = psutil.Process()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(me))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    windows = WindowOptions(window=args.window, overlap=args.overlap, batch_size=args.batch_size)
    execution = ExecutionOptions(
        workers=args.workers, threads=args.threads, engine=args.engine, resume=False
    )
    out = predict_map(
        args.checkpoint,
        args.images,
        args.out,
        windows=windows,
        execution=execution,
        progress=not args.quiet,
    )
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    import rasterio

    with rasterio.open(out) as src:
        width, height = src.width, src.height
        xres, yres = src.res
    km2 = width * height * xres * yres / 1e6
    print(
        json.dumps(
            {
                "width": width,
                "height": height,
                "km2": km2,
                "wall_s": round(wall, 2),
                "km2_per_min": round(km2 / wall * 60, 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "peak_child_rss_mb": round(
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
                ),
                "peak_tree_rss_mb": round(peak[0] / 2**20, 1),
                "window": args.window,
                "overlap": args.overlap,
                "batch_size": args.batch_size,
                "workers": args.workers,
                "threads": execution.torch_threads,
                "engine": args.engine,
                "output_mb": round(Path(out).stat().st_size / 2**20, 2),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, action="append", help="area side in px (repeatable)")
    parser.add_argument("--images", help="existing scenes instead of simulating")
    parser.add_argument(
        "--tile", type=int, help="also each simulated size tiled K × K by VRTs (K² the area)"
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: random weights)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/sarcrop-bench"))
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int, help="torch threads (available cores)")
    parser.add_argument(
        "--engine",
        action="append",
        choices=("torch", "onnx"),
        help="inference engine (repeatable: run each, back to back; default torch)",
    )
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.engine = args.engine[-1] if args.engine else "torch"
        run_child(args)
        return

    args.root.mkdir(parents=True, exist_ok=True)
    ckpt = args.checkpoint or checkpoint(args.root, args.widths)
    cases = []
    for size in args.size or []:
        scenes = simulate(args.root, size)
        cases.append((f"{size}x{size}", str(scenes)))
        if args.tile and args.tile > 1:
            side = size * args.tile
            cases.append((f"{side}x{side}", str(tiled(scenes, args.tile))))
    if args.images:
        cases.append((Path(args.images).name, args.images))
    if not cases:
        parser.error("give --size and/or --images")
    engines = args.engine or ["torch"]
    for name, images in cases:
        maps = {}
        for engine in engines:
            maps[engine] = args.root / f"map-{name}-{engine}.tif"
            command = [
                sys.executable,
                __file__,
                "--child",
                "--images",
                images,
                "--checkpoint",
                str(ckpt),
                "--out",
                str(maps[engine]),
                "--window",
                str(args.window),
                "--overlap",
                str(args.overlap),
                "--batch-size",
                str(args.batch_size),
                "--engine",
                engine,
            ]
            if args.threads:
                command += ["--threads", str(args.threads)]
            if args.workers:
                command += ["--workers", str(args.workers)]
            if args.quiet:
                command.append("--quiet")
            result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
            print(json.dumps({"case": name, **json.loads(result.stdout.strip().splitlines()[-1])}))
        if len(maps) > 1:
            print(json.dumps({"case": name, "max_level_difference": _max_difference(maps)}))


def _max_difference(maps: dict[str, Path]) -> dict[str, int]:
    """Largest difference in probability levels of each map to the first engine's map."""
    import numpy as np
    import rasterio

    def band(path: Path) -> np.ndarray:
        with rasterio.open(path) as src:
            return src.read(1).astype(int)

    (first, reference), *others = maps.items()
    base = band(reference)
    return {f"{engine}-{first}": int(np.abs(band(p) - base).max()) for engine, p in others}


if __name__ == "__main__":
    main()
