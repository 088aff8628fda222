"""`sarcrop baseline`: the paper's per-pixel Random Forest on a dataset store.

The forest is fitted on the train split of STORE and scored on the test split of STORE, or of
``--test-store`` when the test area is another store (another location or year, as in the
paper's transfer scenarios). Both are scaled with STORE's train statistics, so the test area
is seen as a model deployed from the training area would see it. The experiments' ``rf``
method runs the same :func:`sarcrop.evaluation.baseline.run_baseline` with the YAML's
``baseline:`` section, whose keys are these flags.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sarcrop.cli.shared import (
    add_names,
    add_parcels,
    add_timesteps,
    check_one_target,
    print_by_parcel,
    print_labels,
)
from sarcrop.errors import InputDataError
from sarcrop.options import BaselineOptions, add_flags, from_flags

if TYPE_CHECKING:
    from sarcrop.evaluation.baseline import BaselineResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="dataset store (.zarr) to train on")
    parser.add_argument(
        "--test-store", type=Path, help="evaluate on this store's test split (default: STORE)"
    )
    add_names(parser, "--positive", "positive class name(s) (default: the store's)")
    add_names(parser, "--bands", "bands to use (default: all of the store's)")
    add_timesteps(parser)
    add_flags(parser.add_argument_group("forest (the YAML baseline: section)"), BaselineOptions)
    parser.add_argument(
        "--features",
        metavar="CHECKPOINT",
        help="fit the forest on this frozen pre-trained model's per-pixel features (a "
        ".safetensors file or a shipped name such as europe-maize; bands default to its own); "
        "it learns full-season features only (no early-season copies)",
    )
    parser.add_argument(
        "--raw",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --features, add each pixel's own series to the network's features",
    )
    parser.add_argument("--jobs", type=jobs_arg, default=-1, help="parallel jobs (-1 = all cores)")
    add_parcels(parser)
    parser.add_argument(
        "--out", type=Path, help="write the metrics, intervals and parcels as JSON here"
    )
    parser.add_argument(
        "--save",
        type=Path,
        metavar="MODEL",
        help="write the fitted forest as a checkpoint (.safetensors) that predict and evaluate "
        "take as they take a network's",
    )


def jobs_arg(text: str) -> int:
    """``--jobs``: a number of workers or -1 (all cores), refused here rather than by joblib's
    traceback (0 and other negatives mean nothing the help names)."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1 and jobs != -1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1 or -1, got {text!r}")
    return jobs


def run(args: argparse.Namespace) -> int:
    from sarcrop.data.store import DatasetStore
    from sarcrop.evaluation.baseline import run_baseline
    from sarcrop.evaluation.feature_forest import run_feature_forest
    from sarcrop.evaluation.metrics import write_metrics_json

    common: dict[str, Any] = {
        "test_store": args.test_store,
        "bands": args.bands,
        "positive": args.positive,
        "timesteps": args.timesteps,
        "jobs": args.jobs,
    }
    options = from_flags(BaselineOptions, args)
    check_one_target(args.positive, options.classes)
    if (
        args.save is None
        and args.test_store is None
        and not DatasetStore(args.store).indices("test")
    ):
        problem = "the store has no test patches: score on --test-store, or --save the forest"
        raise InputDataError(f"{problem} to map with", args.store)
    if args.features is None:
        result = run_baseline(args.store, options, **common)
        on = ""
    else:
        result = run_feature_forest(args.features, args.store, options, raw=args.raw, **common)
        on = f" on the features of {args.features}{' and the series' if args.raw else ''}"
    target = f"positive {'+'.join(result.positive)}"
    if result.classes:
        target = f"classes {', '.join(result.classes)}"
    print(
        f"random forest{on} on {result.store} ({result.train_patches} train patches) -> "
        f"{result.test_store} ({result.test_patches} test patches), {target}, "
        f"bands {'|'.join(result.bands)}"
    )
    print_labels(result.label_subset)
    record = result.to_dict()
    if result.scored:
        record.update(_scores(result, args.parcels))
    else:
        print("no test patches: the forest learnt every labelled patch and is not scored")
    if args.out is not None:
        write_metrics_json(args.out, record)
        print(f"wrote {args.out}")
    if args.save is not None:
        print(f"forest: {result.save(args.save)} (sarcrop predict and evaluate take it)")
    return 0


def _scores(result: BaselineResult, parcels: bool) -> dict[str, Any]:
    """Print the test split's scores; return their parcel intervals and parcels."""
    if result.classes:
        from sarcrop.evaluation.metrics import format_class_table

        print(format_class_table({t: c.as_dict() for t, c in result.class_confusions.items()}))
    for t, confusion in result.confusions.items():
        label = "full season" if t == result.steps else f"t = {t}"
        print(_line(label, confusion.as_dict()))
    by_parcel = result.by_parcel()
    print_by_parcel({**result.to_dict(), **by_parcel}, parcels)
    return by_parcel


def _line(label: str, m: dict[str, float | int]) -> str:
    return (
        f"  {label:<12} IoU {m['iou']:.3f}  precision {m['precision']:.3f}  "
        f"recall {m['recall']:.3f}  F1 {m['f1']:.3f}"
    )
