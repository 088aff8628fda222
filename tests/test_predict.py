"""Whole-region prediction: blending, georeference, nodata, COG, in-season, resume, CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from torch import nn

from sarcrop.cli import main as cli_main
from sarcrop.data.composite import composite
from sarcrop.data.normalization import Normalization, normalize
from sarcrop.data.reader import open_scenes
from sarcrop.data.scenes import Acquisition
from sarcrop.data.season import Season
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.models import build_model
from sarcrop.options import ExecutionOptions, MapOptions, SceneOptions, WindowOptions
from sarcrop.prediction import BlockCompute, ModelSpec, WindowLayout, predict_block, predict_map
from sarcrop.prediction.engine import open_stack, restrict
from sarcrop.prediction.predict import other_season, resolve_timesteps, work_dir
from sarcrop.prediction.windows import blend_weights, ramp
from sarcrop.prediction.writer import merged_tiles
from sarcrop.training.checkpoint import CheckpointMetadata, save_checkpoint
from sarcrop.utils.atomic import lock_path

SEASON = Season(dt.date(2021, 5, 1), steps=4, days=20)
NORM = Normalization((-25.0, -18.0), (-5.0, 0.0), ("VH", "VV"))
TRANSFORM = Affine(10.0, 0.0, 300_000.0, 0.0, -10.0, 4_100_000.0)
CRS_UTM = CRS.from_epsg(32610)
NODATA_COLS = 40  # left border without data in every scene


def scene_times(first: dt.date = SEASON.start) -> list[dt.datetime]:
    """Two acquisitions per period, plus two after the season that must never matter."""
    start = dt.datetime.combine(first, dt.time(6, 0))
    return [start + dt.timedelta(days=2 + 10 * i) for i in range(SEASON.steps * 2 + 2)]


def write_scenes(
    folder: Path,
    height: int,
    width: int,
    *,
    constant: bool = False,
    seed: int = 0,
    first: dt.date = SEASON.start,
) -> Path:
    """One 2-band float32 dB GeoTIFF per acquisition, as the simulator writes them (the
    season's dates, or the same days after ``first``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pattern = np.sin(yy / 23.0) * np.cos(xx / 17.0) + 0.5 * np.sin((xx + yy) / 41.0)
    for k, when in enumerate(scene_times(first)):
        vh = np.full((height, width), -15.0) if constant else -15 + 4 * pattern + k % 3
        vh = vh + (0 if constant else rng.normal(0, 0.5, (height, width)))
        data = np.stack([vh, vh + 6.0]).astype(np.float32)
        data[:, :, :NODATA_COLS] = -9999.0
        name = f"S1A_IW_GRDH_{when:%Y%m%dT%H%M%S}_ASC_test.tif"
        with rasterio.open(
            folder / name,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=2,
            dtype="float32",
            nodata=-9999.0,
            crs=CRS_UTM,
            transform=TRANSFORM,
            tiled=True,
            blockxsize=128,
            blockysize=128,
        ) as dst:
            dst.write(data)
            dst.descriptions = ("VH", "VV")
            dst.update_tags(ACQUISITION_TIME=when.isoformat())
    return folder


class LocalConv(nn.Module):
    """Output depends on a 5×5 neighbourhood only: blending must reproduce a whole-area run."""

    def __init__(self, time_steps: int = SEASON.steps, bands: int = 2) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(time_steps * bands, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        local = self.conv2(torch.tanh(self.conv1(x.reshape(b, t * c, h, w))))
        vh = x[:, :, 0].sum(dim=1, keepdim=True) / t  # 0 for not-yet-observed periods
        return local + 12 * (vh - 0.45)


def local_spec() -> ModelSpec:
    return ModelSpec(
        LocalConv(), ("VH", "VV"), SEASON, NORM, architecture="local_conv", region="test"
    )


def save_tiny_checkpoint(
    path: Path,
    patch_size: int | None = None,
    pixel_size: float | None = None,
    threshold: float | None = None,
) -> Path:
    """A small recurrent U-Net; ``patch_size`` and ``pixel_size`` are recorded as the sizes
    it was trained on, ``threshold`` as the class threshold of its training settings."""
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, SEASON.steps, widths=(4, 8), dropout=0.0)
    meta = CheckpointMetadata(
        architecture="recurrent_unet",
        options={"widths": [4, 8], "dropout": 0.0},
        bands=["VH", "VV"],
        time_steps=SEASON.steps,
        season=SEASON.to_dict(),
        normalization={"min": list(NORM.min), "max": list(NORM.max), "bands": list(NORM.bands)},
        region="test",
        training={
            key: value
            for key, value in {"patch_size": patch_size, "pixel_size": pixel_size}.items()
            if value is not None
        }
        | ({} if threshold is None else {"config": {"threshold": threshold}}),
    )
    return save_checkpoint(path, model, meta)


def read_map(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes") / "scenes", 300, 280)


@pytest.fixture(scope="module")
def reference(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A windowed map (3 × 2 windows of 160 with overlap 32, padded at the edges, one per block)."""
    out = tmp_path_factory.mktemp("ref") / "map.tif"
    windows = WindowOptions(window=160, overlap=32, block_windows=1)
    return predict_map(local_spec(), scenes, out, windows=windows, progress=False)


# -- windows ------------------------------------------------------------------------------------


def test_ramp_is_a_partition_of_unity_and_positive() -> None:
    w = ramp(64, 16)
    assert (w > 0).all() and w.max() == 1.0
    stride = 64 - 16
    np.testing.assert_allclose(w[stride:] + w[:16], 1.0, rtol=1e-6)
    assert (blend_weights(64, 16) > 0).all()
    assert (ramp(8, 0) == 1).all()


@pytest.mark.parametrize(
    ("height", "width", "window", "overlap", "block_windows", "block_rows"),
    [
        (300, 280, 160, 32, 1, 1),
        (1, 50, 64, 0, 2, 1),
        (64, 700, 64, 32, 3, 1),
        (1000, 90, 256, 128, 8, 1),
        (300, 280, 160, 32, 1, 2),
        (700, 700, 16, 4, 48, 21),
        (90, 1000, 64, 16, 3, 4),
    ],
)
def test_blocks_partition_the_windows_and_weights_follow_from_the_layout(
    height: int, width: int, window: int, overlap: int, block_windows: int, block_rows: int
) -> None:
    layout = WindowLayout(height, width, window, overlap, block_windows, block_rows)
    stride = window - overlap
    weights = np.zeros((height + window, width + window), np.float32)
    seen = []
    for block in layout.blocks():
        assert 1 <= block.rows <= block_rows and 1 <= block.cols <= block_windows
        e = block.extent
        assert (e.row_off, e.col_off) == (block.first_row * stride, block.first_col * stride)
        assert e.width == (block.cols - 1) * stride + window
        assert e.height == (block.rows - 1) * stride + window
        offsets = block.offsets(stride)
        assert len(offsets) == block.n == block.rows * block.cols
        for r, c in offsets:
            seen.append(((e.row_off + r) // stride, (e.col_off + c) // stride))
            weights[
                e.row_off + r : e.row_off + r + window, e.col_off + c : e.col_off + c + window
            ] += layout.weights
    assert sorted(seen) == [(r, c) for r in range(layout.n_rows) for c in range(layout.n_cols)]
    assert len(seen) == len(set(seen)) == layout.n_windows
    assert layout.max_block_windows == max(b.n for b in layout.blocks())
    assert layout.n_rows * stride + overlap >= height  # the windows reach the last row
    profile = np.outer(
        layout.weight_profile(0, height, height), layout.weight_profile(0, width, width)
    )
    np.testing.assert_allclose(profile, weights[:height, :width], rtol=1e-5)
    # blocks_in finds exactly the blocks whose extent meets a piece of the area.
    for r0, c0 in [(0, 0), (height // 2, width // 3), (height - 1, width - 1)]:
        piece = (r0, min(height, r0 + 37)), (c0, min(width, c0 + 53))
        expected = [
            b.index
            for b in layout.blocks()
            if b.extent.row_off < piece[0][1]
            and b.extent.row_off + b.extent.height > piece[0][0]
            and b.extent.col_off < piece[1][1]
            and b.extent.col_off + b.extent.width > piece[1][0]
        ]
        assert [b.index for b in layout.blocks_in(*piece)] == expected


@pytest.mark.parametrize("width", [600, 6000])
def test_merge_holds_a_bounded_number_of_blocks_whatever_the_width(width: int) -> None:
    layout = WindowLayout(700, width, 64, 16, block_windows=3)
    alive: set[int] = set()
    loads: dict[int, int] = {}
    most = 0

    def load(index: int) -> np.ndarray:
        nonlocal most
        loads[index] = loads.get(index, 0) + 1
        e = layout.block(index).extent
        h, w = min(int(e.height), 700 - e.row_off), min(int(e.width), width - e.col_off)
        sums = np.full((h, w), np.float32(index))
        alive.add(index)
        weakref.finalize(sums, alive.discard, index)
        most = max(most, len(alive))
        return sums

    covered = 0
    for window, prob in merged_tiles(layout, load, tile=128):
        assert prob.shape == (window.height, window.width)
        covered += prob.size
    assert covered == 700 * width
    assert sorted(loads) == list(range(layout.n_blocks))
    assert max(loads.values()) <= 2  # a block meets at most two rows of tiles
    # A 128-px tile meets at most 4 window rows (stride 48) and 2 blocks (160 px wide) of each:
    # the same bound for a 10× wider area.
    assert most <= 4 * 2


def test_invalid_layout_is_refused(scenes: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="overlap"):
        WindowOptions(window=64, overlap=40)
    with pytest.raises(SarcropError, match="timesteps"):
        predict_map(local_spec(), scenes, tmp_path / "m.tif", timesteps=9, progress=False)
    assert not (tmp_path / "m.tif").exists()


def test_a_map_never_replaces_an_input_scene_and_a_file_is_no_folder(
    scenes: Path, tmp_path: Path
) -> None:
    """``--out`` naming a scene overwrote it with the map; a file given as the map's folder
    was said as "cannot create the lock file: File exists"."""
    scene = sorted(scenes.glob("*.tif"))[-1]
    before = scene.read_bytes()
    with pytest.raises(SarcropError, match="the map cannot replace one of its input scenes"):
        predict_map(local_spec(), scenes, scene, progress=False)
    assert scene.read_bytes() == before
    with pytest.raises(SarcropError, match=r"is a file, not a folder") as info:
        predict_map(local_spec(), scenes, scene / "m.tif", progress=False)
    assert info.value.path == str(scene)


def test_gdal_write_errors_of_the_map_are_one_line(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while GDAL copies the map into a COG raised GDAL's own error (a
    traceback ending in "TIFFAppendToStrip:Seek error"); it is the one line of a full disk."""
    from rasterio._err import CPLE_AppDefinedError

    from sarcrop.prediction import predict as module

    def full(*_: object, **__: object) -> None:
        raise CPLE_AppDefinedError(1, 1, "TIFFAppendToStrip:Seek error at scanline 0")

    monkeypatch.setattr(module, "write_map", full)
    out = tmp_path / "m.tif"
    with pytest.raises(SarcropError) as info:
        predict_map(local_spec(), scenes, out, progress=False)
    text = str(info.value)
    assert text.startswith(f"{out}: could not write output: ") and "Seek error" in text
    assert "MB free on its disk" in text and "\n" not in text


def test_windows_default_to_the_patch_size_the_model_was_trained_on(
    scenes: Path, tmp_path: Path
) -> None:
    cpu = ExecutionOptions(device="cpu")  # the batch sizes below are the cpu's

    def run(name: str, ckpt: Path, windows: WindowOptions = WindowOptions()) -> dict[str, str]:
        out = predict_map(
            ckpt, scenes, tmp_path / name, windows=windows, execution=cpu, progress=False
        )
        with rasterio.open(out) as src:
            return src.tags()

    trained_32 = save_tiny_checkpoint(tmp_path / "p32.safetensors", patch_size=32)
    unknown = save_tiny_checkpoint(tmp_path / "unknown.safetensors")
    tags = run("p32.tif", trained_32)
    assert (tags["WINDOW"], tags["OVERLAP"]) == ("32", "8")  # a quarter of the window
    # On the cpu a batch holds as many pixels as 4 windows of 256 px, and a block is as high
    # as one such window: 10 window rows (248 px) of 25 windows, one batch of 250.
    sizes = ("BATCH_SIZE", "BLOCK_ROWS", "BLOCK_WINDOWS")
    assert tuple(tags[k] for k in sizes) == ("256", "10", "25")
    tags = run("unknown.tif", unknown)
    assert (tags["WINDOW"], tags["OVERLAP"]) == ("256", "32")
    assert tuple(tags[k] for k in sizes) == ("4", "1", "8")
    tags = run("given.tif", trained_32, WindowOptions(window=96))
    assert (tags["WINDOW"], tags["OVERLAP"]) == ("96", "24")
    tags = run("wide.tif", trained_32, WindowOptions(window=160))
    assert (tags["WINDOW"], tags["OVERLAP"]) == ("160", "32")  # at most 32 px
    with pytest.raises(SarcropError, match="overlap 20 must be less than half the window 32"):
        predict_map(trained_32, scenes, tmp_path / "bad.tif", windows=WindowOptions(overlap=20))
    assert not (tmp_path / "bad.tif").exists()


def test_a_gap_is_filled_from_later_scenes_only_in_a_whole_season_map(tmp_path: Path) -> None:
    """A map of the whole season reads a period past its end, where the date that fills a gap
    at its end can lie; an early map reads nothing after its last period, so its gaps there stay
    empty (unobserved, as the model learnt them)."""
    folder = write_scenes(tmp_path / "scenes", 8, NODATA_COLS + 8)
    for day in ("20210612", "20210622"):  # period 3 (10 to 30 June) without a scene
        next(folder.glob(f"*_{day}T*")).unlink()
    stack = open_scenes(folder)
    whole = restrict(stack, SEASON, SEASON.steps)
    assert max(whole.times) == dt.datetime(2021, 8, 1, 6)  # season to 20 July, reach 9 August
    filled = composite(whole, SEASON, ["VH"])
    assert np.isfinite(filled[2, 0, :, NODATA_COLS:]).all()
    early = restrict(stack, SEASON, 3)
    assert max(early.times) == dt.datetime(2021, 6, 2, 6)
    assert np.isnan(composite(early, Season(SEASON.start, 3, SEASON.days), ["VH"])[2]).all()


def test_an_early_map_reads_no_pixel_of_a_later_scene(tmp_path: Path) -> None:
    """The checks of the values read only the scenes a map reads: a scene after an early map's
    last period (here one in linear power among dB scenes, which a whole season's map refuses)
    leaves the map of the first two periods as it is without it."""
    folder = write_scenes(tmp_path / "scenes", 64, 64)
    early = predict_map(local_spec(), folder, tmp_path / "early.tif", timesteps=2, progress=False)
    later = next(folder.glob("*_20210702T*"))
    with rasterio.open(later, "r+") as scene:
        values = scene.read()
        scene.write(np.where(values == scene.nodata, values, 10 ** (values / 10)))
    odd = predict_map(local_spec(), folder, tmp_path / "odd.tif", timesteps=2, progress=False)
    with rasterio.open(early) as a, rasterio.open(odd) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with pytest.raises(SarcropError, match=r"20210702T.*\.tif: VH of the .* look linear"):
        predict_map(local_spec(), folder, tmp_path / "whole.tif", progress=False)


def test_an_early_map_keeps_its_grid_when_a_later_scene_covers_more_ground(
    tmp_path: Path,
) -> None:
    """The grid of a map of the first two periods covers the scenes it reads: a July scene
    of a larger footprint arriving later leaves the June map as it was, grid and values (the
    grid grew to cover it, and a resumed run started over)."""
    folder = write_scenes(tmp_path / "scenes", 64, 64)
    early = predict_map(local_spec(), folder, tmp_path / "early.tif", timesteps=2, progress=False)
    later = next(folder.glob("*_20210702T*"))
    with rasterio.open(later) as scene:
        profile, values, bands = scene.profile, scene.read(), scene.descriptions
        tags = scene.tags()
    wider = np.pad(values, ((0, 0), (20, 20), (20, 20)), mode="edge")
    shifted = TRANSFORM @ Affine.translation(-20, -20)
    profile.update(width=104, height=104, transform=shifted)
    with rasterio.open(later, "w", **profile) as scene:
        scene.write(wider)
        scene.descriptions = bands
        scene.update_tags(**tags)
    again = predict_map(local_spec(), folder, tmp_path / "again.tif", timesteps=2, progress=False)
    with rasterio.open(early) as a, rasterio.open(again) as b:
        assert (b.transform, b.shape) == (a.transform, a.shape) == (TRANSFORM, (64, 64))
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(
        predict_map(local_spec(), folder, tmp_path / "all.tif", progress=False)
    ) as c:
        assert c.shape == (104, 104)  # the whole season's map covers the July scene


def test_the_season_suggested_for_monthly_means_reads_them_at_mid_month() -> None:
    """Monthly means stamped from 1 July hold nothing of a season that ends on 10 July: each
    stands for the middle of its month, as the composites read it, so no season of that year
    is suggested (the stamp alone would suggest one, whose map would be refused the same way)."""
    season = Season(dt.date(2021, 4, 21), 4, 20)  # to 10 July
    month = [dt.datetime(2022, m, 1) for m in range(7, 13)]
    means = [Acquisition(t, until=t.replace(month=t.month + 1)) for t in month[:-1]]
    assert other_season(means, season) == " (acquisitions: 2022-07-01 to 2022-11-01)"
    # The same stamps as single acquisitions: 1 July lies in the season moved to 2022.
    single = [Acquisition(t) for t in month]
    assert "--season-start 2022-04-21 moves" in other_season(single, season)
    # A monthly mean that reaches into the season at its middle: April's, read on 16 April.
    april = Acquisition(dt.datetime(2023, 4, 1), until=dt.datetime(2023, 5, 1))
    assert "--season-start 2023-04-21" not in other_season([april], season)
    may = Acquisition(dt.datetime(2023, 5, 1), until=dt.datetime(2023, 6, 1))
    assert "--season-start 2023-04-21 moves" in other_season([april, may], season)


def test_season_start_maps_another_year_as_the_model_reads_its_own(
    scenes: Path, reference: Path, tmp_path: Path
) -> None:
    later = dt.date(2022, 5, 1)
    next_year = write_scenes(tmp_path / "2022", 300, 280, first=later)
    with pytest.raises(SarcropError) as refused:
        predict_map(local_spec(), next_year, tmp_path / "own.tif", progress=False)
    assert str(refused.value).endswith(
        f"no acquisition between 2021-05-01 and {SEASON.last_day} (acquisitions: 2022-05-03 to "
        "2022-08-01); --season-start 2022-05-01 moves the model's season there (the same day "
        "of the year: where the crop is sown in another month, as south of the equator, start "
        "the season at its sowing)"
    )
    assert not (tmp_path / "own.tif").exists()
    windows = WindowOptions(window=160, overlap=32, block_windows=1)  # the reference's
    out = tmp_path / "moved.tif"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_map(
            local_spec(), next_year, out, season_start=later, windows=windows, progress=False
        )
    assert not [w for w in caught if "composite periods" in str(w.message)]
    # Moved two periods too late, the last period has no scene: said in one line.
    late = later + dt.timedelta(days=2 * SEASON.days)
    end = Season(late, SEASON.steps, SEASON.days).end - dt.timedelta(days=1)  # its last day
    with pytest.warns(
        UserWarning,
        match=r"1 of the 4 composite periods has no acquisition; empty \(read as not yet "
        rf"observed\): period 4 \(.* to {end}\); check --season-start",
    ):
        predict_map(
            local_spec(),
            next_year,
            tmp_path / "late.tif",
            season_start=late,
            windows=windows,
            progress=False,
        )
    # The same backscatter a year later, read with the periods moved: the same map.
    np.testing.assert_array_equal(read_map(out), read_map(reference))
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["SEASON_START"] == "2022-05-01" and tags["MODEL_SEASON_START"] == "2021-05-01"
    moved = Season(later, SEASON.steps, SEASON.days)
    assert tags["DATA_UNTIL"] == moved.last_day.isoformat()
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    base = ["predict", str(ckpt), "--images", str(next_year), "--quiet"]
    assert (
        cli_main([*base, "--out", str(tmp_path / "cli.tif"), "--season-start", "2022-05-01"]) == 0
    )
    with rasterio.open(tmp_path / "cli.tif") as src:
        assert src.tags()["SEASON_START"] == "2022-05-01"
    assert cli_main([*base, "--out", str(tmp_path / "cli-own.tif")]) == 2


# -- the map ------------------------------------------------------------------------------------


def test_blending_matches_a_single_window_run(
    scenes: Path, reference: Path, tmp_path: Path
) -> None:
    one = WindowOptions(window=320, overlap=0)
    whole = predict_map(local_spec(), scenes, tmp_path / "whole.tif", windows=one, progress=False)
    a, b = read_map(reference), read_map(whole)
    assert a.shape == b.shape == (2, 300, 280)
    diff = np.abs(a[0].astype(int) - b[0].astype(int))
    assert diff.max() <= 2, diff.max()  # window borders weigh < 0.6 %: at most rounding
    assert (a[0] != b[0]).mean() < 0.01
    # No seam: the jump across a window border is no larger than elsewhere.
    valid = a[0, :, NODATA_COLS:].astype(float)
    steps = np.abs(np.diff(valid, axis=0))
    assert steps[127:130].mean() < 2 * steps.mean() + 1


def merged_probability(layout: WindowLayout, scenes: Path) -> np.ndarray:
    """Every block of ``layout`` computed by ``predict_block`` and merged as ``predict`` merges."""
    spec = local_spec()
    stack = restrict(open_stack(scenes, spec, SceneOptions(), SEASON.steps), SEASON, SEASON.steps)
    compute = BlockCompute(SEASON.steps, batch_size=3)
    sums = {i: predict_block(spec, stack, layout, i, compute).sums for i in range(layout.n_blocks)}
    out = np.zeros((layout.height, layout.width), np.float32)
    for window, prob in merged_tiles(layout, sums.__getitem__, tile=128):
        r, c = int(window.row_off), int(window.col_off)
        out[r : r + prob.shape[0], c : c + prob.shape[1]] = prob
    return out


def test_blocks_of_several_window_rows_give_the_map_of_one_row_blocks(scenes: Path) -> None:
    one_row = merged_probability(WindowLayout(300, 280, 64, 16, block_windows=1), scenes)
    assert np.isnan(one_row[:, :NODATA_COLS]).all() and not np.isnan(one_row[:, 48:]).any()
    for columns, rows in [(2, 3), (5, 6), (1, 4)]:
        layout = WindowLayout(300, 280, 64, 16, block_windows=columns, block_rows=rows)
        several = merged_probability(layout, scenes)
        # The same windows and weights; only the order of adding up where four windows
        # overlap may differ (by a float32 rounding step).
        np.testing.assert_allclose(several, one_row, rtol=0, atol=1e-6)


def test_constant_field_gives_a_constant_map(tmp_path: Path) -> None:
    folder = write_scenes(tmp_path / "const", 200, 200, constant=True)
    out = predict_map(
        local_spec(),
        folder,
        tmp_path / "c.tif",
        # Window and block borders both cross the area.
        windows=WindowOptions(window=96, overlap=24, block_windows=2),
        progress=False,
    )
    prob = read_map(out)[0]
    inner = prob[3:-3, NODATA_COLS + 3 : -3]  # away from the area's own edges
    assert inner.max() - inner.min() <= 1, (inner.min(), inner.max())


def test_georeference_tags_and_nodata(scenes: Path, reference: Path) -> None:
    with rasterio.open(reference) as src, rasterio.open(next(scenes.glob("*.tif"))) as scene:
        assert src.crs == scene.crs
        assert src.transform == scene.transform
        assert (src.width, src.height) == (scene.width, scene.height)
        assert src.count == 2 and src.dtypes == ("uint8", "uint8")
        assert src.nodata == 255
        assert src.descriptions == ("probability", "class")
        tags = src.tags()
        assert tags["MODEL_ARCHITECTURE"] == "local_conv"
        assert tags["BANDS"] == "VH,VV"
        assert tags["SEASON_START"] == "2021-05-01"
        assert tags["TIME_STEPS_USED"] == "4"
        assert tags["THRESHOLD"] == "0.5"
        assert tags["SARCROP_VERSION"]
        data = src.read()
    assert (data[:, :, :NODATA_COLS] == 255).all()
    body = data[:, :, NODATA_COLS:]
    assert (body[0] <= 250).all() and set(np.unique(body[1])) <= {0, 1}
    assert (body[0][body[1] == 1] >= 125).all() and (body[0][body[1] == 0] <= 125).all()
    assert 0 < body[1].mean() < 1  # the model separates something


def test_output_is_a_cloud_optimized_geotiff(tmp_path: Path) -> None:
    folder = write_scenes(tmp_path / "big", 600, 560, seed=3)
    out = predict_map(
        local_spec(),
        folder,
        tmp_path / "cog.tif",
        output=MapOptions(classes=False),
        progress=False,
    )
    with rasterio.open(out) as src:
        assert src.count == 1 and src.descriptions == ("probability",)
        assert src.profile["tiled"] and src.block_shapes[0] == (512, 512)
        assert src.compression.name.lower() == "deflate"
        assert src.overviews(1) == [2]
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.scales[0] == pytest.approx(1 / 250)
    assert not work_dir(out).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- in-season ----------------------------------------------------------------------------------


def test_until_counts_complete_periods() -> None:
    spec = local_spec()
    assert resolve_timesteps(spec, None, None) == 4
    assert resolve_timesteps(spec, 2, None) == 2
    assert resolve_timesteps(spec, None, dt.date(2021, 6, 9)) == 2  # 2nd period ends Jun 10
    assert resolve_timesteps(spec, None, dt.date(2021, 6, 8)) == 1
    with pytest.raises(SarcropError, match="no complete") as early:
        resolve_timesteps(spec, None, dt.date(2021, 5, 3))
    assert "--season-start" not in str(early.value)  # the season's own first days
    assert resolve_timesteps(spec, None, dt.date(2021, 12, 31)) == 4  # after its end: all of it
    start = spec.season.start
    for other_year in (start - dt.timedelta(days=300), start + dt.timedelta(days=365)):
        with pytest.raises(SarcropError, match=f"season starts on {start}: for another year"):
            resolve_timesteps(spec, None, other_year)
        given = rf"the season given \(--season-start\) starts on {start}"  # not the model's
        with pytest.raises(SarcropError, match=given):
            resolve_timesteps(spec, None, other_year, moved=True)


def test_early_season_zero_pads_and_never_reads_later_scenes(scenes: Path, tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    shutil.copytree(scenes, folder)
    stack = open_scenes(folder, bands=["VH", "VV"])
    late = [a for a in stack.acquisitions if SEASON.period_of(a.time) not in (0, 1)]
    for acquisition in late:  # reading any of them now would fail
        os.remove(acquisition.source)
    spec = local_spec()
    one = WindowOptions(window=320, overlap=0)
    out = predict_map(spec, stack, tmp_path / "early.tif", timesteps=2, windows=one, progress=False)
    with rasterio.open(out) as src:
        got = src.read(1)
        assert src.tags()["TIME_STEPS_USED"] == "2"
        assert src.tags()["DATA_UNTIL"] == "2021-06-09"

    two = Season(SEASON.start, 2, SEASON.days)
    x = np.zeros((1, 4, 2, 320, 320), np.float32)  # zero-padded periods and window
    x[0, :2, :, :300, :280] = normalize(composite(stack, two, ["VH", "VV"]), NORM)
    with torch.no_grad():
        expected = torch.sigmoid(spec.model(torch.from_numpy(x)))[0, 0, :300, :280].numpy()
    expected_u8 = np.rint(expected * 250).astype(np.int16)
    diff = np.abs(got[:, NODATA_COLS:].astype(np.int16) - expected_u8[:, NODATA_COLS:])
    assert diff.max() <= 1
    full = read_map(predict_map(spec, scenes, tmp_path / "full.tif", windows=one, progress=False))[
        0
    ]
    assert (full != got).mean() > 0.1  # later periods do change the map


# -- resume -------------------------------------------------------------------------------------

KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from sarcrop.options import WindowOptions
    from sarcrop.prediction import predict_map

    def die(index):
        if index == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    windows = WindowOptions(window=96, overlap=16, block_rows=1)
    predict_map(sys.argv[1], sys.argv[2], sys.argv[3], windows=windows, progress=False,
                on_block=die)
""")


def test_killed_run_resumes_with_the_missing_blocks_only(scenes: Path, tmp_path: Path) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "resumed.tif"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(ckpt), str(scenes), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists()
    work = work_dir(out)
    assert sorted(p.name for p in work.glob("block-*.npz")) == [
        "block-000000.npz",
        "block-000001.npz",
    ]
    assert json.loads((work / "manifest.json").read_text())["blocks"] == 4
    assert lock_path(out).exists()  # left unlocked by the killed run: the next run takes it

    computed: list[int] = []
    windows = WindowOptions(window=96, overlap=16, block_rows=1)  # 4 blocks
    predict_map(ckpt, scenes, out, windows=windows, progress=False, on_block=computed.append)
    assert computed == [2, 3]
    assert not work.exists() and not lock_path(out).exists()

    fresh: list[int] = []
    clean = predict_map(
        ckpt,
        scenes,
        tmp_path / "clean.tif",
        windows=windows,
        progress=False,
        on_block=fresh.append,
    )
    assert fresh == [0, 1, 2, 3]
    np.testing.assert_array_equal(read_map(out), read_map(clean))


def test_a_damaged_finished_block_is_computed_again(scenes: Path, tmp_path: Path) -> None:
    """A finished block cut short (a failing disk, a partial copy of the folder) is not a
    finished block: the resumed run computes it again, with a warning, and the map is whole."""
    out = tmp_path / "m.tif"
    windows = WindowOptions(window=96, overlap=16, block_rows=1)  # 4 blocks
    options = {"windows": windows, "progress": False}

    def interrupt(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(local_spec(), scenes, out, on_block=interrupt, **options)
    block = work_dir(out) / "block-000000.npz"
    block.write_bytes(block.read_bytes()[:200])
    computed: list[int] = []
    with pytest.warns(UserWarning, match=r"block-000000\.npz: a damaged finished block"):
        predict_map(local_spec(), scenes, out, on_block=computed.append, **options)
    assert computed == [0, 2, 3]
    clean = predict_map(local_spec(), scenes, tmp_path / "clean.tif", **options)
    np.testing.assert_array_equal(read_map(out), read_map(clean))


def test_a_run_resumes_whatever_the_spelling_of_its_images_path(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenes are the same files, named from another folder: the run goes on."""
    out = tmp_path / "m.tif"
    options = {"windows": WindowOptions(window=96, overlap=16, block_rows=1), "progress": False}

    def interrupt(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(local_spec(), scenes, out, on_block=interrupt, **options)
    monkeypatch.chdir(scenes.parent)
    computed: list[int] = []
    predict_map(local_spec(), scenes.name, out, on_block=computed.append, **options)
    assert computed == [2, 3]


def test_changed_options_start_over(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    work = work_dir(out)
    windows = WindowOptions(window=160, overlap=32)
    stop: list[int] = []

    def interrupt(index: int) -> None:
        stop.append(index)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(local_spec(), scenes, out, windows=windows, progress=False, on_block=interrupt)
    assert (work / "block-000000.npz").exists() and not out.exists()
    computed: list[int] = []
    predict_map(
        local_spec(),
        scenes,
        out,
        windows=windows,
        timesteps=3,
        progress=False,
        on_block=computed.append,
    )
    assert computed == [0, 1, 2]


def test_the_map_takes_the_threshold_the_model_was_trained_with(scenes: Path, tmp_path: Path):
    """Left out, the class threshold is the model's (the one `evaluate` scores it at): the map
    is the one given that threshold by hand, and models of two thresholds need one given."""
    plain = save_tiny_checkpoint(tmp_path / "plain.safetensors")
    low = save_tiny_checkpoint(tmp_path / "low.safetensors", threshold=0.3)
    fast = {"windows": WindowOptions(window=160, overlap=32), "progress": False}
    maps = {
        "low": predict_map(low, scenes, tmp_path / "low.tif", **fast),
        "given": predict_map(
            plain, scenes, tmp_path / "given.tif", output=MapOptions(threshold=0.3), **fast
        ),
        "plain": predict_map(plain, scenes, tmp_path / "plain.tif", **fast),
    }
    tags = {}
    for name, path in maps.items():
        with rasterio.open(path) as src:
            tags[name] = src.tags()["THRESHOLD"]
    assert tags == {"low": "0.3", "given": "0.3", "plain": "0.5"}
    np.testing.assert_array_equal(read_map(maps["low"]), read_map(maps["given"]))
    classes = [read_map(maps[name])[1] for name in ("low", "plain")]
    assert (classes[0] >= classes[1]).all() and (classes[0] > classes[1]).any()
    with pytest.raises(SarcropError, match=r"thresholds 0\.3, 0\.5: give the map's, --threshold"):
        predict_map([low, plain], scenes, tmp_path / "both.tif", **fast)


def test_a_model_without_normalisation_statistics_is_one_line(tmp_path: Path):
    """A checkpoint that records no statistics to scale its inputs with cannot be mapped: one
    line naming it (it was an AttributeError from ModelSpec)."""
    from sarcrop.training.checkpoint import read_metadata, save_checkpoint

    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    model = build_model("recurrent_unet", 2, SEASON.steps, widths=(4, 8), dropout=0.0)
    meta = read_metadata(path).model_copy(update={"normalization": None})
    save_checkpoint(path, model, meta)
    with pytest.raises(SarcropError, match="has no normalization statistics") as info:
        ModelSpec.from_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ")


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_predict(scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "cli.tif"
    code = cli_main(
        [
            "predict",
            str(ckpt),
            "--images",
            str(scenes),
            "--out",
            str(out),
            "--until",
            "2021-06-20",
            "--window",
            "160",
            "--overlap",
            "32",
            "--threshold",
            "0.3",
            "--quiet",
        ]
    )
    assert code == 0
    with rasterio.open(out) as src:
        assert src.tags()["TIME_STEPS_USED"] == "2"
        assert src.tags()["THRESHOLD"] == "0.3"
        assert src.tags()["MODEL_CHECKPOINT"] == "tiny.safetensors"
    code = cli_main(
        [
            "predict",
            str(tmp_path / "missing.safetensors"),
            "--images",
            str(scenes),
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_a_map_path_or_model_that_cannot_be_used_is_refused_before_any_work(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder or a non-GeoTIFF name as the map, or a folder as the model: one line naming
    it, and nothing computed or written."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    folder = tmp_path / "maps"
    folder.mkdir()
    cases = [
        (ckpt, folder, "is a folder: give the map's file name"),
        (ckpt, tmp_path / "map.png", "the map is a Cloud-Optimised GeoTIFF: name it .tif"),
        (folder, tmp_path / "map.tif", "is a folder, not a checkpoint"),
    ]
    for model, out, expected in cases:
        argv = ["predict", str(model), "--images", str(scenes), "--out", str(out), "--quiet"]
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
        named = out if "checkpoint" not in expected else model
        assert f"{named}: " in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps", "tiny.safetensors"]
    assert not any(folder.iterdir())


def _with_descending_passes(scenes: Path, folder: Path) -> Path:
    """``scenes`` and a descending pass 6 hours after each, 3 dB brighter."""
    shutil.copytree(scenes, folder)
    for path in sorted(scenes.glob("*_ASC_*.tif")):
        stamp = re.search(r"_(\d{8}T\d{6})_", path.name)
        assert stamp is not None
        later = dt.datetime.strptime(stamp[1], "%Y%m%dT%H%M%S") + dt.timedelta(hours=6)
        name = path.name.replace(stamp[1], f"{later:%Y%m%dT%H%M%S}").replace("_ASC_", "_DESC_")
        with rasterio.open(path) as src:
            profile, data, bands = src.profile, src.read(), src.descriptions
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(np.where(data == -9999.0, data, data + 3.0))
            dst.descriptions = bands
            dst.update_tags(ACQUISITION_TIME=later.isoformat())
    return folder


def test_a_map_reads_the_orbit_the_model_learnt_unless_told_and_another_is_named(
    scenes: Path, tmp_path: Path
) -> None:
    """A model fine-tuned on ascending composites alone maps ascending ones unless the orbit is
    given; given another (both orbits), one line names the option that reads as it learnt."""
    scenes = _with_descending_passes(scenes, tmp_path / "two-orbits")
    ascending = dataclasses.replace(local_spec(), orbit="ascending")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*acquisitions only")
        default = predict_map(ascending, scenes, tmp_path / "default.tif", progress=False)
        told = SceneOptions(orbit="ascending")
        asc = predict_map(ascending, scenes, tmp_path / "asc.tif", scenes=told, progress=False)
        for spec in (local_spec(), dataclasses.replace(local_spec(), orbit="both")):
            predict_map(spec, scenes, tmp_path / "any.tif", scenes=told, progress=False)
    both = SceneOptions(orbit="both")
    with pytest.warns(
        UserWarning,
        match=r"learnt from ascending acquisitions only and the map "
        r"reads both orbits; give --orbit ascending \(scenes: orbit\)",
    ):
        predict_map(ascending, scenes, tmp_path / "both.tif", scenes=both, progress=False)
    with (
        rasterio.open(default) as a,
        rasterio.open(asc) as b,
        rasterio.open(tmp_path / "both.tif") as c,
    ):
        assert np.array_equal(a.read(), b.read()) and not np.array_equal(a.read(), c.read())


def test_images_of_another_pixel_size_than_the_model_learnt_are_named(
    scenes: Path, tmp_path: Path
) -> None:
    """A model fine-tuned on 20 m scenes read at 10 m, mapping the 20 m scenes as they are:
    the map is on the images' grid, which one warning says, with the flag that maps on the
    model's; chosen, or of the same size, nothing is said."""
    windows = WindowOptions(window=160, overlap=32)
    at_20 = save_tiny_checkpoint(tmp_path / "at20.safetensors", pixel_size=20.0)
    with pytest.warns(
        UserWarning,
        match=r"at20.safetensors learnt from 20 m pixels and the "
        r"images' are 10 m: .*give --resolution 20",
    ):
        predict_map(at_20, scenes, tmp_path / "a.tif", windows=windows, progress=False)
    at_10 = save_tiny_checkpoint(tmp_path / "at10.safetensors", pixel_size=10.0)
    for model, options in ((at_20, SceneOptions(resolution=10)), (at_10, SceneOptions())):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = tmp_path / f"{model.stem}.tif"
            predict_map(model, scenes, out, windows=windows, scenes=options, progress=False)
        assert not [w for w in caught if "pixels" in str(w.message)]


def test_cli_builds_the_api_options(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "one-band.tif"
    base = ["predict", str(ckpt), "--images", str(scenes), "--out", str(out), "--quiet"]
    code = cli_main([*base, "--window", "160", "--no-classes", "--threads", "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    with rasterio.open(out) as src:
        assert src.descriptions == ("probability",)
        assert src.tags()["WINDOW"] == "160" and src.tags()["THREADS"] == "1"
        # the sizes run, without --batch-size and --block-windows: the cpu's
        assert (src.tags()["BATCH_SIZE"], src.tags()["BLOCK_WINDOWS"]) == ("4", "8")
    for bad in (["--no-probability", "--no-classes"], ["--window", "64", "--overlap", "40"]):
        assert cli_main([*base, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err, err
    with pytest.raises(ConfigError, match="at least one"):
        MapOptions(probability=False, classes=False)


# -- threads ------------------------------------------------------------------------------------


def test_threads_default_to_the_available_cores_and_are_recorded(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sarcrop.options.available_cores", lambda: 3)
    assert ExecutionOptions().torch_threads == 3
    assert ExecutionOptions(workers=2).torch_threads == 1
    assert ExecutionOptions(threads=5, workers=2).torch_threads == 5
    out = tmp_path / "m.tif"
    windows = WindowOptions(window=160, overlap=32)

    def interrupt(index: int) -> None:
        raise KeyboardInterrupt

    def interrupted_with_one_thread() -> None:
        """A run with 1 thread stopped after its first block."""
        with pytest.raises(KeyboardInterrupt):
            predict_map(
                local_spec(),
                scenes,
                out,
                windows=windows,
                execution=ExecutionOptions(threads=1),
                progress=False,
                on_block=interrupt,
            )

    # Interrupted with 1 thread, resumed with the default (3): the finished block is kept and
    # the rest computed with 1 thread, as the map records.
    interrupted_with_one_thread()
    assert json.loads((work_dir(out) / "manifest.json").read_text())["threads"] == 1
    computed: list[int] = []
    predict_map(
        local_spec(), scenes, out, windows=windows, progress=False, on_block=computed.append
    )
    assert computed == [1, 2]
    with rasterio.open(out) as src:
        assert src.tags()["THREADS"] == "1"

    # An explicit, different count starts over: CPU results depend on it.
    interrupted_with_one_thread()
    computed.clear()
    predict_map(
        local_spec(),
        scenes,
        out,
        windows=windows,
        execution=ExecutionOptions(threads=2),
        progress=False,
        on_block=computed.append,
    )
    assert computed == [0, 1, 2]

    fresh = predict_map(
        local_spec(), scenes, tmp_path / "fresh.tif", windows=windows, progress=False
    )
    with rasterio.open(fresh) as src:
        assert src.tags()["THREADS"] == "3"


# -- concurrent runs ----------------------------------------------------------------------------

TERMINATED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import rasterio.shutil
    from sarcrop.cli import main

    ready = Path(sys.argv[1])
    copy = rasterio.shutil.copy

    def slow_copy(*args, **kwargs):  # the map's temporary file written, not yet renamed
        copy(*args, **kwargs)
        ready.touch()
        time.sleep(600)

    rasterio.shutil.copy = slow_copy
    sys.exit(main(sys.argv[2:]))
""")


def test_sigterm_while_the_map_is_written_cleans_up_and_the_rerun_completes(
    scenes: Path, tmp_path: Path
) -> None:
    """SIGTERM (systemd's, a scheduler's) ends predict as Ctrl-C does: one line, exit code
    143, the temporary map and the lock removed, the finished blocks kept for the rerun."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out, ready = tmp_path / "map.tif", tmp_path / "ready"
    argv = ["predict", str(ckpt), "--images", str(scenes), "--out", str(out), "--quiet"]
    argv += ["--window", "96", "--overlap", "16"]
    run = subprocess.Popen(
        [sys.executable, "-c", TERMINATED_RUN, str(ready), *argv],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the map was never written"
            time.sleep(0.1)
        assert list(tmp_path.glob(".map.tif.tmp-*"))  # what SIGTERM must not leave
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert (run.returncode, err) == (143, "sarcrop predict: terminated\n")
    assert not out.exists() and not lock_path(out).exists()
    assert not list(tmp_path.glob(".map.tif.tmp-*"))
    assert list(work_dir(out).glob("block-*.npz"))  # kept: the rerun resumes from them
    assert cli_main(argv) == 0 and out.exists() and not work_dir(out).exists()


def test_a_run_removes_what_a_killed_run_left_while_writing_the_map(
    scenes: Path, tmp_path: Path
) -> None:
    """SIGKILL (or a power cut) while the map was being renamed into place leaves its
    temporary file and GDAL's overviews of it: the next run on that map removes them."""
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "map.tif"
    stale = [tmp_path / ".map.tif.tmp-k9x2.tif", tmp_path / ".map.tif.tmp-k9x2.tif.ovr.tmp"]
    other = tmp_path / ".other.tif.tmp-k9x2.tif"  # another map's: not ours to remove
    for path in [*stale, other]:
        path.write_bytes(b"partial")
    predict_map(ckpt, scenes, out, windows=WindowOptions(window=96, overlap=16), progress=False)
    assert out.exists() and not any(path.exists() for path in stale) and other.exists()


HELD_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sarcrop.options import WindowOptions
    from sarcrop.prediction import predict_map

    ready, go = Path(sys.argv[4]), Path(sys.argv[5])

    def hold(index):
        if index == 0:
            ready.touch()
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    predict_map(sys.argv[1], sys.argv[2], sys.argv[3],
                windows=WindowOptions(window=96, overlap=16), progress=False, on_block=hold)
""")


def test_a_second_run_on_the_same_map_fails_at_once(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "shared.tif"
    ready, go = tmp_path / "ready", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", HELD_RUN, str(ckpt), str(scenes), str(out), str(ready), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first run did not reach its first block"
            time.sleep(0.1)
        blocks = sorted(work_dir(out).glob("block-*.npz"))
        windows = WindowOptions(window=96, overlap=16)
        # The first run holds its block until `go`: a run queued behind it would map, not raise.
        with pytest.raises(SarcropError, match="another predict is writing this map") as info:
            predict_map(ckpt, scenes, out, windows=windows, progress=False)
        # Refused before anything is read: a model that is not there is not even looked for.
        with pytest.raises(SarcropError, match="another predict is writing this map"):
            predict_map(tmp_path / "absent.safetensors", scenes, out, progress=False)
        assert first.poll() is None  # refused while the first run was still writing
        assert str(out) in str(info.value) and "\n" not in str(info.value)
        args = ["predict", str(ckpt), "--images", str(scenes), "--out", str(out), "--quiet"]
        assert cli_main([*args, "--window", "96", "--overlap", "16", "--no-resume"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "another predict" in err, err
        # The refused runs touched nothing of the first one's work.
        assert sorted(work_dir(out).glob("block-*.npz")) == blocks and blocks
        go.touch()
        _, stderr = first.communicate(timeout=300)
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    assert out.exists() and not work_dir(out).exists()
    assert not lock_path(out).exists()  # no debris after a successful run
    # The lock is free again.
    predict_map(ckpt, scenes, out, windows=WindowOptions(window=96, overlap=16), progress=False)


# -- inputs -------------------------------------------------------------------------------------


def test_a_simulated_region_folder_is_read_as_its_scenes(
    scenes: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    region = tmp_path / "region"
    shutil.copytree(scenes, region / "s1")
    (region / "region.json").write_text(json.dumps({"region": "test", "files": {"scenes": "s1"}}))
    with rasterio.open(next(scenes.glob("*.tif"))) as src:  # a decoy raster beside the scenes
        profile = src.profile | {"count": 1, "dtype": "int16", "nodata": -1}
    with rasterio.open(region / "labels.tif", "w", **profile) as dst:
        dst.write(np.zeros((1, profile["height"], profile["width"]), np.int16))
    windows = WindowOptions(window=160, overlap=32, block_windows=1)
    out = predict_map(
        local_spec(), region, tmp_path / "region.tif", windows=windows, progress=False
    )
    np.testing.assert_array_equal(read_map(out), read_map(reference))
    with rasterio.open(out) as src:
        assert "s1" in src.tags()["IMAGES"]

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    cli_out = tmp_path / "cli-region.tif"
    args = ["predict", str(ckpt), "--images", str(region), "--out", str(cli_out), "--quiet"]
    assert cli_main(args) == 0, capsys.readouterr().err
    assert read_map(cli_out).shape == (2, 300, 280)


# -- optional ONNX Runtime ----------------------------------------------------------------------


def test_importing_sarcrop_never_imports_onnx() -> None:
    code = (
        "import sys, sarcrop.prediction, sarcrop.prediction.distributed;"
        "from sarcrop.cli import build_parser; build_parser();"
        "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_missing_onnxruntime_names_the_extra(
    scenes: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    out = tmp_path / "m.tif"
    with pytest.raises(SarcropError, match=r"pip install 'sarcrop\[onnx\]'") as info:
        predict_map(ckpt, scenes, out, execution=ExecutionOptions(engine="onnx"), progress=False)
    assert "onnxruntime" in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() and not work_dir(out).exists() and not lock_path(out).exists()
    args = ["predict", str(ckpt), "--images", str(scenes), "--out", str(out), "--engine", "onnx"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "sarcrop[onnx]" in err and len(err.splitlines()) == 1


def test_band_map_names_the_bands_of_a_cube_from_the_command_line(tmp_path, capsys):
    """A cube with two variables that could be VH is refused, naming --band-map; with the
    flag it maps, and the map's resume hash knows which variables it read."""
    import json

    import xarray as xr

    from sarcrop.cli import main

    rng = np.random.default_rng(0)
    times = np.datetime64("2021-04-22T06:00") + np.arange(0, 170, 6).astype("timedelta64[D]")
    vh = rng.uniform(-22, -12, size=(len(times), 32, 32)).astype("float32")
    dims = ("t", "y", "x")
    xr.Dataset(
        {
            "S1-SIGMA0-VH": (dims, vh, {"units": "dB"}),
            "S1-SIGMA0-VH-std": (dims, np.abs(vh) / 10, {"units": "dB"}),
            "S1-SIGMA0-VV": (dims, vh + 7, {"units": "dB"}),
        },
        coords={
            "t": times,
            "y": 5_600_000 - 5 - 10 * np.arange(32),
            "x": 500_005 + 10 * np.arange(32),
        },
        attrs={"epsg": 32631},
    ).to_netcdf(tmp_path / "cube.nc")
    argv = [
        "predict",
        "europe-maize",
        "--images",
        str(tmp_path / "cube.nc"),
        "--quiet",
        "--season-start",
        "2021-04-21",
        "--out",
        str(tmp_path / "m.tif"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "several variables for VH (S1-SIGMA0-VH, S1-SIGMA0-VH-std)" in err
    assert "--band-map" in err and not (tmp_path / "m.tif").exists()
    named = {"VH": "S1-SIGMA0-VH", "VV": "S1-SIGMA0-VV"}
    assert main([*argv, "--band-map", json.dumps(named)]) == 0
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.read(1).shape == (32, 32)
    from sarcrop.data.reader import open_scenes
    from sarcrop.prediction.predict import stack_fingerprint

    # Left out of an option group's record where not given: experiments keep their cache keys.
    assert "band_map" not in SceneOptions().model_dump() and SceneOptions().model_dump()
    stack = open_scenes(tmp_path / "cube.nc", band_map=named)
    assert stack_fingerprint(stack)["band_map"] == named
    with xr.open_dataset(tmp_path / "cube.nc") as cube:
        cube.drop_vars("S1-SIGMA0-VH-std").to_netcdf(tmp_path / "plain.nc")
    assert "band_map" not in stack_fingerprint(open_scenes(tmp_path / "plain.nc"))
