"""`sarcrop evaluate`: metrics of a checkpoint on a split of a dataset store."""

from __future__ import annotations

import argparse
import math
from typing import Any

from sarcrop.cli.shared import add_names, add_parcels, add_timesteps, bounds, print_by_parcel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="model (.safetensors, or a shipped name, e.g. europe-maize)"
    )
    parser.add_argument("store", help="dataset store")
    parser.add_argument("--split", default="test", choices=("train", "test", "all"))
    add_timesteps(parser)
    parser.add_argument(
        "--threshold",
        type=float,
        help="probability threshold of the positive class (default: the one it was trained with)",
    )
    add_names(
        parser,
        "--positive",
        "a crop-type model: score its map of this class (or these) against the rest",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="patches per batch (8)")
    parser.add_argument(
        "--other-fields",
        action="store_true",
        help="the test labels (another label file of the area the model learnt from) are "
        "fields it did not learn: score them",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="auto: cuda when available (default)"
    )
    add_parcels(parser)
    parser.add_argument("--out", help="write the metrics, intervals and parcels as JSON")


def run(args: argparse.Namespace) -> int:
    from sarcrop.evaluation.networks import evaluate

    result = evaluate(
        args.checkpoint,
        args.store,
        split=args.split,
        timesteps=args.timesteps,
        batch_size=args.batch_size,
        threshold=args.threshold,
        device=args.device,
        out=args.out,
        positive=args.positive,
        other_fields=args.other_fields,
    )
    print(format_table(result))
    print_by_parcel(result, args.parcels)
    if args.out:
        print(f"metrics: {args.out}")
    return 0


def _cell(value: float) -> str:
    return "  n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def format_table(result: dict[str, Any]) -> str:
    """A plain-text metrics table (one row per evaluated number of time steps)."""
    rows = result.get("early_season") or {result["timesteps"]: result["metrics"]}
    if result.get("classes"):  # a crop-type model: mIoU, accuracy, kappa and IoU per class
        from sarcrop.evaluation.metrics import format_class_table

        title = (
            f"{result['checkpoint']} on {result['store']} ({result['split']}, "
            f"{result['patches']} patches, classes: {', '.join(result['classes'])})"
        )
        return f"{title}\n{format_class_table(rows)}"
    intervals = result.get("early_season_intervals") or {}
    ci = f"  {'IoU 95 % CI':>14}" if intervals else ""
    lines = [
        f"{result['checkpoint']} on {result['store']} ({result['split']}, "
        f"{result['patches']} patches, positive: {', '.join(result['positive'])})",
        f"{'t':>3}  {'IoU':>6}  {'precision':>9}  {'recall':>6}  {'F1':>6}{ci}",
    ]
    for t, m in rows.items():
        line = (
            f"{t:>3}  {_cell(m['iou']):>6}  {_cell(m['precision']):>9}  "
            f"{_cell(m['recall']):>6}  {_cell(m['f1']):>6}"
        )
        if (at_t := intervals.get(t)) is not None:
            line += f"  {bounds(at_t)}"
        lines.append(line)
    if intervals:
        lines.append("CI: from a bootstrap over the split's parcels (connected label components)")
    return "\n".join(lines)
