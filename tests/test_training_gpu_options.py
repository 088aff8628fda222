"""Execution options of training meant for GPUs (precision, channels_last, compile, loader
workers), exercised on the CPU: they change how a run executes, never the checkpoint format."""

from __future__ import annotations

import argparse
import os

import torch

from sarcrop.cli.shared import add_training_options, config_from_args
from sarcrop.models import build_model
from sarcrop.training import TrainConfig, load_checkpoint, train
from sarcrop.training.api import _prepare_model, _restore_model, loader_workers
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
