"""Checkpoints: one safetensors file, exact round trip, never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch
from safetensors.torch import save_file

from sarcrop.errors import CheckpointError
from sarcrop.models import build_model
from sarcrop.training.checkpoint import (
    CheckpointMetadata,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)

OPTIONS = {"widths": [4, 8], "dropout": 0.0, "norm": "batch"}


def metadata(**changes) -> CheckpointMetadata:
    base = {
        "architecture": "recurrent_unet",
        "options": OPTIONS,
        "bands": ["VH", "VV"],
        "time_steps": 4,
        "season": {"start": "2021-05-01", "steps": 4, "days": 20},
        "normalization": {"min": [-30.0, -25.0], "max": [0.0, 5.0], "bands": ["VH", "VV"]},
        "positive": ["rice"],
        "region": "spain",
        "year": 2021,
        "strategy": "fte",
        "training": {"epochs": 3, "best_val_iou": 0.5},
    }
    base.update(changes)
    return CheckpointMetadata(**base)


def trained_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, 4, **OPTIONS)
    model.train()
    with torch.no_grad():  # move batch-norm statistics away from their defaults
        model(torch.randn(2, 4, 2, 16, 16))
        model.encoder.levels[0].carry.add_(0.25)
    return model.eval()


def test_round_trip_reproduces_outputs_exactly(tmp_path):
    model = trained_model()
    path = save_checkpoint(tmp_path / "model.safetensors", model, metadata())
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp leftovers
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    x = torch.rand(3, 4, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert meta.bands == ["VH", "VV"] and meta.region == "spain" and meta.strategy == "fte"
    assert meta.training["best_val_iou"] == 0.5
    assert read_metadata(path) == meta


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["pickle", "torch_save"])
def test_pickle_files_are_refused_without_executing_them(tmp_path, kind):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.safetensors"
    payload = {"state_dict": _Exploit(marker)}
    if kind == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="pickle-based") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_other_files_are_refused(tmp_path):
    random_file = tmp_path / "random.safetensors"
    random_file.write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_checkpoint(random_file)

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="without sarcrop metadata"):
        load_checkpoint(plain)

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


def test_invalid_metadata_and_mismatched_weights(tmp_path):
    with pytest.raises(ValueError, match="normalization"):
        metadata(normalization={"min": [0.0], "max": [1.0]})
    # Corrupted values (a number or text where a list of numbers belongs) are the same error.
    for broken in (48, [0.0, "x"], "ab"):
        with pytest.raises(ValueError, match=r"normalization\.min needs one number per band"):
            metadata(normalization={"min": broken, "max": [1.0, 2.0]})
    with pytest.raises(ValueError, match="season"):
        metadata(time_steps=8)

    bad = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad), metadata={"sarcrop": '{"architecture": "x"}'})
    with pytest.raises(CheckpointError, match="invalid sarcrop metadata"):
        load_checkpoint(bad)

    other = tmp_path / "other.safetensors"
    save_checkpoint(other, trained_model(), metadata(options={**OPTIONS, "widths": [4, 16]}))
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(other)


def tampered(tmp_path, name: str, **changes) -> str:
    """A checkpoint of :func:`trained_model` whose metadata JSON has ``changes`` (keys
    ``a__b`` set ``a.b``; ``None`` removes the key), written without the checks of
    :func:`save_checkpoint`, as a damaged or hand-edited file would be."""
    data = metadata().model_dump()
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = data
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    tensors = {k: v.contiguous() for k, v in trained_model().state_dict().items()}
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={"sarcrop": json.dumps(data), "format": "pt"})
    return str(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"normalization__min": [0.0, 5.0], "normalization__max": [-30.0, -25.0]}, "min below"),
        ({"normalization__max": [-30.0, 5.0]}, "band VH is min -30.0 max -30.0"),
        ({"normalization__min": [float("nan"), -25.0]}, "finite min below its max"),
        ({"normalization__max": [0.0, float("inf")]}, "band VV"),
        ({"normalization__bands": None}, "normalization names no bands"),
        ({"normalization__bands": ["VV", "VH"]}, "are not the bands"),
        ({"normalization__method": 3}, "normalization.method"),
        ({"bands": ["VH", "vh"], "normalization__bands": ["VH", "VH"]}, "name VH more than once"),
    ],
)
def test_normalization_that_would_scale_the_inputs_wrongly_is_refused(tmp_path, changes, message):
    """Statistics that map a band backwards or to NaN, that name no bands, or a band read twice
    gave maps of nothing (IoU 0) or of the wrong inputs, with no error."""
    path = tampered(tmp_path, "bad", **changes)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert text.startswith(f"{path}: invalid sarcrop metadata: ") and "\n" not in text
    assert "Value error" not in text
    # Percentile and fixed ranges are min/max ranges like any other.
    for method in ("percentile 1-99", "fixed"):
        load_checkpoint(tampered(tmp_path, "ok", normalization__method=method))


def test_several_outputs_without_their_classes_are_refused(tmp_path):
    """A crop-type model's file without target_classes loaded as a one-crop model read from
    channel 0 (IoU 0.03 for wheat where the model scores 0.87); a reconstruction, whose
    outputs are the composites it restores, keeps its channels."""
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, 4, **{**OPTIONS, "out_channels": 3})
    options = {**OPTIONS, "out_channels": 3}
    with pytest.raises(ValueError, match="out_channels is 3 without target_classes"):
        metadata(options=options)
    crop_types = metadata(options=options, target_classes=["rice", "maize", "other"])
    data = crop_types.model_dump() | {"target_classes": None}
    path = tmp_path / "types.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"sarcrop": json.dumps(data), "format": "pt"})
    with pytest.raises(CheckpointError, match="a model of one crop has one output") as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)

    reconstruction = metadata(options=options, training={"objective": "reconstruct"})
    loaded, meta = load_checkpoint(
        save_checkpoint(tmp_path / "ssl.safetensors", model, reconstruction)
    )
    assert meta.options["out_channels"] == 3 and loaded(torch.rand(1, 4, 2, 8, 8)).shape[1] == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [("encoder.levels.0.block.0.weight", float("nan")), ("decoder.head.bias", float("inf"))],
)
def test_weights_that_are_not_finite_are_refused(tmp_path, name, value):
    """NaN weights loaded, and the CPU's fused convolution + ReLU turned the NaN into 0s: a
    map of nothing, with no sign why."""
    model = trained_model()
    path = save_checkpoint(tmp_path / "model.safetensors", model, metadata())
    tensors = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(path), metadata={"sarcrop": metadata().to_json(), "format": "pt"})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: weights hold NaN or infinite values: {name}"
    # Nor are they written: a run whose loss diverged is told so where it ends.
    model.load_state_dict(tensors)
    with pytest.raises(CheckpointError, match=rf"\({re.escape(name)}\), so the model was not"):
        save_checkpoint(tmp_path / "diverged.safetensors", model, metadata())
    assert not (tmp_path / "diverged.safetensors").exists()
