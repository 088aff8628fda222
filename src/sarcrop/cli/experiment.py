"""`sarcrop experiment`: run an experiment config (scenarios × methods × seeds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sarcrop.cli.shared import add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML, or the name of a shipped config")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seeds", type=int, help="number of seeds (overrides the config)")
    parser.add_argument(
        "--data",
        "--data-root",
        type=Path,
        help="folder the config's real data is relative to (overrides its data_root)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        help="worker processes training method runs side by side (overrides the config)",
    )
    add_quiet(parser, help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from sarcrop.experiments.config import DataNotFound
    from sarcrop.experiments.presets import resolve_config, shipped_configs
    from sarcrop.experiments.runner import run_experiment

    config = resolve_config(args.config)
    try:
        result = run_experiment(
            config,
            args.out,
            seeds=args.seeds,
            progress=not args.quiet,
            data_root=args.data,
            jobs=args.jobs,
        )
    except DataNotFound as exc:
        if config not in shipped_configs().values() or args.data is not None:
            raise  # a user's own config or --data: a wrong path is an error, not a skip
        print(f"skipping: {exc.problem}")  # shipped without its data: nothing to run here
        return 0
    print(summary(result))
    return 0


def summary(result: object) -> str:
    """The IoU table (ours beside the paper's, each labelled) and where the outputs are."""
    from sarcrop.evaluation.tables import fraction_table, paper_table
    from sarcrop.experiments.classes import class_summary
    from sarcrop.experiments.intervals import read_intervals
    from sarcrop.experiments.record import RunRecord
    from sarcrop.reports.markdown import main_run, scenario_names

    results = main_run(result.results)  # type: ignore[attr-defined]
    sources = RunRecord.read(result.out_dir).sources  # type: ignore[attr-defined]
    lines = [""]
    if len(results):  # binary scenarios (crop-type ones have their own tables below)
        lines.append(paper_table(results, "iou", reference=True, sources=sources).to_console())
    lines += class_summary(result.out_dir)  # type: ignore[attr-defined]
    intervals = read_intervals(result.out_dir)  # type: ignore[attr-defined]
    if intervals is not None and intervals["label_fraction"].nunique() > 1:
        names = scenario_names(results)
        lines.append(fraction_table(intervals, sources=sources, names=names).to_console())
    lines.append(f"results: {result.out_dir / 'results.csv'}")  # type: ignore[attr-defined]
    lines.append(f"tables:  {result.tables}")  # type: ignore[attr-defined]
    if result.report is not None:  # type: ignore[attr-defined]
        lines.append(f"report:  {result.report}")  # type: ignore[attr-defined]
    return "\n".join(lines)
