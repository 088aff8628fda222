"""Extra map bands and execution options of ``predict``: uncertainty, several models averaged
(mean probability and spread), device and precision, and the one-block read-ahead."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import ColorInterp

from sarcrop.cli import main as cli_main
from sarcrop.data.normalization import Normalization
from sarcrop.data.reader import open_scenes
from sarcrop.data.season import Season
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.models import build_model
from sarcrop.options import ExecutionOptions, MapOptions, WindowOptions, available_cores
from sarcrop.prediction import (
    BlockCompute,
    ModelSpec,
    WindowLayout,
    predict_block,
    predict_map,
)
from sarcrop.prediction.engine import (
    BlockResult,
    batch_for_memory,
    placed,
    restrict,
    window_memory,
)
from sarcrop.prediction.predict import block_path, window_sizes, work_dir
from sarcrop.prediction.writer import binary_entropy
from sarcrop.training.checkpoint import CheckpointMetadata, save_checkpoint
from test_predict import NORM, SEASON, local_spec, read_map, write_scenes

# 4 × 4 windows in blocks of 2 (8 blocks): block borders cross the area in both directions.
WINDOWS = WindowOptions(window=64, overlap=16, batch_size=3, block_windows=2, block_rows=2)
OPTIONS = {"windows": WINDOWS, "progress": False}
BANDS = MapOptions(uncertainty=True)


def save_seeded_checkpoint(path: Path, seed: int, normalization: Normalization = NORM) -> Path:
    """A tiny recurrent U-Net checkpoint; the seed stands for one training run of several."""
    torch.manual_seed(seed)
    model = build_model("recurrent_unet", 2, SEASON.steps, widths=(4, 8), dropout=0.0)
    meta = CheckpointMetadata(
        architecture="recurrent_unet",
        options={"widths": [4, 8], "dropout": 0.0},
        bands=["VH", "VV"],
        time_steps=SEASON.steps,
        season=SEASON.to_dict(),
        normalization={
            "min": list(normalization.min),
            "max": list(normalization.max),
            "bands": ["VH", "VV"],
        },
        region="test",
    )
    return save_checkpoint(path, model, meta)


def shifted_spec(shift: float) -> ModelSpec:
    """The local test model with its logits shifted: another member of an ensemble."""
    spec = local_spec()
    with torch.no_grad():
        spec.model.conv2.bias.add_(shift)
    return spec


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    """Scenes, two checkpoints and their single-process averaged map with every band."""
    root = tmp_path_factory.mktemp("bands")
    scenes = write_scenes(root / "scenes", 200, 180, seed=7)
    ckpts = [save_seeded_checkpoint(root / f"seed{s}.safetensors", s) for s in (0, 1)]
    single = predict_map(ckpts, scenes, root / "single.tif", output=BANDS, **OPTIONS)
    return scenes, ckpts, single


# -- defaults and the uncertainty band ---------------------------------------------------------


def test_default_bands_unchanged_and_uncertainty_is_binary_entropy(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    scenes = inputs[0]
    plain = predict_map(local_spec(), scenes, tmp_path / "plain.tif", **OPTIONS)
    extra = predict_map(local_spec(), scenes, tmp_path / "unc.tif", output=BANDS, **OPTIONS)
    with rasterio.open(plain) as a, rasterio.open(extra) as b:
        assert a.descriptions == ("probability", "class")
        assert b.descriptions == ("probability", "class", "uncertainty")
        assert b.scales == (1 / 250, 1.0, 1 / 250)
        assert "entropy" in b.tags(3)["VALUES"]
        assert a.tags()["MODELS"] == "1" and a.tags()["PRECISION"] == "fp32"
        # Three bytes a pixel are no RGB picture: GDAL would draw them so, and warp a fourth
        # band as transparency.
        assert b.colorinterp == (ColorInterp.gray, ColorInterp.undefined, ColorInterp.undefined)
        base, more = a.read(), b.read()
    np.testing.assert_array_equal(more[:2], base)  # a merge-only band: the others unchanged
    prob, unc = base[0].astype(float), more[2]
    np.testing.assert_array_equal(unc == 255, prob == 255)
    data = prob != 255
    assert len(np.unique(prob[data])) > 50  # the model spans many probability levels
    # H of the unrounded p lies between H at the ends of its rounding interval (or 1 at 0.5).
    lo, hi = np.clip((prob - 0.5) / 250, 0, 1), np.clip((prob + 0.5) / 250, 0, 1)
    h_lo, h_hi = binary_entropy(lo), binary_entropy(hi)
    top = np.where((lo <= 0.5) & (hi >= 0.5), 1.0, np.maximum(h_lo, h_hi))
    low = np.minimum(h_lo, h_hi)
    assert (unc[data] >= np.floor(250 * low[data])).all()
    assert (unc[data] <= np.ceil(250 * top[data])).all()
    assert unc[data].max() >= 249 and (unc[prob == 250] == 0).all()


# -- several models ------------------------------------------------------------------------------


def test_models_are_averaged_with_their_spread(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    scenes = inputs[0]
    members = [shifted_spec(s) for s in (-1.0, 0.0, 1.5)]
    ensemble = predict_map(members, scenes, tmp_path / "ens.tif", **OPTIONS)
    alone = [
        read_map(predict_map(m, scenes, tmp_path / f"m{i}.tif", **OPTIONS))[0].astype(float)
        for i, m in enumerate(members)
    ]
    with rasterio.open(ensemble) as src:
        assert src.descriptions == ("probability", "class", "spread")
        assert src.tags()["MODELS"] == "3" and src.tags(3)["MODELS"] == "3"
        got = src.read().astype(float)
    data = got[0] != 255
    assert (got[:, ~data] == 255).all() and data.any()
    levels = np.stack(alone)[:, data]  # each member's own map, rounded to levels
    assert np.abs(got[0][data] - levels.mean(axis=0)).max() <= 1
    assert np.abs(got[2][data] - levels.std(axis=0)).max() <= 1
    assert got[2][data].max() > 20  # the shifted members disagree somewhere
    assert ((got[0][data] >= 125) == (got[1][data] == 1)).mean() > 0.99

    twice = predict_map([members[1], members[1]], scenes, tmp_path / "twice.tif", **OPTIONS)
    same = read_map(twice)
    np.testing.assert_array_equal(same[:2], read_map(tmp_path / "m1.tif"))
    assert (same[2][data] == 0).all()


def test_models_must_share_inputs(
    inputs: tuple[Path, list[Path], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenes, ckpts, _ = inputs
    other_season = ModelSpec(
        local_spec().model,
        ("VH", "VV"),
        Season(dt.date(2021, 4, 1), steps=4, days=20),
        NORM,
        checkpoint="/models/april.safetensors",
    )
    with pytest.raises(SarcropError, match=r"april\.safetensors: season") as info:
        predict_map([local_spec(), other_season], scenes, tmp_path / "m.tif", **OPTIONS)
    assert "\n" not in str(info.value)
    odd = save_seeded_checkpoint(
        tmp_path / "odd-norm.safetensors", 3, Normalization((-30.0, -20.0), (0.0, 5.0))
    )
    out = tmp_path / "cli.tif"
    args = ["predict", "--models", str(ckpts[0]), str(odd), "--images", str(scenes)]
    assert cli_main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "odd-norm.safetensors" in err and "normal" in err, err
    assert not out.exists() and not work_dir(out).exists()
    # One-crop models of different crops: averaged, the map would be of neither.
    rice, maize = (
        dataclasses.replace(local_spec(), positive=(crop,), checkpoint=f"/models/{crop}.st")
        for crop in ("Rice", "maize")
    )
    with pytest.raises(
        SarcropError, match=r"maize\.st: maps maize, and /models/Rice\.st maps Rice"
    ):
        predict_map([rice, maize], scenes, tmp_path / "two.tif", **OPTIONS)
    same = dataclasses.replace(maize, positive=("Maize",))  # one crop, spelt otherwise
    predict_map([maize, same], scenes, tmp_path / "one.tif", **OPTIONS)


def test_cli_models_and_new_options(
    inputs: tuple[Path, list[Path], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenes, ckpts, single = inputs
    out = tmp_path / "cli.tif"
    args = ["predict", "--models", *map(str, ckpts), "--images", str(scenes), "--out", str(out)]
    args += ["--window", "64", "--overlap", "16", "--batch-size", "3", "--block-windows", "2"]
    args += ["--block-rows", "2"]
    assert cli_main([*args, "--uncertainty", "--device", "cpu", "--quiet"]) == 0
    np.testing.assert_array_equal(read_map(out), read_map(single))
    with rasterio.open(out) as src:
        assert src.tags()["MODEL_CHECKPOINT"] == "seed0.safetensors,seed1.safetensors"
        assert src.tags()["DEVICE"] == "cpu"
    assert cli_main(["predict", "--images", str(scenes), "--out", str(out)]) == 2
    assert "--models" in capsys.readouterr().err
    for bad in (
        ["--engine", "onnx", "--device", "cuda"],
        ["--engine", "onnx", "--precision", "bf16"],
    ):
        assert cli_main([*args, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "onnx engine" in err, err


def test_resumed_run_of_several_models_matches_and_model_list_is_hashed(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    scenes, ckpts, single = inputs
    out = tmp_path / "resumed.tif"

    def interrupt(index: int) -> None:
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(ckpts, scenes, out, output=BANDS, on_block=interrupt, **OPTIONS)
    with np.load(block_path(work_dir(out), 0)) as block:
        assert block["sums"].shape == (2, 112, 112)  # one sum per model (2 × 2 windows of 64)
    computed: list[int] = []
    predict_map(ckpts[:1], scenes, out, output=BANDS, on_block=computed.append, **OPTIONS)
    assert computed == list(range(4))  # other models: started over
    computed.clear()
    with pytest.raises(KeyboardInterrupt):
        predict_map(ckpts, scenes, out, output=BANDS, on_block=interrupt, **OPTIONS)
    predict_map(ckpts, scenes, out, output=BANDS, on_block=computed.append, **OPTIONS)
    assert computed[0] == 3 and 0 not in computed
    np.testing.assert_array_equal(read_map(out), read_map(single))


def test_dask_resuming_several_models_matches_single_process(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    scenes, ckpts, single = inputs
    out = tmp_path / "mixed.tif"

    def interrupt(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(ckpts, scenes, out, output=BANDS, on_block=interrupt, **OPTIONS)
    done: list[int] = []
    workers = ExecutionOptions(workers=2)  # a local Dask cluster of two processes
    predict_map(
        ckpts, scenes, out, execution=workers, output=BANDS, on_block=done.append, **OPTIONS
    )
    assert sorted(done) == list(range(2, WindowLayout(200, 180, 64, 16, 2, 2).n_blocks))
    np.testing.assert_array_equal(read_map(out), read_map(single))


# -- read-ahead, device and precision ------------------------------------------------------------


@pytest.mark.parametrize("readers", [None, 3])
def test_read_ahead_gives_the_sequential_blocks(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path, readers: int | None
) -> None:
    scenes = inputs[0]
    out = tmp_path / "m.tif"
    saved: dict[int, np.ndarray] = {}
    order: list[int] = []

    def keep(index: int) -> None:
        order.append(index)
        saved[index] = BlockResult.load(block_path(work_dir(out), index)).sums

    spec = local_spec()
    execution = ExecutionOptions(device="cpu", readers=readers)
    assert execution.read_threads == (readers or 1)  # one reader beside a model on the cpu
    assert ExecutionOptions(device="cuda").read_threads == min(4, available_cores())
    predict_map(spec, scenes, out, on_block=keep, execution=execution, **OPTIONS)
    layout = WindowLayout(200, 180, 64, 16, 2, 2)
    assert order == list(range(layout.n_blocks))
    stack = restrict(open_scenes(scenes, bands=["VH", "VV"]), SEASON, 4)
    for index in order:  # one block after the other, each read right before its computation
        alone = predict_block(spec, stack, layout, index, BlockCompute(timesteps=4, batch_size=3))
        assert alone.sums.tobytes() == saved[index].tobytes(), index


def test_precision_is_recorded_hashed_and_close_to_fp32(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    scenes = inputs[0]
    out = tmp_path / "bf16.tif"
    fp32 = read_map(predict_map(local_spec(), scenes, tmp_path / "fp32.tif", **OPTIONS))

    def interrupt(index: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(local_spec(), scenes, out, on_block=interrupt, **OPTIONS)
    computed: list[int] = []
    bf16 = ExecutionOptions(precision="bf16", device="cpu")
    predict_map(local_spec(), scenes, out, execution=bf16, on_block=computed.append, **OPTIONS)
    assert computed[0] == 0  # fp32 blocks are not mixed into a bf16 map
    with rasterio.open(out) as src:
        assert (src.tags()["PRECISION"], src.tags()["DEVICE"]) == ("bf16", "cpu")
        half = src.read()
    np.testing.assert_array_equal(half == 255, fp32 == 255)
    data = fp32[0] != 255
    diff = np.abs(half[0][data].astype(int) - fp32[0][data])
    assert diff.max() <= 6 and diff.mean() < 1, (diff.max(), diff.mean())
    assert (diff > 0).any()  # bf16 did run: it rounds differently


def test_cuda_without_a_gpu_is_a_one_line_error(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(SarcropError, match="no CUDA GPU") as info:
        predict_map(
            local_spec(),
            inputs[0],
            tmp_path / "m.tif",
            execution=ExecutionOptions(device="cuda"),
            **OPTIONS,
        )
    assert "\n" not in str(info.value) and not (tmp_path / "m.tif").exists()
    assert ExecutionOptions().resolved_device == "cpu"
    with pytest.raises(ConfigError, match="onnx engine"):
        ExecutionOptions(engine="onnx", device="cuda")


def test_window_sizes_default_to_4_and_8_on_the_cpu_and_a_block_holds_a_batch() -> None:
    spec = [local_spec()]
    cpu = ExecutionOptions(device="cpu")

    def sizes(execution: ExecutionOptions = cpu, **given: int) -> tuple[int | None, ...]:
        windows = window_sizes(WindowOptions(**given), spec, execution)
        return windows.batch_size, windows.block_rows, windows.block_windows

    assert sizes() == (4, 1, 8)  # 256 px windows: one window row of 8 per block
    # Smaller windows: as many pixels per batch as 4 windows of 256 px, and blocks as high as
    # 256 px (rows), as wide as a batch fills (columns).
    assert sizes(window=64) == (64, 5, 12)  # 5 rows of 64 px, stride 48: 256 px
    assert sizes(window=16) == (1024, 21, 48)  # 21 rows of 16 px, stride 12: 256 px
    assert sizes(window=160) == (4, 1, 8)
    assert sizes(window=64, block_rows=3) == (64, 3, 21)
    assert sizes(batch_size=20) == (20, 1, 20)
    assert sizes(batch_size=3, block_windows=2) == (3, 1, 2)
    workers = ExecutionOptions(device="cuda", workers=2)  # sized on the client: no GPU there
    assert sizes(workers) == (4, 1, 8)
    gib = 2**30
    assert batch_for_memory(10 * gib, gib // 4, 64) == 20  # half the free memory
    assert batch_for_memory(100 * gib, gib // 4, 64) == 64
    assert batch_for_memory(gib // 10, gib, 64) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batch_is_sized_from_free_memory(inputs: tuple[Path, list[Path], Path]) -> None:
    spec = local_spec()
    windows = WindowOptions(window=64)
    sized = window_sizes(windows, [spec], ExecutionOptions(device="cuda"))
    per_window = window_memory_on_cuda(spec)
    free, _ = torch.cuda.mem_get_info()
    # up to 64 windows of 256 px, or as many pixels in 64 px windows
    assert sized.batch_size == batch_for_memory(free, per_window, 64 * 16)
    assert sized.block_rows == 5 and sized.block_windows == max(8, sized.batch_size // 5)
    assert next(spec.model.parameters()).device.type == "cpu"


def window_memory_on_cuda(spec: ModelSpec) -> int:
    with placed([spec], "cuda"):
        return window_memory(spec, 64, "fp32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_map_matches_the_cpu_map(
    inputs: tuple[Path, list[Path], Path], tmp_path: Path, precision: str
) -> None:
    scenes = inputs[0]
    spec = local_spec()
    cpu = read_map(predict_map(spec, scenes, tmp_path / "cpu.tif", **OPTIONS))
    cuda = ExecutionOptions(device="cuda", precision=precision)  # type: ignore[arg-type]
    out = predict_map(spec, scenes, tmp_path / "cuda.tif", execution=cuda, **OPTIONS)
    assert next(spec.model.parameters()).device.type == "cpu"  # the caller's model is left
    got = read_map(out)
    np.testing.assert_array_equal(got == 255, cpu == 255)
    data = cpu[0] != 255
    assert np.abs(got[0][data].astype(int) - cpu[0][data]).max() <= (
        1 if precision == "fp32" else 6
    )
