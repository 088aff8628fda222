"""`sarcrop train`: train a model from scratch on a dataset store (e.g. pre-training)."""

from __future__ import annotations

import argparse
import json

from sarcrop.cli.shared import add_names, add_training_options, run_training
from sarcrop.models.registry import MODELS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="dataset store (from `sarcrop prepare`)")
    parser.add_argument("--out", required=True, help="output directory of the run")
    parser.add_argument("--model", default="recurrent_unet", choices=list(MODELS))
    parser.add_argument(
        "--model-options",
        metavar="JSON",
        help="architecture options, e.g. '{\"widths\": [16, 32, 64]}'",
    )
    add_names(parser, "--positive", "positive class name(s) (default: the store's)")
    add_names(parser, "--bands", "input bands (default: all of the store)")
    add_training_options(parser)


def run(args: argparse.Namespace) -> int:
    from sarcrop.training.api import train

    options = _model_options(args.model_options)
    return run_training(train, args, args.store, model=args.model, model_options=options)


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
