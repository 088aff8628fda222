"""Choosing epochs and interpolation by cross-validation over whole parcels
(``epoch_search``, ``interpolation_search``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sarcrop.cli import main
from sarcrop.data.parcels import label_subset, parcel_folds, store_parcels
from sarcrop.data.store import DatasetStore
from sarcrop.errors import ConfigError, InputDataError
from sarcrop.evaluation.metrics import BinaryConfusion, MulticlassConfusion
from sarcrop.training import TrainConfig, finetune, load_checkpoint, read_metadata, train
from sarcrop.training.config import validate_config
from sarcrop.training.search import SEARCH_DIR, SearchChoice, held_out_confusions
from test_experiment_classes import make_store as make_type_store
from test_few_labels import OPTIONS, make_store, parent_checkpoint, quick


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    # 6 train patches, each with one maize and one other parcel: 12 train parcels
    return make_store(tmp_path_factory.mktemp("search") / "store.zarr")


def parcels_of(store: DatasetStore, keep: np.ndarray) -> set[int]:
    """The parcel ids of the train split that ``keep`` keeps."""
    parcels = store_parcels(store)
    in_train = np.zeros(parcels.shape, dtype=bool)
    in_train[store.indices("train")] = True
    return set(np.unique(parcels[keep & in_train & (parcels >= 0)]).tolist())


def test_folds_hold_out_each_parcel_once_and_train_on_both_classes(store):
    opened = DatasetStore(store)
    parcels = store_parcels(opened)
    everything = parcels_of(opened, parcels >= 0)
    folds = parcel_folds(opened, 3, 0, positive=["maize"])
    held = [parcels_of(opened, fold.held_out.keep) for fold in folds]
    assert len(folds) == 3 and [len(h) for h in held] == [4, 4, 4]
    assert set().union(*held) == everything and sum(map(len, held)) == len(everything)
    labels = opened.read_all_labels().reshape(parcels.shape)
    for fold, out in zip(folds, held, strict=True):
        trained = parcels_of(opened, fold.train.keep)
        assert trained == everything - out
        maize = {int(labels[parcels == p][0]) for p in trained}
        assert maize == {0, 1}  # both classes on every training side
        assert fold.train.as_dict()["fold"] == fold.held_out.fold
    # another seed deals other folds; the same seed the same ones
    again = parcel_folds(opened, 3, 0, positive=["maize"])
    assert [parcels_of(opened, f.held_out.keep) for f in again] == held
    other = parcel_folds(opened, 3, 1, positive=["maize"])
    assert [parcels_of(opened, f.held_out.keep) for f in other] != held


def test_folds_are_dealt_from_the_label_subset_and_need_two_parcels_of_each_class(store):
    opened = DatasetStore(store)
    subset = label_subset(opened, 0.5, 0, positive=["maize"])
    chosen = parcels_of(opened, subset.keep)
    folds = parcel_folds(opened, 2, 0, positive=["maize"], subset=subset)
    held = set().union(*(parcels_of(opened, f.held_out.keep) for f in folds))
    assert held == chosen and len(held) == 6
    tiny = label_subset(opened, 0.1, 0, positive=["maize"])  # one parcel of each class
    with pytest.raises(InputDataError, match=r"1 maize and 1 other labelled parcels.*at least 2"):
        parcel_folds(opened, 3, 0, positive=["maize"], subset=tiny)


def test_epoch_search_is_a_validated_setting_left_out_of_old_fingerprints():
    assert "epoch_search" not in TrainConfig().model_dump()
    assert "search_folds" not in TrainConfig().fingerprint()
    config = TrainConfig(epoch_search="20, 5,5", val_fraction=0)
    assert config.epoch_search == (5, 20) and config.model_dump()["epoch_search"] == (5, 20)
    with pytest.raises(ConfigError, match="set val_fraction 0"):
        validate_config({"epoch_search": [5, 10]})
    with pytest.raises(ConfigError, match="at least 1 epoch"):
        validate_config({"epoch_search": [0, 10], "val_fraction": 0})
    with pytest.raises(ConfigError, match="epoch_search scores labels"):
        validate_config({"epoch_search": [5], "val_fraction": 0, "objective": "reconstruct"})
    with pytest.raises(ConfigError, match="search_folds"):
        validate_config({"epoch_search": [5], "val_fraction": 0, "search_folds": 1})


def test_finetune_trains_every_fold_and_budget_then_every_label_with_the_best(store, tmp_path):
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    config = quick(val_fraction=0, epoch_search=(1, 3), search_folds=2, label_fraction=0.5)
    result = finetune(checkpoint, store, tmp_path / "fte", strategy="fte", config=config)
    choice = SearchChoice.from_dict(result.search)
    assert choice.folds == 2 and choice.parcels == 6 and set(choice.iou) == {(1, 1.0), (3, 1.0)}
    best = max(choice.iou.values())
    assert choice.epochs == min(e for (e, _), iou in choice.iou.items() if iou == best)  # ties
    assert choice.interpolation == 1.0
    meta = read_metadata(result.checkpoint)
    assert meta.training["search"] == choice.to_dict()
    assert meta.training["config"]["epochs"] == choice.epochs == result.epochs
    assert meta.training["label_subset"]["parcels"] == 6  # every chosen label, no fold
    opened = DatasetStore(store)
    folds = parcel_folds(
        opened,
        2,
        config.seed,
        positive=["maize"],
        subset=label_subset(opened, 0.5, config.seed, positive=["maize"]),
    )
    pooled = {}
    for epochs in (1, 3):
        for number, fold in enumerate(folds, start=1):
            run = tmp_path / "fte" / SEARCH_DIR / f"epochs-{epochs}-fold-{number}"
            fold_meta = read_metadata(run / "model.safetensors")
            assert fold_meta.training["label_subset"]["fold"] == f"{number}/2"
            assert fold_meta.training["label_subset"]["parcels"] == 3  # the other fold's
            assert fold_meta.training["config"]["epochs"] == epochs
            assert "search" not in fold_meta.training
            [confusion] = held_out_confusions(run / "model.safetensors", opened, fold, 0.5).values()
            assert confusion.total == int(fold.held_out.keep.sum())
            pooled[(epochs, 1.0)] = pooled.get((epochs, 1.0), BinaryConfusion()) + confusion
    assert {e: c.iou for e, c in pooled.items()} == pytest.approx(choice.iou)
    again = finetune(checkpoint, store, tmp_path / "fte", strategy="fte", config=config)
    assert again.resumed and again.search == result.search


def test_interpolation_search_is_validated_and_left_out_of_old_fingerprints():
    assert "interpolation_search" not in TrainConfig().fingerprint()
    config = TrainConfig(interpolation_search="1, 0,0.5", val_fraction=0)
    assert config.interpolation_search == (0.0, 0.5, 1.0) and config.searches
    assert TrainConfig(interpolation=0).interpolation == 0  # 0: the pre-trained start itself
    with pytest.raises(ConfigError, match="from 0 to 1"):
        validate_config({"interpolation_search": [0.5, 1.5], "val_fraction": 0})
    with pytest.raises(ConfigError, match="interpolation_search holds out parcels"):
        validate_config({"interpolation_search": [0.5, 1]})
    with pytest.raises(ConfigError, match="interpolation_search scores labels"):
        validate_config(
            {"interpolation_search": [1], "val_fraction": 0, "objective": "reconstruct"}
        )


def test_interpolation_search_scores_each_weight_of_the_same_fold_runs(store, tmp_path):
    """Weight 0 is the pre-trained model as it is, 1 the fold run as trained: each weight is
    scored on the held-out fields of the same fold runs, and the best one is exported."""
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    config = quick(val_fraction=0, interpolation_search=(0, 0.5, 1), search_folds=2)
    result = finetune(checkpoint, store, tmp_path / "ft", strategy="ft", config=config)
    choice = SearchChoice.from_dict(result.search)
    assert set(choice.iou) == {(2, 0.0), (2, 0.5), (2, 1.0)} and choice.parcels == 12
    assert choice.iou[(choice.epochs, choice.interpolation)] == max(choice.iou.values())
    # two fold runs (one budget), not one per weight
    assert len(list((tmp_path / "ft" / SEARCH_DIR).glob("*/model.safetensors"))) == 2
    meta = read_metadata(result.checkpoint)
    assert meta.training["config"].get("interpolation", 1.0) == choice.interpolation
    opened = DatasetStore(store)
    parent = BinaryConfusion()
    for fold in parcel_folds(opened, 2, config.seed, positive=["maize"]):
        [confusion] = held_out_confusions(Path(checkpoint), opened, fold, 0.5).values()
        parent += confusion
    assert choice.iou[(2, 0.0)] == pytest.approx(parent.iou, nan_ok=True)
    line = choice.summary()
    assert line.startswith(f"epochs 2, interpolation {choice.interpolation:g} chosen by 2-fold")
    assert "(held-out IoU by interpolation: 0" in line


def test_interpolation_zero_exports_the_adapted_start_without_training(store, tmp_path, capsys):
    """The start of a VH model fine-tuned on VH, VV is the model with its first layer
    extended by paper Eq. 3: weight 0 exports exactly that, and trains nothing first."""
    from sarcrop.models import adapt_input_bands

    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    out = tmp_path / "ft"
    argv = ["finetune", checkpoint, store, "--strategy", "ft", "--out", str(out)]
    options = ["--bands", "VH", "VV", "--val-fraction", "0", "--epochs", "3", "--quiet"]
    assert main([*argv, *options, "--interpolation", "0", "--accelerator", "cpu"]) == 0
    assert "the pre-trained start as it is, nothing trained" in capsys.readouterr().out
    exported, meta = load_checkpoint(out / "model.safetensors")
    start, _ = load_checkpoint(checkpoint)
    adapt_input_bands(start, ["VH", "VV"], ["VH"])
    expected = start.state_dict()
    for name, value in exported.state_dict().items():
        assert torch.equal(value, expected[name]), name  # batch counts too: no step taken
    assert meta.training["epochs"] == 0 and meta.training["best_epoch"] is None
    assert meta.training["selection"] == "pre-trained start (interpolation 0)"
    assert not (out / "metrics.csv").exists() and not (out / "last.ckpt").exists()
    # the finished run is read back, not redone
    assert main([*argv, *options, "--interpolation", "0", "--accelerator", "cpu"]) == 0
    assert "nothing trained, resumed" in capsys.readouterr().out


def test_interpolation_search_needs_a_pre_trained_head(store, tmp_path):
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    config = quick(val_fraction=0, interpolation_search=(0.5, 1), search_folds=2)
    with pytest.raises(ConfigError, match="only fine-tuning"):
        train(store, tmp_path / "scratch", model_options=OPTIONS, bands=["VH"], config=config)
    refused = r"interpolation_search needs the pre-trained head.*\(probe\): leave it out"
    with pytest.raises(ConfigError, match=refused):
        finetune(checkpoint, store, tmp_path / "probe", strategy="probe", config=config)
    assert not (tmp_path / "scratch").exists() and not (tmp_path / "probe").exists()


def test_the_command_line_searches_interpolation_when_fine_tuning(store, tmp_path, capsys):
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    argv = ["finetune", checkpoint, store, "--strategy", "fte", "--out", str(tmp_path / "cli")]
    options = ["--val-fraction", "0", "--epochs", "1", "--accelerator", "cpu", "--quiet"]
    search = ["--interpolation-search", "0,1", "--search-folds", "2"]
    assert main([*argv, *options, *search]) == 0
    out = capsys.readouterr().out
    assert "over 12 parcels (held-out IoU by interpolation: 0" in out
    meta = read_metadata(tmp_path / "cli" / "model.safetensors")
    assert meta.training["config"]["interpolation_search"] == [0.0, 1.0]


def test_a_fold_run_stopped_by_max_time_stops_the_search(store, tmp_path, monkeypatch):
    """A fold run that ``max_time`` stopped before its budget was scored as if it had trained
    it; the search stops instead, saying so, and goes on from there when run again."""
    from lightning.pytorch.callbacks import Timer

    import sarcrop.training.api as api

    class TimeUp(Timer):  # up as each fold run's first epoch ends
        def on_train_epoch_end(self, trainer, *args, **kwargs) -> None:
            self._duration = 0.0
            super().on_train_epoch_end(trainer, *args, **kwargs)

    monkeypatch.setattr(api, "Timer", TimeUp)
    config = quick(val_fraction=0, epoch_search=(1, 2), search_folds=2, max_time="00:01:00:00")
    options = {"model_options": OPTIONS, "bands": ["VH"], "config": config}
    with pytest.raises(ConfigError, match="after 1 of its 2 epochs, and the search scores"):
        train(store, tmp_path / "run", **options)
    runs = tmp_path / "run" / SEARCH_DIR
    done = [json.loads((runs / f"epochs-1-fold-{n}" / "run.json").read_text()) for n in (1, 2)]
    assert [record["status"] for record in done] == ["complete", "complete"]  # 1 of 1 epoch
    monkeypatch.undo()
    result = train(store, tmp_path / "run", **options)
    assert set(SearchChoice.from_dict(result.search).iou) == {(1, 1.0), (2, 1.0)}


def test_too_few_parcels_warn_and_keep_the_configured_epochs(store, tmp_path):
    config = quick(val_fraction=0, epochs=2, epoch_search=(1, 3), label_fraction=0.1)
    with pytest.warns(UserWarning, match="at least 2 of each; training 2 epochs at interpolati"):
        result = train(store, tmp_path / "run", model_options=OPTIONS, bands=["VH"], config=config)
    assert result.epochs == 2 and result.search["iou"] == []
    assert not (tmp_path / "run" / SEARCH_DIR).exists()


def test_the_command_line_searches_and_prints_the_scores(store, tmp_path, capsys):
    argv = ["train", store, "--out", str(tmp_path / "cli"), "--bands", "VH", "--quiet"]
    options = ["--model-options", json.dumps(OPTIONS), "--val-fraction", "0"]
    search = ["--epoch-search", "1,2", "--search-folds", "2", "--accelerator", "cpu"]
    assert main([*argv, *options, *search, "--epochs", "7"]) == 0
    out = capsys.readouterr().out
    assert "chosen by 2-fold cross-validation over 12 parcels (held-out IoU by epochs: 1" in out
    meta = read_metadata(tmp_path / "cli" / "model.safetensors")
    assert meta.training["config"]["epochs"] in (1, 2)
    assert meta.training["config"]["epoch_search"] == [1, 2]
    bad = ["train", store, "--out", str(tmp_path / "bad"), "--epoch-search", "1,2", "--quiet"]
    assert main(bad) == 2  # the default val_fraction 0.2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "holds out parcels instead of validation patches" in lines[0]
    assert not (tmp_path / "bad").exists()


def test_an_experiment_searches_per_method_run_in_its_workers(tmp_path, capsys):
    """``finetune: {epoch_search: ...}`` in an experiment: every network run of the worker
    processes chooses its own budget through the same API."""
    from sarcrop.experiments import run_experiment
    from test_experiment import TINY, write_config

    settings = {
        "val_fraction": 0,
        "epoch_search": [1, 2],
        "interpolation_search": [0.5, 1],
        "search_folds": 2,
    }
    data = {**TINY, "methods": ["ri", "fte"], "finetune": {**TINY["finetune"], **settings}}
    # simulated France holds rice parcels enough to fold (the train split of Spain holds one)
    data["scenarios"] = [{**TINY["scenarios"][0], "finetune": "france", "test": "spain"}]
    del data["early_season"]
    result = run_experiment(write_config(tmp_path, data), tmp_path / "out", jobs=2)
    assert set(result.results["method"]) == {"ri", "fte"}
    runs = sorted((tmp_path / "out" / "cache").glob("method-*/run/model.safetensors"))
    assert len(runs) == 2
    for checkpoint in runs:
        meta = read_metadata(checkpoint)
        training = meta.training
        choice = SearchChoice.from_dict(training["search"])
        weights = (1.0,) if meta.strategy == "ri" else (0.5, 1.0)  # RI has no start to mix in
        assert set(choice.iou) == {(e, w) for e in (1, 2) for w in weights} and choice.folds == 2
        assert training["config"]["epochs"] == choice.epochs
        assert training["config"].get("interpolation", 1.0) == choice.interpolation
        assert len(list((checkpoint.parent / SEARCH_DIR).glob("*/model.safetensors"))) == 4
    # searches.csv: every run's choice, as its checkpoint records it; tables.md counts them
    searches = pd.read_csv(tmp_path / "out" / "searches.csv")
    assert sorted(searches["method"]) == ["fte", "ri"] and searches["fold"].isna().all()
    for row in searches.itertuples():
        checkpoint = runs[0] if read_metadata(runs[0]).strategy == row.method else runs[1]
        choice = SearchChoice.from_dict(read_metadata(checkpoint).training["search"])
        assert (row.epochs, row.interpolation) == (choice.epochs, choice.interpolation)
        assert row.held_out_iou == pytest.approx(choice.iou[(choice.epochs, choice.interpolation)])
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "## Chosen on held-out parcels" in tables
    assert f"| FTE | 100 % | 1 | {searches.set_index('method').at['fte', 'epochs']} ×1 |" in tables
    report = result.report.read_text(encoding="utf-8")
    assert '<section id="searches"><h2>Chosen on held-out parcels</h2>' in report
    assert "<td>FTE</td><td>100 %</td><td>1</td>" in report
    # The same folder run again without a search: its table is not shown as this run's.
    plain = {**data, "finetune": {**TINY["finetune"], "val_fraction": 0}}
    again = run_experiment(write_config(tmp_path, plain), tmp_path / "out", jobs=2)
    assert not (tmp_path / "out" / "searches.csv").exists()
    assert 'id="searches"' not in again.report.read_text(encoding="utf-8")


def test_a_held_out_unit_lists_its_fold_runs_in_fold_order(tmp_path):
    from sarcrop.experiments.searches import run_checkpoints

    unit = tmp_path / "method-x"
    for fold in (1, 2, 10):
        (unit / f"fold-{fold}").mkdir(parents=True)
        (unit / f"fold-{fold}" / "model.safetensors").touch()
    record = {"probabilities": unit / "test_probabilities.npy", "checkpoint": None}
    assert [fold for fold, _ in run_checkpoints(record)] == [1, 2, 10]
    single = {"probabilities": tmp_path / "y" / "p.npy", "checkpoint": "y/run/model.safetensors"}
    assert run_checkpoints(single) == [(None, Path("y/run/model.safetensors"))]
    assert run_checkpoints({"probabilities": tmp_path / "z" / "p.npy", "checkpoint": None}) == []


def test_an_experiment_with_crop_types_searches_each_fine_tuning_on_held_out_fields(tmp_path):
    from sarcrop.experiments import run_experiment
    from test_experiment import TINY, write_config

    # simulated France holds rice parcels enough to fold (the train split of Spain holds one)
    scenario = {"finetune": "france", "test": "spain", "classes": ["rice", "other"]}
    scenario["bands"] = ["VH", "VV"]
    settings = {"val_fraction": 0, "epoch_search": [1, 2], "search_folds": 2}
    data = {**TINY, "scenarios": [scenario], "methods": ["ft"], "early_season": None}
    data["finetune"] = {**TINY["finetune"], **settings}
    run_experiment(write_config(tmp_path, data), tmp_path / "out")
    searches = pd.read_csv(tmp_path / "out" / "searches.csv")
    assert list(searches["method"]) == ["ft"] and searches["reason"].isna().all()
    chosen = searches.iloc[0]
    assert chosen["epochs"] in (1, 2) and chosen["folds"] == 2
    assert 0 <= chosen["held_out_iou"] <= 1  # the pooled held-out mIoU
    classes = pd.read_csv(tmp_path / "out" / "class_results.csv")
    assert set(classes["method"]) == {"ft"}
    # Mixing in the pre-trained (binary) head cannot serve a crop-type head: refused up front.
    data["finetune"] = {**TINY["finetune"], "val_fraction": 0, "interpolation_search": [0, 1]}
    with pytest.raises(ConfigError, match=r"scenarios\[0\] maps rice, other, pretrain default"):
        run_experiment(write_config(tmp_path, data), tmp_path / "again")


def test_worker_processes_format_warnings_as_the_command_line_does(tmp_path):
    import pickle
    import threading
    import warnings

    from sarcrop.cli import OneLineWarning
    from sarcrop.experiments.config import load_experiment_config
    from sarcrop.experiments.runner import _start_worker
    from test_experiment import TINY, write_config

    shown = pickle.loads(pickle.dumps(OneLineWarning("experiment")))
    line = shown("too few\n  parcels", UserWarning, "runner.py", 1)
    assert line == "sarcrop experiment: warning: too few parcels\n"
    config = load_experiment_config(write_config(tmp_path, TINY))
    original = warnings.formatwarning
    try:
        alive = (os.getppid(), threading.Event())  # a parent alive that says nothing yet
        threads = torch.get_num_threads()  # this process's own: left as it is
        _start_worker(config, tmp_path / "out", 1, shown, *alive, threads)
        assert warnings.formatwarning("a", UserWarning, "x.py", 2) == (
            "sarcrop experiment: warning: a\n"
        )
    finally:
        warnings.formatwarning = original


def test_worker_warnings_stay_one_line_after_the_parent_has_trained(tmp_path):
    """The parent pre-trains before the workers start, and a fresh process imports Lightning
    there, which puts its own warning formatter in front of the command line's: the workers
    still get one line each."""
    import subprocess
    import sys

    from test_experiment import TINY, write_config

    # Spain's train split holds one rice parcel: every search warns that it cannot fold
    settings = {"val_fraction": 0, "interpolation_search": [0.5, 1], "search_folds": 2}
    data = {**TINY, "methods": ["fte"], "finetune": {**TINY["finetune"], **settings}}
    del data["early_season"]
    argv = ["experiment", str(write_config(tmp_path, data)), "--out", str(tmp_path / "out")]
    command = [sys.executable, "-m", "sarcrop", *argv, "--seeds", "2", "--jobs", "2", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    unit = r"sarcrop experiment: warning: \S+: fte \(seed \d, 100 % of labels, full\): "
    assert re.search(unit + "held-out search: train split: 1 rice", done.stderr), done.stderr
    assert "UserWarning" not in done.stderr


def test_a_crop_type_run_chooses_its_epochs_by_the_held_out_miou(tmp_path):
    """Crop types: the folds are dealt class by class and every budget is ranked by the mIoU
    pooled over the fields the folds held out."""
    store = make_type_store(tmp_path / "types.zarr")
    classes = ["maize", "potato", "grassland", "other"]
    config = quick(val_fraction=0, epoch_search=(1, 3), search_folds=2, classes=classes)
    result = train(store, tmp_path / "run", model_options=OPTIONS, config=config)
    choice = SearchChoice.from_dict(result.search)
    assert set(choice.iou) == {(1, 1.0), (3, 1.0)} and choice.folds == 2
    assert choice.iou[(choice.epochs, 1.0)] == max(choice.iou.values())
    opened = DatasetStore(store)
    folds = parcel_folds(opened, 2, config.seed, positive=classes[:-1], classes=classes)
    for epochs in (1, 3):
        pooled = MulticlassConfusion(classes)
        for number, fold in enumerate(folds, start=1):
            run = tmp_path / "run" / SEARCH_DIR / f"epochs-{epochs}-fold-{number}"
            [confusion] = held_out_confusions(run / "model.safetensors", opened, fold, 0.5).values()
            assert isinstance(confusion, MulticlassConfusion)
            assert confusion.total == int(
                (fold.held_out.keep & (opened.read_all_labels() >= 0)).sum()
            )
            pooled += confusion
        assert choice.iou[(epochs, 1.0)] == pytest.approx(pooled.miou)
    assert read_metadata(result.checkpoint).training["config"]["epochs"] == choice.epochs
