"""Maize in Flanders from real Sentinel-1: the shipped pre-trained model against RF and RI.

The data are the two Flanders patches of ``worldcereal-s1-croptype-patches`` (640 m × 640 m
each, VV+VH sigma0 in dB at 20 m, crop types from the Flemish parcel declarations at 10 m):

- ``00002806639B424A`` (2018 season) is the *fine-tuning* location,
- ``000028085BF08E7E`` (2019 season, 40 km away) is the *test* location (``--reverse`` swaps
  them),

so, as in the paper, the model is tested on a place and a year it never saw. The target is
maize (WorldCereal code 1200) against every other labelled crop; unlabelled pixels (code 0:
roads, farmyards, undeclared land) are ignored by training and metrics.

Steps (each timed):

1. ``prepare`` each location: the 20 m scenes are resampled onto the 10 m label grid, the
   season is 8 × 20-day mean composites from 21 April (sowing to harvest of maize), and the
   64 × 64 area is tiled into 16 patches of 16 px, all ``train`` at the fine-tuning location
   and all ``test`` at the other.
2. Random Forest on the fine-tuning location's pixels, evaluated on the test location.
3. RI (the network from scratch), FT (all weights) and FTE (encoder only, decoder frozen) from
   the shipped ``europe-maize`` model (docs/pretrained.md: pre-trained on simulated data only),
   with the few-labels recipe: 20 epochs, batch 4, lr 0.003, no validation patch (a fixed
   budget), flips and rotations, class weights from the labels, fixed dB input ranges.

Every method runs with seeds 0-4 (``--seeds``); the table gives mean ± std over seeds. This is
the real-data benchmark's Flanders scenario at 100 % of the labels (``sarcrop experiment real``,
docs/results.md) as a script of plain API calls.

Run it (about two minutes on a 2-core CPU; ``--quick`` is the size the test suite uses)::

    python examples/worldcereal_flanders.py --data ../shared/data --work /tmp/flanders

Read the numbers for what they are: the test set is 3,304 labelled pixels from ~20 parcels of
one 640 m square, so one parcel more or less right moves IoU by several points (the benchmark
gives parcel-bootstrap intervals; see docs/real-data.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

PATCHES = "worldcereal-s1-croptype-patches"
FINETUNE_LOCATION = "00002806639B424A"
TEST_LOCATION = "000028085BF08E7E"
SEASON_START = {FINETUNE_LOCATION: dt.date(2018, 4, 21), TEST_LOCATION: dt.date(2019, 4, 21)}
POSITIVE = "maize"
BANDS = ("VH", "VV")
STRATEGIES = ("ri", "ft", "fte")

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Sizes of the run. The defaults are the documented run; :meth:`quick` is the CI size."""

    checkpoint: str = "europe-maize"
    patch_size: int = 16
    epochs: int = 20
    batch_size: int = 4
    lr: float = 3e-3
    rf_trees: int = 100
    seeds: int = 5
    strategies: tuple[str, ...] = STRATEGIES

    @classmethod
    def quick(cls) -> Settings:
        """Seconds, not minutes: proves the pipeline runs, says nothing about accuracy."""
        return cls(epochs=2, rf_trees=20, seeds=1, strategies=("fte",))

    def train_config(self, seed: int) -> Any:
        """The few-labels recipe (docs/training.md) with this run's epochs, batch size and lr."""
        from sarcrop.training.config import TrainConfig

        return TrainConfig(
            recipe="few-labels",
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            accelerator="cpu",
            seed=seed,
            progress_bar=False,
        )


def location_inputs(data_root: Path, location: str) -> tuple[str, Path]:
    """The scenes glob (VV + VH GeoTIFFs) and the label raster of one location."""
    folder = Path(data_root) / PATCHES / "geotiff"
    return str(folder / f"{location}_S1_*"), folder / f"{location}_labels_CT_LC_10m.tif"


def legend_path(data_root: Path) -> Path:
    return Path(data_root) / PATCHES / "legend" / "wc2eurocrops_map.csv"


def prepare_location(
    data_root: Path, location: str, out: Path, *, split: str, patch_size: int = 16
) -> Path:
    """A store of one location on its 10 m label grid, every patch in ``split``.

    The same as ``sarcrop prepare --images <scenes> --labels <labels> --legend <csv>
    --positive maize --season-start <date> --resolution 10 --patch-size 16 --split train``.
    """
    from sarcrop.data.legends import worldcereal_code_map
    from sarcrop.data.prepare import prepare
    from sarcrop.data.season import Season
    from sarcrop.options import LabelOptions, SceneOptions, SplitOptions, TilingOptions

    images, labels = location_inputs(data_root, location)
    code_map = worldcereal_code_map(legend_path(data_root), positive=[POSITIVE])
    start = SEASON_START[location]
    return prepare(
        images,
        out,
        labels=labels,
        season=Season(start, steps=8, days=20),
        label_options=LabelOptions(code_map=code_map),
        positive=[POSITIVE],
        bands=BANDS,
        scenes=SceneOptions(resolution=10),
        tiling=TilingOptions(patch_size=patch_size),
        split=SplitOptions(method=split),
        region=f"flanders-{location}",
        year=start.year,
        progress=False,
    )


def random_forest(
    train_store: Path, test_store: Path, settings: Settings, seed: int = 0
) -> dict[str, float]:
    """The paper's RF baseline (``sarcrop baseline``'s pipeline, the benchmark's ``rf``): fit
    on the fine-tuning location, score the test location."""
    from sarcrop.evaluation.baseline import run_baseline
    from sarcrop.options import BaselineOptions

    options = BaselineOptions(
        n_estimators=settings.rf_trees,
        max_samples_per_class=20_000,
        early_season=False,
        seed=seed,
    )
    result = run_baseline(
        train_store, options, test_store=test_store, bands=BANDS, positive=[POSITIVE], jobs=2
    )
    return result.metrics.as_dict()


def transfer(
    train_store: Path,
    test_store: Path,
    strategy: str,
    out: Path,
    settings: Settings,
    seed: int = 0,
) -> dict[str, float]:
    """Fine-tune the shipped model with ``strategy`` (``ri``: the same network from scratch)
    on the fine-tuning location and evaluate it on the test location."""
    from sarcrop.training.api import evaluate, finetune

    result = finetune(
        settings.checkpoint,
        train_store,
        out,
        strategy=strategy,
        bands=BANDS,
        positive=[POSITIVE],
        config=settings.train_config(seed),
    )
    return evaluate(result.checkpoint, test_store, split="test")["metrics"]


def _timed(times: dict[str, float], name: str, step: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = step()
    times[name] = times.get(name, 0.0) + time.perf_counter() - start
    return value


def run(
    data_root: Path, work: Path, settings: Settings | None = None, *, reverse: bool = False
) -> dict[str, Any]:
    """The whole comparison; returns ``{"metrics": {method: [per seed {...}]}, "seconds":
    {step: s}, ...}``."""
    settings = settings or Settings()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    finetune_at, test_at = FINETUNE_LOCATION, TEST_LOCATION
    if reverse:
        finetune_at, test_at = test_at, finetune_at
    times: dict[str, float] = {}
    train_store = _timed(
        times,
        "prepare fine-tuning location",
        lambda: prepare_location(
            data_root,
            finetune_at,
            work / f"{finetune_at}_train.zarr",
            split="train",
            patch_size=settings.patch_size,
        ),
    )
    test_store = _timed(
        times,
        "prepare test location",
        lambda: prepare_location(
            data_root,
            test_at,
            work / f"{test_at}_test.zarr",
            split="test",
            patch_size=settings.patch_size,
        ),
    )
    metrics: dict[str, list[dict[str, float]]] = {"RF": []}
    for seed in range(settings.seeds):
        metrics["RF"].append(
            _timed(times, "RF", lambda s=seed: random_forest(train_store, test_store, settings, s))
        )
        for strategy in settings.strategies:
            out = work / f"{strategy}_seed{seed}"
            metrics.setdefault(strategy.upper(), []).append(
                _timed(
                    times,
                    strategy.upper(),
                    lambda st=strategy, s=seed, o=out: transfer(
                        train_store, test_store, st, o, settings, s
                    ),
                )
            )
    return {
        "finetune_location": finetune_at,
        "test_location": test_at,
        "metrics": metrics,
        "seconds": times,
        "settings": dataclasses.asdict(settings),
    }


def _mean_std(values: Sequence[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"


def format_table(result: dict[str, Any]) -> str:
    """IoU (mean ± std over seeds, and per seed), precision and recall per method, with the
    wall time of each method over all seeds and of the shared steps."""
    seconds = result["seconds"]
    lines = [
        f"fine-tune {result['finetune_location']} -> test {result['test_location']}",
        f"{'method':<8}{'IoU':>16}{'precision':>12}{'recall':>10}{'time s':>9}  IoU per seed",
    ]
    for method, runs in result["metrics"].items():
        per_seed = " ".join(f"{m['iou']:.3f}" for m in runs)
        lines.append(
            f"{method:<8}{_mean_std([m['iou'] for m in runs]):>16}"
            f"{statistics.fmean(m['precision'] for m in runs):>12.3f}"
            f"{statistics.fmean(m['recall'] for m in runs):>10.3f}"
            f"{seconds[method]:>9.1f}  {per_seed}"
        )
    forest = result["metrics"]["RF"][0]  # every method sees the same test pixels
    positives = forest["tp"] + forest["fn"]
    everywhere = positives / (positives + forest["fp"] + forest["tn"])
    lines.append(f"(answering maize everywhere: IoU {everywhere:.3f})")
    lines.append("")
    for step, s in seconds.items():
        if step not in result["metrics"]:
            lines.append(f"{step:<32}{s:>8.1f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data"),
        help="the shared real-data folder (holds worldcereal-s1-croptype-patches)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("flanders-run"),
        help="where stores, checkpoints and results go",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--reverse", action="store_true", help="fine-tune in 2019, test 2018")
    parser.add_argument("--seeds", type=int, help="runs per method (default 5)")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default 20)")
    args = parser.parse_args(argv)
    if not (args.data / PATCHES).is_dir():
        print(f"error: {args.data / PATCHES} not found (pass --data)", file=sys.stderr)
        return 2
    settings = Settings.quick() if args.quick else Settings()
    changes = {"seeds": args.seeds, "epochs": args.epochs}
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v})
    result = run(args.data, args.work, settings, reverse=args.reverse)
    print(format_table(result))
    from sarcrop.evaluation.metrics import write_metrics_json

    write_metrics_json(args.work / "results.json", result)
    print(f"\nwrote {args.work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
