"""Typed, validated experiment configuration (YAML).

Unknown keys, wrong types and missing files fail before any work starts, with a one-line
message naming the config file and the offending key. Relative paths resolve against the
config file's folder; values are data only (nothing in a config is ever executed).

A config that ships without its data (``real.yaml``) names a ``data_root``: region images and
labels are then relative to that folder (itself relative to the working directory, and
replaced by ``sarcrop experiment --data``), and where the folder or a file is absent loading
raises :class:`DataNotFound`, which the command reports as a skip rather than an error for a
shipped config (a user's own config names its data on purpose: a wrong path is an error).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import glob
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sarcrop.data.labels import class_key
from sarcrop.data.scenes import OTHER_URL, has_scheme, is_url
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.evaluation.bootstrap import MIOU, check_compared
from sarcrop.options import (
    BaselineOptions,
    CompositeOptions,
    LabelOptions,
    SceneOptions,
    SplitOptions,
    TilingOptions,
    class_list,
    overlap_problem,
)
from sarcrop.training.config import Ordering, TrainConfig, validate_config
from sarcrop.utils.validation import config_error, did_you_mean, read_yaml

METHOD_PATTERN = re.compile(
    r"^(rf-features|rf|ri|ft|fte|ftd|probe|bias|zero-shot)(-last-(\d+))?(\+([A-Za-z0-9_.]+))?$"
)
"""A method id: a strategy, ``-last-K`` for FTD's last K blocks, ``+name`` for a variant."""
ZERO_SHOT = "zero-shot"
"""The pre-trained model applied to the target as it is: no labels, no training."""
BIAS = "bias"
"""The pre-trained model as it is, its threshold chosen on the target's labels."""
DEFAULT_PRETRAIN = "default"
"""The name of the single ``pretrain:`` section among the named ``pretrains:``."""
REGION_PATH_KEYS = ("images", "labels", "store")


class DataNotFound(ConfigError):
    """The data a config names under its ``data_root`` is absent (skip, not fail)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _changed_fields(spec: BaseModel) -> list[str]:
    """The fields of ``spec`` that its config gives, and gives other than their defaults."""
    fields = type(spec).model_fields
    return [
        name
        for name in fields
        if name in spec.model_fields_set
        and getattr(spec, name) != fields[name].get_default(call_default_factory=True)
    ]


class SimulationSpec(_Strict):
    """A region produced by the simulator (``sarcrop simulate``); fields are its arguments."""

    preset: str
    year: int | None = Field(None, ge=1, le=9999)  # the calendar's years, as simulate_region
    seed: int = Field(0, ge=0)
    size: tuple[int, int] | None = None
    revisit_days: int | None = Field(None, ge=1)
    # Left out of the dump at their defaults, so cache keys of earlier runs stay valid.
    product_resolution: float | None = Field(
        None, gt=0, allow_inf_nan=False, exclude_if=lambda value: value is None
    )
    randomise: bool = Field(True, exclude_if=lambda value: value is True)
    swath_edge: bool = Field(True, exclude_if=lambda value: value is True)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        """A misspelt preset is named before any region is simulated."""
        from sarcrop.data.simulate.regions import get_region

        try:
            get_region(preset)
        except SarcropError as exc:
            raise ValueError(exc.problem) from None
        return preset


class RegionData(_Strict):
    """Where a region's data comes from: the simulator, real scenes + labels, a store, or a
    ``merge`` of other regions' stores (several locations in one, each patch keeping its split).

    How it is prepared nests the option groups of :func:`sarcrop.data.prepare.prepare` under
    the same names (``label_options``, ``scenes``, ``composite``, ``tiling``, ``split``,
    ``percentiles``; a merge takes ``percentiles`` too).
    ``timesteps`` and ``days`` default to 8 × 20 days, or to a simulated region's season.
    """

    simulate: SimulationSpec | None = None
    images: str | None = None
    labels: Path | None = None
    label_options: LabelOptions = LabelOptions()
    store: Path | None = None
    merge: tuple[str, ...] | None = Field(None, min_length=2)
    season_start: dt.date | None = None
    timesteps: int | None = Field(None, ge=1)
    days: int | None = Field(None, ge=1)
    bands: tuple[str, ...] = ("VH", "VV")
    scenes: SceneOptions = SceneOptions()
    composite: CompositeOptions = CompositeOptions()
    tiling: TilingOptions = TilingOptions()
    split: SplitOptions = SplitOptions()
    # What an unknown key of a region is said to be (prepare's --positive is a store's default
    # crop; an experiment maps each scenario's).
    misplaced_keys: ClassVar[dict[str, str]] = {
        "positive": "the crop is a scenario's (scenarios: [{crop: maize, ...}])"
    }
    percentiles: tuple[float, float] | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="robust normalisation of the store, e.g. [1, 99] (default: min/max)",
    )

    @field_validator("percentiles", mode="before")
    @classmethod
    def _percentiles(cls, value: Any) -> Any:
        from sarcrop.data.normalization import checked_percentiles

        try:
            return checked_percentiles(value)
        except ConfigError as exc:
            raise ValueError(exc.problem) from None

    @model_validator(mode="after")
    def _tiling_and_split(self) -> RegionData:
        if problem := overlap_problem(self.tiling, self.split):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _one_source(self) -> RegionData:
        given = [name for name in ("simulate", "images", "store", "merge") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of simulate, images, store or merge")
        if self.images and (self.labels is None or self.season_start is None):
            raise ValueError("images need labels and season_start")
        if self.simulate is not None and self.labels is not None:
            raise ValueError(
                "a simulated region draws its own labels, so labels would not apply; leave it "
                "out (labels go with images)"
            )
        self._check_prepared_source()
        return self

    def _check_prepared_source(self) -> None:
        """A ``merge`` takes its members' stores as they are (it renormalises them with
        ``percentiles``) and a ``store`` is read as it was prepared: how a region is prepared
        (split, bands, tiling, ...) does not apply to either, and is refused rather than
        ignored."""
        if self.merge:
            kept = {"merge", "percentiles"}
            kind = "a merge takes its members' patches as they were prepared"
            remedy = "give them to its members (a merge takes percentiles only)"
        elif self.store is not None:
            kept = {"store"}
            kind = "a store is read as it was prepared"
            remedy = "prepare the store with them (sarcrop prepare)"
        else:
            return
        ignored = [name for name in _changed_fields(self) if name not in kept]
        if ignored:
            raise ValueError(f"{kind}, so {', '.join(ignored)} would not apply; {remedy}")


class PretrainSpec(_Strict):
    """Pre-training on the source region (paper: rice in South Korea, VH only), or a
    pre-trained ``checkpoint``: a file, or the name of a shipped model (``europe-maize``),
    whose crop (a crop-type model's classes: ``train.classes``), bands and architecture are
    then read from it."""

    region: str | None = None
    crop: str = "rice"
    bands: tuple[str, ...] = ("VH",)
    model: str = "recurrent_unet"
    model_options: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    checkpoint: Path | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        """A misspelt architecture is named as the config is read, not after the regions are
        simulated and prepared."""
        from sarcrop.models.registry import model_options

        try:
            model_options(model)
        except SarcropError as exc:
            raise ValueError(exc.problem) from None
        return model

    @field_validator("model_options")
    @classmethod
    def _known_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Options the architecture does not have are named as the config is read (a
        checkpoint's are its own, read from it)."""
        from sarcrop.models.registry import model_options

        model = info.data.get("model")
        if model is None or info.data.get("region") is None:  # misspelt, or a checkpoint's
            return options
        valid = model_options(model)
        if unknown := sorted(set(options) - set(valid)):
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)} for model {model!r}; valid: "
                f"{', '.join(valid)}"
            )
        return options

    @model_validator(mode="after")
    def _source(self) -> PretrainSpec:
        if (self.region is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of region (to pre-train) or checkpoint")
        return self

    @property
    def positive(self) -> tuple[str, ...]:
        """What a pre-training by region learns against the rest: its crop, or nothing for a
        crop-type pre-training, which learns the classes of ``train.classes`` (where ``crop``
        keeps its default)."""
        return () if self.train.classes else (self.crop,)


class ScenarioSpec(_Strict):
    """Fine-tune in ``finetune``, test in ``test``, for ``crop`` with ``bands`` (in an
    experiment, by default the bands of the pre-training it starts from, as ``finetune``'s
    are the checkpoint's).

    ``pretrain`` names the pre-training its transfer methods start from (one of ``pretrains``);
    it may be left out where the config has a single pre-training. ``classes`` (instead of
    ``crop``, or the experiment's ``classes`` where the scenario names neither) makes it a
    crop-type scenario: every method maps those classes at once.

    ``folds: k`` scores every method on fields it never learnt from, in the region it learns
    from: the labelled parcels of ``finetune``'s train split are dealt into k folds (class by
    class in a crop-type scenario), each
    method trains once per fold without that fold's fields (at the run's label fraction of the
    others) and maps them, and the pooled maps are scored. ``test`` is then the same patches
    and labels as a test split (e.g. the region with ``split: {method: test}``), or the
    ``finetune`` region itself: its two views are then derived (:func:`derive_fold_views`).
    """

    finetune: str
    test: str
    crop: str = ""  # empty in a crop-type scenario
    classes: tuple[str, ...] | None = None
    bands: tuple[str, ...] = ("VH",)
    pretrain: str | None = None
    folds: int | None = Field(None, ge=2)

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, value: Any) -> Any:
        return class_list(value)

    @property
    def id(self) -> str:
        bands = "".join(b.lower() for b in self.bands)
        named = f"-from-{self.pretrain}" if self.pretrain else ""
        folds = f"-folds{self.folds}" if self.folds else ""
        return f"{self.finetune}-{self.test}-{self.crop or 'types'}-{bands}{named}{folds}"

    @property
    def band_label(self) -> str:
        return "|".join(self.bands)


class EarlySeasonSpec(_Strict):
    """Early-season curve: metric vs t for chronological vs random batch order, each a rerun of
    ``method`` on ``scenario`` with the run's largest label fraction (every label where the run
    has them), beside the forest given the same labels."""

    scenario: int = Field(0, ge=0, description="index into scenarios")
    method: str = "fte"
    orderings: tuple[Ordering, ...] = ("chronological", "random")


class FeatureForestSpec(_Strict):
    """The ``rf-features`` method: the forest (``baseline:``) on a frozen pre-trained network's
    per-pixel features; ``raw`` adds the pixel's own series (the forest baseline's features)."""

    raw: bool = True


def expand_draws(regions: Any) -> Any:
    """Regions whose ``simulate:`` asks for ``draws: n`` (n > 1) become n simulated regions
    ``<name>0 … <name>{n-1}`` with seeds ``seed … seed + n - 1`` and, under the region's own
    name, their ``merge``: pre-training on several draws of a domain-randomised preset sees
    several calendars, level sets and field layouts (docs/results.md measures it)."""
    if not isinstance(regions, dict):
        return regions
    expanded: dict[str, Any] = {}
    for name, region in regions.items():
        simulate = region.get("simulate") if isinstance(region, dict) else None
        if not isinstance(simulate, dict) or "draws" not in simulate:
            expanded[name] = region
            continue
        draws = simulate["draws"]
        if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
            raise ValueError(f"regions.{name}.simulate.draws must be an integer >= 1")
        single = {key: value for key, value in simulate.items() if key != "draws"}
        if draws == 1:
            expanded[name] = {**region, "simulate": single}
            continue
        first = single.get("seed", 0)
        if not isinstance(first, int) or isinstance(first, bool):
            raise ValueError(f"regions.{name}.simulate.seed must be an integer")
        members = [f"{name}{i}" for i in range(draws)]
        for i, member in enumerate(members):
            if member in regions or member in expanded:
                raise ValueError(f"regions.{name}: draw {member} would replace a region")
            expanded[member] = {**region, "simulate": {**single, "seed": first + i}}
        merged = {"merge": members}
        if region.get("percentiles") is not None:  # the merge normalises as each draw does
            merged["percentiles"] = region["percentiles"]
        expanded[name] = merged
    return expanded


# The two views of a region that a ``folds`` scenario learns from and scores, derived where
# the scenario fine-tunes and tests on the same region (`derive_fold_views`).
FOLD_VIEWS = {"all": "train", "scored": "test"}


def with_pretrain_bands(data: Any) -> Any:
    """A scenario that names no ``bands`` reads those of the pre-training it starts from
    (``VH`` for a simulated pre-training left at its default; a checkpoint's own, e.g. VH|VV
    for ``europe-maize``), as ``sarcrop finetune`` reads the checkpoint's."""
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list | tuple):
        return data
    single = {DEFAULT_PRETRAIN: data["pretrain"]} if data.get("pretrain") is not None else {}
    named = data.get("pretrains")  # not a mapping: said by its own validation
    pretrainings = {**single, **(named if isinstance(named, dict) else {})}

    def bands_of(name: Any) -> Any:
        spec = pretrainings.get(name or next(iter(pretrainings), None))
        given = spec.bands if isinstance(spec, PretrainSpec) else None
        if isinstance(spec, dict):
            given = spec.get("bands")
        return PretrainSpec.model_fields["bands"].default if given is None else tuple(given)

    scenarios = []
    for scenario in data["scenarios"]:
        if isinstance(scenario, dict) and scenario.get("bands") is None:
            scenario = {**scenario, "bands": bands_of(scenario.get("pretrain"))}
        elif isinstance(scenario, ScenarioSpec) and "bands" not in scenario.model_fields_set:
            scenario = scenario.model_copy(update={"bands": bands_of(scenario.pretrain)})
        scenarios.append(scenario)
    return {**data, "scenarios": scenarios}


def derive_fold_views(data: Any) -> Any:
    """A ``folds`` scenario whose ``finetune`` and ``test`` are the same region learns from
    every patch of it and scores those patches: add the region's two views, ``<name>-all``
    (``split: {method: train}``) and ``<name>-scored`` (``split: {method: test}``), and point
    the scenario at them, so a user writes the region once. A region of several (``merge``,
    ``draws``) or a prepared ``store`` cannot be split so, and is refused: its views are
    written by hand."""
    if not isinstance(data, dict) or not isinstance(data.get("regions"), dict):
        return data
    regions = dict(data["regions"])
    scenarios = list(data.get("scenarios") or ())
    for index, scenario in enumerate(scenarios):
        spec = scenario.model_dump() if isinstance(scenario, BaseModel) else scenario
        if not isinstance(spec, dict):  # left to the scenario's own validation
            continue
        name = spec.get("finetune")
        if not spec.get("folds") or name != spec.get("test") or name not in regions:
            continue
        region = regions[name]
        if not isinstance(region, dict | RegionData):  # said by the region's own validation
            continue
        if (kind := _fixed_split(region)) is not None:
            raise ValueError(
                f"scenarios[{index}]: folds over {name}, {kind}, need its two views written "
                f"out: a train split to learn from, the same patches as a test split to score "
                f"(docs/real-data.md)"
            )
        for view, method in FOLD_VIEWS.items():
            derived, made = f"{name}-{view}", _with_split(region, method)
            if derived in regions and regions[derived] != made:
                raise ValueError(
                    f"scenarios[{index}]: folds over {name} derive region {derived}, which "
                    f"the config defines otherwise; rename it"
                )
            regions[derived] = made
        change = {"finetune": f"{name}-all", "test": f"{name}-scored"}
        scenarios[index] = (
            {**scenario, **change}
            if isinstance(scenario, dict)
            else scenario.model_copy(update=change)
        )
    return {**data, "regions": regions, "scenarios": scenarios}


def _fixed_split(region: Any) -> str | None:
    """What keeps ``region`` (raw or validated) from taking a split of its own, if anything:
    a merge of regions or of simulated draws (its members' splits), or a prepared store."""
    if isinstance(region, RegionData):
        region = region.model_dump(exclude_defaults=True)
    if not isinstance(region, dict):
        return None
    simulate = region.get("simulate")
    draws = simulate.get("draws", 1) if isinstance(simulate, dict) else 1
    if region.get("merge") or draws != 1:
        return "a region of several"
    if region.get("store"):
        return "a prepared store (its split is its own)"
    return None


def _with_split(region: Any, method: str) -> Any:
    """``region`` (raw or validated) with all its patches in one split (the split's seed and
    shares mean nothing there, and are dropped as a YAML ``split: {method: ...}`` would)."""
    if isinstance(region, RegionData):
        return region.model_copy(update={"split": SplitOptions.model_validate({"method": method})})
    return {**region, "split": {"method": method}}


class ComparisonSpec(_Strict):
    """A paired comparison the run writes to ``comparisons.csv``: method ``a`` at ``fraction``
    of the labels in the ``scenarios`` (shell-style patterns of their ids; none: every scenario
    of the metric's kind) minus ``b`` at ``b_fraction`` (``fraction``), in the same scenarios or
    in those of ``b_scenarios`` scored on the same test splits, pooled with each scenario
    weighing the same; by ``metric`` (of the crop in one-crop scenarios, ``miou`` in crop-type
    ones); at the full season, or from the first ``timesteps`` composites (a number, or
    ``all``; needs ``timestep_table``). The options of ``sarcrop compare``, same names and
    defaults."""

    a: str
    b: str
    fraction: float = Field(1.0, gt=0, le=1)
    b_fraction: float | None = Field(None, gt=0, le=1)
    scenarios: tuple[str, ...] = ()
    b_scenarios: tuple[str, ...] = ()
    metric: str = "iou"
    timesteps: int | Literal["all"] | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        check_compared(metric)  # an EvaluationInputError is a ValueError
        return metric

    @field_validator("a", "b")
    @classmethod
    def _method_id(cls, method: str) -> str:
        return method_id(method)  # as `sarcrop compare` reads it


class ExperimentConfig(_Strict):
    """The whole experiment: regions, pre-trainings, scenarios, methods, seeds, label fractions.

    ``pretrain`` is a single pre-training (named ``default``); ``pretrains`` names several,
    and each scenario says which one it starts from. ``fractions`` are the shares of the
    fine-tuning region's labelled train parcels each method is fine-tuned (or fitted) with.
    """

    name: str
    data_root: Path | None = None
    regions: dict[str, RegionData]
    pretrain: PretrainSpec | None = None
    pretrains: dict[str, PretrainSpec] = Field(default_factory=dict)
    finetune: TrainConfig = TrainConfig()
    scenarios: tuple[ScenarioSpec, ...]
    methods: tuple[str, ...] = ("rf", "ri", "ft", "fte")
    # Named changes to ``finetune:`` that a network method takes with ``+name``: with
    # ``variants: {dd: {date_dropout: 0.25}}``, method ``ftd+dd`` is FTD trained with
    # ``finetune:`` and ``date_dropout: 0.25``, beside plain ``ftd`` in the same run.
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The Random Forest's settings: the flags of ``sarcrop baseline``, same names and defaults.
    baseline: BaselineOptions = BaselineOptions()
    feature_forest: FeatureForestSpec = FeatureForestSpec()
    early_season: EarlySeasonSpec | None = None
    # Crop types: the classes of every scenario that names neither crop nor classes.
    classes: tuple[str, ...] | None = None
    # Runs per method; run i uses seed ``finetune.seed + i`` (networks), ``baseline.seed + i``.
    seeds: int = Field(1, ge=1)
    fractions: tuple[float, ...] = Field((1.0,), min_length=1)
    # Fine-tuning budget below 100 % of the labels: "epochs" trains finetune.epochs at every
    # fraction (fewer labelled patches, so fewer optimizer steps); "steps" scales the epochs so
    # that every fraction takes the optimizer steps of the full-label run.
    epoch_budget: Literal["epochs", "steps"] = "epochs"
    figure_patches: int = Field(3, ge=0)
    # tables.md and the report add each method's IoU at every number of observed composites t
    # (the later ones zero-padded): the early-season maps, where the other tables show t = T.
    timestep_table: bool = False
    # Torch threads while the experiment runs (None: torch's default). Small models on small
    # patches run faster on one thread than on several competing for busy cores.
    threads: int | None = Field(None, ge=1)
    # Worker processes that train and fit the method units side by side (each with ``threads``
    # torch threads, by default the available cores shared among them); 1 runs them one after
    # another. Results are the same either way where ``threads`` is set; left unset, the
    # workers' thread count is not a sequential run's, and probabilities can differ in their
    # last digit (docs/architecture.md).
    jobs: int = Field(1, ge=1)
    # Paired comparisons beyond intervals.csv's (A − B pooled over scenarios): comparisons.csv,
    # tables.md and the report.
    comparisons: tuple[ComparisonSpec, ...] = ()

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, value: Any) -> Any:
        return class_list(value)

    @model_validator(mode="before")
    @classmethod
    def _fold_views(cls, data: Any) -> Any:
        return with_pretrain_bands(derive_fold_views(data))

    @field_validator("regions", mode="before")
    @classmethod
    def _draws(cls, regions: Any) -> Any:
        return expand_draws(regions)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, fractions: tuple[float, ...]) -> tuple[float, ...]:
        if not all(0 < f <= 1 for f in fractions):
            raise ValueError("label fractions must be in (0, 1]")
        return tuple(sorted(set(fractions)))

    @property
    def pretrainings(self) -> dict[str, PretrainSpec]:
        """Every pre-training by name (the single ``pretrain:`` is ``default``)."""
        single = {DEFAULT_PRETRAIN: self.pretrain} if self.pretrain is not None else {}
        return {**single, **self.pretrains}

    def pretrain_of(self, scenario: ScenarioSpec) -> tuple[str, PretrainSpec]:
        """The name and spec of the pre-training ``scenario`` starts from."""
        name = scenario.pretrain or next(iter(self.pretrainings))
        return name, self.pretrainings[name]

    def classes_of(self, scenario: ScenarioSpec) -> tuple[str, ...] | None:
        """The classes of a crop-type scenario (its own, else the experiment's unless it names
        a crop); ``None`` for a binary (one crop against the rest) scenario."""
        if scenario.classes is not None or scenario.crop:
            return scenario.classes
        return self.classes

    def members(self, region: str) -> list[str]:
        """The regions a region is made of: its ``merge`` members' members, or itself."""
        merged = self.regions[region].merge
        return [m for name in merged for m in self.members(name)] if merged else [region]

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        if repeated := sorted({m for m in methods if methods.count(m) > 1}):
            raise ValueError(
                f"{', '.join(repeated)} listed more than once: each method runs once per seed"
            )
        for method in methods:
            if not METHOD_PATTERN.match(method):
                raise ValueError(
                    f"unknown method {method!r}: use rf, ri, ft, fte, ftd, ftd-last-K, probe, "
                    "bias, rf-features or zero-shot, and +name for one of variants"
                )
        return methods

    def finetune_of(self, method: str) -> TrainConfig:
        """The fine-tuning settings of ``method``: ``finetune:``, changed by its variant."""
        variant = variant_of(method)
        if variant is None:
            return self.finetune
        return _variant_config(self.finetune, variant, self.variants[variant])

    def training_of(self, method: str) -> TrainConfig:
        """The settings ``method`` trains with: :meth:`finetune_of`, where ``interpolation``
        (and its search) mixes in the pre-trained start, ``distillation`` learns from it and
        ``parent_classes`` and ``fresh_head`` say how its head carries over, which RI and the
        probe's new head do not have (they train as at 1, 0, none and false); ``bias`` trains
        no weights to mix or distil, and keeps the pre-trained head."""
        base = self.finetune_of(method)
        strategy = parse_method(method)[0]
        if strategy not in ("ri", "probe", BIAS):
            return base
        # not ``updated``, which leaves a None (no search) out
        without_start: dict[str, Any] = {
            "interpolation": 1.0,
            "interpolation_search": None,
            "distillation": 0.0,
        }
        if strategy != BIAS:
            without_start |= {"parent_classes": None, "fresh_head": False}
        return validate_config({**base.model_dump(), **without_start})

    @model_validator(mode="after")
    def _references(self) -> ExperimentConfig:
        self._check_region_names()
        self._check_merges()
        self._check_pretrainings()
        self._check_last_k()
        self._check_season_lengths()
        self._check_classes()
        self._check_zero_shot()
        self._check_folds()
        if self.early_season and not METHOD_PATTERN.match(self.early_season.method):
            raise ValueError(f"unknown early-season method {self.early_season.method!r}")
        if self.early_season and not trains(self.early_season.method):
            raise ValueError(
                f"early_season.method: {self.early_season.method} trains no network, so it has "
                "no batch order to compare; name a fine-tuning (fte, ftd, ...) or RI"
            )
        self._check_run_settings()
        self._check_variants()
        self._check_label_seeds()
        self._check_simulated_crops()
        self._check_parent_classes()
        self._check_start_settings()
        self._check_comparisons()
        ids = [s.id for s in self.scenarios]
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"scenarios repeat: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}"
            )
        if self.early_season and self.early_season.scenario >= len(self.scenarios):
            raise ValueError("early_season.scenario is not a scenario index")
        self._check_crop_type_curve()
        return self

    def _check_run_settings(self) -> None:
        """The share of labels and the classes a run learns are the experiment's: each run
        takes one of ``fractions`` and its scenario's crop or classes. Given in ``finetune:``,
        a variant or ``baseline:``, they held at a fraction of 1 and were replaced at the
        others, and a forest of classes on a one-crop scenario could not be scored."""
        sections: dict[str, TrainConfig | BaselineOptions] = {
            "finetune": self.finetune,
            **{
                f"variants.{name}": _variant_config(self.finetune, name, changes)
                for name, changes in self.variants.items()
            },
            "baseline": self.baseline,
        }
        for where, settings in sections.items():
            if settings.label_fraction != 1:
                raise ValueError(
                    f"{where}.label_fraction: each run learns from a share of the labels in "
                    f"fractions: (e.g. fractions: [{settings.label_fraction:g}, 1]); leave it out"
                )
            if settings.classes is not None:
                raise ValueError(
                    f"{where}.classes: each run maps its scenario's crop or classes (classes: "
                    "in a scenario, or at the top of the config); leave it out"
                )

    def _check_crop_type_curve(self) -> None:
        """A crop-type scenario's early-season curve is drawn from its main runs (every
        method's mIoU against t): a ``method`` or ``orderings`` of its own would be ignored."""
        early = self.early_season
        if early is None or self.classes_of(self.scenarios[early.scenario]) is None:
            return
        given = [name for name in _changed_fields(early) if name in ("method", "orderings")]
        if given:
            raise ValueError(
                f"early_season.{given[0]}: scenario {early.scenario} maps crop types, whose "
                "early-season curve is every method's main run scored at each t; leave "
                f"{' and '.join(given)} out"
            )

    def _check_region_names(self) -> None:
        """Every region a scenario, pre-training or merge names is defined: the first that is
        not is named with its key and the region meant."""
        uses = [
            (f"scenarios[{i}].{role}", getattr(s, role))
            for i, s in enumerate(self.scenarios)
            for role in ("finetune", "test")
        ]
        uses += [
            (
                "pretrain.region" if name == DEFAULT_PRETRAIN else f"pretrains.{name}.region",
                spec.region,
            )
            for name, spec in self.pretrainings.items()
        ]
        uses += [
            (f"regions.{name}.merge", member)
            for name, region in self.regions.items()
            for member in region.merge or ()
        ]
        for where, name in uses:
            if name and name not in self.regions:
                hint = did_you_mean(name, list(self.regions))
                raise ValueError(
                    f"{where}: no region {name!r}{'; ' + hint if hint else ''} (regions: "
                    f"{', '.join(self.regions)})"
                )

    def every_method(self) -> list[str]:
        """``methods`` and the early-season curve's method: every method the run trains (a
        crop-type scenario's curve is drawn from its main runs)."""
        early = self.early_season
        reruns = (
            early is not None
            and early.scenario < len(self.scenarios)
            and self.classes_of(self.scenarios[early.scenario]) is None
        )
        return [*self.methods, *([early.method] if early is not None and reruns else [])]

    def _check_variants(self) -> None:
        """A ``+name`` method names one of ``variants`` and trains a network; each variant's
        settings make a valid ``finetune:`` (checked before any work)."""
        for name, changes in self.variants.items():
            _variant_config(self.finetune, name, changes)
        for method in self.every_method():
            variant = variant_of(method)
            if variant is not None and variant not in self.variants:
                have = ", ".join(self.variants) or "none"
                raise ValueError(f"method {method}: no variant {variant!r} (variants: {have})")
            if variant is not None and not trains(method):
                raise ValueError(
                    f"method {method}: a variant changes fine-tuning settings, and "
                    f"{parse_method(method)[0]} trains no network"
                )
            if parse_method(method)[0] == BIAS and (
                unused := self.training_of(method).unused_by_bias()
            ):
                where = f"variants.{variant}" if variant else "finetune"
                raise ValueError(
                    f"method {method}: bias chooses a threshold and trains no weights, so "
                    f"{', '.join(unused)} ({where}) cannot apply"
                )

    def _check_label_seeds(self) -> None:
        """Below every label, a run's parcels are chosen by its seed: every method that learns
        from them must have the same seed, or the forest and the networks would be compared
        on other parcels."""
        if min(self.fractions) >= 1:
            return
        seeds: dict[str, int] = {}
        for method in self.every_method():
            if is_forest(method):
                seeds.setdefault("baseline.seed", self.baseline.seed)
            elif method != ZERO_SHOT:
                where = f"variants.{variant_of(method)}" if variant_of(method) else "finetune"
                seeds.setdefault(f"{where}.seed", self.training_of(method).seed)
        if len(set(seeds.values())) > 1:
            given = ", ".join(f"{where} {seed}" for where, seed in seeds.items())
            raise ValueError(
                f"{given}: with fractions below 1 each run's parcels are chosen by its seed, so "
                "the methods would learn from other parcels; give them one seed"
            )

    def _check_simulated_crops(self) -> None:
        """A scenario's crop (or classes) on a simulated region is one of the simulator's
        classes: a misspelt name is refused before minutes of simulating and preparing."""
        from sarcrop.data.labels import class_lookup, positive_indices
        from sarcrop.data.simulate.phenology import CLASSES
        from sarcrop.errors import InputDataError

        for i, scenario in enumerate(self.scenarios):
            regions = (self.regions[scenario.finetune], self.regions[scenario.test])
            if not any(region.simulate for region in regions):
                continue
            classes = self.classes_of(scenario)
            try:
                if classes is not None:
                    class_lookup(CLASSES, classes)
                else:
                    positive_indices(CLASSES, scenario.crop)
            except InputDataError as exc:
                key = "classes" if classes is not None else "crop"
                raise ValueError(f"scenarios[{i}].{key}: {exc.problem}") from None

    def _check_merges(self) -> None:
        def visit(name: str, path: tuple[str, ...]) -> None:
            for member in self.regions[name].merge or ():
                if member in path:
                    raise ValueError(f"regions.{name}.merge: {member} merges itself")
                visit(member, (*path, member))

        for name in self.regions:
            visit(name, (name,))

    def _check_classes(self) -> None:
        """Each scenario maps one crop or several classes (crop types), never both."""
        for index, scenario in enumerate(self.scenarios):
            if scenario.crop and scenario.classes is not None:
                raise ValueError(f"scenarios[{index}]: give crop or classes, not both")
            if self.classes_of(scenario) is None and not scenario.crop:
                raise ValueError(f"scenarios[{index}]: give crop (one class) or classes")

    def _check_folds(self) -> None:
        """Held-out fields (``folds``): no early-season curve on such a scenario."""
        for index, scenario in enumerate(self.scenarios):
            if scenario.folds is None:
                continue
            if self.early_season is not None and self.early_season.scenario == index:
                raise ValueError(
                    f"early_season.scenario {index} scores held-out folds; pick another scenario"
                )

    def _fine_tunings(self) -> dict[str, TrainConfig]:
        """Where each set of fine-tuning settings is written → the settings: ``finetune`` and
        every variant a method names."""
        used = sorted({v for m in self.every_method() if (v := variant_of(m)) is not None})
        variants = {
            f"variants.{v}": _variant_config(self.finetune, v, self.variants[v]) for v in used
        }
        return {"finetune": self.finetune, **variants}

    def _check_start_settings(self) -> None:
        """``interpolation`` (and its search) mixes in the pre-trained head and
        ``distillation`` learns from its predictions: refused before any work where a
        scenario's classes would give its fine-tuning a new head (a worker would refuse it
        mid-run). A checkpoint's classes are checked when it is read."""
        for where, settings in self._fine_tunings().items():
            asked = {
                "interpolation_search": settings.interpolation_search is not None,
                "interpolation": settings.interpolation < 1,
                "distillation": settings.distillation > 0,
            }
            setting = next((name for name, on in asked.items() if on), None)
            if setting is None:
                continue
            for index, scenario in enumerate(self.scenarios):
                name, spec = self.pretrain_of(scenario)
                classes = self.classes_of(scenario)
                if spec.checkpoint is not None or self._head_carries(scenario, settings):
                    continue
                raise ValueError(
                    f"scenarios[{index}] maps "
                    f"{', '.join(classes) if classes else scenario.crop}, pretrain {name} "
                    f"{', '.join(spec.train.classes or spec.positive)}: its fine-tuning trains "
                    f"a new head, and {where}.{setting} needs the pre-trained one; leave it "
                    "out, pre-train on these classes or name ours in its terms "
                    "(finetune: parent_classes)"
                )

    def _head_carries(self, scenario: ScenarioSpec, settings: TrainConfig) -> bool:
        """Whether the pre-trained head maps the classes of ``scenario`` and no others (by
        name or by ``settings.parent_classes``), or is a crop-type head that knows its one
        crop, so that fine-tuning with ``settings`` carries it over."""
        from sarcrop.training.strategies import head_rows, keeps_head, parent_class, parent_names

        classes = self.classes_of(scenario)
        known = self.pretrain_of(scenario)[1].train.classes
        names = settings.parent_classes or {}
        if not classes and known:  # its crop, spelled as fine-tuning compares it
            crop = parent_class(scenario.crop, known, parent_names([scenario.crop], known, names))
            return not settings.fresh_head and crop is not None and len(known) > 1
        if not classes or not known:
            return classes == known
        return keeps_head(head_rows(classes, known, names), len(known))

    def _check_parent_classes(self) -> None:
        """``parent_classes`` names classes of the scenarios (or a one-crop scenario's crop)
        and of the crop-type pre-trained heads: checked before any work, as a worker would
        refuse it mid-run."""
        for where, settings in self._fine_tunings().items():
            if settings.parent_classes is None:
                continue
            for index, scenario in enumerate(self.scenarios):
                name, spec = self.pretrain_of(scenario)
                if spec.checkpoint is None and not spec.train.classes:
                    raise ValueError(
                        f"pretrain {name} maps one crop, and {where}.parent_classes names "
                        f"classes of a crop-type model (scenarios[{index}]); leave it out"
                    )
                if not spec.train.classes:
                    continue  # a checkpoint to come: checked when it is read
                try:
                    self._head_carries(scenario, settings)
                except ConfigError as exc:
                    place = f"scenarios[{index}], pretrain {name}"
                    raise ValueError(f"{place}: {exc.problem}") from None

    def _check_comparisons(self) -> None:
        """What a comparison names must be in the run: its methods, fractions and scenarios,
        and per-``t`` maps where it asks for them. Said before anything trains."""
        ids = [s.id for s in self.scenarios]
        for index, spec in enumerate(self.comparisons):
            place = f"comparisons[{index}]"
            for method in (spec.a, spec.b):
                if method not in self.methods:
                    raise ValueError(f"{place}: {method} is not among the methods")
            for fraction in (spec.fraction, spec.b_fraction):
                if fraction is not None and fraction not in self.fractions:
                    raise ValueError(f"{place}: fraction {fraction:g} is not among the fractions")
            for pattern in (*spec.scenarios, *spec.b_scenarios):
                if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
                    raise ValueError(f"{place}: no scenario matches {pattern!r}")
            self._check_comparison_kind(place, spec)
            if spec.timesteps is not None and not self.timestep_table:
                raise ValueError(f"{place}: timesteps need timestep_table: true")
            if isinstance(spec.timesteps, int):
                self._check_comparison_steps(place, spec)

    def _check_comparison_steps(self, place: str, spec: ComparisonSpec) -> None:
        """The first ``timesteps`` composites exist in every test region the comparison names
        (where the config says how many there are)."""
        patterns = (*spec.scenarios, *spec.b_scenarios)
        for scenario in self.scenarios:
            if patterns and not any(fnmatch.fnmatchcase(scenario.id, p) for p in patterns):
                continue
            steps = self._steps(scenario.test)
            if steps is not None and not 1 <= int(spec.timesteps or 0) <= steps:
                raise ValueError(
                    f"{place}: timesteps {spec.timesteps}, and {scenario.test} holds {steps} "
                    f"composites (scenario {scenario.id}): give 1 to {steps}"
                )

    def _check_comparison_kind(self, place: str, spec: ComparisonSpec) -> None:
        """One-crop scenarios are compared by a metric of the crop, crop-type ones by the mIoU
        (on full-season maps: crop-type runs keep no others)."""
        crop_types = spec.metric == MIOU
        kind = "crop-type" if crop_types else "one-crop"
        patterns = (*spec.scenarios, *spec.b_scenarios)
        named = [
            s
            for s in self.scenarios
            if not patterns or any(fnmatch.fnmatchcase(s.id, p) for p in patterns)
        ]
        same = [s for s in named if (self.classes_of(s) is not None) == crop_types]
        if patterns and len(same) < len(named):
            other = next(s for s in named if s not in same).id
            if crop_types:
                raise ValueError(
                    f"{place}: scenario {other} maps one crop; {MIOU} compares crop-type scenarios"
                )
            raise ValueError(f"{place}: scenario {other} maps crop types: compare it by {MIOU}")
        if not same:
            raise ValueError(f"{place}: no {kind} scenario to compare by {spec.metric}")
        if crop_types and spec.timesteps is not None:
            raise ValueError(f"{place}: crop-type runs keep full-season maps only (no timesteps)")

    def _check_zero_shot(self) -> None:
        """``zero-shot`` scores the pre-trained model's own output, and ``bias`` moves its
        threshold: it must map the scenario's crop, one crop against the rest, or a crop-type
        model that has it among its classes (read for that crop against the rest)."""
        strategies = {parse_method(method)[0] for method in self.methods}
        used = [m for m in (ZERO_SHOT, BIAS) if m in strategies]
        if not used:
            return
        method = used[0]
        for index, scenario in enumerate(self.scenarios):
            name, spec = self.pretrain_of(scenario)
            if self.classes_of(scenario) is not None:
                raise ValueError(f"scenarios[{index}]: {method} maps one crop, not classes")
            if spec.train.classes:
                maps = class_key(scenario.crop) in {class_key(c) for c in spec.train.classes}
            else:
                maps = class_key(spec.crop) == class_key(scenario.crop)
            if not maps or spec.train.reconstructs:
                mapped = ", ".join(spec.train.classes or (spec.crop,))
                raise ValueError(
                    f"scenarios[{index}]: {method} needs a pre-training that maps "
                    f"{scenario.crop}; pretrain {name} maps "
                    f"{'nothing (reconstruct)' if spec.train.reconstructs else mapped}"
                )

    def _check_last_k(self) -> None:
        """``ftd-last-K`` names 1 to as many decoder blocks as the pre-trained model has, checked
        before any work rather than after the pre-training."""
        last = {m: parse_method(m)[1] for m in self.every_method() if METHOD_PATTERN.match(m)}
        wanted = {m: k for m, k in last.items() if k is not None}
        if not wanted:
            return
        from sarcrop.models import build_model
        from sarcrop.training.strategies import decoder_blocks

        for scenario in self.scenarios:
            name, spec = self.pretrain_of(scenario)
            try:
                model = build_model(spec.model, len(spec.bands), 8, **spec.model_options)
                blocks = len(decoder_blocks(model))
            except SarcropError:
                continue  # no decoder blocks to count: the run names the problem
            for method, k in wanted.items():
                if not 1 <= k <= blocks:
                    raise ValueError(
                        f"method {method}: the pre-training {name!r} ({spec.model}) has "
                        f"{blocks} decoder block{'' if blocks == 1 else 's'}, so K is 1 to "
                        f"{blocks}"
                    )

    def _steps(self, region: str) -> int | None:
        """The composites a region's store holds, where the config says (a prepared store's
        own are read with it)."""
        data = self.regions[region]
        if data.timesteps is not None:
            return data.timesteps
        if data.merge:
            counts = {self._steps(member) for member in data.merge}
            return counts.pop() if len(counts) == 1 else None
        return None if data.store is not None else 8

    def _check_season_lengths(self) -> None:
        """A model maps the number of composites it learnt: a target region of fewer (an
        early-season store) would fail after the pre-training; zero-padded early-season
        scores are ``timestep_table``'s."""
        for scenario in self.scenarios:
            name, spec = self.pretrain_of(scenario)
            if spec.region is None:
                continue
            learnt = self._steps(spec.region)
            for key in dict.fromkeys((scenario.finetune, scenario.test)):
                steps = self._steps(key)
                if learnt is not None and steps is not None and steps != learnt:
                    raise ValueError(
                        f"regions.{key}: {steps} composites, and the pre-training {name!r} "
                        f"learns {learnt} (regions.{spec.region}); give every region the same "
                        "timesteps, and for early-season scores use timestep_table: true "
                        "(the later composites zero-padded)"
                    )

    def _check_pretrainings(self) -> None:
        if not self.pretrainings:
            raise ValueError("give pretrain (one pre-training) or pretrains (named ones)")
        if self.pretrain is not None and DEFAULT_PRETRAIN in self.pretrains:
            raise ValueError(f"pretrains.{DEFAULT_PRETRAIN}: the name of the single pretrain")
        for scenario in self.scenarios:
            if scenario.pretrain is None and len(self.pretrainings) > 1:
                raise ValueError(
                    f"scenario {scenario.id}: name its pretrain ({', '.join(self.pretrainings)})"
                )
            if scenario.pretrain is not None and scenario.pretrain not in self.pretrainings:
                raise ValueError(
                    f"scenario {scenario.id}: unknown pretrain {scenario.pretrain!r} "
                    f"(have {', '.join(self.pretrainings)})"
                )


def _method_match(method: str) -> re.Match[str]:
    match = METHOD_PATTERN.match(method)
    if not match:
        raise ConfigError(f"unknown method {method!r}")
    return match


def parse_method(method: str) -> tuple[str, int | None]:
    """``"ftd-last-2"`` → ``("ftd", 2)``; ``"fte"`` and ``"fte+dd"`` → ``("fte", None)``."""
    match = _method_match(method)
    return match.group(1), int(match.group(3)) if match.group(3) else None


def is_forest(method: str) -> bool:
    """Whether ``method`` is a Random Forest (no network training, no batch order)."""
    return parse_method(method)[0] in ("rf", "rf-features")


def trains(method: str) -> bool:
    """Whether ``method`` trains a network on the target (so has epochs and a batch order)."""
    return not is_forest(method) and parse_method(method)[0] != ZERO_SHOT


def method_id(name: str) -> str:
    """A method as runs record it: ``FTE`` is ``fte``, as the tables print it; a ``+variant``
    keeps its own spelling."""
    strategy, plus, variant = name.partition("+")
    return strategy.lower() + plus + variant


def variant_of(method: str) -> str | None:
    """``"ftd+dd"`` → ``"dd"``: the variant a method id names, ``None`` for none."""
    return _method_match(method).group(5)


def _variant_config(finetune: TrainConfig, name: str, changes: dict[str, Any]) -> TrainConfig:
    """``finetune`` with the settings of variant ``name`` (a ValueError naming it if invalid)."""
    if "recipe" in changes:
        raise ValueError(f"variants.{name}: name settings, not a recipe")
    try:
        return validate_config({**finetune.model_dump(), **changes})
    except ConfigError as exc:
        raise ValueError(f"variants.{name}: {exc.problem}") from None


def _resolve(value: Any, base: Path, key: str) -> Any:
    if key == "checkpoint" and isinstance(value, str):
        return _checkpoint_path(value, base)
    if key in {"labels", "store", "legend"} and isinstance(value, str):
        return str((base / value).resolve())
    if key == "images" and isinstance(value, str) and not has_scheme(value):
        return str(base / value)
    return value


def _checkpoint_path(value: str, base: Path) -> str:
    """A checkpoint file relative to ``base``, else the shipped model of that name."""
    from sarcrop import pretrained

    local = (base / value).resolve()
    if not local.exists() and value in pretrained.available():
        return str(pretrained.path(value))
    return str(local)


def _with_checkpoint_facts(data: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """Fill each checkpoint pre-training's crop, bands and architecture from its checkpoint
    (RI trains that architecture); a config value that contradicts it is an error."""
    data = dict(data)
    specs = [("pretrain", data, "pretrain")]
    if isinstance(data.get("pretrains"), dict):
        data["pretrains"] = dict(data["pretrains"])
        specs += [(f"pretrains.{n}", data["pretrains"], n) for n in data["pretrains"]]
    for where, parent, name in specs:
        spec = parent.get(name)
        if isinstance(spec, dict) and isinstance(spec.get("checkpoint"), str):
            parent[name] = {**spec, **_checkpoint_facts(spec, where, path)}
    return data


def _classes_given(value: Any, where: str, path: Path | None) -> tuple[str, ...]:
    try:
        return class_list(value) or ()
    except ValueError as exc:
        raise ConfigError(f"{where}.train.classes: {exc}", path) from None


def _checkpoint_facts(spec: dict[str, Any], where: str, path: Path | None) -> dict[str, Any]:
    from sarcrop.training.checkpoint import read_metadata

    file = Path(spec["checkpoint"])
    if not file.is_file():  # load_experiment_config says so; a mapping may name one to come
        return {}
    kinds = {"train": dict, "model_options": dict, "bands": list | tuple, "crop": str}
    if any(spec.get(key) is not None and not isinstance(spec[key], t) for key, t in kinds.items()):
        return {}  # a value of the wrong kind: said by the spec's own validation
    meta = read_metadata(file)
    facts: dict[str, Any] = {
        "bands": list(meta.bands),
        "model": meta.architecture,
        "model_options": dict(meta.options),
    }
    if meta.target_classes is not None:  # a crop-type model: its classes, as if pre-trained here
        facts["train"] = {**dict(spec.get("train") or {}), "classes": list(meta.target_classes)}
    elif len(meta.positive) == 1:
        facts["crop"] = meta.positive[0]
    options = spec.get("model_options") or {}
    differs = spec.get("model", meta.architecture) != meta.architecture or any(
        meta.options.get(k) != v for k, v in dict(options).items()
    )
    if differs:
        raise ConfigError(f"{where}: {file.name} brings its own model and model_options", path)
    crop, bands = spec.get("crop"), spec.get("bands")
    if crop is not None and class_key(crop) != class_key(facts.get("crop", "")):
        maps = "+".join(meta.positive)
        raise ConfigError(f"{where}.crop: {crop}, but {file.name} maps {maps}", path)
    given = (spec.get("train") or {}).get("classes")
    named = None if given is None else _classes_given(given, where, path)
    if named is not None and [class_key(c) for c in named] != [
        class_key(c) for c in meta.target_classes or ()
    ]:
        maps = ", ".join(meta.target_classes or meta.positive)
        problem = f"{', '.join(named)}, but {file.name} maps {maps}"
        raise ConfigError(f"{where}.train.classes: {problem}", path)
    if bands is not None and [str(b).upper() for b in bands] != facts["bands"]:
        reads = "|".join(facts["bands"])
        raise ConfigError(f"{where}.bands: {'|'.join(bands)}, but {file.name} reads {reads}", path)
    return facts


def _resolve_paths(data: Any, base: Path, key: str = "") -> Any:
    """Make relative paths in path-valued keys relative to ``base``."""
    if isinstance(data, dict):
        return {k: _resolve_paths(v, base, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve_paths(v, base, key) for v in data]
    return _resolve(data, base, key)


def _resolve_config(data: dict[str, Any], folder: Path, data_root: Path | None) -> dict[str, Any]:
    """Paths relative to the config's folder, region data relative to the data root if any."""
    resolved = _resolve_paths(data, folder)
    if data_root is not None:
        resolved["data_root"] = str(data_root)
        regions = data.get("regions")
        if isinstance(regions, dict):
            resolved["regions"] = _resolve_paths(regions, data_root)
    return resolved


def _check_files(config: ExperimentConfig, path: Path) -> None:
    """Every file a region names is there before any work starts (scenes behind a URL are
    read later)."""
    for name, region in config.regions.items():
        for key in ("labels", "store"):
            value = getattr(region, key)
            if value is not None and not Path(value).exists():
                raise ConfigError(f"regions.{name}.{key}: file not found: {value}", path)
        images = region.images
        if images and has_scheme(images) and not is_url(images):
            raise ConfigError(f"regions.{name}.images: {images}: {OTHER_URL}", path)
        if images and not is_url(images) and not glob.glob(images):
            raise ConfigError(f"regions.{name}.images: no file matches {images}", path)


def _check_checkpoints(given: dict[str, Any], resolved: dict[str, Any], path: Path) -> None:
    """Each pre-training's ``checkpoint`` is a file or a shipped model's name, checked before
    anything else reads it (a misspelt name would otherwise be taken for a model of other
    classes); a name close to a shipped one is named."""
    from sarcrop import pretrained

    def specs(data: dict[str, Any]) -> dict[str, Any]:
        single = {"pretrain": data.get("pretrain")}
        named = data.get("pretrains")
        several = {f"pretrains.{n}": s for n, s in named.items()} if isinstance(named, dict) else {}
        return {k: s for k, s in {**single, **several}.items() if isinstance(s, dict)}

    asked = specs(given)
    for key, spec in specs(resolved).items():
        file = spec.get("checkpoint")
        if not isinstance(file, str) or Path(file).is_file():
            continue
        meant = did_you_mean(str(asked[key].get("checkpoint")), pretrained.available())
        shipped = f"; {meant} shipped: {', '.join(pretrained.available())}" if meant else ""
        raise ConfigError(f"{key}.checkpoint: file not found: {file}{shipped}", path)


def _check_data(config: ExperimentConfig, path: Path) -> None:
    """Raise :class:`DataNotFound` where the data root or a file a region names is absent."""
    root = config.data_root
    assert root is not None
    missing = [] if root.is_dir() else [str(root)]
    for region in config.regions.values():
        local = region.images and not is_url(region.images)
        if local and not glob.glob(str(region.images)):
            missing.append(str(region.images))
        missing += [str(p) for p in (region.labels, region.store) if p and not p.exists()]
    if missing:
        raise DataNotFound(f"real data not found at {missing[0]}", path)


def experiment_config_from_dict(data: dict[str, Any], path: Path | None = None) -> ExperimentConfig:
    """Validate a mapping (already path-resolved) into an :class:`ExperimentConfig`."""
    data = _with_checkpoint_facts(data, path)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, path, model=ExperimentConfig) from None


def load_experiment_config(
    path: str | Path, *, data_root: str | Path | None = None
) -> ExperimentConfig:
    """Read and validate an experiment YAML file.

    ``data_root`` replaces the config's own; with either, region images and labels are
    relative to it and their absence raises :class:`DataNotFound`.
    """
    path = Path(path)
    data = read_yaml(path, "experiment config")
    if not isinstance(data, dict):
        raise ConfigError("an experiment config must be a mapping", path)
    root = data_root if data_root is not None else data.get("data_root")
    root_path = None if root is None else Path(str(root)).expanduser().resolve()
    resolved = _resolve_config(data, path.resolve().parent, root_path)
    _check_checkpoints(data, resolved, path)
    config = experiment_config_from_dict(resolved, path)
    if config.data_root is not None:
        _check_data(config, path)
    _check_files(config, path)
    return config
