"""Training with a few labels: parcel subsets, augmentation, fixed dB ranges, balanced BCE,
no validation set, and the linear probe."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import warnings

import numpy as np
import pytest
import torch
import yaml
from affine import Affine
from rasterio.crs import CRS

from sarcrop.cli import main
from sarcrop.data.grid import Grid
from sarcrop.data.normalization import FIXED_DB_RANGES, Normalization, fixed_normalization
from sarcrop.data.parcels import label_subset
from sarcrop.data.season import Season
from sarcrop.data.store import DatasetStore, StoreMetadata, write_store
from sarcrop.errors import ConfigError, InputDataError
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.models import build_model
from sarcrop.models.adapt import adapted_weights
from sarcrop.options import BaselineOptions
from sarcrop.training import (
    CheckpointMetadata,
    TrainConfig,
    apply_strategy,
    evaluate,
    finetune,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    train,
)
from sarcrop.training.api import _training_data, class_balance, resolved_pos_weight
from sarcrop.training.config import AUTO_POS_WEIGHT_CAP, shipped_recipes, validate_config
from sarcrop.training.losses import balanced_pos_weight
from sarcrop.training.ordering import Key, TimestepDataset
from sarcrop.training.strategies import pinned_modules

STEPS, SIZE, N = 4, 16, 8
OPTIONS = {"widths": [4, 8], "dropout": 0.0, "norm": "batch"}


def make_store(path, n: int = N) -> str:
    """Patches far apart (no parcel crosses them): per patch one maize and one other parcel.

    The first ``n - 2`` patches are train, the last two test.
    """
    rng = np.random.default_rng(0)
    images = rng.normal(-16.0, 1.0, (n, STEPS, 2, SIZE, SIZE)).astype(np.float32)
    images[:, :, 1] += 7.0  # VV above VH
    labels = np.zeros((n, SIZE, SIZE), np.int16)  # class 0 = other
    for i in range(n):
        r, c = rng.integers(0, SIZE - 6, 2)
        labels[i, r : r + 6, c : c + 6] = 1  # class 1 = maize
        images[i, :, :, r : r + 6, c : c + 6] += np.array([-6.0, 3.0, 6.0, 2.0])[
            :, None, None, None
        ]
    labels[:, :, :1] = -1
    meta = StoreMetadata(
        bands=("VH", "VV"),
        season=Season(dt.date(2019, 4, 21), STEPS, 20),
        grid=Grid(CRS.from_epsg(32631), Affine(10, 0, 500000, 0, -10, 5600000), 3 * SIZE * n, SIZE),
        patch_size=SIZE,
        stride=SIZE,
        offsets=[(0, 3 * SIZE * i) for i in range(n)],
        classes=["other", "maize"],
        split=["train"] * (n - 2) + ["test"] * 2,
        normalization=Normalization((-26.0, -19.0), (-4.0, 3.0), ("VH", "VV")),
        region="flanders",
        year=2019,
        positive=["maize"],
    )
    write_store(path, images, labels, meta)
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("few") / "store.zarr")


def quick(**changes) -> TrainConfig:
    base = dict(
        epochs=2,
        batch_size=2,
        lr=1e-2,
        scheduler="none",
        patience=None,
        accelerator="cpu",
        progress_bar=False,
        val_fraction=0.25,
    )
    return TrainConfig(**{**base, **changes})


def labelled_pixels(data) -> np.ndarray:
    """The (patch index, row, col) of every labelled pixel a dataset hands out."""
    found = []
    for item in range(len(data)):
        sample = data[item]
        rows, cols = np.nonzero(sample["valid"].numpy())
        found += [(sample["index"], r, c) for r, c in zip(rows, cols, strict=True)]
    return np.array(found)


# ---------------------------------------------------------------------------- label fraction


def test_label_fraction_trains_and_validates_on_the_subset_only(store):
    config = quick(label_fraction=0.25, seed=3)
    opened = DatasetStore(store)
    positive = ["maize"]
    mask = label_subset(opened, 0.25, 3, positive=positive)
    stats = opened.normalization.to_dict()
    train_data, val_data, record = _training_data(opened, positive, ["VH", "VV"], stats, config)
    assert record == mask.as_dict() and record["parcels"] == 3  # ceil(0.25 * 12)
    assert record["total_parcels"] == 12  # 6 train patches x (maize, other)
    used = np.concatenate([labelled_pixels(train_data), labelled_pixels(val_data)])
    assert mask.keep[tuple(used.T)].all()  # no label outside the subset, validation included
    labels = np.stack([opened.read_labels(i) for i in range(len(opened))])
    assert len(used) == int((mask.keep & (labels >= 0))[opened.indices("train")].sum())
    # patches left without labels are dropped: 3 parcels lie in at most 3 patches
    assert len(train_data) + len(val_data) == len(np.unique(used[:, 0])) <= 3


def test_label_fraction_is_recorded_and_reproducible(store, tmp_path):
    config = quick(label_fraction=0.5, epochs=1)
    result = train(store, tmp_path / "a", model_options=OPTIONS, config=config)
    meta = read_metadata(result.checkpoint)
    assert meta.training["label_subset"] == result.label_subset
    assert result.label_subset["fraction"] == 0.5 and result.label_subset["parcels"] == 6
    full = train(store, tmp_path / "b", model_options=OPTIONS, config=quick(epochs=1))
    assert full.label_subset == {"fraction": 1.0}
    assert read_metadata(full.checkpoint).training["train_patches"] == 4  # 6 train - 2 val
    # The side of the patches learnt from: predict's default window.
    assert meta.training["patch_size"] == DatasetStore(store).patch_size


def test_forest_learns_from_the_same_parcels(store, capsys):
    options = BaselineOptions(label_fraction=0.25, seed=3, n_estimators=5, early_season=False)
    result = run_baseline(store, options, jobs=1)
    mask = label_subset(store, 0.25, 3, positive=["maize"])
    assert result.label_subset == mask.as_dict()
    assert result.to_dict()["label_subset"]["parcels"] == 3
    opened = DatasetStore(store)
    kept = [mask.apply(i, opened.read_labels(i)) for i in opened.indices("train")]
    expected = {
        0: sum(int((k == 0).sum()) for k in kept),
        1: sum(int((k == 1).sum()) for k in kept),
    }
    assert result.model.n_samples_per_class_ == expected
    everything = run_baseline(store, options.model_copy(update={"label_fraction": 1.0}), jobs=1)
    assert sum(everything.model.n_samples_per_class_.values()) > sum(expected.values())
    assert everything.to_dict()["label_subset"] == {"fraction": 1.0}
    argv = ["baseline", store, "--label-fraction", "0.25", "--seed", "3", "--n-estimators", "5"]
    assert main([*argv, "--no-early-season", "--jobs", "1"]) == 0
    said = f"labels: 3 of the {mask.total_parcels} labelled parcels of the train split (25% chosen"
    assert f"{said} with seed 3)" in capsys.readouterr().out  # the line train and finetune print


# ---------------------------------------------------------------------------- augmentation


def test_augment_flips_training_patches_only(store):
    opened = DatasetStore(store)
    stats = opened.normalization.to_dict()
    config = quick(augment=True, seed=1)
    train_data, val_data, _ = _training_data(opened, ["maize"], ["VH", "VV"], stats, config)
    assert train_data.dataset.augment and not val_data.dataset.augment
    plain, _, _ = _training_data(opened, ["maize"], ["VH", "VV"], stats, quick(seed=1))
    assert train_data.indices == plain.indices
    torch.manual_seed(0)
    changed = 0
    for item in range(len(train_data)):
        a, b = train_data[item], plain[item]
        changed += not torch.equal(a["target"], b["target"])
        # the same transform for image, target and mask: maize pixels keep their signal
        assert torch.equal(a["target"].sum(), b["target"].sum())
        maize = a["image"][2, 0][a["target"] > 0].mean()
        other = a["image"][2, 0][(a["target"] == 0) & a["valid"]].mean()
        assert maize > other
    assert changed > 0
    first = val_data[0]
    assert all(torch.equal(first["image"], val_data[0]["image"]) for _ in range(3))


def test_level_jitter_shifts_each_band_of_a_training_patch_by_one_offset(store):
    opened = DatasetStore(store)
    ranges = fixed_normalization(["VH", "VV"])
    config = quick(level_jitter=2.0, seed=1)
    train_data, val_data, _ = _training_data(
        opened, ["maize"], ["VH", "VV"], ranges.to_dict(), config
    )
    assert train_data.dataset.level_jitter == 2.0 and val_data.dataset.level_jitter == 0
    assert not train_data.dataset.augment
    plain, _, _ = _training_data(opened, ["maize"], ["VH", "VV"], ranges.to_dict(), quick(seed=1))
    torch.manual_seed(0)
    offsets = []
    for item in range(len(train_data)):
        a, b = train_data[item]["image"], plain[item]["image"]
        for band, (low, high) in enumerate(zip(ranges.min, ranges.max, strict=True)):
            inside = (b[:, band] > 0.05) & (b[:, band] < 0.95)  # unclipped either way
            shift = ((a[:, band] - b[:, band]) * (high - low))[inside]
            assert shift.numel() > 0
            # one offset per patch and band, in dB, within the jitter
            assert float(shift.max() - shift.min()) < 1e-3
            assert abs(float(shift.mean())) <= 2.0 + 1e-3
            offsets.append(float(shift.mean()))
        assert torch.equal(train_data[item]["target"], plain[item]["target"])
    assert len({round(o, 3) for o in offsets}) == len(offsets)
    assert min(offsets) < 0 < max(offsets)


def test_date_dropout_zeroes_whole_composites_of_training_patches_only(store):
    opened = DatasetStore(store)
    ranges = fixed_normalization(["VH", "VV"]).to_dict()
    config = quick(date_dropout=0.5, seed=1)
    train_data, val_data, _ = _training_data(opened, ["maize"], ["VH", "VV"], ranges, config)
    assert train_data.dataset.date_dropout == 0.5 and val_data.dataset.date_dropout == 0
    plain, _, _ = _training_data(opened, ["maize"], ["VH", "VV"], ranges, quick(seed=1))
    steps = opened.steps
    torch.manual_seed(0)
    dropped = []
    for _ in range(20):
        for item in range(len(train_data)):
            a, b = train_data[item]["image"], plain[item]["image"]
            gone = [t for t in range(steps) if not torch.equal(a[t], b[t])]
            # a date is dropped whole (every band and pixel zero) or kept as it was
            assert all(float(a[t].abs().max()) == 0.0 for t in gone)
            assert len(gone) < steps  # at least one date is kept
            assert torch.equal(train_data[item]["target"], plain[item]["target"])
            dropped.append(len(gone))
    # each date with chance 0.5: about half of them, and not the same ones every time
    assert 0.35 < np.mean(dropped) / steps < 0.65
    assert len(set(dropped)) > 2
    with pytest.raises(ConfigError, match="date_dropout"):
        validate_config({"date_dropout": 1.0})
    assert "date_dropout" not in quick().fingerprint()


def test_date_dropout_keeps_a_composite_an_early_season_sample_sees(store):
    """Chronological and random batches see the first t composites: date dropout kept one of
    all T, so it zeroed every composite of a t = 1 sample as often as it drops one (a fifth of
    them at 0.2, still labelled). It keeps one of the first t now, and a full season draws
    as it did, draw for draw."""
    opened = DatasetStore(store)
    ranges = fixed_normalization(["VH", "VV"]).to_dict()
    config = quick(date_dropout=0.6, seed=1, val_fraction=0)
    train_data, _, _ = _training_data(opened, ["maize"], ["VH", "VV"], ranges, config)
    steps = opened.steps
    data = TimestepDataset(train_data, steps)
    torch.manual_seed(0)
    for _ in range(20):
        for item in range(len(data)):
            for t in range(1, steps + 1):
                assert float(data[Key(item, t)]["image"][:t].abs().max()) > 0
    torch.manual_seed(0)
    whole = [data[Key(item, steps)]["image"] for item in range(len(data))]
    torch.manual_seed(0)
    assert all(torch.equal(train_data[i]["image"], whole[i]) for i in range(len(data)))


def test_level_jitter_is_validated_and_left_out_of_default_fingerprints():
    assert "level_jitter" not in quick().fingerprint()
    assert quick(level_jitter=1.5).fingerprint()["level_jitter"] == 1.5
    with pytest.raises(ConfigError, match="level_jitter"):
        validate_config({"level_jitter": -1})


# ---------------------------------------------------------------------------- normalisation


def test_fixed_ranges_are_recorded_and_used_for_new_bands(store, tmp_path):
    assert fixed_normalization(["vv", "VH"]).min == (FIXED_DB_RANGES["VV"][0], -30.0)
    with pytest.raises(InputDataError, match="no fixed dB range for band"):
        fixed_normalization(["HH"])
    config = quick(epochs=1, normalization="fixed")
    pre = train(store, tmp_path / "pre", model_options=OPTIONS, bands=["VH"], config=config)
    meta = read_metadata(pre.checkpoint)
    assert meta.normalization == fixed_normalization(["VH"]).to_dict()
    assert "fixed dB ranges" in meta.normalization_source
    # Eq. 3 adds VV: a parent on fixed ranges reads VV on its fixed range, not the store's
    tuned = finetune(
        pre.checkpoint,
        store,
        tmp_path / "ft",
        strategy="ft",
        bands=["VH", "VV"],
        config=quick(epochs=1),
    )
    stats = read_metadata(tuned.checkpoint).normalization
    assert stats == fixed_normalization(["VH", "VV"]).to_dict()
    # a parent on store statistics keeps them; its new band follows config.normalization
    plain = train(
        store, tmp_path / "plain", model_options=OPTIONS, bands=["VH"], config=quick(epochs=1)
    )
    mixed = finetune(
        plain.checkpoint, store, tmp_path / "mix", strategy="ft", bands=["VH", "VV"], config=config
    )
    stats = read_metadata(mixed.checkpoint).normalization
    assert stats["min"] == [-26.0, FIXED_DB_RANGES["VV"][0]]
    assert stats["method"] == "fixed+minmax"
    # ri uses config.normalization like any model trained from scratch
    ri = finetune(pre.checkpoint, store, tmp_path / "ri", strategy="ri", config=quick(epochs=1))
    assert read_metadata(ri.checkpoint).normalization["min"] == [-26.0]


# ---------------------------------------------------------------------------- pos_weight auto


def test_pos_weight_auto_is_the_capped_class_ratio(store, tmp_path):
    assert validate_config({"pos_weight": "auto"}).pos_weight == "auto"
    assert validate_config({"pos_weight": "2.5"}).pos_weight == 2.5
    for bad in ("heavy", 0, -1, True):
        with pytest.raises(ConfigError, match="pos_weight must be a positive number or 'auto'"):
            validate_config({"pos_weight": bad})
    assert balanced_pos_weight(90, 10, 20.0) == 9.0
    assert balanced_pos_weight(1000, 1, 20.0) == 20.0
    assert balanced_pos_weight(1, 1000, 20.0) == 1 / 20.0
    with pytest.raises(ValueError, match="positive training pixels"):
        balanced_pos_weight(10, 0, 20.0)

    config = quick(pos_weight="auto", epochs=1)
    opened = DatasetStore(store)
    train_data, _, _ = _training_data(
        opened, ["maize"], ["VH"], opened.normalization.to_dict(), config
    )
    negative, positive = class_balance(train_data)
    items = [train_data[i] for i in range(len(train_data))]  # the slow way agrees
    assert positive == sum(int(x["target"][x["valid"]].sum()) for x in items) == 4 * 36
    assert negative + positive == sum(int(x["valid"].sum()) for x in items)
    weight = resolved_pos_weight(config, train_data)
    assert weight == min(AUTO_POS_WEIGHT_CAP, negative / positive)
    result = train(store, tmp_path / "auto", model_options=OPTIONS, bands=["VH"], config=config)
    assert read_metadata(result.checkpoint).training["pos_weight"] == pytest.approx(weight)


# ---------------------------------------------------------------------------- no validation


def test_val_fraction_zero_trains_every_epoch_and_keeps_the_last_weights(store, tmp_path):
    config = quick(val_fraction=0, epochs=3, patience=1)  # patience needs validation: ignored
    result = train(store, tmp_path / "run", model_options=OPTIONS, bands=["VH"], config=config)
    assert result.epochs == 3 and result.best_epoch == 2 and result.best_val_iou is None
    assert not (tmp_path / "run" / "best.ckpt").exists()
    summary = read_metadata(result.checkpoint).training
    assert summary["val_patches"] == 0 and summary["train_patches"] == N - 2
    assert summary["selection"] == "last epoch"
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "val_iou" not in header
    last = torch.load(tmp_path / "run" / "last.ckpt", map_location="cpu", weights_only=True)
    model, _ = load_checkpoint(result.checkpoint)
    for name, value in model.state_dict().items():
        assert torch.equal(value, last["state_dict"]["model." + name])
    again = train(store, tmp_path / "run", model_options=OPTIONS, bands=["VH"], config=config)
    assert again.resumed and again.best_epoch == 2


# ---------------------------------------------------------------------------- linear probe


def parent_checkpoint(path) -> str:
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 1, STEPS, **OPTIONS)
    meta = CheckpointMetadata(
        architecture="recurrent_unet",
        options=OPTIONS,
        bands=["VH"],
        time_steps=STEPS,
        normalization={"min": [-30.0], "max": [0.0], "bands": ["VH"], "method": "minmax"},
        positive=["maize"],
    )
    return str(save_checkpoint(path, model, meta))


def test_composites_of_another_length_than_the_model_learnt_are_named(store, tmp_path):
    """A store of 10-day composites under a model of 20-day ones: every step is another part
    of the season than the weights read, which nothing else would say."""
    days = DatasetStore(store).season.days
    model, meta = load_checkpoint(parent_checkpoint(tmp_path / "parent.safetensors"))
    season = {"start": "2021-04-01", "steps": STEPS, "days": 2 * days}
    other = save_checkpoint(
        tmp_path / "other.safetensors", model, meta.model_copy(update={"season": season})
    )
    with pytest.warns(
        UserWarning,
        match=rf"learnt composites of {2 * days} days, and .* holds "
        rf"composites of {days}: .*--days {2 * days} to match",
    ):
        finetune(other, store, tmp_path / "ft", strategy="ft", bands=["VH"], config=quick())
    with pytest.warns(UserWarning, match=rf"learnt composites of {2 * days} days"):
        evaluate(other, store)  # scored as it is, the same steps are read
    same = save_checkpoint(
        tmp_path / "same.safetensors",
        model,
        meta.model_copy(update={"season": {**season, "days": days}}),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune(same, store, tmp_path / "ft2", strategy="ft", bands=["VH"], config=quick())
    assert not [w for w in caught if "learnt composites" in str(w.message)]


def test_probe_trains_only_a_fresh_output_convolution():
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, STEPS, **OPTIONS)
    head = model.decoder.head
    before = {name: value.clone() for name, value in model.state_dict().items()}
    apply_strategy(model, "probe")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["decoder.head.weight", "decoder.head.bias"]
    assert not torch.equal(head.weight, before["decoder.head.weight"])  # re-initialised
    pinned = set(pinned_modules(model))
    assert "encoder" in pinned and "decoder.head" not in pinned and "decoder" not in pinned
    model.train()
    assert all(not m.training for n, m in model.named_modules() if n.startswith("encoder"))
    with pytest.raises(ConfigError, match="last_k applies to the ftd strategy only"):
        apply_strategy(model, "probe", last_k=1)
    with pytest.raises(ConfigError, match=r"no decoder\.head"):
        apply_strategy(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), "probe")


def test_probe_fine_tunes_through_eq3_the_api_and_the_cli(store, tmp_path, capsys):
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    parent, _ = load_checkpoint(checkpoint)
    result = finetune(
        checkpoint, store, tmp_path / "probe", strategy="probe", bands=["VH", "VV"], config=quick()
    )
    tuned, meta = load_checkpoint(result.checkpoint)
    assert meta.strategy == "probe" and meta.bands == ["VH", "VV"]
    assert meta.training["parameters"]["trainable"] == OPTIONS["widths"][0] + 1
    first = tuned.first_conv.weight
    assert torch.equal(first, adapted_weights(parent.first_conv.weight, ["VH", "VV"], ["VH"]))
    changed = {
        name
        for name, value in tuned.state_dict().items()
        if name in parent.state_dict()
        and value.shape == parent.state_dict()[name].shape
        and not torch.equal(value, parent.state_dict()[name])
    }
    assert changed == {"decoder.head.weight", "decoder.head.bias"}  # norm statistics included

    argv = ["finetune", checkpoint, store, "--strategy", "probe", "--out", str(tmp_path / "cli")]
    assert main([*argv, "--epochs", "1", "--quiet", "--accelerator", "cpu"]) == 0
    assert read_metadata(tmp_path / "cli" / "model.safetensors").strategy == "probe"
    assert "best val IoU" in capsys.readouterr().out
    again = ["--out", str(tmp_path / "cli0"), "--epochs", "1", "--val-fraction", "0", "--quiet"]
    assert main([*argv[:-2], *again]) == 0
    text = capsys.readouterr().out
    assert "no validation: last epoch (0), 1 epoch" in text and "1 epochs" not in text
    assert "labels:" not in text  # every label: nothing to say
    few = ["--out", str(tmp_path / "few"), "--label-fraction", "0.5", *again[2:]]
    assert main([*argv[:-2], *few]) == 0
    subset = read_metadata(tmp_path / "few" / "model.safetensors").training["label_subset"]
    expected = f"labels: {subset['parcels']} of the {subset['total_parcels']} labelled parcels"
    assert 0 < subset["parcels"] < subset["total_parcels"]
    assert f"{expected} of the train split (50% chosen with seed 0)" in capsys.readouterr().out


def test_experiment_methods_include_probe():
    from sarcrop.experiments.config import parse_method

    assert parse_method("probe") == ("probe", None)


# ---------------------------------------------------------------------------- CLI flags


def test_few_label_settings_are_flags_and_yaml_keys(tmp_path):
    from sarcrop.cli.finetune import add_arguments as finetune_arguments
    from sarcrop.cli.shared import add_training_options, config_from_args

    parser = argparse.ArgumentParser()
    add_training_options(parser)
    argv = ["--label-fraction", "0.25", "--augment", "--pos-weight", "auto"]
    config = config_from_args(
        parser.parse_args([*argv, "--normalization", "fixed", "--val-fraction", "0"])
    )
    assert (config.label_fraction, config.augment, config.pos_weight) == (0.25, True, "auto")
    assert config.normalization == "fixed" and config.val_fraction == 0
    assert config_from_args(parser.parse_args(["--pos-weight", "4"])).pos_weight == 4.0
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("label_fraction: 0.1\nnormalization: fixed\npos_weight: auto\n")
    assert TrainConfig.from_yaml(yaml_file).label_fraction == 0.1
    # finetune's --statistics (whose statistics a band keeps) beside --normalization (how new
    # statistics are made), which means what it means in train and in the YAML
    tune = argparse.ArgumentParser()
    finetune_arguments(tune)
    argv = ["ckpt", "store", "--out", "o", "--strategy", "ft", "--statistics", "target"]
    args = tune.parse_args(argv)
    args.config = str(yaml_file)
    assert args.statistics == "target" and config_from_args(args).normalization == "fixed"
    args = tune.parse_args([*argv, "--normalization", "store"])
    args.config = str(yaml_file)
    assert config_from_args(args).normalization == "store"
    with pytest.raises(ConfigError, match="label_fraction"):
        validate_config({"label_fraction": 0})
    assert json.loads(json.dumps(config.model_dump()))["pos_weight"] == "auto"


# ---------------------------------------------------------------------------- recipe

RECIPE = {
    "epochs": 20,
    "batch_size": 4,
    "lr": 0.003,
    "val_fraction": 0,
    "patience": None,
    "augment": True,
    "pos_weight": "auto",
    "normalization": "fixed",
}


def settings(config: TrainConfig) -> dict:
    return config.model_dump(include=set(RECIPE))


def test_the_few_labels_recipe_is_a_keyword_a_yaml_key_and_a_flag(tmp_path):
    from sarcrop.cli.shared import add_training_options, config_from_args

    assert "few-labels" in shipped_recipes()
    assert settings(TrainConfig(recipe="few-labels")) == RECIPE
    assert "recipe" not in TrainConfig(recipe="few-labels").model_dump()  # its settings are
    beside = TrainConfig(recipe="few-labels", epochs=5)
    assert settings(beside) == {**RECIPE, "epochs": 5}  # settings beside it win
    again = quick(seed=2).updated(recipe="few-labels", epochs=7)
    assert settings(again) == {**RECIPE, "epochs": 7} and again.seed == 2
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("recipe: few-labels\nepochs: 30\nlr: 0.01\n")
    assert settings(TrainConfig.from_yaml(yaml_file)) == {**RECIPE, "epochs": 30, "lr": 0.01}

    parser = argparse.ArgumentParser()
    add_training_options(parser)
    flags = config_from_args(parser.parse_args(["--recipe", "few-labels", "--epochs", "3"]))
    assert settings(flags) == {**RECIPE, "epochs": 3}
    # A setting the recipe turns on is turned off by its --no- flag.
    off = config_from_args(parser.parse_args(["--recipe", "few-labels", "--no-augment"]))
    assert settings(off) == {**RECIPE, "augment": False}
    yaml_file.write_text("epochs: 30\nlr: 0.01\n")  # recipe < --config < flags
    argv = ["--recipe", "few-labels", "--config", str(yaml_file), "--lr", "0.02"]
    assert settings(config_from_args(parser.parse_args(argv))) == {
        **RECIPE,
        "epochs": 30,
        "lr": 0.02,
    }
    with pytest.raises(SystemExit):
        parser.parse_args(["--recipe", "many-labels"])


def test_an_unknown_recipe_is_one_line_naming_the_file_and_the_shipped_ones(tmp_path):
    bad = tmp_path / "train.yaml"
    bad.write_text("recipe: many-labels\n")
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_yaml(bad)
    message = str(error.value)
    assert "\n" not in message and str(bad) in message
    assert "unknown recipe 'many-labels'; shipped: few-labels" in message
    with pytest.raises(ConfigError, match="recipe: unknown recipe 'many-labels'"):
        quick().updated(recipe="many-labels")


def test_the_real_benchmark_fine_tunes_with_the_few_labels_recipe():
    from sarcrop.experiments.presets import resolve_config

    # The config's finetune section as the experiment reads it (the data need not be here).
    section = yaml.safe_load(resolve_config("real").read_text(encoding="utf-8"))["finetune"]
    finetune = validate_config(section)
    assert finetune == TrainConfig(recipe="few-labels", progress_bar=False)
    # the settings every cached result of the benchmark was measured with
    assert finetune == TrainConfig(**RECIPE, progress_bar=False)


# ---------------------------------------------------------------------------- validation size


def show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    """What Python does with a warning outside pytest: print it as formatwarning makes it."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def test_selecting_a_model_on_a_few_validation_fields_warns(store, tmp_path, capsys):
    opened = DatasetStore(store)
    stats = opened.normalization.to_dict()

    def split(val_fraction: float) -> None:
        _training_data(opened, ["maize"], ["VH"], stats, quick(val_fraction=val_fraction))

    # 2 of the 6 train patches, one maize and one other field in each
    with pytest.warns(UserWarning, match="2 validation patches holding 4 labelled fields"):
        split(0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split(0)  # no validation, nothing to select on
        split(0.8)  # 5 patches, 10 fields: enough
    argv = ["train", store, "--out", str(tmp_path / "cli"), "--bands", "VH", "--epochs", "1"]
    options = ["--model-options", json.dumps(OPTIONS), "--val-fraction", "0.25", "--quiet"]
    with warnings.catch_warnings():  # shown as a user sees them, through the CLI's format
        warnings.simplefilter("always")
        warnings.showwarning = show_on_stderr
        assert main([*argv, *options, "--accelerator", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "validation patch" in line]
    assert len(lines) == 1 and lines[0].startswith("sarcrop train: warning: model selection on")
    assert lines[0].endswith("recipe few-labels (--recipe few-labels), or val_fraction 0")
