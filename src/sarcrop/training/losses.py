"""Segmentation losses for rare positive classes, masked by the ``valid`` pixels.

Crops such as barley cover a few percent of a patch, so plain BCE is dominated by the easy
negatives. Weighting positives in BCE (``pos_weight``) and adding a soft Dice term, which is a
differentiable relative of the IoU we select models on, keeps the gradient on the rare class.
Unlabelled pixels (``valid`` False) contribute nothing to either term.

Crop-type maps (logits ``(B, K, H, W)`` with ``K > 1``, integer class targets) use the same
recipe with softmax: masked cross-entropy, optionally weighted per class
(:func:`balanced_class_weights`), plus the soft Dice averaged over the classes. One-logit
(binary) models keep exactly the binary losses above.

Fine-tuning with ``distillation`` adds :func:`distillation_loss` on the unlabelled pixels: the
pre-trained start's predictions there are the targets, so that a few labels correct the start
where they lie and leave the rest of what it learnt in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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


def masked_cross_entropy(
    logits: Tensor, target: Tensor, valid: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Cross-entropy of logits ``(B, K, H, W)`` over valid pixels, weighted per class.

    As in :func:`torch.nn.functional.cross_entropy`, the weighted sum is divided by the sum
    of the weights of the valid pixels' classes, so the weights change the balance of the
    classes, not the scale of the loss.
    """
    target = target.long().clamp_min(0)
    losses = F.cross_entropy(logits, target, reduction="none")
    mask = valid.to(logits.dtype)
    if weight is not None:
        mask = mask * weight.to(logits)[target]
    return (losses * mask).sum() / mask.sum().clamp_min(torch.finfo(logits.dtype).tiny)


def soft_dice_multiclass(
    logits: Tensor, target: Tensor, valid: Tensor, smooth: float = 1.0
) -> Tensor:
    """``1 - mean soft Dice`` over the ``K`` classes of logits ``(B, K, H, W)``, whole batch."""
    classes = logits.shape[1]
    mask = valid.to(logits.dtype).unsqueeze(1)
    prob = torch.softmax(logits, dim=1) * mask
    onehot = F.one_hot(target.long().clamp(0, classes - 1), classes).movedim(-1, 1)
    onehot = onehot.to(logits.dtype) * mask
    dims = (0, 2, 3)
    intersection = (prob * onehot).sum(dims)
    denominator = prob.sum(dims) + onehot.sum(dims)
    return 1.0 - ((2.0 * intersection + smooth) / (denominator + smooth)).mean()


def distillation_loss(logits: Tensor, teacher_logits: Tensor, mask: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits`` against the teacher's probabilities over the ``mask``
    pixels (0 when there are none): sigmoid for one output ``(B, 1, H, W)``, softmax over
    ``K`` outputs.

    Its minimum is the teacher's own entropy, not 0: what it pulls towards is the teacher's
    answer, as confident as the teacher was.
    """
    if not mask.any():
        return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter's grad)
    soft = teacher_logits.detach().to(logits.dtype)
    if logits.shape[1] > 1:
        losses = -(torch.softmax(soft, dim=1) * torch.log_softmax(logits, dim=1)).sum(1)
    else:
        losses = F.binary_cross_entropy_with_logits(
            logits.squeeze(1), torch.sigmoid(soft.squeeze(1)), reduction="none"
        )
    weight = mask.to(logits.dtype)
    return (losses * weight).sum() / weight.sum()


class SegmentationLoss(nn.Module):
    """``bce``, ``dice`` or ``bce + dice_weight * dice`` of logits ``(B, [1,] H, W)``.

    Logits ``(B, K, H, W)`` with ``K > 1`` (multi-class) take the softmax forms: ``bce`` is then
    the cross-entropy, weighted by ``class_weight`` (one per class) when given.
    """

    class_weight: Tensor | None

    def __init__(
        self,
        kind: str = "bce+dice",
        pos_weight: float = 1.0,
        dice_weight: float = 1.0,
        class_weight: Sequence[float] | None = None,
    ):
        super().__init__()
        if kind not in ("bce", "dice", "bce+dice"):
            raise ValueError(f"loss must be bce, dice or bce+dice, got {kind!r}")
        self.kind = kind
        self.pos_weight = float(pos_weight)
        self.dice_weight = float(dice_weight)
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)

    def forward(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        if logits.ndim == target.ndim + 1 and logits.shape[1] > 1:
            return self._multiclass(logits, target, valid)
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

    def _multiclass(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        if not valid.any():
            return logits.sum() * 0.0
        loss = logits.new_zeros(())
        if self.kind in ("bce", "bce+dice"):
            loss = loss + masked_cross_entropy(logits, target, valid, self.class_weight)
        dice = {"bce": 0.0, "dice": 1.0, "bce+dice": self.dice_weight}[self.kind]
        if dice:
            loss = loss + dice * soft_dice_multiclass(logits, target, valid)
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


def balanced_class_weights(counts: Sequence[int] | np.ndarray, cap: float) -> list[float]:
    """Per-class cross-entropy weights ``N / (K * n_k)`` of the training labels, in
    ``[1/cap, cap]``.

    Inverse frequency, so every class weighs as much in total as if all ``K`` were equally
    common (1 for each when they are); the cap keeps a class with a handful of pixels from
    dominating the loss. A class absent from the training labels gets the cap (its weight
    never meets a target pixel; it only matters if labels are added). Binary models use
    :func:`balanced_pos_weight` instead.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("class weights auto need labelled training pixels, there are none")
    ratio = np.divide(total, len(counts) * counts, out=np.full(len(counts), cap), where=counts > 0)
    return [float(w) for w in np.clip(ratio, 1.0 / cap, cap)]
