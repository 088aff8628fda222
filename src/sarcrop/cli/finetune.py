"""`sarcrop finetune`: transfer a pre-trained checkpoint to a target dataset store."""

from __future__ import annotations

import argparse

from sarcrop.cli.train import add_training_options, config_from_args, print_result


def run(args: argparse.Namespace) -> int:
    from sarcrop.training.api import finetune

    result = finetune(
        args.checkpoint,
        args.store,
        args.out,
        strategy=args.strategy,
        last_k=args.last_k,
        bands=args.bands,
        positive=args.positive,
        normalization=args.normalization,
        config=config_from_args(args),
    )
    print_result(result)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "finetune",
        help="fine-tune a pre-trained model on a target store (ri/ft/fte/ftd)",
        description="Transfer a pre-trained checkpoint: ri = architecture only, ft = all "
        "weights, fte = encoder only (decoder frozen), ftd = decoder only (encoder frozen).",
    )
    parser.add_argument("checkpoint", help="pre-trained model (.safetensors)")
    parser.add_argument("store", help="target dataset store")
    parser.add_argument("--out", required=True, help="output directory of the run")
    parser.add_argument("--strategy", required=True, choices=("ri", "ft", "fte", "ftd"))
    parser.add_argument(
        "--last-k", type=int, help="ftd: train only the last K decoder blocks and the head"
    )
    parser.add_argument(
        "--bands",
        nargs="+",
        help="target bands, e.g. VH VV (default: the checkpoint's); new bands "
        "adapt the first layer (paper Eq. 3)",
    )
    parser.add_argument(
        "--positive",
        nargs="+",
        help="positive class name(s) (default: the store's, else the checkpoint's)",
    )
    parser.add_argument(
        "--normalization",
        choices=("pretrained", "target", "checkpoint"),
        help="input statistics: pre-training's for known bands and the target store's for new "
        "ones (default), the target store's for all (ri: always), or pre-training's for all",
    )
    add_training_options(parser)
    parser.set_defaults(func=run)
