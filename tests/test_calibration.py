"""The ``bias`` strategy: the pre-trained model as it is, its threshold chosen on the labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sarcrop.cli import main
from sarcrop.data.store import DatasetStore
from sarcrop.errors import ConfigError
from sarcrop.models import build_model
from sarcrop.training import (
    evaluate,
    finetune,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    train,
)
from sarcrop.training.calibration import (
    THRESHOLDS,
    ThresholdChoice,
    choose_threshold,
    labelled_pixels,
    shift_threshold,
)
from sarcrop.training.strategies import merge_head
from test_few_labels import OPTIONS, STEPS, make_store, parent_checkpoint, quick


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("bias") / "store.zarr")


@pytest.fixture(scope="module")
def shy_parent(store, tmp_path_factory) -> str:
    """A VH model that finds the maize, its logits then lowered by 3: too shy at 0.5."""
    folder = tmp_path_factory.mktemp("parent")
    config = quick(val_fraction=0, epochs=8)
    trained = train(store, folder / "run", model_options=OPTIONS, bands=["VH"], config=config)
    model, meta = load_checkpoint(trained.checkpoint)
    with torch.no_grad():
        model.decoder.head.bias -= 3.0
    return str(save_checkpoint(folder / "shy.safetensors", model, meta))


def test_the_best_iou_wins_and_ties_go_to_the_threshold_nearest_half():
    # Positives at 0.3, negatives at 0.1: every threshold in (0.1, 0.3] separates them.
    p = np.array([0.1] * 4 + [0.3] * 4)
    target = np.array([0] * 4 + [1] * 4)
    choice = choose_threshold(p, target)
    assert choice.threshold == 0.3
    assert choice.iou == 1.0 and choice.iou_at_half == 0.0  # 0.5 calls nothing positive
    assert (choice.pixels, choice.positives) == (8, 4)
    # Equal IoU at 0.45 and 0.55 (one false positive either side): the lower one.
    p = np.array([0.42, 0.5, 0.5, 0.58, 0.2])
    target = np.array([0, 1, 1, 1, 0])
    assert choose_threshold(p, target, (0.45, 0.55)).threshold == 0.45
    # A crop the model ranks below every threshold but the lowest: said to be at the edge.
    low = choose_threshold(np.array([0.01] * 4 + [0.07] * 4), np.array([0] * 4 + [1] * 4))
    assert low.threshold == 0.05 and "0.05 (the lowest searched: one beyond" in low.summary(0.5)
    assert "searched" not in choice.summary(0.5)


def test_without_a_positive_pixel_the_threshold_stays_at_half():
    choice = choose_threshold(np.array([0.7, 0.2]), np.array([0, 0]))
    assert choice.threshold == 0.5 and choice.positives == 0 and choice.iou == 0.0
    nothing = choose_threshold(np.array([0.3, 0.2]), np.array([0, 0]))  # IoU 0 / 0
    assert nothing.threshold == 0.5 and math.isnan(nothing.iou)
    assert nothing.to_dict()["iou"] is None  # JSON has no nan
    read_back = ThresholdChoice.from_dict(nothing.to_dict())
    assert read_back.threshold == 0.5 and math.isnan(read_back.iou)
    assert "IoU n/a there, n/a at 0.5; the model now cuts there at 0.3" in read_back.summary(0.3)
    assert ThresholdChoice.from_dict(choice.to_dict()) == choice
    with pytest.raises(ValueError, match="3 probabilities for 2 targets"):
        choose_threshold(np.zeros(3), np.zeros(2))


def test_the_shifted_model_at_half_is_the_model_at_the_threshold():
    torch.manual_seed(0)
    x = torch.randn(2, STEPS, 1, 16, 16)
    plain = build_model("recurrent_unet", 1, STEPS, **OPTIONS).eval()
    crop_types = build_model("recurrent_unet", 1, STEPS, **OPTIONS, out_channels=3)
    merge_head(crop_types, [True, False, True])  # two of three classes against the rest
    for model in (plain, crop_types.eval()):
        with torch.no_grad():
            before = model(x)
            shift_threshold(model, 0.2)
            after = model(x)
        expected = -math.log(0.2 / 0.8)
        torch.testing.assert_close(after - before, torch.full_like(before, expected))
    with torch.no_grad():  # moved to the threshold the model is used with, here 0.4
        before = plain(x)
        shift_threshold(plain, 0.2, to=0.4)
        moved = plain(x) - before
    expected = math.log(0.4 / 0.6) - math.log(0.2 / 0.8)
    torch.testing.assert_close(moved, torch.full_like(moved, expected))
    two = build_model("recurrent_unet", 1, STEPS, **OPTIONS, out_channels=2)
    with pytest.raises(ConfigError, match="bias maps one crop; this head has 2 outputs"):
        shift_threshold(two, 0.2)
    with pytest.raises(ConfigError, match="threshold must be between 0 and 1"):
        shift_threshold(plain, 1.0)


def test_bias_moves_only_the_head_bias_to_the_labels_best_threshold(store, shy_parent, tmp_path):
    checkpoint = shy_parent
    parent, parent_meta = load_checkpoint(checkpoint)
    config = quick(val_fraction=0, label_fraction=0.5, seed=1)
    result = finetune(checkpoint, store, tmp_path / "bias", strategy="bias", config=config)
    tuned, meta = load_checkpoint(result.checkpoint)
    assert meta.strategy == "bias" and meta.bands == ["VH"]  # the parent's own band
    assert result.epochs == 0 and meta.training["parameters"]["trainable"] == 0
    assert meta.training["threshold_search"] == result.threshold
    assert "pos_weight" not in meta.training  # no loss, so no class balance of one
    threshold = result.threshold["threshold"]
    assert threshold in THRESHOLDS and threshold < 0.5
    assert result.threshold["iou"] > result.threshold["iou_at_half"]
    changed = {
        name
        for name, value in tuned.state_dict().items()
        if not torch.equal(value, parent.state_dict()[name])
    }
    assert changed <= {"decoder.head.bias"}
    shift = tuned.decoder.head.bias - parent.decoder.head.bias
    assert shift.item() == pytest.approx(-math.log(threshold / (1 - threshold)), abs=1e-6)

    # The choice is the parent's best threshold on the run's labelled pixels, and the tuned
    # model scores there at 0.5 what the parent scores at that threshold.
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.data.parcels import label_subset

    opened = DatasetStore(store)
    mask = label_subset(opened, 0.5, 1, positive=["maize"])
    labelled = PatchDataset(
        opened, "train", ["maize"], ["VH"], normalization=parent_meta.normalization, label_mask=mask
    )
    p, target = labelled_pixels(parent, labelled)
    assert choose_threshold(p, target).to_dict() == result.threshold
    assert result.threshold["positives"] == int(target.sum()) > 0
    tuned_p, _ = labelled_pixels(tuned, labelled)
    assert np.array_equal(tuned_p >= 0.5, p >= threshold)
    on_train = evaluate(result.checkpoint, store, split="train")["metrics"]["iou"]
    assert evaluate(checkpoint, store, split="train", threshold=threshold)["metrics"][
        "iou"
    ] == pytest.approx(on_train, abs=1e-6)

    # A run used at another threshold (its config's) is moved to cut there instead.
    at = finetune(
        checkpoint, store, tmp_path / "at", strategy="bias", config=config.updated(threshold=0.3)
    )
    moved, _ = load_checkpoint(at.checkpoint)
    assert at.threshold == result.threshold  # the same choice, moved elsewhere
    shift = moved.decoder.head.bias - parent.decoder.head.bias
    expected = math.log(0.3 / 0.7) - math.log(threshold / (1 - threshold))
    assert shift.item() == pytest.approx(expected, abs=1e-6)
    at_own = evaluate(at.checkpoint, store, split="train")["metrics"]["iou"]  # cuts at 0.3
    assert at_own == pytest.approx(on_train, abs=1e-6)


def test_bias_warns_where_no_threshold_finds_the_crop(store, shy_parent, tmp_path):
    """A start blind to the crop here: every threshold scores IoU 0, 0.5 stays, and the run
    says that the model as it is does not map the crop, rather than report a choice."""
    model, meta = load_checkpoint(shy_parent)
    with torch.no_grad():
        model.decoder.head.bias -= 50.0  # no pixel reaches even the lowest threshold
    blind = save_checkpoint(tmp_path / "blind.safetensors", model, meta)
    config = quick(val_fraction=0)
    with pytest.warns(UserWarning, match="at no threshold does the model find one of the"):
        result = finetune(blind, store, tmp_path / "bias", strategy="bias", config=config)
    assert result.threshold["threshold"] == 0.5 and result.threshold["iou"] == 0


def test_bias_refuses_what_only_trained_weights_have(store, tmp_path):
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    for changes, problem in [
        ({"interpolation": 0.5}, "so interpolation cannot apply: leave it out"),
        ({"distillation": 1.0}, "so distillation cannot apply"),
        ({"classes": ["other", "maize"]}, "chooses the threshold of one crop"),
        ({"level_jitter": 3.0}, "so level_jitter cannot apply: leave it out"),
        ({"ordering": "chronological"}, "so ordering cannot apply"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            finetune(checkpoint, store, tmp_path / "x", strategy="bias", config=quick(**changes))
    assert not (tmp_path / "x").exists()


def test_bias_refuses_training_flags_and_learnt_no_early_season(store, tmp_path, capsys):
    """bias took --level-jitter, --ordering, --epochs and --lr, ignored them and recorded them,
    and a recorded chronological ordering called a model that trained nothing one that learnt
    early seasons, so that no warning said it had learnt full seasons only."""
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    argv = ["finetune", checkpoint, store, "--strategy", "bias", "--out", str(tmp_path / "x")]
    for flags, named in [
        (["--level-jitter", "3"], "so level_jitter cannot apply: leave it out"),
        (["--ordering", "chronological"], "so ordering cannot apply"),
        (["--epochs", "7", "--lr", "5", "--ordering", "random"], "epochs, lr, ordering cannot"),
    ]:
        assert main([*argv, *flags, "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and named in error
    assert not (tmp_path / "x").exists()
    result = finetune(checkpoint, store, tmp_path / "bias", strategy="bias", config=quick())
    meta = read_metadata(result.checkpoint)
    assert meta.training["epochs"] == 0
    # Checkpoints that recorded an ordering bias never applied: their parent's answer (this
    # parent's record does not say).
    config = {**meta.training["config"], "ordering": "chronological"}
    recorded = meta.model_copy(update={"training": {**meta.training, "config": config}})
    assert recorded.learnt_early_seasons() is meta.learnt_early_seasons() is None
    parent = {**meta.parent, "early_seasons": False}
    assert recorded.model_copy(update={"parent": parent}).learnt_early_seasons() is False


def test_bias_from_the_command_line_says_what_it_chose(store, tmp_path, capsys):
    checkpoint = parent_checkpoint(tmp_path / "pre.safetensors")
    out = tmp_path / "cli"
    argv = ["finetune", checkpoint, store, "--strategy", "bias", "--out", str(out)]
    assert main([*argv, "--val-fraction", "0", "--quiet"]) == 0
    printed = capsys.readouterr().out
    choice = read_metadata(out / "model.safetensors").training["threshold_search"]
    assert f"threshold {choice['threshold']:g} chosen on {choice['pixels']} labelled" in printed
    assert "the model now cuts there at 0.5" in printed
