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
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sarcrop.experiments.presets import resolve_config
    from sarcrop.experiments.runner import run_experiment

    result = run_experiment(
        resolve_config(args.config), args.out, seeds=args.seeds, progress=not args.quiet
    )
    print(summary(result))
    return 0


def summary(result: object) -> str:
    """The IoU table (ours beside the paper's, each labelled) and where the outputs are."""
    from sarcrop.evaluation.tables import paper_table
    from sarcrop.experiments.record import RunRecord
    from sarcrop.reports.markdown import main_run

    results = main_run(result.results)  # type: ignore[attr-defined]
    sources = RunRecord.read(result.out_dir).sources  # type: ignore[attr-defined]
    table = paper_table(results, "iou", reference=True, sources=sources)
    lines = ["", table.to_console()]
    lines.append(f"results: {result.out_dir / 'results.csv'}")  # type: ignore[attr-defined]
    lines.append(f"tables:  {result.tables}")  # type: ignore[attr-defined]
    if result.report is not None:  # type: ignore[attr-defined]
        lines.append(f"report:  {result.report}")  # type: ignore[attr-defined]
    return "\n".join(lines)
