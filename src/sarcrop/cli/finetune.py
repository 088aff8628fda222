"""`sarcrop finetune`: transfer a pre-trained checkpoint to a target dataset store."""

from __future__ import annotations

import argparse

from sarcrop.cli.shared import add_names, add_training_options, run_training


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sarcrop.pretrained import available
    from sarcrop.training.strategies import STRATEGIES

    parser.add_argument(
        "checkpoint",
        help="pre-trained model: a .safetensors file or the name of one shipped with sarcrop "
        f"({', '.join(available())}: trained on simulated data, model card beside it in "
        "sarcrop/pretrained/)",
    )
    parser.add_argument("store", help="target dataset store")
    parser.add_argument("--out", required=True, help="output directory of the run")
    parser.add_argument(
        "--strategy",
        required=True,
        choices=STRATEGIES,
        help="what learns: ri, ft, fte, ftd, probe, or bias (the pre-trained model as it is, its "
        "threshold chosen on the labelled pixels)",
    )
    parser.add_argument(
        "--last-k", type=int, help="ftd: train only the last K decoder blocks and the head"
    )
    add_names(
        parser,
        "--bands",
        "target bands, e.g. VH VV or VH,VV (default: the checkpoint's); new bands "
        "adapt the first layer (paper Eq. 3)",
    )
    add_names(
        parser, "--positive", "positive class name(s) (default: the store's, else the checkpoint's)"
    )
    parser.add_argument(
        "--statistics",
        choices=("pretrained", "target", "checkpoint"),
        help="whose input statistics scale each band: pre-training's for known bands, new ones "
        "(made as --normalization says) for new bands (pretrained, the default); new ones for "
        "all (target; ri: always); or pre-training's for all (checkpoint)",
    )
    add_training_options(parser)


def run(args: argparse.Namespace) -> int:
    from sarcrop.training.api import finetune

    if args.strategy == "bias":
        _refuse_gradient_flags(args)

    return run_training(
        finetune,
        args,
        args.checkpoint,
        args.store,
        strategy=args.strategy,
        last_k=args.last_k,
        statistics=args.statistics,
    )


def _refuse_gradient_flags(args: argparse.Namespace) -> None:
    """``--strategy bias`` chooses a threshold and trains no weights: the training flags it
    would ignore (--epochs, --lr, …) are refused, where they were recorded as if applied, in
    one line with the settings the API refuses for it."""
    from sarcrop.cli.shared import config_from_args
    from sarcrop.errors import ConfigError
    from sarcrop.training.config import GRADIENT_FIELDS

    given = [name for name in GRADIENT_FIELDS if getattr(args, name, None) is not None]
    if given:
        named = [*given, *config_from_args(args).unused_by_bias()]
        raise ConfigError(
            f"strategy bias trains no weights, so {', '.join(named)} cannot apply: leave "
            f"{'it' if len(named) == 1 else 'them'} out"
        )
