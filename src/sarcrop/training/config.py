"""Typed, validated training configuration.

One :class:`TrainConfig` drives pre-training, training from scratch and fine-tuning; the CLI
flags and the ``--config train.yaml`` file both end up here, so a typo in a YAML key or an
out-of-range value fails before any data is read, with the file named in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sarcrop.errors import ConfigError
from sarcrop.utils.validation import config_error

Ordering = Literal["full", "chronological", "random"]
LossName = Literal["bce", "dice", "bce+dice"]
Scheduler = Literal["cosine", "onecycle", "none"]

# Fields that change how a run executes but not what it computes: a run interrupted and
# restarted with a different value of these still resumes from its last checkpoint.
RUNTIME_FIELDS = frozenset({"num_workers", "progress_bar", "max_time", "log_every_n_steps"})


class TrainConfig(BaseModel):
    """Hyper-parameters and execution settings of one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    loss: LossName = "bce+dice"
    pos_weight: float = Field(1.0, gt=0, description="BCE weight of positive pixels (rare crops)")
    dice_weight: float = Field(1.0, ge=0, description="weight of soft Dice in 'bce+dice'")
    scheduler: Scheduler = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="share of steps for LR warm-up")
    gradient_clip: float | None = Field(1.0, gt=0)
    patience: int | None = Field(10, ge=1, description="early-stopping epochs without val_iou gain")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    ordering: Ordering = "full"
    ordering_coverage: float = Field(
        1.0, gt=0, le=1, description="share of the training set each batch type (t) covers"
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="probability threshold for metrics")
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool | None = Field(None, description="None: deterministic on CPU only")
    max_time: str | None = Field(None, description="wall-clock limit 'DD:HH:MM:SS'")
    log_every_n_steps: int = Field(10, ge=1)
    progress_bar: bool = True

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1 and value != -1:
            raise ValueError("devices must be a positive count, -1 or 'auto'")
        return value

    @field_validator("max_time")
    @classmethod
    def _max_time(cls, value: str | None) -> str | None:
        if value is not None:
            parts = value.split(":")
            if len(parts) != 4 or not all(p.isdigit() for p in parts):
                raise ValueError("max_time must look like DD:HH:MM:SS")
        return value

    def fingerprint(self) -> dict[str, Any]:
        """The fields that determine the result (used to decide whether a run can resume)."""
        return self.model_dump(exclude=set(RUNTIME_FIELDS))

    def updated(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied (``None`` values are ignored)."""
        data = self.model_dump()
        data.update({key: value for key, value in changes.items() if value is not None})
        return validate_config(data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML mapping of TrainConfig fields (a ``train:`` section is accepted too)."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("training config not found", path) from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"not a readable YAML file: {_one_line(exc)}", path) from None
        if isinstance(data, dict) and isinstance(data.get("train"), dict):
            data = data["train"]
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError("training config must be a mapping of settings", path)
        return validate_config(data, path)


def validate_config(data: dict[str, Any], path: str | Path | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig`, turning validation errors into one-line ConfigErrors."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, path, unknown="unknown setting") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
