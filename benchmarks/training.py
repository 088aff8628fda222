"""Training speed: one optimisation step (forward + backward + AdamW) per model, and the time
to fine-tune on a Spain-sized set.

The step is what :class:`sarcrop.training.SegmentationTask` runs (BCE + Dice loss on valid
pixels, AdamW) without Lightning's bookkeeping, on synthetic tensors of the real shape: speed
does not depend on the values. Training FLOPs are counted with ``FlopCounterMode`` over the
forward and backward pass of the warm-up step (convolutions and matmuls only, like
``count_flops``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import gflops, measure
from benchmarks.models import BANDS, MODEL_NAMES, STEPS, make_model
from sarcrop.training.losses import SegmentationLoss

# The paper's Spain set: 88 patches of 256² px, 60 % for training, of which the training
# configuration keeps 20 % for validation (TrainConfig.val_fraction).
SPAIN_PATCHES = 88
TRAIN_FRACTION = 0.6
VAL_FRACTION = 0.2


class Step:
    """One training step of ``model`` on a fixed synthetic batch."""

    def __init__(self, model: nn.Module, batch: int, patch: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.model = model.train()
        self.image = torch.rand(batch, STEPS, BANDS, patch, patch, generator=generator)
        self.target = (torch.rand(batch, patch, patch, generator=generator) > 0.8).float()
        self.valid = torch.ones(batch, patch, patch, dtype=torch.bool)
        self.loss = SegmentationLoss("bce+dice")
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.image), self.target, self.valid)
        loss.backward()
        self.optimizer.step()

    def count_flops(self) -> int:
        """FLOPs of one step (forward + backward), counted while running it."""
        counter = FlopCounterMode(display=False)
        with counter:
            self()
        return int(counter.get_total_flops())


def spain_epoch(step_s: float, forward_s: float, batch: int) -> dict[str, Any]:
    """Seconds per fine-tuning epoch on the Spain set from a measured step and forward time."""
    train_pool = round(SPAIN_PATCHES * TRAIN_FRACTION)
    n_val = max(1, round(VAL_FRACTION * train_pool))
    n_train = train_pool - n_val
    steps = math.ceil(n_train / batch)
    val_batches = math.ceil(n_val / batch)
    seconds = steps * step_s + val_batches * forward_s
    return {
        "train_patches": n_train,
        "val_patches": n_val,
        "steps_per_epoch": steps,
        "epoch_s": seconds,
    }


def run(
    quick: bool = False,
    ceiling: float | None = None,
    forward_s: dict[str, float] | None = None,
    finetune_epochs: int | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Training numbers for every model.

    ``forward_s``: measured inference time of one batch per model (from the model benchmark),
    used for the validation part of an epoch; ``finetune_epochs``: epochs the fine-tuning runs
    (the shipped experiment config's value) for the time-to-convergence estimate.
    """
    patch = 32 if quick else 256
    batch = 2 if quick else 4
    repeats = 1 if quick else 3
    results: dict[str, Any] = {"patch": patch, "batch": batch, "models": {}}
    for name in names or MODEL_NAMES:
        entry: dict[str, Any] = {"formats": {}}
        for label, fmt in (
            ("contiguous", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            step = Step(make_model(name, fmt), batch, patch)
            flops = step.count_flops()  # also the warm-up step
            timing = measure(step, repeats, warmup=0)
            rate = gflops(flops, timing["median_s"])
            entry["formats"][label] = {
                **timing,
                "samples_per_s": batch / timing["median_s"],
                "flops_per_step": flops,
                "gflops": rate,
                **({"fraction_of_ceiling": rate / ceiling} if ceiling else {}),
            }
        best = max(entry["formats"], key=lambda k: entry["formats"][k]["samples_per_s"])
        entry["best_format"] = best
        entry["best"] = entry["formats"][best]
        step_s = entry["best"]["median_s"]
        fwd = (forward_s or {}).get(name, step_s / 3)
        epoch = spain_epoch(step_s, fwd, batch)
        if finetune_epochs:
            epoch["epochs"] = finetune_epochs
            epoch["time_to_convergence_s"] = epoch["epoch_s"] * finetune_epochs
        entry["spain_finetune"] = epoch
        results["models"][name] = entry
    return results
