"""The ``sarcrop`` command line: a thin layer over the Python API.

:data:`COMMANDS` is the index of subcommands with their help and description; each lives in its
own module declaring ``add_arguments(parser)`` and ``run(args) -> int``, which calls the API;
arguments that several commands share come from :mod:`sarcrop.cli.shared`. User errors
(:class:`SarcropError`) print as one line and exit with code 2; ``--debug`` shows the traceback
instead.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import signal
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from sarcrop import __version__
from sarcrop.errors import SarcropError
from sarcrop.utils.signals import settle_pending_reads, signal_handler


@dataclass(frozen=True)
class Command:
    """A subcommand: its module ``sarcrop.cli.<name>``, its line in ``sarcrop --help`` and the
    description atop ``sarcrop <name> --help``."""

    name: str
    help: str
    description: str


# In the order they appear in --help.
COMMANDS = (
    Command(
        "simulate",
        "simulate Sentinel-1 scenes, labels and parcels for a region preset",
        "Simulate a Sentinel-1 VH/VV time series with crop parcels for one of the paper's "
        "regions and write it as GeoTIFF scenes, a label raster and a GeoPackage.",
    ),
    Command(
        "prepare",
        "composite scenes, tile them with labels into a dataset store",
        "Composite a season of Sentinel-1 scenes (20-day means by default), tile them into "
        "labelled patches, split train/test and write a Zarr dataset store. When --images is "
        "a simulated region folder (with region.json), labels, season, region, year and "
        "positive class default to it.",
    ),
    Command(
        "merge",
        "merge dataset stores of several locations into one",
        "Concatenate the patches of several dataset stores (same bands, timesteps and patch "
        "size) into one. Classes are unified by name, each patch keeps its split and its "
        "georeference, and normalisation is recomputed over the merged train split. Prepare "
        "each location with --split train or --split test to train on some and test on "
        "others.",
    ),
    Command(
        "train",
        "train a model from scratch on a dataset store",
        "Train a segmentation model on the train split of a dataset store. Re-running the "
        "same command resumes an interrupted run.",
    ),
    Command(
        "finetune",
        "fine-tune a pre-trained model on a target store (ri, ft, fte, ftd, probe, bias)",
        "Transfer a pre-trained checkpoint: ri = architecture only, ft = all weights, fte = "
        "encoder only (decoder frozen), ftd = decoder only (encoder frozen).",
    ),
    Command(
        "evaluate",
        "IoU/precision/recall/F1 of a checkpoint on a store split",
        "Evaluate a checkpoint over a whole split (one confusion matrix), optionally for "
        "every number of observed time steps t = 1..T.",
    ),
    Command(
        "baseline",
        "train and evaluate the per-pixel Random Forest baseline",
        "Fit the Random Forest baseline on a store's train split and report "
        "IoU/precision/recall/F1 of the positive class on its test split (or on the test "
        "split of --test-store).",
    ),
    Command(
        "predict",
        "map a whole region with a checkpoint (streaming, resumable, COG output)",
        "Predict a crop map over the whole area of the scenes, in overlapping windows "
        "blended without seams, block by block with memory bounded whatever the area. A "
        "one-crop map: band 1 the probability (0-250 = p x 250), band 2 the class (0/1); a "
        "crop-type map: band 1 the class index, then one probability band per class; 255 is "
        "nodata. An interrupted run resumes from <out>.partial/ when restarted with the same "
        "arguments.",
    ),
    Command(
        "sample",
        "draw a stratified random sample of map pixels to label (GeoPackage)",
        "Stratify a map by its classes (or by map class × levels of another raster on the same "
        "grid, e.g. uncertainty), share the sample size among strata and draw pixels with a "
        "seed, reading the map window by window. Writes points at pixel centres with an empty "
        "reference column and the stratum sizes that `sarcrop assess` needs.",
    ),
    Command(
        "assess",
        "accuracy and area with 95% confidence intervals from reference labels",
        "Estimate the error matrix in area proportions, overall / user's / producer's accuracy "
        "and the area of each class with standard errors and 95% confidence intervals "
        "(Olofsson et al. 2014; Stehman 2014 when strata differ from map classes), beside the "
        "pixel-counting area. Writes JSON and Markdown.",
    ),
    Command(
        "experiment",
        "run the scenarios × methods of an experiment config and write the report",
        "Run an experiment YAML (or a shipped one by name: paper, small, barley, crop-types, "
        "real, real-held-out, real-early, crop-types-real, real-ssl, real-tempcnn). Finished "
        "units are cached in OUT/cache, so a rerun only does what is missing.",
    ),
    Command(
        "compare",
        "method A minus method B of a run, paired over test parcels, pooled over scenarios",
        "Compare two methods of a finished experiment run from its saved test maps: the "
        "difference of their mean IoU (or --metric) with an interval from a bootstrap over "
        "test parcels, both scored on the same draws, pooled over several scenarios (each "
        "weighs the same), "
        "at the full season or from the first t composites. B may come from other scenarios "
        "scored on the same test split, e.g. another pre-training. Trains nothing.",
    ),
    Command(
        "report",
        "self-contained HTML report of an experiment run",
        "Render one HTML file (figures embedded, no network access needed) from a run "
        "directory written by `sarcrop experiment`, and print its path.",
    ),
    Command(
        "demo",
        "simulate regions, pre-train, transfer, evaluate and write the report",
        "Runs the shipped 'small' experiment: simulated korea → spain / france, RF, RI, FT, "
        "FTE and FTD, early-season curves, and the HTML report (about 4 minutes on 2 CPU "
        "cores).",
    ),
)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, wrapped without breaking names such as europe-crop-types at a hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = textwrap.wrap(" ".join(text.split()), width - len(indent), break_on_hyphens=False)
        return "\n".join(indent + line for line in lines)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistyped flag or value told in one line, as sarcrop's own errors are,
    the flag meant where one is close; the usage (up to 35 lines for the larger commands) is one
    ``--help`` away, the command's own."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        parser = self._command() or self  # a command's flags are its own parser's
        hint = _glob_hint(message) or _meant(message, parser)
        self.exit(2, f"{parser.prog}: error: {message}{hint} (see {parser.prog} --help)\n")

    def _command(self) -> argparse.ArgumentParser | None:
        """The parser of the subcommand the words name, where this parser has subcommands."""
        commands = next(
            (a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {}
        )
        words = getattr(self, "_words", [])
        named = next((word for word in words if not word.startswith("-")), None)
        return commands.get(named) if named else None


def _meant(message: str, parser: argparse.ArgumentParser) -> str:
    """The flag a mistyped one is closest to (``--resoluton`` → ``--resolution``)."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return ""
    flags = [flag for action in parser._actions for flag in action.option_strings]
    for word in message.removeprefix(prefix).split():
        close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.75)
        if word.startswith("--") and close:
            return f"; did you mean {close[0]}?"
    return ""


def _glob_hint(message: str) -> str:
    """Where the shell expanded an unquoted glob, argparse sees files it did not ask for."""
    prefix = "unrecognized arguments: "
    extra = message.removeprefix(prefix).split() if message.startswith(prefix) else []
    if extra and all(name.endswith(".safetensors") for name in extra):  # models, not scenes
        return "; several models to average go after --models: --models a.safetensors b.safetensors"
    if extra and all(Path(name).exists() for name in extra):
        return (
            "; the shell expanded a glob into these files: quote it, e.g. --images 'scenes/*.tif'"
        )
    return ""


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), else None."""
    names = {entry.name for entry in COMMANDS}
    for word in sys.argv[1:] if argv is None else argv:
        if not word.startswith("-"):
            return word if word in names else None
    return None


def build_parser(*, only: str | None = None) -> argparse.ArgumentParser:
    # Whole option names only: an abbreviation in a script would break, or change meaning, as
    # soon as a later version adds an option that starts the same way.
    parser = ArgumentParser(
        prog="sarcrop",
        allow_abbrev=False,
        description="Crop mapping from Sentinel-1 SAR time series with transfer learning.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sarcrop {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in COMMANDS:
        # argparse %-formats help strings ("95% c" would be a conversion): escape them
        short = entry.help.replace("%", "%%")
        command = sub.add_parser(
            entry.name,
            help=short,
            description=entry.description,
            formatter_class=HelpFormatter,
            allow_abbrev=False,
        )
        if only is not None and entry.name != only:
            continue  # its module (torch, lightning...) is not imported for another command
        module = importlib.import_module(f"sarcrop.cli.{entry.name}")
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


@dataclass(frozen=True)
class OneLineWarning:
    """``warnings.formatwarning`` of a command: one line each, like errors. Picklable, so the
    experiment runner's worker processes format their warnings the same way."""

    command: str

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: str | None = None,
    ) -> str:
        return f"sarcrop {self.command}: warning: {' '.join(str(message).split())}\n"


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Format warnings (e.g. repaired parcel geometries) as one line each, like errors."""
    original = warnings.formatwarning
    warnings.formatwarning = OneLineWarning(command)
    try:
        yield
    finally:
        warnings.formatwarning = original


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv``; a reader that leaves early (``sarcrop … | head``) ends it
    quietly with the code of SIGPIPE (141), as Unix tools do, not with an error."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # What is left in the buffer goes nowhere, so that the exit flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


class Terminated(BaseException):
    """SIGTERM (systemd's, a batch scheduler's, ``timeout``'s), raised where the command is,
    so that what it was writing is cleaned up as on Ctrl-C."""


def _sigterm_raises() -> contextlib.AbstractContextManager[None]:
    """SIGTERM raises :class:`Terminated` while the block runs, and the handler before is
    restored after it."""

    def terminate(signum: int, frame: object) -> NoReturn:
        raise Terminated

    return signal_handler(signal.SIGTERM, terminate)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser(only=_chosen(argv))
    args = parser.parse_args(argv)
    try:
        with (
            _sigterm_raises(),
            _one_line_warnings(args.command) if not args.debug else contextlib.nullcontext(),
        ):
            return int(args.func(args) or 0)
    except BrokenPipeError:
        raise
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
        settle_pending_reads()
        print(f"sarcrop {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        settle_pending_reads()
        print(f"sarcrop {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
