"""The ``bias`` strategy: the pre-trained model as it is, cut where the target's labels say.

A model pre-trained elsewhere often ranks a new region's pixels well and cuts them in the wrong
place: on real Flanders the simulator-pre-trained maize model gives some maize fields
probabilities below 0.5 (docs/results.md, "The pre-trained model's threshold chosen on the
labels"). One number then learns from a few labelled fields: the decision threshold with the
highest IoU on their pixels. It is stored as a shift of the output logit's bias, so that the
checkpoint cut at its own threshold (0.5 by default; maps, metrics, ONNX) maps what the
pre-trained model cut at the chosen one maps; no weight but that bias changes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sarcrop.errors import ConfigError
from sarcrop.evaluation.metrics import BinaryConfusion
from sarcrop.models.blocks import MergedHead

THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""The thresholds searched: 0.05, 0.10, …, 0.95."""


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold chosen on the labelled pixels, and what it scores there."""

    threshold: float
    iou: float
    iou_at_half: float
    pixels: int
    positives: int

    def to_dict(self) -> dict[str, Any]:
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdChoice:
        """Rebuild from :meth:`to_dict` (a checkpoint's ``training.threshold_search``)."""
        return cls(
            threshold=float(data["threshold"]),
            iou=math.nan if data["iou"] is None else float(data["iou"]),
            iou_at_half=math.nan if data["iou_at_half"] is None else float(data["iou_at_half"]),
            pixels=int(data["pixels"]),
            positives=int(data["positives"]),
        )

    def summary(self, cut: float) -> str:
        """One line for the command line; ``cut`` is the threshold the tuned model is used
        with, where it now maps what the parent mapped at the chosen one."""

        def iou(value: float) -> str:
            return "n/a" if math.isnan(value) else f"{value:.3f}"

        edge = {min(THRESHOLDS): "lowest", max(THRESHOLDS): "highest"}.get(self.threshold)
        said = f" (the {edge} searched: one beyond it may score higher)" if edge else ""
        return (
            f"threshold {self.threshold:g}{said} chosen on {self.pixels} labelled pixels "
            f"({self.positives} positive): IoU {iou(self.iou)} there, "
            f"{iou(self.iou_at_half)} at 0.5; the model now cuts there at {cut:g}"
        )


def choose_threshold(
    probabilities: np.ndarray, target: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS
) -> ThresholdChoice:
    """The threshold with the highest IoU of the positive class on these pixels; among equal
    scores the one nearest 0.5 (the lower of two), and 0.5 itself where no pixel is positive.
    ``probabilities`` and ``target`` (0/1) are the labelled pixels, flat."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    truth = np.asarray(target).ravel()
    if p.shape != truth.shape:
        raise ValueError(f"{p.size} probabilities for {truth.size} targets")

    def iou(threshold: float) -> float:
        return BinaryConfusion().update(p, truth, threshold=threshold).iou

    best = 0.5
    if truth.any():  # else nothing to learn: every threshold scores 0 or is undefined
        nearest_half_first = sorted(thresholds, key=lambda t: (abs(t - 0.5), t))
        best = max(nearest_half_first, key=iou)
    return ThresholdChoice(
        threshold=best,
        iou=iou(best),
        iou_at_half=iou(0.5),
        pixels=int(p.size),
        positives=int(np.count_nonzero(truth)),
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def labelled_pixels(model: nn.Module, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The model's positive-class probabilities and the targets of every labelled pixel of
    ``dataset`` (PatchDataset-style items), the model in eval mode."""
    model.eval()
    probabilities, targets = [], []
    with torch.inference_mode():
        for batch in DataLoader(dataset, batch_size=8):
            p = torch.sigmoid(model(batch["image"]).float()[:, 0])
            valid = batch["valid"].bool()
            probabilities.append(p[valid].numpy())
            targets.append(batch["target"][valid].numpy())
    if not probabilities:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(probabilities), np.concatenate(targets)


def shift_threshold(model: nn.Module, threshold: float, to: float = 0.5) -> None:
    """Shift the output logit by ``logit(to) - logit(threshold)``, in place: the model's
    probability ``to`` (the threshold it is used with) then falls where ``threshold`` was. A
    crop-type head read for one crop (:class:`MergedHead`) shifts the bias of each of the
    crop's outputs, which shifts its log-odds by the same amount."""
    for value in (threshold, to):
        if not 0 < value < 1:
            raise ConfigError(f"threshold must be between 0 and 1, got {value}")
    head = getattr(getattr(model, "decoder", None), "head", None)
    if not isinstance(head, nn.Conv2d) or head.bias is None:
        raise ConfigError(f"{type(model).__name__} has no decoder.head bias to shift")
    if isinstance(head, MergedHead):
        rows = head.positive
    elif head.out_channels == 1:
        rows = [0]
    else:
        raise ConfigError(f"bias maps one crop; this head has {head.out_channels} outputs")
    shift = _logit(to) - _logit(threshold)
    with torch.no_grad():
        head.bias[rows] += shift
