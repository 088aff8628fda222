"""`sarcrop report`: the self-contained HTML report of an experiment run directory."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="experiment run directory")
    parser.add_argument("--out", metavar="FILE", help="output file (default: DIR/report.html)")
    parser.add_argument(
        "--redraw",
        action="store_true",
        help="first redraw the figures and maps from the run's recorded files (trains nothing)",
    )


def run(args: argparse.Namespace) -> int:
    from sarcrop.reports.html import render_report

    if args.redraw:
        from sarcrop.experiments.figures import redraw

        redraw(args.run_dir)
    print(render_report(args.run_dir, args.out))
    return 0
