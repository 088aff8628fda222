"""Execution options of training meant for GPUs (precision, channels_last, compile, loader
workers), exercised on the CPU: they change how a run executes, never the checkpoint format."""

from __future__ import annotations

import argparse
import os
import re

import pytest
import torch

from sarcrop.cli import main
from sarcrop.cli.shared import add_training_options, config_from_args
from sarcrop.errors import ConfigError
from sarcrop.models import build_model
from sarcrop.training import TrainConfig, load_checkpoint, train
from sarcrop.training.api import (
    _prepare_model,
    _restore_model,
    _trainer,
    check_hardware,
    loader_workers,
)
from sarcrop.training.config import validate_config
from test_training import STEPS, make_store, quick


def test_bf16_mixed_channels_last_fit_on_cpu_exports_a_plain_model(tmp_path):
    store = make_store(tmp_path / "store.zarr", n=6, positive=["rice"])
    config = quick(epochs=1, precision="bf16-mixed", channels_last=True, lr=1e-3)
    result = train(
        store,
        tmp_path / "run",
        model_options={"widths": [4, 8], "dropout": 0.0},
        config=config,
    )
    model, meta = load_checkpoint(result.checkpoint)
    assert meta.training["config"]["precision"] == "bf16-mixed"
    assert meta.training["config"]["channels_last"] is True
    assert all(p.is_contiguous() for p in model.state_dict().values())
    with torch.inference_mode():
        logits = model(torch.rand(1, STEPS, 2, 32, 32))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_prepare_and_restore_keep_parameter_names():
    model = build_model("recurrent_unet", 2, STEPS, widths=(4, 8))
    names = list(model.state_dict())
    config = TrainConfig(channels_last=True, compile=True)
    _prepare_model(model, config)
    assert list(model.state_dict()) == names  # checkpoints stay loadable
    assert model.first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model._compiled_call_impl is not None
    _restore_model(model, config)
    assert model._compiled_call_impl is None
    assert model.first_conv.weight.is_contiguous()


def test_loader_workers_default_by_device():
    assert loader_workers(TrainConfig(accelerator="cpu")) == 0
    assert loader_workers(TrainConfig(accelerator="cpu", num_workers=3)) == 3
    cores = len(os.sched_getaffinity(0))
    gpu = loader_workers(TrainConfig(accelerator="gpu"))
    assert 0 <= gpu <= 8 and (gpu >= 1 or cores < 2)


def test_execution_fields_are_flags_and_do_not_block_resume():
    parser = argparse.ArgumentParser()
    add_training_options(parser)
    args = parser.parse_args(["--channels-last", "--compile", "--num-workers", "2"])
    config = config_from_args(args)
    assert config.channels_last and config.compile and config.num_workers == 2
    assert config.fingerprint() == TrainConfig().fingerprint()


def test_hardware_settings_that_cannot_run_are_one_line_errors(tmp_path, capsys, monkeypatch):
    """A GPU asked for where there is none, an unknown distributed strategy and devices that
    are no count were tracebacks from Lightning, and precision 64 trained, crashed and left a
    last.ckpt that refused the run again; each is one line now, before any training."""
    for settings, problem in [
        ({"accelerator": "tpux"}, "accelerator: Input should be 'auto', 'cpu', 'gpu'"),
        ({"devices": "abc"}, "devices: devices must be a positive count, -1, 'auto' or device"),
        ({"precision": "64"}, "precision: Input should be '32-true'"),
        ({"precision": "bf16-true"}, "precision: Input should be"),
        ({"distributed": "ddp --x"}, "distributed: String should match pattern"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(problem)):
            validate_config(settings)
    assert validate_config({"precision": 16, "devices": "0,1"}).precision == "16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for settings, problem in [
        ({"accelerator": "gpu"}, "accelerator gpu: torch sees no GPU here"),
        ({"accelerator": "cpu", "distributed": "foo"}, "distributed 'foo' is not a Lightning"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            check_hardware(TrainConfig(**settings))
    with pytest.raises(ConfigError, match="hardware settings: `devices` selected with"):
        _trainer(tmp_path / "t", TrainConfig(accelerator="cpu", devices="0,1"), [], False)
    store = make_store(tmp_path / "store.zarr", n=5, positive=["rice"])
    argv = ["train", store, "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]
    model = ["--bands", "VH", "--model-options", '{"widths": [4, 8]}', "--val-fraction", "0"]
    for flags in (["--accelerator", "gpu"], ["--distributed", "foo"], ["--devices", "abc"]):
        assert main([*argv, *model, *flags]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("sarcrop train: error:") and "\n" not in error
    with pytest.raises(SystemExit):  # argparse lists the precisions
        main([*argv, "--precision", "64"])
    assert "invalid choice: '64'" in capsys.readouterr().err
    assert main([*argv, *model, "--accelerator", "cpu"]) == 0  # nothing was left behind
