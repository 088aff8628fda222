"""Crop-type maps on real Sentinel-1: Random Forest against a recurrent U-Net trained on the target.

    python benchmarks/multiclass_real.py --data ../shared/data --out runs/multiclass_real

Classes: maize, winter cereal (winter wheat and other winter cereals), potato, grassland and
"other" (every other labelled class) of the two Flanders locations (00002806639B424A, 2018;
000028085BF08E7E, 2019, 40 km apart). ``--design pooled`` (default) splits each location's
patches 60/40 at random (seed 0) and merges them, so both splits hold every class;
``--design cross-year`` trains on all of 2018 and tests on all of 2019 (2018 has no winter
cereal and 25 potato pixels: those classes cannot be learnt there). ``--design simulated``
runs the same comparison on the simulator's ``netherlands`` region (256 × 256 px, seed 0, 32 ×
32 patches, 60/40 patch split; barley, wheat, maize, potato, grassland and other), needing no
data. Both methods use the same store and splits. Real stores are prepared as in
``sarcrop/configs/real.yaml`` (VH+VV at 10 m, 8 × 20-day composites from 21 April, 16 × 16
patches); the network is trained as there
(fixed dB scaling, no validation, flips and rotations), with class weights from the training
labels (``pos_weight: auto``). Prints and writes per-class IoU, mIoU, overall accuracy and
kappa of each method and seed; exits 0 with "skipping" where the data are absent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from sarcrop.data.merge import merge_stores
from sarcrop.data.prepare import prepare
from sarcrop.data.season import Season
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.evaluation.metrics import format_class_table, write_metrics_json
from sarcrop.options import BaselineOptions, LabelOptions, SceneOptions, SplitOptions, TilingOptions
from sarcrop.training import TrainConfig
from sarcrop.training.api import evaluate, train

FOLDER = "worldcereal-s1-croptype-patches/geotiff"
LOCATIONS = {2018: "00002806639B424A", 2019: "000028085BF08E7E"}
CODE_MAP = {
    1110: "winter_cereal",
    1910: "winter_cereal",
    1200: "maize",
    5100: "potato",
    9120: "grassland",
    1400: "sorghum",
    2000: "vegetables",
    2130: "cabbage",
    7900: "legumes",
    9998: "mixed_cropping",
}
CLASSES = ("maize", "winter_cereal", "potato", "grassland", "other")
SIMULATED_CLASSES = ("barley", "wheat", "maize", "potato", "grassland", "other")


def simulated_store(out: Path) -> Path:
    """The simulated Netherlands region as a store (cached)."""
    from sarcrop.data.prepare import prepare_region
    from sarcrop.data.simulate import simulate_region

    store = out / "netherlands.zarr"
    if not store.exists():
        simulate_region("netherlands", out / "netherlands", seed=0, size=(256, 256))
        prepare_region(
            out / "netherlands", store, tiling=TilingOptions(patch_size=32), progress=False
        )
    return store


def prepare_location(data: Path, year: int, split: str, out: Path) -> Path:
    """A store of one Flanders location (cached: an existing store is reused)."""
    if out.exists():
        return out
    location = LOCATIONS[year]
    return prepare(
        str(data / FOLDER / f"{location}_S1_*"),
        out,
        labels=data / FOLDER / f"{location}_labels_CT_LC_10m.tif",
        season=Season(dt.date(year, 4, 21), 8, 20),
        bands=("VH", "VV"),
        label_options=LabelOptions(code_map=CODE_MAP),
        region=f"flanders{year}",
        year=year,
        scenes=SceneOptions(resolution=10),
        tiling=TilingOptions(patch_size=16),
        split=SplitOptions(method=split),
        progress=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/multiclass_real"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--design", choices=("pooled", "cross-year", "simulated"), default="pooled")
    args = parser.parse_args(argv)
    if args.design != "simulated" and not (args.data / FOLDER).is_dir():
        print(f"skipping: real data not found at {args.data / FOLDER}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    names = SIMULATED_CLASSES if args.design == "simulated" else CLASSES
    if args.design == "simulated":
        source = target = simulated_store(args.out)
    elif args.design == "cross-year":
        source = prepare_location(args.data, 2018, "train", args.out / "flanders2018.zarr")
        target = prepare_location(args.data, 2019, "test", args.out / "flanders2019-test.zarr")
    else:
        parts = [
            prepare_location(args.data, year, "patch", args.out / f"flanders{year}-patch.zarr")
            for year in LOCATIONS
        ]
        source = target = args.out / "flanders-pooled.zarr"
        if not source.exists():
            merge_stores(parts, source, region="flanders", progress=False)
    classes = ",".join(names)
    results: dict[str, Any] = {"design": args.design, "classes": list(names), "runs": []}
    for seed in range(args.seeds):
        start = time.perf_counter()
        options = BaselineOptions(
            n_estimators=100,
            max_samples_per_class=20_000,
            early_season=False,
            seed=seed,
            classes=classes,
        )
        forest = run_baseline(source, options, test_store=target)
        rf = forest.class_metrics.as_dict()
        rf_seconds = time.perf_counter() - start
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=8,
            lr=0.003,
            patience=None,
            val_fraction=0,
            normalization="fixed",
            augment=True,
            pos_weight="auto",
            progress_bar=False,
            accelerator="cpu",
            seed=seed,
            classes=classes,
        )
        start = time.perf_counter()
        run = train(
            source,
            args.out / f"ri-{args.design}-seed{seed}",
            model_options={"widths": [8, 16, 32]},
            config=config,
        )
        ri = evaluate(run.checkpoint, target)["metrics"]
        ri_seconds = time.perf_counter() - start
        for method, metrics, seconds in (("rf", rf, rf_seconds), ("ri", ri, ri_seconds)):
            results["runs"].append(
                {"method": method, "seed": seed, "seconds": seconds, "metrics": metrics}
            )
            print(f"{method} seed {seed} ({seconds:.0f} s)")
            print(format_class_table({method: metrics}, key="method"))
    path = write_metrics_json(args.out / f"multiclass_real-{args.design}.json", results)
    print(json.dumps({"wrote": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
