"""Parcel-bootstrap intervals of an experiment's means over seeds (``intervals.csv``).

A test location holds a few dozen fields, so the uncertainty of a mean IoU is that of a few
dozen samples: each interval resamples the test split's parcels (connected label components,
:func:`sarcrop.data.parcels.store_parcels`) and scores every seed's saved probabilities on the
same draw (:mod:`sarcrop.evaluation.bootstrap`). All groups use the same bootstrap seed, so
methods of one scenario are scored on the same parcel draws.

Intervals of two methods overlap when the test set is small even where one method is better
on every draw, so each row also compares its method with the baselines (:data:`BASELINES`) at
the same label fraction, paired on the same draws: the difference of the means
(``minus_ri``), its interval (``minus_ri_low``, ``minus_ri_high``) and the share of draws in
which the method scores above the baseline (``p_above_ri``); the same for ``rf``.

Where the config asks for ``timestep_table``, ``timestep_intervals.csv`` holds the same rows at
every number of observed composites ``t`` (:func:`timestep_intervals`).

Crop-type scenarios get theirs in ``class_intervals.csv`` (:func:`class_intervals`): the IoU of
each class and the mIoU, with the same parcels, draws and level, and the mIoU's paired
differences to the baselines in the same columns.

A test split whose crop lies in fewer than :data:`~sarcrop.evaluation.bootstrap.MIN_PARCELS`
parcels has no interval: every draw holds that one field or none, so the bounds (and the
paired ones) are left empty, as ``evaluate`` leaves them, not given a width that means nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import pandas as pd

from sarcrop.evaluation.bootstrap import MIN_PARCELS, Difference, Interval
from sarcrop.evaluation.parcel_scores import SplitTruth, class_parcels
from sarcrop.evaluation.tables import Cell
from sarcrop.experiments.config import ScenarioSpec

if TYPE_CHECKING:
    from sarcrop.data.dataset import PatchDataset

INTERVALS = "intervals.csv"
INTERVAL_COLUMNS = (
    "scenario",
    "method",
    "label_fraction",
    "metric",
    "seeds",
    "mean",
    "std",
    "low",
    "high",
    "n_parcels",
    "level",
)
BASELINES = ("ri", "rf")
"""The methods every other one is compared with, paired on the same parcel draws."""
PAIRED_COLUMNS = tuple(
    column
    for b in BASELINES
    for column in (f"minus_{b}", f"minus_{b}_low", f"minus_{b}_high", f"p_above_{b}")
)
METRIC = "iou"
LEVEL = 0.95
DRAWS = 1000


class _Settings(TypedDict):
    n: int
    seed: int
    level: float


class _Bootstrap(_Settings):
    metric: str


# The settings of every interval and paired difference in intervals.csv.
BOOTSTRAP: _Bootstrap = {"metric": METRIC, "n": DRAWS, "seed": 0, "level": LEVEL}


def _summary(values: pd.Series, interval: Interval, seeds: int) -> dict[str, object]:
    """The columns every interval row shares: seeds, mean ± std of ``values`` over seeds and
    the bootstrap ``interval`` of that mean."""
    cell = Cell.of(values)
    return {
        "seeds": seeds,
        "mean": cell.value,
        "std": cell.spread,
        "low": interval.low,
        "high": interval.high,
        "n_parcels": interval.n_parcels,
        "level": LEVEL,
    }


def split_parcels(
    store: Path, bands: tuple[str, ...], crop_or_classes: str | Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and parcel ids of the test split, parcels -1 where metrics ignore pixels.

    ``crop_or_classes`` is the crop (targets 0/1) or a list of classes (class indices; pixels of
    a class outside the list are ignored unless it names ``other``)."""
    truth = SplitTruth.of(scenario_test_set(store, bands, crop_or_classes))
    return truth.target, truth.parcels


def scenario_test_set(
    store: Path, bands: tuple[str, ...], crop_or_classes: str | Sequence[str]
) -> PatchDataset:
    """The test split as a scenario's methods are scored on it."""
    from sarcrop.data.dataset import PatchDataset

    if isinstance(crop_or_classes, str):
        return PatchDataset(store, "test", (crop_or_classes,), bands)
    return PatchDataset(store, "test", bands=bands, classes=list(crop_or_classes))


def scenario_intervals(
    scenario: ScenarioSpec,
    split: tuple[np.ndarray, np.ndarray],
    units: Mapping[tuple[str, float, int], Path],
    results: pd.DataFrame,
    thresholds: Mapping[str, float],
) -> pd.DataFrame:
    """One row per method × label fraction of ``scenario``: mean ± std over seeds, the CI and
    the paired differences to the baselines.

    ``split`` is :func:`split_parcels` of the test store; ``units`` maps (method, fraction,
    seed) to the saved test probabilities of that run; ``results`` gives the means (the long
    results of the main run).
    """
    main = _main_rows(results, scenario.id)
    full = main[main["timestep"] == main["timestep"].max()]
    rows = _interval_rows(scenario.id, split, full, lambda key: np.load(units[key]), thresholds)
    return pd.DataFrame(rows, columns=[*INTERVAL_COLUMNS, *PAIRED_COLUMNS])


TIMESTEP_INTERVALS = "timestep_intervals.csv"
TIMESTEP_PROBABILITIES = "timestep_probabilities.npy"
"""A run's test probabilities from the first ``t`` composites, ``t = 1..T`` (``(T, N, H, W)``
float32, as scored), kept beside its full-season ones where the config asks for
``timestep_table``."""
TIMESTEP_COLUMNS = (*INTERVAL_COLUMNS[:3], "timestep", *INTERVAL_COLUMNS[3:])


def timestep_intervals(
    scenario: ScenarioSpec,
    split: tuple[np.ndarray, np.ndarray],
    units: Mapping[tuple[str, float, int], Path],
    results: pd.DataFrame,
    thresholds: Mapping[str, float],
) -> pd.DataFrame:
    """The rows of :func:`scenario_intervals` at every number of observed composites ``t``
    (``timestep_intervals.csv``): early-season means with their parcel intervals, and paired
    with the baselines at the same ``t``.

    ``units`` maps (method, fraction, seed) to the run's saved ``(T, N, H, W)`` probabilities,
    one map per ``t`` (:data:`TIMESTEP_PROBABILITIES`)."""
    main = _main_rows(results, scenario.id)
    rows = []
    for t in sorted(int(t) for t in main["timestep"].unique()):

        def load(key: tuple[str, float, int], t: int = t) -> np.ndarray:
            return np.load(units[key], mmap_mode="r")[t - 1]

        at_t = _interval_rows(scenario.id, split, main[main["timestep"] == t], load, thresholds)
        rows += [{**row, "timestep": t} for row in at_t]
    return pd.DataFrame(rows, columns=[*TIMESTEP_COLUMNS, *PAIRED_COLUMNS])


def _main_rows(results: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """The main run's IoU rows of one scenario (every ``t``)."""
    main = results[(results["scenario"] == scenario) & (results["run"] == "main")]
    return main[main["metric"] == METRIC]


def _interval_rows(
    scenario: str,
    split: tuple[np.ndarray, np.ndarray],
    scores: pd.DataFrame,
    load: Callable[[tuple[str, float, int]], np.ndarray],
    thresholds: Mapping[str, float],
) -> list[dict[str, object]]:
    """One row per method × label fraction of ``scores`` (one ``t``): the interval of the mean
    over seeds of the maps ``load`` gives for (method, fraction, seed), and the paired
    differences to the baselines on the same draws."""
    from sarcrop.evaluation.bootstrap import paired_difference, parcel_bootstrap

    target, parcels = split
    groups = {
        (str(method), float(fraction)): group
        for (method, fraction), group in scores.groupby(["method", "label_fraction"], sort=False)
    }
    preds = {
        key: [
            np.asarray(load((key[0], key[1], s)), dtype=np.float32)
            for s in sorted(int(s) for s in group["seed"])
        ]
        for key, group in groups.items()
    }
    rows = []
    for (method, fraction), group in groups.items():
        threshold = thresholds.get(method, 0.5)
        interval = parcel_bootstrap(
            preds[(method, fraction)],
            target,
            parcels,
            threshold=threshold,
            **BOOTSTRAP,
        )
        row: dict[str, object] = {
            "scenario": scenario,
            "method": method,
            "label_fraction": fraction,
            "metric": METRIC,
            **_summary(group["value"], interval, len(preds[(method, fraction)])),
        }
        for baseline in BASELINES:
            if baseline == method or (baseline, fraction) not in preds:
                continue
            difference = paired_difference(
                preds[(method, fraction)],
                preds[(baseline, fraction)],
                target,
                parcels,
                threshold=(threshold, thresholds.get(baseline, 0.5)),
                **BOOTSTRAP,
            )
            row.update(paired_columns(baseline, difference))
        rows.append(row)
    if class_parcels(target, parcels, 1) < MIN_PARCELS:
        return [_without_bounds(row) for row in rows]
    return rows


def _without_bounds(row: dict[str, object]) -> dict[str, object]:
    """``row`` with its interval bounds and paired bounds empty (NaN): too few crop parcels."""
    paired = {c for c in PAIRED_COLUMNS if c.endswith(("_low", "_high")) or "p_above" in c}
    bounds = {"low", "high", *paired}
    return {k: (float("nan") if k in bounds else v) for k, v in row.items()}


def paired_columns(baseline: str, difference: Difference) -> dict[str, float]:
    """The columns of a method minus ``baseline`` (:data:`PAIRED_COLUMNS`'s four for RI, RF)."""
    return {
        f"minus_{baseline}": difference.estimate,
        f"minus_{baseline}_low": difference.low,
        f"minus_{baseline}_high": difference.high,
        f"p_above_{baseline}": difference.p_above,
    }


PARCELS = "parcels.csv"
PARCEL_COLUMNS = (
    "scenario",
    "method",
    "label_fraction",
    "seed",
    "parcel",
    "crop",
    "pixels",
    "correct",
    "predicted",
)


def scenario_parcels(
    scenario: ScenarioSpec,
    truth: SplitTruth,
    units: Mapping[tuple[str, float, int], Path],
    thresholds: Mapping[str, float],
) -> pd.DataFrame:
    """One row per run × test parcel of ``scenario``: its crop, labelled pixels, the share of
    them given their own target and the target most got (``parcels.csv``): which fields each
    method gets wrong, seed by seed. ``truth`` is that of the scenario's test split
    (:func:`scenario_test_set`)."""
    rows = []
    for (method, fraction, seed), path in sorted(units.items()):
        probabilities = np.load(path).astype(np.float32)
        for score in truth.scores(probabilities >= thresholds.get(method, 0.5)):
            rows.append(
                {
                    "scenario": scenario.id,
                    "method": method,
                    "label_fraction": fraction,
                    "seed": seed,
                    **{k: v for k, v in score.as_dict().items() if k != "patches"},
                }
            )
    return pd.DataFrame(rows, columns=list(PARCEL_COLUMNS))


def read_intervals(run_dir: Path) -> pd.DataFrame | None:
    """``intervals.csv`` of a run directory, or None where the run has none."""
    path = Path(run_dir) / INTERVALS
    return pd.read_csv(path) if path.is_file() else None


CLASS_INTERVALS = "class_intervals.csv"
CLASS_INTERVAL_COLUMNS = (*INTERVAL_COLUMNS[:3], "class", *INTERVAL_COLUMNS[3:])


def class_intervals(
    scenario: str,
    split: tuple[np.ndarray, np.ndarray],
    classes: Sequence[str],
    units: Mapping[tuple[str, float, int], Path],
    results: pd.DataFrame,
) -> pd.DataFrame:
    """One row per method × label fraction × class (IoU) and one for the mIoU (class ``""``):
    mean ± std over seeds and the parcel-bootstrap CI of that mean; the mIoU row adds its
    paired differences to the baselines (:data:`PAIRED_COLUMNS`).

    ``split`` is :func:`split_parcels` of the test store; ``units`` maps (method,
    fraction, seed) to the saved test class probabilities ``(N, K, H, W)``; ``results`` are
    the long rows of ``class_results.csv`` (the means, at the full season).
    """
    from sarcrop.evaluation.bootstrap import MIOU, class_bootstrap, paired_class_difference

    target, parcels = split
    rows = results[results["scenario"] == scenario]
    rows = rows[rows["timestep"] == rows["timestep"].max()]
    groups = {
        (str(method), float(fraction)): group
        for (method, fraction), group in rows.groupby(["method", "label_fraction"], sort=False)
    }
    preds = {
        (method, fraction): [
            np.load(units[(method, fraction, s)])
            for s in sorted(int(s) for s in set(group["seed"]))
        ]
        for (method, fraction), group in groups.items()
    }
    settings = _Settings(n=DRAWS, seed=BOOTSTRAP["seed"], level=LEVEL)
    out = []
    for (method, fraction), group in groups.items():
        ours = preds[(method, fraction)]
        intervals = class_bootstrap(ours, target, parcels, classes, **settings)
        for name, interval in intervals.items():
            label, metric = ("", MIOU) if name == MIOU else (name, METRIC)
            values = group[(group["class"] == label) & (group["metric"] == metric)]["value"]
            row: dict[str, object] = {
                "scenario": scenario,
                "method": method,
                "label_fraction": fraction,
                "class": label,
                "metric": metric,
                **_summary(values, interval, len(ours)),
            }
            for baseline in BASELINES if name == MIOU else ():
                if baseline == method or (baseline, fraction) not in preds:
                    continue
                theirs = preds[(baseline, fraction)]
                difference = paired_class_difference(
                    ours, theirs, target, parcels, classes, **settings
                )
                row.update(paired_columns(baseline, difference))
            out.append(row)
    return pd.DataFrame(out, columns=[*CLASS_INTERVAL_COLUMNS, *PAIRED_COLUMNS])


def read_class_intervals(run_dir: Path) -> pd.DataFrame | None:
    """``class_intervals.csv`` of a run directory (class ``""``: the mIoU), or None."""
    path = Path(run_dir) / CLASS_INTERVALS
    if not path.is_file():
        return None
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    table["class"] = table["class"].fillna("")
    return table
