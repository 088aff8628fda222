"""Segmentation losses for rare positive classes, masked by the ``valid`` pixels.

Crops such as barley cover a few percent of a patch, so plain BCE is dominated by the easy
negatives. Weighting positives in BCE (``pos_weight``) and adding a soft Dice term, which is a
differentiable relative of the IoU we select models on, keeps the gradient on the rare class.
Unlabelled pixels (``valid`` False) contribute nothing to either term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_bce(logits: Tensor, target: Tensor, valid: Tensor, pos_weight: float = 1.0) -> Tensor:
    """Mean binary cross-entropy over valid pixels (0 when there are none)."""
    weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    losses = F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), pos_weight=weight, reduction="none"
    )
    mask = valid.to(logits.dtype)
    return (losses * mask).sum() / mask.sum().clamp_min(1.0)


def soft_dice(logits: Tensor, target: Tensor, valid: Tensor, smooth: float = 1.0) -> Tensor:
    """``1 - soft Dice`` of the positive class over all valid pixels of the batch.

    Computed over the whole batch rather than per patch, so patches without positives do not
    each add a near-constant term.
    """
    mask = valid.to(logits.dtype)
    prob = torch.sigmoid(logits) * mask
    target = target.to(logits.dtype) * mask
    intersection = (prob * target).sum()
    denominator = prob.sum() + target.sum()
    return 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)


class SegmentationLoss(nn.Module):
    """``bce``, ``dice`` or ``bce + dice_weight * dice`` of logits ``(B, [1,] H, W)``."""

    def __init__(self, kind: str = "bce+dice", pos_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        if kind not in ("bce", "dice", "bce+dice"):
            raise ValueError(f"loss must be bce, dice or bce+dice, got {kind!r}")
        self.kind = kind
        self.pos_weight = float(pos_weight)
        self.dice_weight = float(dice_weight)

    def forward(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        if logits.ndim == target.ndim + 1:
            logits = logits.squeeze(1)
        if not valid.any():
            return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter's grad)
        loss = logits.new_zeros(())
        if self.kind in ("bce", "bce+dice"):
            loss = loss + masked_bce(logits, target, valid, self.pos_weight)
        if self.kind == "dice":
            loss = loss + soft_dice(logits, target, valid)
        elif self.kind == "bce+dice" and self.dice_weight:
            loss = loss + self.dice_weight * soft_dice(logits, target, valid)
        return loss


def balanced_pos_weight(negatives: int, positives: int, cap: float) -> float:
    """BCE positive weight ``negatives / positives`` of the training labels, in ``[1/cap, cap]``.

    Weighs the two classes equally in BCE, so a crop on a few percent of the pixels is not
    learnt as "never"; the cap keeps a handful of positive pixels from dominating the loss.
    """
    if positives <= 0 or negatives <= 0:
        kind = "positive" if positives <= 0 else "negative"
        raise ValueError(f"pos_weight auto needs {kind} training pixels, there are none")
    return float(min(cap, max(1.0 / cap, negatives / positives)))
