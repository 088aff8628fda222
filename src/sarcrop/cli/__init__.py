"""The ``sarcrop`` command line: a thin layer over the Python API.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser
whose ``func(args) -> int`` calls the API. User errors (:class:`SarcropError`) print as one line
and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence

from sarcrop import __version__
from sarcrop.errors import SarcropError

# Module names under sarcrop.cli, in the order they appear in --help.
COMMANDS = (
    "simulate",
    "prepare",
    "merge",
    "train",
    "finetune",
    "evaluate",
    "baseline",
    "predict",
    "experiment",
    "report",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sarcrop",
        description="Crop mapping from Sentinel-1 SAR time series with transfer learning.",
    )
    parser.add_argument("--version", action="version", version=f"sarcrop {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"sarcrop.cli.{name}")
        module.register(sub)
    return parser


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Format warnings (e.g. repaired parcel geometries) as one line each, like errors."""
    original = warnings.formatwarning

    def one_line(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: str | None = None,
    ) -> str:
        return f"sarcrop {command}: warning: {' '.join(str(message).split())}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = original


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _one_line_warnings(args.command) if not args.debug else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except SarcropError as exc:
        if args.debug:
            raise
        print(f"sarcrop {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable input or unwritable output outside sarcrop's checks
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sarcrop {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sarcrop {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
