"""`sarcrop experiment`: run an experiment config (scenarios × methods × seeds)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "experiment",
        help="run the scenarios × methods of an experiment config and write the report",
        description="Run an experiment YAML (or a shipped one: 'paper', 'small'). Finished "
        "units are cached in OUT/cache, so a rerun only does what is missing.",
    )
    parser.add_argument("config", help="experiment YAML, or the name of a shipped config")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seeds", type=int, help="number of seeds (overrides the config)")
    parser.add_argument("--progress", action="store_true", help="show per-step progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarcrop.experiments.presets import resolve_config
    from sarcrop.experiments.runner import run_experiment

    result = run_experiment(
        resolve_config(args.config), args.out, seeds=args.seeds, progress=args.progress
    )
    print(summary(result))
    return 0


def summary(result: object) -> str:
    """The IoU table and where the outputs are."""
    from sarcrop.evaluation.tables import paper_table

    results = result.results  # type: ignore[attr-defined]
    main = results[results["run"] == "main"]
    lines = [
        "",
        "IoU of the positive class (full season; paper's value in brackets):",
        "",
        paper_table(main, "iou", reference=True),
        "",
    ]
    lines.append(f"results: {result.out_dir / 'results.csv'}")  # type: ignore[attr-defined]
    lines.append(f"tables:  {result.tables}")  # type: ignore[attr-defined]
    if result.report is not None:  # type: ignore[attr-defined]
        lines.append(f"report:  {result.report}")  # type: ignore[attr-defined]
    return "\n".join(lines)
