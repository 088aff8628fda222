"""Crop-type scenarios in an experiment: every method maps several classes, per-class results,
tables, a confusion figure and the report; binary scenarios beside them are left as they were."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from rasterio.crs import CRS

from sarcrop.cli.experiment import summary
from sarcrop.data.grid import Grid
from sarcrop.data.normalization import Normalization
from sarcrop.data.season import Season
from sarcrop.data.store import StoreMetadata, write_store
from sarcrop.errors import ConfigError
from sarcrop.evaluation.metrics import MulticlassConfusion
from sarcrop.experiments.classes import CLASS_RESULTS, OVERALL, binary_view
from sarcrop.experiments.config import (
    DataNotFound,
    experiment_config_from_dict,
    load_experiment_config,
)
from sarcrop.experiments.figures import redraw
from sarcrop.experiments.runner import run_experiment
from sarcrop.training import evaluate, read_metadata

STEPS, SIZE, N = 4, 16, 8
STORE_CLASSES = ["other", "maize", "potato", "grassland"]
CLASSES = ["maize", "potato", "grassland", "other"]
CURVES = {1: [-12, -4, 4, 2], 2: [2, 6, -3, -8], 3: [5, 5, 5, 5]}


def make_store(path, split: list[str] | None = None) -> str:
    """Raw dB patches: a field of each crop per patch on an "other" background (the last
    three patches test, unless ``split`` says otherwise)."""
    rng = np.random.default_rng(0)
    images = rng.normal(-15.0, 1.0, (N, STEPS, 1, SIZE, SIZE)).astype(np.float32)
    labels = np.zeros((N, SIZE, SIZE), np.int16)
    for i in range(N):
        for k, (r, c) in zip(rng.permutation(3) + 1, [(0, 0), (0, 8), (8, 0)]):
            labels[i, r : r + 6, c : c + 6] = k
            images[i, :, 0, r : r + 6, c : c + 6] += np.array(CURVES[int(k)])[:, None, None]
    meta = StoreMetadata(
        bands=("VH",),
        season=Season(dt.date(2021, 5, 1), STEPS, 20),
        grid=Grid(CRS.from_epsg(32631), Affine(10, 0, 600000, 0, -10, 5800000), SIZE * N, SIZE),
        patch_size=SIZE,
        stride=SIZE,
        offsets=[(0, SIZE * i) for i in range(N)],
        classes=STORE_CLASSES,
        split=split or ["train"] * (N - 3) + ["test"] * 3,
        normalization=Normalization((-30.0,), (0.0,), ("VH",)),
        region="netherlands",
        year=2021,
        positive=["maize"],
    )
    write_store(path, images, labels, meta)
    return str(path)


TRAIN = {"epochs": 1, "batch_size": 4, "lr": 0.03, "patience": None, "val_fraction": 0}
TRAIN |= {"normalization": "fixed", "progress_bar": False, "accelerator": "cpu"}
MODEL = {"widths": [4, 8], "dropout": 0.0}


def config(store: str, **changes) -> dict:
    pretrain = {"region": "nl", "crop": "maize", "model_options": MODEL, "train": TRAIN}
    return {
        "name": "types",
        "regions": {"nl": {"store": store}},
        "pretrains": {
            "binary": pretrain,
            # As the shipped crop-type configs: no crop beside the classes.
            "types": {
                **{k: v for k, v in pretrain.items() if k != "crop"},
                "train": {**TRAIN, "classes": CLASSES},
            },
        },
        "finetune": TRAIN,
        "scenarios": [
            {"finetune": "nl", "test": "nl", "crop": "maize", "pretrain": "binary"},
            {"finetune": "nl", "test": "nl", "classes": CLASSES, "pretrain": "binary"},
            {"finetune": "nl", "test": "nl", "pretrain": "types"},
        ],
        "classes": ["maize", "potato", "other"],
        "methods": ["rf", "ri", "fte"],
        "baseline": {"n_estimators": 5, "early_season": False},
        "seeds": 2,
        "figure_patches": 1,
        "threads": 1,
        **changes,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("types") / "store.zarr")


def test_scenario_classes_are_validated_and_binary_specs_unchanged(store):
    parsed = experiment_config_from_dict(config(store))
    binary, own, inherited = parsed.scenarios
    assert parsed.classes_of(binary) is None and binary.id == "nl-nl-maize-vh-from-binary"
    assert parsed.classes_of(own) == tuple(CLASSES) and own.id == "nl-nl-types-vh-from-binary"
    assert parsed.classes_of(inherited) == ("maize", "potato", "other")
    assert "classes" not in binary.model_dump(mode="json", exclude_none=True)
    view = binary_view(parsed)
    assert view.scenarios == (binary,) and binary_view(view) is view
    bad = [
        (
            {
                "scenarios": [
                    {
                        "finetune": "nl",
                        "test": "nl",
                        "crop": "maize",
                        "classes": CLASSES,
                        "pretrain": "binary",
                    }
                ]
            },
            "not both",
        ),
        ({"classes": None}, r"scenarios\[2\]: give crop"),
        ({"classes": ["maize"]}, "at least two"),
        # Comparisons: one crop by a metric of the crop, crop types by their mIoU.
        (
            {"comparisons": [{"a": "rf", "b": "ri", "scenarios": ["*types*"]}]},
            r"comparisons\[0\]: scenario nl-nl-types-vh-from-binary maps crop types: compare "
            "it by miou",
        ),
        (
            {"comparisons": [{"a": "rf", "b": "ri", "metric": "miou", "scenarios": ["*-maize-*"]}]},
            r"comparisons\[0\]: scenario nl-nl-maize-vh-from-binary maps one crop; miou",
        ),
        (
            {"comparisons": [{"a": "rf", "b": "ri", "metric": "miou", "timesteps": 2}]},
            r"comparisons\[0\]: crop-type runs keep full-season maps only",
        ),
        (
            {"comparisons": [{"a": "rf", "b": "ri", "metric": "auc"}]},
            r"comparisons\.0\.metric: .*unknown metric 'auc' \(one crop: iou, precision",
        ),
    ]
    for changes, message in bad:
        with pytest.raises(ConfigError, match=message):
            experiment_config_from_dict(config(store, **changes))
    both = [{"a": "rf", "b": "ri"}, {"a": "rf", "b": "ri", "metric": "miou"}]
    assert len(experiment_config_from_dict(config(store, comparisons=both)).comparisons) == 2
    # The early-season index follows its (binary) scenario when crop types are dropped.
    moved = config(store, early_season={"scenario": 2, "method": "fte"})
    moved["scenarios"] = [moved["scenarios"][1], moved["scenarios"][2], moved["scenarios"][0]]
    moved["scenarios"][1]["crop"] = "potato"
    view = binary_view(experiment_config_from_dict(moved))
    assert view.early_season is not None and view.early_season.scenario == 1


def test_crop_type_experiment_records_classes_tables_figure_and_report(store, tmp_path):
    out = tmp_path / "run"
    result = run_experiment(experiment_config_from_dict(config(store)), out)
    # The binary scenario alone fills results.csv, as in a binary experiment.
    assert set(result.results["scenario"]) == {"nl-nl-maize-vh-from-binary"}
    rows = pd.read_csv(out / CLASS_RESULTS, keep_default_na=False, na_values=[""])
    rows["class"] = rows["class"].fillna(OVERALL)
    assert set(rows["scenario"]) == {"nl-nl-types-vh-from-binary", "nl-nl-types-vh-from-types"}
    assert set(rows["method"]) == {"rf", "ri", "fte"} and set(rows["seed"]) == {0, 1}
    full = rows[rows["timestep"] == STEPS]
    own = full[full["scenario"] == "nl-nl-types-vh-from-binary"]
    assert set(own["class"]) == {*CLASSES, OVERALL}
    # mIoU is the mean of the per-class IoUs of the same run (every class present here).
    for (_, _), run in own.groupby(["method", "seed"]):
        iou = run[(run["metric"] == "iou") & (run["class"] != OVERALL)]["value"]
        miou = run[run["metric"] == "miou"]["value"].item()
        assert miou == pytest.approx(iou.mean())
    # Each unit's matrix is the method's argmax over the test split: totals agree, scores too.
    manifest = json.loads((out / "experiment.json").read_text())
    entries = {e["scenario"]: e for e in manifest["crop_types"]}
    entry = entries["nl-nl-types-vh-from-binary"]
    assert (out / entry["figure"]).is_file() and entry["best"] in {"rf", "ri", "fte"}
    table = entry["tables"][0]["table"]
    assert table["method"] == ["RF", "RI", "FTE"] and "IoU grassland" in table
    assert all(" ± " in cell for cell in table["mIoU"])
    tables = (out / "tables.md").read_text()
    assert "# Crop types" in tables and "| IoU potato" in tables
    report = (out / "report.html").read_text()
    assert "Crop types" in report and "Confusion matrix of" in report
    # Transfer to another class set re-initialises the head; the same set keeps it.
    checkpoints = {
        (k["scenario"].get("pretrain"), k["method"]): r["checkpoint"]
        for r in (json.loads(p.read_text()) for p in (out / "cache").glob("method-*/done.json"))
        if (k := r["key"])["seed"] == 0 and r.get("checkpoint") and "classes" in k
    }
    assert "new_head" in read_metadata(checkpoints[("binary", "fte")]).training
    inherited = read_metadata(checkpoints[("types", "fte")])
    assert inherited.target_classes == ["maize", "potato", "other"]
    assert "new_head" in inherited.training  # 4 pre-trained classes -> 3
    # The summed matrix of the figure's method holds every seed's test pixels.
    best = entry["best"]
    counts = [
        np.asarray(r["early_season"][str(STEPS)]["confusion"])
        for r in (json.loads(p.read_text()) for p in (out / "cache").glob("method-*/done.json"))
        if r["key"]["method"] == best and r["key"]["scenario"].get("classes") == CLASSES
    ]
    assert len(counts) == 2 and counts[0].sum() == counts[1].sum() > 0
    one = MulticlassConfusion(CLASSES, counts[0])
    assert own[(own["method"] == best) & (own["seed"] == 0) & (own["metric"] == "kappa")][
        "value"
    ].item() == pytest.approx(one.kappa)
    printed = summary(result)  # what `sarcrop experiment` prints: both kinds of table
    assert "IoU (Table 1)" in printed or "ours" in printed
    assert "| IoU grassland" in printed and str(out / CLASS_RESULTS) in printed
    # Redrawing the run's figures keeps the crop-type section.
    redraw(out)
    assert json.loads((out / "experiment.json").read_text())["crop_types"] == manifest["crop_types"]
    # A rerun reads every unit from the cache and writes the same numbers.
    before = (out / CLASS_RESULTS).read_text()
    done = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*/done.json")}
    again = run_experiment(experiment_config_from_dict(config(store)), out)
    assert again.results.equals(result.results)
    assert (out / CLASS_RESULTS).read_text() == before
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*/done.json")} == done


def test_an_experiment_of_crop_types_only(store, tmp_path):
    """No binary scenario: empty binary tables, the crop-type ones, the report and summary."""
    only = config(store, methods=["rf", "fte"], seeds=1)
    only["scenarios"] = only["scenarios"][2:]
    result = run_experiment(experiment_config_from_dict(only), tmp_path / "run")
    assert result.results.empty
    rows = pd.read_csv(tmp_path / "run" / CLASS_RESULTS)
    assert set(rows["method"]) == {"rf", "fte"} and set(rows["scenario"]) == {
        "nl-nl-types-vh-from-types"
    }
    assert "| IoU potato" in summary(result)
    # The report and tables.md said "0 scenarios", "No results were recorded" and
    # "positive-class metrics" of a run of crop types.
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Crop types" in report and "1 scenario ·" in report
    assert "Key finding: mIoU" in report and "This run maps crop types" in report
    assert "No results were recorded" not in report and "of the positive class" not in report
    assert "positive-class" not in (tmp_path / "run" / "tables.md").read_text()


def test_one_crop_from_a_crop_type_pretraining(store, tmp_path):
    """Maize from the crop-type pre-training: zero-shot is its map of maize against the rest,
    as ``evaluate`` scores it, FTE fine-tunes that head (kept whole, frozen), and ``bias``
    moves its maize log-odds by the chosen threshold."""
    data = config(store, methods=["zero-shot", "fte", "bias"], seeds=1)
    data["scenarios"] = [{"finetune": "nl", "test": "nl", "crop": "maize", "pretrain": "types"}]
    result = run_experiment(experiment_config_from_dict(data), tmp_path / "run")
    rows = result.results[(result.results["run"] == "main") & (result.results["metric"] == "iou")]
    last = rows[rows["timestep"] == rows["timestep"].max()]
    zero_shot = float(last[last["method"] == "zero-shot"]["value"].iloc[0])
    [pretrained] = (tmp_path / "run" / "cache").glob("pretrain-*/run/model.safetensors")
    assert evaluate(pretrained, store, positive="maize")["metrics"]["iou"] == zero_shot
    tuned = {
        read_metadata(path).strategy: path
        for path in (tmp_path / "run" / "cache").glob("method-*/run/model.safetensors")
    }
    assert read_metadata(tuned["fte"]).options["merged_head"] == [True, False, False, False]
    bias_meta = read_metadata(tuned["bias"])
    assert bias_meta.options["merged_head"] == [True, False, False, False]
    threshold = bias_meta.training["threshold_search"]["threshold"]
    at_threshold = evaluate(pretrained, store, positive="maize", threshold=threshold)
    assert evaluate(tuned["bias"], store)["metrics"]["iou"] == pytest.approx(
        at_threshold["metrics"]["iou"], abs=1e-6
    )
    with pytest.raises(ConfigError, match="zero-shot needs a pre-training that maps wheat"):
        wheat = {**data["scenarios"][0], "crop": "wheat"}
        experiment_config_from_dict({**data, "scenarios": [wheat]})
    spelt = {**data["scenarios"][0], "crop": "Maize"}  # a class name whatever its case
    assert experiment_config_from_dict({**data, "scenarios": [spelt]}).scenarios[0].crop == "Maize"


def test_a_crop_type_checkpoint_is_read_for_one_crop(store, tmp_path):
    """A crop-type model given as a checkpoint brings its classes: zero-shot reads it for the
    scenario's crop, as the same model pre-trained in the run is read; other classes named for
    it are refused."""
    data = config(store, methods=["zero-shot"], seeds=1)
    data["scenarios"] = [{"finetune": "nl", "test": "nl", "crop": "maize", "pretrain": "types"}]
    trained = run_experiment(experiment_config_from_dict(data), tmp_path / "run")
    [checkpoint] = (tmp_path / "run" / "cache").glob("pretrain-*/run/model.safetensors")
    given = {**data, "pretrains": {"types": {"checkpoint": str(checkpoint)}}}
    parsed = experiment_config_from_dict(given)
    assert parsed.pretrains["types"].train.classes == tuple(CLASSES)
    read = run_experiment(parsed, tmp_path / "read")
    pd.testing.assert_series_equal(read.results["value"], trained.results["value"])
    assert read.results["value"].notna().any()
    wrong = {"checkpoint": str(checkpoint), "train": {"classes": ["maize", "other"]}}
    problem = r"pretrains.types.train.classes: maize, other, but model.safetensors maps maize, "
    with pytest.raises(ConfigError, match=problem):
        experiment_config_from_dict({**data, "pretrains": {"types": wrong}})


def test_a_run_without_crop_types_removes_an_earlier_runs_class_tables(store, tmp_path):
    """A one-crop run into the folder of a crop-type run left its class_results.csv and
    class_intervals.csv, which the command's summary then printed as this run's."""
    from sarcrop.experiments.classes import CropTypeRuns, class_summary
    from sarcrop.experiments.intervals import CLASS_INTERVALS

    for stale in (CLASS_RESULTS, CLASS_INTERVALS):
        (tmp_path / stale).write_text("scenario\nearlier\n")
    binary = config(store)
    binary["scenarios"] = binary["scenarios"][:1]
    assert CropTypeRuns(experiment_config_from_dict(binary)).write(tmp_path) == ([], "")
    assert not (tmp_path / CLASS_RESULTS).exists() and not (tmp_path / CLASS_INTERVALS).exists()
    assert class_summary(tmp_path) == []


def test_shipped_crop_type_configs_validate(tmp_path):
    from importlib.resources import files

    folder = files("sarcrop") / "configs"
    parsed = load_experiment_config(str(folder / "crop-types.yaml"))
    assert all(parsed.classes_of(s) for s in parsed.scenarios)
    assert {"rf", "ri", "ft", "fte", "ftd"} <= set(parsed.methods) and parsed.seeds == 3
    # The real one names its data: absent, loading says so (the command then skips).
    with pytest.raises(DataNotFound, match="real data not found"):
        load_experiment_config(str(folder / "crop-types-real.yaml"), data_root=tmp_path / "no")


def test_parent_classes_are_checked_against_every_scenario_up_front(store):
    """A pre-training that calls grassland ``grass`` keeps its head for the scenario once
    ``parent_classes`` says so, so distillation has its teacher, and so does a one-crop
    scenario of grassland; names that fit no class of a scenario, and a one-crop pre-training,
    are refused before any work."""
    types = {"region": "nl", "model_options": MODEL, "train": {**TRAIN, "classes": CLASSES}}
    types["train"]["classes"] = ["maize", "potato", "grass", "other"]
    scenario = {"finetune": "nl", "test": "nl", "classes": CLASSES, "pretrain": "types"}
    base = config(store, pretrains={"types": types}, scenarios=[scenario])
    finetune = {**TRAIN, "distillation": 1.0}
    with pytest.raises(ConfigError, match=r"trains a new head.*parent_classes"):
        experiment_config_from_dict({**base, "finetune": finetune})
    named = {**finetune, "parent_classes": {"grassland": "grass"}}
    parsed = experiment_config_from_dict({**base, "finetune": named})
    assert parsed.finetune.parent_classes == {"grassland": "grass"}
    binary = {"finetune": "nl", "test": "nl", "crop": "maize", "pretrain": "types"}
    one_crop_pretraining = {"region": "nl", "crop": "maize", "model_options": MODEL, "train": TRAIN}
    for changes, message in [
        ({"finetune": {**named, "parent_classes": {"grassland": "meadow"}}}, "meadow, not among"),
        ({"finetune": named, "scenarios": [scenario, binary]}, r"scenarios\[1\].*not among ours"),
        ({"finetune": named, "pretrains": {"types": one_crop_pretraining}}, "one crop"),
    ]:
        with pytest.raises(ConfigError, match=message) as error:
            experiment_config_from_dict({**base, **changes})
        assert "\n" not in str(error.value)
    # One crop the crop-type head maps: the head answers for it, so distillation has its
    # teacher; a crop it does not map gets a new head, refused with distillation.
    one_crop = {**base, "finetune": finetune, "scenarios": [binary]}
    assert experiment_config_from_dict(one_crop).finetune.distillation == 1.0
    # ... spelled otherwise too, as fine-tuning matches it to the head (it was refused)
    spelled = {**one_crop, "scenarios": [{**binary, "crop": "Maize"}]}
    assert experiment_config_from_dict(spelled).finetune.distillation == 1.0
    unknown = {**binary, "crop": "wheat"}
    fresh = {**one_crop, "finetune": {**finetune, "fresh_head": True}}
    grassland = {"scenarios": [{**binary, "crop": "grassland"}]}
    for changes in ({"scenarios": [unknown]}, fresh, grassland):
        with pytest.raises(ConfigError, match=r"scenarios\[0\] maps.*trains a new head"):
            experiment_config_from_dict({**one_crop, **changes})
    # ... unless parent_classes names the crop's class in the pre-trained head.
    assert experiment_config_from_dict({**one_crop, **grassland, "finetune": named})
