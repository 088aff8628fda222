"""Model checkpoints: one ``.safetensors`` file with weights and everything needed to use them.

The file holds every tensor of the model's ``state_dict`` (weights and buffers such as batch
norm statistics) and, under ``__metadata__["sarcrop"]``, a JSON document
(:class:`CheckpointMetadata`): the architecture and options to rebuild the model, the input
bands and season, the normalisation statistics the inputs must be scaled with, the positive
classes, provenance (region, year, strategy, parent checkpoint) and a training summary.

Loading never unpickles. Only safetensors' own parser reads the file, so a checkpoint from an
untrusted source cannot execute code; pickle-based files (``torch.save``, Lightning ``.ckpt``)
are refused with a :class:`CheckpointError` before anything in them is interpreted. Lightning's
resume checkpoints are pickle-based and are only ever read from a run's own output directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sarcrop import __version__
from sarcrop.errors import CheckpointError
from sarcrop.models.forest import FeatureTreeEnsemble, TreeEnsemble
from sarcrop.utils.atomic import atomic_path

FORMAT_VERSION = 1
METADATA_KEY = "sarcrop"
FORESTS = (TreeEnsemble.name, FeatureTreeEnsemble.name)  # sarcrop baseline --save
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointMetadata(BaseModel):
    """What a checkpoint's weights mean. Validated on save and on load."""

    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT_VERSION
    architecture: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    bands: list[str] = Field(min_length=1)
    time_steps: int = Field(ge=1)
    season: dict[str, Any] | None = None
    normalization: dict[str, Any] | None = Field(
        None, description="per-band min/max (dB) the inputs are min-max scaled with"
    )
    normalization_source: str | None = Field(
        None, description="where the statistics come from, e.g. the store they were computed on"
    )
    positive: list[str] = Field(default_factory=lambda: ["rice"])
    classes: list[str] | None = None
    target_classes: list[str] | None = Field(
        None,
        description="crop-type model: the class of each output channel, in order (softmax); "
        "None: one logit, the probability of the positive class(es)",
    )
    region: str | None = None
    year: int | None = None
    strategy: str | None = Field(None, description="scratch, ri, ft, fte, ftd, probe or bias")
    last_k: int | None = None
    parent: dict[str, Any] | None = Field(None, description="path, sha256, region of the parent")
    composite: dict[str, Any] | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    version: str = __version__
    created: str = Field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    @model_validator(mode="after")
    def _consistent(self) -> CheckpointMetadata:
        if self.format > FORMAT_VERSION:
            raise ValueError(
                f"format {self.format} is newer than this sarcrop understands ({FORMAT_VERSION})"
            )
        upper = [b.upper() for b in self.bands]
        repeated = sorted({b for b in upper if upper.count(b) > 1})
        if repeated:
            raise ValueError(f"bands {self.bands} name {', '.join(repeated)} more than once")
        if self.normalization is not None:
            _check_normalization(self.normalization, self.bands)
        channels = self.options.get("out_channels", 1)
        if self.target_classes is not None:
            if len(self.target_classes) < 2 or channels != len(self.target_classes):
                raise ValueError(
                    f"target_classes {self.target_classes} need one output channel each, "
                    f"the model has {channels}"
                )
        elif self.training.get("objective", "segment") == "segment" and channels != 1:
            # A reconstruction (self-supervised) has one output per time step and band.
            raise ValueError(
                f"options.out_channels is {channels!r} without target_classes: a model of one "
                "crop has one output channel, a crop-type model names the class of each of its "
                "channels in target_classes"
            )
        _check_training(self.training)
        if self.season is not None:
            from sarcrop.data.season import Season
            from sarcrop.errors import ConfigError

            try:
                season = Season.from_dict(self.season)
            except (KeyError, TypeError, ValueError, ConfigError) as exc:
                raise ValueError(f"season is invalid: {exc}") from None
            if season.steps != self.time_steps:
                raise ValueError(f"season has {season.steps} steps, time_steps {self.time_steps}")
        return self

    def class_threshold(self) -> float:
        """The probability threshold it was trained and evaluated with (its training settings'
        ``threshold``, 0.5 unless set), which ``evaluate`` scores it at and ``predict`` maps."""
        config = self.training.get("config")
        return float(config.get("threshold", 0.5)) if isinstance(config, dict) else 0.5

    def learnt_early_seasons(self) -> bool | None:
        """Whether this model, or a model it was fine-tuned from, trained on seasons cut short
        (ordered or random batch types, or a forest's zero-padded copies), so that a map from
        the first composites, the later ones zero-padded, is an input it learnt. A model
        trained on full seasons alone maps nothing early (docs/results.md, "Early-season maps
        on real data"). Date dropout does not count: it zeroes composites at random, a
        season's whole tail seldom (with ``p = 0.25`` the last four at once in 0.4 % of the
        patches), and FTD with it mapped real Flanders maize with IoU 0.02–0.22 from the
        first two or three composites. A model that trained nothing (``bias``, interpolation
        0) learnt what its parent did, whatever ordering its record holds. None where the
        record does not say."""
        config = self.training.get("config")
        if not isinstance(config, dict):
            return None
        trained = self.training.get("epochs") != 0  # bias, interpolation 0: the parent's weights
        if config.get("ordering", "full") != "full" and trained:
            return True
        if "early_season" in config:  # a forest: with or without zero-padded copies
            return bool(config["early_season"])
        if self.parent is None or self.strategy == "ri":  # RI keeps no weight of its parent
            return False
        inherited = self.parent.get("early_seasons")
        return None if inherited is None else bool(inherited)

    def to_json(self) -> str:
        return self.model_dump_json()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_normalization(normalization: dict[str, Any], bands: list[str]) -> None:
    """Statistics that scale each band of ``bands`` into [0, 1]: the bands they are of, in
    order, and a finite ``min`` below a finite ``max`` for each (plain, percentile and fixed
    ranges alike: every kind :class:`~sarcrop.data.normalization.Normalization` records)."""
    for key in ("min", "max"):
        values = normalization.get(key)
        numbers = isinstance(values, list) and all(_number(v) for v in values)
        if not numbers or len(values) != len(bands):  # type: ignore[arg-type]
            raise ValueError(f"normalization.{key} needs one number per band {bands}")
    named = normalization.get("bands")
    if named is None:
        raise ValueError(
            f"normalization names no bands (normalization.bands), so its statistics cannot be "
            f"matched to the bands {bands}"
        )
    upper = [b.upper() for b in bands]
    if not isinstance(named, list) or [str(b).upper() for b in named] != upper:
        raise ValueError(f"normalization.bands {named} are not the bands {bands}")
    method = normalization.get("method", "minmax")
    if not isinstance(method, str):
        raise ValueError(f"normalization.method is {method!r}, not a name")
    for band, low, high in zip(bands, normalization["min"], normalization["max"], strict=True):
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(
                f"normalization of band {band} is min {low} max {high}: each band needs a "
                "finite min below its max"
            )


def _check_training(training: dict[str, Any]) -> None:
    """What ``evaluate`` and ``predict`` read from the training summary: its settings (a
    mapping, with a class ``threshold`` strictly between 0 and 1), the side of the patches and
    the pixel size it learnt, and the orbit of its scenes."""
    config = training.get("config")
    if "config" in training and not isinstance(config, dict):
        raise ValueError(f"training.config is {_short(config)}, not a mapping of settings")
    threshold = config.get("threshold", 0.5) if isinstance(config, dict) else 0.5
    if not (_number(threshold) and 0 < threshold < 1):
        raise ValueError(
            f"training.config.threshold is {_short(threshold)}, not a probability strictly "
            "between 0 and 1"
        )
    patch_size = training.get("patch_size")
    if patch_size is not None and not (
        isinstance(patch_size, int) and not isinstance(patch_size, bool) and patch_size >= 1
    ):
        raise ValueError(
            f"training.patch_size is {_short(patch_size)}, not a side of 1 pixel or more"
        )
    pixel_size = training.get("pixel_size")
    if pixel_size is not None and not (
        _number(pixel_size) and math.isfinite(pixel_size) and pixel_size > 0
    ):
        raise ValueError(
            f"training.pixel_size is {_short(pixel_size)}, not a size in metres above 0"
        )
    orbit = training.get("orbit")
    if orbit is not None and not isinstance(orbit, str):
        raise ValueError(f"training.orbit is {_short(orbit)}, not an orbit direction")
    objective = training.get("objective", "segment")
    if objective not in ("segment", "reconstruct"):
        raise ValueError(f"training.objective is {_short(objective)}, not segment or reconstruct")


def _short(value: Any) -> str:
    """``repr`` of a value from a file, cut to fit in one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def warn_season_cut_short(
    name: str, learnt: bool | None, observed: int, steps: int, *, crop_types: bool = False
) -> None:
    """Warn where a model trained on full seasons alone (``learnt`` False, from
    :meth:`CheckpointMetadata.learnt_early_seasons`) is asked for a map from fewer composites
    than it was trained with, naming a way to an early model of its kind."""
    if learnt is False and observed < steps:
        way = (
            "fine-tune it on chronological batches (--ordering chronological)"
            if crop_types
            else "use a model trained on chronological batches, such as the shipped "
            "europe-maize-early"
        )
        warnings.warn(
            f"{name} was trained on full seasons only, so the first {observed} of {steps} "
            "composites with the rest zero-padded are an input it never learnt (date_dropout "
            "zeroes composites at random, seldom a season's whole tail), and its map may be "
            f"empty; for in-season maps {way} "
            "(a forest on the series alone: fitted without --no-early-season), and score each "
            "t with evaluate --timesteps all",
            stacklevel=3,
        )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: nn.Module, metadata: CheckpointMetadata) -> Path:
    """Write ``model``'s state_dict and ``metadata`` to one safetensors file, atomically."""
    metadata = CheckpointMetadata.model_validate(metadata.model_dump())
    # Clones: safetensors refuses tensors sharing memory (tied weights, views).
    tensors = {
        name: tensor.detach().to("cpu").clone().contiguous()
        for name, tensor in model.state_dict().items()
    }
    if bad := _not_finite(tensors):  # it would be refused at load: say so where it arises
        raise CheckpointError(
            f"weights hold NaN or infinite values ({bad}), so the model was not written: a "
            "training run whose loss diverged needs a lower learning rate (lr) or inputs "
            "checked for NaN",
            path,
        )
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: metadata.to_json(), "format": "pt"})
    return Path(path)


def _check_header(path: Path) -> None:
    """Refuse anything that is not a safetensors file, reading only its first bytes."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) == 8:
                (length,) = struct.unpack("<Q", head)
                header = handle.read(length) if 1 < length <= min(size - 8, _MAX_HEADER) else b""
            else:
                header = b""
    except FileNotFoundError:
        raise CheckpointError("checkpoint not found", path) from None
    except IsADirectoryError:
        raise CheckpointError("is a directory, expected a .safetensors file", path) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint: {exc.strerror}", path) from None
    try:
        if isinstance(json.loads(header), dict):
            return
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        pass
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            "pickle-based PyTorch file (torch.save/Lightning .ckpt) refused: sarcrop only loads "
            ".safetensors checkpoints and never unpickles",
            path,
        )
    raise CheckpointError("not a safetensors checkpoint", path)


def read_metadata(path: str | Path) -> CheckpointMetadata:
    """The :class:`CheckpointMetadata` of a checkpoint, without reading its tensors."""
    path = Path(path)
    _check_header(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"unreadable safetensors file: {_one_line(exc)}", path) from None
    if raw is None:
        raise CheckpointError("safetensors file without sarcrop metadata", path)
    try:
        return CheckpointMetadata.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        # A check of the whole document names its fields itself.
        problem = str(error["msg"]).removeprefix("Value error, ")
        problem = f"{where}: {problem}" if where else problem
        raise CheckpointError(f"invalid sarcrop metadata: {problem}", path) from None


def require_network(metadata: CheckpointMetadata, path: str | Path, use: str) -> None:
    """Refuse a forest's checkpoint where a network's layers are needed (``use``: what for)."""
    if metadata.architecture in FORESTS:
        raise CheckpointError(
            f"a Random Forest (sarcrop baseline --save) has no network layers to {use}; it "
            "maps with predict and is scored with evaluate",
            path,
        )


def default_builder(metadata: CheckpointMetadata) -> nn.Module:
    """Rebuild the architecture a checkpoint names with sarcrop's model registry (or the
    forest of ``sarcrop baseline --save``)."""
    from sarcrop.models import build_model

    options = {k: v for k, v in metadata.options.items() if k != "out_channels"}
    if metadata.architecture == TreeEnsemble.name:
        return TreeEnsemble(len(metadata.bands), metadata.time_steps, **options)
    if metadata.architecture == FeatureTreeEnsemble.name:
        network, trees = dict(options.pop("network")), dict(options.pop("trees"))
        trees.pop("out_channels", None)
        return FeatureTreeEnsemble(
            build_model(network.pop("name"), **network), TreeEnsemble(**trees), **options
        )
    return build_model(
        metadata.architecture, len(metadata.bands), metadata.time_steps, **metadata.options
    )


def load_checkpoint(
    path: str | Path,
    *,
    builder: Callable[[CheckpointMetadata], nn.Module] | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, CheckpointMetadata]:
    """Rebuild the model of a checkpoint and load its weights; the model is in eval mode.

    ``builder`` turns metadata into an (untrained) model; the default uses
    :func:`sarcrop.models.build_model`.
    """
    path = Path(path)
    metadata = read_metadata(path)
    try:
        model = (builder or default_builder)(metadata)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"cannot rebuild architecture {metadata.architecture!r}: {_one_line(exc)}", path
        ) from None
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"unreadable tensors: {_one_line(exc)}", path) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = _one_line(exc).split(". ")[0][:300]
        problem = f"weights do not fit {metadata.architecture}: {first}"
        raise CheckpointError(problem, path) from None
    # A NaN weight gives NaN logits, which the CPU's fused convolution + ReLU turns into 0s:
    # a map of nothing, with no sign why.
    if bad := _not_finite(state):
        raise CheckpointError(f"weights hold NaN or infinite values: {bad}", path)
    return model.eval(), metadata


def _not_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or an infinity, else None."""
    return next(
        (
            name
            for name, tensor in tensors.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ),
        None,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
