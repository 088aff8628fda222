"""`sarcrop demo`: the small experiment end to end on simulated regions."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sarcrop.cli.shared import add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    parser.add_argument("--config", default="small", help="experiment config (default: small)")
    add_quiet(parser, help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from sarcrop.cli.experiment import summary
    from sarcrop.experiments.presets import resolve_config
    from sarcrop.experiments.runner import run_experiment

    start = time.perf_counter()
    result = run_experiment(resolve_config(args.config), args.out, progress=not args.quiet)
    print(summary(result))
    curves = sorted((result.out_dir / "figures").glob("class-curves-*.png"))
    if curves:
        print(f"simulated VH/VV curves per class: {curves[0]}")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items() if v >= 0.5)
    print(f"time: {timings}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
