"""Paired comparisons of two methods of a finished run, pooled over scenarios (``sarcrop compare``).

``intervals.csv`` (and ``class_intervals.csv`` for crop types) pairs every method with RI and
RF within one scenario. Whether a method beats another over several test locations at once, or
whether one pre-training's method beats another's on the same test parcels, is a comparison of
two *arms*: a method at a label fraction in some scenarios. One-crop scenarios are compared by
a metric of the crop (IoU by default), crop-type scenarios by their mIoU. Each scenario of arm
A is paired with the scenario of arm B that is scored on the same test split (the same one,
unless B names its own scenarios), both arms' seeds are scored on the same parcel draws, and
the pairs are pooled with each weighing the same
(:func:`sarcrop.evaluation.bootstrap.pooled_difference`). Everything is read from the run
directory: its record, its saved test maps and its stores; nothing is trained or predicted.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from sarcrop.data.parcels import ScoredParcels, ground_fields
from sarcrop.errors import SarcropError
from sarcrop.evaluation.bootstrap import (
    MIOU,
    Difference,
    PairedTestSet,
    check_compared,
    pooled_difference,
)
from sarcrop.evaluation.metrics import METRICS, EvaluationInputError
from sarcrop.evaluation.parcel_scores import SplitTruth
from sarcrop.experiments.config import method_id
from sarcrop.experiments.intervals import DRAWS, LEVEL, METRIC, scenario_test_set
from sarcrop.experiments.record import RunRecord, ScenarioRecord, UnitRecord, load_recorded

if TYPE_CHECKING:
    from sarcrop.experiments.config import ComparisonSpec

COMPARISONS = "comparisons.csv"


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: ``method``'s runs at ``fraction`` of the labels, in the
    scenarios whose ids match one of ``scenarios`` (shell-style patterns, e.g.
    ``"flanders*-from-early"``; empty: every scenario of the metric's kind where the method
    ran: one-crop ones, or crop-type ones for the mIoU)."""

    method: str
    fraction: float = 1.0
    scenarios: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", method_id(self.method))


@dataclass(frozen=True)
class BootstrapSettings:
    """The parcel bootstrap of a comparison; the defaults are those of ``intervals.csv``."""

    draws: int = DRAWS
    seed: int = 0
    level: float = LEVEL


@dataclass(frozen=True)
class Comparison:
    """A − B in ``metric`` at one number of observed composites (``timestep``; None: the full
    season), pooled over ``pairs`` of (A's scenario, B's scenario), each scored on one test
    split."""

    a: Arm
    b: Arm
    metric: str
    timestep: int | None
    pairs: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]
    difference: Difference
    bootstrap: BootstrapSettings = BootstrapSettings()

    def as_row(self) -> dict[str, Any]:
        """One row of :data:`COMPARISON_COLUMNS`."""
        d = self.difference
        return {
            "a": label(self.a),
            "b": label(self.b),
            "a_scenarios": " ".join(self.a.scenarios),
            "b_scenarios": " ".join(self.b.scenarios),
            "metric": self.metric,
            "timestep": "full" if self.timestep is None else self.timestep,
            "scenarios": len(self.pairs),
            "seeds": len(self.seeds),
            "n_parcels": d.n_parcels,
            "mean_a": d.mean_a,
            "mean_b": d.mean_b,
            "difference": d.estimate,
            "low": d.low,
            "high": d.high,
            "p_above": d.p_above,
            "level": self.bootstrap.level,
            "draws": self.bootstrap.draws,
            "bootstrap_seed": self.bootstrap.seed,
            "pairs": "; ".join(a if a == b else f"{a} | {b}" for a, b in self.pairs),
        }


COMPARISON_COLUMNS = (
    "a",
    "b",
    "a_scenarios",  # A's patterns (empty: every scenario of the metric's kind with A's runs)
    "b_scenarios",  # B's patterns (empty: A's scenarios)
    "metric",  # of the crop (iou, f1, precision, recall), or miou of crop-type maps
    "timestep",
    "scenarios",
    "seeds",
    "n_parcels",
    "mean_a",
    "mean_b",
    "difference",
    "low",
    "high",
    "p_above",
    "level",  # of the interval [low, high]
    "draws",  # of the parcel bootstrap
    "bootstrap_seed",
    "pairs",
)


def label(arm: Arm) -> str:
    """``method@fraction``, e.g. ``bias@0.25``."""
    return f"{arm.method}@{arm.fraction:g}"


class RunComparisons:
    """Paired comparisons of one finished run (its directory or its record), each test split's
    targets and parcels read once for all of them."""

    def __init__(self, run: str | Path | RunRecord) -> None:
        self.record = run if isinstance(run, RunRecord) else RunRecord.read(run)
        self._truths: dict[str, _Truth] = {}
        self._fields: dict[tuple[str, ...], list[np.ndarray]] = {}

    def compare(
        self,
        a: Arm,
        b: Arm,
        *,
        metric: str = METRIC,
        timesteps: int | Sequence[int] | Literal["all"] | None = None,
        bootstrap: BootstrapSettings = BootstrapSettings(),
    ) -> list[Comparison]:
        """A − B pooled over A's scenarios, one :class:`Comparison` per ``t``
        (:func:`compare_methods`)."""
        record = self.record
        _check_metric(record, metric, timesteps)
        pairs = scenario_pairs(record, a, b, metric)
        thresholds = record.thresholds
        threshold = (thresholds.get(a.method, 0.5), thresholds.get(b.method, 0.5))
        runs = [
            (_runs(record, a, first, metric), _runs(record, b, second, metric))
            for first, second in pairs
        ]
        seeds = _shared_seeds(record, runs, pairs, (a, b))
        truths = [self._truth(first) for first, _ in pairs]
        fields = self._ground_fields(tuple(first for first, _ in pairs))
        comparisons = []
        for t in _timesteps(record, runs, timesteps):
            test_sets = [
                PairedTestSet(
                    _maps(record, ours, t),
                    _maps(record, theirs, t),
                    truth.target,
                    truth.scored.parcels,
                    truth.classes,
                    ids,
                )
                for (ours, theirs), truth, ids in zip(runs, truths, fields, strict=True)
            ]
            difference = pooled_difference(
                test_sets,
                metric=metric,
                n=bootstrap.draws,
                seed=bootstrap.seed,
                level=bootstrap.level,
                threshold=threshold,
            )
            comparisons.append(
                Comparison(a, b, metric, t, tuple(pairs), seeds, difference, bootstrap)
            )
        return comparisons

    def of_spec(
        self, spec: ComparisonSpec, bootstrap: BootstrapSettings = BootstrapSettings()
    ) -> list[Comparison]:
        """The comparison a :class:`~sarcrop.experiments.config.ComparisonSpec` names: one
        entry of a config's ``comparisons:``, or the options of ``sarcrop compare``."""
        a = Arm(spec.a, spec.fraction, spec.scenarios)
        b_fraction = spec.fraction if spec.b_fraction is None else spec.b_fraction
        b = Arm(spec.b, b_fraction, spec.b_scenarios)
        return self.compare(a, b, metric=spec.metric, timesteps=spec.timesteps, bootstrap=bootstrap)

    def _truth(self, scenario_id: str) -> _Truth:
        """What the scenario's test split is, read once."""
        if scenario_id not in self._truths:
            record = self.record
            scenario = next(s for s in _every_scenario(record) if s.id == scenario_id)
            store = record.path(record.regions[scenario.test_region].store)
            test = scenario_test_set(store, scenario.bands, scenario.classes or scenario.crop)
            truth = SplitTruth.of(test)
            scored = ScoredParcels(test.store, truth.parcels)
            self._truths[scenario_id] = _Truth(truth.target, scored, scenario.classes)
        return self._truths[scenario_id]

    def _ground_fields(self, scenario_ids: tuple[str, ...]) -> list[np.ndarray]:
        """The fields on the ground of these scenarios' test splits (shared ids where they
        overlap), matched once per set of scenarios."""
        if scenario_ids not in self._fields:
            scored = [self._truth(i).scored for i in scenario_ids]
            self._fields[scenario_ids] = ground_fields(scored)
        return self._fields[scenario_ids]


@dataclass(frozen=True)
class _Truth:
    """A test split's targets, where its parcels lie, and its classes (None: one crop)."""

    target: np.ndarray
    scored: ScoredParcels
    classes: tuple[str, ...] | None


def compare_methods(
    run: str | Path | RunRecord,
    a: Arm,
    b: Arm,
    *,
    metric: str = METRIC,
    timesteps: int | Sequence[int] | Literal["all"] | None = None,
    bootstrap: BootstrapSettings = BootstrapSettings(),
) -> list[Comparison]:
    """A − B of a finished run, pooled over A's scenarios, one :class:`Comparison` per ``t``.

    ``metric``: of the crop in one-crop scenarios (``iou``, ``f1``, ``precision``,
    ``recall``), or ``miou`` to compare crop-type scenarios (full season only).
    ``timesteps``: None for the full-season maps, ``t`` (or several) for the maps from the
    first ``t`` composites, ``"all"`` for every ``t``; the per-``t`` maps are those a config with
    ``timestep_table: true`` keeps. Errors name what is missing: a scenario no pattern matches,
    a method without runs there, a B scenario that is not scored on A's test split. ``run`` is
    the run directory or its record; :class:`RunComparisons` makes several of one run.
    """
    return RunComparisons(run).compare(
        a, b, metric=metric, timesteps=timesteps, bootstrap=bootstrap
    )


def comparison_table(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """The comparisons as rows of :data:`COMPARISON_COLUMNS`."""
    return pd.DataFrame([c.as_row() for c in comparisons], columns=list(COMPARISON_COLUMNS))


def configured_comparisons(record: RunRecord, specs: Sequence[ComparisonSpec]) -> pd.DataFrame:
    """The rows of a config's ``comparisons:`` (``comparisons.csv``), with the bootstrap of
    ``intervals.csv``."""
    runs = RunComparisons(record)
    return comparison_table([c for spec in specs for c in runs.of_spec(spec)])


def scenario_pairs(
    record: RunRecord, a: Arm, b: Arm, metric: str = METRIC
) -> list[tuple[str, str]]:
    """(A's scenario, B's scenario) for each scenario of A: B's is the same one, or, where B
    names scenarios of its own, the one of those scored on the same test split."""
    ours = _scenarios(record, a, metric)
    if not b.scenarios:
        return [(s.id, s.id) for s in ours]
    theirs = _scenarios(record, b, metric)
    pairs = []
    for scenario in ours:
        same = [s for s in theirs if _test_split(s) == _test_split(scenario)]
        if len(same) != 1:
            found = ", ".join(s.id for s in same) or "none"
            raise SarcropError(
                f"scenario {scenario.id}: B's scenarios need exactly one scored on its test "
                f"split ({scenario.test_region}, {scenario.crop}, "
                f"{'|'.join(scenario.bands)}); found {found}",
                record.root,
            )
        pairs.append((scenario.id, same[0].id))
    return pairs


def _scenarios(record: RunRecord, arm: Arm, metric: str) -> list[ScenarioRecord]:
    """The scenarios ``arm`` names, in the run's order: one-crop ones, or crop-type ones where
    the metric is the mIoU."""
    scenarios, units = _of_kind(record, metric)
    if not scenarios and not arm.scenarios:
        instead = ", ".join(METRICS) if metric == MIOU else MIOU
        raise SarcropError(
            f"the run has no {_kind(metric)} scenario to compare by {metric}: compare its "
            f"scenarios by {instead}",
            record.root,
        )
    if not arm.scenarios:
        chosen = [s for s in scenarios if any(_of(u, s, arm) for u in units)]
        if not chosen:
            raise SarcropError(
                f"{label(arm)}: no {_kind(metric)} scenario has runs of {arm.method} with "
                f"{100 * arm.fraction:g} % of the labels (methods: {', '.join(record.methods)}; "
                f"fractions: {', '.join(f'{f:g}' for f in _fractions(units))})",
                record.root,
            )
        return chosen
    every = _every_scenario(record)
    ids = [s.id for s in every]
    for pattern in arm.scenarios:
        if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
            raise SarcropError(
                f"{label(arm)}: no scenario matches {pattern!r} (scenarios: {', '.join(ids)})",
                record.root,
            )
    chosen = [s for s in every if any(fnmatch.fnmatchcase(s.id, p) for p in arm.scenarios)]
    other = next((s for s in chosen if s not in scenarios), None)
    if other is not None and metric == MIOU:
        raise SarcropError(
            f"scenario {other.id} maps one crop ({other.crop}): compare it by "
            f"{', '.join(METRICS)}, not {MIOU}",
            record.root,
        )
    if other is not None:
        raise SarcropError(
            f"scenario {other.id} maps crop types: compare it by {MIOU}", record.root
        )
    return chosen


def _of_kind(
    record: RunRecord, metric: str
) -> tuple[tuple[ScenarioRecord, ...], tuple[UnitRecord, ...]]:
    """The scenarios a metric compares, and their runs: crop-type ones for the mIoU."""
    if metric == MIOU:
        return record.class_scenarios, record.class_units
    return record.scenarios, record.units


def _every_scenario(record: RunRecord) -> tuple[ScenarioRecord, ...]:
    return (*record.scenarios, *record.class_scenarios)


def _fractions(units: Sequence[UnitRecord]) -> list[float]:
    return sorted({u.label_fraction for u in units})


def _kind(metric: str) -> str:
    return "crop-type" if metric == MIOU else "one-crop"


def _check_metric(
    record: RunRecord, metric: str, timesteps: int | Sequence[int] | str | None
) -> None:
    """A metric of the crop or the mIoU; crop-type runs keep full-season maps only."""
    try:
        check_compared(metric)
    except EvaluationInputError as exc:
        raise SarcropError(exc.problem, record.root) from None
    if metric == MIOU and timesteps is not None:
        raise SarcropError(
            "timesteps: crop-type runs keep their full-season maps only; compare their mIoU "
            "without timesteps",
            record.root,
        )


def _of(unit: UnitRecord, scenario: ScenarioRecord, arm: Arm) -> bool:
    return (unit.scenario, unit.method, unit.label_fraction) == (
        scenario.id,
        arm.method,
        arm.fraction,
    )


def _test_split(scenario: ScenarioRecord) -> tuple[str, str, tuple[str, ...]]:
    """What a scenario is scored on: its test region's test split, for its crop and bands."""
    return scenario.test_region, scenario.crop, tuple(scenario.bands)


def _runs(record: RunRecord, arm: Arm, scenario_id: str, metric: str) -> dict[int, UnitRecord]:
    """Seed → ``arm``'s run in the scenario."""
    scenarios, units = _of_kind(record, metric)
    scenario = next(s for s in scenarios if s.id == scenario_id)
    runs = {u.seed: u for u in units if _of(u, scenario, arm)}
    if not runs and arm.method not in record.methods:
        raise SarcropError(
            f"{label(arm)}: no method {arm.method} in this run (methods: "
            f"{', '.join(record.methods)})",
            record.root,
        )
    if not runs:
        raise SarcropError(
            f"{label(arm)}: {arm.method} has no runs with {100 * arm.fraction:g} % of the "
            f"labels in scenario {scenario_id}",
            record.root,
        )
    return runs


def _shared_seeds(
    record: RunRecord,
    runs: Sequence[tuple[dict[int, UnitRecord], dict[int, UnitRecord]]],
    pairs: Sequence[tuple[str, str]],
    arms: tuple[Arm, Arm],
) -> tuple[int, ...]:
    """The seeds both arms ran in every pair (they must be the same)."""
    a, b = arms
    seeds: set[int] = set()
    for (ours, theirs), (first, second) in zip(runs, pairs, strict=True):
        if set(ours) != set(theirs):
            raise SarcropError(
                f"{label(a)} in {first} ran seeds {sorted(ours)}, {label(b)} in {second} "
                f"seeds {sorted(theirs)}: a paired comparison needs the same seeds",
                record.root,
            )
        seeds |= set(ours)
    return tuple(sorted(seeds))


def _timesteps(
    record: RunRecord,
    runs: Sequence[tuple[dict[int, UnitRecord], dict[int, UnitRecord]]],
    wanted: int | Sequence[int] | Literal["all"] | None,
) -> list[int | None]:
    """The numbers of observed composites to compare at (None: the full-season maps)."""
    if wanted is None:
        return [None]
    units = [u for pair in runs for side in pair for u in side.values()]
    missing = [u for u in units if u.timestep_probabilities is None]
    if missing:
        raise SarcropError(
            f"scenario {missing[0].scenario}, {missing[0].method}: no maps per number of observed "
            "composites (the run's config needs timestep_table: true)",
            record.root,
        )
    path = record.path(units[0].timestep_probabilities or "")
    steps = int(load_recorded(path, mmap_mode="r").shape[0])
    chosen = list(range(1, steps + 1)) if wanted == "all" else _as_list(wanted)
    outside = [t for t in chosen if not 1 <= t <= steps]
    if outside:
        raise SarcropError(f"timesteps {outside}: the run's maps have t = 1..{steps}", record.root)
    return list(chosen)


def _as_list(wanted: int | Sequence[int] | str) -> list[int]:
    if isinstance(wanted, str):
        raise SarcropError(f"timesteps: expected a number, numbers or 'all', got {wanted!r}")
    return [wanted] if isinstance(wanted, int) else [int(t) for t in wanted]


def _maps(record: RunRecord, runs: dict[int, UnitRecord], t: int | None) -> list[np.ndarray]:
    """Each seed's test probabilities, in seed order: full season, or from the first ``t``."""
    maps = []
    for seed in sorted(runs):
        unit = runs[seed]
        if t is None:
            maps.append(load_recorded(record.path(unit.probabilities)).astype(np.float32))
        else:
            by_t = load_recorded(record.path(unit.timestep_probabilities or ""), mmap_mode="r")
            maps.append(np.asarray(by_t[t - 1], dtype=np.float32))
    return maps
