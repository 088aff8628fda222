"""Agreement of ``predict --precision bf16`` with fp32 on a simulated area.

Simulates a ``europe`` area (``--size`` px square, seed 8: the shipped model was trained on the
areas of seeds 0-7), maps it with the shipped ``europe-maize`` checkpoint in fp32 and in bf16 on
``--device`` and compares the unrounded blended probabilities (block sums kept as they are
saved, merged as ``predict`` merges them), the classes at 0.5 and the map's probability levels.

    python benchmarks/predict_precision.py --size 1024 --root /tmp/sarcrop-bf16

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

# A draw of the europe preset the shipped model never saw (it was trained on seeds 0-7).
HELD_OUT_SEED = 8


def probability(
    root: Path, region: Path, size: int, precision: str, args: argparse.Namespace
) -> tuple[np.ndarray, float]:
    """The map's unrounded probability (NaN = no data) and the run's wall time."""
    from sarcrop import pretrained
    from sarcrop.options import ExecutionOptions
    from sarcrop.prediction import WindowLayout, predict_map
    from sarcrop.prediction.engine import BlockResult
    from sarcrop.prediction.predict import block_path, work_dir
    from sarcrop.prediction.writer import merged_tiles

    out = root / f"map-{precision}.tif"
    kept = root / f"blocks-{precision}"
    kept.mkdir(parents=True, exist_ok=True)

    def keep(index: int) -> None:
        shutil.copy(block_path(work_dir(out), index), kept / f"{index}.npz")

    execution = ExecutionOptions(threads=args.threads, precision=precision, device=args.device)
    start = time.perf_counter()
    predict_map(
        pretrained.path("europe-maize"),
        region,
        out,
        execution=execution,
        progress=False,
        on_block=keep,
    )
    wall = time.perf_counter() - start
    full = np.full((size, size), np.nan, np.float32)

    def load(index: int) -> np.ndarray:
        return BlockResult.load(kept / f"{index}.npz").sums

    for window, piece in merged_tiles(WindowLayout(size, size), load):
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        full[rows, cols] = piece
    return full, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--root", type=Path, default=Path("/tmp/sarcrop-bf16"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    from sarcrop.data.simulate import simulate_region

    region = args.root / f"europe-{args.size}-seed{HELD_OUT_SEED}"
    if not (region / "region.json").exists():
        simulate_region("europe", region, size=(args.size, args.size), seed=HELD_OUT_SEED)
    fp32, wall32 = probability(args.root, region, args.size, "fp32", args)
    bf16, wall16 = probability(args.root, region, args.size, "bf16", args)
    data = ~np.isnan(fp32)
    a, b = fp32[data], bf16[data]
    diff = np.abs(a - b)
    same = (a >= 0.5) == (b >= 0.5)
    levels = np.abs(np.rint(a * 250) - np.rint(b * 250))
    result = {
        "size": args.size,
        "device": args.device,
        "threads": args.threads,
        "pixels_with_data": int(data.sum()),
        "positive_fp32": float((a >= 0.5).mean()),
        "max_abs_prob_diff": float(diff.max()),
        "mean_abs_prob_diff": float(diff.mean()),
        "p99_abs_prob_diff": float(np.quantile(diff, 0.99)),
        "same_class_percent": float(100 * same.mean()),
        "class_differs_px": int((~same).sum()),
        "max_level_diff": int(levels.max()),
        "equal_levels_percent": float(100 * (levels == 0).mean()),
        "wall_s": {"fp32": round(wall32, 1), "bf16": round(wall16, 1)},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
