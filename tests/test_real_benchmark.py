"""The real-data transfer benchmark: data root, merged regions, named pre-trainings, label
fractions, the skip without data, and a tiny run on the real WorldCereal locations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import realdata_support
from sarcrop.cli import main
from sarcrop.data.parcels import store_parcels
from sarcrop.data.store import DatasetStore
from sarcrop.errors import ConfigError
from sarcrop.evaluation.metrics import EvaluationInputError
from sarcrop.evaluation.tables import paired_table
from sarcrop.experiments import load_experiment_config, run_experiment
from sarcrop.experiments.compare import Arm, compare_methods
from sarcrop.experiments.config import DataNotFound, experiment_config_from_dict
from sarcrop.experiments.intervals import split_parcels
from sarcrop.experiments.presets import resolve_config
from sarcrop.experiments.record import RunRecord, scenario_sources
from sarcrop.experiments.runner import ExperimentRunner
from sarcrop.training import read_metadata

shared_data = realdata_support.shared_data  # the fixture (skips where the data is absent)

PATCHES = "worldcereal-s1-croptype-patches/geotiff"
FLANDERS_2018 = "00002806639B424A"
FLANDERS_2019 = "000028085BF08E7E"
TANZANIA = "2021_TZA_COPERNICUS-GEOGLAM_POLY_1101950"


def location(name: str, season_start: str, split: str) -> dict:
    """A real region as the shipped config writes it, relative to the data root."""
    return {
        "images": f"{PATCHES}/{name}_S1_*",
        "labels": f"{PATCHES}/{name}_labels_CT_LC_10m.tif",
        "label_options": {"code_map": {1200: "maize", 9120: "grassland", 5100: "potato"}},
        "season_start": season_start,
        "timesteps": 8,
        "days": 20,
        "scenes": {"resolution": 10},
        "tiling": {"patch_size": 16},
        "split": {"method": split},
    }


def real_config(**changes: object) -> dict:
    config = {
        "name": "real-tiny",
        "data_root": "data",
        "regions": {
            "a": location(FLANDERS_2018, "2018-04-21", "train"),
            "b": location(FLANDERS_2019, "2019-04-21", "train"),
            "b-test": location(FLANDERS_2019, "2019-04-21", "test"),
            "tanzania": location(TANZANIA, "2021-03-15", "train"),
            "ab": {"merge": ["a", "b"]},
        },
        "pretrains": {
            "flanders": {"region": "ab", "crop": "maize", "model_options": {"widths": [4, 8]}},
            "tanzania": {"region": "tanzania", "crop": "maize", "model_options": {"widths": [4]}},
        },
        "scenarios": [
            {"finetune": "a", "test": "b-test", "crop": "maize", "pretrain": "tanzania"},
            {"finetune": "a", "test": "b-test", "crop": "maize", "pretrain": "flanders"},
        ],
        "fractions": [1.0, 0.25, 0.5],
    }
    config.update(changes)
    return config


def tiny_pretrain(region: str) -> dict:
    """One epoch of a small network on ``region``'s maize."""
    return {
        "region": region,
        "crop": "maize",
        "model_options": {"widths": [4, 8]},
        "train": {"epochs": 1, "val_fraction": 0, "progress_bar": False},
    }


def fake_data_root(root: Path) -> Path:
    """Empty files where the real ones would be (loading checks only that they exist)."""
    folder = root / "data" / PATCHES
    folder.mkdir(parents=True)
    for name in (FLANDERS_2018, FLANDERS_2019, TANZANIA):
        for suffix in ("S1_VH_sigma0_dB_20m.tif", "labels_CT_LC_10m.tif"):
            (folder / f"{name}_{suffix}").touch()
    return root / "data"


def write(folder: Path, data: dict) -> Path:
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_region_files_resolve_against_the_data_root(tmp_path, monkeypatch):
    fake_data_root(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative data_root is relative to the working directory
    (tmp_path / "configs").mkdir()
    config = load_experiment_config(write(tmp_path / "configs", real_config()))
    root = (tmp_path / "data").resolve()
    assert config.data_root == root
    assert config.regions["a"].labels == root / PATCHES / f"{FLANDERS_2018}_labels_CT_LC_10m.tif"
    assert config.regions["a"].images == str(root / PATCHES / f"{FLANDERS_2018}_S1_*")
    other = fake_data_root(tmp_path / "elsewhere")
    moved = load_experiment_config(write(tmp_path / "configs", real_config()), data_root=other)
    assert moved.regions["b"].labels.parent == other.resolve() / PATCHES


def test_merged_regions_named_pretrainings_and_fractions(tmp_path):
    root = fake_data_root(tmp_path)
    config = load_experiment_config(write(tmp_path, real_config(data_root=str(root))))
    assert config.members("ab") == ["a", "b"]
    assert config.fractions == (0.25, 0.5, 1.0)  # sorted
    assert set(config.pretrainings) == {"flanders", "tanzania"}
    first, second = config.scenarios
    assert config.pretrain_of(first)[0] == "tanzania"
    assert config.pretrain_of(second)[1].region == "ab"
    assert first.id != second.id and second.id.endswith("-from-flanders")
    assert set(scenario_sources(config).values()) == {"real"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fractions": [0.0, 1.0]}, r"fractions.*\(0, 1\]"),
        (
            {"scenarios": [{"finetune": "a", "test": "b-test", "crop": "maize"}]},
            "name its pretrain",
        ),
        (
            {"scenarios": [{"finetune": "a", "test": "b", "crop": "maize", "pretrain": "mars"}]},
            "unknown pretrain 'mars'",
        ),
        ({"regions": {"a": {"merge": ["ab", "b"]}}}, "merges itself"),
        ({"regions": {"ab": {"merge": ["a"]}}}, r"regions\.ab\.merge"),
        ({"pretrains": {}}, "give pretrain"),
        ({"epoch_budget": "time"}, "epoch_budget"),
        ({"methods": ["rf-feature"]}, "unknown method 'rf-feature'"),
        (
            {
                "methods": ["rf", "zero-shot"],
                "scenarios": [
                    {"finetune": "a", "test": "b-test", "crop": "grassland", "pretrain": "flanders"}
                ],
            },
            "zero-shot needs a pre-training that maps grassland; pretrain flanders maps maize",
        ),
    ],
)
def test_config_errors_for_the_new_sections(tmp_path, changes, message):
    root = fake_data_root(tmp_path)
    if "regions" in changes:  # changed regions, the others as they are
        changes = {**changes, "regions": {**real_config()["regions"], **changes["regions"]}}
    with pytest.raises(ConfigError, match=message):
        load_experiment_config(write(tmp_path, real_config(data_root=str(root), **changes)))


def test_absent_data_is_a_skip_not_an_error(tmp_path, capsys, monkeypatch):
    """Shipped without its data (the default data_root, ../shared/data, absent): a skip. A
    folder named with --data is named on purpose: absent, it is an error."""
    with pytest.raises(DataNotFound, match="real data not found at"):
        load_experiment_config(resolve_config("real"), data_root=tmp_path / "none")
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    code = main(["experiment", "real", "--out", str(out)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert printed == [f"skipping: real data not found at {tmp_path.parent / 'shared' / 'data'}"]
    assert not out.exists()
    code = main(["experiment", "real", "--data", str(tmp_path / "none"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"real data not found at {(tmp_path / 'none').resolve()}" in err
    assert not out.exists()
    # A data root without one of the files names that file.
    root = fake_data_root(tmp_path)
    (root / PATCHES / f"{TANZANIA}_labels_CT_LC_10m.tif").unlink()
    with pytest.raises(DataNotFound, match=f"{TANZANIA}_labels_CT_LC_10m.tif"):
        load_experiment_config(write(tmp_path, real_config(data_root=str(root))))
    # A user's own config: a mistyped data path is an error, not a skip.
    own = write(tmp_path, real_config(data_root=str(root)))
    code = main(["experiment", str(own), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and f"{TANZANIA}_labels_CT_LC_10m.tif" in err
    assert not out.exists()


@pytest.mark.realdata
def test_shipped_real_config_names_the_paper_shaped_scenarios(shared_data):
    config = load_experiment_config(resolve_config("real"), data_root=shared_data)
    assert config.seeds >= 5 and config.fractions == (0.1, 0.25, 0.5, 1.0)
    assert {"rf", "ri", "ft", "fte", "ftd", "probe", "rf-features", "zero-shot", "bias"} <= set(
        config.methods
    )
    assert config.feature_forest.raw and config.epoch_budget == "epochs"
    assert config.members("flanders") == ["flanders2018", "flanders2019"]
    pretrains = [(s.finetune, s.test, config.pretrain_of(s)[0]) for s in config.scenarios]
    assert pretrains == [
        ("tanzania", "tanzania", "flanders"),
        ("flanders2018", "flanders2019-test", "europe"),
        ("flanders2019", "flanders2018-test", "europe"),
        ("flanders2018-own", "flanders2018-own", "europe"),
        ("flanders2019-own", "flanders2019-own", "europe"),
        ("tanzania", "tanzania", "europe"),
    ]
    own = config.regions["flanders2019-own"]
    assert own.split.method == "patch" and own.images == config.regions["flanders2019"].images
    assert set(scenario_sources(config).values()) == {"real"}


@pytest.mark.realdata
def test_shipped_held_out_config_scores_every_location_on_unseen_fields(shared_data):
    config = load_experiment_config(resolve_config("real-held-out"), data_root=shared_data)
    real = load_experiment_config(resolve_config("real"), data_root=shared_data)
    assert [(s.finetune, s.test, s.folds) for s in config.scenarios] == [
        ("flanders2019", "flanders2019-test", 3),
        ("flanders2018", "flanders2018-test", 3),
        ("tanzania-all", "tanzania-test", 3),
    ]
    assert config.methods == real.methods and config.variants == real.variants
    assert config.seeds == real.seeds
    assert config.fractions == real.fractions
    # the same recipe, with the interpolation chosen on held-out fields of the training
    # parcels, and the middle weight where they are too few to fold
    weights = (0.0, 0.25, 0.5, 0.75, 1.0)
    searched = real.finetune.updated(interpolation_search=weights, interpolation=0.5)
    assert config.finetune == searched
    assert config.baseline == real.baseline and config.pretrains == real.pretrains
    for name in ("flanders2018", "flanders2019", "flanders2018-test", "flanders2019-test"):
        assert config.regions[name] == real.regions[name]


@pytest.mark.realdata
def test_shipped_early_config_scores_both_shipped_maize_models(shared_data):
    """real-early reads the two shipped maize models by name and scores them on real.yaml's
    locations, splits and recipe, with the forest's early-season copies beside them."""
    config = load_experiment_config(resolve_config("real-early"), data_root=shared_data)
    real = load_experiment_config(resolve_config("real"), data_root=shared_data)
    held = load_experiment_config(resolve_config("real-held-out"), data_root=shared_data)
    files = {name: Path(spec.checkpoint).name for name, spec in config.pretrains.items()}
    assert files == {"full": "europe-maize.safetensors", "early": "europe-maize-early.safetensors"}
    europe = [(s.finetune, s.test) for s in real.scenarios if s.pretrain == "europe"]
    new_fields = [(s.finetune, s.test, s.folds) for s in held.scenarios if s.pretrain == "europe"]
    for name in ("full", "early"):
        ours = [s for s in config.scenarios if s.pretrain == name]
        assert [(s.finetune, s.test) for s in ours if s.folds is None] == europe
        assert [(s.finetune, s.test, s.folds) for s in ours if s.folds] == new_fields
    for name in {region for pair in europe for region in pair}:
        assert config.regions[name] == real.regions[name]
    for name in {region for *pair, _ in new_fields for region in pair}:
        assert config.regions[name] == held.regions[name]
    assert config.finetune == real.finetune and config.variants == real.variants
    assert config.baseline.early_season and config.seeds == real.seeds
    assert {"zero-shot", "bias", "ftd+dd", "rf"} == set(config.methods)


@pytest.mark.realdata
def test_the_early_season_model_maps_real_maize_from_a_season_cut_short(shared_data, tmp_path):
    """On Flanders 2019 with only the first four composites observed (to 9 July), the shipped
    early-season model as it is maps maize better than answering "maize" everywhere; the
    full-season model maps nothing yet. Both score alike on the full season."""
    config = yaml.safe_load(resolve_config("real-early").read_text(encoding="utf-8"))
    config["scenarios"] = [
        s for s in config["scenarios"] if s["test"] == "flanders2019-test" and "folds" not in s
    ]
    config.update(data_root=str(shared_data), seeds=1, fractions=[1.0], methods=["zero-shot"])
    early_minus_full = {"a": "zero-shot", "b": "zero-shot", "scenarios": ["*-from-early"]}
    early_minus_full.update(b_scenarios=["*-from-full"], timesteps=4)
    config["comparisons"] = [early_minus_full]
    path = tmp_path / "early.yaml"
    path.write_text(yaml.safe_dump(config))
    results = run_experiment(path, tmp_path / "out").results
    iou = results[results["metric"] == "iou"].set_index(["scenario", "timestep"])["value"]
    early = iou["flanders2018-flanders2019-test-maize-vhvv-from-early"]
    full = iou["flanders2018-flanders2019-test-maize-vhvv-from-full"]
    loaded = load_experiment_config(path)
    scenario = loaded.scenarios[0]
    test_store, _ = ExperimentRunner(loaded, tmp_path / "out").region_store(scenario.test)
    target, parcels = split_parcels(test_store, scenario.bands, scenario.crop)
    everywhere = float(target[parcels >= 0].mean())  # the IoU of calling every pixel maize
    assert early[4] > everywhere + 0.1 and full[4] < 0.05
    assert abs(early[8] - full[8]) < 0.1
    tables = (tmp_path / "out" / "tables.md").read_text(encoding="utf-8")
    assert "## IoU by number of observed composites t" in tables
    # Over the test parcels, too: at t = 4 the early model's interval lies above the other's.
    by_step = pd.read_csv(tmp_path / "out" / "timestep_intervals.csv")
    at_4 = by_step[by_step["timestep"] == 4].set_index("scenario")
    early_4 = at_4.loc["flanders2018-flanders2019-test-maize-vhvv-from-early"]
    full_4 = at_4.loc["flanders2018-flanders2019-test-maize-vhvv-from-full"]
    assert early_4["mean"] == pytest.approx(early[4]) and early_4["low"] > full_4["high"]
    # ... and paired on the same parcel draws, the config's comparison (comparisons.csv).
    (paired,) = pd.read_csv(tmp_path / "out" / "comparisons.csv").itertuples()
    assert paired.timestep == 4 and paired.low > 0
    assert paired.difference == pytest.approx(early[4] - full[4])


@pytest.mark.realdata
def test_shipped_crop_type_config_also_scores_held_out_fields(shared_data):
    config = load_experiment_config(resolve_config("crop-types-real"), data_root=shared_data)
    patch, held = config.scenarios
    assert (patch.finetune, patch.test, patch.folds) == ("flanders", "flanders", None)
    assert (held.finetune, held.test, held.folds) == ("flanders-all", "flanders-scored", 3)
    assert config.classes_of(held) == config.classes_of(patch) == config.classes
    assert config.members("flanders-all") == ["flanders2018-all", "flanders2019-all"]
    for year in ("2018", "2019"):  # the same location, all patches to learn and to score
        located = config.regions[f"flanders{year}"]
        views = [config.regions[f"flanders{year}-{view}"] for view in ("all", "scored")]
        assert [v.split.method for v in views] == ["train", "test"]
        assert all(v.images == located.images and v.labels == located.labels for v in views)
    assert config.early_season is not None and config.early_season.scenario == 0


@pytest.mark.realdata
def test_tiny_real_run_has_fractions_and_parcel_intervals(shared_data, tmp_path):
    data = real_config(
        data_root=str(shared_data),
        regions={
            "a": location(FLANDERS_2018, "2018-04-21", "train"),
            "b-test": location(FLANDERS_2019, "2019-04-21", "test"),
            "tanzania": location(TANZANIA, "2021-03-15", "train"),
        },
        pretrains={"tanzania": tiny_pretrain("tanzania")},
        scenarios=[{"finetune": "a", "test": "b-test", "crop": "maize", "bands": ["VH", "VV"]}],
        finetune={"epochs": 2, "batch_size": 4, "val_fraction": 0, "progress_bar": False},
        methods=["rf", "ft"],
        baseline={"n_estimators": 10, "max_samples_per_class": 500, "early_season": False},
        fractions=[0.5, 1.0],
        seeds=2,
        threads=1,
        figure_patches=1,
    )
    out = tmp_path / "out"
    result = run_experiment(write(tmp_path, data), out)
    results = result.results
    assert list(results.columns[-3:]) == ["run", "ordering", "label_fraction"]
    assert set(results["label_fraction"]) == {0.5, 1.0}
    assert set(results["seed"]) == {0, 1}
    # Fewer labels really are fewer: the half-label runs differ from the full ones.
    iou = results[(results["metric"] == "iou") & (results["timestep"] == 8)]
    full = iou[iou["label_fraction"] == 1.0].set_index(["method", "seed"])["value"]
    half = iou[iou["label_fraction"] == 0.5].set_index(["method", "seed"])["value"]
    assert not np.allclose(full.sort_index(), half.sort_index())

    intervals = pd.read_csv(out / "intervals.csv")
    assert len(intervals) == 4  # 2 methods × 2 fractions
    assert (intervals["seeds"] == 2).all() and (intervals["n_parcels"] > 5).all()
    means = iou.groupby(["method", "label_fraction"])["value"].mean()
    for row in intervals.itertuples():
        assert row.mean == pytest.approx(means[(row.method, row.label_fraction)])
        assert row.low - 1e-3 <= row.mean <= row.high + 1e-3
    # Paired with the forest on the same draws (no RI in this run: nothing paired with it).
    assert intervals["minus_ri"].isna().all()
    ft = intervals[intervals["method"] == "ft"].set_index("label_fraction")
    rf = intervals[intervals["method"] == "rf"].set_index("label_fraction")
    assert rf["minus_rf"].isna().all()
    assert np.allclose(ft["minus_rf"], ft["mean"] - rf["mean"], atol=1e-9)
    assert (ft["minus_rf_low"] <= ft["minus_rf"] + 1e-9).all()
    assert (ft["minus_rf"] <= ft["minus_rf_high"] + 1e-9).all()
    assert ft["p_above_rf"].between(0, 1).all()

    tables = (out / "tables.md").read_text(encoding="utf-8")
    assert "by share of labelled parcels" in tables and "ours on real data" in tables
    assert "IoU minus RF, paired" in tables and "IoU minus RI" not in tables
    manifest = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert manifest["fractions"] == [0.5, 1.0]
    assert (out / manifest["learning_curves"]).is_file()
    assert [s["data"] for s in manifest["scenarios"]] == ["real"]
    report = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="table-fractions"' in report
    assert "IoU of the positive class (full season, t = 8, 100 % of the labelled parcels)" in report
    assert 'id="table-paired-rf"' in report and 'id="table-paired-ri"' not in report
    record = RunRecord.read(out)
    assert record.fractions == (0.5, 1.0)
    assert record.unit(record.scenarios[0].id, "ft", 0).label_fraction == 1.0
    assert set(record.pretrains) == {"tanzania"}


def test_paired_table_shows_each_method_minus_the_baseline_per_fraction():
    rows = [
        ("s", "ri", 0.25, None, None, None, None),
        ("s", "ft", 0.25, 0.09, 0.01, 0.13, 0.983),
        ("s", "ft", 1.0, -0.02, -0.07, 0.03, 0.204),
        ("s", "rf", 1.0, -0.08, -0.25, 0.12, 0.262),
    ]
    columns = ["scenario", "method", "label_fraction", "minus_ri"]
    columns += ["minus_ri_low", "minus_ri_high", "p_above_ri"]
    intervals = pd.DataFrame(rows, columns=columns).assign(level=0.95, metric="iou")
    table = paired_table(intervals, "ri", sources={"s": "real"}, names={"s": "A → B"})
    assert table.header[0][2:] == (
        "25 %: A − RI",
        "25 %: P(A > RI)",
        "100 %: A − RI",
        "100 %: P(A > RI)",
    )
    text = {row.labels[1]: [cell.ours for cell in row.cells] for row in table.rows}
    assert list(text) == ["RF", "FT"]  # the baseline has no row of its own
    assert text["FT"] == ["0.09 [0.01, 0.13]", "0.983", "-0.02 [-0.07, 0.03]", "0.204"]
    assert text["RF"] == ["–", "–", "-0.08 [-0.25, 0.12]", "0.262"]
    assert "ours on real data" in table.title and "spread over seeds is not in it" in table.notes[0]
    with pytest.raises(EvaluationInputError, match="minus_rf"):
        paired_table(intervals, "rf")


def test_the_documented_my_fields_experiment_runs_from_the_shipped_model(shared_data, tmp_path):
    """docs/real-data.md's config, pointed at a real location, runs every method it names."""
    text = (realdata_support.REPO / "docs" / "real-data.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n# my-fields.yaml", 1)[1].split("```", 1)[0]
    config = yaml.safe_load("#" + block)
    real = location(FLANDERS_2019, "2019-04-21", "patch")
    assert {s["folds"] for s in config["scenarios"] if "folds" in s} == {3}
    for region in config["regions"].values():  # my-fields (the folds derive its two views)
        region.update(
            images=str(shared_data / real["images"]),
            labels=str(shared_data / real["labels"]),
            label_options=real["label_options"],
        )
    config.update(seeds=1, fractions=[1.0], jobs=1)
    # As documented, but shorter: two epochs and a small forest (the methods, not the scores).
    config["finetune"]["epochs"] = 2
    config["baseline"]["n_estimators"] = 10
    path = tmp_path / "my-fields.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_experiment(path, tmp_path / "out")
    assert set(result.results["method"]) == set(config["methods"])
    assert result.results["scenario"].str.endswith("-folds3").any()
    record = RunRecord.read(tmp_path / "out")
    assert record.pretrain is not None
    assert Path(record.pretrain.checkpoint).name == "europe-maize.safetensors"
    iou = result.results[(result.results["metric"] == "iou") & (result.results["timestep"] == 8)]
    assert iou["value"].between(0, 1).all() and len(iou) == 2 * len(config["methods"])


def test_own_splits_variants_add_ri_longer_and_the_fine_tuned_methods_with_a_setting():
    """The extra methods of benchmarks/own_splits.py, variants in the same run: RI with more
    epochs, and every method that fine-tunes the pre-trained start (not RI, the forests or
    zero-shot) with distillation or date dropout."""
    from benchmarks.own_splits import arguments, splits_config, variants

    methods = ["rf", "ri", "ft", "ftd-last-1", "zero-shot"]
    args = ["--data", "data", "--out", "out", "--methods", *methods]
    extra = variants(arguments([*args, "--ri-epochs", "60", "--distillation", "1"]))
    assert extra.settings == {"e60": {"epochs": 60}, "d1": {"distillation": 1.0}}
    assert extra.methods == ["ri+e60", "ft+d1", "ftd-last-1+d1"]
    assert extra.baselines == ["ri+e60"]
    dropped = variants(arguments([*args, "--date-dropout", "0.25"]))
    assert dropped.settings == {"dd0.25": {"date_dropout": 0.25}}
    assert dropped.methods == ["ft+dd0.25", "ftd-last-1+dd0.25"] and not dropped.baselines
    assert variants(arguments(args)).methods == []
    both = '{"date_dropout": 0.25, "interpolation": 0.5}'
    named = variants(arguments([*args, "--variant", f"dd_i5={both}"]))
    assert named.settings == {"dd_i5": {"date_dropout": 0.25, "interpolation": 0.5}}
    assert named.methods == ["ft+dd_i5", "ftd-last-1+dd_i5"] and not named.baselines
    for bad in ("dd i5={}", "dd_i5=[0.25]", "dd_i5={date_dropout: 0.25}"):
        with pytest.raises(SystemExit):
            arguments([*args, "--variant", bad])
    config = experiment_config_from_dict(splits_config(2, 1, [1.0], [*methods, "ftd+dd"], extra))
    assert config.methods == (*methods, "ftd+dd", *extra.methods)
    both_config = splits_config(2, 1, [1.0], methods, named)
    assert experiment_config_from_dict(both_config).finetune_of("ft+dd_i5").interpolation == 0.5
    assert config.finetune_of("ftd+dd").date_dropout == 0.25  # real.yaml's own variant
    assert config.finetune_of("ri+e60").epochs == 60 and config.finetune_of("ri").epochs == 20
    assert config.finetune_of("ft+d1").distillation == 1.0
    assert config.finetune_of("ft+d1").updated(distillation=0.0) == config.finetune


def test_own_splits_can_pre_train_another_model_and_fine_tune_it_longer():
    """``--model`` and ``--epochs``: the same splits and methods with another architecture."""
    from benchmarks.own_splits import arguments, splits_config, with_network

    args = arguments(["--data", "d", "--out", "o", "--model", "tempcnn", "--epochs", "100"])
    shipped = splits_config(2, 1, [1.0], ["rf", "ri", "ft"])
    config = experiment_config_from_dict(with_network(shipped, args.model, args.epochs))
    pretrain = config.pretrain
    assert pretrain is not None and pretrain.model == "tempcnn" and not pretrain.model_options
    assert config.finetune_of("ri").epochs == config.finetune_of("ft").epochs == 100
    assert config.finetune_of("ft").augment  # the rest of the recipe stays
    unchanged = experiment_config_from_dict(with_network(shipped, None, None))
    assert unchanged == experiment_config_from_dict(shipped)
    assert unchanged.finetune_of("ft").epochs == 20


def test_own_splits_benchmark_pools_every_split_of_each_location(shared_data, tmp_path):
    """benchmarks/own_splits.py: each location split two ways, pooled over the splits."""
    from benchmarks.own_splits import main as own_splits

    args = ["--data", str(shared_data), "--out", str(tmp_path), "--splits", "2", "--seeds", "1"]
    args += ["--fractions", "1.0", "--methods", "rf", "ri", "--epochs", "2", "--ri-epochs", "3"]
    assert own_splits(args) == 0
    table = pd.read_csv(tmp_path / "splits.csv")
    assert set(zip(table["location"], table["method"], strict=True)) == {
        (location, method)
        for location in ("flanders2018", "flanders2019")
        for method in ("rf", "ri", "ri+e3")  # ri+e3: RI again, with 3 epochs
    }
    record = RunRecord.read(tmp_path / "run")
    [longer, *_] = [unit for unit in record.units if unit.method == "ri+e3"]
    assert read_metadata(record.path(longer.checkpoint)).training["epochs"] == 3
    assert (table["splits"] == 2).all() and (table["runs"] == 2).all()
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    iou = results[(results["metric"] == "iou") & (results["timestep"] == 8)]
    for location in ("flanders2018", "flanders2019"):
        mine = iou[iou["scenario"].str.startswith(f"{location}-split")]
        means = mine.groupby("method")["value"].mean()
        row = table.set_index(["location", "method"]).loc[location]
        np.testing.assert_allclose(row.loc[means.index, "mean"], means, rtol=1e-9)
        # the pooled paired difference is the difference of the pooled means (scored again
        # from the float16 probabilities on disk: a pixel at 0.5 may flip)
        assert row.loc["ri", "minus_rf"] == pytest.approx(means["ri"] - means["rf"], abs=1e-3)
        expected = means["rf"] - row.loc["ri+e3", "mean"]
        assert row.loc["rf", "minus_ri+e3"] == pytest.approx(expected, abs=1e-3)
        low, high = row.loc["ri", ["minus_rf_low", "minus_rf_high"]]
        assert low <= row.loc["ri", "minus_rf"] <= high
        tests = [
            DatasetStore(record.path(record.regions[f"{location}-split{k}"].store)).indices("test")
            for k in (0, 1)
        ]
        assert tests[0] != tests[1]  # two different random splits of the location
        # They score overlapping sets of the location's fields, numbered alike in both stores:
        # the pooled interval draws each field once, so its parcels are the fields in either.
        stores = [record.path(record.regions[f"{location}-split{k}"].store) for k in (0, 1)]
        np.testing.assert_array_equal(store_parcels(stores[0]), store_parcels(stores[1]))
        scored = [split_parcels(store, ("VH", "VV"), "maize")[1] for store in stores]
        fields = [set(np.unique(parcels[parcels >= 0]).tolist()) for parcels in scored]
        (pooled,) = compare_methods(record, Arm("ri", 1.0, (f"{location}-split*",)), Arm("rf"))
        assert pooled.difference.n_parcels == len(fields[0] | fields[1])
        assert fields[0] & fields[1]  # shared fields, drawn once for both splits
    markdown = (tmp_path / "splits.md").read_text()
    assert "| − RI | − RF | − RI+e3 |" in markdown and "| flanders2019 | 100% | ri+e3 |" in markdown


def test_map_windows_benchmark_maps_the_test_location_as_predict_does(shared_data, tmp_path):
    """benchmarks/map_windows.py: each network checkpoint maps its test location from the
    GeoTIFFs; in 16 px windows without overlap, aligned with the 16 px test patches, the map
    scores what the benchmark scored patch by patch."""
    from benchmarks.map_windows import main as map_windows

    data = real_config(
        data_root=str(shared_data),
        regions={
            "a": location(FLANDERS_2018, "2018-04-21", "train"),
            "b-test": location(FLANDERS_2019, "2019-04-21", "test"),
        },
        pretrains={"a": tiny_pretrain("a")},  # for the config: RI starts from random weights
        scenarios=[{"finetune": "a", "test": "b-test", "crop": "maize", "bands": ["VH", "VV"]}],
        finetune={"recipe": "few-labels", "epochs": 10, "progress_bar": False},
        methods=["ri"],
        fractions=[1.0],
        seeds=1,
        threads=1,
        figure_patches=1,
    )
    run = tmp_path / "run"
    run_experiment(write(tmp_path, data), run)
    out = tmp_path / "windows"
    args = ["--run", str(run), "--out", str(out), "--fractions", "1.0"]
    assert map_windows([*args, "--windows", "default", "16/0", "256/32"]) == 0
    rows = pd.read_csv(out / "windows.csv").set_index("window")
    assert list(rows.index) == ["default", "16/0", "256/32"] and set(rows["method"]) == {"ri"}
    # predict's own choice for a model fine-tuned on 16 px patches
    assert list(rows["ran"]) == ["16/4", "16/0", "256/32"]
    results = pd.read_csv(run / "results.csv")
    scored = results[(results["metric"] == "iou") & (results["timestep"] == 8)]["value"]
    # the same windows, model and threshold as the patch scores: at most a pixel at 0.5 flips
    assert float(scored.iloc[0]) > 0.1  # a map that finds maize
    assert rows.loc["16/0", "iou"] == pytest.approx(float(scored.iloc[0]), abs=2e-3)
    assert "| scenario | method | label_fraction | patches | default | 16/0 | 256/32 |" in (
        out / "windows.md"
    ).read_text(encoding="utf-8")
