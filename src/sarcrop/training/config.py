"""Typed, validated training configuration.

One :class:`TrainConfig` drives pre-training, training from scratch and fine-tuning; the CLI
flags and the ``--config train.yaml`` file both end up here, so a typo in a YAML key or an
out-of-range value fails before any data is read, with the file named in the message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sarcrop.errors import ConfigError
from sarcrop.options import class_list, given_values, json_object
from sarcrop.utils.validation import (
    OneLineErrors,
    config_error,
    read_yaml,
    shipped_yaml,
    whole_number,
)

Ordering = Literal["full", "chronological", "random"]
LossName = Literal["bce", "dice", "bce+dice"]
Scheduler = Literal["cosine", "onecycle", "none"]
InputScaling = Literal["store", "fixed"]
Objective = Literal["segment", "reconstruct"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
# The precisions the models run at: full float32, or float32 weights with float16 / bfloat16
# autocast ("16" and "bf16" are Lightning's names of the mixed ones). Half or double weights
# (16-true, bf16-true, 64-true) fail in the models' convolutions and in the export.
Precision = Literal["32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16"]
DEFAULT_OBJECTIVE: Objective = "segment"

# Fields added after runs were cached: left out of every dump at these defaults, so the
# fingerprints and cache keys of runs from before them stay what they were (and still resume).
LATER_FIELD_DEFAULTS: dict[str, Any] = {
    "objective": DEFAULT_OBJECTIVE,
    "level_jitter": 0.0,
    "date_dropout": 0.0,
    "interpolation": 1.0,
    "distillation": 0.0,
    "parent_classes": None,
    "fresh_head": False,
    "epoch_search": None,
    "interpolation_search": None,
    "search_folds": 3,
}

# ``pos_weight: auto`` never weighs a positive pixel more than this many negatives: with a
# handful of positive pixels the raw ratio would make the loss chase each one of them.
AUTO_POS_WEIGHT_CAP = 20.0

# Fields that change what a run shows or how it loads its data: an experiment's cached run is
# reused whatever they are. They never change what a run learns, but for the number of
# DataLoader workers where the run draws random augmentations (TrainConfig.
# draws_augmentations): the workers draw them, so a run's fingerprint then holds that number.
DISPLAY_FIELDS = frozenset({"num_workers", "progress_bar", "log_every_n_steps"})

# Fields that change how a run executes but not what it computes: a run interrupted and
# restarted with a different value of these still resumes from its last checkpoint (the
# number of workers of a run that draws augmentations aside, as above).
RUNTIME_FIELDS = DISPLAY_FIELDS | {"max_time", "channels_last", "compile"}

# Settings that only training weights reads: the bias strategy refuses them given as flags
# (a recipe's or a --config file's, shared with other strategies, are left to it).
GRADIENT_FIELDS = (
    "epochs",
    "lr",
    "weight_decay",
    "loss",
    "pos_weight",
    "dice_weight",
    "scheduler",
    "warmup_fraction",
    "gradient_clip",
    "patience",
    "augment",
    "ordering_coverage",
)

# Lightning's devices given as the indices of the devices to use: "0,1", "1,".
DEVICE_INDICES = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*,?\s*$")

# DataLoader workers per GPU when ``num_workers`` is left to sarcrop: enough to read and
# normalise patches while the GPU computes, at most the CPU cores there are.
GPU_LOADER_WORKERS = 8
#: The checkpoint a training run writes into its output folder.
MODEL_FILE = "model.safetensors"

# The Lightning strategy was once the field ``strategy``, a word transfer strategies own.
RENAMED_STRATEGY = "renamed to 'distributed' (the Lightning strategy, e.g. ddp)"


def shipped_recipes() -> dict[str, Path]:
    """Name → YAML file of the training recipes that ship with sarcrop (``sarcrop/configs/
    recipes``): settings measured for a situation, such as ``few-labels``."""
    return shipped_yaml("configs/recipes")


def recipe_settings(name: str) -> dict[str, Any]:
    """The TrainConfig settings of the shipped recipe ``name``."""
    recipes = shipped_recipes()
    if name not in recipes:
        raise ValueError(f"unknown recipe {name!r}; shipped: {', '.join(sorted(recipes))}")
    return dict(read_yaml(recipes[name], "training recipe"))


class TrainConfig(OneLineErrors):
    """Hyper-parameters and execution settings of one training run.

    ``recipe`` (a keyword, a YAML key and ``--recipe``) starts from a shipped recipe's settings
    (:func:`shipped_recipes`); the other settings given beside it override the recipe's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Objective = Field(
        DEFAULT_OBJECTIVE,
        description="segment: learn the labels; reconstruct: self-supervised pre-training that "
        "restores masked composites and pixel blocks of the input (labels unused)",
    )
    epochs: int = Field(50, ge=1, description="maximum number of epochs")
    batch_size: int = Field(8, ge=1, description="patches per batch and device")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay of weight matrices")
    loss: LossName = Field("bce+dice", description="loss over the valid pixels")
    pos_weight: float | Literal["auto"] = Field(
        1.0,
        description="BCE weight of positive pixels (rare crops); auto: negatives/positives of "
        f"the training labels, at most {AUTO_POS_WEIGHT_CAP:g}",
    )
    dice_weight: float = Field(1.0, ge=0, description="weight of soft Dice in 'bce+dice'")
    scheduler: Scheduler = Field("cosine", description="learning-rate schedule")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="share of steps for LR warm-up")
    gradient_clip: float | None = Field(1.0, gt=0, description="gradient norm clip (null: none)")
    patience: int | None = Field(
        10, ge=0, description="early-stopping epochs without val_iou gain (0: off)"
    )
    val_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of the train split held out for model selection "
        "(0: none, train all epochs and keep the last weights)",
    )
    label_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of the train split's labelled parcels to learn from (chosen by seed)",
    )
    epoch_search: tuple[int, ...] | None = Field(
        None,
        description="choose epochs among these budgets, e.g. 5,10,20,40,60, by cross-validation "
        "over the labelled parcels (search_folds folds; needs val_fraction 0); the run then "
        "trains on every label for the best",
    )
    interpolation_search: tuple[float, ...] | None = Field(
        None,
        description="fine-tuning only: choose interpolation among these weights, e.g. "
        "0,0.25,0.5,0.75,1 (0: the pre-trained model as it is), by the same cross-validation "
        "as epoch_search",
    )
    search_folds: int = Field(
        3,
        ge=2,
        description="epoch_search, interpolation_search: folds of whole parcels, each held "
        "out once",
    )
    augment: bool = Field(False, description="random flips and 90° rotations of training patches")
    level_jitter: float = Field(
        0.0,
        ge=0,
        le=10,
        description="dB: each training patch's bands shifted by a random offset within ± this "
        "(the same crop's backscatter level differs between years, orbits and regions)",
    )
    date_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="chance that each composite of a training patch is zeroed, as an "
        "unobserved one is (a map should not hang on one date)",
    )
    interpolation: float = Field(
        1.0,
        ge=0,
        le=1,
        description="fine-tuning only: weight of the fine-tuned weights in the exported model, "
        "the rest the pre-trained start's (weight-space ensemble, WiSE-FT); 1 keeps them as "
        "trained, 0 exports the start",
    )
    distillation: float = Field(
        0.0,
        ge=0,
        description="fine-tuning only: weight of a loss that keeps the predictions on the "
        "training patches' unlabelled pixels close to the pre-trained start's (0: off), so "
        "that a few labels correct the start where they lie instead of overwriting it",
    )
    classes: tuple[str, ...] | None = Field(
        None,
        description="crop-type map of these classes, e.g. maize,potato,other ('other': every "
        "class not listed; without it their pixels are ignored); default: one positive class",
    )
    parent_classes: dict[str, str] | None = Field(
        None,
        description="fine-tuning only: the pre-trained model's name for each of our classes (or "
        "our one crop) it knows under another, e.g. winter_cereal=wheat (or a JSON object); the "
        "head carries over the outputs of every class it knows (by name otherwise)",
    )
    fresh_head: bool = Field(
        False,
        description="fine-tuning to classes other than the pre-trained model's: a new head "
        "from random weights, without the outputs of the classes it knows",
    )
    normalization: InputScaling = Field(
        "store",
        description="input scaling of new models: the store's train min/max, or fixed dB ranges "
        "(the same in every region)",
    )
    ordering: Ordering = Field(
        "full", description="batch order over observed time steps (chronological: paper A.2)"
    )
    ordering_coverage: float = Field(
        1.0, gt=0, le=1, description="share of the training set each batch type (t) covers"
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="probability threshold for metrics")
    seed: int = Field(0, description="random seed (weights, split, batch order)")
    num_workers: int | None = Field(
        None,
        ge=0,
        description="DataLoader worker processes (default: none on CPU, where they would take "
        f"cores from the model; up to {GPU_LOADER_WORKERS} per GPU, so it is never starved)",
    )
    accelerator: Accelerator = Field("auto", description="cpu, gpu or auto")
    devices: int | str = Field(1, description="devices per node (count, -1 or 'auto')")
    num_nodes: int = Field(1, ge=1, description="nodes of a multi-node run")
    distributed: str = Field(
        "auto",
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="Lightning distributed strategy, e.g. ddp",
    )
    precision: Precision = Field("32-true", description="32-true, 16-mixed or bf16-mixed")
    channels_last: bool = Field(
        False, description="channels_last memory format (faster convolutions on GPUs)"
    )
    compile: bool = Field(
        False, description="torch.compile the model (slow start, faster steps on GPUs)"
    )
    deterministic: bool | None = Field(
        None, description="deterministic algorithms (default: on CPU only)"
    )
    max_time: str | None = Field(
        None, description="stop at the first epoch end after DD:HH:MM:SS (rerun to go on)"
    )
    log_every_n_steps: int = Field(10, ge=1, description="metrics.csv rows every N steps")
    progress_bar: bool = Field(True, description="show the progress bar")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "strategy" in data:
            raise PydanticCustomError("renamed", f"strategy: {RENAMED_STRATEGY}")
        return data

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        if isinstance(data, dict) and "recipe" in data:
            data = dict(data)
            name = data.pop("recipe")
            if name is not None:
                try:
                    data = {**recipe_settings(str(name)), **data}
                except ValueError as exc:
                    raise PydanticCustomError("recipe", f"recipe: {exc}") from None
        return data

    @property
    def reconstructs(self) -> bool:
        """Self-supervised pre-training: no labels, one output per time step and band."""
        return self.objective == "reconstruct"

    def unused_by_bias(self) -> list[str]:
        """The settings given that the ``bias`` strategy cannot apply: it chooses a threshold
        and trains no weights (a recipe's augmentation, epochs and learning rate, which it
        ignores, are not among them: one ``finetune:`` section serves every method of an
        experiment). A batch order other than ``full`` would record an early-season training
        that never happened."""
        given = {
            "epoch_search": self.epoch_search is not None,
            "interpolation_search": self.interpolation_search is not None,
            "interpolation": self.interpolation < 1,
            "distillation": self.distillation > 0,
            "date_dropout": self.date_dropout > 0,
            "level_jitter": self.level_jitter > 0,
            "ordering": self.ordering != "full",
        }
        return [name for name, used in given.items() if used]

    @model_validator(mode="after")
    def _objective(self) -> TrainConfig:
        if self.reconstructs:
            if self.classes is not None:
                raise ValueError("objective reconstruct learns no classes; leave classes out")
            if self.label_fraction < 1:
                raise ValueError("objective reconstruct uses no labels; leave label_fraction at 1")
        if self.fresh_head and self.parent_classes is not None:
            raise ValueError("parent_classes names outputs to carry over; fresh_head carries none")
        for name in ("epoch_search", "interpolation_search"):
            if getattr(self, name) is None:
                continue
            if self.reconstructs:
                raise ValueError(f"{name} scores labels: leave it out of reconstruct runs")
            if self.val_fraction > 0:
                raise ValueError(
                    f"{name} holds out parcels instead of validation patches: set val_fraction 0"
                )
        return self

    @property
    def draws_augmentations(self) -> bool:
        """Whether training changes its patches at random (``augment``, ``level_jitter``,
        ``date_dropout``). DataLoader worker processes draw those changes, each seeded anew
        every epoch from the run's random state: a run resumes to the weights of a run never
        interrupted with the same number of workers, and another number (none, the default
        on CPU, included) draws other changes."""
        return self.augment or self.level_jitter > 0 or self.date_dropout > 0

    @property
    def searches(self) -> bool:
        """Whether the run chooses epochs or interpolation on held-out parcels first."""
        return self.epoch_search is not None or self.interpolation_search is not None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name, default in LATER_FIELD_DEFAULTS.items():
            if name in data and data[name] == default:
                del data[name]
        return data

    @field_validator("pos_weight", mode="before")
    @classmethod
    def _pos_weight(cls, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0) or isinstance(value, bool):
            raise ValueError(f"pos_weight must be a positive number or 'auto', got {value!r}")
        return number

    @field_validator("patience")
    @classmethod
    def _patience(cls, value: int | None) -> int | None:
        return None if value == 0 else value

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        # A count as text ("2") is the command line's --devices 2: one fingerprint either way.
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        wrong = "devices must be a positive count, -1, 'auto' or device indices such as 0,1"
        if isinstance(value, bool) or (isinstance(value, int) and value < 1 and value != -1):
            raise ValueError(wrong)
        if isinstance(value, str) and value != "auto" and not DEVICE_INDICES.match(value):
            raise ValueError(f"{wrong}, got {value!r}")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):  # a YAML precision: 16
            return str(value)
        return value

    @field_validator("max_time")
    @classmethod
    def _max_time(cls, value: str | None) -> str | None:
        if value is not None:
            parts = value.split(":")
            if len(parts) != 4 or not all(p.isdigit() for p in parts):
                raise ValueError("max_time must look like DD:HH:MM:SS")
        return value

    @field_validator("epoch_search", "interpolation_search", mode="before")
    @classmethod
    def _candidates(cls, value: Any) -> Any:
        if isinstance(value, str):  # the command line's 5,10,20
            value = [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("epoch_search")
    @classmethod
    def _budgets(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if not value or min(value) < 1:
            raise ValueError("epoch_search needs one or more budgets of at least 1 epoch")
        return tuple(sorted(set(value)))

    @field_validator("interpolation_search")
    @classmethod
    def _weights(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        if not value or min(value) < 0 or max(value) > 1:
            raise ValueError("interpolation_search needs one or more weights from 0 to 1")
        return tuple(sorted(set(value)))

    @field_validator("parent_classes", mode="before")
    @classmethod
    def _parent_classes(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lstrip().startswith("{"):  # a JSON object
            value = json_object(value, "our class: the pre-trained model's")
        if isinstance(value, str):  # the command line's winter_cereal=wheat,grass=grassland
            # Comma-separated pairs; a name may hold spaces (a legend's "permanent grass crops").
            parts = [part.strip() for part in value.split(",") if part.strip()]
            pairs = [[side.strip() for side in part.split("=")] for part in parts]
            if any(len(pair) != 2 or not all(pair) for pair in pairs):
                raise ValueError(f"parent_classes must look like ours=theirs,..., got {value!r}")
            value = dict(pairs)
        return value or None

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, value: Any) -> Any:
        return class_list(value)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that determine the result (used to decide whether a run can resume)."""
        # A binary run's fingerprint is what it was before class lists existed.
        unset = {"classes"} if self.classes is None else set()
        return self.model_dump(exclude=set(RUNTIME_FIELDS) | unset)

    def updated(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied (``None`` values are ignored); a
        ``recipe`` among them applies its settings first, under the other changes."""
        data = self.model_dump()
        if (recipe := changes.pop("recipe", None)) is not None:
            try:
                data.update(recipe_settings(str(recipe)))
            except ValueError as exc:
                raise ConfigError(f"recipe: {exc}") from None
        data.update(given_values(changes))
        return validate_config(data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML mapping of TrainConfig fields (a ``train:`` section is accepted too)."""
        return validate_config(read_settings(path), path)


def read_settings(path: str | Path) -> dict[str, Any]:
    """The mapping of TrainConfig settings in a YAML file (or in its ``train:`` section)."""
    path = Path(path)
    data = read_yaml(path, "training config")
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("training config must be a mapping of settings", path)
    return data


def validate_config(data: dict[str, Any], path: str | Path | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig`, turning validation errors into one-line ConfigErrors."""
    if "strategy" in data:
        raise ConfigError(f"strategy: {RENAMED_STRATEGY}", path)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, path, unknown="unknown setting", model=TrainConfig) from None


def positive_classes(
    store: Any,
    positive: Sequence[str] | str | None,
    default: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> list[str]:
    """The positive class(es): as given, else the store's (its ``positive``), else ``default``;
    none for a crop-type map (``classes``), which learns every class it lists.

    A store prepared from a simulated region or with ``--positive`` records its crop, so a
    maize store trains a maize model without naming the crop again. A crop given beside
    ``classes`` must be one of them (the command line refuses both at once,
    :func:`sarcrop.cli.shared.check_one_target`).
    """
    given = [name for name in ([positive] if isinstance(positive, str) else positive or ()) if name]
    if classes:
        from sarcrop.data.labels import class_key

        known = {class_key(name) for name in classes}
        outside = [name for name in given if class_key(name) not in known]
        if outside:
            raise ConfigError(
                f"positive {', '.join(outside)} is not among classes {', '.join(classes)}: a "
                "crop-type map learns the classes it lists; leave --positive out, or add it to "
                "--classes"
            )
        return []
    if given:
        return given
    recorded = store.metadata.positive or default
    if not recorded:
        raise ConfigError("the store records no positive class; name it (--positive)", store.path)
    return list(recorded)


def timestep_list(timesteps: int | Literal["all"] | None, steps: int) -> list[int]:
    """The numbers of observed composites to evaluate: ``None`` → ``[T]``, ``"all"`` → 1..T."""
    if every_timestep(timesteps):
        return list(range(1, steps + 1))
    if timesteps is None:
        return [steps]
    if not whole_number(timesteps) or not 1 <= int(timesteps) <= steps:
        raise ConfigError(f"timesteps must be 1..{steps} or 'all', got {timesteps!r}")
    return [int(timesteps)]


def every_timestep(timesteps: object) -> bool:
    """Whether ``timesteps`` asks for every number of observed composites (``"all"``, in any
    case, as the command line reads it): an early-season curve."""
    return isinstance(timesteps, str) and timesteps.strip().casefold() == "all"
