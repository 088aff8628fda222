"""Arguments and steps that several subcommands share, so that each means the same everywhere."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from sarcrop.options import add_flags, flag, flag_value
from sarcrop.training.config import TrainConfig, read_settings, shipped_recipes, validate_config

# Fields of TrainConfig that say where and how a run executes rather than what it learns.
HARDWARE = (
    "accelerator",
    "devices",
    "num_nodes",
    "distributed",
    "precision",
    "channels_last",
    "compile",
    "num_workers",
    "max_time",
)


class NameList(argparse.Action):
    """A list of names given with spaces or commas, as the comma-separated options take them:
    ``--bands VH VV`` and ``--bands VH,VV`` are one list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        names = [name.strip() for value in values for name in value.split(",")]
        if not all(names):
            parser.error(f"{option_string}: empty name in {' '.join(values)!r}")
        setattr(namespace, self.dest, names)


def add_names(
    parser: argparse.ArgumentParser, flag: str, help: str, default: list[str] | None = None
) -> None:
    """A flag taking a list of names, e.g. ``--bands VH VV`` or ``--bands VH,VV``."""
    parser.add_argument(flag, nargs="+", action=NameList, default=default, help=help)


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    """``--quiet``: the command's ``progress`` is ``not args.quiet``."""
    parser.add_argument("--quiet", action="store_true", help=help)


def add_percentiles(parser: argparse.ArgumentParser, default: str = "plain min/max") -> None:
    """``--percentiles LOW HIGH`` of a store's normalisation (prepare, merge)."""
    parser.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help=f"robust normalisation, e.g. 1 99 (default: {default})",
    )


def iso_date(text: str) -> dt.date:
    """A ``--season-start`` or ``--until`` day, named in the error where it is not one."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def timesteps_arg(text: str) -> int | str:
    """``--timesteps``: a number of composites ``T`` or ``all`` (every t = 1..T)."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None


def add_timesteps(parser: argparse.ArgumentParser) -> None:
    """``--timesteps T|all`` of the evaluations (evaluate, baseline)."""
    parser.add_argument(
        "--timesteps",
        type=timesteps_arg,
        metavar="T|all",
        help="only the first T composites observed, or 'all' for every t = 1..T "
        "(early-season curve); default: the full season",
    )


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """TrainConfig's fields as flags of the same names; they override ``--config`` values.

    A flag the command already defines keeps the command's meaning; that TrainConfig field is
    then set in the ``--config`` file.
    """
    # argparse keeps every option string of a parser and its groups here.
    taken = tuple(
        name for name in TrainConfig.model_fields if flag(name) in parser._option_string_actions
    )
    group = parser.add_argument_group("training (override --config)")
    group.add_argument("--config", metavar="YAML", help="training settings (TrainConfig fields)")
    group.add_argument(
        "--recipe",
        choices=sorted(shipped_recipes()),
        help="start from a shipped recipe's settings, under --config and the flags (few-labels: "
        "a few labelled fields; sarcrop/configs/recipes)",
    )
    add_flags(group, TrainConfig, exclude=(*HARDWARE, *taken, "progress_bar"))
    hardware = parser.add_argument_group("hardware")
    others = tuple(name for name in TrainConfig.model_fields if name not in HARDWARE)
    add_flags(hardware, TrainConfig, exclude=(*others, *taken))
    add_quiet(parser)
    parser.set_defaults(training_flags=tuple(n for n in TrainConfig.model_fields if n not in taken))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < ``--recipe`` < ``--config`` YAML < command-line flags."""
    settings = read_settings(args.config) if args.config else {}
    if getattr(args, "recipe", None) is not None:
        settings["recipe"] = args.recipe
    base = validate_config(settings, args.config)
    names = getattr(args, "training_flags", tuple(TrainConfig.model_fields))
    given = {name: flag_value(getattr(args, name, None)) for name in names}
    devices: Any = given.get("devices")
    if isinstance(devices, str) and devices.lstrip("-").isdigit():
        given["devices"] = int(devices)
    if args.quiet:
        given["progress_bar"] = False
    return base.updated(**given)


def check_one_target(positive: Any, classes: Any) -> None:
    """``--positive`` (a one-crop map) and ``--classes`` (a crop-type map) given together:
    refused, where the API reads a crop among the classes as one of them."""
    if positive and classes:
        from sarcrop.errors import ConfigError

        raise ConfigError(
            f"--positive {' '.join(positive)} names the crop of a one-crop map, and --classes "
            "a crop-type map of every class listed: give one or the other"
        )


def run_training(
    api: Callable[..., Any], args: argparse.Namespace, *inputs: Any, **options: Any
) -> int:
    """Run ``api`` (train or finetune) on ``inputs`` with the flags both commands share
    (``--out``, ``--bands``, ``--positive``, the training options), then print where the
    model is and how it scored."""
    config = config_from_args(args)
    check_one_target(args.positive, config.classes)
    result = api(
        *inputs, args.out, bands=args.bands, positive=args.positive, config=config, **options
    )
    from sarcrop.training.api import global_zero

    if not global_zero():  # the other processes of a multi-process run: one summary
        return 0
    iou = "n/a" if result.best_val_iou is None else f"{result.best_val_iou:.3f}"
    metric = "IoU" if config.classes is None else "mIoU"
    selected = f"best val {metric} {iou} (epoch {result.best_epoch})"
    if config.reconstructs:  # selected on the validation loss: no IoU to give
        selected = f"best val reconstruction loss (epoch {result.best_epoch})"
    if config.val_fraction == 0:
        selected = f"no validation: last epoch ({result.best_epoch})"
    search = result.search or {}
    if search.get("interpolation", config.interpolation) == 0:
        selected = "interpolation 0: the pre-trained start as it is, nothing trained"
    if result.threshold is not None:
        from sarcrop.training.calibration import ThresholdChoice

        selected = ThresholdChoice.from_dict(result.threshold).summary(config.threshold)
    print(f"model: {result.checkpoint}")
    print_labels(result.label_subset)
    if search:
        from sarcrop.training.search import SearchChoice

        print(SearchChoice.from_dict(search).summary())
    epochs = f"{result.epochs} epoch{'s' if result.epochs != 1 else ''}"
    trained = "" if result.epochs == 0 else f", {epochs}"
    print(selected + trained + (", resumed" if result.resumed else ""))
    if result.out_of_time:
        print("stopped by --max-time: run the same command again (a larger --max-time) to go on")
    return 0


def print_labels(subset: dict[str, Any] | None) -> None:
    """One line on the labels a few-label run learnt from, so that a user sees how few (a run
    of every label records no parcels and says nothing)."""
    if subset and "parcels" in subset:
        print(
            f"labels: {subset['parcels']} of the {subset['total_parcels']} labelled parcels of "
            f"the {subset['split']} split ({subset['fraction']:.0%} chosen with seed "
            f"{subset['seed']})"
        )


def add_parcels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parcels",
        action="store_true",
        help="also list every test parcel: its crop, pixels, share given its own class "
        "(worst first)",
    )


def print_by_parcel(result: dict[str, Any], parcels: bool) -> None:
    """The headline's intervals over parcels, and with ``parcels`` the parcels themselves."""
    print(format_intervals(result))
    if parcels:
        print(format_parcels(result))


def format_intervals(result: dict[str, Any]) -> str:
    """One line: the headline metrics' intervals from the bootstrap over parcels."""
    from sarcrop.reports.markdown import metric_name

    intervals = result.get("intervals") or {}
    if not intervals:
        return "no labelled parcels: no intervals"
    level = 100 * result["interval_level"]
    parcels = next(iter(intervals.values()))["n_parcels"]
    cells = ", ".join(f"{metric_name(name)} {bounds(i)}" for name, i in intervals.items())
    return f"{level:g} % intervals, bootstrap over {parcels} parcels: {cells}"


def bounds(interval: dict[str, Any]) -> str:
    """``[low, high]``, or ``n/a (1 parcel)`` where too few parcels hold the class for an
    interval (the record's ``undefined``)."""
    if interval.get("undefined"):
        k = interval.get("class_parcels", interval.get("n_parcels", 0))
        return f"n/a ({k} parcel{'' if k == 1 else 's'})"
    return f"[{_number(interval['low'])}, {_number(interval['high'])}]"


def format_parcels(result: dict[str, Any]) -> str:
    """A table of the parcels, the least correct first."""
    parcels = sorted(result.get("parcels", []), key=lambda p: (p["correct"], -p["pixels"]))
    lines = [f"{'parcel':>6}  {'crop':<16} {'pixels':>6}  {'correct':>7}  {'mostly':<16} patches"]
    for p in parcels:
        patches = " ".join(str(i) for i in p["patches"])
        lines.append(
            f"{p['parcel']:>6}  {p['crop']:<16} {p['pixels']:>6}  {p['correct']:>7.2f}  "
            f"{p['predicted']:<16} {patches}"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"
