"""Normalisation, splits, the dataset store and PatchDataset."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import torch
from affine import Affine
from rasterio.crs import CRS
from torch.utils.data import DataLoader

from sarcrop.data.dataset import PatchDataset
from sarcrop.data.grid import Grid
from sarcrop.data.normalization import Normalization, compute_normalization, normalize
from sarcrop.data.season import Season
from sarcrop.data.split import split_patches, validation_split
from sarcrop.data.store import DatasetStore, StoreMetadata, write_store
from sarcrop.errors import InputDataError

P = 8
STEPS = 4
CLASSES = ["background", "maize", "rice"]
GRID = Grid(CRS.from_epsg(32631), Affine(10, 0, 500000, 0, -10, 5000400), 4 * P, 2 * P)
OFFSETS = [(r, c) for r in (0, P) for c in (0, P, 2 * P, 3 * P)]
SPLIT = ["train", "test", "train", "train", "test", "train", "test", "train"]


def make_store(path, split=SPLIT):
    n = len(OFFSETS)
    rng = np.random.default_rng(0)
    images = rng.uniform(-25, -5, size=(n, STEPS, 2, P, P)).astype(np.float32)
    images[:, :, 1] += 5  # VV brighter than VH
    labels = np.zeros((n, P, P), dtype=np.int16)
    labels[:, :4] = 2  # rice in the top half
    labels[:, 4:, :2] = 1
    labels[:, 7, 7] = -1
    images[0, 1, :, 0, 0] = np.nan
    stats = compute_normalization(
        [images[i] for i, s in enumerate(split) if s == "train"], ("VH", "VV")
    )
    meta = StoreMetadata(
        bands=("VH", "VV"),
        season=Season(dt.date(2021, 4, 1), steps=STEPS, days=20),
        grid=GRID,
        patch_size=P,
        stride=P,
        offsets=OFFSETS,
        classes=CLASSES,
        split=list(split),
        normalization=stats,
        region="test",
        year=2021,
    )
    write_store(path, images, labels, meta)
    return images, labels


# Normalisation ----------------------------------------------------------------------------


def test_normalize_maps_to_unit_range_and_nan_to_zero():
    stats = Normalization((-20.0, -10.0), (0.0, 10.0), ("VH", "VV"))
    x = np.array([[[[-20.0, -10.0, 0.0, np.nan]], [[-10.0, 0.0, 30.0, -50.0]]]], np.float32)
    out = normalize(x, stats)
    np.testing.assert_allclose(out[0, 0, 0], [0, 0.5, 1, 0])
    np.testing.assert_allclose(out[0, 1, 0], [0, 0.5, 1, 0])
    assert out.dtype == np.float32
    in_place = normalize(x, stats, out=x)  # how predict normalises a block it has read
    assert in_place is x and in_place.tobytes() == out.tobytes()
    assert stats.select(["VV"]) == Normalization((-10.0,), (10.0,), ("VV",))
    with pytest.raises(InputDataError, match="no statistics for band"):
        stats.select(["HH"])


def test_percentile_stats_ignore_outliers():
    rng = np.random.default_rng(1)
    patch = rng.uniform(-20, -10, size=(4, 1, 50, 50)).astype(np.float32)
    patch[0, 0, 0, 0] = -90.0
    patch[1, 0, 0, 0] = 20.0
    plain = compute_normalization([patch], ["VH"])
    robust = compute_normalization([patch], ["VH"], percentiles=(1, 99))
    assert plain.min == (-90.0,) and plain.max == (20.0,)
    assert -20.01 <= robust.min[0] <= -19.7 and -10.3 <= robust.max[0] <= -9.99
    assert robust.method == "percentile 1-99"


# Splits -----------------------------------------------------------------------------------


def test_patch_split_is_seeded_60_40():
    offsets = [(r * 8, c * 8) for r in range(10) for c in range(10)]
    a = split_patches(offsets, seed=3)
    assert a == split_patches(offsets, seed=3)
    assert a != split_patches(offsets, seed=4)
    assert a.count("train") == 60 and a.count("test") == 40


def test_block_split_keeps_blocks_together():
    offsets = [(r * 8, c * 8) for r in range(12) for c in range(12)]
    a = split_patches(offsets, method="block", block=3, stride=8, seed=0)
    blocks: dict[tuple[int, int], set[str]] = {}
    for (r, c), s in zip(offsets, a):
        blocks.setdefault((r // 24, c // 24), set()).add(s)
    assert len(blocks) == 16 and all(len(v) == 1 for v in blocks.values())
    # Whole blocks of 9 patches: the closest count to 60 % of 144 (86) is 10 blocks.
    assert a.count("train") == 90
    assert a == split_patches(offsets, method="block", block=3, stride=8, seed=0)


def test_validation_split_is_disjoint_and_seeded():
    train, val = validation_split(list(range(0, 40, 2)), 0.25, seed=1)
    assert len(val) == 5 and len(train) == 15
    assert not set(train) & set(val) and set(train) | set(val) == set(range(0, 40, 2))
    assert (train, val) == validation_split(list(range(0, 40, 2)), 0.25, seed=1)


# Store ------------------------------------------------------------------------------------


def test_store_roundtrip_and_georeference(tmp_path):
    images, labels = make_store(tmp_path / "s.zarr")
    store = DatasetStore.open(tmp_path / "s.zarr")
    assert len(store) == 8 and store.bands == ("VH", "VV") and store.steps == STEPS
    img, lab = store.read_patch(5)
    np.testing.assert_array_equal(img, images[5])
    np.testing.assert_array_equal(lab, labels[5])
    assert np.isnan(store.read_image(0)[1, :, 0, 0]).all()
    assert store.indices("train") == [0, 2, 3, 5, 7] and store.indices("test") == [1, 4, 6]
    # Patch 6 sits at row P, col 2P: its transform is the area transform moved there.
    g = store.patch_grid(6)
    assert g.transform == Affine(10, 0, 500000 + 2 * P * 10, 0, -10, 5000400 - P * 10)
    attrs = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]["sarcrop"]
    assert attrs["transforms"][6] == list(g.transform)[:6]
    assert attrs["dates"] == ["2021-04-01", "2021-04-21", "2021-05-11", "2021-05-31"]
    with pytest.raises(IndexError):
        store.read_patch(8)


def test_store_stats_come_from_train_only(tmp_path):
    split = ["test", *SPLIT[1:]]
    images, _ = make_store(tmp_path / "s.zarr", split)
    # make_store computed stats from train patches; an extreme test patch must not matter.
    store = DatasetStore(tmp_path / "s.zarr")
    train = store.indices("train")
    assert 0 not in train
    assert store.normalization.min[0] == pytest.approx(np.nanmin(images[train][:, :, 0]))
    assert store.normalization.max[1] == pytest.approx(np.nanmax(images[train][:, :, 1]))


def test_store_validation_errors(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        DatasetStore(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputDataError, match="plain: not a sarcrop dataset store"):
        DatasetStore(tmp_path / "plain")
    import zarr

    zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3).attrs["x"] = 1
    with pytest.raises(InputDataError, match="not a sarcrop dataset store"):
        DatasetStore(tmp_path / "other.zarr")
    make_store(tmp_path / "s.zarr")
    group = zarr.open_group(tmp_path / "s.zarr", mode="r+")
    attrs = dict(group.attrs["sarcrop"])
    attrs["format_version"] = 99
    group.attrs["sarcrop"] = attrs
    with pytest.raises(InputDataError, match="format 99"):
        DatasetStore(tmp_path / "s.zarr")


# PatchDataset -----------------------------------------------------------------------------


def test_dataset_items(tmp_path):
    images, _ = make_store(tmp_path / "s.zarr")
    ds = PatchDataset(tmp_path / "s.zarr", split="train", positive=("rice",))
    assert len(ds) == 5
    item = ds[1]
    assert item["index"] == 2
    assert item["image"].shape == (STEPS, 2, P, P) and item["image"].dtype == torch.float32
    assert item["target"].dtype == torch.float32 and item["valid"].dtype == torch.bool
    assert item["image"].min() >= 0 and item["image"].max() <= 1
    assert item["target"][:4].eq(1).all() and item["target"][4:].eq(0).all()
    assert not item["valid"][7, 7] and item["valid"].sum() == P * P - 1
    # NaN → 0 after normalisation.
    assert ds[0]["image"][1, :, 0, 0].eq(0).all()
    stats = ds.normalization
    expected = (images[2, :, 0] - stats.min[0]) / (stats.max[0] - stats.min[0])
    np.testing.assert_allclose(item["image"][:, 0].numpy(), np.clip(expected, 0, 1), atol=1e-6)


def test_dataset_bands_timesteps_and_positive(tmp_path):
    make_store(tmp_path / "s.zarr")
    full = PatchDataset(tmp_path / "s.zarr", split="test", positive="maize")
    vv = PatchDataset(
        tmp_path / "s.zarr", split="test", positive="maize", bands=("vv",), timesteps=2
    )
    a, b = full[0], vv[0]
    assert b["image"].shape == (STEPS, 1, P, P)
    torch.testing.assert_close(b["image"][:2, 0], a["image"][:2, 1])
    assert b["image"][2:].eq(0).all()
    assert a["target"].sum() == 4 * 2
    both = PatchDataset(tmp_path / "s.zarr", split=[3], positive=["rice", "maize"])
    assert both[0]["target"].sum() == 4 * P + 4 * 2 and both[0]["index"] == 3
    with pytest.raises(InputDataError, match="classes present: background, maize, rice"):
        PatchDataset(tmp_path / "s.zarr", positive=("barley",))
    with pytest.raises(InputDataError, match="no band"):
        PatchDataset(tmp_path / "s.zarr", bands=("HH",))
    with pytest.raises(InputDataError, match="timesteps"):
        PatchDataset(tmp_path / "s.zarr", timesteps=STEPS + 1)


def test_dataset_normalization_override_and_augment(tmp_path):
    make_store(tmp_path / "s.zarr")
    stats = {"min": [-100.0], "max": [100.0], "bands": ["VH"]}
    ds = PatchDataset(tmp_path / "s.zarr", bands=["VH"], normalization=stats)
    img = ds[0]["image"]
    assert img[0, 0].min() > 0.35 and img[0, 0].max() < 0.5
    torch.manual_seed(0)
    aug = PatchDataset(tmp_path / "s.zarr", augment=True)
    plain = PatchDataset(tmp_path / "s.zarr")
    for i in range(4):
        a, p = aug[i], plain[i]
        # Same pixels, moved together: positive pixel count and per-step sums are preserved.
        assert a["target"].sum() == p["target"].sum()
        torch.testing.assert_close(a["image"].sum(dim=(-1, -2)), p["image"].sum(dim=(-1, -2)))
        # The unlabelled pixel moves with the image: still one pixel.
        assert (~a["valid"]).sum() == 1


def test_dataset_in_worker_processes(tmp_path):
    make_store(tmp_path / "s.zarr")
    ds = PatchDataset(tmp_path / "s.zarr", split="all")
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert [b["image"].shape for b in batches] == [(4, STEPS, 2, P, P)] * 2
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(8))
