"""The per-pixel TempCNN through the package: it trains, each transfer strategy trains only its
part, and ``predict`` maps it in any window with the same result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from sarcrop.data.prepare import prepare_region
from sarcrop.data.simulate import simulate_region
from sarcrop.evaluation.feature_forest import run_feature_forest
from sarcrop.options import BaselineOptions, TilingOptions, WindowOptions
from sarcrop.prediction import predict_map
from sarcrop.training import TrainConfig, finetune, train
from sarcrop.training.checkpoint import load_checkpoint

QUICK = TrainConfig(
    epochs=2, batch_size=4, val_fraction=0, patience=None, progress_bar=False, accelerator="cpu"
)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated region and its store of 16 px patches."""
    root = tmp_path_factory.mktemp("tempcnn")
    simulate_region("spain", root / "spain", seed=3, size=(48, 64))
    store = prepare_region(
        root / "spain", root / "spain.zarr", tiling=TilingOptions(patch_size=16), progress=False
    )
    return root / "spain", Path(store)


@pytest.fixture(scope="module")
def trained(region: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    config = QUICK.model_copy(update={"epochs": 20, "lr": 0.01})
    return train(region[1], out, model="tempcnn", config=config).checkpoint


def weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    """The parts (``encoder``, ``decoder.blocks``, ``decoder.head``) with a changed weight."""
    parts = set()
    for name, value in before.items():
        if name.endswith("num_batches_tracked") or torch.equal(value, after[name]):
            continue
        parts.add("decoder.head" if name.startswith("decoder.head") else name.split(".")[0])
        if name.startswith("decoder.blocks"):
            parts.add("decoder.blocks")
    return parts - {"decoder"}


@pytest.mark.parametrize(
    ("strategy", "last_k", "expected"),
    [
        ("ft", None, {"encoder", "decoder.blocks", "decoder.head"}),
        ("fte", None, {"encoder"}),
        ("ftd", None, {"decoder.blocks", "decoder.head"}),
        ("ftd", 1, {"decoder.blocks", "decoder.head"}),
        ("probe", None, {"decoder.head"}),
    ],
)
def test_each_strategy_trains_its_part_only(
    region, trained: Path, tmp_path: Path, strategy: str, last_k: int | None, expected: set[str]
) -> None:
    result = finetune(trained, region[1], tmp_path, strategy=strategy, last_k=last_k, config=QUICK)
    assert changed(weights(trained), weights(result.checkpoint)) == expected


def test_the_map_does_not_depend_on_the_window(region, trained: Path, tmp_path: Path) -> None:
    """Trained on 16 px patches, mapped in 256 px windows without overlap by default; windows
    of 24 px give the same map (within one step of the band's rounding)."""
    default = predict_map(trained, region[0], tmp_path / "default.tif", progress=False)
    small = predict_map(
        trained,
        region[0],
        tmp_path / "small.tif",
        windows=WindowOptions(window=24, overlap=0),
        progress=False,
    )
    with rasterio.open(default) as one, rasterio.open(small) as two:
        assert (one.tags()["WINDOW"], one.tags()["OVERLAP"]) == ("256", "0")
        assert (two.tags()["WINDOW"], two.tags()["OVERLAP"]) == ("24", "0")
        a, b = one.read(1).astype(int), two.read(1).astype(int)
    assert np.abs(a - b).max() <= 1
    assert np.mean(a == b) > 0.99
    assert len(np.unique(a)) > 10  # a map, not a constant


def test_a_forest_on_its_features_maps_as_it_does(region, trained: Path, tmp_path: Path) -> None:
    """Its features are per pixel, so a forest on them records no patch size and maps in
    256 px windows without overlap, as the network does."""
    options = BaselineOptions(n_estimators=5, early_season=False, seed=0)
    forest = run_feature_forest(trained, region[1], options, jobs=1)
    checkpoint = forest.save(tmp_path / "forest.safetensors")
    _, metadata = load_checkpoint(checkpoint)
    assert metadata.architecture == "feature_forest"
    assert "patch_size" not in metadata.training
    path = predict_map(checkpoint, region[0], tmp_path / "map.tif", progress=False)
    with rasterio.open(path) as written:
        assert (written.tags()["WINDOW"], written.tags()["OVERLAP"]) == ("256", "0")
        assert len(np.unique(written.read(1))) > 2


def unfolded(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model layer by layer, as written: batch norm after each convolution, not folded."""
    batch, steps, bands, height, width = x.shape
    plane = x.permute(0, 2, 1, 3, 4).reshape(batch, bands, steps, height * width)
    for conv, norm, relu, _ in model.encoder.layers:
        plane = relu(norm(conv(plane)))
    conv, norm, relu, _ = model.decoder.blocks[0]
    return model.decoder.head(relu(norm(conv(plane.reshape(batch, -1, height, width)))))


def test_folded_batch_norm_computes_the_layers_as_written() -> None:
    """In eval mode each batch norm is folded into its convolution (channels last): the same
    function, with and without autograd."""
    from sarcrop.models import build_model

    torch.manual_seed(0)
    model = build_model("tempcnn", 2, 6, widths=(8, 12), hidden=16, dropout=0.2)
    with torch.no_grad():  # batch-norm statistics that are not the identity
        model.train()
        for _ in range(3):
            model(torch.randn(2, 6, 2, 8, 8) * 3 + 1)
    model.eval()
    x = torch.randn(3, 6, 2, 9, 7)
    with torch.no_grad():
        expected = unfolded(model, x)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)  # with autograd
