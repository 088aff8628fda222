"""`sarcrop compare`: method A minus method B of a finished run, paired over test parcels and
pooled over scenarios."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sarcrop.cli.shared import add_timesteps

if TYPE_CHECKING:
    from sarcrop.experiments.compare import BootstrapSettings, Comparison


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="experiment run directory")
    parser.add_argument("a", metavar="A", help="method A, e.g. bias or ftd+dd")
    parser.add_argument("b", metavar="B", help="method B, e.g. rf")
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="A's share of the labels (1.0; B's too)"
    )
    parser.add_argument("--b-fraction", type=float, help="B's share of the labels (--fraction)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="A's scenarios, shell-style patterns of their ids (every scenario of the metric's "
        "kind with runs of A); each counts once in the pooled difference",
    )
    parser.add_argument(
        "--b-scenarios",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="B's scenarios (A's): each of A's is paired with the one of these scored on "
        "the same test split, e.g. the same scenario from another pre-training",
    )
    add_timesteps(parser)
    parser.add_argument(
        "--metric",
        default="iou",
        help="of the crop in one-crop scenarios: iou, f1, precision or recall; miou to compare "
        "crop-type scenarios (iou)",
    )
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap draws (1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    parser.add_argument("--level", type=float, default=0.95, help="interval level (0.95)")
    parser.add_argument("--out", metavar="FILE", help="also write the rows as CSV")


SPEC_OPTIONS = (
    "a",
    "b",
    "fraction",
    "b_fraction",
    "scenarios",
    "b_scenarios",
    "metric",
    "timesteps",
)
"""The options that make a config's ``comparisons:`` entry, same names."""


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from sarcrop.experiments.compare import BootstrapSettings, RunComparisons
    from sarcrop.experiments.config import ComparisonSpec
    from sarcrop.utils.validation import config_error

    try:
        spec = ComparisonSpec.model_validate({k: getattr(args, k) for k in SPEC_OPTIONS})
    except ValidationError as exc:
        raise config_error(exc, None, model=ComparisonSpec) from None
    bootstrap = BootstrapSettings(args.draws, args.seed, args.level)
    comparisons = RunComparisons(args.run_dir).of_spec(spec, bootstrap)
    print(format_comparisons(comparisons, bootstrap))
    if args.out:
        from sarcrop.experiments.compare import comparison_table
        from sarcrop.utils.atomic import write_text_atomic

        write_text_atomic(args.out, comparison_table(comparisons).to_csv(index=False))
        print(f"rows: {args.out}")
    return 0


def format_comparisons(comparisons: Sequence[Comparison], bootstrap: BootstrapSettings) -> str:
    """The comparisons as a plain-text table, with what they were pooled over."""
    from sarcrop.experiments.compare import label

    first = comparisons[0]
    percent = f"{100 * bootstrap.level:g} %"
    seeds, scenarios = len(first.seeds), len(first.pairs)
    pooled = f"{scenarios} scenarios (each weighs the same)" if scenarios > 1 else "1 scenario"
    lines = [
        f"{label(first.a)} − {label(first.b)}: mean {first.metric} over {seeds} "
        f"seed{'s' if seeds > 1 else ''}, paired over {first.difference.n_parcels} test fields "
        f"of {pooled}",
        f"{'t':>4}  {'A':>6}  {'B':>6}  {'A − B':>7}  {percent + ' interval':>18}  {'A > B':>7}",
    ]
    for c in comparisons:
        d = c.difference
        t = "full" if c.timestep is None else str(c.timestep)
        lines.append(
            f"{t:>4}  {d.mean_a:6.3f}  {d.mean_b:6.3f}  {d.estimate:+7.3f}  "
            f"[{d.low:+.3f}, {d.high:+.3f}]  {100 * d.p_above:5.1f} %"
        )
    lines.append("scenarios (A | B):")
    lines += [f"  {a}" if a == b else f"  {a} | {b}" for a, b in first.pairs]
    lines.append(
        f"interval: {bootstrap.draws} draws of the test fields (a field that several scenarios "
        "test on is drawn once for all of them), both methods scored on the same draws"
    )
    return "\n".join(lines)
