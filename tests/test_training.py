"""Training: transfer strategies, the Lightning task, runs, resume and the CLI, end to end."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil

import lightning as L
import numpy as np
import pytest
import torch
from affine import Affine
from rasterio.crs import CRS
from torch.nn.modules.batchnorm import _BatchNorm

from sarcrop.cli import main
from sarcrop.data.grid import Grid
from sarcrop.data.normalization import Normalization
from sarcrop.data.season import Season
from sarcrop.data.store import DatasetStore, StoreMetadata, write_store
from sarcrop.errors import ConfigError, InputDataError
from sarcrop.models import build_model
from sarcrop.training import (
    CheckpointMetadata,
    SegmentationTask,
    TrainConfig,
    apply_strategy,
    fit,
    load_checkpoint,
    read_metadata,
    train,
    trainable_parameters,
)
from sarcrop.training.task import one_cycle

STEPS, SIZE = 4, 32
OPTIONS = {"widths": [4, 8, 16], "dropout": 0.0, "norm": "batch"}
STORE_NORMALIZATION = Normalization((-30.0, -25.0), (0.0, 5.0), ("VH", "VV"))


def make_patches(n: int, bands: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw dB patches: a square 'rice' field that floods (low dB) early, then greens up."""
    rng = np.random.default_rng(seed)
    images = rng.normal(-15.0, 1.5, (n, STEPS, bands, SIZE, SIZE)).astype(np.float32)
    labels = np.ones((n, SIZE, SIZE), np.int16)  # class 1 = other
    curve = np.array([-10.0, -6.0, 3.0, 6.0])[:STEPS]
    for i in range(n):
        r, c = rng.integers(0, SIZE - 12, 2)
        labels[i, r : r + 12, c : c + 12] = 0  # class 0 = rice
        images[i, :, :, r : r + 12, c : c + 12] += curve[:, None, None, None]
    labels[:, :, :2] = -1  # an unlabelled strip
    return images, labels


def make_items(n: int, seed: int = 0) -> list[dict]:
    images, labels = make_patches(n, seed=seed)
    x = np.clip((images + 30.0) / 30.0, 0, 1)
    return [
        {
            "image": torch.from_numpy(x[i]),
            "target": torch.from_numpy((labels[i] == 0) * 1.0).float(),
            "valid": torch.from_numpy(labels[i] >= 0),
            "index": i,
        }
        for i in range(n)
    ]


def make_store(
    path,
    n: int = 10,
    positive: list[str] | None = None,
    test: int = 3,
    normalization: Normalization = STORE_NORMALIZATION,
) -> str:
    images, labels = make_patches(n, bands=2)
    images[:, :, 1] += 6.0  # VV a few dB above VH
    meta = StoreMetadata(
        bands=("VH", "VV"),
        season=Season(dt.date(2021, 5, 1), STEPS, 20),
        grid=Grid(CRS.from_epsg(32630), Affine(10, 0, 500000, 0, -10, 4500000), SIZE * n, SIZE),
        patch_size=SIZE,
        stride=SIZE,
        offsets=[(0, SIZE * i) for i in range(n)],
        classes=["rice", "other"],
        split=["train"] * (n - test) + ["test"] * test,
        normalization=normalization,
        region="spain",
        year=2021,
        positive=positive,
    )
    write_store(path, images, labels, meta)
    return str(path)


def tiny_model(bands: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("recurrent_unet", bands, STEPS, **OPTIONS)


def meta() -> CheckpointMetadata:
    return CheckpointMetadata(
        architecture="recurrent_unet",
        options=OPTIONS,
        bands=["VH"],
        time_steps=STEPS,
        strategy="scratch",
    )


def quick(**changes) -> TrainConfig:
    base = dict(
        epochs=3,
        batch_size=4,
        lr=3e-2,
        loss="bce+dice",
        scheduler="none",
        patience=None,
        accelerator="cpu",
        progress_bar=False,
        val_fraction=0.25,
    )
    return TrainConfig(**{**base, **changes})


# ---------------------------------------------------------------------------- strategies


def train_steps(model: torch.nn.Module, steps: int = 3) -> None:
    task = SegmentationTask(model, TrainConfig(lr=1e-2, weight_decay=0.5, scheduler="none"))
    loader = torch.utils.data.DataLoader(make_items(8), batch_size=4)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(task, loader)


def norm_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{b}": getattr(module, b).clone()
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
        for b in ("running_mean", "running_var")
    }


@pytest.mark.parametrize(
    ("strategy", "last_k", "frozen_prefixes"),
    [
        ("fte", None, ("decoder.",)),
        ("ftd", None, ("encoder.",)),
        ("ftd", 1, ("encoder.", "decoder.blocks.0.")),
    ],
)
def test_frozen_parts_stay_bit_identical(strategy, last_k, frozen_prefixes):
    model = apply_strategy(tiny_model(), strategy, last_k)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    norms = norm_buffers(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n in params if n.startswith(frozen_prefixes)}
    assert frozen and len(frozen) < len(params)

    train_steps(model)

    for name, before in params.items():
        after = model.get_parameter(name)
        if name in frozen:
            assert torch.equal(before, after), f"frozen {name} changed"
    changed = [
        n for n in params if n not in frozen and not torch.equal(params[n], model.get_parameter(n))
    ]
    assert len(changed) == len(params) - len(frozen), "every trainable parameter should move"
    for name, before in norms.items():
        after = model.get_buffer(name)
        if name.startswith(frozen_prefixes):
            assert torch.equal(before, after), f"frozen statistics {name} drifted"
        else:
            assert not torch.equal(before, after), f"trainable statistics {name} did not update"


def test_ri_reinitialises_and_ft_trains_everything():
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply_strategy(model, "ri")
    assert all(p.requires_grad for p in model.parameters())
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert torch.equal(model.encoder.levels[0].carry, torch.full((4,), 0.5))
    apply_strategy(model, "fte")
    apply_strategy(model, "ft")
    assert all(p.requires_grad for p in model.parameters())


def test_strategy_errors_and_optimizer_sees_only_trainable_parameters():
    with pytest.raises(ConfigError, match="last_k"):
        apply_strategy(tiny_model(), "fte", last_k=1)
    with pytest.raises(ConfigError, match=r"last_k must be 1\.\.2"):
        apply_strategy(tiny_model(), "ftd", last_k=3)
    with pytest.raises(ConfigError, match="strategy"):
        apply_strategy(tiny_model(), "freeze-all")
    model = apply_strategy(tiny_model(), "fte")
    optimizer = SegmentationTask(model, TrainConfig(scheduler="none")).configure_optimizers()
    handed = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert handed == {id(p) for p in trainable_parameters(model)}


# ---------------------------------------------------------------------------- runs


class Recorder(L.Callback):
    def __init__(self):
        self.batches: list[tuple[int, int, tuple[int, ...]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        ts = set(batch["t"].tolist())
        assert len(ts) == 1
        self.batches.append((trainer.current_epoch, ts.pop(), tuple(batch["index"].tolist())))


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_learns_in_chronological_order_and_exports(tmp_path):
    recorder = Recorder()
    data = make_items(12)
    model = tiny_model().eval()  # as returned by load_checkpoint: fit must switch to training
    result = fit(
        model,
        data[:9],
        data[9:],
        tmp_path,
        quick(ordering="chronological"),
        meta(),
        callbacks=[recorder],
    )

    for epoch in range(3):
        ts = [t for e, t, _ in recorder.batches if e == epoch]
        assert ts == [t for t in range(1, STEPS + 1) for _ in range(3)]  # ceil(9 / 4) per type
    orders = {
        tuple(i for e, _, idx in recorder.batches if e == epoch for i in idx) for epoch in range(3)
    }
    assert len(orders) == 3  # a new shuffle every epoch

    rows = read_rows(tmp_path / "metrics.csv")
    losses = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0]
    assert result.best_val_iou is not None and result.best_val_iou > 0.3
    model, metadata = load_checkpoint(result.checkpoint)
    assert not torch.equal(model.encoder.levels[0].block[1].running_mean, torch.zeros(4))
    assert metadata.training["best_val_iou"] == pytest.approx(result.best_val_iou)
    assert metadata.training["config"]["ordering"] == "chronological"
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "complete" and run["environment"]["torch"] == torch.__version__
    assert metadata.training["environment"] == run["environment"]  # the file says it too


class Crash(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


class TimeUpAfterFirstEpoch(L.Callback):
    """The run's ``max_time`` reached as its first epoch ends, whatever the machine's speed."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.callbacks import Timer

        for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
            timer._duration = 0.0


class TimeUpAfterSecondEpoch(L.Callback):
    """The run's ``max_time`` reached as its second epoch ends."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            TimeUpAfterFirstEpoch().on_train_epoch_end(trainer, pl_module)


@pytest.mark.parametrize("ending", ["last epoch", "early stopping"])
def test_a_run_that_max_time_did_not_cut_short_is_complete(tmp_path, ending):
    """The time up as the last epoch ends, or as early stopping ends the run: nothing is left
    to train, and the run is complete (it was recorded as stopped, and every rerun said to run
    it again)."""
    data = make_items(6)
    if ending == "last epoch":
        config, val = quick(epochs=2, val_fraction=0), None
    else:  # nothing predicted above 0.99: val_iou 0 at every epoch, patience 1 ends epoch 1
        config, val = quick(epochs=5, patience=1, lr=1e-9, threshold=0.99), data[4:]
    limited = config.updated(max_time="01:00:00:00")
    stop = [TimeUpAfterSecondEpoch()]
    result = fit(tiny_model(), data[:4], val, tmp_path, limited, meta(), callbacks=stop)
    assert result.epochs == 2 and not result.out_of_time
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("validation", [True, False])
def test_a_run_out_of_time_is_not_complete_and_goes_on_when_run_again(tmp_path, validation):
    """``max_time`` stops a run (here as its first epoch ends); the run is recorded as stopped,
    not complete, and the same run again goes on from its last checkpoint (a larger limit, or
    none, may be given)."""
    data = make_items(8)
    val = data[6:] if validation else None
    config = quick(val_fraction=0.25 if validation else 0.0)
    limited = config.updated(max_time="01:00:00:00")
    stop = [TimeUpAfterFirstEpoch()]
    stopped = fit(tiny_model(), data[:6], val, tmp_path, limited, meta(), callbacks=stop)
    assert stopped.out_of_time and stopped.epochs == 1
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "stopped"
    assert (tmp_path / "model.safetensors").is_file()  # the model so far, to use meanwhile
    recorder = Recorder()
    finished = fit(tiny_model(), data[:6], val, tmp_path, config, meta(), callbacks=[recorder])
    assert finished.resumed and not finished.out_of_time and finished.epochs == 3
    assert sorted({e for e, _, _ in recorder.batches}) == [1, 2]  # epoch 0 is not repeated
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("warmup", [0.0, 0.05])
def test_onecycle_trains_runs_of_a_few_steps(tmp_path, warmup):
    """OneCycleLR divided by zero where the warm-up was under 2 steps: every run of fewer than
    40 steps at the default warmup_fraction, and every run at warmup_fraction 0."""
    data = make_items(4)
    config = quick(epochs=2, scheduler="onecycle", warmup_fraction=warmup, val_fraction=0)
    result = fit(tiny_model(), data, None, tmp_path, config, meta())  # 2 steps
    assert result.epochs == 2 and (tmp_path / "model.safetensors").is_file()
    for total in range(1, 45):
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([parameter], lr=1e-3)
        scheduler = one_cycle(optimizer, 1e-3, total, int(warmup * total))
        rates = []
        for _ in range(total):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert max(rates) == pytest.approx(1e-3) or total < 3
        assert rates[0] < 1e-3  # it warms up


def test_a_run_resumes_wherever_the_paths_it_names_are_now(tmp_path):
    """A run records the store its statistics came from and the checkpoint it starts from as
    the command named them: resumed from another folder, or moved, it was refused as a run of
    another configuration. The parent's content still counts."""
    data = make_items(8)
    parent = {"path": "out/pre.safetensors", "sha256": "ab"}
    named = meta().model_copy(
        update={"normalization_source": "train split of out/store.zarr", "parent": parent}
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_model(), data[:6], data[6:], tmp_path, quick(), named, callbacks=[Crash()])
    moved = {"path": "/elsewhere/out/pre.safetensors", "sha256": "ab"}
    elsewhere = named.model_copy(
        update={"normalization_source": "train split of /elsewhere/out/store.zarr", "parent": moved}
    )
    assert fit(tiny_model(), data[:6], data[6:], tmp_path, quick(), elsewhere).resumed
    other = elsewhere.model_copy(update={"parent": {**moved, "sha256": "cd"}})
    with pytest.raises(ConfigError, match=r"different configuration \(parent "):
        fit(tiny_model(), data[:6], data[6:], tmp_path, quick(), other)


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    data = make_items(8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_model(), data[:6], data[6:], tmp_path, quick(), meta(), callbacks=[Crash()])
    assert (tmp_path / "last.ckpt").is_file() and not (tmp_path / "model.safetensors").exists()

    with pytest.raises(ConfigError, match=r"different configuration \(lr 0\.03 -> 0\.001\)"):
        fit(tiny_model(), data[:6], data[6:], tmp_path, quick(lr=1e-3), meta())

    recorder = Recorder()
    result = fit(
        tiny_model(),
        data[:6],
        data[6:],
        tmp_path,
        quick(num_workers=0),
        meta(),
        callbacks=[recorder],
    )
    assert result.resumed and result.epochs == 3
    assert sorted({e for e, _, _ in recorder.batches}) == [1, 2]  # epoch 0 is not repeated
    val_epochs = [int(r["epoch"]) for r in read_rows(tmp_path / "metrics.csv") if r.get("val_iou")]
    assert val_epochs == [0, 1, 2]

    again = Recorder()
    done = fit(tiny_model(), data[:6], data[6:], tmp_path, quick(), meta(), callbacks=[again])
    assert done.checkpoint == result.checkpoint and not again.batches
    # A finished run moved elsewhere gives its own checkpoint, not the first folder's.
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(tmp_path, moved)
    there = fit(tiny_model(), data[:6], data[6:], moved, quick(), meta())
    assert there.resumed and there.checkpoint == moved / "model.safetensors"


# ---------------------------------------------------------------------------- API + CLI


def test_a_band_of_one_value_is_refused_before_training(tmp_path):
    """A train split whose VV holds one value has statistics that scale nothing, which the
    checkpoint would refuse (min below max) after the whole training: one line, at once."""
    flat = Normalization((-30.0, -9.0), (0.0, -9.0), ("VH", "VV"))
    store = make_store(tmp_path / "store.zarr", positive=["rice"], normalization=flat)
    with pytest.raises(InputDataError, match=r"band\(s\) VV hold one value") as info:
        train(store, tmp_path / "run", model_options=OPTIONS, config=quick(epochs=1))
    assert str(info.value).startswith(f"{store}: ") and not (tmp_path / "run").exists()


def test_cli_train_evaluate_finetune_on_a_store(tmp_path, capsys):
    store = make_store(tmp_path / "store.zarr", positive=["rice"])
    common = [
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "0.01",
        "--quiet",
        "--accelerator",
        "cpu",
    ]
    options = json.dumps(OPTIONS)
    assert (
        main(
            [
                "train",
                store,
                "--out",
                str(tmp_path / "pre"),
                "--bands",
                "VH",
                "--model-options",
                options,
                *common,
            ]
        )
        == 0
    )
    checkpoint = tmp_path / "pre" / "model.safetensors"
    pre = read_metadata(checkpoint)
    assert pre.bands == ["VH"] and pre.region == "spain" and pre.season["steps"] == STEPS
    assert pre.normalization["min"] == [-30.0]

    metrics = tmp_path / "metrics.json"
    assert (
        main(["evaluate", str(checkpoint), store, "--timesteps", "all", "--out", str(metrics)]) == 0
    )
    table = capsys.readouterr().out
    assert "IoU" in table and "test, 3 patches" in table
    result = json.loads(metrics.read_text())
    assert list(result["early_season"]) == ["1", "2", "3", "4"]
    assert result["metrics"]["tp"] + result["metrics"]["fn"] == 3 * 12 * 12
    # A store prepared all train (--split train) has nothing to score under test: said so.
    train_only = make_store(tmp_path / "train-only.zarr", positive=["rice"], test=0)
    assert main(["evaluate", str(checkpoint), train_only]) == 2
    assert "no test patch to score (the store holds 10 train patches); --split train or all" in (
        capsys.readouterr().err
    )

    assert (
        main(
            [
                "finetune",
                str(checkpoint),
                store,
                "--strategy",
                "fte",
                "--bands",
                "VH",
                "VV",
                "--out",
                str(tmp_path / "fte"),
                *common,
            ]
        )
        == 0
    )
    tuned = read_metadata(tmp_path / "fte" / "model.safetensors")
    assert tuned.bands == ["VH", "VV"] and tuned.strategy == "fte"
    assert tuned.parent["region"] == "spain" and len(tuned.parent["sha256"]) == 64
    assert tuned.normalization["max"] == [0.0, 5.0]  # the target store's own statistics
    assert "train split of" in tuned.normalization_source


def test_cli_reports_bad_inputs_in_one_line(tmp_path, capsys):
    fake = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(1)}, fake)
    assert main(["evaluate", str(fake), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pickle-based" in err
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert (
        main(["train", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    )
    assert "learning_rate: unknown setting" in capsys.readouterr().err


def test_training_flags_are_the_config_fields(tmp_path):
    import argparse

    from sarcrop.cli.shared import add_training_options, config_from_args

    parser = argparse.ArgumentParser()
    add_training_options(parser)
    dests = {action.dest for action in parser._actions}
    assert set(TrainConfig.model_fields) - {"progress_bar"} <= dests  # --quiet sets that one
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("epochs: 7\npatience: 3\ndistributed: ddp\n")
    argv = ["--config", str(yaml_file), "--patience", "0", "--devices", "2", "--quiet"]
    config = config_from_args(parser.parse_args([*argv, "--threshold", "0.3"]))
    assert config.epochs == 7 and config.distributed == "ddp"  # from the YAML
    assert config.patience is None  # 0 switches early stopping off
    assert config.devices == 2 and config.threshold == 0.3 and config.progress_bar is False


def test_renamed_and_missing_settings_are_one_line_errors(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("strategy: ddp\n")
    argv = ["train", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train.yaml: strategy: renamed to 'distributed'" in err and err.count("\n") == 1
    store = make_store(tmp_path / "store.zarr")  # records no positive class
    assert main(["train", store, "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    assert "records no positive class" in capsys.readouterr().err


def test_a_crop_beside_classes_must_be_one_of_them(tmp_path):
    from types import SimpleNamespace

    from sarcrop.training.config import positive_classes

    store = SimpleNamespace(metadata=SimpleNamespace(positive=["rice"]), path=tmp_path)
    assert positive_classes(store, None) == ["rice"]  # the store's crop
    assert positive_classes(store, "maize") == ["maize"]
    classes = ("maize", "winter_cereal", "other")
    assert positive_classes(store, None, classes=classes) == []  # a crop-type map
    assert positive_classes(store, [""], classes=classes) == []  # a crop-type scenario's crop
    assert positive_classes(store, ["Winter Cereal"], classes=classes) == []
    with pytest.raises(ConfigError, match="positive potato is not among classes maize, "):
        positive_classes(store, ["maize", "potato"], classes=classes)


def test_a_store_prepared_again_with_other_labels_is_another_run(tmp_path):
    """A run records what its store holds, not where it lies: the same folder prepared again
    with other labels returned the old run's model as finished; a copy of the store elsewhere
    is the same run, and a run recorded before records held the store's contents resumes."""
    from sarcrop.training import train

    store = make_store(tmp_path / "s.zarr", n=5, positive=["rice"], test=1)
    config = quick(epochs=1, val_fraction=0, normalization="fixed")
    options = {"bands": ["VH"], "model_options": OPTIONS, "config": config}
    train(store, tmp_path / "run", **options)
    copied = shutil.copytree(store, tmp_path / "copied.zarr")
    assert train(copied, tmp_path / "run", **options).resumed
    opened = DatasetStore(store)
    images = np.stack([opened.read_image(i) for i in range(len(opened))])
    labels = opened.read_all_labels()
    shutil.rmtree(store)
    write_store(store, images, np.where(labels >= 0, 1 - labels, labels), opened.metadata)
    with pytest.raises(ConfigError, match="the store's patches, labels or split"):
        train(store, tmp_path / "run", **options)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    del record["fingerprint"]["store"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    assert train(store, tmp_path / "run", **options).resumed  # it cannot tell


def test_a_run_with_loader_workers_resumes_to_the_run_never_interrupted(tmp_path, monkeypatch):
    """Workers drawing the augmentations persisted over epochs, and a resumed run's workers
    took their first batches before Lightning set the epoch: resumed, such a run learnt other
    weights than the run never interrupted. Now it learns the same, and the number of workers,
    which changes the draws, is part of its fingerprint."""
    from lightning.pytorch.callbacks import Timer
    from safetensors.torch import load_file

    import sarcrop.training.api as api
    from sarcrop.training import train

    store = make_store(tmp_path / "s.zarr", n=6, positive=["rice"], test=1)
    config = quick(
        epochs=3, val_fraction=0, augment=True, level_jitter=1.0, date_dropout=0.3, num_workers=1
    )
    options = {"bands": ["VH"], "model_options": OPTIONS, "config": config}
    whole = train(store, tmp_path / "whole", **options)

    class TimeUp(Timer):  # up as the first epoch ends
        def on_train_epoch_end(self, trainer, *args, **kwargs) -> None:
            self._duration = 0.0
            super().on_train_epoch_end(trainer, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(api, "Timer", TimeUp)
        limited = {**options, "config": config.updated(max_time="00:01:00:00")}
        assert train(store, tmp_path / "resumed", **limited).out_of_time
    resumed = train(store, tmp_path / "resumed", **options)
    assert resumed.resumed and resumed.epochs == 3
    expected, found = load_file(whole.checkpoint), load_file(resumed.checkpoint)
    assert all(torch.equal(expected[name], found[name]) for name in expected)
    none = {**options, "config": config.updated(num_workers=0)}
    with pytest.raises(ConfigError, match="num_workers 1 -> None"):
        train(store, tmp_path / "resumed", **none)


def test_ri_is_the_architecture_trained_on_the_target_statistics(tmp_path):
    from sarcrop.training import finetune, save_checkpoint, train_ri

    store = make_store(tmp_path / "store.zarr", positive=["rice"])
    normalization = {"min": [-40.0], "max": [10.0], "bands": ["VH"], "method": "minmax"}
    pre = meta().model_copy(update={"normalization": normalization})
    checkpoint = save_checkpoint(tmp_path / "pre.safetensors", tiny_model(), pre)
    with pytest.raises(ConfigError, match="ri trains from scratch"):
        finetune(checkpoint, store, tmp_path / "x", strategy="ri", statistics="checkpoint")
    config = quick(epochs=1)
    bands = ["VH", "VV"]
    ri = finetune(checkpoint, store, tmp_path / "ri", strategy="ri", bands=bands, config=config)
    tuned = read_metadata(ri.checkpoint)
    assert tuned.strategy == "ri" and tuned.parent["bands"] == ["VH"]
    assert tuned.normalization["min"] == [-30.0, -25.0]  # the target's, not the checkpoint's
    direct = train_ri(store, tmp_path / "direct", model_options=OPTIONS, bands=bands, config=config)
    a, _ = load_checkpoint(ri.checkpoint)
    b, _ = load_checkpoint(direct.checkpoint)
    state = b.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in a.state_dict().items())


def test_a_config_file_that_is_not_text_is_a_one_line_error(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_bytes(b"epochs: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not a readable YAML file") as caught:
        TrainConfig.from_yaml(config)
    assert str(config) in str(caught.value) and "\n" not in str(caught.value)


def test_evaluate_scores_a_checkpoint_without_importing_lightning(tmp_path):
    """Scoring a model needs no trainer: ``sarcrop evaluate`` spent a tenth of its time
    importing Lightning. It scores the same as before, in a process that never imports it."""
    import subprocess
    import sys

    from sarcrop.training import evaluate, save_checkpoint

    store = make_store(tmp_path / "store.zarr", positive=["rice"])
    normalization = {"min": [-30.0], "max": [0.0], "bands": ["VH"], "method": "minmax"}
    checkpoint = save_checkpoint(
        tmp_path / "m.safetensors",
        tiny_model(),
        meta().model_copy(update={"normalization": normalization, "positive": ["rice"]}),
    )
    expected = evaluate(checkpoint, store)["metrics"]["iou"]
    argv = ["evaluate", str(checkpoint), store, "--out", str(tmp_path / "e.json")]
    code = f"import sys\nfrom sarcrop.cli import main\nmain({argv!r})\n"
    code += "print('lightning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "False"
    written = json.loads((tmp_path / "e.json").read_text())
    assert written["metrics"]["iou"] == pytest.approx(expected)
