"""Crop-type maps from ``predict``: the class band with its colour table and class names, one
probability band per class (or the top k), normalised entropy and spread, and the same
blending, resume and Dask equivalence as binary maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from sarcrop.cli import main as cli_main
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.models import build_model
from sarcrop.options import ExecutionOptions, MapOptions, WindowOptions
from sarcrop.prediction import ModelSpec, WindowLayout, predict_map
from sarcrop.prediction.engine import BlockResult
from sarcrop.prediction.predict import block_path, work_dir
from sarcrop.prediction.writer import normalized_entropy, sidecar_path
from sarcrop.training.checkpoint import CheckpointMetadata, save_checkpoint
from test_predict import NORM, SEASON, local_spec, read_map, write_scenes
from test_predict_bands import save_seeded_checkpoint, shifted_spec

CLASSES = ["maize", "winter wheat", "grassland"]
# 4 × 4 windows in blocks of 2 (8 blocks): block borders cross the area in both directions.
WINDOWS = WindowOptions(window=64, overlap=16, batch_size=3, block_windows=2, block_rows=2)
OPTIONS = {"windows": WINDOWS, "progress": False}
BANDS = MapOptions(uncertainty=True)


def save_crop_type_checkpoint(path: Path, seed: int, classes: list[str] = CLASSES) -> Path:
    """A tiny recurrent U-Net with one output per class and random weights.

    Group norm keeps the random features varied in space and the scaled head turns them into
    confident, varied classes, as a trained model would give.
    """
    torch.manual_seed(seed)
    options = {"widths": [4, 8], "dropout": 0.0, "norm": "group", "out_channels": len(classes)}
    model = build_model("recurrent_unet", 2, SEASON.steps, **options)  # type: ignore[arg-type]
    with torch.no_grad():
        model.decoder.head.weight.mul_(4.0)
    meta = CheckpointMetadata(
        architecture="recurrent_unet",
        options=options,
        bands=["VH", "VV"],
        time_steps=SEASON.steps,
        season=SEASON.to_dict(),
        normalization={"min": list(NORM.min), "max": list(NORM.max), "bands": list(NORM.bands)},
        region="test",
        target_classes=classes,
    )
    return save_checkpoint(path, model, meta)


class TwoLogits(nn.Module):
    """Logits ``(0, z)`` of a binary model's ``z``: softmax gives ``(1 - σ(z), σ(z))``."""

    def __init__(self, binary: nn.Module) -> None:
        super().__init__()
        self.binary = binary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.binary(x)
        return torch.cat([torch.zeros_like(z), z], dim=1)


def two_class(spec: ModelSpec) -> ModelSpec:
    return ModelSpec(
        TwoLogits(spec.model), spec.bands, spec.season, NORM, classes=("other", "positive")
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Scenes, a crop-type checkpoint and its single-process map with every band."""
    root = tmp_path_factory.mktemp("classes")
    scenes = write_scenes(root / "scenes", 200, 180, seed=7)
    ckpt = save_crop_type_checkpoint(root / "crops.safetensors", 0)
    single = predict_map(ckpt, scenes, root / "single.tif", output=BANDS, **OPTIONS)
    return scenes, ckpt, single


def test_crop_type_map_bands_colours_and_names(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    scenes, ckpt, single = inputs
    with rasterio.open(single) as src:
        assert src.descriptions == (
            "class",
            "probability_maize",
            "probability_winter wheat",
            "probability_grassland",
            "uncertainty",
        )
        assert src.scales == (1.0, 1 / 250, 1 / 250, 1 / 250, 1 / 250)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        tags = src.tags()
        assert json.loads(tags["CLASS_NAMES"]) == CLASSES and "THRESHOLD" not in tags
        assert src.tags(1)["VALUES"].startswith("0 = maize, 1 = winter wheat, 2 = grassland")
        assert src.tags(3)["CLASS"] == "winter wheat" and src.tags(3)["CLASS_INDEX"] == "1"
        colors = src.colormap(1)  # from the GDAL sidecar: GeoTIFF embeds one band's only
        got = src.read()
    assert colors[255][3] == 0
    listed = ["#{:02x}{:02x}{:02x}".format(*colors[k][:3]) for k in range(3)]
    assert listed == json.loads(tags["CLASS_COLORS"]) and len(set(listed)) == 3
    assert all(colors[k][3] == 255 for k in range(3))
    assert "<Category>winter wheat</Category>" in sidecar_path(single).read_text()

    label, prob, unc = got[0], got[1:4].astype(int), got[4]
    data = label != 255
    assert data.any() and (got[:, ~data] == 255).all()
    assert set(np.unique(label[data])) == {0, 1, 2}  # the model maps every class somewhere
    chosen = np.take_along_axis(prob, np.where(data, label, 0)[None].astype(int), axis=0)[0]
    assert (chosen[data] >= prob.max(axis=0)[data]).all()  # the most probable class
    assert np.abs(prob.sum(axis=0)[data] - 250).max() <= 2  # each band rounds by ≤ 0.5
    expected = 250 * normalized_entropy(prob[:, data] / 250)
    diff = np.abs(unc[data] - expected)
    assert diff.max() <= 6 and diff.mean() < 0.5, (diff.max(), diff.mean())
    assert unc[data].min() < 50 and unc[data].max() > 200  # sure and unsure pixels

    only = MapOptions(probability=False)
    alone = predict_map(ckpt, scenes, tmp_path / "alone.tif", output=only, **OPTIONS)
    sidecar_path(alone).unlink()  # a class band alone carries its colour table itself
    with rasterio.open(alone) as src:
        assert src.count == 1 and src.colormap(1)[0] == colors[0]
        np.testing.assert_array_equal(src.read(1), label)


def test_two_classes_give_the_binary_map(inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    scenes = inputs[0]
    members = [shifted_spec(s) for s in (-1.0, 1.5)]
    stale = sidecar_path(tmp_path / "b.tif")
    stale.write_text("<PAMDataset/>")  # left by an earlier crop-type map of that name
    binary = read_map(predict_map(members, scenes, tmp_path / "b.tif", output=BANDS, **OPTIONS))
    assert not stale.exists()
    pairs = [two_class(m) for m in members]
    crop = read_map(predict_map(pairs, scenes, tmp_path / "c.tif", output=BANDS, **OPTIONS))
    # binary: probability, class, uncertainty, spread; crop type: class, other, positive, ...
    data = binary[0] != 255
    np.testing.assert_array_equal(crop[:, ~data], 255)
    for got, want in ((crop[2], binary[0]), (crop[3], binary[2]), (crop[4], binary[3])):
        diff = np.abs(got[data].astype(int) - want[data])  # softmax and sigmoid round apart
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert (crop[0][data] == binary[1][data]).mean() > 0.99
    assert binary[3][data].max() > 20  # the members disagree: the spread is tested


def test_a_crop_type_model_read_for_one_class_gives_the_binary_map(
    inputs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``positive`` maps grassland against the rest: its probability is the crop-type map's
    grassland band (softmax and the merged log-odds round apart by at most one step)."""
    scenes, ckpt, single = inputs
    grass = MapOptions(positive="grassland")
    assert grass.positive == ("grassland",)
    binary = read_map(predict_map(ckpt, scenes, tmp_path / "g.tif", output=grass, **OPTIONS))
    crop = read_map(single)
    data = binary[0] != 255
    assert data.any() and (binary[:, ~data] == 255).all()
    diff = np.abs(binary[0][data].astype(int) - crop[3][data])
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    with rasterio.open(tmp_path / "g.tif") as src:
        assert "THRESHOLD" in src.tags() and "CLASS_NAMES" not in src.tags()
    # the same from the command line, and a class the model does not map is refused
    args = ["predict", str(ckpt), "--images", str(scenes), "--quiet"]
    windows = ["--window", "64", "--overlap", "16", "--batch-size", "3", "--block-windows", "2"]
    windows += ["--block-rows", "2"]
    out = tmp_path / "cli.tif"
    assert cli_main([*args, "--out", str(out), "--positive", "grassland", *windows]) == 0
    np.testing.assert_array_equal(read_map(out)[0], binary[0])
    refused = tmp_path / "refused.tif"
    assert cli_main([*args, "--out", str(refused), "--positive", "potato"]) != 0
    assert "no class potato" in capsys.readouterr().err and not refused.exists()
    assert ModelSpec.from_checkpoint(ckpt).one_crop(["maize"]).fingerprint() != (
        ModelSpec.from_checkpoint(ckpt).one_crop(["grassland"]).fingerprint()
    )


def test_top_k_bands(
    inputs: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenes, ckpt, single = inputs
    out = tmp_path / "top2.tif"
    args = ["predict", str(ckpt), "--images", str(scenes), "--out", str(out), "--top-k", "2"]
    args += ["--window", "64", "--overlap", "16", "--batch-size", "3", "--block-windows", "2"]
    args += ["--block-rows", "2"]
    assert cli_main([*args, "--quiet"]) == 0
    with rasterio.open(single) as src:
        colors = src.colormap(1)
    with rasterio.open(out) as src:
        assert src.descriptions == ("class", "class_top2", "probability_top1", "probability_top2")
        assert src.tags(2)["RANK"] == "2" and src.colormap(1) == colors
        top = src.read()
    full = read_map(single)
    np.testing.assert_array_equal(top[0], full[0])
    prob = full[1:4]
    data = full[0] != 255
    ranked = -np.sort(-prob.astype(int), axis=0)  # levels, largest first
    np.testing.assert_array_equal(top[2][data], ranked[0][data])
    np.testing.assert_array_equal(top[3][data], ranked[1][data])
    clear = data & (ranked[0] > ranked[1]) & (ranked[1] > ranked[2])
    second = np.argsort(-prob.astype(int), axis=0)[1]
    np.testing.assert_array_equal(top[1][clear], second[clear])
    assert (top[1][data] != top[0][data]).all()

    for bad, message in ((4, "more than the model's 3 classes"), (None, "binary")):
        model = ckpt if bad else local_spec()
        with pytest.raises(SarcropError, match=message) as info:
            predict_map(model, scenes, tmp_path / "x.tif", output=MapOptions(top_k=bad or 2))
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="top_k needs"):
        MapOptions(top_k=2, classes=False)
    with pytest.raises(SarcropError, match="top_k ranks a crop-type map's classes, and positive"):
        both = MapOptions(top_k=2, positive=["maize"])
        predict_map(ckpt, scenes, tmp_path / "x.tif", output=both)


def test_models_must_share_classes(inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    scenes, ckpt, _ = inputs
    other = save_crop_type_checkpoint(tmp_path / "two.safetensors", 1, ["maize", "other"])
    binary = save_seeded_checkpoint(tmp_path / "binary.safetensors", 1)
    for models in ([ckpt, other], [ckpt, binary]):
        with pytest.raises(SarcropError, match="classes") as info:
            predict_map(models, scenes, tmp_path / "m.tif", **OPTIONS)
        assert "\n" not in str(info.value)
    wrong = ModelSpec(local_spec().model, ("VH", "VV"), SEASON, NORM, classes=("a", "b"))
    with pytest.raises(SarcropError, match="1 output channels, its metadata expects 2"):
        predict_map(wrong, scenes, tmp_path / "w.tif", **OPTIONS)


def test_resumed_on_dask_matches_single_process(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    scenes, ckpt, single = inputs
    out = tmp_path / "mixed.tif"

    def interrupt(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(ckpt, scenes, out, output=BANDS, on_block=interrupt, **OPTIONS)
    sums = BlockResult.load(block_path(work_dir(out), 0)).sums
    assert sums.shape == (1, 3, 112, 112)  # one sum per model and class (2 × 2 windows of 64)
    done: list[int] = []
    workers = ExecutionOptions(workers=2)  # a local Dask cluster of two processes
    predict_map(ckpt, scenes, out, execution=workers, output=BANDS, on_block=done.append, **OPTIONS)
    assert sorted(done) == list(range(2, WindowLayout(200, 180, 64, 16, 2, 2).n_blocks))
    np.testing.assert_array_equal(read_map(out), read_map(single))
    assert sidecar_path(out).read_text() == sidecar_path(single).read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_crop_type_map_matches_the_cpu_map(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    scenes, ckpt, _ = inputs
    maps = [
        read_map(
            predict_map(
                ckpt,
                scenes,
                tmp_path / f"{device}.tif",
                execution=ExecutionOptions(device=device),  # type: ignore[arg-type]
                output=BANDS,
                **OPTIONS,
            )
        )
        for device in ("cpu", "cuda")
    ]
    cpu, cuda = maps
    np.testing.assert_array_equal(cuda == 255, cpu == 255)
    data = cpu[0] != 255
    assert np.abs(cuda[1:4][:, data].astype(int) - cpu[1:4][:, data]).max() <= 1
    assert (cuda[0][data] == cpu[0][data]).mean() > 0.99
