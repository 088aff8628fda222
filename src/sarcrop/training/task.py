"""The Lightning task: any sarcrop model + masked loss + AdamW + LR schedule + split-level metrics.

Metrics are accumulated as one confusion matrix over the whole validation (or test) split and
summed over ranks before IoU/precision/recall/F1 are derived, as the paper reports them; a mean
of per-batch IoUs would weigh a patch with three rice pixels like a fully planted one.

Crop-type models (``config.classes``, ``K`` output channels) keep one ``K × K`` matrix instead
and select checkpoints on the mIoU (``val_miou``), also reporting overall accuracy and kappa.

With ``config.objective: reconstruct`` (self-supervised pre-training) the model has one output
per time step and band and learns to restore its normalised input where a seeded random mask
hid it: whole composites and square pixel blocks are zeroed (zero is what an unobserved,
early-season composite looks like), and the loss is the mean squared error over the hidden
entries only. Labels play no part, so every pixel counts, labelled or not.

Fine-tuning with ``config.distillation`` holds a frozen copy of the pre-trained start (the
teacher) and adds, on the pixels without a label, the cross-entropy against its predictions
(:func:`sarcrop.training.losses.distillation_loss`).

Batches may carry ``"t"``, the number of observed composites (early-season training, see
:mod:`sarcrop.training.ordering`): steps after ``t`` are zero-padded here, on the device, and
the model always receives all ``T`` steps.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
import torchmetrics
from torch import Tensor, nn

from sarcrop.evaluation.metrics import BinaryConfusion, MulticlassConfusion
from sarcrop.training.config import TrainConfig
from sarcrop.training.losses import SegmentationLoss, distillation_loss
from sarcrop.training.ordering import pad_steps
from sarcrop.training.strategies import trainable_parameters


class ConfusionMetric(torchmetrics.Metric):
    """TP/FP/FN/TN pixel counts of the positive class, summed across ranks on compute."""

    full_state_update = False
    # Registered by add_state; declared here so they type as tensors, not Tensor | Module.
    tp: Tensor
    fp: Tensor
    fn: Tensor
    tn: Tensor

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold
        for name in ("tp", "fp", "fn", "tn"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor, valid: Tensor) -> None:
        if logits.ndim == target.ndim + 1:
            logits = logits.squeeze(1)
        pred = torch.sigmoid(logits.detach().float())[valid] >= self.threshold
        truth = target[valid] > 0.5
        code = 2 * pred.to(torch.int64) + truth.to(torch.int64)
        counts = torch.bincount(code, minlength=4)
        self.tn += counts[0]
        self.fn += counts[1]
        self.fp += counts[2]
        self.tp += counts[3]

    def compute(self) -> BinaryConfusion:
        return BinaryConfusion(int(self.tp), int(self.fp), int(self.fn), int(self.tn))


class MulticlassConfusionMetric(torchmetrics.Metric):
    """``K × K`` pixel counts ``[truth, predicted]`` (argmax of the logits), summed across
    ranks on compute."""

    full_state_update = False
    matrix: Tensor

    def __init__(self, classes: list[str]) -> None:
        super().__init__()
        self.classes = list(classes)
        size = len(self.classes)
        self.add_state(
            "matrix", default=torch.zeros(size, size, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, logits: Tensor, target: Tensor, valid: Tensor) -> None:
        size = len(self.classes)
        pred = logits.detach().argmax(dim=1)[valid]
        code = target[valid].to(torch.int64) * size + pred.to(torch.int64)
        self.matrix += torch.bincount(code, minlength=size * size).reshape(size, size)

    def compute(self) -> MulticlassConfusion:
        return MulticlassConfusion(self.classes, self.matrix.cpu().numpy())


def monitored_metric(config: TrainConfig) -> str:
    """The validation metric that selects checkpoints: ``val_iou``, ``val_miou`` for
    crop-type (multi-class) runs, or the masked reconstruction error ``val_loss``."""
    if config.reconstructs:
        return "val_loss"
    return "val_iou" if config.classes is None else "val_miou"


def monitored_mode(config: TrainConfig) -> str:
    """Whether the monitored metric is better higher (scores) or lower (a loss)."""
    return "min" if config.reconstructs else "max"


# Reconstruction masks: the share of composites hidden in each series, the share of pixel
# blocks hidden at every time step, and the blocks' side in pixels (several pixels, so a
# hidden pixel cannot be copied from its neighbours).
MASKED_STEPS = 0.25
MASKED_BLOCKS = 0.25
MASK_BLOCK = 4
_TRAIN_MASKS, _VAL_MASKS = 0, 1


def reconstruction_mask(shape: torch.Size, seed: int, stream: int, index: int) -> Tensor:
    """Seeded ``(B, T, 1, H, W)`` boolean mask of the hidden entries of a batch of series.

    ``stream`` (training or validation) and ``index`` (the optimizer step, or the validation
    batch) pick the draw, so a run reproduces, resumes, and validates on the same masks every
    epoch. An entry is hidden where its composite or its pixel block is drawn.
    """
    batch, steps, _, height, width = shape
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, stream, index]).generate_state(2)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    hidden_steps = torch.rand(batch, steps, generator=generator) < MASKED_STEPS
    rows, cols = -(-height // MASK_BLOCK), -(-width // MASK_BLOCK)
    blocks = torch.rand(batch, rows, cols, generator=generator) < MASKED_BLOCKS
    blocks = blocks.repeat_interleave(MASK_BLOCK, 1).repeat_interleave(MASK_BLOCK, 2)
    hidden = hidden_steps[:, :, None, None] | blocks[:, None, :height, :width]
    return hidden[:, :, None]


def patch_masks(shape: torch.Size, seed: int, stream: int, indices: Tensor) -> Tensor:
    """:func:`reconstruction_mask` drawn for each patch alone, by its dataset index: the
    entries a validation hides are then the same however patches are batched or shared out
    among processes."""
    one = torch.Size([1, *shape[1:]])
    return torch.cat([reconstruction_mask(one, seed, stream, int(i)) for i in indices.tolist()])


def observed_series(batch: dict[str, Any]) -> Tensor:
    """The batch's series, zero after its observed steps (``"t"``) where it has them."""
    image = batch["image"]
    return pad_steps(image, batch["t"]) if "t" in batch else image


def reconstruction_loss(model: nn.Module, batch: dict[str, Any], mask: Tensor) -> Tensor:
    """Mean squared error of ``model``'s restoration of the entries ``mask`` hides."""
    error, hidden = reconstruction_error(model, batch, mask)
    return error / hidden.clamp_min(1)


def reconstruction_error(
    model: nn.Module, batch: dict[str, Any], mask: Tensor
) -> tuple[Tensor, Tensor]:
    """The summed squared error of ``model``'s restoration of the entries ``mask`` hides, and
    their number.

    Composites after an early-season cut (``"t"``) were never observed: nothing to restore;
    padding duplicates of an evaluation shard (``"counted"`` false) are not scored.
    """
    image = observed_series(batch)
    size, steps, bands = image.shape[:3]
    hidden = mask.to(image.device)
    restored = model(image.masked_fill(hidden, 0.0))
    if restored.shape[1] != steps * bands:
        raise ValueError(
            f"reconstruction needs {steps} x {bands} output channels, the model has "
            f"{restored.shape[1]}"
        )
    restored = restored.float().reshape(size, steps, bands, *restored.shape[-2:])
    if "t" in batch:
        observed = torch.arange(steps, device=image.device)[None, :] < batch["t"].reshape(-1, 1)
        hidden = hidden & observed[:, :, None, None, None]
    if "counted" in batch:
        counted = torch.as_tensor(batch["counted"], device=image.device).reshape(-1)
        hidden = hidden & counted[:, None, None, None, None]
    hidden = hidden.expand_as(image)
    error = (restored - image.float()).square()
    return (error * hidden).sum(), hidden.sum()


class SegmentationTask(L.LightningModule):
    """Crop segmentation of ``(B, T, bands, H, W)`` series into ``(B, 1, H, W)`` logits (one
    positive class) or ``(B, K, H, W)`` logits of ``config.classes``."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        pos_weight: float | None = None,
        class_weight: list[float] | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        """``pos_weight`` is the number ``config.pos_weight: auto`` stands for (the caller
        counts the training labels); a numeric ``config.pos_weight`` needs none. Multi-class
        runs take ``class_weight`` (one per class) instead. ``teacher`` is the frozen
        pre-trained start that ``config.distillation`` pulls the unlabelled pixels towards."""
        super().__init__()
        self.config = config or TrainConfig()
        # Plain values, so that Lightning checkpoints load with ``weights_only=True``.
        self.save_hyperparameters(self.config.model_dump())
        self.model = model
        if (teacher is None) != (self.config.distillation == 0):
            raise ValueError("distillation needs the pre-trained start as teacher, and only it")
        self.teacher = teacher.requires_grad_(False).eval() if teacher is not None else None
        classes = self.config.classes
        weight = self.config.pos_weight if pos_weight is None else pos_weight
        if classes is not None:
            weight = 1.0  # the class weights stand in for it
        if weight == "auto":
            raise ValueError("pos_weight 'auto' needs the weight counted from the training labels")
        self.criterion = SegmentationLoss(
            self.config.loss, float(weight), self.config.dice_weight, class_weight
        )
        self.val_confusion: ConfusionMetric | MulticlassConfusionMetric
        self.test_confusion: ConfusionMetric | MulticlassConfusionMetric
        if classes is None:
            self.val_confusion = ConfusionMetric(self.config.threshold)
            self.test_confusion = ConfusionMetric(self.config.threshold)
        else:
            self.val_confusion = MulticlassConfusionMetric(list(classes))
            self.test_confusion = MulticlassConfusionMetric(list(classes))
        self.val_loss = torchmetrics.MeanMetric()

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image)

    def _logits(self, batch: dict[str, Any]) -> Tensor:
        return self.model(observed_series(batch))

    def _reconstruction(self, batch: dict[str, Any], stream: int, index: int) -> Tensor:
        # One stream per rank, so that ranks hide different entries of their different batches.
        seed = self.config.seed + 7919 * self.global_rank
        mask = reconstruction_mask(batch["image"].shape, seed, stream, index)
        return reconstruction_loss(self.model, batch, mask)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        if self.config.reconstructs:
            loss = self._reconstruction(batch, _TRAIN_MASKS, self.global_step)
        else:
            series = observed_series(batch)
            logits = self.model(series)
            loss = self.criterion(logits, batch["target"], batch["valid"])
            if self.teacher is not None:
                taught = self._distillation(series, logits, batch["valid"])
                loss = loss + self.config.distillation * taught
        size = batch["image"].shape[0]
        self.log(
            "train_loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=size,
            sync_dist=True,
        )
        return loss

    def _distillation(self, series: Tensor, logits: Tensor, valid: Tensor) -> Tensor:
        """The pull of the unlabelled pixels (not ``valid``) towards the teacher's predictions
        of the same observed ``series`` the model saw."""
        assert self.teacher is not None
        self.teacher.eval()  # Lightning sets every submodule to train mode each epoch
        with torch.no_grad():
            taught = self.teacher(series)
        return distillation_loss(logits, taught, ~valid)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if self.config.reconstructs:
            # Each patch's masks by its index, each hidden entry weighing the same: the mean
            # over the validation set, whatever the batches and processes.
            shape, seed = batch["image"].shape, self.config.seed
            if "index" in batch:
                mask = patch_masks(shape, seed, _VAL_MASKS, batch["index"])
            else:  # items without their index (a plain list of tensors): by batch
                mask = reconstruction_mask(shape, seed, _VAL_MASKS, batch_idx)
            error, hidden = reconstruction_error(self.model, batch, mask)
            self.val_loss.update((error / hidden.clamp_min(1)).detach(), weight=hidden)
            return
        logits = self._logits(batch)
        loss = self.criterion(logits, batch["target"], batch["valid"])
        # Weighted by valid pixels: padding keys (no valid pixel) do not count.
        self.val_loss.update(loss.detach(), weight=batch["valid"].sum().clamp_min(0))
        self.val_confusion.update(logits, batch["target"], batch["valid"])

    def on_validation_epoch_end(self) -> None:
        loss = float(self.val_loss.compute()) if self.val_loss.update_count else math.nan
        self.val_loss.reset()
        self.log("val_loss", loss, sync_dist=True, prog_bar=self.config.reconstructs)
        if not self.config.reconstructs:  # a reconstruction has no confusion to compute
            confusion = self.val_confusion.compute()
            self.val_confusion.reset()
            self._log_metrics("val", confusion)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.test_confusion.update(self._logits(batch), batch["target"], batch["valid"])

    def on_test_epoch_end(self) -> None:
        confusion = self.test_confusion.compute()
        self.test_confusion.reset()
        self._log_metrics("test", confusion)

    def _log_metrics(self, stage: str, confusion: BinaryConfusion | MulticlassConfusion) -> None:
        if isinstance(confusion, MulticlassConfusion):
            self._log_multiclass(stage, confusion)
            return
        # An undefined IoU (no positive pixel predicted or present) is logged as 0 so that
        # checkpoint selection and early stopping always compare numbers.
        for name in ("iou", "precision", "recall", "f1"):
            value = getattr(confusion, name)
            self.log(
                f"{stage}_{name}",
                0.0 if math.isnan(value) else value,
                sync_dist=True,
                prog_bar=name == "iou",
            )

    def _log_multiclass(self, stage: str, confusion: MulticlassConfusion) -> None:
        # Undefined values are logged as 0, as for the binary metrics.
        values = {"miou": confusion.miou, "accuracy": confusion.accuracy, "kappa": confusion.kappa}
        values.update(
            {f"iou_{name}": float(iou) for name, iou in zip(confusion.classes, confusion.iou)}
        )
        for name, value in values.items():
            self.log(
                f"{stage}_{name}",
                0.0 if math.isnan(value) else value,
                sync_dist=True,
                prog_bar=name == "miou",
            )

    def configure_optimizers(self) -> Any:
        params = trainable_parameters(self.model)
        if not params:
            raise ValueError("the model has no trainable parameters")
        # No weight decay on biases, norm scales and per-channel weights (1-D tensors).
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups, lr=self.config.lr)
        if self.config.scheduler == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.config.warmup_fraction * total)
        if self.config.scheduler == "onecycle":
            scheduler: torch.optim.lr_scheduler.LRScheduler = one_cycle(
                optimizer, self.config.lr, total, warmup
            )
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total))
        schedule = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def one_cycle(
    optimizer: torch.optim.Optimizer, peak: float, total: int, warmup: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    """One cycle over ``total`` optimizer steps, rising to ``peak`` over ``warmup`` of them.

    OneCycleLR divides by its rise's steps less one and by its fall's, so the rise takes at
    least 2 steps, and a run of fewer than 3 steps follows the start of a 3-step cycle: a
    short run or ``warmup_fraction: 0`` trains instead of dividing by zero, and a run with 2
    or more warm-up steps keeps the schedule it always had.
    """
    steps = max(total, 3)
    rise = min(max(warmup, 2), steps - 1)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, total_steps=steps, pct_start=rise / steps
    )


class WarmupCosine:
    """Linear warm-up to the base LR, then cosine decay to 1% of it (a picklable LR lambda)."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))
