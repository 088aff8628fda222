"""Two methods of a finished run compared on the same parcel draws, pooled over scenarios
(``sarcrop compare``), from a run directory whose maps are known."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sarcrop.cli import main
from sarcrop.errors import SarcropError
from sarcrop.evaluation.bootstrap import PairedTestSet, pooled_difference
from sarcrop.experiments.compare import Arm, BootstrapSettings, compare_methods
from sarcrop.experiments.intervals import split_parcels
from sarcrop.experiments.record import (
    MANIFEST,
    SHARED_KEYS,
    RegionRecord,
    RunRecord,
    ScenarioRecord,
    UnitRecord,
)
from test_multiclass import make_store

SEEDS = (0, 1, 2)
STEPS = 4
SCENARIOS = {  # id: test region; "-from-b" is the same test split from another pre-training
    "one-from-a": "one",
    "two-from-a": "two",
    "one-from-b": "one",
    "two-from-b": "two",
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stores")
    return {
        name: Path(make_store(root / f"{name}.zarr", seed=s, east=600000 + 10000 * s))
        for s, name in enumerate(("one", "two"))
    }


def _maps(target: np.ndarray, seed: int, kind: str) -> np.ndarray:
    """Maps of known quality: ``truth`` right everywhere, ``none`` maize nowhere, ``noisy`` the
    truth with a seed's share of pixels flipped, ``(T, N, P, P)``, the last the full season."""
    rng = np.random.default_rng(seed)
    right = target.astype(np.float32)
    if kind == "none":
        full = np.zeros_like(right)
    elif kind == "truth":
        full = right
    else:
        flip = rng.random(right.shape) < 0.1 + 0.05 * seed
        full = np.where(flip, 1 - right, right)
    early = [np.zeros_like(full)] * (STEPS - 2) + [right]  # t = T − 1: right everywhere
    return np.stack([*early, full]).astype(np.float16)


def write_run(root: Path, stores: dict[str, Path], kinds: dict[tuple[str, str], str]) -> Path:
    """A run directory with ``kinds[(scenario, method)]`` maps for every seed."""
    root.mkdir(parents=True, exist_ok=True)
    units = []
    for (scenario, method), kind in kinds.items():
        target, _ = split_parcels(stores[SCENARIOS[scenario]], ("VH",), "maize")
        for seed in SEEDS:
            by_t = _maps(target, seed, kind)
            stem = f"{scenario}-{method}-{seed}"
            np.save(root / f"{stem}.npy", by_t[-1])
            np.save(root / f"{stem}-t.npy", by_t)
            units.append(
                UnitRecord(scenario, method, seed, f"{stem}.npy", label_fraction=0.25,
                           timestep_probabilities=f"{stem}-t.npy")
            )  # fmt: skip
    record = RunRecord(
        name="known",
        root=root,
        seeds=SEEDS,
        methods=tuple(sorted({m for _, m in kinds})),
        regions={name: RegionRecord(str(path), "real") for name, path in stores.items()},
        scenarios=tuple(
            ScenarioRecord(s, region, region, "maize", ("VH",), "real")
            for s, region in SCENARIOS.items()
        ),
        units=tuple(units),
    )
    data = record.to_dict()
    manifest = {**{k: data[k] for k in SHARED_KEYS if k in data}, "artefacts": record.artefacts()}
    (root / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def run(stores, tmp_path_factory) -> Path:
    kinds = {(s, "rf"): "none" for s in SCENARIOS}
    kinds |= {(s, "bias"): "truth" if s.endswith("-a") else "noisy" for s in SCENARIOS}
    return write_run(tmp_path_factory.mktemp("run"), stores, kinds)


def test_a_right_map_against_an_empty_one_differs_by_one_on_every_draw(run):
    """Every draw with maize gives the right map IoU 1 and the empty one 0."""
    (full,) = compare_methods(run, Arm("bias", 0.25, ("*-from-a",)), Arm("rf", 0.25))
    d = full.difference
    assert (d.mean_a, d.mean_b, d.estimate, d.low, d.high, d.p_above) == (1, 0, 1, 1, 1, 1)
    assert full.pairs == (("one-from-a", "one-from-a"), ("two-from-a", "two-from-a"))
    assert full.seeds == SEEDS and full.timestep is None


def test_the_pooled_difference_weighs_each_scenario_the_same_on_its_own_draws(run, stores):
    """Pooled over both test splits: each scenario's seeds scored on the same draws of its own
    parcels, the means averaged over scenarios."""
    settings = BootstrapSettings(draws=300, seed=7, level=0.9)
    (pooled,) = compare_methods(
        run, Arm("bias", 0.25, ("*-from-b",)), Arm("rf", 0.25), bootstrap=settings
    )
    sets, singles = [], []
    for scenario in ("one-from-b", "two-from-b"):
        target, parcels = split_parcels(stores[SCENARIOS[scenario]], ("VH",), "maize")
        noisy = [_maps(target, s, "noisy")[-1].astype(np.float32) for s in SEEDS]
        empty = [np.zeros_like(noisy[0])] * len(SEEDS)
        sets.append(PairedTestSet(noisy, empty, target, parcels))
        (single,) = compare_methods(
            run, Arm("bias", 0.25, (scenario,)), Arm("rf", 0.25), bootstrap=settings
        )
        singles.append(single.difference)
    expected = pooled_difference(sets, n=300, seed=7, level=0.9)
    assert pooled.difference == expected
    assert pooled.difference.n_parcels == sum(d.n_parcels for d in singles)
    assert pooled.difference.mean_a == pytest.approx(np.mean([d.mean_a for d in singles]))
    assert 0.2 < pooled.difference.mean_a < 0.95  # noisy: neither right nor empty


def test_scenarios_scored_on_the_same_ground_draw_its_fields_once(run, stores):
    """Two pre-trainings' runs tested on one test split: one field is drawn once for both, so
    the pooled interval is that of shared field ids, and the parcels count once."""
    settings = BootstrapSettings(draws=300, seed=7, level=0.9)
    a, b = Arm("bias", 0.25, ("one-*",)), Arm("rf", 0.25)
    (pooled,) = compare_methods(run, a, b, bootstrap=settings)
    assert pooled.pairs == (("one-from-a", "one-from-a"), ("one-from-b", "one-from-b"))
    target, parcels = split_parcels(stores["one"], ("VH",), "maize")
    fields = np.arange(len(np.unique(parcels[parcels >= 0])))
    empty = [np.zeros(target.shape, np.float32)] * len(SEEDS)
    sets = [
        PairedTestSet([_maps(target, s, kind)[-1].astype(np.float32) for s in SEEDS], empty,
                      target, parcels, fields=fields)
        for kind in ("truth", "noisy")
    ]  # fmt: skip
    assert pooled.difference == pooled_difference(sets, n=300, seed=7, level=0.9)
    assert pooled.difference.n_parcels == fields.size
    apart = pooled_difference([replace(t, fields=None) for t in sets], n=300, seed=7, level=0.9)
    assert apart.n_parcels == 2 * fields.size and apart.estimate == pooled.difference.estimate


def test_b_from_other_scenarios_is_paired_by_test_split(run):
    """The right maps of one pre-training against the noisy maps of the other, scenario by
    scenario on the same test split; at t = T − 1 both are right."""
    a = Arm("bias", 0.25, ("*-from-a",))
    b = Arm("bias", 0.25, ("*-from-b",))
    early, full = compare_methods(run, a, b, timesteps=[STEPS - 1, STEPS])
    assert full.pairs == (("one-from-a", "one-from-b"), ("two-from-a", "two-from-b"))
    assert full.difference.estimate > 0.1 and full.difference.low > 0
    assert (early.timestep, early.difference.estimate) == (STEPS - 1, 0)
    every = compare_methods(run, a, b, timesteps="all")
    assert [c.timestep for c in every] == list(range(1, STEPS + 1))
    assert every[-1].difference == full.difference  # the full season's maps are the last t's
    (season,) = compare_methods(run, a, b)
    assert season.difference == full.difference


@pytest.mark.parametrize(
    ("a", "b", "problem"),
    [
        (Arm("bias", 0.25, ("three*",)), Arm("rf", 0.25), "no scenario matches 'three\\*'"),
        (Arm("bias", 0.5), Arm("rf", 0.5), "no one-crop scenario has runs of bias with 50 %"),
        (Arm("bias", 0.25), Arm("ri", 0.25), r"no method ri in this run \(methods: bias, rf\)"),
        (
            Arm("bias", 0.25, ("one-from-a",)),
            Arm("rf", 0.25, ("one-*",)),
            "B's scenarios need exactly one scored on its test split .* found one-from-a, "
            "one-from-b",
        ),
    ],
)
def test_what_cannot_be_compared_is_named(run, a, b, problem):
    with pytest.raises(SarcropError, match=problem):
        compare_methods(run, a, b)


def test_method_names_as_the_tables_print_them_and_a_metric_of_another_kind(run):
    """``FT`` is ``ft`` (the tables print FT); a variant keeps its spelling. The mIoU of a run
    of one crop names the metrics it has, not an empty list of fractions."""
    assert Arm("BIAS", 0.25).method == "bias" and Arm("FTD+Dd").method == "ftd+Dd"
    upper = compare_methods(run, Arm("BIAS", 0.25), Arm("RF", 0.25))
    assert upper == compare_methods(run, Arm("bias", 0.25), Arm("rf", 0.25))
    with pytest.raises(SarcropError, match="no crop-type scenario to compare by miou: compare"):
        compare_methods(run, Arm("bias", 0.25), Arm("rf", 0.25), metric="miou")


def test_a_method_missing_from_one_scenario_is_named(stores, tmp_path):
    kinds = {(s, "bias"): "truth" for s in SCENARIOS} | {("one-from-a", "rf"): "none"}
    partial = write_run(tmp_path / "run", stores, kinds)
    problem = "rf has no runs with 25 % of the labels in scenario two-from-a"
    with pytest.raises(SarcropError, match=problem):
        compare_methods(partial, Arm("bias", 0.25, ("*-from-a",)), Arm("rf", 0.25))


def test_per_t_comparisons_need_the_runs_maps_per_t(run, stores, tmp_path):
    other = write_run(tmp_path / "run", stores, {("one-from-a", "rf"): "none"})
    manifest = json.loads((other / MANIFEST).read_text())
    for unit in manifest["artefacts"]["units"]:
        unit["timestep_probabilities"] = None
    (other / MANIFEST).write_text(json.dumps(manifest))
    arm = Arm("rf", 0.25)
    with pytest.raises(SarcropError, match="timestep_table: true"):
        compare_methods(other, arm, arm, timesteps=2)
    with pytest.raises(SarcropError, match=r"timesteps \[9\]: the run's maps have t = 1..4"):
        compare_methods(run, arm, arm, timesteps=9)


def test_cli_prints_every_t_and_writes_the_rows(run, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    argv = ["compare", str(run), "bias", "rf", "--fraction", "0.25", "--scenarios", "*-from-a"]
    assert main([*argv, "--timesteps", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bias@0.25 − rf@0.25" in printed and "of 2 scenarios" in printed
    rows = pd.read_csv(out)
    assert list(rows["timestep"]) == list(range(1, STEPS + 1))
    assert set(rows["level"]) == {0.95} and set(rows["draws"]) == {1000}
    assert rows.iloc[-1]["difference"] == 1 and rows.iloc[0]["difference"] == 0
    assert main([*argv, "--level", "0.9", "--draws", "200", "--out", str(out)]) == 0
    rows = pd.read_csv(out)  # what the interval is, recorded beside it
    assert set(rows["level"]) == {0.9} and set(rows["draws"]) == {200}
    assert set(rows["bootstrap_seed"]) == {0}
    assert main(["compare", str(run), "bias", "rf", "--b-fraction", "0.3"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no one-crop scenario has runs of bias with 100 %" in error


def test_runs_that_cannot_be_paired_are_refused(run, tmp_path):
    """A seed that only one side ran, or a scenario of the other kind than the metric's (crop
    types for a metric of one crop, one crop for the mIoU), is named, not compared."""
    manifest = json.loads((run / MANIFEST).read_text())
    artefacts = manifest["artefacts"]
    artefacts["units"] = [
        u
        for u in artefacts["units"]
        if (u["scenario"], u["method"], u["seed"]) != ("two-from-a", "rf", 2)
    ]
    moved = artefacts["scenarios"].pop(2)  # one-from-b: a crop-type scenario
    artefacts["class_scenarios"] = [{**moved, "crop": "", "classes": ["other", "maize"]}]
    other = tmp_path / "run"
    other.mkdir()
    (other / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SarcropError, match=r"bias@0.25 in two-from-a ran seeds \[0, 1, 2\], rf"):
        compare_methods(other, Arm("bias", 0.25, ("*-from-a",)), Arm("rf", 0.25))
    with pytest.raises(
        SarcropError, match="scenario one-from-b maps crop types: compare it by miou"
    ):
        compare_methods(other, Arm("bias", 0.25, ("one-*",)), Arm("rf", 0.25))
    one_crop = r"scenario one-from-a maps one crop \(maize\): compare it by iou, precision"
    with pytest.raises(SarcropError, match=one_crop):
        compare_methods(other, Arm("bias", 0.25, ("one-*",)), Arm("rf", 0.25), metric="miou")
    with pytest.raises(SarcropError, match="no crop-type scenario has runs of bias with 25 %"):
        compare_methods(other, Arm("bias", 0.25), Arm("rf", 0.25), metric="miou")


def test_a_damaged_probability_file_is_named_in_one_line(stores, tmp_path, capsys):
    damaged = write_run(tmp_path / "run", stores, {(s, "rf"): "none" for s in SCENARIOS})
    (damaged / "one-from-a-rf-0.npy").write_bytes(b"garbage")
    assert main(["compare", str(damaged), "rf", "rf", "--fraction", "0.25"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "one-from-a-rf-0.npy: unreadable recorded array" in error
