"""Self-supervised pre-training (``objective: reconstruct``) and transfer from it."""

from __future__ import annotations

import json

import pytest
import torch

from sarcrop.cli import main
from sarcrop.data.dataset import PatchDataset
from sarcrop.errors import CheckpointError, ConfigError
from sarcrop.models import build_model
from sarcrop.training import TrainConfig, load_checkpoint, read_metadata
from sarcrop.training.api import evaluate, finetune, train
from sarcrop.training.config import LATER_FIELD_DEFAULTS, RUNTIME_FIELDS
from sarcrop.training.task import reconstruction_loss, reconstruction_mask
from test_training import OPTIONS, STEPS, make_store, quick

# Group norm: no running statistics, so a short run's model computes in eval mode what it
# learned in training mode.
SSL_OPTIONS = {**OPTIONS, "norm": "group"}
BANDS = 2  # the test store's VH and VV


def ssl_config(**changes) -> TrainConfig:
    return quick(objective="reconstruct", val_fraction=0, lr=1e-2, **changes)


def test_masks_are_seeded_and_hide_composites_and_pixel_blocks():
    shape = torch.Size((4, 8, BANDS, 16, 16))
    mask = reconstruction_mask(shape, seed=3, stream=0, index=5)
    assert mask.shape == (4, 8, 1, 16, 16) and mask.dtype == torch.bool
    assert torch.equal(mask, reconstruction_mask(shape, seed=3, stream=0, index=5))
    assert not torch.equal(mask, reconstruction_mask(shape, seed=3, stream=0, index=6))
    assert not torch.equal(mask, reconstruction_mask(shape, seed=3, stream=1, index=5))
    whole_steps = mask.flatten(2).all(-1)  # composites hidden at every pixel
    every_step = mask.all(1)  # pixels hidden at every composite (blocks)
    assert whole_steps.any() and every_step.any()
    assert 0.2 < float(mask.float().mean()) < 0.7


def test_the_validation_loss_of_a_reconstruction_does_not_depend_on_batches_or_processes():
    """Each validation patch hides the entries its index draws, and every hidden entry weighs
    the same: one process with batches of 1 or 3, and two processes sharing three patches
    (one of them padded with a duplicate that is not scored), give one loss."""
    from torch.utils.data import default_collate

    from sarcrop.training.ordering import ShardedBatchSampler, TimestepDataset
    from sarcrop.training.task import SegmentationTask

    torch.manual_seed(0)
    model = build_model("recurrent_unet", BANDS, STEPS, **{**SSL_OPTIONS, "out_channels": 8})
    task = SegmentationTask(model.eval(), ssl_config())
    g = torch.Generator().manual_seed(1)
    items = [
        {"image": torch.rand(STEPS, BANDS, 16, 16, generator=g), "index": i,
         "valid": torch.ones(16, 16, dtype=torch.bool), "target": torch.zeros(16, 16)}
        for i in range(3)
    ]  # fmt: skip
    data = TimestepDataset(items, STEPS)

    def states(batch_size: int, replicas: int) -> list[tuple[float, float]]:
        weighted = []
        for rank in range(replicas):
            sampler = ShardedBatchSampler(3, batch_size, STEPS, num_replicas=replicas, rank=rank)
            with torch.no_grad():
                for i, keys in enumerate(sampler):
                    task.validation_step(default_collate([data[k] for k in keys]), i)
            weighted.append((float(task.val_loss.mean_value), float(task.val_loss.weight)))
            task.val_loss.reset()
        return weighted

    def pooled(weighted: list[tuple[float, float]]) -> float:  # what a sync across ranks sums
        return sum(total for total, _ in weighted) / sum(weight for _, weight in weighted)

    alone = pooled(states(3, 1))
    assert pooled(states(1, 1)) == pytest.approx(alone, rel=1e-6)
    shared = states(2, 2)  # ranks of 2 patches each: the second's second is a duplicate
    assert pooled(shared) == pytest.approx(alone, rel=1e-6)


def test_reconstruction_lowers_the_masked_error_without_labels(tmp_path):
    store = make_store(tmp_path / "store.zarr", positive=["rice"])
    result = train(store, tmp_path / "ssl", model_options=SSL_OPTIONS, config=ssl_config(epochs=5))
    meta = read_metadata(result.checkpoint)
    assert meta.training["objective"] == "reconstruct"
    assert meta.target_classes is None and meta.positive == []
    assert meta.options["out_channels"] == STEPS * BANDS
    assert result.best_val_iou is None

    trained, _ = load_checkpoint(result.checkpoint)
    torch.manual_seed(0)
    fresh = build_model("recurrent_unet", BANDS, STEPS, **{**SSL_OPTIONS, "out_channels": 8})
    data = PatchDataset(store, "train", "rice", meta.bands, normalization=meta.normalization)
    batch = {"image": torch.stack([data[i]["image"] for i in range(len(data))])}
    mask = reconstruction_mask(batch["image"].shape, seed=99, stream=0, index=0)
    with torch.no_grad():
        before = float(reconstruction_loss(fresh.eval(), batch, mask))
        after = float(reconstruction_loss(trained.eval(), batch, mask))
    assert after < 0.5 * before

    with pytest.raises(CheckpointError, match="fine-tune it first"):
        evaluate(result.checkpoint, store)


def test_a_reconstruction_with_validation_says_what_it_was_selected_on(tmp_path, capsys):
    """Selected on the validation loss: the summary says so (not "best val IoU n/a"), and no
    confusion matrix is computed, so none warns that it was never updated."""
    store = make_store(tmp_path / "store.zarr", positive=["rice"])
    command = ["train", store, "--out", str(tmp_path / "ssl"), "--objective", "reconstruct"]
    flags = ["--epochs", "1", "--batch-size", "4", "--quiet", "--accelerator", "cpu"]
    options = ["--model-options", json.dumps(OPTIONS), "--val-fraction", "0.25"]
    assert main([*command, *options, *flags]) == 0
    out, err = capsys.readouterr()
    assert "best val reconstruction loss (epoch 0)" in out and "IoU" not in out
    assert "compute" not in err


@pytest.fixture(scope="module")
def ssl_parent(tmp_path_factory) -> tuple[str, str]:
    """A test store and a reconstruction checkpoint trained on it through the CLI."""
    folder = tmp_path_factory.mktemp("ssl")
    store = make_store(folder / "store.zarr", positive=["rice"])
    flags = ["--epochs", "1", "--batch-size", "4", "--quiet", "--accelerator", "cpu"]
    command = ["train", store, "--out", str(folder / "ssl"), "--objective", "reconstruct"]
    options = ["--model-options", json.dumps(OPTIONS), "--val-fraction", "0"]
    assert main([*command, *options, *flags]) == 0
    return store, str(folder / "ssl" / "model.safetensors")


@pytest.mark.parametrize("strategy", ["ft", "fte", "ftd", "probe"])
def test_a_reconstruction_checkpoint_fine_tunes_to_a_binary_target(tmp_path, ssl_parent, strategy):
    store, parent_path = ssl_parent
    parent, _ = load_checkpoint(parent_path)
    result = finetune(
        parent_path, store, tmp_path / strategy, strategy=strategy, config=quick(epochs=1)
    )
    child, meta = load_checkpoint(result.checkpoint)
    assert meta.options["out_channels"] == 1 and meta.positive == ["rice"]
    assert "re-initialised" in meta.training["new_head"]
    assert meta.training["objective"] == "segment"
    assert child.decoder.head.weight.shape[0] == 1
    old, new = parent.state_dict(), child.state_dict()
    decoder_same = all(torch.equal(old[k], new[k]) for k in new if k.startswith("decoder.blocks"))
    encoder_same = all(torch.equal(old[k], new[k]) for k in new if k.startswith("encoder."))
    assert encoder_same != (strategy in ("ft", "fte"))
    assert decoder_same != (strategy in ("ft", "ftd"))
    assert evaluate(result.checkpoint, store)["metrics"]["iou"] >= 0


def test_the_default_objective_leaves_fingerprints_and_dumps_as_they_were():
    config = TrainConfig()
    # fields added later (the objective among them) are left out at their defaults
    expected = set(TrainConfig.model_fields) - RUNTIME_FIELDS - {"classes"}
    expected -= set(LATER_FIELD_DEFAULTS)
    assert "objective" in LATER_FIELD_DEFAULTS
    assert set(config.fingerprint()) == expected
    assert "objective" not in config.model_dump(mode="json")
    ssl = TrainConfig(objective="reconstruct")
    assert ssl.fingerprint()["objective"] == "reconstruct"
    assert ssl.updated(epochs=2).objective == "reconstruct"
    assert ssl.fingerprint() != config.fingerprint()


def test_reconstruction_refuses_labels_and_fine_tuning_refuses_reconstruction(tmp_path):
    with pytest.raises(ConfigError, match="label_fraction"):
        TrainConfig(objective="reconstruct", label_fraction=0.5)
    with pytest.raises(ConfigError, match="classes"):
        TrainConfig(objective="reconstruct", classes=["rice", "other"])
    store = make_store(tmp_path / "store.zarr", positive=["rice"])
    with pytest.raises(ConfigError, match="objective must be segment"):
        finetune("any.safetensors", store, tmp_path / "ft", strategy="ft", config=ssl_config())
