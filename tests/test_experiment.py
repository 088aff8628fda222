"""The experiment runner end to end on tiny simulated regions, its cache and its config errors."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import yaml

from faults_support import TERMINAL_SIGINT
from sarcrop import pretrained
from sarcrop.data.dataset import PatchDataset
from sarcrop.data.labels import positive_indices
from sarcrop.data.store import DatasetStore
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.experiments import load_experiment_config, run_experiment
from sarcrop.experiments.presets import resolve_config, shipped_configs
from sarcrop.experiments.record import RunRecord
from sarcrop.experiments.runner import worker_threads
from sarcrop.reports.html import render_report
from sarcrop.training import load_checkpoint, read_metadata, save_checkpoint

TINY = {
    "name": "tiny",
    "regions": {
        "korea": {
            "simulate": {"preset": "korea", "size": [128, 128]},
            "tiling": {"patch_size": 32},
            "bands": ["VH"],
        },
        "spain": {
            "simulate": {"preset": "spain", "size": [128, 128]},
            "tiling": {"patch_size": 32},
        },
        "france": {
            "simulate": {"preset": "france", "size": [128, 128]},
            "tiling": {"patch_size": 32},
        },
    },
    "pretrain": {
        "region": "korea",
        "bands": ["VH"],
        "model_options": {"widths": [4, 8]},
        "train": {"epochs": 2, "batch_size": 4, "patience": None, "progress_bar": False},
    },
    "finetune": {"epochs": 2, "batch_size": 4, "patience": None, "progress_bar": False},
    "scenarios": [{"finetune": "spain", "test": "france", "crop": "rice", "bands": ["VH", "VV"]}],
    "methods": ["rf", "ri", "fte", "ftd-last-1", "zero-shot", "bias"],
    "baseline": {"n_estimators": 10, "max_samples_per_class": 500},
    "early_season": {"scenario": 0, "method": "fte", "orderings": ["chronological", "random"]},
    "timestep_table": True,
    "figure_patches": 2,
}


def small(**changes) -> dict:
    """TINY at its least: 96² regions, one epoch each, no early-season curve, IoU-by-t table or
    comparisons unless ``changes`` give them."""
    data = copy.deepcopy(TINY)
    for region in data["regions"].values():
        region["simulate"]["size"] = [96, 96]
    data["pretrain"]["train"]["epochs"] = data["finetune"]["epochs"] = 1
    del data["early_season"], data["timestep_table"]
    return {**data, **changes}


def write_config(folder: Path, data: dict) -> Path:
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# Paired comparisons the tiny run writes to comparisons.csv (beside those of intervals.csv).
COMPARISONS = [
    {"a": "fte", "b": "rf"},
    {"a": "bias", "b": "zero-shot", "scenarios": ["spain-*"], "timesteps": "all"},
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment")
    config = write_config(folder, {**TINY, "comparisons": COMPARISONS})
    result = run_experiment(config, folder / "out")
    return config, folder / "out", result


def test_results_cover_every_scenario_method_metric_and_step(tiny_run):
    _, out, result = tiny_run
    results = pd.read_csv(out / "results.csv")
    main = results[results["run"] == "main"]
    early = results[results["run"] == "early-season"]
    assert set(main["method"]) == {"rf", "ri", "fte", "ftd-last-1", "zero-shot", "bias"}
    assert len(main) == 6 * 4 * 8  # methods × metrics × time steps
    assert len(early) == 2 * 4 * 8  # orderings × metrics × time steps
    assert set(early["ordering"]) == {"chronological", "random"}
    assert set(main["scenario"]) == {"spain-france-rice-vhvv"}
    assert (main["bands"] == "VH|VV").all()
    # IoU is defined whenever the test split has positives; precision is NaN (not 0) for a
    # model that predicts no positive at all.
    assert results.loc[results["metric"] == "iou", "value"].notna().all()
    assert results["value"].dropna().between(0, 1).all()
    assert len(result.results) == len(results)


def test_configs_without_fractions_keep_their_columns_and_gain_intervals(tiny_run):
    _, out, _ = tiny_run
    results = pd.read_csv(out / "results.csv")
    # The old columns first, in their old order; the label fraction appended (all labels).
    assert list(results.columns[:12]) == [
        "scenario", "finetune_region", "test_region", "crop", "bands", "method",
        "metric", "timestep", "seed", "value", "run", "ordering",
    ]  # fmt: skip
    assert list(results.columns[12:]) == ["label_fraction"]
    assert (results["label_fraction"] == 1.0).all()
    intervals = pd.read_csv(out / "intervals.csv")
    assert sorted(intervals["method"]) == sorted(TINY["methods"])
    assert (intervals["low"] <= intervals["mean"] + 1e-3).all()
    assert (intervals["mean"] <= intervals["high"] + 1e-3).all()
    assert "parcel-bootstrap" in (out / "tables.md").read_text()


def test_scenarios_that_differ_in_what_the_forest_ignores_share_its_runs(tmp_path):
    """The forest learns from the target alone: two scenarios that differ only in their
    pre-training fit it once per seed, also when two workers run the units."""
    scenario = TINY["scenarios"][0]
    config = {
        **TINY,
        "pretrains": {"a": {"checkpoint": "europe-maize"}, "b": {"checkpoint": "europe-maize"}},
        "scenarios": [{**scenario, "pretrain": "a"}, {**scenario, "pretrain": "b"}],
        "methods": ["rf"],
        "seeds": 2,
        "jobs": 2,
        "timestep_table": False,
    }
    del config["pretrain"], config["early_season"]
    out = tmp_path / "out"
    result = run_experiment(write_config(tmp_path, config), out)
    iou = result.results[result.results["metric"] == "iou"]
    by_scenario = [group["value"].to_numpy() for _, group in iou.groupby("scenario")]
    assert len(by_scenario) == 2 and np.array_equal(*by_scenario)
    assert len(list((out / "cache").glob("method-*/done.json"))) == 2  # one per seed
    record = RunRecord.read(out)
    assert len(record.units) == 4  # each scenario keeps its rows ...
    assert len({u.probabilities for u in record.units if u.seed == 0}) == 1  # ... of one fit


def test_timestep_intervals_score_every_runs_maps_at_every_t(tiny_run):
    """With timestep_table, each run keeps its test maps from the first t composites: scored,
    they give results.csv's IoU at that t, and at the full season intervals.csv's interval."""
    _, out, _ = tiny_run
    record = RunRecord.read(out)
    results = pd.read_csv(out / "results.csv")
    iou = results[(results["run"] == "main") & (results["metric"] == "iou")]
    steps = int(iou["timestep"].max())
    store = DatasetStore(out / record.regions["france"].store)
    test = PatchDataset(store, "test", "rice")
    target = np.stack([test.target(i)[0] for i in range(len(test))]) == 1
    valid = np.stack([test.target(i)[1] for i in range(len(test))]).astype(bool)
    for unit in record.units:
        assert unit.timestep_probabilities is not None, unit.method
        maps = np.load(record.path(unit.timestep_probabilities)).astype(np.float32)
        assert maps.shape == (steps, *target.shape)
        full = np.load(record.path(unit.probabilities)).astype(np.float32)
        assert np.array_equal(maps[-1], full)
        for t in range(1, steps + 1):
            given = (maps[t - 1] >= 0.5) & valid
            union = (given | (target & valid)).sum()
            ours = (given & target).sum() / union if union else 0.0
            row = iou[(iou["method"] == unit.method) & (iou["seed"] == unit.seed)]
            assert ours == pytest.approx(row[row["timestep"] == t]["value"].item(), abs=0.01)
    by_step = pd.read_csv(out / "timestep_intervals.csv")
    assert len(by_step) == len(record.methods) * steps
    assert set(by_step["timestep"]) == set(range(1, steps + 1))
    full_season = by_step[by_step["timestep"] == steps].set_index("method")
    intervals = pd.read_csv(out / "intervals.csv").set_index("method")
    columns = ["mean", "low", "high", "minus_rf", "minus_rf_low", "minus_rf_high"]
    pd.testing.assert_frame_equal(
        full_season.loc[intervals.index, columns], intervals[columns], check_dtype=False
    )
    early = by_step[by_step["timestep"] == 1]
    assert early["minus_ri"].notna().sum() == len(record.methods) - 1  # all but RI itself
    tables = (out / "tables.md").read_text()
    assert "minus RF from the same composites t" in tables
    assert "minus RI from the same composites t" in tables


def test_a_comparison_of_one_scenario_is_the_runs_paired_difference(tiny_run):
    """``sarcrop compare`` of one scenario gives the paired difference of intervals.csv (and
    of timestep_intervals.csv at each t): the same maps, parcels, draws and thresholds."""
    from sarcrop.experiments.compare import Arm, compare_methods

    _, out, _ = tiny_run
    by_step = pd.read_csv(out / "timestep_intervals.csv")
    full = pd.read_csv(out / "intervals.csv").set_index("method").loc["fte"]
    (season,) = compare_methods(out, Arm("fte"), Arm("rf"))
    d = season.difference
    assert (d.estimate, d.low, d.high, d.p_above) == pytest.approx(
        (full["minus_rf"], full["minus_rf_low"], full["minus_rf_high"], full["p_above_rf"])
    )
    assert d.mean_a == pytest.approx(full["mean"], abs=0.01)
    for c in compare_methods(out, Arm("fte"), Arm("ri"), timesteps="all"):
        row = by_step[(by_step["method"] == "fte") & (by_step["timestep"] == c.timestep)]
        assert c.difference.estimate == pytest.approx(row["minus_ri"].item())
        assert c.difference.low == pytest.approx(row["minus_ri_low"].item())


def test_the_configs_comparisons_are_those_of_sarcrop_compare(tiny_run):
    """``comparisons:`` gives comparisons.csv the rows ``sarcrop compare`` prints for the same
    options, and tables.md and the report their table."""
    from sarcrop.cli import main
    from sarcrop.experiments.compare import COMPARISON_COLUMNS

    _, out, _ = tiny_run
    table = pd.read_csv(out / "comparisons.csv")
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert list(table["timestep"]) == ["full", *(str(t) for t in range(1, 9))]
    argv = ["compare", str(out), "bias", "zero-shot", "--scenarios", "spain-*"]
    assert main([*argv, "--timesteps", "all", "--out", str(out / "again.csv")]) == 0
    again = pd.read_csv(out / "again.csv")
    pd.testing.assert_frame_equal(
        table.iloc[1:].reset_index(drop=True), again.astype({"timestep": str}), check_dtype=False
    )
    fte = table.iloc[0]
    intervals = pd.read_csv(out / "intervals.csv").set_index("method").loc["fte"]
    assert fte["difference"] == pytest.approx(intervals["minus_rf"])
    assert fte["pairs"] == "spain-france-rice-vhvv"
    tables = (out / "tables.md").read_text()
    assert "## Paired comparisons pooled over scenarios" in tables
    assert "| FTE 100 % − RF 100 % | IoU | full | 1: all |" in tables
    html = (out / "report.html").read_text()
    assert html.count("<tr><td>bias 100 % − zero-shot</td>") == 8


def test_comparisons_left_out_of_the_config_leave_the_report(tiny_run, tmp_path):
    """A rerun without ``comparisons:`` kept the earlier comparisons.csv, and the report showed
    its pairs, computed from models the run no longer has."""
    _, out, _ = tiny_run
    again = tmp_path / "out"
    shutil.copytree(out, again)
    run_experiment(write_config(tmp_path, TINY), again)  # every unit cached
    assert not (again / "comparisons.csv").exists()
    assert "Paired comparisons pooled over scenarios" not in (again / "report.html").read_text()
    assert "Paired comparisons pooled over scenarios" in (out / "report.html").read_text()


def test_parcels_csv_scores_every_test_field_of_every_run(tiny_run):
    """Per run, its fields add up to the confusion of its saved test probabilities."""
    _, out, _ = tiny_run
    parcels = pd.read_csv(out / "parcels.csv")
    record = RunRecord.read(out)
    store = DatasetStore(out / record.regions["france"].store)
    test = PatchDataset(store, "test", "rice")
    target = np.stack([test.target(i)[0] for i in range(len(test))]).astype(bool)
    valid = np.stack([test.target(i)[1] for i in range(len(test))])
    rice = {store.classes[i] for i in positive_indices(store.classes, ["rice"])}
    assert set(parcels["method"]) == set(record.methods)
    for method, fields in parcels.groupby("method"):
        unit = record.unit("spain-france-rice-vhvv", method, 0)
        assert unit is not None
        given = np.load(record.path(unit.probabilities)).astype(np.float32) >= 0.5
        assert fields["parcel"].is_unique and fields["pixels"].sum() == valid.sum()
        right = fields["correct"] * fields["pixels"]
        positive = fields["crop"].isin(rice)
        assert right[positive].sum() == pytest.approx((given & target & valid).sum())
        assert right[~positive].sum() == pytest.approx((~given & ~target & valid).sum())


def test_tables_manifest_maps_and_report_are_written(tiny_run):
    _, out, _ = tiny_run
    tables = (out / "tables.md").read_text()
    for title in ("IoU (paper Table 1)", "Recall", "Precision", "F1"):
        assert title in tables
    assert "paper 0.66" in tables  # Spain → France VH|VV reference values sit beside ours
    # Every method at every number of observed composites (timestep_table), main run only.
    by_step = tables.split("## IoU by number of observed composites t", 1)[1]
    assert "| t = 1 | t = 2 |" in by_step and "| **zero-shot** | **100 %** |" in by_step
    manifest = json.loads((out / "experiment.json").read_text())
    scenario = manifest["scenarios"][0]
    assert (out / scenario["figure"]).stat().st_size > 10_000
    # The run has FTE, one of the methods whose TP/FN series the signature figure draws.
    assert (out / scenario["signature_figure"]).stat().st_size > 10_000
    assert manifest["early_season"] and (out / manifest["early_season"]["figure"]).is_file()
    # Every scenario has its methods' training curves in one figure, beside the pre-training's.
    curves = {curve["name"]: out / curve["figure"] for curve in manifest["training_curves"]}
    assert {f"fine-tuning on {s['id']}, seed 0" for s in manifest["scenarios"]} <= set(curves)
    assert any(name.startswith("pre-training on ") for name in curves)
    assert all(path.stat().st_size > 10_000 for path in curves.values())
    assert {"simulate", "prepare", "pretrain", "total"} <= set(manifest["timings"])
    assert manifest["timings"]["pretrain"] <= manifest["timings"]["total"]
    for method, path in scenario["maps"].items():
        with rasterio.open(out / path) as src:
            assert src.crs.to_epsg() == 32631  # france's UTM zone
            assert src.tags()["METHOD"] == method
            values = src.read(1)
            finite = values[np.isfinite(values)]
            assert finite.size and finite.min() >= 0 and finite.max() <= 1
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "tiny" in html
    assert 'id="table-timesteps"' in html and manifest["timestep_table"] is True
    assert html.count('id="table-timesteps-paired-') == 2  # minus RI and minus RF, at each t
    # Which versions and processor trained these numbers (they differ between machines).
    environment = manifest["environment"]
    assert environment["torch"] == torch.__version__
    assert environment["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert f"torch {torch.__version__}" in html
    assert RunRecord.read(out).environment == environment
    done = [json.loads(p.read_text()) for p in (out / "cache").glob("*/done.json")]
    assert done and all(d["environment"]["torch"] == torch.__version__ for d in done)


def test_zero_shot_scores_the_pretrained_model_as_it_is(tiny_run):
    """No labels, no training: the pre-trained checkpoint's own predictions on the test store,
    read in the bands it was trained on (VH of the VH|VV scenario)."""
    from sarcrop.training import evaluate

    _, out, _ = tiny_run
    results = pd.read_csv(out / "results.csv")
    zero = results[(results["method"] == "zero-shot") & (results["run"] == "main")]
    orderings = pd.read_csv(out / "results.csv", keep_default_na=False).loc[zero.index, "ordering"]
    assert (orderings == "n/a").all()  # no batches, like the forests
    keys = {p.parent: json.loads(p.read_text())["key"] for p in (out / "cache").glob("*/done.json")}
    [unit] = [folder for folder, key in keys.items() if key.get("method") == "zero-shot"]
    assert "train" not in keys[unit] and not (unit / "run").exists()
    [checkpoint] = (out / "cache").glob("pretrain-*/run/model.safetensors")
    [france] = [f for f, key in keys.items() if key.get("name") == "france"]
    expected = evaluate(checkpoint, france / "store.zarr")
    assert expected["bands"] == ["VH"]
    final = zero[(zero["metric"] == "iou") & (zero["timestep"] == zero["timestep"].max())]
    assert final["value"].item() == pytest.approx(expected["metrics"]["iou"], abs=1e-6)


def test_bias_maps_what_zero_shot_maps_at_the_threshold_of_the_finetune_labels(tiny_run):
    """``bias`` is the pre-trained model in its own bands (VH), its threshold chosen on the
    fine-tuning region's labels: its test map at 0.5 is zero-shot's at that threshold."""
    _, out, _ = tiny_run
    keys = {p.parent: json.loads(p.read_text())["key"] for p in (out / "cache").glob("*/done.json")}
    unit = {key.get("method"): folder for folder, key in keys.items() if "method" in key}
    tuned = read_metadata(unit["bias"] / "run" / "model.safetensors")
    assert tuned.strategy == "bias" and tuned.bands == ["VH"]
    threshold = tuned.training["threshold_search"]["threshold"]
    bias = np.load(unit["bias"] / "test_probabilities.npy").astype(np.float32)
    zero = np.load(unit["zero-shot"] / "test_probabilities.npy").astype(np.float32)
    # Two computations of one map: compare away from the cut, where their last bits cannot
    # move a pixel across it.
    clear = np.abs(zero - threshold) > 1e-2
    assert clear.mean() > 0.9
    assert np.array_equal((bias >= 0.5)[clear], (zero >= threshold)[clear])


def test_the_saved_test_maps_are_the_maps_results_csv_scored(tiny_run):
    """Intervals, comparisons and parcel scores read each run's saved test maps: at the run's
    thresholds they give results.csv's IoU to the last digit (a rounded copy moved pixels
    near the threshold across it)."""
    from sarcrop.experiments.intervals import scenario_test_set

    _, out, _ = tiny_run
    keys = {p.parent: json.loads(p.read_text())["key"] for p in (out / "cache").glob("*/done.json")}
    [france] = [f for f, key in keys.items() if key.get("name") == "france"]
    test = scenario_test_set(france / "store.zarr", ("VH", "VV"), "rice")
    truth = [test.target(i) for i in range(len(test))]
    target = np.stack([t for t, _ in truth]) > 0.5
    valid = np.stack([v for _, v in truth])
    results = pd.read_csv(out / "results.csv")
    full = results[
        (results["run"] == "main")
        & (results["metric"] == "iou")
        & (results["timestep"] == results["timestep"].max())
    ]
    thresholds = RunRecord.read(out).thresholds
    checked = 0
    for folder, key in keys.items():
        method = key.get("method")
        if method is None or key.get("run", "main") != "main":
            continue
        scored = np.load(folder / "test_probabilities.npy")
        assert scored.dtype == np.float32
        given = (scored >= thresholds[method])[valid]
        truth_positive = target[valid]
        iou = (given & truth_positive).sum() / (given | truth_positive).sum()
        [recorded] = full.loc[
            (full["method"] == method) & (full["seed"] == key.get("seed", 0)), "value"
        ]
        assert iou == pytest.approx(recorded, rel=1e-12, abs=1e-12), method
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize(
    ("setting", "value", "off"), [("interpolation", 0.5, 1.0), ("distillation", 1.0, 0.0)]
)
def test_settings_of_the_start_reach_the_pretrained_strategies_only(setting, value, off):
    """``finetune.interpolation`` and ``finetune.distillation`` are what FT/FTE/FTD train with;
    RI and the probe, without a pre-trained start, train (and are cached) as without them, so
    their runs are shared with the plain config."""
    from sarcrop.experiments.config import experiment_config_from_dict

    data = {**TINY, "methods": ["ri", "ft", "fte", "ftd-last-1", "probe"]}
    mixed = experiment_config_from_dict({**data, "finetune": {**TINY["finetune"], setting: value}})
    plain = experiment_config_from_dict(data)
    for strategy in ("ft", "fte", "ftd"):
        assert getattr(mixed.training_of(strategy), setting) == value
    for strategy in ("ri", "probe", "bias"):
        assert mixed.training_of(strategy) == plain.training_of(strategy)
        assert getattr(mixed.training_of(strategy), setting) == off


def test_a_variant_trains_its_method_with_its_settings_beside_the_plain_one(tmp_path):
    """``ftd+dd`` is FTD fine-tuned with ``finetune:`` changed by ``variants.dd``, in the same
    run as plain ``ftd``: its own cache unit, checkpoint, rows and table line."""
    data = {**TINY, "methods": ["ftd", "ftd+dd"], "variants": {"dd": {"date_dropout": 0.5}}}
    del data["early_season"], data["timestep_table"]
    result = run_experiment(write_config(tmp_path, data), tmp_path / "out")
    assert set(result.results["method"]) == {"ftd", "ftd+dd"}
    keys = {
        json.loads(p.read_text())["key"].get("method"): p.parent
        for p in (tmp_path / "out" / "cache").glob("method-*/done.json")
    }
    plain, variant = (
        read_metadata(keys[m] / "run" / "model.safetensors").training["config"]
        for m in data["methods"]
    )
    assert "date_dropout" not in plain  # the default, left out of the record
    assert variant.pop("date_dropout") == 0.5
    assert variant == plain
    weights = [load_checkpoint(keys[m] / "run" / "model.safetensors")[0] for m in data["methods"]]
    first, second = (dict(model.state_dict()) for model in weights)
    assert any(not torch.equal(first[name], second[name]) for name in first)
    tables = (tmp_path / "out" / "tables.md").read_text(encoding="utf-8")
    assert "| **FTD+dd** |" in tables
    assert "observed composites" not in tables  # timestep_table off: full-season tables only


def test_comparisons_name_methods_as_sarcrop_compare_reads_them():
    """``FTE`` in a config's comparisons is ``fte``, as on the command line; a variant keeps
    its spelling."""
    from sarcrop.experiments.config import experiment_config_from_dict

    data = {**TINY, "methods": ["rf", "fte", "ftd+dd"], "variants": {"dd": {"date_dropout": 0.2}}}
    data["comparisons"] = [{"a": "FTE", "b": "RF"}, {"a": "FTD+dd", "b": "rf"}]
    config = experiment_config_from_dict(data)
    assert [(c.a, c.b) for c in config.comparisons] == [("fte", "rf"), ("ftd+dd", "rf")]


def test_a_variant_threshold_reaches_the_metrics_and_the_recorded_maps_alike():
    """The runner's metrics and everything read from a run's recorded config (area maps,
    comparisons) give each method the same threshold: a network's from ``finetune:``, changed
    by its variant, as the validated config's own fine-tuning settings have it."""
    from sarcrop.experiments import runner
    from sarcrop.experiments.config import experiment_config_from_dict, is_forest
    from sarcrop.experiments.record import recorded_thresholds

    data = {**TINY, "methods": ["rf", "ri", "ftd", "ftd+t"], "variants": {"t": {"threshold": 0.7}}}
    data["finetune"] = {**TINY["finetune"], "threshold": 0.4}
    config = experiment_config_from_dict(data)
    thresholds = runner.method_thresholds(config)
    # fte: the early-season curve's method, scored at its own threshold
    assert thresholds == {"rf": 0.5, "ri": 0.4, "ftd": 0.4, "ftd+t": 0.7, "fte": 0.4}
    methods = config.every_method()
    typed = {m: 0.5 if is_forest(m) else config.finetune_of(m).threshold for m in methods}
    assert thresholds == typed
    recorded = json.loads(json.dumps(config.model_dump(mode="json")))
    assert recorded_thresholds(recorded, methods) == thresholds


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"methods": ["ftd+dd"]}, r"method ftd\+dd: no variant 'dd' \(variants: none\)"),
        (
            {"methods": ["rf+dd"], "variants": {"dd": {"epochs": 3}}},
            r"method rf\+dd: a variant changes fine-tuning settings, and rf trains no network",
        ),
        ({"variants": {"dd": {"date_dropout": 1.0}}}, r"variants\.dd: date_dropout"),
        ({"variants": {"dd": {"epoch": 3}}}, r"variants\.dd: epoch: unknown setting"),
        ({"variants": {"dd": {"recipe": "few-labels"}}}, r"variants\.dd: name settings"),
        ({"comparisons": [{"a": "ft", "b": "rf"}]}, r"comparisons\[0\]: ft is not among"),
        (
            {"comparisons": [{"a": "fte", "b": "rf", "fraction": 0.5}]},
            r"comparisons\[0\]: fraction 0.5 is not among the fractions",
        ),
        (
            {"comparisons": [{"a": "fte", "b": "rf", "b_scenarios": ["x*"]}]},
            r"comparisons\[0\]: no scenario matches 'x\*'",
        ),
        (
            {"comparisons": [{"a": "fte", "b": "rf", "timesteps": 3}], "timestep_table": False},
            r"comparisons\[0\]: timesteps need timestep_table: true",
        ),
        ({"comparisons": [{"a": "fte", "b": "rf", "t": 3}]}, r"comparisons\.0\.t: unknown key"),
        (
            {"comparisons": [{"a": "fte", "b": "rf", "metric": "miou"}]},
            r"comparisons\[0\]: no crop-type scenario to compare by miou",
        ),
    ],
)
def test_variant_errors_name_the_file_the_variant_and_the_problem(tmp_path, change, problem):
    with pytest.raises(ConfigError, match=rf"experiment\.yaml: .*{problem}"):
        load_experiment_config(write_config(tmp_path, {**TINY, **change}))


def test_rerun_reuses_every_finished_unit(tiny_run):
    config, out, first = tiny_run
    done = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*/done.json")}
    assert len(done) >= 3 + 1 + 5 + 1  # regions, pre-training, methods, the extra ordering
    again = run_experiment(config, out)
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*/done.json")} == done
    pd.testing.assert_frame_equal(again.results, first.results)


def test_a_moved_cache_run_from_another_folder_is_reused(tmp_path, monkeypatch):
    """Cached checkpoints are found where the output folder is now, whatever the working
    folder was when they were trained (records hold the paths of the run that wrote them)."""
    small = {**TINY, "methods": ["fte", "zero-shot"]}
    del small["early_season"]
    (tmp_path / "a").mkdir()
    config = write_config(tmp_path, small)
    monkeypatch.chdir(tmp_path / "a")
    first = run_experiment(config, "out")  # relative: records say out/cache/...
    (tmp_path / "a").rename(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    cache = Path("b/out/cache")
    done = {p: p.stat().st_mtime_ns for p in cache.glob("*/done.json")}
    again = run_experiment(config, "b/out")
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/done.json")} == done
    pd.testing.assert_frame_equal(again.results, first.results)
    record = RunRecord.read(Path("b/out"))
    assert record.pretrain is not None and Path("b/out", record.pretrain.checkpoint).is_file()
    # A new method starts from the cached pre-training where the cache now is.
    wider = write_config(tmp_path, {**small, "methods": ["fte", "zero-shot", "ftd"]})
    result = run_experiment(wider, "b/out")
    assert set(result.results["method"]) == {"fte", "zero-shot", "ftd"}
    assert len(done) + 1 == len(list(cache.glob("*/done.json")))


def test_worker_processes_compute_the_same_results(tiny_run, tmp_path, monkeypatch):
    """With jobs=2 every method unit is trained in a worker process (the parent's own training
    and forest are disabled here, spawned workers import their own), with identical results."""
    import shutil

    from sarcrop.experiments.runner import ExperimentRunner

    config, out, first = tiny_run
    for unit in (out / "cache").iterdir():  # stores and pre-training: not the method runs
        if not unit.name.startswith("method-"):
            shutil.copytree(unit, tmp_path / "out" / "cache" / unit.name)

    def refuse(*args, **kwargs):
        raise AssertionError("the parent process trained a method")

    monkeypatch.setattr(ExperimentRunner, "_train_method", refuse)
    monkeypatch.setattr(ExperimentRunner, "_forest", refuse)
    # A caller's formatter that pickle cannot carry (as the standard library's own, once
    # Lightning has replaced it, in a script run from a fresh process): the workers keep theirs.
    monkeypatch.setattr(warnings, "formatwarning", lambda *args, **kwargs: "formatted\n")
    parallel = run_experiment(config, tmp_path / "out", jobs=2)
    pd.testing.assert_frame_equal(parallel.results, first.results)
    done = list((tmp_path / "out" / "cache").glob("method-*/done.json"))
    assert len(done) == len(list((out / "cache").glob("method-*/done.json")))
    # No ``threads`` in the config: each worker trained on its share of the cores.
    shares = {json.loads(path.read_text())["environment"]["threads"] for path in done}
    assert shares == {str(worker_threads(None, 2))}
    with pytest.raises(ConfigError, match="jobs must be at least 1"):
        run_experiment(config, tmp_path / "out", jobs=0)


def test_worker_threads_share_the_cores_unless_the_config_sets_them(monkeypatch):
    from sarcrop.experiments import runner

    monkeypatch.setattr(runner, "available_cores", lambda: 8)
    assert [runner.worker_threads(None, workers) for workers in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert runner.worker_threads(3, 2) == 3 and runner.worker_threads(1, 1) == 1


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm-to-the-run", "ctrl-c"])
def test_workers_stop_when_the_run_is_terminated_or_interrupted(tiny_run, tmp_path, ctrl_c):
    """SIGTERM (a scheduler's, or ``timeout``'s) reaches the run's process alone: its workers,
    mid-way through a long training, end with it instead of training on for nobody. Ctrl-C
    (SIGINT to the whole process group, as a terminal sends it) ends the run at once too, with
    the CLI's one line and exit code 130, instead of after every queued unit."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    _, out, _ = tiny_run
    for unit in (out / "cache").iterdir():  # the stores and pre-training: straight to training
        if not unit.name.startswith("method-"):
            shutil.copytree(unit, tmp_path / "out" / "cache" / unit.name)
    endless = {**TINY["finetune"], "epochs": 100_000}
    data = {**TINY, "finetune": endless, "methods": ["ri", "fte", "ft"], "early_season": None}
    config = write_config(tmp_path, data)
    code = TERMINAL_SIGINT + "import sys; from sarcrop.cli import main; sys.exit(main())"
    argv = ["experiment", str(config), "--out", str(tmp_path / "out"), "--jobs", "2", "--quiet"]
    run = psutil.Popen(
        [sys.executable, "-c", code, *argv],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 600  # a guard against a run that never starts them
        while len(workers) < 2 and run.poll() is None and time.monotonic() < deadline:
            workers = [child for child in run.children() if _training_worker(child)]
        assert run.poll() is None and len(workers) == 2, "no two workers at work"
        if ctrl_c:
            os.killpg(run.pid, signal.SIGINT)
        else:
            run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=300)
        _, alive = psutil.wait_procs(workers, timeout=120)
        assert alive == []
        if ctrl_c:
            assert (run.returncode, err.splitlines()[-1]) == (
                130,
                "sarcrop experiment: interrupted",
            )
            assert "Traceback" not in err
    finally:
        for process in [run, *workers]:
            with contextlib.suppress(psutil.Error):
                process.kill()


def _training_worker(process) -> bool:
    """Whether ``process`` is a spawned worker at work (not the resource tracker, not idle)."""
    import psutil

    try:
        spawned = "spawn_main" in " ".join(process.cmdline())
        return spawned and process.cpu_percent(0.5) > 0
    except psutil.Error:  # gone meanwhile
        return False


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = dict(TINY, learning_rate=0.1)
    with pytest.raises(ConfigError, match=r"experiment.yaml: learning_rate: unknown key$"):
        load_experiment_config(write_config(tmp_path, bad))
    # A misspelt key is named first, with the key it meant, not the "missing" key it leaves.
    misspelt = {("regionz" if key == "regions" else key): value for key, value in TINY.items()}
    with pytest.raises(ConfigError) as err:
        load_experiment_config(write_config(tmp_path, misspelt))
    assert err.value.problem == "regionz: unknown key, did you mean 'regions'? (and 1 more)"
    # An optional key too, anywhere in the config, each problem counted once though a
    # region's fold views (folds) repeat it.
    with pytest.raises(ConfigError) as err:
        load_experiment_config(write_config(tmp_path, {**TINY, "seed": 2}))
    assert err.value.problem == "seed: unknown key, did you mean 'seeds'?"
    spain = {**TINY["regions"]["spain"], "season_strat": "2021-04-01"}
    folds = {"finetune": "spain", "test": "spain", "crop": "rice", "folds": 2}
    regions = {**TINY, "regions": {**TINY["regions"], "spain": spain}, "scenarios": [folds]}
    with pytest.raises(ConfigError) as err:
        load_experiment_config(write_config(tmp_path, {**regions, "early_season": None}))
    assert err.value.problem == (
        "regions.spain.season_strat: unknown key, did you mean 'season_start'?"
    )
    bad = dict(TINY, methods=["rf", "fancy"])
    with pytest.raises(ConfigError, match="unknown method 'fancy'"):
        load_experiment_config(write_config(tmp_path, bad))
    bad = dict(TINY, scenarios=[{"finetune": "spain", "test": "mars", "crop": "rice"}])
    with pytest.raises(ConfigError, match=r"scenarios\[0\]\.test: no region 'mars' \(regions: "):
        load_experiment_config(write_config(tmp_path, bad))
    bad = dict(TINY, scenarios=[{"finetune": "spian", "test": "france", "crop": "rice"}])
    with pytest.raises(ConfigError, match=r"finetune: no region 'spian'; did you mean 'spain'\?"):
        load_experiment_config(write_config(tmp_path, bad))
    bad = dict(TINY, finetune={"epochs": "many"})
    with pytest.raises(ConfigError, match=r"finetune\.epochs"):
        load_experiment_config(write_config(tmp_path, bad))
    with pytest.raises(ConfigError, match="experiment config not found"):
        load_experiment_config(tmp_path / "missing.yaml")


def test_a_seed_count_below_one_is_refused_before_the_results_are_touched(tmp_path):
    """``--seeds 0`` emptied a finished run's results.csv and intervals.csv."""
    from sarcrop.experiments.config import experiment_config_from_dict

    results = tmp_path / "run" / "results.csv"
    results.parent.mkdir()
    results.write_text("kept\n")
    for seeds in (0, -2, 1.5):
        with pytest.raises(ConfigError, match=f"seeds must be a whole number >= 1, got {seeds}"):
            run_experiment(experiment_config_from_dict(TINY), tmp_path / "run", seeds=seeds)
    assert results.read_text() == "kept\n"


@pytest.mark.parametrize(
    ("where", "key", "problem"),
    [
        (("regions", "spain"), "patch_size", "it is a key of regions.spain.tiling"),
        (("regions", "spain"), "methods", "it is a top-level key"),
        (("regions", "spain"), "positive", "the crop is a scenario's"),
        (("pretrain",), "epochs", "it is a key of pretrain.train"),
        ((), "n_estimators", "it is a key of baseline"),
        ((), "patch_size", r"it is a key of regions.<name>.tiling"),
    ],
)
def test_a_key_at_the_wrong_level_is_named_where_it_goes(tmp_path, where, key, problem):
    """A key written one level off got "did you mean" a key of no relation (a region's
    `positive:` read "did you mean 'composite'?"); it is named where it belongs."""
    data = copy.deepcopy(TINY)
    place = data
    for part in where:
        place = place[part]
    place[key] = 16
    with pytest.raises(ConfigError) as err:
        load_experiment_config(write_config(tmp_path, data))
    assert re.fullmatch(
        rf"{re.escape('.'.join([*where, key]))}: unknown key, {problem}.*", err.value.problem
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"regions": {**TINY["regions"], "france": {"simulate": {"preset": "frnace"}}}},
            "regions.france.simulate.preset: unknown region 'frnace'; did you mean 'france'?",
        ),
        (
            {"methods": ["rf", "ftd-last-3"]},
            r"method ftd-last-3: the pre-training 'default' \(recurrent_unet\) has 1 decoder "
            "block, so K is 1 to 1",
        ),
        ({"methods": ["ftd-last-0"]}, "method ftd-last-0: .* so K is 1 to 1"),
        (
            {
                "regions": {
                    **TINY["regions"],
                    "france": {**TINY["regions"]["france"], "timesteps": 5},
                }
            },
            "regions.france: 5 composites, and the pre-training 'default' learns 8 "
            r"\(regions.korea\); .* timestep_table: true",
        ),
        ({"early_season": {"method": "rf"}}, "early_season.method: rf trains no network"),
        # A method listed twice ran twice, its rows counted as twice the seeds.
        ({"methods": ["rf", "fte", "fte"]}, "fte listed more than once"),
        # Date dropout changes nothing in bias, which trains no weights; it ran as bias.
        (
            {"methods": ["bias+dd"], "variants": {"dd": {"date_dropout": 0.25}}},
            r"method bias\+dd: bias chooses a threshold .* date_dropout \(variants.dd\)",
        ),
        # Found after every unit had trained, with no table written.
        (
            {"comparisons": [{"a": "fte", "b": "rf", "timesteps": 9}]},
            r"comparisons\[0\]: timesteps 9, and france holds 8 composites",
        ),
    ],
)
def test_config_errors_found_before_any_work(tmp_path, change, problem):
    """Each of these failed minutes into a run (after simulating, or after the pre-training),
    naming no key; now the config is refused as it is read."""
    with pytest.raises(ConfigError, match=rf"experiment\.yaml: .*{problem}"):
        load_experiment_config(write_config(tmp_path, {**TINY, **change}))


def test_simulated_draws_expand_into_merged_regions(tmp_path):
    spain = TINY["regions"]["spain"]
    draws = {**spain, "simulate": {**spain["simulate"], "seed": 5, "draws": 3}}
    config = load_experiment_config(
        write_config(tmp_path, dict(TINY, regions={**TINY["regions"], "spain": draws}))
    )
    assert config.regions["spain"].merge == ("spain0", "spain1", "spain2")
    assert [config.regions[f"spain{i}"].simulate.seed for i in range(3)] == [5, 6, 7]
    written = {**spain, "simulate": {**spain["simulate"], "seed": 6}}
    explicit = load_experiment_config(
        write_config(tmp_path, dict(TINY, regions={**TINY["regions"], "spain": written}))
    )
    assert config.regions["spain1"] == explicit.regions["spain"]
    for bad, message in [
        ({**spain["simulate"], "draws": 0}, "draws must be an integer >= 1"),
        ({**spain["simulate"], "draws": 2.5}, "draws must be an integer >= 1"),
    ]:
        data = dict(TINY, regions={**TINY["regions"], "spain": {**spain, "simulate": bad}})
        with pytest.raises(ConfigError, match=message):
            load_experiment_config(write_config(tmp_path, data))
    clash = {**TINY["regions"], "spain": draws, "spain1": spain}
    with pytest.raises(ConfigError, match="draw spain1 would replace a region"):
        load_experiment_config(write_config(tmp_path, dict(TINY, regions=clash)))


def test_simulate_options_of_a_config_are_the_arguments_of_simulate_region(tmp_path):
    # The runner passes a region's `simulate:` group to simulate_region by name.
    import inspect

    from sarcrop.data.simulate import simulate_region
    from sarcrop.experiments.config import SimulationSpec

    arguments = inspect.signature(simulate_region).parameters
    # Every argument that changes the simulated data can be given in a config, and no other.
    output_only = {"region", "out", "block_size", "compress", "progress"}
    assert set(SimulationSpec.model_fields) - {"preset"} == set(arguments) - output_only
    spain = TINY["regions"]["spain"]
    options = {"product_resolution": 20, "randomise": False, "swath_edge": False, "draws": 2}
    coarse = {**spain, "simulate": {**spain["simulate"], **options}}
    config = load_experiment_config(
        write_config(tmp_path, dict(TINY, regions={**TINY["regions"], "spain": coarse}))
    )
    assert config.regions["spain1"].simulate.product_resolution == 20.0
    assert config.regions["spain1"].simulate.randomise is False
    assert config.regions["spain1"].simulate.swath_edge is False
    # Left at their defaults, they stay out of the region's dump: earlier cache keys stay valid.
    dump = SimulationSpec(preset="spain").model_dump(mode="json")
    assert not {"product_resolution", "randomise", "swath_edge"} & set(dump)


def test_a_folder_named_like_a_shipped_config_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper").mkdir()  # e.g. the output folder of an earlier run
    assert resolve_config("paper") == shipped_configs()["paper"]
    (tmp_path / "mine.yaml").write_text("name: mine\n", encoding="utf-8")
    assert resolve_config("mine.yaml") == Path("mine.yaml")


def test_experiment_help_names_every_shipped_config():
    # The CLI spells the list out (reading it would import the experiment runner, and torch,
    # on every `sarcrop --help`), so a config added without it shows up here.
    from sarcrop.cli import COMMANDS

    (experiment,) = [c for c in COMMANDS if c.name == "experiment"]
    listed = experiment.description.split("by name: ")[1].split(")")[0]
    assert sorted(listed.split(", ")) == sorted(shipped_configs())


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "stores").mkdir()
    (tmp_path / "stores" / "spain.zarr").mkdir()
    data = dict(TINY, regions={**TINY["regions"], "spain": {"store": "stores/spain.zarr"}})
    config = load_experiment_config(write_config(tmp_path, data))
    assert config.regions["spain"].store == (tmp_path / "stores" / "spain.zarr").resolve()
    data = dict(TINY, regions={**TINY["regions"], "spain": {"store": "stores/none.zarr"}})
    with pytest.raises(ConfigError, match=r"regions.spain.store: file not found"):
        load_experiment_config(write_config(tmp_path, data))
    # Scenes that match no file: refused with the config, before any region is simulated.
    (tmp_path / "labels.tif").touch()
    scenes = {"images": "nothere/*.tif", "labels": "labels.tif", "season_start": "2019-04-21"}
    data = dict(TINY, regions={**TINY["regions"], "spain": scenes})
    with pytest.raises(
        ConfigError, match=r"experiment.yaml: regions.spain.images: no file matches"
    ):
        load_experiment_config(write_config(tmp_path, data))
    # A URL is left as it is, not joined to the folder; only http(s) (a STAC API) is read.
    data["regions"]["spain"]["images"] = "s3://bucket/scenes/*.tif"
    with pytest.raises(
        ConfigError, match=r"regions.spain.images: s3://bucket/scenes/\*.tif: not read: scenes "
    ):
        load_experiment_config(write_config(tmp_path, data))
    data["regions"]["spain"]["images"] = "https://example.org/stac/v1"
    loaded = load_experiment_config(write_config(tmp_path, data))
    assert loaded.regions["spain"].images == "https://example.org/stac/v1"


def test_shipped_configs_validate(tmp_path):
    configs = shipped_configs()
    assert {"paper", "small"} <= set(configs)
    paper = load_experiment_config(resolve_config("paper"))
    assert len(paper.scenarios) == 10
    assert [s.id for s in paper.scenarios][:2] == ["spain-spain-rice-vh", "spain-spain-rice-vhvv"]
    assert {"rf", "ri", "ft", "fte"} <= set(paper.methods)
    small = load_experiment_config(resolve_config("small"))
    assert small.pretrain.bands == ("VH",)
    barley = load_experiment_config(resolve_config("barley"))
    assert {s.crop for s in barley.scenarios} == {"barley"}
    assert barley.members("europe") == [f"europe{i}" for i in range(8)]
    assert {barley.pretrain_of(s)[0] for s in barley.scenarios} == {"rice", "maize", "types"}
    # Every shipped config validates without its data: real-held-out's bias, whose
    # interpolation search the runner leaves out, was once refused for it. A real config's
    # absent data is said after it validated (DataNotFound, a skip for the command); with the
    # data beside the repository it loads in full, wherever the suite runs from.
    from realdata_support import shared_data_dir
    from sarcrop.experiments.config import DataNotFound

    for name in configs:
        path = resolve_config(name)
        if yaml.safe_load(path.read_text()).get("data_root") is None:
            load_experiment_config(path)
            continue
        with pytest.raises(DataNotFound):
            load_experiment_config(path, data_root=tmp_path / "absent")
        if shared_data_dir().is_dir():
            load_experiment_config(path, data_root=shared_data_dir())


def test_a_checkpoint_pretraining_takes_crop_bands_and_architecture_from_it(tiny_run, tmp_path):
    _, out, _ = tiny_run
    [trained] = (out / "cache").glob("pretrain-*/run/model.safetensors")
    shutil.copy(trained, tmp_path / "pre.safetensors")
    data = {**TINY, "pretrain": {"checkpoint": "pre.safetensors"}, "early_season": None}
    spec = load_experiment_config(write_config(tmp_path, data)).pretrain
    assert spec is not None and spec.checkpoint == (tmp_path / "pre.safetensors").resolve()
    assert (spec.crop, spec.bands, spec.model) == ("rice", ("VH",), "recurrent_unet")
    assert spec.model_options["widths"] == [4, 8]
    for given, problem in [
        ({"crop": "maize"}, "pretrain.crop: maize, but pre.safetensors maps rice"),
        ({"bands": ["VH", "VV"]}, "pretrain.bands: VH|VV, but pre.safetensors reads VH"),
        ({"model_options": {"widths": [8, 16]}}, "brings its own model and model_options"),
        ({"checkpoint": "gone.safetensors"}, "pretrain.checkpoint: file not found"),
        # before the methods are checked against it (zero-shot here), a shipped name is named
        ({"checkpoint": "europe-maze"}, "europe-maze; did you mean 'europe-maize'\\? shipped: "),
    ]:
        wrong = {**data, "pretrain": {**data["pretrain"], **given}}
        with pytest.raises(ConfigError, match=problem):
            load_experiment_config(write_config(tmp_path, wrong))
    same = {**data, "pretrain": {**data["pretrain"], "crop": "Rice"}}  # names match as classes do
    assert load_experiment_config(write_config(tmp_path, same)).pretrain is not None
    # A shipped model by name; a file of that name beside the config wins.
    shipped = {**data, "pretrain": {"checkpoint": "europe-maize"}, "methods": ["ri", "fte"]}
    spec = load_experiment_config(write_config(tmp_path, shipped)).pretrain
    assert spec is not None and spec.checkpoint == pretrained.path("europe-maize")
    assert (spec.crop, spec.bands) == ("maize", ("VH", "VV"))
    # A scenario that names no bands reads the pre-training's, as `finetune` reads the
    # checkpoint's; one that names them keeps its own.
    for pre, bands in [(shipped, ("VH", "VV")), (data, ("VH",)), (TINY, ("VH",))]:
        scenario = {
            "finetune": "spain",
            "test": "france",
            "crop": "maize" if pre is shipped else "rice",
        }
        unnamed = {**pre, "scenarios": [scenario, {**scenario, "bands": ["VV"]}]}
        scenarios = load_experiment_config(write_config(tmp_path, unnamed)).scenarios
        assert [s.bands for s in scenarios] == [bands, ("VV",)]
    shutil.copy(trained, tmp_path / "europe-maize")
    spec = load_experiment_config(write_config(tmp_path, shipped)).pretrain
    assert spec is not None and spec.checkpoint == (tmp_path / "europe-maize").resolve()


def test_a_checkpoint_pretraining_is_cached_by_its_content(tiny_run, tmp_path, capsys):
    _, out, _ = tiny_run
    [trained] = (out / "cache").glob("pretrain-*/run/model.safetensors")
    checkpoint = tmp_path / "pre.safetensors"
    shutil.copy(trained, checkpoint)
    data = {
        **TINY,
        "pretrain": {"checkpoint": "pre.safetensors"},
        "methods": ["ri", "zero-shot"],
        "early_season": None,
    }
    config = write_config(tmp_path, data)
    first = run_experiment(config, tmp_path / "out")
    units = sorted((tmp_path / "out" / "cache").glob("method-*"))
    assert len(units) == 2
    ri = RunRecord.read(tmp_path / "out").unit("spain-france-rice-vhvv", "ri", 0)
    assert ri is not None and ri.checkpoint is not None
    assert read_metadata(tmp_path / "out" / ri.checkpoint).options["widths"] == [4, 8]
    # The same file again: all cached. Another model saved over it: zero-shot runs again, RI
    # (which takes only its architecture) stays cached.
    capsys.readouterr()
    run_experiment(config, tmp_path / "out")
    assert sorted((tmp_path / "out" / "cache").glob("method-*")) == units
    assert "every unit was cached in " in capsys.readouterr().out  # said, as nothing else is
    model, meta = load_checkpoint(checkpoint)
    with torch.no_grad():
        model.decoder.head.bias.add_(3.0)  # more rice everywhere
    save_checkpoint(checkpoint, model, meta)
    second = run_experiment(config, tmp_path / "out")
    assert len(list((tmp_path / "out" / "cache").glob("method-*"))) == 3

    def zero_shot(result) -> pd.Series:
        rows = result.results
        return rows[(rows["method"] == "zero-shot") & (rows["metric"] == "recall")]["value"]

    assert (zero_shot(second).to_numpy() > zero_shot(first).to_numpy()).any()


def test_a_units_warnings_name_the_unit():
    """Among hundreds of units, "it did not learn them" said nothing of which method, seed or
    share of labels: each warning of a unit now starts with them."""
    from sarcrop.experiments.runner import _named_warnings

    unit = _named_warnings("france: ft (seed 2, 25 % of labels, full)")
    with pytest.warns(UserWarning) as caught, unit:
        warnings.warn("the trained model scores IoU 0.10 on its own labels", stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "france: ft (seed 2, 25 % of labels, full): the trained model scores IoU 0.10 on its "
        "own labels"
    ]


def test_the_early_season_figure_shows_the_forest_at_the_reruns_share_of_labels(tmp_path):
    """Its RF line averaged every label fraction of the run (0.46 between 0.55 at 100 % and
    0.36 at 25 %); the reruns now learn from the run's largest fraction, and the forest line
    is the forest given that one."""
    from sarcrop.experiments.config import experiment_config_from_dict
    from sarcrop.experiments.figures import early_season_curves
    from sarcrop.experiments.runner import ExperimentRunner

    config = experiment_config_from_dict({**TINY, "fractions": [0.25, 0.5]})
    runner = ExperimentRunner(config, tmp_path / "run")
    early = [unit for unit in runner._units() if unit.ordering is not None]
    assert early and {unit.fraction for unit in early} == {0.5}

    def row(run, method, ordering, fraction, value):
        where = {"scenario": "s", "metric": "iou", "timestep": 8, "run": run, "method": method}
        return {**where, "ordering": ordering, "label_fraction": fraction, "value": value}

    results = pd.DataFrame(
        [
            row("early-season", "fte", "chronological", 0.5, 0.7),
            row("main", "rf", "n/a", 0.5, 0.55),
            row("main", "rf", "n/a", 0.25, 0.36),
            row("main", "fte", "full", 0.5, 0.6),
        ]
    )
    curves, title = early_season_curves(results, "s")
    drawn = sorted(zip(curves["method"], curves["value"]))
    assert drawn == [("FTE (chronological)", 0.7), ("RF", 0.55)]
    assert title == "Early-season IoU, s, 50 % of the labels"


def test_methods_that_learn_from_a_share_of_the_parcels_share_its_seed(tmp_path):
    """Below every label, a run's parcels are chosen by the seed each method trains with: a
    forest and a network with other seeds would learn from other parcels, and their paired
    comparison would not be paired."""
    data = {**TINY, "fractions": [0.5, 1.0], "methods": ["rf", "ri", "fte+s"]}
    data["variants"] = {"s": {"seed": 7}}
    with pytest.raises(ConfigError, match=r"baseline.seed 0, finetune.seed 0, variants.s.seed 7"):
        load_experiment_config(write_config(tmp_path, data))
    same = {
        **data,
        "baseline": {**TINY["baseline"], "seed": 7},
        "finetune": {**TINY["finetune"], "seed": 7},
    }
    assert load_experiment_config(write_config(tmp_path, same)).fractions == (0.5, 1.0)
    every = {**data, "fractions": [1.0]}  # every parcel: no choice to share
    assert load_experiment_config(write_config(tmp_path, every)).variants


def test_a_misspelt_crop_of_a_simulated_region_is_refused_with_the_config(tmp_path):
    """The simulator's classes are known before it runs: a misspelt crop is refused before
    minutes of simulating and preparing, with the config's file and key."""
    tiny = {**TINY, "methods": ["rf", "ri"], "early_season": None}
    bad = {**tiny, "scenarios": [{**TINY["scenarios"][0], "crop": "rcie"}]}
    with pytest.raises(ConfigError, match=r"experiment.yaml: scenarios\[0\]\.crop: .*'rice'"):
        load_experiment_config(write_config(tmp_path, bad))
    types = {**tiny, "scenarios": [{**TINY["scenarios"][0], "classes": ["rice", "wheet"]}]}
    types["scenarios"][0].pop("crop")
    with pytest.raises(ConfigError, match=r"scenarios\[0\]\.classes: .*wheet"):
        load_experiment_config(write_config(tmp_path, types))


def test_a_redraw_draws_each_method_at_its_own_threshold_and_keeps_the_runs_settings(
    tiny_run, tmp_path, monkeypatch
):
    """The figures call the crop where the scores do: at each method's recorded threshold
    (here a fine-tuning threshold of 0.3), not at 0.5; and a redraw keeps the IoU-by-t tables."""
    import sarcrop.reports.figures as figures
    from sarcrop.experiments.figures import redraw
    from sarcrop.reports.html import build_report_html

    out = tmp_path / "out"
    shutil.copytree(tiny_run[1], out)
    manifest = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    manifest["config"]["finetune"]["threshold"] = 0.3
    (out / "experiment.json").write_text(json.dumps(manifest), encoding="utf-8")
    drawn = []
    scenario_figure = figures.scenario_figure

    def record(area, rows, *args, **kwargs):
        drawn.append(area)
        return scenario_figure(area, rows, *args, **kwargs)

    monkeypatch.setattr(figures, "scenario_figure", record)
    redraw(out)
    after = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert after["timestep_table"] is True
    assert build_report_html(out).count("table-timesteps") == 3
    for method, label, threshold in (("ri", "RI", 0.3), ("rf", "RF", 0.5)):
        with rasterio.open(out / after["scenarios"][0]["maps"][method]) as src:
            probability = np.nan_to_num(src.read(1))
        np.testing.assert_array_equal(drawn[0].predictions[label], probability >= threshold)
    assert ((probability >= 0.3) & (probability < 0.5)).any()  # where the two thresholds differ
    (out / "results.csv").write_text("", encoding="utf-8")
    with pytest.raises(SarcropError, match=r"results\.csv: unreadable results table"):
        redraw(out)


def test_a_run_stopped_while_writing_its_tables_leaves_no_report_of_the_run_before(
    tiny_run, tmp_path, monkeypatch
):
    """Run again into a finished folder and stopped after the new results.csv: the old record
    and report are gone, so no report shows the old numbers beside the new results."""
    from sarcrop.experiments import runner

    config, finished, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(finished, out)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.ExperimentRunner, "_intervals", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, out)
    assert (out / "results.csv").is_file()
    assert not (out / "experiment.json").exists() and not (out / "report.html").exists()
    with pytest.raises(SarcropError, match=r"no experiment\.json"):
        render_report(out)


def test_an_early_season_method_left_out_of_the_methods_is_run_and_scored(tmp_path):
    """The curve reruns a method of its own (``fte`` by default): left out of ``methods``, it
    trained and the run then failed with a KeyError as it scored it, writing no results; its
    pre-training's ground was not checked against the test split either."""
    from sarcrop.experiments.runner import ExperimentRunner

    early = {"scenario": 0, "method": "fte", "orderings": ["chronological"]}
    data = small(methods=["rf"], early_season=early)
    config = load_experiment_config(write_config(tmp_path, data))
    assert ExperimentRunner(config, tmp_path / "run").pretrains
    result = run_experiment(config, tmp_path / "run")
    rows = result.results
    assert set(rows[rows["run"] == "main"]["method"]) == {"rf"}
    curve = rows[rows["run"] == "early-season"]
    assert set(curve["method"]) == {"fte"} and curve["value"].notna().any()
    assert (tmp_path / "run" / "report.html").is_file()
