"""Choose the epoch budget and the interpolation weight by cross-validation over whole parcels.

With a few labelled fields, a validation patch carved out of them holds one or two fields and
the best epoch on it is a draw (``MIN_VALIDATION_FIELDS``), while no fixed budget suits every
target (docs/results.md, "Epoch budget per label fraction"), and how far fine-tuning should
move away from the pre-trained model differs as much (docs/results.md, "Weight
interpolation"). Cross-validation over parcels scores every labelled field once instead: the
run's parcels are dealt into folds, each candidate budget (``epoch_search``) trains once per
fold with that fold's labels held out (the imagery stays), and every candidate weight
(``interpolation_search``) mixes that fold run with the pre-trained start, weight by weight;
the held-out pixels of all folds are pooled into one confusion per candidate. The candidate
with the highest pooled IoU (a crop-type run: mIoU, its folds dealt class by class) wins (on
a tie the shorter budget, then the weight nearer 1), and the run trains on every label with it.
Weight 0 is the pre-trained model as it is, so the search can answer "do not fine-tune".
Fields seen in training share their patches with held-out fields, so the pooled IoU is an
in-region estimate: it does not see a change of place or year.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from sarcrop.data.parcels import LabelMask, ParcelFold, parcel_folds
from sarcrop.errors import InputDataError
from sarcrop.evaluation.metrics import (
    BinaryConfusion,
    Confusion,
    MulticlassConfusion,
    empty_confusion,
)
from sarcrop.training.config import TrainConfig, validate_config

#: The folder of an output directory that holds the cross-validation's runs.
SEARCH_DIR = "epoch-search"

FoldRun = Callable[[Path, TrainConfig, LabelMask], Path]
"""Trains one fold: output directory, settings and labels in; the exported checkpoint out."""

Candidate = tuple[int, float]
"""Epochs and interpolation weight."""


@dataclass(frozen=True)
class SearchChoice:
    """The candidate a search chose and the pooled held-out scores it chose from."""

    epochs: int
    interpolation: float
    folds: int
    parcels: int
    iou: dict[Candidate, float] = field(default_factory=dict)  # pooled held-out IoU (mIoU)
    reason: str = ""  # why no search ran, where none did

    def to_dict(self) -> dict[str, Any]:
        scores = [
            {"epochs": epochs, "interpolation": weight, "iou": score}
            for (epochs, weight), score in self.iou.items()
        ]
        return {
            "epochs": self.epochs,
            "interpolation": self.interpolation,
            "folds": self.folds,
            "parcels": self.parcels,
            "iou": scores,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchChoice:
        """Rebuild from :meth:`to_dict` (a checkpoint's ``training.search``)."""
        iou = {
            (int(row["epochs"]), float(row["interpolation"])): float(row["iou"])
            for row in data.get("iou", [])
        }
        return cls(
            int(data["epochs"]),
            float(data["interpolation"]),
            int(data["folds"]),
            int(data["parcels"]),
            iou,
            str(data.get("reason", "")),
        )

    def summary(self) -> str:
        """One line for a log or the command line."""
        chosen = f"epochs {self.epochs}, interpolation {self.interpolation:g}"
        if not self.iou:
            return f"{chosen}, not searched: {self.reason}"
        several_budgets = len({epochs for epochs, _ in self.iou}) > 1
        several_weights = len({weight for _, weight in self.iou}) > 1
        scores = []
        for (epochs, weight), iou in self.iou.items():
            parts = [f"{epochs}"] * several_budgets + [f"{weight:g}"] * several_weights
            name = " × ".join(parts) or f"{epochs}"
            star = "*" if (epochs, weight) == (self.epochs, self.interpolation) else ""
            scores.append(f"{name}{star} {iou:.3f}")
        searched = (
            " × ".join(["epochs"] * several_budgets + ["interpolation"] * several_weights)
            or "epochs"
        )
        return (
            f"{chosen} chosen by {self.folds}-fold cross-validation over {self.parcels} "
            f"parcels (held-out IoU by {searched}: {', '.join(scores)})"
        )


def search_held_out(
    run: FoldRun,
    store: Any,
    out_dir: Path,
    config: TrainConfig,
    positive: Sequence[str],
    subset: LabelMask | None = None,
    start: Mapping[str, torch.Tensor] | None = None,
) -> SearchChoice:
    """Train ``run`` per fold and budget; score every budget × interpolation weight.

    The budgets are ``config.epoch_search`` (else ``config.epochs``), the weights
    ``config.interpolation_search`` (else ``config.interpolation``); weights below 1 need the
    pre-trained ``start`` the fold runs began from. The folds are dealt (by ``config.seed``)
    from the labels the final run learns from: ``subset``, or all of the train split. Where
    the parcels are too few to fold (fewer than 2 of each class), this warns and keeps
    ``config``'s epochs and interpolation.
    """
    budgets = config.epoch_search or (config.epochs,)
    weights = config.interpolation_search or (config.interpolation,)
    assert start is not None or weights == (1.0,), "interpolation needs the pre-trained start"
    try:
        folds = parcel_folds(
            store,
            config.search_folds,
            config.seed,
            positive=positive,
            subset=subset,
            classes=config.classes,
        )
    except InputDataError as exc:
        reason = exc.problem
        budget = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
        kept = f"training {budget} at interpolation {config.interpolation:g}"
        warnings.warn(f"held-out search: {reason}; {kept}", stacklevel=3)
        return SearchChoice(config.epochs, config.interpolation, 0, 0, reason=reason)
    # Pooled over the folds; one run's confusions are all binary or all of its classes.
    confusions: dict[Candidate, Any] = {
        (epochs, weight): empty_confusion(config.classes)
        for epochs in budgets
        for weight in weights
    }
    for epochs in budgets:
        settings = fold_settings(config, epochs)
        for number, fold in enumerate(folds, start=1):
            checkpoint = run(out_dir / f"epochs-{epochs}-fold-{number}", settings, fold.train)
            scored = held_out_confusions(checkpoint, store, fold, config.threshold, weights, start)
            for weight, confusion in scored.items():
                confusions[(epochs, weight)] += confusion
    iou = {candidate: score(confusion) for candidate, confusion in confusions.items()}

    def rank(candidate: Candidate) -> tuple[float, int, float]:
        # nan (nothing positive held out or predicted) never wins
        return (float(np.nan_to_num(iou[candidate], nan=-1.0)), -candidate[0], candidate[1])

    epochs, weight = max(iou, key=rank)
    return SearchChoice(epochs, weight, len(folds), folds[0].train.total_parcels, iou)


def fold_settings(config: TrainConfig, epochs: int) -> TrainConfig:
    """The settings of one fold run: ``epochs``, the trained weights as they are (the search
    mixes in the start itself) and no search of its own."""
    data = config.model_dump()
    data.update(epochs=epochs, interpolation=1.0, epoch_search=None, interpolation_search=None)
    return validate_config(data)


def score(confusion: Confusion) -> float:
    """What a search ranks by: the positive class's IoU, or a crop-type map's mIoU."""
    return confusion.iou if isinstance(confusion, BinaryConfusion) else confusion.miou


def held_out_confusions(
    checkpoint: Path,
    store: Any,
    fold: ParcelFold,
    threshold: float,
    weights: Sequence[float] = (1.0,),
    start: Mapping[str, torch.Tensor] | None = None,
) -> dict[float, Confusion]:
    """The confusion over the pixels of the parcels ``fold`` held out of ``checkpoint``'s
    model, mixed with ``start`` at each of ``weights`` (1: the checkpoint as it is); of its
    classes where it maps crop types."""
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.training.api import interpolate_weights
    from sarcrop.training.checkpoint import load_checkpoint

    trained, meta = load_checkpoint(checkpoint)
    mask = fold.held_out
    patches = [i for i in range(len(store)) if mask.keep[i].any()]
    classes = meta.target_classes
    dataset = PatchDataset(
        store,
        patches,
        meta.positive,
        meta.bands,
        normalization=meta.normalization,
        label_mask=mask,
        classes=classes,
    )
    models = {}
    for weight in weights:
        model = trained
        if weight < 1:
            assert start is not None, "interpolation needs the pre-trained start"
            model = copy.deepcopy(trained)
            interpolate_weights(model, start, weight)
        models[weight] = model
    return confusions_of(models, dataset, classes, threshold)


def confusions_of(
    models: Mapping[Any, torch.nn.Module],
    dataset: Any,
    classes: Sequence[str] | None,
    threshold: float,
) -> dict[Any, Confusion]:
    """Each model's confusion over the labelled pixels of ``dataset`` (of ``classes`` where it
    maps crop types), every patch read once for all of them; the models are set to eval mode."""
    confusions = {key: empty_confusion(classes) for key in models}
    for model in models.values():
        model.eval()
    with torch.inference_mode():
        for batch in DataLoader(dataset, batch_size=8):
            for key, model in models.items():
                logits = model(batch["image"]).float()
                confusion = confusions[key]
                if isinstance(confusion, MulticlassConfusion):  # argmax over the classes
                    confusion.update(logits, batch["target"], batch["valid"])
                else:
                    probability = torch.sigmoid(logits)[:, 0]
                    confusion.update(
                        probability, batch["target"], batch["valid"], threshold=threshold
                    )
    return confusions


def constant_score(confusion: Confusion) -> float:
    """What :func:`score` gives the best map of one class everywhere on the same pixels: the
    positive class's share (its IoU when every pixel is called positive), or the largest
    class's share over the number of classes present (the mIoU of that class everywhere)."""
    if isinstance(confusion, BinaryConfusion):
        positives = confusion.tp + confusion.fn
        return positives / confusion.total if positives else float("nan")
    truth = confusion.counts.sum(axis=1)
    present = int((truth > 0).sum())
    return float(truth.max() / truth.sum() / present) if present else float("nan")
