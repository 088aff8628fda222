"""Run every scenario × method × seed of an experiment, reusing shared work.

Work is split into units (one dataset per region, one pre-training, one fine-tuning or forest
per scenario × method × seed). Each unit lives in ``DIR/cache/<kind>-<hash>/`` where the hash
covers everything that determines its result (a region's input files by size and modification
time, checkpoints by content), and is marked done by a ``done.json`` written last; a rerun skips
finished units, and an interrupted one redoes only what was not finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import hashlib
import json
import math
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sarcrop import __version__
from sarcrop.data.scenes import is_url
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.evaluation.tables import RESULT_COLUMNS as TABLE_COLUMNS
from sarcrop.experiments.classes import (
    CropTypeRuns,
    binary_view,
    forest_outputs,
    network_probabilities,
    network_timestep_probabilities,
)
from sarcrop.experiments.config import (
    BIAS,
    DEFAULT_PRETRAIN,
    ZERO_SHOT,
    ExperimentConfig,
    PretrainSpec,
    RegionData,
    ScenarioSpec,
    load_experiment_config,
    parse_method,
    trains,
)
from sarcrop.experiments.intervals import TIMESTEP_PROBABILITIES
from sarcrop.experiments.record import (
    MANIFEST,
    RunRecord,
    UnitRecord,
    build_record,
    recorded_thresholds,
    scenario_sources,
)
from sarcrop.options import BaselineOptions, available_cores
from sarcrop.training.config import DISPLAY_FIELDS, MODEL_FILE, TrainConfig
from sarcrop.utils.atomic import write_text_atomic
from sarcrop.utils.environment import environment
from sarcrop.utils.signals import ctrl_c_ignored
from sarcrop.utils.validation import whole_number

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    from sarcrop.data.parcels import LabelMask, ParcelFold

# The evaluation tables' long format, plus which run (main / early-season), batch order and
# the share of the fine-tuning region's labelled train parcels used (appended last).
RESULT_COLUMNS = (*TABLE_COLUMNS, "run", "ordering", "label_fraction")
METRICS = ("iou", "precision", "recall", "f1")
FULL = 1.0
"""The label fraction of a run with every labelled parcel."""


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


GDAL_SIDECARS = (".aux.xml", ".ovr", ".msk")
"""Files GDAL may write beside a raster it reads: not the region's data."""


def _file_stamps(spec: RegionData) -> str | None:
    """A digest of the size and modification time of every local file a region reads (its
    scenes, labels or store), so that data changed in place makes its results stale; None for a
    region that reads no file (simulated, or scenes behind a URL)."""
    roots: list[Path] = []
    if spec.images and not is_url(spec.images):
        roots += [Path(p) for p in sorted(glob.glob(spec.images))]
    if spec.labels is not None:  # a shapefile is read with the files beside it
        roots += sorted(spec.labels.parent.glob(f"{glob.escape(spec.labels.stem)}.*"))
    if spec.store is not None:
        roots.append(spec.store)
    stamps = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in (p for p in files if not p.name.endswith(GDAL_SIDECARS)):
            stat = path.stat()
            stamps.append([str(path), stat.st_size, stat.st_mtime_ns])
    return _digest(stamps) if stamps else None


SHOWN_AS = {"progress_bar": False, "num_workers": None, "log_every_n_steps": 10}
"""The display settings (``DISPLAY_FIELDS``) every pre-training's cache key holds, whatever
its config shows: those of the shipped configs, whose keys stay what they were."""


def pretrain_key(spec: PretrainSpec) -> dict[str, Any]:
    """A pre-training's settings as its cache key holds them: what only shows progress
    (progress bar, loader workers, log interval) at :data:`SHOWN_AS`, as it changes nothing
    the pre-training learns."""
    key = spec.model_dump(mode="json")
    key["train"].update(SHOWN_AS)
    return key


@dataclass
class _Unit:
    """One cached piece of work."""

    path: Path
    key: dict[str, Any]

    @property
    def done(self) -> bool:
        return (self.path / "done.json").is_file()

    def record(self) -> dict[str, Any]:
        return json.loads((self.path / "done.json").read_text(encoding="utf-8"))

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """Mark the unit done; its record says what machine computed it (a cache may mix)."""
        done = {**record, "environment": environment(), "key": self.key}
        write_text_atomic(self.path / "done.json", json.dumps(done, indent=2, default=str))
        return record


@dataclass
class ExperimentResult:
    """What a run produced."""

    out_dir: Path
    results: pd.DataFrame
    tables: Path
    report: Path | None
    timings: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.units: set[Path] = set()  # counted already: a unit shared by scenarios counts once

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def add_unit(self, name: str, unit: Path, seconds: float) -> None:
        if unit not in self.units:
            self.units.add(unit)
            self.add(name, seconds)


def _log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


@contextlib.contextmanager
def _named_warnings(name: str) -> Iterator[None]:
    """Warnings and errors of one unit, said with its name: among hundreds of units, "it did
    not learn them" without the method, seed and share of labels left the user to guess
    which."""
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are
        try:
            yield
        except SarcropError as exc:
            raise type(exc)(f"{name}: {exc.problem}", exc.path) from exc
    for w in caught:
        warnings.warn_explicit(f"{name}: {w.message}", w.category, w.filename, w.lineno)


class ExperimentRunner:
    """Executes an :class:`ExperimentConfig` into an output directory."""

    def __init__(
        self,
        config: ExperimentConfig,
        out_dir: Path,
        *,
        config_file: Path | None = None,
        seeds: int | None = None,
        progress: bool = False,
        jobs: int | None = None,
    ) -> None:
        self.config = config
        self.jobs = config.jobs if jobs is None else jobs
        if self.jobs < 1:
            raise ConfigError(f"jobs must be at least 1, got {self.jobs}")
        self.out = Path(out_dir)
        self.config_file = config_file
        if seeds is not None and (not whole_number(seeds) or seeds < 1):
            raise ConfigError(f"seeds must be a whole number >= 1, got {seeds!r}")
        self.seeds = list(range(int(seeds) if seeds is not None else config.seeds))
        self.progress = progress
        self.timer = _Timer()
        self.computed = 0  # units this invocation computed (here or in workers), not cached
        self._stores: dict[str, tuple[Path, str]] = {}
        self._pretrained: dict[str, tuple[Path, str]] = {}
        self._simulated: dict[str, Path] = {}
        # Scenario id → "simulated" or "real": what the tables say each number was measured on.
        self.sources = scenario_sources(config)
        # How the caller formats warnings (the command line: one line each), taken now: the
        # first training imports Lightning, which puts its own formatter in front of it.
        self.formatwarning = warnings.formatwarning

    # ------------------------------------------------------------------ units

    def _unit(self, kind: str, key: dict[str, Any]) -> _Unit:
        key = {"kind": kind, "sarcrop": __version__, **key}
        path = self.out / "cache" / f"{kind}-{_digest(key)}"
        path.mkdir(parents=True, exist_ok=True)
        return _Unit(path, key)

    def _timed(
        self, name: str | None, unit: _Unit, work: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Run ``work`` unless the unit is done; count its (recorded) time under ``name``."""
        if unit.done:
            record = unit.record()
        else:
            start = time.perf_counter()
            record = work()
            record["seconds"] = time.perf_counter() - start
            unit.finish(record)
            self.computed += 1
        if name is not None:
            self.timer.add_unit(name, unit.path, float(record.get("seconds", 0.0)))
        return record

    # ------------------------------------------------------------------ data

    def region_store(self, name: str) -> tuple[Path, str]:
        """The prepared store of a region (and its cache key), built once."""
        if name in self._stores:
            return self._stores[name]
        spec = self.config.regions[name]
        stamps = _file_stamps(spec)
        if spec.store is not None:
            self._stores[name] = (spec.store, _digest([str(spec.store), stamps]))
            return self._stores[name]
        if spec.merge:
            self._stores[name] = self._merged(name, spec.merge, spec.percentiles)
            return self._stores[name]
        key = {"name": name, "spec": spec.model_dump(mode="json")}
        unit = self._unit("region", {**key, "files": stamps} if stamps else key)
        store = unit.path / "store.zarr"

        def work() -> dict[str, Any]:
            record: dict[str, Any] = {}
            if spec.simulate is not None:
                record.update(self._simulate(unit.path / "simulated", spec))
            _log(f"preparing {name}")
            start = time.perf_counter()
            self._prepare(name, spec, unit.path / "simulated", store)
            record["prepare_seconds"] = time.perf_counter() - start
            return record

        record = self._timed(None, unit, work)
        self.timer.add("simulate", float(record.get("simulate_seconds", 0.0)))
        self.timer.add("prepare", float(record.get("prepare_seconds", 0.0)))
        if spec.simulate is not None:
            self._simulated[name] = unit.path / "simulated"
        self._stores[name] = (store, _digest(unit.key))
        return self._stores[name]

    def _merged(
        self, name: str, members: Sequence[str], percentiles: tuple[float, float] | None
    ) -> tuple[Path, str]:
        """One store of the members' patches (each keeps its split and location)."""
        from sarcrop.data.merge import merge_stores

        parts = [self.region_store(member) for member in members]
        key: dict[str, Any] = {"name": name, "members": [key for _, key in parts]}
        if percentiles is not None:  # keys of merges without it stay as they were
            key["percentiles"] = list(percentiles)
        unit = self._unit("merge", key)
        store = unit.path / "store.zarr"

        def work() -> dict[str, Any]:
            _log(f"merging {', '.join(members)} into {name}")
            paths = [path for path, _ in parts]
            merge_stores(paths, store, region=name, percentiles=percentiles, progress=False)
            return {}

        record = self._timed(None, unit, work)
        self.timer.add("prepare", float(record.get("seconds", 0.0)))
        return store, _digest(unit.key)

    def _simulate(self, folder: Path, spec: RegionData) -> dict[str, Any]:
        from sarcrop.data.simulate import simulate_region

        assert spec.simulate is not None
        sim = spec.simulate
        _log(f"simulating {sim.preset}")
        start = time.perf_counter()
        simulate_region(
            sim.preset, folder, progress=self.progress, **sim.model_dump(exclude={"preset"})
        )
        return {"simulate_seconds": time.perf_counter() - start}

    def _prepare(self, name: str, spec: RegionData, simulated: Path, store: Path) -> None:
        from sarcrop.data.prepare import prepare, prepare_region, read_region, resolve_season

        region = read_region(simulated) if spec.simulate is not None else {}
        options: dict[str, Any] = {
            "season": resolve_season(
                spec.season_start, region, timesteps=spec.timesteps, days=spec.days
            ),
            "bands": spec.bands,
            "label_options": spec.label_options,
            "scenes": spec.scenes,
            "composite": spec.composite,
            "tiling": spec.tiling,
            "split": spec.split,
            "percentiles": spec.percentiles,
            "region": name,
            "progress": self.progress,
        }
        if spec.simulate is not None:
            prepare_region(simulated, store, **options)
            return
        assert spec.images is not None and spec.labels is not None
        prepare(spec.images, store, labels=spec.labels, **options)

    @property
    def pretrains(self) -> bool:
        """Whether any method starts from a pre-trained model, the early-season curve's
        among them."""
        return any(parse_method(m)[0] not in {"rf", "ri"} for m in self.config.every_method())

    def check_ground(self, scenario: ScenarioSpec) -> None:
        """Refuse a scenario whose test split shows labelled ground, in the same season, that
        its models learnt from: the fine-tuning region's train split or a labelled
        pre-training's (a self-supervised one learns no labels)."""
        from sarcrop.data.split import shared_ground
        from sarcrop.data.store import DatasetStore

        remedy = "fine-tune and test on one region split in two (split: {method: patch})"
        learnt = [("fine-tuning", scenario.finetune, remedy)]
        if scenario.folds is not None:  # each fold holds its own fields out of training
            self._check_fold_stores(scenario)
            learnt = []
        _, spec = self.config.pretrain_of(scenario)
        if self.pretrains and spec.region is not None and not spec.train.reconstructs:
            remedy = "pre-train on other fields or seasons than the test"
            learnt.append(("pre-training", spec.region, remedy))
        test = DatasetStore(self.region_store(scenario.test)[0])
        if self.pretrains and spec.checkpoint is not None:
            self._check_checkpoint_ground(scenario, spec.checkpoint, test)
        for role, region, remedy in learnt:
            pairs = shared_ground(DatasetStore(self.region_store(region)[0]), test)
            if pairs:
                raise ConfigError(
                    f"scenario {scenario.finetune} -> {scenario.test}: {len({b for _, b in pairs})}"
                    f" test patches show labelled ground that {role} region {region} trains on,"
                    f" in the same season; {remedy}"
                )

    def check_classes(self, scenario: ScenarioSpec) -> None:
        """Refuse, before any training, a scenario whose crop (or classes) a region's store
        lacks, or whose fine-tuning patches hold no pixel of its crop: every unit would train
        and only scoring would find it."""
        from sarcrop.data.labels import class_lookup
        from sarcrop.data.store import DatasetStore
        from sarcrop.errors import InputDataError

        classes = self.config.classes_of(scenario)
        for role, region in (("fine-tuning", scenario.finetune), ("test", scenario.test)):
            store = DatasetStore(self.region_store(region)[0])
            try:
                if classes is not None:  # the classes a store holds pixels of, as errors list
                    class_lookup(store.classes, classes, store.classes_with_pixels)
                    continue
                store.require_positive(scenario.crop, "train" if role == "fine-tuning" else "test")
            except InputDataError as exc:
                raise ConfigError(
                    f"scenario {scenario.id}: {role} region {region}: {exc.problem}"
                ) from None

    def check_pretraining_crop(self, name: str) -> None:
        """Refuse, before any training, a pre-training whose region holds none of its crop
        (``crop`` left at its default, rice, on a region that grows none): it would learn to
        call nothing positive, and every transfer method would start from it."""
        from sarcrop.data.store import DatasetStore
        from sarcrop.errors import InputDataError

        spec = self.config.pretrainings[name]
        if spec.region is None or not spec.positive or spec.train.reconstructs:
            return
        store = DatasetStore(self.region_store(spec.region)[0])
        where = "pretrain" if name == DEFAULT_PRETRAIN else f"pretrains.{name}"
        try:
            store.require_positive(spec.positive, "train")
        except InputDataError as exc:
            raise ConfigError(
                f"{where}: region {spec.region}: {exc.problem}; name the crop to pre-train on "
                f"with {where}.crop"
            ) from None

    def _check_fold_stores(self, scenario: ScenarioSpec) -> None:
        """Held-out folds score the fine-tuning region's own fields: the test region must hold
        the same patches and labels, all in its test split."""
        from sarcrop.data.parcels import parcel_folds, store_labels, subset_names
        from sarcrop.data.store import DatasetStore
        from sarcrop.errors import InputDataError

        learn = DatasetStore(self.region_store(scenario.finetune)[0])
        score = DatasetStore(self.region_store(scenario.test)[0])
        patches = score.indices("test")
        same = (
            len(learn) == len(score)
            and learn.metadata.offsets == score.metadata.offsets
            and set(patches) <= set(learn.indices("train"))
            and np.array_equal(store_labels(learn)[patches], store_labels(score)[patches])
        )
        if not same:
            raise ConfigError(
                f"scenario {scenario.id}: folds score the fields of {scenario.finetune}: test "
                f"region {scenario.test} must be its patches and labels in a test split "
                f"(the same region with split: {{method: test}}, {scenario.finetune} with "
                "split: {method: train}; or test the fine-tuning region itself, whose two "
                "views are then derived)"
            )
        classes = self.config.classes_of(scenario)
        try:  # the parcels each fold needs do not depend on the seed or the label fraction
            parcel_folds(
                learn,
                scenario.folds or 2,
                0,
                positive=subset_names(classes, (scenario.crop,)),
                classes=classes,
            )
        except InputDataError as exc:
            raise ConfigError(
                f"scenario {scenario.id}: folds over the fields of {scenario.finetune}: "
                f"{exc.problem}; label more fields, or score without folds"
            ) from None

    @staticmethod
    def _check_checkpoint_ground(scenario: ScenarioSpec, checkpoint: Path, test: Any) -> None:
        """Refuse a test split on ground that a pre-trained checkpoint learnt labels from (a
        self-supervised one records no ground)."""
        from sarcrop.data.split import check_unlearnt
        from sarcrop.errors import InputDataError
        from sarcrop.training.checkpoint import read_metadata

        try:
            check_unlearnt(read_metadata(checkpoint).training.get("ground", []), test)
        except InputDataError as exc:
            raise ConfigError(
                f"scenario {scenario.finetune} -> {scenario.test}: pre-training checkpoint "
                f"{checkpoint}: {exc.problem}"
            ) from None

    # ------------------------------------------------------------------ models

    def pretrained(self, scenario: ScenarioSpec) -> tuple[Path, str]:
        """The checkpoint ``scenario`` starts from (each pre-training runs once, shared)."""
        name, _ = self.config.pretrain_of(scenario)
        if name not in self._pretrained:
            self._pretrained[name] = self._pretrain(name)
        return self._pretrained[name]

    def _pretrain(self, name: str) -> tuple[Path, str]:
        spec = self.config.pretrainings[name]
        if spec.checkpoint is not None:  # keyed by content: a replaced file is a new model
            from sarcrop.training.checkpoint import file_sha256

            return spec.checkpoint, file_sha256(spec.checkpoint)[:12]
        assert spec.region is not None
        store, store_key = self.region_store(spec.region)
        unit = self._unit("pretrain", {"store": store_key, "spec": pretrain_key(spec)})

        def work() -> dict[str, Any]:
            from sarcrop.training.api import train

            _log(f"pre-training {spec.model} on {spec.region} ({'|'.join(spec.bands)})")
            result = train(
                store,
                unit.path / "run",
                model=spec.model,
                model_options=spec.model_options,
                bands=spec.bands,
                positive=spec.positive,
                config=self._shown(spec.train),
            )
            return {
                "checkpoint": str(result.checkpoint),
                "best_val_iou": result.best_val_iou,
                "epochs": result.epochs,
            }

        self._timed("pretrain", unit, work)
        return unit.path / "run" / MODEL_FILE, _digest(unit.key)

    def _shown(self, config: TrainConfig) -> TrainConfig:
        """``config`` with its progress bar off unless this run shows progress."""
        return config if self.progress else config.updated(progress_bar=False)

    def _train_method(
        self, scenario: ScenarioSpec, method: str, run: _Run, ordering: str | None, folder: Path
    ) -> Path:
        """Run i trains with seed ``finetune.seed + i`` through the API behind ``finetune``
        (on the labels of the run's fold where it has one, which carry the run's fraction)."""
        from sarcrop.training.api import finetune, train_ri

        strategy, last_k = parse_method(method)
        base = self.config.training_of(method)
        changes: dict[str, Any] = {"seed": base.seed + run.seed, "ordering": ordering}
        classes = self.config.classes_of(scenario)
        if classes is not None:
            changes["classes"] = classes
        store, _ = self.region_store(scenario.finetune)
        label_mask = None if run.fold is None else run.fold.train
        if run.fraction < FULL and label_mask is None:
            changes["label_fraction"] = run.fraction
        if run.fraction < FULL and self.config.epoch_budget == "steps":
            full = None if run.fold is None else run.fold_at_full
            changes["epochs"] = constant_step_epochs(
                store, base.updated(**changes), (scenario.crop,), mask=label_mask, full=full
            )
        config = self._shown(base.updated(**changes))
        if strategy == "ri":  # the architecture only: no pre-training needed
            _, spec = self.config.pretrain_of(scenario)
            result = train_ri(
                store,
                folder,
                model=spec.model,
                model_options=spec.model_options,
                bands=scenario.bands,
                positive=(scenario.crop,),
                config=config,
                label_mask=label_mask,
            )
        else:
            checkpoint, _ = self.pretrained(scenario)
            result = finetune(
                checkpoint,
                store,
                folder,
                strategy=strategy,
                last_k=last_k,
                # bias moves the pre-trained model's threshold: it reads its own bands
                bands=None if strategy == BIAS else scenario.bands,
                positive=(scenario.crop,),
                config=config,
                label_mask=label_mask,
            )
        return result.checkpoint

    def _method_key(
        self, scenario: ScenarioSpec, method: str, run: _Run, ordering: str
    ) -> dict[str, Any]:
        """Everything that determines one method run's result (its cache key)."""
        _, ft_key = self.region_store(scenario.finetune)
        _, test_key = self.region_store(scenario.test)
        strategy, _ = parse_method(method)
        named = scenario.model_dump(mode="json", exclude_none=True)
        if strategy in ("rf", "ri"):  # learn from the target alone (RI: the architecture, in
            named.pop("pretrain", None)  # ``model`` below): one unit whatever the pre-training
        key: dict[str, Any] = {
            "scenario": named,
            "method": method,
            "seed": run.seed,
            "finetune_store": ft_key,
            "test_store": test_key,
        }
        if (classes := self.config.classes_of(scenario)) is not None:
            key["classes"] = list(classes)
        if self._keeps_timesteps(scenario):  # runs without it keep the keys they had
            key["timestep_probabilities"] = True
        if run.fraction < FULL:  # full-label runs keep the keys they had before fractions
            key["label_fraction"] = run.fraction
            if self.config.epoch_budget != "epochs" and trains(method):
                key["epoch_budget"] = self.config.epoch_budget
                if scenario.folds is not None:  # each fold's, since it scales them at all
                    key["fold_epochs"] = "scaled"
        if strategy == "rf":
            key["baseline"] = self.config.baseline.model_dump()
        elif strategy == "rf-features":
            from sarcrop.evaluation.feature_forest import DESIGN

            key["baseline"] = self.config.baseline.model_dump()
            key["features"] = {**self.config.feature_forest.model_dump(), **DESIGN}
            key["pretrain"] = self.pretrained(scenario)[1]
        elif strategy == ZERO_SHOT:  # nothing learnt from the target: only the pre-training
            key["pretrain"] = self.pretrained(scenario)[1]
            key["threshold"] = method_thresholds(self.config)[method]  # what it is scored at
        else:
            _, spec = self.config.pretrain_of(scenario)
            key["train"] = self.config.training_of(method).model_dump(
                mode="json", exclude=set(DISPLAY_FIELDS)
            )
            key["ordering"] = ordering
            key["pretrain"] = self.pretrained(scenario)[1] if strategy != "ri" else None
            key["model"] = [spec.model, spec.model_options]
        return key

    def _method_unit(self, unit: MethodUnit) -> _Unit:
        ordering = unit.ordering or self.config.finetune_of(unit.method).ordering
        run = _Run(unit.seed, unit.fraction)
        return self._unit("method", self._method_key(unit.scenario, unit.method, run, ordering))

    def run_method(
        self,
        scenario: ScenarioSpec,
        method: str,
        seed: int,
        ordering: str | None = None,
        fraction: float = FULL,
    ) -> dict[str, Any]:
        """Train (or fit) one method for one scenario, seed and label fraction; evaluate it."""
        ft_store, _ = self.region_store(scenario.finetune)
        test_store, _ = self.region_store(scenario.test)
        strategy, _ = parse_method(method)
        ordering = ordering or self.config.finetune_of(method).ordering
        run = _Run(seed, fraction)
        unit = self._unit("method", self._method_key(scenario, method, run, ordering))

        name = f"{scenario.id}: {method} (seed {seed}, {100 * fraction:g} % of labels, {ordering})"

        def work() -> dict[str, Any]:
            _log(name)
            with _named_warnings(name):
                return compute()

        def compute() -> dict[str, Any]:
            checkpoint: Path | None = None
            if scenario.folds is not None:
                scored = self._held_out(scenario, method, run, ordering, unit.path)
            elif strategy == "rf":
                scored = self._forest(scenario, ft_store, test_store, run)
            elif strategy == "rf-features":
                scored = self._feature_forest(scenario, ft_store, test_store, run)
            elif strategy == ZERO_SHOT:  # read the bands it was trained on, as rf-features
                checkpoint, _ = self.pretrained(scenario)
                crop = self._zero_shot_crop(scenario)
                scored = self._network_predictions(scenario, method, checkpoint, crop)
            else:
                checkpoint = self._train_method(scenario, method, run, ordering, unit.path / "run")
                scored = self._network_predictions(scenario, method, checkpoint)
            # As scored (float32): the intervals, comparisons and parcels read what results.csv
            # counted, not a rounded copy whose pixels near the threshold change class.
            np.save(unit.path / "test_probabilities.npy", scored.probabilities.astype(np.float32))
            if scored.by_timestep is not None:
                by_timestep = scored.by_timestep.astype(np.float32)
                np.save(unit.path / TIMESTEP_PROBABILITIES, by_timestep)
            return {
                "early_season": scored.early,
                "checkpoint": None if checkpoint is None else str(checkpoint),
            }

        record = self._timed(f"method:{method}", unit, work)
        # Paths come from this run's folders, not the record: a cache stays valid when its
        # folder moves or the command runs from elsewhere.
        if record["checkpoint"] is not None:
            record["checkpoint"] = (
                unit.path / "run" / MODEL_FILE if trains(method) else self.pretrained(scenario)[0]
            )
        record["probabilities"] = unit.path / "test_probabilities.npy"
        if (unit.path / TIMESTEP_PROBABILITIES).is_file():
            record["timestep_probabilities"] = unit.path / TIMESTEP_PROBABILITIES
        record["metrics_csv"] = unit.path / "run" / "metrics.csv"
        return record

    def _held_out(
        self, scenario: ScenarioSpec, method: str, run: _Run, ordering: str, folder: Path
    ) -> _Scored:
        """``method`` trained once per fold of ``scenario.folds`` and scored on the fields
        each fold held out (run i deals its folds with seed i, the same for every method)."""
        from sarcrop.data.parcels import parcel_folds, subset_names
        from sarcrop.data.store import DatasetStore
        from sarcrop.experiments.searches import FOLD_PREFIX

        assert scenario.folds is not None
        ft_store, _ = self.region_store(scenario.finetune)
        test_store, _ = self.region_store(scenario.test)
        classes = self.config.classes_of(scenario)
        positive = subset_names(classes, (scenario.crop,))

        def deal(fraction: float) -> list[ParcelFold]:
            assert scenario.folds is not None
            return parcel_folds(
                ft_store,
                scenario.folds,
                run.seed,
                positive=positive,
                fraction=fraction,
                classes=classes,
            )

        folds = deal(run.fraction)
        # Each fold's labels at every label, where its epochs are scaled to their steps.
        steps = run.fraction < FULL and self.config.epoch_budget == "steps" and trains(method)
        full = deal(FULL) if steps else folds
        every_t = self._keeps_timesteps(scenario)
        strategy, _ = parse_method(method)
        if strategy == ZERO_SHOT:  # nothing learnt from the target: one map for every fold
            crop = self._zero_shot_crop(scenario)
            same = self._maps(self.pretrained(scenario)[0], test_store, crop, every_t=every_t)
            maps = [same] * len(folds)
        else:
            maps = [
                self._fold_maps(
                    scenario,
                    method,
                    replace(run, fold=f, fold_at_full=whole.train),
                    ordering,
                    folder / f"{FOLD_PREFIX}{i}",
                )
                for i, (f, whole) in enumerate(zip(folds, full, strict=True), start=1)
            ]
        store = DatasetStore(test_store)
        held = [fold.held_out for fold in folds]
        patches = store.indices("test")
        merged = np.stack(
            [held_out_maps(held, [m[i] for m in maps], patches) for i in range(len(maps[0]))]
        )
        return self._scored(scenario, method, merged, keep_every_t=every_t)

    def _fold_maps(
        self, scenario: ScenarioSpec, method: str, run: _Run, ordering: str, folder: Path
    ) -> np.ndarray:
        """``method`` trained (or fitted) on ``run.fold``'s labels: its maps of the test split,
        ``(1, N, ...)`` of the full season, or ``(T, N, ...)`` of every ``t`` where the run
        keeps them."""
        assert run.fold is not None
        ft_store, _ = self.region_store(scenario.finetune)
        test_store, _ = self.region_store(scenario.test)
        strategy, _ = parse_method(method)
        if strategy in ("rf", "rf-features"):
            fit = self._forest if strategy == "rf" else self._feature_forest
            scored = fit(scenario, ft_store, test_store, run)
            return scored.probabilities[None] if scored.by_timestep is None else scored.by_timestep
        trained = self._train_method(scenario, method, run, ordering, folder)
        return self._maps(trained, test_store, every_t=self._keeps_timesteps(scenario))

    @staticmethod
    def _maps(
        checkpoint: Path, test_store: Path, crop: str | None = None, *, every_t: bool
    ) -> np.ndarray:
        """A network's test maps, ``(1, N, ...)`` of the full season or ``(T, N, ...)``."""
        if every_t:
            return network_timestep_probabilities(checkpoint, test_store, crop)
        return network_probabilities(checkpoint, test_store, crop)[None]

    def _forest(
        self, scenario: ScenarioSpec, ft_store: Path, test_store: Path, run: _Run
    ) -> _Scored:
        """Run i fits with seed ``baseline.seed + i`` through the API behind ``baseline`` (on
        the run's fold of parcels where it has one)."""
        from sarcrop.evaluation.baseline import run_baseline

        classes = self.config.classes_of(scenario)
        result = run_baseline(
            ft_store,
            self._forest_options(run, classes),
            test_store=test_store,
            bands=scenario.bands,
            positive=(scenario.crop,),
            timesteps="all" if run.fold is None or self._keeps_timesteps(scenario) else None,
            fold=run.fold,
        )
        if classes is not None:
            return _Scored(*forest_outputs(result))
        early = {str(t): c.as_dict() for t, c in result.confusions.items()}
        return _Scored(
            early,
            np.nan_to_num(result.probabilities()),
            self._every_timestep(scenario, result.probabilities, result.steps),
        )

    def _feature_forest(
        self, scenario: ScenarioSpec, ft_store: Path, test_store: Path, run: _Run
    ) -> _Scored:
        """The forest of ``_forest`` (same seed, same parcels) on the frozen pre-trained
        network's per-pixel features, through the API behind ``baseline --features``."""
        from sarcrop.evaluation.feature_forest import probability_maps, run_feature_forest

        checkpoint, _ = self.pretrained(scenario)
        classes = self.config.classes_of(scenario)
        result = run_feature_forest(
            checkpoint,
            ft_store,
            self._forest_options(run, classes),
            test_store=test_store,
            bands=scenario.bands,
            positive=(scenario.crop,),
            timesteps="all" if run.fold is None or self._keeps_timesteps(scenario) else None,
            raw=self.config.feature_forest.raw,
            fold=run.fold,
        )
        confusions = result.confusions if classes is None else result.class_confusions
        early = {str(t): c.as_dict() for t, c in confusions.items()}
        return _Scored(
            early,
            probability_maps(result),
            self._every_timestep(scenario, result.probabilities, result.steps),
        )

    def _forest_options(self, run: _Run, classes: tuple[str, ...] | None = None) -> BaselineOptions:
        """The forest's options for run i: seed ``baseline.seed + i``, the run's label share
        (and a crop-type scenario's classes)."""
        options = self.config.baseline
        changes: dict[str, Any] = {"seed": options.seed + run.seed}
        if classes is not None:
            changes["classes"] = classes
        if run.fraction < FULL and run.fold is None:  # a fold's labels carry the fraction
            changes["label_fraction"] = run.fraction
        return options.updated(**changes)

    def _zero_shot_crop(self, scenario: ScenarioSpec) -> str | None:
        """The crop a crop-type pre-training is read for as it is (its one-crop view), or
        None where the pre-training maps that one crop itself."""
        return scenario.crop if self.config.pretrain_of(scenario)[1].train.classes else None

    def _network_predictions(
        self, scenario: ScenarioSpec, method: str, checkpoint: Path, crop: str | None = None
    ) -> _Scored:
        """A network's maps of the test split at every ``t``, scored by :meth:`_scored`;
        ``crop`` reads a crop-type model for that one crop."""
        test_store, _ = self.region_store(scenario.test)
        maps = network_timestep_probabilities(checkpoint, test_store, crop)
        return self._scored(scenario, method, maps, keep_every_t=self._keeps_timesteps(scenario))

    def _scored(
        self, scenario: ScenarioSpec, method: str, maps: np.ndarray, *, keep_every_t: bool
    ) -> _Scored:
        """The per-``t`` confusions of ``method``'s test maps (``(T, N, ...)`` of every ``t``,
        or ``(1, N, ...)`` of the full season) at the threshold the run records for it, so
        that ``results.csv`` scores the very maps (and threshold) its intervals, comparisons
        and area estimates read."""
        from sarcrop.evaluation.metrics import empty_confusion
        from sarcrop.experiments.intervals import scenario_test_set

        test_store, _ = self.region_store(scenario.test)
        classes = self.config.classes_of(scenario)
        test = scenario_test_set(test_store, scenario.bands, classes or scenario.crop)
        last = test.store.steps
        steps = range(1, last + 1) if len(maps) == last else [last]
        cut = {} if classes else {"threshold": method_thresholds(self.config)[method]}
        confusions = {t: empty_confusion(classes) for t in steps}
        for item in range(len(test)):
            target, valid = (part[None] for part in test.target(item))  # no image read
            for at_t, confusion in zip(maps, confusions.values(), strict=True):
                confusion.update(at_t[item][None], target, valid, **cut)
        early = {str(t): confusion.as_dict() for t, confusion in confusions.items()}
        return _Scored(early, maps[-1], maps if keep_every_t else None)

    def _keeps_timesteps(self, scenario: ScenarioSpec) -> bool:
        """Whether runs of ``scenario`` keep their test maps at every ``t`` (and a held-out
        scenario scores every ``t``): with ``timestep_table``, in one-crop scenarios."""
        return self.config.timestep_table and self.config.classes_of(scenario) is None

    def _every_timestep(
        self, scenario: ScenarioSpec, maps: Callable[[int | None], np.ndarray], steps: int
    ) -> np.ndarray | None:
        """A forest's ``maps(t)`` for ``t = 1..steps`` where the run keeps them, else None."""
        if not self._keeps_timesteps(scenario):
            return None
        return np.stack([np.nan_to_num(maps(t)) for t in range(1, steps + 1)])

    # ------------------------------------------------------------------ the whole run

    def _units(self) -> Iterator[MethodUnit]:
        """Every method unit of the run, main runs first (seed by seed), then early season."""
        for scenario, method, seed, fraction in self.scenarios():
            yield MethodUnit(scenario, method, seed, None, fraction)
        early_spec = binary_view(self.config).early_season
        if early_spec is not None:
            scenario = binary_view(self.config).scenarios[early_spec.scenario]
            for seed in self.seeds:
                for ordering in early_spec.orderings:
                    yield MethodUnit(
                        scenario, early_spec.method, seed, ordering, self.early_season_fraction
                    )

    def _run_in_workers(self) -> None:
        """Compute every method unit in ``self.jobs`` worker processes; the sequential pass
        that follows then finds them all in the cache.

        Stores and pre-trainings are built here first, once, so that no two workers race to
        build the same one; each unit is then independent of the others and of the process
        that runs it (its seeds and torch threads are its own).
        """
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        for scenario in self.config.scenarios:
            self.region_store(scenario.finetune)
            self.region_store(scenario.test)
            if self.pretrains:
                self.pretrained(scenario)
        todo = {  # scenarios that differ in what a method ignores share its unit: once
            self._method_unit(unit).path: unit
            for unit in self._units()
            if not self._method_unit(unit).done
        }.values()
        if not todo:
            return
        self.computed += len(todo)
        context = multiprocessing.get_context("spawn")
        # Workers format warnings as the caller does, where pickle can carry the formatter.
        formatwarning = _picklable(self.formatwarning)
        stop = context.Event()
        workers = min(self.jobs, len(todo))
        threads = worker_threads(self.config.threads, workers)
        setup = (self.config, self.out, len(self.seeds), formatwarning, os.getpid(), stop)
        with ctrl_c_ignored():  # the workers, started here, leave Ctrl-C to this process
            pool = ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(*setup, threads),
            )
            futures = [pool.submit(_run_unit, unit) for unit in todo]
        with pool:
            try:
                for future in futures:
                    future.result()  # a failure in a worker stops the run with its error
            except BaseException:  # that, or Ctrl-C: the workers end their units now
                stop.set()
                pool.shutdown(cancel_futures=True)
                raise

    @property
    def early_season_fraction(self) -> float:
        """The label fraction of the early-season reruns: the largest of the run, the one its
        main tables show (every label where the run has them)."""
        return max(self.config.fractions)

    def scenarios(self) -> Iterator[tuple[ScenarioSpec, str, int, float]]:
        """Every main run: seed by seed, so a run cut short still has whole seeds."""
        for seed in self.seeds:
            for scenario in self.config.scenarios:
                for fraction in reversed(self.config.fractions):
                    for method in self.config.methods:
                        yield scenario, method, seed, fraction

    def run(self) -> ExperimentResult:
        from sarcrop.prediction.engine import torch_threads

        threads = self.config.threads
        with contextlib.nullcontext() if threads is None else torch_threads(threads):
            return self._run()

    def _run(self) -> ExperimentResult:
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        records: dict[UnitKey, dict[str, Any]] = {}  # binary scenarios' main runs
        every: dict[UnitKey, dict[str, Any]] = {}  # crop types' too (for their searches)
        types: CropTypeRuns = CropTypeRuns(self.config)
        for scenario in self.config.scenarios:
            self.check_ground(scenario)
            self.check_classes(scenario)
        if self.pretrains:
            for name in dict.fromkeys(self.config.pretrain_of(s)[0] for s in self.config.scenarios):
                self.check_pretraining_crop(name)
        if self.jobs > 1:
            self._run_in_workers()
        for scenario, method, seed, fraction in self.scenarios():
            record = self.run_method(scenario, method, seed, fraction=fraction)
            every[(scenario.id, method, seed, fraction)] = record
            if self.config.classes_of(scenario) is not None:
                test_store, _ = self.region_store(scenario.test)
                types.add(scenario, method, seed, fraction, record, test_store)
                continue
            records[(scenario.id, method, seed, fraction)] = record
            ordering = self.config.finetune_of(method).ordering if trains(method) else "n/a"
            rows += _rows(
                scenario, method, _Run(seed, fraction), record["early_season"], "main", ordering
            )
        early_spec = binary_view(self.config).early_season  # crop types: from the main runs
        if early_spec is not None:
            scenario = binary_view(self.config).scenarios[early_spec.scenario]
            fraction = self.early_season_fraction
            for seed in self.seeds:
                for ordering in early_spec.orderings:
                    record = self.run_method(
                        scenario, early_spec.method, seed, ordering, fraction=fraction
                    )
                    rows += _rows(
                        scenario,
                        early_spec.method,
                        _Run(seed, fraction),
                        record["early_season"],
                        "early-season",
                        ordering,
                    )
        if not self.computed:
            _log(f"every unit was cached in {self.out / 'cache'}: nothing trained or fitted")
        results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        from sarcrop.reports.html import REPORT

        # An earlier run's record and report go first: a run stopped before it writes its own
        # leaves no report of the old numbers beside the new results.
        for stale in (self.out / MANIFEST, self.out / REPORT):
            stale.unlink(missing_ok=True)
        write_text_atomic(self.out / "results.csv", results.to_csv(index=False))
        start = time.perf_counter()
        intervals = self._intervals(results, records)
        self.timer.add("bootstrap", time.perf_counter() - start)
        start = time.perf_counter()
        crop_types, class_markdown = types.write(self.out)
        self.timer.add("figures", time.perf_counter() - start)
        artefacts = self._record({**records, **types.records})
        start = time.perf_counter()
        compared = self._comparisons(artefacts)
        self.timer.add("bootstrap", time.perf_counter() - start)
        extra = [class_markdown, self._searches(every), self._timesteps(results), compared]
        tables = self._tables(results, intervals, "\n".join(text for text in extra if text))
        start = time.perf_counter()
        manifest = self._figures(results, artefacts)
        if crop_types:
            manifest["crop_types"] = crop_types
        manifest["timestep_table"] = self.config.timestep_table
        self.timer.add("figures", time.perf_counter() - start)
        # "total" is the compute behind the results (cached units count with their recorded
        # time); "this run" is the wall time of this invocation, short when units were cached.
        self.timer.add("total", sum(self.timer.seconds.values()))
        self.timer.add("this run", time.perf_counter() - started)
        manifest["timings"] = {k: round(v, 2) for k, v in self.timer.seconds.items()}
        write_text_atomic(self.out / MANIFEST, json.dumps(manifest, indent=2, default=str))
        report = self._report()
        return ExperimentResult(self.out, results, tables, report, dict(self.timer.seconds))

    def _intervals(
        self, results: pd.DataFrame, records: dict[UnitKey, dict[str, Any]]
    ) -> pd.DataFrame:
        """Parcel-bootstrap intervals of each mean over seeds, written to ``intervals.csv``, and
        every run's score per test parcel, to ``parcels.csv``."""
        from sarcrop.evaluation.parcel_scores import SplitTruth
        from sarcrop.experiments.intervals import (
            INTERVAL_COLUMNS,
            INTERVALS,
            PAIRED_COLUMNS,
            PARCEL_COLUMNS,
            PARCELS,
            TIMESTEP_COLUMNS,
            TIMESTEP_INTERVALS,
            scenario_intervals,
            scenario_parcels,
            scenario_test_set,
            timestep_intervals,
        )

        frames = [pd.DataFrame(columns=[*INTERVAL_COLUMNS, *PAIRED_COLUMNS])]
        by_timestep = [pd.DataFrame(columns=[*TIMESTEP_COLUMNS, *PAIRED_COLUMNS])]
        parcels = [pd.DataFrame(columns=list(PARCEL_COLUMNS))]
        thresholds = method_thresholds(self.config)
        for scenario in binary_view(self.config).scenarios:
            test_store, _ = self.region_store(scenario.test)
            truth = SplitTruth.of(scenario_test_set(test_store, scenario.bands, scenario.crop))
            units = {
                (method, fraction, seed): Path(record["probabilities"])
                for (sid, method, seed, fraction), record in records.items()
                if sid == scenario.id
            }
            split = (truth.target, truth.parcels)
            frames.append(scenario_intervals(scenario, split, units, results, thresholds))
            parcels.append(scenario_parcels(scenario, truth, units, thresholds))
            if self._keeps_timesteps(scenario):
                maps = {
                    (method, fraction, seed): Path(record["timestep_probabilities"])
                    for (sid, method, seed, fraction), record in records.items()
                    if sid == scenario.id
                }
                by_timestep.append(timestep_intervals(scenario, split, maps, results, thresholds))
        intervals = pd.concat(frames, ignore_index=True)
        write_text_atomic(self.out / INTERVALS, intervals.to_csv(index=False))
        if self.config.timestep_table:
            table = pd.concat(by_timestep, ignore_index=True)
            write_text_atomic(self.out / TIMESTEP_INTERVALS, table.to_csv(index=False))
        table = pd.concat(parcels, ignore_index=True)
        write_text_atomic(self.out / PARCELS, table.to_csv(index=False))
        return intervals

    def _searches(self, records: dict[UnitKey, dict[str, Any]]) -> str:
        """``searches.csv``: what each network run chose on held-out parcels (where
        ``finetune:`` searches); its counts for ``tables.md``."""
        from sarcrop.experiments.searches import search_rows
        from sarcrop.reports.markdown import SEARCHES, search_markdown

        if not any(self.config.finetune_of(m).searches for m in self.config.methods):
            (self.out / SEARCHES).unlink(missing_ok=True)  # an earlier config's: not this run's
            return ""
        searches = search_rows({key: r for key, r in records.items() if trains(key[1])})
        write_text_atomic(self.out / SEARCHES, searches.to_csv(index=False))
        return search_markdown(searches)

    def _timesteps(self, results: pd.DataFrame) -> str:
        """The IoU at every number of observed composites, where the config asks for it."""
        from sarcrop.experiments.intervals import TIMESTEP_INTERVALS
        from sarcrop.reports.markdown import timesteps_markdown

        if not self.config.timestep_table:
            return ""
        path = self.out / TIMESTEP_INTERVALS
        intervals = pd.read_csv(path) if path.is_file() else None
        return timesteps_markdown(results, intervals, self.sources)

    def _tables(self, results: pd.DataFrame, intervals: pd.DataFrame, extra: str = "") -> Path:
        from sarcrop.reports.markdown import tables_markdown

        text = tables_markdown(self.config.name, results, self.sources, intervals=intervals)
        return write_text_atomic(self.out / "tables.md", f"{text}\n{extra}" if extra else text)

    def _report(self) -> Path | None:
        try:
            from sarcrop.reports.html import render_report
        except ImportError:  # pragma: no cover - the report module ships with sarcrop
            return None
        return render_report(self.out)

    # ------------------------------------------------------------------ figures

    def _comparisons(self, record: RunRecord) -> str:
        """``comparisons.csv``: the config's paired comparisons (``comparisons:``), read from
        the run's record as ``sarcrop compare`` reads it; their ``tables.md`` section."""
        from sarcrop.experiments.compare import COMPARISONS, configured_comparisons
        from sarcrop.reports.markdown import comparisons_markdown

        if not self.config.comparisons:  # an earlier config's would show in the report
            (self.out / COMPARISONS).unlink(missing_ok=True)
            return ""
        table = configured_comparisons(record, self.config.comparisons)
        write_text_atomic(self.out / COMPARISONS, table.to_csv(index=False))
        return comparisons_markdown(table)

    def _figures(self, results: pd.DataFrame, record: RunRecord) -> dict[str, Any]:
        """Draw figures from a record of this run's artefacts (never from the runner itself)."""
        from sarcrop.experiments.figures import ExperimentFigures

        return ExperimentFigures(record).write(results)

    def _record(self, records: Mapping[UnitKey, Mapping[str, Any]]) -> RunRecord:
        """The record of this run's artefacts (``records``: every scenario's runs): what
        figures, comparisons and the report read."""
        units = [
            UnitRecord(
                scenario,
                method,
                seed,
                str(record["probabilities"]),
                str(log) if (log := Path(record["metrics_csv"])).is_file() else None,
                record.get("checkpoint"),
                fraction,
                None if (maps := record.get("timestep_probabilities")) is None else str(maps),
            )
            for (scenario, method, seed, fraction), record in records.items()
        ]
        return build_record(
            self.config,
            self.out,
            stores={name: path for name, (path, _) in self._stores.items()},
            units=units,
            seeds=self.seeds,
            pretrained={name: path for name, (path, _) in self._pretrained.items()},
            config_file=self.config_file,
        )


def held_out_maps(
    held_out: Sequence[LabelMask], maps: Sequence[np.ndarray], patches: Sequence[int]
) -> np.ndarray:
    """One map from the folds' maps of the same ``patches``: each held-out pixel from the fold
    that held it out, every other pixel the folds' mean. Maps are probabilities ``(N, H, W)``
    or, of crop types, ``(N, K, H, W)``."""
    out = np.mean(np.stack(maps), axis=0)
    for mask, probabilities in zip(held_out, maps, strict=True):
        held = mask.keep[list(patches)]
        if probabilities.ndim == held.ndim + 1:  # a class axis: pick pixels, keep classes
            np.moveaxis(out, 1, -1)[held] = np.moveaxis(probabilities, 1, -1)[held]
        else:
            out[held] = probabilities[held]
    return out


def constant_step_epochs(
    store: Path,
    config: TrainConfig,
    positive: Sequence[str],
    *,
    mask: LabelMask | None = None,
    full: LabelMask | None = None,
) -> int:
    """Epochs that give a ``config.label_fraction`` run the optimizer steps of a full-label run.

    A few-label run trains only on the patches that keep a label (the others are dropped), so
    at the same epochs it takes fewer steps; this scales the epochs by the ratio of batches.
    A fold of held-out fields gives its labels at the run's fraction (``mask``) and at every
    label (``full``): the ratio is then of the patches each keeps a label on.
    """
    from sarcrop.data.parcels import label_subset
    from sarcrop.data.store import DatasetStore

    data = DatasetStore(store)
    indices = data.indices("train")
    if mask is None:
        mask = label_subset(
            data, config.label_fraction, config.seed, positive=positive, classes=config.classes
        )

    def labelled(keep: LabelMask) -> int:
        return sum(bool(np.any(keep.apply(i, data.read_labels(i)) >= 0)) for i in indices)

    every = len(indices) if full is None else labelled(full)
    whole = math.ceil(max(every, 1) / config.batch_size)
    few = math.ceil(max(labelled(mask), 1) / config.batch_size)
    return max(1, round(config.epochs * whole / few))


def method_thresholds(config: ExperimentConfig) -> dict[str, float]:
    """The probability threshold of each method's metrics: the forest's or the networks', as
    a run's record gives them; the early-season curve's method too, listed in ``methods``
    or not."""
    return recorded_thresholds(config.model_dump(mode="json"), config.every_method())


UnitKey = tuple[str, str, int, float]
"""A main-run unit: scenario id, method, seed, label fraction."""


@dataclass(frozen=True)
class _Scored:
    """A method run's test-split scores: per-``t`` confusions, the full-season probability
    maps and, where the run keeps them, the maps of every ``t`` (``(T, N, H, W)``)."""

    early: dict[str, dict[str, Any]]
    probabilities: np.ndarray
    by_timestep: np.ndarray | None = None


@dataclass(frozen=True)
class _Run:
    """Which run of a method: its seed index, the share of labelled parcels it uses and, in a
    held-out scenario, the fold of parcels it learns from (``fraction`` is then the fold's)."""

    seed: int
    fraction: float = FULL
    fold: ParcelFold | None = field(default=None, compare=False)
    # The fold's training labels at every label, which ``epoch_budget: steps`` scales from.
    fold_at_full: LabelMask | None = field(default=None, compare=False)


@dataclass(frozen=True)
class MethodUnit:
    """One method run to compute: scenario, method, seed, batch order (None: the fine-tuning
    config's), label fraction. Picklable, so worker processes can be handed it."""

    scenario: ScenarioSpec
    method: str
    seed: int
    ordering: str | None
    fraction: float


def _picklable(formatter: Callable[..., str]) -> Callable[..., str] | None:
    """``formatter``, or None where pickle cannot hand it to a worker: the standard library's
    own once Lightning has put its formatter in its place (pickle finds a function by its
    name), or a formatter defined inside a function. A worker then keeps its own default."""
    try:
        pickle.dumps(formatter)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return formatter


def worker_threads(threads: int | None, workers: int) -> int:
    """Torch threads of each worker process: ``threads``, or the available cores shared among
    the workers. Threads that outnumber the cores wait on each other: two workers of two
    threads each on two cores took over twice the time of one thread each (docs/performance.md,
    "Experiments on several workers")."""
    return threads or max(1, available_cores() // workers)


# The runner of a worker process (see ExperimentRunner._run_in_workers).
_worker: ExperimentRunner | None = None


def _start_worker(
    config: ExperimentConfig,
    out: Path,
    seeds: int,
    formatwarning: Callable[..., str] | None,
    parent: int,
    stop: Event,
    threads: int,
) -> None:
    global _worker
    threading.Thread(target=_stop_without, args=(parent, stop), daemon=True).start()
    if formatwarning is not None:
        warnings.formatwarning = formatwarning
    import torch

    torch.set_num_threads(threads)
    _worker = ExperimentRunner(config, out, seeds=seeds, jobs=1)


def _stop_without(parent: int, stop: Event) -> None:
    """End this worker once the run that started it says ``stop`` (Ctrl-C, or another
    worker's failure), or is gone (``parent``, named by the run itself in case it is gone
    before this worker starts): a SIGTERM (a scheduler's, or ``timeout``'s) reaches that
    process alone, and the worker would train on for nobody."""
    while os.getppid() == parent and not stop.wait(0.5):
        pass
    os._exit(1)


def _run_unit(unit: MethodUnit) -> None:
    assert _worker is not None, "worker not started"
    _worker.run_method(unit.scenario, unit.method, unit.seed, unit.ordering, unit.fraction)


def _rows(
    scenario: ScenarioSpec,
    method: str,
    which: _Run,
    early: dict[str, dict[str, float]],
    run: str,
    ordering: str,
) -> list[dict[str, Any]]:
    rows = []
    for t, metrics in early.items():
        for metric in METRICS:
            value = metrics.get(metric)
            rows.append(
                {
                    "scenario": scenario.id,
                    "finetune_region": scenario.finetune,
                    "test_region": scenario.test,
                    "crop": scenario.crop,
                    "bands": scenario.band_label,
                    "method": method,
                    "metric": metric,
                    "timestep": int(t),
                    "seed": which.seed,
                    "value": float("nan") if value is None else float(value),
                    "run": run,
                    "ordering": ordering,
                    "label_fraction": which.fraction,
                }
            )
    return rows


def run_experiment(
    config: str | Path | ExperimentConfig,
    out_dir: str | Path,
    *,
    seeds: int | None = None,
    progress: bool = False,
    data_root: str | Path | None = None,
    jobs: int | None = None,
) -> ExperimentResult:
    """Run an experiment config (a YAML path or a validated object) into ``out_dir``.

    ``data_root`` replaces a YAML config's ``data_root`` (where its real data is), ``jobs``
    its number of worker processes.
    """
    config_file = None
    if not isinstance(config, ExperimentConfig):
        config_file = Path(config)
        config = load_experiment_config(config_file, data_root=data_root)
    runner = ExperimentRunner(
        config, Path(out_dir), config_file=config_file, seeds=seeds, progress=progress, jobs=jobs
    )
    return runner.run()


def scenario_ids(scenarios: Sequence[ScenarioSpec]) -> list[str]:
    return [s.id for s in scenarios]
