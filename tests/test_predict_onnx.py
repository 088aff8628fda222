"""The ONNX Runtime engine: PyTorch's map to one level, bit-identical on Dask, clean errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from sarcrop.cli import main as cli_main
from sarcrop.errors import ConfigError
from sarcrop.options import ExecutionOptions, WindowOptions
from sarcrop.prediction import predict_map
from sarcrop.prediction.predict import work_dir
from test_predict import read_map, save_tiny_checkpoint, write_scenes

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

# Blocks of 2 window rows × 5 windows, at most 4 windows per batch: ONNX batches of 4, the last
# one (2) padded to 4.
WINDOWS = WindowOptions(window=64, overlap=16, batch_size=4, block_rows=2)
OPTIONS = {"windows": WINDOWS, "progress": False}
ONNX = ExecutionOptions(engine="onnx")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    root = tmp_path_factory.mktemp("onnx")
    scenes = write_scenes(root / "scenes", 200, 230, seed=7)
    ckpt = save_tiny_checkpoint(root / "tiny.safetensors")
    torch_map = predict_map(ckpt, scenes, root / "torch.tif", **OPTIONS)
    onnx_map = predict_map(ckpt, scenes, root / "onnx.tif", execution=ONNX, **OPTIONS)
    return scenes, ckpt, torch_map, onnx_map


def test_onnx_map_matches_torch_within_one_level(
    inputs: tuple[Path, Path, Path, Path],
) -> None:
    _, _, torch_map, onnx_map = inputs
    with rasterio.open(torch_map) as a, rasterio.open(onnx_map) as b:
        assert (b.crs, b.transform, b.width, b.height) == (a.crs, a.transform, a.width, a.height)
        assert b.nodatavals == a.nodatavals
        assert b.tags()["ENGINE"] == "onnx" and a.tags()["ENGINE"] == "torch"
        expected, got = a.read(), b.read()
    assert got.shape == (2, 200, 230) and got.dtype == np.uint8
    np.testing.assert_array_equal(got == 255, expected == 255)
    assert (expected == 255).any() and (expected != 255).any()
    diff = np.abs(got[0].astype(int) - expected[0].astype(int))
    assert diff.max() <= 1
    # Classes are thresholded on the unrounded probability: they may only flip right at it.
    flipped = got[1] != expected[1]
    assert np.all(np.abs(expected[0][flipped].astype(int) - 125) <= 1)


def test_dask_onnx_matches_single_process_bit_for_bit(
    inputs: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    from test_predict_dask import two_worker_cluster

    scenes, ckpt, _, onnx_map = inputs
    with two_worker_cluster() as cluster:
        out = predict_map(
            ckpt,
            scenes,
            tmp_path / "dask.tif",
            # the single-process map's thread count (a cluster's default is its workers')
            execution=ONNX.updated(scheduler=cluster.scheduler_address, threads=ONNX.torch_threads),
            **OPTIONS,
        )
    np.testing.assert_array_equal(read_map(out), read_map(onnx_map))
    assert not work_dir(out).exists()


def test_engine_is_part_of_the_resume_fingerprint(
    inputs: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    scenes, ckpt, _, onnx_map = inputs
    out = tmp_path / "m.tif"

    def interrupt(index: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(ckpt, scenes, out, on_block=interrupt, **OPTIONS)  # torch block 0 saved
    computed: list[int] = []
    predict_map(ckpt, scenes, out, execution=ONNX, on_block=computed.append, **OPTIONS)
    assert computed == [0, 1]
    np.testing.assert_array_equal(read_map(out), read_map(onnx_map))


def test_cli_engine_onnx(inputs: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    scenes, ckpt, _, onnx_map = inputs
    out = tmp_path / "cli.tif"
    args = ["predict", str(ckpt), "--images", str(scenes), "--out", str(out), "--quiet"]
    args += ["--window", "64", "--overlap", "16", "--batch-size", "4", "--block-rows", "2"]
    args += ["--engine", "onnx"]
    assert cli_main(args) == 0
    np.testing.assert_array_equal(read_map(out), read_map(onnx_map))


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ConfigError, match="torch"):
        ExecutionOptions(engine="tensorrt")  # type: ignore[arg-type]
