"""Typed, validated experiment configuration (YAML).

Unknown keys, wrong types and missing files fail before any work starts, with a one-line
message naming the config file and the offending key. Relative paths resolve against the
config file's folder; values are data only (nothing in a config is ever executed).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sarcrop.errors import ConfigError
from sarcrop.options import (
    BaselineOptions,
    CompositeOptions,
    LabelOptions,
    SceneOptions,
    SplitOptions,
    TilingOptions,
)
from sarcrop.training.config import Ordering, TrainConfig
from sarcrop.utils.validation import config_error

METHOD_PATTERN = re.compile(r"^(rf|ri|ft|fte|ftd)(-last-(\d+))?$")
BASE_METHODS = ("rf", "ri", "ft", "fte", "ftd")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatedRegion(_Strict):
    """A region produced by the simulator (``sarcrop simulate``)."""

    preset: str
    year: int | None = None
    seed: int = 0
    size: tuple[int, int] | None = None
    revisit_days: int | None = Field(None, ge=1)


class RegionData(_Strict):
    """Where a region's data comes from: the simulator, real scenes + labels, or a store.

    How it is prepared nests the option groups of :func:`sarcrop.data.prepare.prepare` under
    the same names (``label_options``, ``scenes``, ``composite``, ``tiling``, ``split``).
    ``timesteps`` and ``days`` default to 8 × 20 days, or to a simulated region's season.
    """

    simulate: SimulatedRegion | None = None
    images: str | None = None
    labels: Path | None = None
    label_options: LabelOptions = LabelOptions()
    store: Path | None = None
    season_start: dt.date | None = None
    timesteps: int | None = Field(None, ge=1)
    days: int | None = Field(None, ge=1)
    bands: tuple[str, ...] = ("VH", "VV")
    scenes: SceneOptions = SceneOptions()
    composite: CompositeOptions = CompositeOptions()
    tiling: TilingOptions = TilingOptions()
    split: SplitOptions = SplitOptions()

    @model_validator(mode="after")
    def _one_source(self) -> RegionData:
        given = [name for name in ("simulate", "images", "store") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of simulate, images or store")
        if self.images and (self.labels is None or self.season_start is None):
            raise ValueError("images need labels and season_start")
        return self


class PretrainSpec(_Strict):
    """Pre-training on the source region (paper: rice in South Korea, VH only)."""

    region: str | None = None
    crop: str = "rice"
    bands: tuple[str, ...] = ("VH",)
    model: str = "recurrent_unet"
    model_options: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    checkpoint: Path | None = None

    @model_validator(mode="after")
    def _source(self) -> PretrainSpec:
        if (self.region is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of region (to pre-train) or checkpoint")
        return self


class ScenarioSpec(_Strict):
    """Fine-tune in ``finetune``, test in ``test``, for ``crop`` with ``bands``."""

    finetune: str
    test: str
    crop: str
    bands: tuple[str, ...] = ("VH",)

    @property
    def id(self) -> str:
        bands = "".join(b.lower() for b in self.bands)
        return f"{self.finetune}-{self.test}-{self.crop}-{bands}"

    @property
    def band_label(self) -> str:
        return "|".join(self.bands)


class EarlySeasonSpec(_Strict):
    """Early-season curve: metric vs t for chronological vs random batch order."""

    scenario: int = Field(0, ge=0, description="index into scenarios")
    method: str = "fte"
    orderings: tuple[Ordering, ...] = ("chronological", "random")


class ExperimentConfig(_Strict):
    """The whole experiment: regions, pre-training, scenarios, methods, seeds."""

    name: str
    regions: dict[str, RegionData]
    pretrain: PretrainSpec
    finetune: TrainConfig = TrainConfig()
    scenarios: tuple[ScenarioSpec, ...]
    methods: tuple[str, ...] = ("rf", "ri", "ft", "fte")
    # The Random Forest's settings: the flags of ``sarcrop baseline``, same names and defaults.
    baseline: BaselineOptions = BaselineOptions()
    early_season: EarlySeasonSpec | None = None
    # Runs per method; run i uses seed ``finetune.seed + i`` (networks), ``baseline.seed + i``.
    seeds: int = Field(1, ge=1)
    figure_patches: int = Field(3, ge=0)

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        for method in methods:
            if not METHOD_PATTERN.match(method):
                raise ValueError(
                    f"unknown method {method!r}: use rf, ri, ft, fte, ftd or ftd-last-K"
                )
        return methods

    @model_validator(mode="after")
    def _references(self) -> ExperimentConfig:
        names = set(self.regions)
        used = {s.finetune for s in self.scenarios} | {s.test for s in self.scenarios}
        if self.pretrain.region:
            used.add(self.pretrain.region)
        missing = sorted(used - names)
        if missing:
            raise ValueError(f"regions not defined: {', '.join(missing)}")
        if self.early_season and self.early_season.scenario >= len(self.scenarios):
            raise ValueError("early_season.scenario is not a scenario index")
        if self.early_season and not METHOD_PATTERN.match(self.early_season.method):
            raise ValueError(f"unknown early-season method {self.early_season.method!r}")
        return self


def parse_method(method: str) -> tuple[str, int | None]:
    """``"ftd-last-2"`` → ``("ftd", 2)``; ``"fte"`` → ``("fte", None)``."""
    match = METHOD_PATTERN.match(method)
    if not match:
        raise ConfigError(f"unknown method {method!r}")
    return match.group(1), int(match.group(3)) if match.group(3) else None


def _resolve(value: Any, base: Path, key: str) -> Any:
    if key in {"labels", "store", "checkpoint"} and isinstance(value, str):
        return str((base / value).resolve())
    if key == "images" and isinstance(value, str) and not re.match(r"^[a-z]+://", value):
        return str(base / value)
    return value


def _resolve_paths(data: Any, base: Path, key: str = "") -> Any:
    """Make relative paths in path-valued keys relative to the config file's folder."""
    if isinstance(data, dict):
        return {k: _resolve_paths(v, base, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve_paths(v, base, key) for v in data]
    return _resolve(data, base, key)


def _check_files(config: ExperimentConfig, path: Path) -> None:
    for name, region in config.regions.items():
        for key in ("labels", "store"):
            value = getattr(region, key)
            if value is not None and not Path(value).exists():
                raise ConfigError(f"regions.{name}.{key}: file not found: {value}", path)
    if config.pretrain.checkpoint and not config.pretrain.checkpoint.is_file():
        raise ConfigError(
            f"pretrain.checkpoint: file not found: {config.pretrain.checkpoint}", path
        )


def experiment_config_from_dict(data: dict[str, Any], path: Path | None = None) -> ExperimentConfig:
    """Validate a mapping (already path-resolved) into an :class:`ExperimentConfig`."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, path) from None


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("experiment config not found", path) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"not a readable YAML file: {' '.join(str(exc).split())}", path) from None
    if not isinstance(data, dict):
        raise ConfigError("an experiment config must be a mapping", path)
    config = experiment_config_from_dict(_resolve_paths(data, path.resolve().parent), path)
    _check_files(config, path)
    return config
