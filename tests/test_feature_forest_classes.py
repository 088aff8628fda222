"""The forest on a frozen network's features mapping crop types: the plain forest's classes,
class order and ``other`` handling on the same features, per-class results through the API, the
CLI and the experiments' ``rf-features`` method."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sarcrop.cli import main
from sarcrop.data.dataset import PatchDataset
from sarcrop.data.store import DatasetStore
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.evaluation.feature_forest import probability_maps, run_feature_forest
from sarcrop.experiments.classes import CLASS_RESULTS, OVERALL
from sarcrop.experiments.config import experiment_config_from_dict
from sarcrop.experiments.runner import run_experiment
from test_experiment_classes import STEPS, config, make_store
from test_few_labels import OPTIONS, parent_checkpoint

CLASSES = ["potato", "maize", "other"]  # grassland falls into other
FOREST_ARGS = ["--n-estimators", "5", "--no-early-season", "--seed", "3", "--jobs", "1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("types") / "store.zarr")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return parent_checkpoint(tmp_path_factory.mktemp("parent") / "pre.safetensors")


def options(**changes):
    from sarcrop.options import BaselineOptions

    return BaselineOptions(n_estimators=5, early_season=False, seed=3, classes=CLASSES, **changes)


def test_crop_type_forest_on_features_scores_every_class_in_order(store, checkpoint):
    result = run_feature_forest(checkpoint, store, options(), timesteps="all", jobs=1)
    plain = run_baseline(store, options(), timesteps="all", jobs=1)
    assert result.classes == plain.classes == CLASSES and result.positive == []
    assert not result.confusions and sorted(result.class_confusions) == list(range(1, STEPS + 1))
    assert result.model.n_classes == 3 and result.model.n_features_in_ == OPTIONS["widths"][0] + 4
    # Same training pixels per class as the plain forest (same classes, other gathers grassland).
    assert result.model.n_samples_per_class_ == plain.model.n_samples_per_class_
    assert set(result.model.n_samples_per_class_) == {0, 1, 2}
    # The same test pixels per true class (row sums) as the plain forest, at every t.
    for t, matrix in result.class_confusions.items():
        assert matrix.classes == CLASSES
        truth = matrix.counts.sum(axis=1)
        assert np.array_equal(truth, plain.class_confusions[t].counts.sum(axis=1))
    full = result.class_metrics.as_dict()
    assert list(full["per_class"]) == CLASSES and full["classes"] == CLASSES
    assert full["miou"] == pytest.approx(np.nanmean([v["iou"] for v in full["per_class"].values()]))
    record = result.to_dict()
    assert record["method"] == "feature_forest" and record["classes"] == CLASSES
    assert record["metrics"]["confusion"] == full["confusion"]
    assert list(record["early_season"]) == list(range(1, STEPS + 1))
    # The saved maps: class probabilities in the class order, whose argmax gives the matrix.
    maps = probability_maps(result)
    assert maps.shape == (3, 3, 16, 16)
    np.testing.assert_allclose(maps.sum(axis=1), 1.0, atol=1e-5)
    patches = PatchDataset(DatasetStore(store), "test", bands=["VH"], classes=CLASSES)
    counts = np.zeros((3, 3), np.int64)
    for i in range(len(patches)):
        valid = patches[i]["valid"].numpy().astype(bool)
        truth, predicted = patches[i]["target"].numpy()[valid], maps[i].argmax(axis=0)[valid]
        np.add.at(counts, (truth, predicted), 1)
    assert counts.tolist() == full["confusion"]


def test_crop_type_label_fraction_keeps_the_plain_forests_parcels(store, checkpoint):
    few = options(label_fraction=0.5)
    result = run_feature_forest(checkpoint, store, few, jobs=1)
    plain = run_baseline(store, few, jobs=1)
    assert result.label_subset == plain.label_subset and result.label_subset["fraction"] == 0.5
    assert result.model.n_samples_per_class_ == plain.model.n_samples_per_class_


def test_cli_crop_type_features_is_the_api(store, checkpoint, tmp_path, capsys):
    out = tmp_path / "forest.json"
    argv = ["baseline", store, "--features", checkpoint, "--classes", ",".join(CLASSES)]
    assert main([*argv, *FOREST_ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on the features of" in printed and "classes potato, maize, other" in printed
    record = json.loads(out.read_text(encoding="utf-8"))
    api = run_feature_forest(checkpoint, store, options(), jobs=1).class_metrics.as_dict()
    assert record["classes"] == record["metrics"]["classes"] == CLASSES
    assert record["metrics"]["confusion"] == api["confusion"]
    assert record["metrics"]["miou"] == pytest.approx(api["miou"])


def test_crop_type_experiment_runs_rf_features(store, tmp_path):
    spec = config(store, methods=["rf", "rf-features"], seeds=1)
    spec["scenarios"] = spec["scenarios"][1:2]  # maize, potato, grassland, other; binary parent
    out = tmp_path / "run"
    result = run_experiment(experiment_config_from_dict(spec), out)
    assert result.results.empty
    rows = pd.read_csv(out / CLASS_RESULTS, keep_default_na=False, na_values=[""])
    rows["class"] = rows["class"].fillna(OVERALL)
    ours = rows[(rows["method"] == "rf-features") & (rows["timestep"] == STEPS)]
    classes = ["maize", "potato", "grassland", "other"]
    assert list(dict.fromkeys(ours["class"])) == [OVERALL, *classes]
    assert ours[ours["metric"] == "iou"]["value"].notna().all()
    manifest = json.loads((out / "experiment.json").read_text())
    table = manifest["crop_types"][0]["tables"][0]["table"]
    assert table["method"] == ["RF", "RF on features"] and "IoU grassland" in table
    done = {p.parent: json.loads(p.read_text()) for p in (out / "cache").glob("method-*/done.json")}
    ((folder, unit),) = [(f, r) for f, r in done.items() if r["key"]["method"] == "rf-features"]
    assert unit["key"]["classes"] == classes
    assert unit["early_season"][str(STEPS)]["classes"] == classes
    saved = np.load(folder / "test_probabilities.npy")
    assert saved.shape == (3, len(classes), 16, 16)
