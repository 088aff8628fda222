"""The few-label head on frozen features: a Random Forest on a pre-trained network's per-pixel
features (API, CLI and the experiments' ``rf-features`` method), and the fine-tuning budget
that keeps optimizer steps constant across label fractions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from sarcrop.cli import main
from sarcrop.data.dataset import PatchDataset
from sarcrop.data.parcels import label_subset
from sarcrop.data.store import DatasetStore
from sarcrop.errors import ConfigError
from sarcrop.evaluation.baseline import RandomForestBaseline, run_baseline
from sarcrop.evaluation.feature_forest import (
    load_extractor,
    probability_maps,
    run_feature_forest,
)
from sarcrop.experiments.config import is_forest, parse_method
from sarcrop.experiments.runner import constant_step_epochs
from sarcrop.options import BaselineOptions
from sarcrop.training import TrainConfig
from test_few_labels import OPTIONS, STEPS, make_store, parent_checkpoint

FOREST = BaselineOptions(n_estimators=5, early_season=False, seed=3)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("forest") / "store.zarr")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return parent_checkpoint(tmp_path_factory.mktemp("parent") / "pre.safetensors")


def test_features_are_what_the_frozen_head_reads_plus_the_series(store, checkpoint):
    opened = DatasetStore(store)
    extractor, stats, bands = load_extractor(checkpoint, opened, ["VH", "VV"])
    assert bands == ["VH", "VV"] and stats["bands"] == ["VH", "VV"]
    patches = PatchDataset(opened, "test", ["maize"], bands, normalization=stats)
    image = patches[0]["image"]
    features = extractor(image)
    width = OPTIONS["widths"][0]
    assert features.shape == (width + STEPS * 2, 16, 16) and extractor.width == width
    # The network part: the frozen head turns it into the network's own logits; the VH model
    # reads VH only (no Eq. 3 averaging without a layer to learn), the series keep both bands.
    model = extractor.model
    assert extractor.network_bands == [0] and model.in_bands == 1
    with torch.inference_mode():
        logits = model(image[None, :, :1])[0]
        from_features = model.decoder.head(torch.from_numpy(features[None, :width]))[0]
    torch.testing.assert_close(from_features, logits)
    # The raw part: the pixel's normalised T × B series, time-major like the forest baseline.
    assert np.array_equal(features[width:], image.numpy().reshape(STEPS * 2, 16, 16))
    only = load_extractor(checkpoint, opened, ["VH"], raw=False)[0]
    assert only(image[:, :1]).shape == (width, 16, 16)
    # Without its own band the network is adapted to the bands it gets (paper Eq. 3).
    adapted = load_extractor(checkpoint, opened, ["VV"])[0]
    assert adapted.network_bands is None and adapted.model.in_bands == 1
    assert adapted(image[:, 1:]).shape == (width + STEPS, 16, 16)


def test_forest_on_features_learns_from_the_forests_parcels(store, checkpoint):
    options = FOREST.updated(label_fraction=0.25)
    result = run_feature_forest(
        checkpoint, store, options, bands=["VH", "VV"], timesteps="all", jobs=1
    )
    forest = run_baseline(store, options, jobs=1)
    assert (
        result.label_subset
        == forest.label_subset
        == label_subset(store, 0.25, 3, positive=["maize"]).as_dict()
    )
    assert result.model.n_samples_per_class_ == forest.model.n_samples_per_class_
    assert result.model.n_features_in_ == OPTIONS["widths"][0] + STEPS * 2
    assert sorted(result.confusions) == list(range(1, STEPS + 1))
    record = result.to_dict()
    assert record["method"] == "feature_forest"
    assert record["features"]["network_features"] == OPTIONS["widths"][0]
    assert record["features"]["network_bands"] == ["VH"]
    maps = probability_maps(result)
    assert maps.shape == (2, 16, 16) and ((maps >= 0) & (maps <= 1)).all()
    # The saved maps give the reported full-season confusion.
    patches = PatchDataset(DatasetStore(store), "test", ["maize"], ["VH", "VV"])
    hits = sum(
        int(
            (
                (maps[i] >= 0.5) & (patches[i]["target"].numpy() == 1) & patches[i]["valid"].numpy()
            ).sum()
        )
        for i in range(2)
    )
    assert hits == result.metrics.as_dict()["tp"]
    # Its intervals over parcels are centred on the same metrics.
    by_parcel = result.by_parcel()
    assert by_parcel["intervals"]["iou"]["estimate"] == pytest.approx(result.metrics.iou)
    alone = run_feature_forest(checkpoint, store, options, bands=["VH"], raw=False, jobs=1)
    assert alone.model.n_features_in_ == OPTIONS["widths"][0]


def test_cli_baseline_features_is_the_api(store, checkpoint, tmp_path, capsys):
    out = tmp_path / "forest.json"
    argv = ["baseline", store, "--features", checkpoint, "--bands", "VH", "VV"]
    argv += ["--n-estimators", "5", "--no-early-season", "--seed", "3", "--jobs", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "on the features of" in capsys.readouterr().out
    record = json.loads(out.read_text(encoding="utf-8"))
    api = run_feature_forest(checkpoint, store, FOREST, bands=["VH", "VV"], jobs=1)
    assert record["features"]["raw_series"] is True
    assert record["metrics"] == pytest.approx(api.metrics.as_dict())


def test_run_feature_forest_takes_its_options_as_a_mapping(store, checkpoint):
    """As :func:`run_baseline` does (a YAML ``baseline:`` section as read), checked as such."""
    given = {"n_estimators": 5, "early_season": False, "seed": 3}
    result = run_feature_forest(checkpoint, store, given, bands=["VH"], jobs=1)
    assert result.options == FOREST
    with pytest.raises(ConfigError, match="n_trees"):
        run_feature_forest(checkpoint, store, {"n_trees": 5}, bands=["VH"], jobs=1)


def test_feature_forest_records_that_it_learnt_no_early_season_copies(store, checkpoint, tmp_path):
    """It learns full-season features whatever ``early_season`` says: the default (true)
    fits the same forest as false, and the record says false, as its checkpoint does."""
    default = run_feature_forest(checkpoint, store, {"n_estimators": 5, "seed": 3}, jobs=1)
    off = run_feature_forest(checkpoint, store, FOREST, jobs=1)
    assert default.model.n_samples_per_class_ == off.model.n_samples_per_class_
    assert default.metrics.as_dict() == off.metrics.as_dict()
    assert default.options.early_season is False
    assert default.to_dict()["options"]["early_season"] is False
    out = tmp_path / "forest.json"
    argv = ["baseline", store, "--features", checkpoint, "--n-estimators", "5", "--jobs", "1"]
    assert main([*argv, "--seed", "3", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["options"]["early_season"] is False


def test_rf_features_is_a_forest_method():
    assert parse_method("rf-features") == ("rf-features", None)
    assert is_forest("rf-features") and is_forest("rf") and not is_forest("probe")


def test_constant_step_epochs_scale_with_the_labelled_patches(store):
    config = TrainConfig(epochs=10, batch_size=2, label_fraction=0.25, seed=3)
    opened = DatasetStore(store)
    mask = label_subset(opened, 0.25, 3, positive=["maize"])
    kept = sum(
        bool((mask.apply(i, opened.read_labels(i)) >= 0).any()) for i in opened.indices("train")
    )
    assert kept < len(opened.indices("train"))  # 6 train patches, fewer with labels
    expected = round(10 * 3 / -(-kept // 2))  # 3 full batches against ceil(kept / 2)
    assert constant_step_epochs(opened.path, config, ["maize"]) == expected > 10
    assert constant_step_epochs(opened.path, config.updated(label_fraction=1.0), ["maize"]) == 10


def test_maps_and_parcels_reuse_the_predictions_the_scores_came_from(
    store, checkpoint, monkeypatch
):
    """The forests predict each test patch once per t; their maps and parcel scores at each
    scored t are those predictions, not a second pass."""
    calls: list[int] = []
    predict_proba = RandomForestBaseline.predict_proba

    def counted(self, X):
        calls.append(len(X))
        return predict_proba(self, X)

    monkeypatch.setattr(RandomForestBaseline, "predict_proba", counted)
    runs = {
        "forest": lambda: run_baseline(store, FOREST, timesteps="all", jobs=1),
        "features": lambda: run_feature_forest(
            checkpoint, store, FOREST, bands=["VH", "VV"], timesteps="all", jobs=1
        ),
    }
    for name, run in runs.items():
        calls.clear()
        result = run()
        assert len(calls) == 2 * STEPS, name  # 2 test patches, every t
        maps = result.probabilities()
        result.by_parcel()
        assert np.array_equal(result.probabilities(STEPS), maps, equal_nan=True)
        early = result.probabilities(1)  # every t was scored: kept, not predicted again
        assert len(calls) == 2 * STEPS, name  # nothing predicted again
        fresh = dataclasses.replace(result, kept_probabilities={})
        assert np.array_equal(maps, fresh.probabilities(), equal_nan=True), name
        assert np.array_equal(early, fresh.probabilities(1), equal_nan=True), name
        assert len(calls) == 2 * STEPS + 4, name  # without them: predicted (2 patches, twice)
        headline = run_baseline(store, FOREST, timesteps=None, jobs=1)
        assert set(headline.kept_probabilities) == {STEPS}  # one t asked: that t's maps alone
