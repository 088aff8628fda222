"""`sarcrop baseline`: the paper's per-pixel Random Forest on a dataset store.

The forest is fitted on the train split of STORE and scored on the test split of STORE, or of
``--test-store`` when the test area is another store (another location or year, as in the
paper's transfer scenarios). Both are scaled with STORE's train statistics, so the test area
is seen as a model deployed from the training area would see it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "baseline",
        help="train and evaluate the per-pixel Random Forest baseline",
        description="Fit the Random Forest baseline on a store's train split and report "
        "IoU/precision/recall/F1 of the positive class on its test split (or on the test "
        "split of --test-store).",
    )
    parser.add_argument("store", type=Path, help="dataset store (.zarr) to train on")
    parser.add_argument(
        "--test-store", type=Path, help="evaluate on this store's test split (default: STORE)"
    )
    parser.add_argument(
        "--positive", nargs="+", help="positive class name(s) (default: the store's, or rice)"
    )
    parser.add_argument("--bands", nargs="+", help="bands to use (default: all of the store's)")
    parser.add_argument(
        "--early-season",
        action="store_true",
        help="also train on zero-padded early-season inputs and report every t = 1..T",
    )
    parser.add_argument("--trees", type=int, default=200, help="number of trees (200)")
    parser.add_argument(
        "--max-samples-per-class",
        type=int,
        default=50_000,
        help="training pixels drawn per class (50000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--jobs", type=int, default=-1, help="parallel jobs (-1 = all cores)")
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.data.store import DatasetStore
    from sarcrop.errors import ConfigError, InputDataError
    from sarcrop.evaluation.baseline import (
        early_season_baseline,
        evaluate_baseline,
        fit_baseline_from_dataset,
    )
    from sarcrop.evaluation.metrics import EvaluationInputError, write_metrics_json

    if args.trees < 1 or args.max_samples_per_class < 1:
        raise ConfigError("--trees and --max-samples-per-class must be positive")
    train_store = DatasetStore(args.store)
    test_store = DatasetStore(args.test_store) if args.test_store else train_store
    positive = args.positive or train_store.metadata.positive or ["rice"]
    bands = tuple(b.upper() for b in args.bands) if args.bands else train_store.bands
    if test_store.steps != train_store.steps:
        raise InputDataError(
            f"test store has {test_store.steps} time steps, the training store {train_store.steps}",
            test_store.path,
        )
    train = PatchDataset(train_store, "train", positive, bands)
    test = PatchDataset(
        test_store, "test", positive, bands, normalization=train_store.normalization
    )
    if len(train) == 0:
        raise InputDataError("the store has no train patches", train_store.path)
    if len(test) == 0:
        raise InputDataError("the store has no test patches", test_store.path)
    try:
        model = fit_baseline_from_dataset(
            train,
            max_samples_per_class=args.max_samples_per_class,
            early_season=args.early_season,
            random_state=args.seed,
            n_estimators=args.trees,
            n_jobs=args.jobs,
        )
        if args.early_season:
            curve = early_season_baseline(model, test)
            headline = curve[max(curve)]
        else:
            curve = {}
            headline = evaluate_baseline(model, test)
    except EvaluationInputError as exc:
        raise InputDataError(str(exc), train_store.path) from None

    result: dict[str, object] = {
        "method": "random_forest",
        "store": str(train_store.path),
        "test_store": str(test_store.path),
        "positive": list(positive),
        "bands": list(bands),
        "train_patches": len(train),
        "test_patches": len(test),
        "training_pixels": dict(model.n_samples_per_class_),
        "trees": args.trees,
        "seed": args.seed,
        "metrics": headline.as_dict(),
    }
    if curve:
        result["early_season"] = {t: c.as_dict() for t, c in curve.items()}
    print(
        f"random forest on {train_store.path} ({len(train)} train patches) -> "
        f"{test_store.path} ({len(test)} test patches), positive {'+'.join(positive)}, "
        f"bands {'|'.join(bands)}"
    )
    print(_line("full season", headline.as_dict()))
    for t, confusion in curve.items():
        print(_line(f"t = {t}", confusion.as_dict()))
    if args.out is not None:
        write_metrics_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


def _line(label: str, m: dict[str, float | int]) -> str:
    return (
        f"  {label:<12} IoU {m['iou']:.3f}  precision {m['precision']:.3f}  "
        f"recall {m['recall']:.3f}  F1 {m['f1']:.3f}"
    )
