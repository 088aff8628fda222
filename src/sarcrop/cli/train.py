"""`sarcrop train`: train a model from scratch on a dataset store (e.g. pre-training)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sarcrop.options import add_flags
from sarcrop.training.config import TrainConfig

# Fields of TrainConfig that say where and how a run executes rather than what it learns.
HARDWARE = ("accelerator", "devices", "num_nodes", "distributed", "precision", "max_time")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """TrainConfig's fields as flags of the same names; they override ``--config`` values."""
    group = parser.add_argument_group("training (override --config)")
    group.add_argument("--config", metavar="YAML", help="training settings (TrainConfig fields)")
    add_flags(group, TrainConfig, exclude=(*HARDWARE, "progress_bar"))
    hardware = parser.add_argument_group("hardware")
    others = tuple(name for name in TrainConfig.model_fields if name not in HARDWARE)
    add_flags(hardware, TrainConfig, exclude=others)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < ``--config`` YAML < command-line flags."""
    base = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    given = {name: getattr(args, name, None) for name in TrainConfig.model_fields}
    devices: Any = given["devices"]
    if isinstance(devices, str) and devices.lstrip("-").isdigit():
        given["devices"] = int(devices)
    if args.quiet:
        given["progress_bar"] = False
    return base.updated(**given)


def print_result(result: Any) -> None:
    iou = "n/a" if result.best_val_iou is None else f"{result.best_val_iou:.3f}"
    print(f"model: {result.checkpoint}")
    print(
        f"best val IoU {iou} (epoch {result.best_epoch}), {result.epochs} epochs"
        + (", resumed" if result.resumed else "")
    )


def run(args: argparse.Namespace) -> int:
    from sarcrop.training.api import train

    options = _model_options(args.model_options)
    result = train(
        args.store,
        args.out,
        model=args.model,
        model_options=options,
        bands=args.bands,
        positive=args.positive,
        config=config_from_args(args),
    )
    print_result(result)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model from scratch on a dataset store",
        description="Train a segmentation model on the train split of a dataset store. "
        "Re-running the same command resumes an interrupted run.",
    )
    parser.add_argument("store", help="dataset store (from `sarcrop prepare`)")
    parser.add_argument("--out", required=True, help="output directory of the run")
    parser.add_argument(
        "--model", default="recurrent_unet", help="recurrent_unet, utae, convlstm_unet or unet2d"
    )
    parser.add_argument(
        "--model-options",
        metavar="JSON",
        help="architecture options, e.g. '{\"widths\": [16, 32, 64]}'",
    )
    parser.add_argument(
        "--positive", nargs="+", help="positive class name(s) (default: the store's)"
    )
    parser.add_argument("--bands", nargs="+", help="input bands (default: all of the store)")
    add_training_options(parser)
    parser.set_defaults(func=run)


def _model_options(text: str | None) -> dict | None:
    """``--model-options`` JSON, with a one-line error when it is not a JSON object."""
    from sarcrop.errors import ConfigError

    if not text:
        return None
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model-options is not valid JSON: {exc.msg}") from None
    if not isinstance(options, dict):
        raise ConfigError("--model-options must be a JSON object, e.g. '{\"widths\": [8, 16]}'")
    return options
