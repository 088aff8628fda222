"""Choose the epoch budget by cross-validation over whole parcels (``epoch_search``).

With a few labelled fields, a validation patch carved out of them holds one or two fields and
the best epoch on it is a draw (``MIN_VALIDATION_FIELDS``), while no fixed budget suits every
target (docs/results.md, "Epoch budget per label fraction"). Cross-validation over parcels
scores every labelled field once instead: the run's parcels are dealt into folds, each
candidate budget trains once per fold with that fold's labels held out (the imagery stays),
and the held-out pixels of all folds are pooled into one confusion per budget. The budget with
the highest pooled IoU wins (the shorter one on a tie), and the run then trains on every label
with it. Fields seen in training also share their patches with held-out fields, so the pooled
IoU is an in-region estimate: it does not see a change of place or year.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from sarcrop.data.parcels import LabelMask, ParcelFold, parcel_folds
from sarcrop.errors import InputDataError
from sarcrop.evaluation.metrics import BinaryConfusion
from sarcrop.training.config import TrainConfig, validate_config

#: The folder of an output directory that holds the cross-validation's runs.
SEARCH_DIR = "epoch-search"

FoldRun = Callable[[Path, TrainConfig, LabelMask], Path]
"""Trains one fold: output directory, settings and labels in; the exported checkpoint out."""


@dataclass(frozen=True)
class EpochChoice:
    """The budget a search chose and the pooled held-out scores it chose from."""

    epochs: int
    folds: int
    parcels: int
    iou: dict[int, float] = field(default_factory=dict)  # pooled held-out IoU per budget
    reason: str = ""  # why no search ran, where none did

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["iou"] = {str(epochs): score for epochs, score in self.iou.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochChoice:
        """Rebuild from :meth:`to_dict` (a checkpoint's ``training.epoch_search``)."""
        iou = {int(epochs): float(score) for epochs, score in data.get("iou", {}).items()}
        return cls(
            int(data["epochs"]),
            int(data["folds"]),
            int(data["parcels"]),
            iou,
            str(data.get("reason", "")),
        )

    def summary(self) -> str:
        """One line for a log or the command line."""
        if not self.iou:
            return f"epochs {self.epochs}, not searched: {self.reason}"
        scores = ", ".join(
            f"{epochs}{'*' if epochs == self.epochs else ''} {iou:.3f}"
            for epochs, iou in self.iou.items()
        )
        return (
            f"epochs {self.epochs} chosen by {self.folds}-fold cross-validation over "
            f"{self.parcels} parcels (held-out IoU: {scores})"
        )


def search_epochs(
    run: FoldRun,
    store: Any,
    out_dir: Path,
    config: TrainConfig,
    positive: Sequence[str],
    subset: LabelMask | None = None,
) -> EpochChoice:
    """Train ``run`` per fold and candidate of ``config.epoch_search``; pick the best budget.

    The folds are dealt (by ``config.seed``) from the labels the final run learns from:
    ``subset``, or all of the train split. Where the parcels are too few to fold (fewer than
    2 of each class), this warns and keeps ``config.epochs``.
    """
    assert config.epoch_search is not None, "search_epochs needs config.epoch_search"
    try:
        folds = parcel_folds(
            store, config.search_folds, config.seed, positive=positive, subset=subset
        )
    except InputDataError as exc:
        reason = exc.problem
        warnings.warn(f"epoch_search: {reason}; training {config.epochs} epochs", stacklevel=3)
        return EpochChoice(config.epochs, 0, 0, reason=reason)
    confusions = {epochs: BinaryConfusion() for epochs in config.epoch_search}
    for epochs in config.epoch_search:
        settings = fold_settings(config, epochs)
        for number, fold in enumerate(folds, start=1):
            checkpoint = run(out_dir / f"epochs-{epochs}-fold-{number}", settings, fold.train)
            confusions[epochs] += held_out_confusion(checkpoint, store, fold, config.threshold)
    iou = {epochs: confusion.iou for epochs, confusion in confusions.items()}
    # nan (nothing positive held out or predicted) never wins; ties go to the shorter budget
    best = max(iou, key=lambda epochs: (np.nan_to_num(iou[epochs], nan=-1.0), -epochs))
    return EpochChoice(best, len(folds), folds[0].train.total_parcels, iou)


def fold_settings(config: TrainConfig, epochs: int) -> TrainConfig:
    """The settings of one fold run: ``epochs`` and no search of its own."""
    data = config.model_dump()
    data.update(epochs=epochs, epoch_search=None)
    return validate_config(data)


def held_out_confusion(
    checkpoint: Path, store: Any, fold: ParcelFold, threshold: float
) -> BinaryConfusion:
    """The confusion of ``checkpoint`` over the pixels of the parcels ``fold`` held out."""
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.training.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    model.eval()
    mask = fold.held_out
    patches = [i for i in range(len(store)) if mask.keep[i].any()]
    dataset = PatchDataset(
        store,
        patches,
        meta.positive,
        meta.bands,
        normalization=meta.normalization,
        label_mask=mask,
    )
    confusion = BinaryConfusion()
    with torch.inference_mode():
        for batch in DataLoader(dataset, batch_size=8):
            probability = torch.sigmoid(model(batch["image"]).float())[:, 0]
            confusion.update(probability, batch["target"], batch["valid"], threshold=threshold)
    return confusion
