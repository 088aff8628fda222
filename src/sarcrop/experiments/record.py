"""The record of a run's artefacts: everything figures, tables and the report are drawn from.

The runner writes it into ``experiment.json`` (key ``artefacts``) once every unit is finished.
Reading it back needs no runner and no configuration object, so figures can be redrawn from a
finished run directory by reading files only: nothing is simulated, prepared or trained.
Paths inside the run directory are stored relative to it, so a run directory can be moved.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sarcrop import __version__
from sarcrop.errors import SarcropError
from sarcrop.evaluation.tables import REAL, SIMULATED
from sarcrop.experiments.config import ExperimentConfig, RegionData
from sarcrop.utils.environment import environment

MANIFEST = "experiment.json"


def load_recorded(path: Path, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
    """An array a run recorded (a method's test probabilities), or one line naming the file
    where it is missing or damaged: figures and comparisons read what a user's folder holds."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise SarcropError(f"unreadable recorded array: {problem}", path) from None


SHARED_KEYS = (
    "name",
    "created",
    "sarcrop_version",
    "environment",
    "config_file",
    "config",
    "seeds",
    "methods",
)
"""Top-level keys of ``experiment.json`` that the record shares with the report's manifest."""


@dataclass(frozen=True)
class RegionRecord:
    """A region's prepared store and the data behind it."""

    store: str
    data: str | None  # "simulated", "real", or None (a given store of unknown origin)
    preset: str | None = None  # simulator preset of a simulated region
    year: int | None = None


@dataclass(frozen=True)
class ScenarioRecord:
    """A scenario: fine-tune in one region, test in another; ``data`` as for regions.
    ``crop`` for a one-crop scenario, ``classes`` for crop types (None in one-crop scenarios,
    and in the records of runs made before it was recorded)."""

    id: str
    finetune_region: str
    test_region: str
    crop: str
    bands: tuple[str, ...]
    data: str | None
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class UnitRecord:
    """One scenario × method × seed of the main run: its test-split outputs."""

    scenario: str
    method: str
    seed: int
    probabilities: str  # .npy, (test patches, P, P)
    training_log: str | None = None  # Lightning metrics.csv (networks only)
    checkpoint: str | None = None
    label_fraction: float = 1.0  # share of the fine-tuning region's labelled parcels
    # .npy, (T, test patches, P, P): the maps from the first t composites (timestep_table)
    timestep_probabilities: str | None = None


@dataclass(frozen=True)
class PretrainRecord:
    """A shared pre-training, present only where this run used (and so trained) it."""

    region: str | None
    checkpoint: str
    training_log: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A finished run's artefacts as paths; ``root`` is the run directory (not stored).

    ``scenarios`` and ``units`` are the one-crop scenarios and their runs, which the tables,
    figures and maps read; crop-type scenarios and their runs are kept apart in
    ``class_scenarios`` and ``class_units`` (empty in the records of older runs)."""

    name: str
    root: Path
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    regions: dict[str, RegionRecord]
    scenarios: tuple[ScenarioRecord, ...]
    units: tuple[UnitRecord, ...]
    pretrain: PretrainRecord | None = None  # the first of ``pretrains`` (older readers)
    pretrains: dict[str, PretrainRecord] = field(default_factory=dict)
    early_season: dict[str, str] | None = None  # {"scenario": id, "method": method}
    figure_patches: int = 3
    results: str = "results.csv"
    config: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    created: str = ""
    sarcrop_version: str = __version__
    environment: dict[str, str] = field(default_factory=dict)  # versions and processor
    class_scenarios: tuple[ScenarioRecord, ...] = ()
    class_units: tuple[UnitRecord, ...] = ()

    # ------------------------------------------------------------------ access

    def path(self, stored: str) -> Path:
        """A stored path as a file-system path (relative ones are inside the run directory)."""
        return self.root / stored

    def unit(
        self, scenario: str, method: str, seed: int, fraction: float | None = None
    ) -> UnitRecord | None:
        """The unit of that run; ``fraction=None``: the one with the most labels."""
        found = [
            u for u in self.units if (u.scenario, u.method, u.seed) == (scenario, method, seed)
        ]
        if fraction is not None:
            found = [u for u in found if u.label_fraction == fraction]
        return max(found, key=lambda u: u.label_fraction, default=None)

    @property
    def fractions(self) -> tuple[float, ...]:
        """The label fractions of this run's units, ascending."""
        return tuple(sorted({u.label_fraction for u in self.units}))

    @property
    def thresholds(self) -> dict[str, float]:
        """Method → the probability threshold of its metrics (:func:`recorded_thresholds`)."""
        return recorded_thresholds(self.config, self.methods)

    @property
    def sources(self) -> dict[str, str | None]:
        """Scenario id → the data our numbers were measured on (``"simulated"``/``"real"``)."""
        return {s.id: s.data for s in self.scenarios}

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["root"]
        return data

    def artefacts(self) -> dict[str, Any]:
        """The ``artefacts`` entry of ``experiment.json``: all but :data:`SHARED_KEYS`."""
        return {k: v for k, v in self.to_dict().items() if k not in SHARED_KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], root: Path) -> RunRecord:
        pretrain = data.get("pretrain")
        pretrains = data.get("pretrains") or {}
        return cls(
            name=str(data["name"]),
            root=root,
            seeds=tuple(int(s) for s in data["seeds"]),
            methods=tuple(data["methods"]),
            regions={k: RegionRecord(**v) for k, v in data["regions"].items()},
            scenarios=_scenario_records(data["scenarios"]),
            units=tuple(UnitRecord(**u) for u in data["units"]),
            pretrain=None if pretrain is None else PretrainRecord(**pretrain),
            pretrains={k: PretrainRecord(**v) for k, v in pretrains.items()},
            early_season=data.get("early_season"),
            figure_patches=int(data.get("figure_patches", 3)),
            results=str(data.get("results", "results.csv")),
            config=dict(data.get("config") or {}),
            config_file=data.get("config_file"),
            created=str(data.get("created", "")),
            sarcrop_version=str(data.get("sarcrop_version", "")),
            environment=dict(data.get("environment") or {}),
            class_scenarios=_scenario_records(data.get("class_scenarios") or ()),
            class_units=tuple(UnitRecord(**u) for u in data.get("class_units") or ()),
        )

    @classmethod
    def read(cls, run_dir: str | Path) -> RunRecord:
        """The record in ``run_dir/experiment.json``; one-line error if absent or unreadable."""
        run_dir = Path(run_dir)
        path = run_dir / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            shared = {k: manifest[k] for k in SHARED_KEYS if k in manifest}
            return cls.from_dict({**shared, **manifest["artefacts"]}, run_dir)
        except FileNotFoundError:
            raise SarcropError(
                "not an experiment run directory (no experiment.json)", run_dir
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SarcropError(
                f"no readable record of the run's artefacts: {exc!r}", path
            ) from None


def _scenario_records(scenarios: Iterable[Mapping[str, Any]]) -> tuple[ScenarioRecord, ...]:
    def of(s: Mapping[str, Any]) -> ScenarioRecord:
        classes = s.get("classes")  # absent in the records of older runs
        return ScenarioRecord(
            **{
                **s,
                "bands": tuple(s["bands"]),
                "classes": None if classes is None else tuple(classes),
            }
        )

    return tuple(of(s) for s in scenarios)


def recorded_thresholds(config: Mapping[str, Any], methods: Iterable[str]) -> dict[str, float]:
    """Each method's probability threshold from a config as recorded (JSON): the forest's from
    ``baseline:``, a network's from ``finetune:``, changed by its variant. Read from the
    record, not a validated config, so a run of an older version keeps its thresholds."""
    from sarcrop.experiments.config import is_forest, variant_of

    def of(section: str) -> float:
        return float((config.get(section) or {}).get("threshold", 0.5))

    def network(method: str) -> float:
        changes = (config.get("variants") or {}).get(variant_of(method) or "", {})
        return float(changes.get("threshold", of("finetune")))

    return {m: of("baseline") if is_forest(m) else network(m) for m in methods}


# --------------------------------------------------------------------------- from a config


def region_data(spec: RegionData) -> str | None:
    """``"simulated"`` for a ``simulate:`` region, ``"real"`` for scenes + labels, else None."""
    if spec.simulate is not None:
        return SIMULATED
    if spec.images is not None:
        return REAL
    return None


def region_sources(config: ExperimentConfig) -> dict[str, str | None]:
    """Region name → its data; a merged region is simulated if any member is, real if all are."""
    own = {name: region_data(spec) for name, spec in config.regions.items()}
    sources = {}
    for name in config.regions:
        members = {own[m] for m in config.members(name)}
        sources[name] = SIMULATED if SIMULATED in members else REAL if members == {REAL} else None
    return sources


def scenario_data(finetune: str | None, test: str | None) -> str | None:
    """Simulated if either region is; real only if both are; otherwise unknown."""
    if SIMULATED in (finetune, test):
        return SIMULATED
    return REAL if finetune == test == REAL else None


def scenario_sources(config: ExperimentConfig) -> dict[str, str | None]:
    """Scenario id → the data our numbers for it are measured on."""
    data = region_sources(config)
    return {s.id: scenario_data(data[s.finetune], data[s.test]) for s in config.scenarios}


def _relative(path: str | Path, root: Path) -> str:
    path = Path(path)
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def build_record(
    config: ExperimentConfig,
    root: Path,
    *,
    stores: Mapping[str, Path],
    units: Iterable[UnitRecord],
    seeds: Iterable[int],
    pretrained: Mapping[str, Path],
    config_file: Path | None = None,
) -> RunRecord:
    """The record of a run of ``config`` into ``root`` from the artefacts it produced.

    ``stores`` maps region names to prepared stores; ``pretrained`` maps the names of the
    pre-trainings the run used (only those some method needed) to their checkpoints. ``units``
    are every scenario's runs; those of crop-type scenarios go to ``class_units``.
    """
    regions = {}
    data = region_sources(config)
    for name, path in stores.items():
        spec = config.regions[name]
        simulated = spec.simulate
        regions[name] = RegionRecord(
            store=_relative(path, root),
            data=data[name],
            preset=None if simulated is None else simulated.preset,
            year=None if simulated is None else simulated.year,
        )
    sources = scenario_sources(config)
    every = [
        ScenarioRecord(
            s.id, s.finetune, s.test, s.crop, tuple(s.bands), sources[s.id], config.classes_of(s)
        )
        for s in config.scenarios
    ]
    crop_types = {s.id for s in every if s.classes is not None}
    stored = [_stored_unit(u, root) for u in units]
    pretrains = {}
    for name, checkpoint in pretrained.items():
        log = checkpoint.parent / "metrics.csv"
        pretrains[name] = PretrainRecord(
            region=config.pretrainings[name].region,
            checkpoint=_relative(checkpoint, root),
            training_log=_relative(log, root) if log.is_file() else None,
        )
    early = None
    if config.early_season is not None:
        early_scenario = config.scenarios[config.early_season.scenario].id
        if early_scenario not in crop_types:  # crop types draw their own curve
            early = {"scenario": early_scenario, "method": config.early_season.method}
    return RunRecord(
        name=config.name,
        root=root,
        seeds=tuple(seeds),
        methods=tuple(config.methods),
        regions=regions,
        scenarios=tuple(s for s in every if s.id not in crop_types),
        units=tuple(u for u in stored if u.scenario not in crop_types),
        pretrain=next(iter(pretrains.values()), None),
        pretrains=pretrains,
        early_season=early,
        figure_patches=config.figure_patches,
        config=config.model_dump(mode="json"),
        config_file=None if config_file is None else str(config_file),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        environment=environment(),
        class_scenarios=tuple(s for s in every if s.id in crop_types),
        class_units=tuple(u for u in stored if u.scenario in crop_types),
    )


def _stored_unit(unit: UnitRecord, root: Path) -> UnitRecord:
    """``unit`` with its paths relative to the run directory where they are inside it."""

    def stored(path: str | None) -> str | None:
        return None if path is None else _relative(path, root)

    return replace(
        unit,
        probabilities=_relative(unit.probabilities, root),
        training_log=stored(unit.training_log),
        checkpoint=stored(unit.checkpoint),
        timestep_probabilities=stored(unit.timestep_probabilities),
    )
