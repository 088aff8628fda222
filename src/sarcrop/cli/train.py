"""`sarcrop train`: train a model from scratch on a dataset store (e.g. pre-training)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sarcrop.training.config import TrainConfig


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``finetune``; they override ``--config`` values."""
    group = parser.add_argument_group("training (override --config)")
    group.add_argument("--config", metavar="YAML", help="training settings (TrainConfig fields)")
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--loss", choices=("bce", "dice", "bce+dice"))
    group.add_argument("--pos-weight", type=float, help="BCE weight of positive pixels")
    group.add_argument(
        "--ordering",
        choices=("full", "chronological", "random"),
        help="batch order over observed time steps (chronological: paper A.2)",
    )
    group.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    group.add_argument("--val-fraction", type=float, help="share of train patches for validation")
    group.add_argument("--seed", type=int)
    group.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    hardware = parser.add_argument_group("hardware")
    hardware.add_argument("--accelerator", help="cpu, gpu or auto")
    hardware.add_argument("--devices", help="devices per node (count, or 'auto')")
    hardware.add_argument("--num-nodes", type=int)
    hardware.add_argument("--dist-strategy", help="Lightning strategy, e.g. ddp (default auto)")
    hardware.add_argument("--precision", help="32-true, 16-mixed, bf16-mixed")
    hardware.add_argument("--max-time", help="stop after DD:HH:MM:SS (rerun to resume)")
    hardware.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < ``--config`` YAML < command-line flags."""
    base = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    devices: Any = args.devices
    if isinstance(devices, str) and devices.lstrip("-").isdigit():
        devices = int(devices)
    return base.updated(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        loss=args.loss,
        pos_weight=args.pos_weight,
        ordering=args.ordering,
        patience=args.patience,
        val_fraction=args.val_fraction,
        seed=args.seed,
        num_workers=args.num_workers,
        accelerator=args.accelerator,
        devices=devices,
        num_nodes=args.num_nodes,
        strategy=args.dist_strategy,
        precision=args.precision,
        max_time=args.max_time,
        progress_bar=False if args.no_progress else None,
    )


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
    parser.add_argument("--positive", nargs="+", default=["rice"], help="positive class name(s)")
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
