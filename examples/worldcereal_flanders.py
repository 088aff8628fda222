"""Maize in Flanders from real Sentinel-1: RF vs a Korea-pretrained recurrent U-Net (RI/FT/FTE).

The data are the two Flanders patches of ``worldcereal-s1-croptype-patches`` (640 m × 640 m
each, VV+VH sigma0 in dB at 20 m, crop types from the Flemish parcel declarations at 10 m):

- ``00002806639B424A`` (2018 season) is the *fine-tuning* location,
- ``000028085BF08E7E`` (2019 season, 40 km away) is the *test* location,

so, as in the paper, the model is tested on a place and a year it never saw. The target is
maize (WorldCereal code 1200) against every other labelled crop; unlabelled pixels (code 0:
roads, farmyards, undeclared land) are ignored by training and metrics.

Steps (each timed):

1. ``prepare`` each location: the 20 m scenes are resampled onto the 10 m label grid, the
   season is 8 × 20-day mean composites from 21 April (sowing to harvest of maize), and the
   64 × 64 area is tiled into 2 × 2 patches of 32 px. A single 64 px patch cannot be split 60/40,
   and fine-tuning holds out one training patch for model selection, so 32 px patches are the
   smallest honest unit: the fine-tuning location is prepared with ``split="train"`` (3 train +
   1 validation inside ``finetune``), the test location with ``split="test"``.
2. Random Forest on the fine-tuning location's pixels, evaluated on the test location.
3. Pre-training on a small simulated ``korea`` region (VH only, rice as positive class).
4. Transfer with RI (same architecture, random weights), FT (all weights) and FTE (encoder only;
   decoder frozen), adapting the first layer from VH to VH|VV and switching the positive class
   from rice to maize; each is evaluated on the test location.

Run it (a few minutes on a laptop CPU; ``--quick`` is the size the test suite uses)::

    python examples/worldcereal_flanders.py --data ../shared/data --work /tmp/flanders

Read the numbers for what they are: the test set is 3,304 labelled pixels from ~20 parcels of
one 640 m square, so one parcel more or less right moves IoU by several points. They show that
the pipeline runs end to end on real data and gives sensible values; they cannot rank the
methods (see docs/real-data.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
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

    patch_size: int = 32
    korea_size: int = 256
    widths: tuple[int, ...] = (16, 32, 64)
    pretrain_epochs: int = 30
    finetune_epochs: int = 40
    batch_size: int = 4
    lr: float = 3e-3
    rf_trees: int = 200
    seed: int = 0
    strategies: tuple[str, ...] = STRATEGIES

    @classmethod
    def quick(cls) -> Settings:
        """Seconds, not minutes: proves the pipeline runs, says nothing about accuracy."""
        return cls(
            korea_size=128,
            widths=(8, 16),
            pretrain_epochs=2,
            finetune_epochs=2,
            rf_trees=30,
            strategies=("fte",),
        )

    def train_config(self, epochs: int) -> Any:
        from sarcrop.training.config import TrainConfig

        return TrainConfig(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            patience=None,
            val_fraction=0.25,
            accelerator="cpu",
            seed=self.seed,
            progress_bar=False,
        )


def location_inputs(data_root: Path, location: str) -> tuple[str, Path]:
    """The scenes glob (VV + VH GeoTIFFs) and the label raster of one location."""
    folder = Path(data_root) / PATCHES / "geotiff"
    return str(folder / f"{location}_S1_*"), folder / f"{location}_labels_CT_LC_10m.tif"


def legend_path(data_root: Path) -> Path:
    return Path(data_root) / PATCHES / "legend" / "wc2eurocrops_map.csv"


def prepare_location(
    data_root: Path, location: str, out: Path, *, split: str, patch_size: int = 32
) -> Path:
    """A store of one location on its 10 m label grid, every patch in ``split``.

    The same as ``sarcrop prepare --images <scenes> --labels <labels> --legend <csv>
    --positive maize --season-start <date> --resolution 10 --patch-size 32 --split train``.
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


def pretrain_korea(work: Path, settings: Settings) -> Path:
    """Simulate a small korea region, prepare it (64 px patches) and pre-train on VH only."""
    from sarcrop.data.prepare import prepare_region
    from sarcrop.data.simulate import simulate_region
    from sarcrop.options import TilingOptions
    from sarcrop.training.api import train

    region = work / "korea"
    if not (region / "region.json").is_file():
        size = settings.korea_size
        simulate_region("korea", region, size=(size, size), seed=settings.seed)
    store = work / "korea.zarr"
    if not store.exists():
        prepare_region(
            region, store, bands=BANDS, tiling=TilingOptions(patch_size=64), progress=False
        )
    result = train(
        store,
        work / "pretrain",
        model="recurrent_unet",
        model_options={"widths": settings.widths},
        bands=("VH",),
        positive=("rice",),
        config=settings.train_config(settings.pretrain_epochs),
    )
    return result.checkpoint


def random_forest(train_store: Path, test_store: Path, settings: Settings) -> dict[str, float]:
    """The paper's RF baseline: fit on the fine-tuning location, score the test location.

    Both locations are scaled with the fine-tuning store's statistics, as a model deployed
    from that location would see the test location.
    """
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.data.store import DatasetStore
    from sarcrop.evaluation.baseline import evaluate_baseline, fit_baseline_from_dataset

    train = DatasetStore(train_store)
    fitted = fit_baseline_from_dataset(
        PatchDataset(train, "train", [POSITIVE], BANDS),
        n_estimators=settings.rf_trees,
        random_state=settings.seed,
        n_jobs=2,
    )
    test = PatchDataset(test_store, "test", [POSITIVE], BANDS, normalization=train.normalization)
    return evaluate_baseline(fitted, test).as_dict()


def transfer(
    checkpoint: Path,
    train_store: Path,
    test_store: Path,
    strategy: str,
    out: Path,
    settings: Settings,
) -> dict[str, float]:
    """Fine-tune the pre-trained model with ``strategy`` (VH → VH|VV, rice → maize), evaluate."""
    from sarcrop.training.api import evaluate, finetune

    result = finetune(
        checkpoint,
        train_store,
        out,
        strategy=strategy,
        bands=BANDS,
        positive=[POSITIVE],
        config=settings.train_config(settings.finetune_epochs),
    )
    return evaluate(result.checkpoint, test_store, split="test")["metrics"]


def _timed(times: dict[str, float], name: str, step: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = step()
    times[name] = time.perf_counter() - start
    return value


def run(data_root: Path, work: Path, settings: Settings | None = None) -> dict[str, Any]:
    """The whole comparison; returns ``{"metrics": {method: {...}}, "seconds": {step: s}}``."""
    settings = settings or Settings()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    metrics: dict[str, dict[str, float]] = {}
    finetune_store = _timed(
        times,
        "prepare fine-tuning location",
        lambda: prepare_location(
            data_root,
            FINETUNE_LOCATION,
            work / "flanders_finetune.zarr",
            split="train",
            patch_size=settings.patch_size,
        ),
    )
    test_store = _timed(
        times,
        "prepare test location",
        lambda: prepare_location(
            data_root,
            TEST_LOCATION,
            work / "flanders_test.zarr",
            split="test",
            patch_size=settings.patch_size,
        ),
    )
    metrics["RF"] = _timed(times, "RF", lambda: random_forest(finetune_store, test_store, settings))
    checkpoint = _timed(times, "pre-train korea (VH)", lambda: pretrain_korea(work, settings))
    for strategy in settings.strategies:
        metrics[strategy.upper()] = _timed(
            times,
            strategy.upper(),
            lambda s=strategy: transfer(
                checkpoint, finetune_store, test_store, s, work / f"finetune_{s}", settings
            ),
        )
    return {"metrics": metrics, "seconds": times, "settings": dataclasses.asdict(settings)}


def format_table(result: dict[str, Any]) -> str:
    """Metrics per method (with its wall time) and the time of the shared steps."""
    seconds = result["seconds"]
    lines = [f"{'method':<8}{'IoU':>8}{'prec':>8}{'recall':>8}{'F1':>8}{'time s':>9}"]
    for method, m in result["metrics"].items():
        lines.append(
            f"{method:<8}{m['iou']:>8.3f}{m['precision']:>8.3f}{m['recall']:>8.3f}"
            f"{m['f1']:>8.3f}{seconds[method]:>9.1f}"
        )
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
    parser.add_argument("--pretrain-epochs", type=int)
    parser.add_argument("--finetune-epochs", type=int)
    args = parser.parse_args(argv)
    if not (args.data / PATCHES).is_dir():
        print(f"error: {args.data / PATCHES} not found (pass --data)", file=sys.stderr)
        return 2
    settings = Settings.quick() if args.quick else Settings()
    changes = {"pretrain_epochs": args.pretrain_epochs, "finetune_epochs": args.finetune_epochs}
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v})
    result = run(args.data, args.work, settings)
    print(format_table(result))
    from sarcrop.evaluation.metrics import write_metrics_json

    write_metrics_json(args.work / "results.json", result)
    print(f"\nwrote {args.work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
