"""Training: the Lightning task, transfer strategies, batch ordering and checkpoints.

- :func:`train`, :func:`finetune`, :func:`evaluate`: the API behind the CLI commands.
- :class:`SegmentationTask`: LightningModule wrapping any sarcrop model.
- :func:`apply_strategy`: ri / ft / fte / ftd (paper Eq. 2).
- :class:`TimestepBatchSampler`: full, chronological (paper A.2) or random batch order.
- :func:`save_checkpoint` / :func:`load_checkpoint`: one safetensors file, never unpickled.
"""

from sarcrop.training.api import TrainResult, evaluate, finetune, fit, split_train_val, train
from sarcrop.training.checkpoint import (
    CheckpointMetadata,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from sarcrop.training.config import TrainConfig
from sarcrop.training.ordering import (
    Key,
    ShardedBatchSampler,
    TimestepBatchSampler,
    TimestepDataset,
    batch_types,
    pad_steps,
)
from sarcrop.training.strategies import STRATEGIES, apply_strategy, trainable_parameters
from sarcrop.training.task import SegmentationTask

__all__ = [
    "STRATEGIES",
    "CheckpointMetadata",
    "Key",
    "SegmentationTask",
    "ShardedBatchSampler",
    "TimestepBatchSampler",
    "TimestepDataset",
    "TrainConfig",
    "TrainResult",
    "apply_strategy",
    "batch_types",
    "evaluate",
    "finetune",
    "fit",
    "load_checkpoint",
    "pad_steps",
    "read_metadata",
    "save_checkpoint",
    "split_train_val",
    "train",
    "trainable_parameters",
]
