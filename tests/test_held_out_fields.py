"""Scoring on fields held out of training (``folds`` of an experiment scenario)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from sarcrop.data.parcels import LabelMask, parcel_folds, store_parcels
from sarcrop.data.store import DatasetStore, write_store
from sarcrop.errors import ConfigError, InputDataError
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.experiments import run_experiment
from sarcrop.experiments.classes import network_probabilities
from sarcrop.experiments.config import ExperimentConfig
from sarcrop.experiments.runner import held_out_maps
from sarcrop.options import BaselineOptions
from sarcrop.training import read_metadata
from test_experiment import TINY, write_config
from test_experiment_classes import N as TYPE_PATCHES
from test_experiment_classes import make_store as make_type_store
from test_few_labels import STEPS, make_store
from test_held_out_search import parcels_of

FRANCE = TINY["regions"]["france"]
HELD_OUT = {
    **TINY,
    "regions": {
        **TINY["regions"],
        "france-all": {**FRANCE, "split": {"method": "train"}},
        "france-test": {**FRANCE, "split": {"method": "test"}},
    },
    "scenarios": [
        {
            "finetune": "france-all",
            "test": "france-test",
            "crop": "rice",
            "bands": ["VH", "VV"],
            "folds": 2,
        }
    ],
    "methods": ["rf", "ri", "fte", "rf-features", "zero-shot"],
    "timestep_table": False,
}
del HELD_OUT["early_season"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("held") / "store.zarr")


def test_a_fraction_thins_each_training_side_and_keeps_every_held_out_field(store):
    opened = DatasetStore(store)
    full = parcel_folds(opened, 3, 0, positive=["maize"])
    half = parcel_folds(opened, 3, 0, positive=["maize"], fraction=0.5)
    for whole, thin in zip(full, half, strict=True):
        assert np.array_equal(whole.held_out.keep, thin.held_out.keep)  # same fields scored
        trained, kept = parcels_of(opened, whole.train.keep), parcels_of(opened, thin.train.keep)
        assert kept < trained and len(kept) == 4 == thin.train.parcels  # ceil(0.5 * 8)
        assert thin.train.fraction == 0.5 and thin.train.fold == whole.train.fold


def all_test(store: DatasetStore, path) -> str:
    """The same patches and labels, every patch in the test split."""
    pairs = [store.read_patch(i) for i in range(len(store))]
    images, labels = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    meta = replace(store.metadata, split=["test"] * len(store))
    return str(write_store(path, images, labels, meta))


def test_the_forest_learns_from_a_fold_and_is_scored_on_its_held_out_fields_only(store, tmp_path):
    opened = DatasetStore(store)
    scored = all_test(opened, tmp_path / "all-test.zarr")
    fold = parcel_folds(opened, 3, 0, positive=["maize"])[0]
    options = BaselineOptions(n_estimators=5, early_season=False)
    result = run_baseline(store, options, test_store=scored, bands=["VH"], fold=fold, jobs=1)
    held = fold.held_out.keep & (opened.read_all_labels().reshape(fold.held_out.keep.shape) >= 0)
    assert held.any() and result.confusions[STEPS].total == int(held.sum())
    assert result.label_subset == fold.train.as_dict()
    assert result.probabilities().shape == (len(opened), 16, 16)  # maps of every patch
    overlapping = replace(fold, held_out=replace(fold.held_out, keep=fold.train.keep))
    with pytest.raises(InputDataError, match="a fold trains on pixels it holds out"):
        run_baseline(store, options, test_store=scored, bands=["VH"], fold=overlapping, jobs=1)


def test_held_out_maps_take_each_pixel_from_the_fold_that_held_it_out():
    keep = np.zeros((3, 2, 2), dtype=bool)
    first, second = keep.copy(), keep.copy()
    first[0, 0, 0] = first[2, 1, 1] = True
    second[2, 0, 0] = True
    masks = [LabelMask(k, "train", 1.0, 0, 1, 2, f"{i}/2") for i, k in enumerate((first, second))]
    maps = [np.full((2, 2, 2), 0.2), np.full((2, 2, 2), 0.6)]
    out = held_out_maps(masks, maps, [0, 2])  # the test split: patches 0 and 2
    assert out[0, 0, 0] == 0.2 and out[1, 1, 1] == 0.2 and out[1, 0, 0] == 0.6
    assert out[0, 1, 1] == pytest.approx(0.4)  # held out by no fold: the mean


def test_an_experiment_scores_every_method_on_the_fields_each_fold_held_out(tmp_path):
    result = run_experiment(write_config(tmp_path, HELD_OUT), tmp_path / "out")
    headline = result.results[
        (result.results["metric"] == "iou") & (result.results["run"] == "main")
    ]
    assert set(headline["method"]) == {"rf", "ri", "fte", "rf-features", "zero-shot"}
    assert headline["scenario"].str.endswith("-folds2").all()
    units = {}
    for done in (tmp_path / "out" / "cache").glob("method-*/done.json"):
        key = pd.read_json(done, typ="series")["key"]
        units[key["method"]] = done.parent
    fte = units["fte"]
    runs = sorted(fte.glob("fold-*/model.safetensors"))
    assert [r.parent.name for r in runs] == ["fold-1", "fold-2"]
    stores = {}
    for name in ("france-all", "france-test"):
        found = [
            d / "store.zarr"
            for d in (tmp_path / "out" / "cache").glob("region-*")
            if f'"name": "{name}"' in (d / "done.json").read_text()
        ]
        stores[name] = DatasetStore(found[0])
    folds = parcel_folds(stores["france-all"], 2, 0, positive=["rice"])
    saved = np.load(fte / "test_probabilities.npy").astype(np.float32)
    patches = stores["france-test"].indices("test")
    for run, fold in zip(runs, folds, strict=True):
        subset = read_metadata(run).training["label_subset"]
        assert subset["fold"] == fold.train.fold and subset["parcels"] == fold.train.parcels
        own = network_probabilities(run, stores["france-test"].path)
        held = fold.held_out.keep[patches]
        assert held.any()
        np.testing.assert_allclose(saved[held], own[held], atol=1e-3)  # recomputed apart


def test_with_timestep_table_held_out_fields_are_scored_at_every_t(tmp_path):
    """Each fold's maps of every t are merged as the full-season ones are: the full season
    scores as without the option, and every t gets its row and parcel interval."""
    methods = ["rf", "fte", "zero-shot"]
    scores = {}
    for every_t in (False, True):  # one folder: the regions and pre-training are shared
        config = {**HELD_OUT, "methods": methods, "timestep_table": every_t}
        (tmp_path / str(every_t)).mkdir()
        result = run_experiment(write_config(tmp_path / str(every_t), config), tmp_path / "run")
        iou = result.results[result.results["metric"] == "iou"]
        scores[every_t] = iou.set_index(["method", "timestep"])["value"]
    steps = scores[False].index.get_level_values("timestep")
    last = int(steps.max())
    assert set(steps) == {last} and last > 1  # without the option: the full season alone
    every = scores[True]
    assert set(every.index) == {(m, t) for m in methods for t in range(1, last + 1)}
    full = every[every.index.get_level_values("timestep") == last]
    pd.testing.assert_series_equal(full, scores[False])
    assert every["rf"].nunique() > 1  # the maps differ by t
    by_step = pd.read_csv(tmp_path / "run" / "timestep_intervals.csv")
    assert len(by_step) == len(methods) * last
    assert by_step["minus_rf"].notna().sum() == (len(methods) - 1) * last


def test_folds_need_the_same_fields_and_no_early_season_curve(tmp_path):
    with pytest.raises(ConfigError, match="must be its patches and labels in a test split"):
        bad = {**HELD_OUT, "scenarios": [{**HELD_OUT["scenarios"][0], "test": "spain"}]}
        run_experiment(write_config(tmp_path, {**bad, "methods": ["zero-shot"]}), tmp_path / "a")
    early = {**HELD_OUT, "early_season": {"scenario": 0, "method": "fte"}}
    with pytest.raises(ConfigError, match=r"early_season\.scenario 0 scores held-out folds"):
        run_experiment(write_config(tmp_path, early), tmp_path)


def test_folds_without_two_fields_of_each_class_are_refused_before_any_unit(tmp_path):
    """France's simulated water is one field: the folds cannot be dealt, which the run says
    before it trains anything, naming the scenario rather than a store in its cache."""
    scenario = {**HELD_OUT["scenarios"][0], "finetune": "france", "test": "france", "crop": "water"}
    data = {**HELD_OUT, "regions": {**TINY["regions"]}, "scenarios": [scenario], "methods": ["rf"]}
    with pytest.raises(ConfigError) as error:
        run_experiment(write_config(tmp_path, data), tmp_path / "out")
    assert re.fullmatch(
        r"scenario france-all-france-scored-water-vhvv-folds2: folds over the fields of "
        r"france-all: train split: 1 water and \d+ other labelled parcels; cross-validation "
        r"over parcels needs at least 2 of each; label more fields, or score without folds",
        error.value.problem,
    )
    assert not list((tmp_path / "out" / "cache").glob("method-*"))


def test_folds_over_one_region_derive_its_two_views_and_score_as_written_out(tmp_path):
    written = {**HELD_OUT, "methods": ["rf"]}
    derived = {
        **written,
        "regions": {**TINY["regions"]},
        "scenarios": [{**HELD_OUT["scenarios"][0], "finetune": "france", "test": "france"}],
    }
    config = ExperimentConfig.model_validate(derived)
    assert config.scenarios[0].finetune == "france-all"
    assert config.scenarios[0].test == "france-scored"
    by_hand = ExperimentConfig.model_validate(written).regions
    assert config.regions["france-all"] == by_hand["france-all"]
    assert config.regions["france-scored"] == by_hand["france-test"]
    assert config.regions["france"] == by_hand["france"]  # the region itself is untouched
    scores = []
    for name, data in (("written", written), ("derived", derived)):
        (tmp_path / name).mkdir()
        result = run_experiment(write_config(tmp_path / name, data), tmp_path / name / "out")
        iou = result.results[result.results["metric"] == "iou"]
        assert len(iou) == 1 and iou["scenario"].str.endswith("-folds2").all()
        scores.append(iou["value"].to_numpy())
    np.testing.assert_array_equal(*scores)


def test_folds_over_one_region_refuse_a_merge_and_a_clashing_view():
    scenario = {**HELD_OUT["scenarios"][0], "finetune": "both", "test": "both"}
    merged = {**HELD_OUT, "regions": {**TINY["regions"], "both": {"merge": ["france", "spain"]}}}
    with pytest.raises(ValueError, match="folds over both, a region of several"):
        ExperimentConfig.model_validate({**merged, "scenarios": [scenario]})
    scenario = {**scenario, "finetune": "france", "test": "france"}
    clash = {**HELD_OUT["regions"], "france-scored": {**FRANCE, "split": {"method": "train"}}}
    with pytest.raises(ValueError, match="derive region france-scored, which the config"):
        ExperimentConfig.model_validate({**HELD_OUT, "regions": clash, "scenarios": [scenario]})
    stored = {**HELD_OUT["regions"], "france": {"store": "france.zarr"}}
    with pytest.raises(ValueError, match="folds over france, a prepared store"):
        ExperimentConfig.model_validate({**HELD_OUT, "regions": stored, "scenarios": [scenario]})


# -- crop types ---------------------------------------------------------------------------------

TYPES = ["maize", "potato", "grassland", "other"]


@pytest.fixture(scope="module")
def type_stores(tmp_path_factory) -> dict[str, str]:
    """The crop-type store of test_experiment_classes (8 patches, a field of each crop in
    each) with every patch to learn from, and again with every patch to score."""
    folder = tmp_path_factory.mktemp("types")
    return {
        split: make_type_store(folder / f"{split}.zarr", split=[split] * TYPE_PATCHES)
        for split in ("train", "test")
    }


def test_crop_type_folds_deal_each_class_in_turn(type_stores):
    store = DatasetStore(type_stores["train"])
    named = TYPES[:-1]
    folds = parcel_folds(store, 3, 0, positive=named, classes=TYPES)
    labels, ids = store.read_all_labels(), store_parcels(store)
    for fold in folds:  # 8 parcels of each crop over 3 folds: 2 or 3 of each held out
        for crop in named:
            code = store.classes.index(crop)
            held = np.unique(ids[fold.held_out.keep & (labels == code)])
            trained = np.unique(ids[fold.train.keep & (labels == code)])
            assert len(held) in (2, 3) and len(trained) == 8 - len(held)
    assert set(parcels_of(store, folds[0].held_out.keep)).isdisjoint(
        parcels_of(store, folds[1].held_out.keep)
    )
    keep = labels != store.classes.index("potato")
    keep[0] = True  # the potato field of the first patch only
    one_potato = LabelMask(keep, "train", 1.0, 0, 0, 0)
    with pytest.raises(InputDataError, match="potato 1 labelled parcels; cross-validation"):
        parcel_folds(store, 3, 0, positive=named, classes=TYPES, subset=one_potato)


def test_a_crop_type_experiment_scores_each_class_on_held_out_fields(type_stores, tmp_path):
    from test_experiment_classes import TRAIN

    data = {
        "name": "types-folds",
        "regions": {
            "all": {"store": type_stores["train"]},
            "scored": {"store": type_stores["test"]},
        },
        "pretrain": {"region": "all", "crop": "maize", "model_options": {"widths": [4, 8]}},
        "finetune": TRAIN,
        "scenarios": [{"finetune": "all", "test": "scored", "classes": TYPES, "folds": 2}],
        "methods": ["rf", "ri"],
        "baseline": {"n_estimators": 5, "early_season": False},
        "figure_patches": 0,
    }
    run_experiment(write_config(tmp_path, data), tmp_path / "out")
    classes = pd.read_csv(tmp_path / "out" / "class_results.csv")
    assert classes["scenario"].str.endswith("-folds2").all()
    assert set(classes["method"]) == {"rf", "ri"}
    assert set(classes["class"].dropna()) == set(TYPES)
    done = {
        pd.read_json(path, typ="series")["key"]["method"]: path.parent
        for path in (tmp_path / "out" / "cache").glob("method-*/done.json")
    }
    saved = np.load(done["rf"] / "test_probabilities.npy").astype(np.float32)
    assert saved.shape == (TYPE_PATCHES, len(TYPES), 16, 16)
    # Each held-out pixel is the forest of the fold that held it out.
    store = DatasetStore(type_stores["train"])
    options = BaselineOptions(n_estimators=5, early_season=False, classes=tuple(TYPES))
    for fold in parcel_folds(store, 2, 0, positive=TYPES[:-1], classes=TYPES):
        own = run_baseline(store, options, test_store=type_stores["test"], fold=fold)
        held = fold.held_out.keep
        own_map = np.nan_to_num(own.probabilities())
        np.testing.assert_allclose(
            np.moveaxis(saved, 1, -1)[held], np.moveaxis(own_map, 1, -1)[held], atol=1e-3
        )


def test_results_score_each_network_at_the_threshold_its_run_records(tmp_path):
    """``results.csv`` scores a network's test maps at the threshold the run records for it
    (the fine-tuning section's, as the intervals and comparisons read it), on held-out fields
    and on a plain split alike: the pre-trained model as it is too, trained at 0.5."""
    from sarcrop.evaluation.metrics import empty_confusion
    from sarcrop.experiments.classes import network_timestep_probabilities
    from sarcrop.experiments.intervals import scenario_test_set

    plain = {**HELD_OUT["scenarios"][0], "finetune": "france", "test": "france"}
    del plain["folds"]
    config = {
        **HELD_OUT,
        "scenarios": [HELD_OUT["scenarios"][0], plain],
        "methods": ["zero-shot"],
        "finetune": {**TINY["finetune"], "threshold": 0.2},
    }
    result = run_experiment(write_config(tmp_path, config), tmp_path / "out")
    cache = tmp_path / "out" / "cache"
    (pretrained,) = cache.glob("pretrain-*/**/model.safetensors")
    iou = result.results[(result.results["metric"] == "iou") & (result.results["run"] == "main")]
    last = int(iou["timestep"].max())
    for scenario, region in zip(iou["scenario"].unique(), ("france-test", "france"), strict=True):
        (store,) = [
            d / "store.zarr"
            for d in cache.glob("region-*")
            if f'"name": "{region}"' in (d / "done.json").read_text()
        ]
        maps = network_timestep_probabilities(pretrained, store)[-1]
        test = scenario_test_set(store, ("VH", "VV"), "rice")
        scores = {}
        for threshold in (0.2, 0.5):
            confusion = empty_confusion(None)
            for item in range(len(test)):
                sample = test[item]
                target, valid = sample["target"].numpy()[None], sample["valid"].numpy()[None]
                confusion.update(maps[item][None], target, valid, threshold=threshold)
            scores[threshold] = confusion.as_dict()["iou"]
        assert scores[0.2] != pytest.approx(scores[0.5])  # the threshold matters here
        row = iou[(iou["scenario"] == scenario) & (iou["timestep"] == last)]
        assert row["value"].item() == pytest.approx(scores[0.2], abs=1e-12)


def test_a_steps_budget_scales_each_folds_epochs_from_its_labels_at_every_label(
    tmp_path, monkeypatch
):
    """``epoch_budget: steps`` trained each held-out fold below every label for the epochs of
    the full-label run (fewer steps, as ``epochs`` would); a fold's epochs now scale with the
    patches its labels cover against those the same fold's labels cover at every label."""
    from sarcrop.experiments.runner import ExperimentRunner
    from sarcrop.training import api

    class Trained(Exception):
        pass

    trained = []

    def record(store, out_dir, *, config, label_mask, **_):
        trained.append((config.epochs, label_mask))
        raise Trained  # the first fold's settings are all this needs

    monkeypatch.setattr(api, "train_ri", record)
    data = {**HELD_OUT, "methods": ["ri"], "fractions": [0.2, 1.0], "epoch_budget": "steps"}
    runner = ExperimentRunner(ExperimentConfig.model_validate(data), tmp_path / "run")
    scenario = runner.config.scenarios[0]
    for fraction in (1.0, 0.2):
        with pytest.raises(Trained):
            runner.run_method(scenario, "ri", 0, fraction=fraction)
    store = DatasetStore(runner.region_store(scenario.finetune)[0])
    batch = HELD_OUT["finetune"]["batch_size"]

    def batches(mask: LabelMask) -> int:
        kept = [np.any(mask.apply(i, store.read_labels(i)) >= 0) for i in store.indices("train")]
        return -(-int(sum(kept)) // batch)

    (every, full), (few, thin) = trained
    assert every == HELD_OUT["finetune"]["epochs"] and thin.fold == full.fold == "1/2"
    assert batches(thin) < batches(full)
    assert few == round(every * batches(full) / batches(thin)) > every
