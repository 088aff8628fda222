"""Training: the Lightning task, transfer strategies, batch ordering and checkpoints.

- :func:`train`, :func:`finetune`, :func:`evaluate`: the API behind the CLI commands.
- :class:`SegmentationTask`: LightningModule wrapping any sarcrop model.
- :func:`apply_strategy`: ri / ft / fte / ftd (paper Eq. 2).
- :class:`TimestepBatchSampler`: full, chronological (paper A.2) or random batch order.
- :func:`save_checkpoint` / :func:`load_checkpoint`: one safetensors file, never unpickled.

Names are imported on first use, so that reading a config or building the command line does
not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "api": ("TrainResult", "finetune", "fit", "split_train_val", "train", "train_ri"),
    "sarcrop.evaluation.networks": ("evaluate",),  # scoring needs no Lightning
    "checkpoint": ("CheckpointMetadata", "load_checkpoint", "read_metadata", "save_checkpoint"),
    "config": ("TrainConfig",),
    "ordering": (
        "Key",
        "ShardedBatchSampler",
        "TimestepBatchSampler",
        "TimestepDataset",
        "batch_types",
        "pad_steps",
    ),
    "strategies": ("STRATEGIES", "apply_strategy", "trainable_parameters"),
    "task": ("SegmentationTask",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'sarcrop.training' has no attribute {name!r}")
    path = module if "." in module else f"sarcrop.training.{module}"
    return getattr(importlib.import_module(path), name)
