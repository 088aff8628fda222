"""Parcels (connected fields of one class) in rasters and stores, and few-label subsets."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

import realdata_support
from sarcrop.data.grid import Grid
from sarcrop.data.normalization import Normalization
from sarcrop.data.parcels import (
    ScoredParcels,
    choose_parcels,
    ground_fields,
    label_subset,
    parcel_classes,
    parcel_ids,
    patch_parcels,
    store_labels,
    store_parcels,
    write_label_subset,
)
from sarcrop.data.season import Season
from sarcrop.data.store import DatasetStore, Location, StoreMetadata, write_store
from sarcrop.errors import InputDataError

shared_data = realdata_support.shared_data  # the fixture (skips where the data is absent)

OTHER, MAIZE, WHEAT = 0, 1, 2
CLASSES = ["other", "maize", "wheat"]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two id arrays group the same pixels (ids may differ), -1 in the same places."""
    if not np.array_equal(a < 0, b < 0):
        return False
    pairs = set(zip(a[a >= 0].tolist(), b[b >= 0].tolist(), strict=True))
    return len(pairs) == len(np.unique(a[a >= 0])) == len(np.unique(b[b >= 0]))


def cut(area: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    offsets = [
        (r, c)
        for r in range(0, area.shape[0] - size + 1, stride)
        for c in range(0, area.shape[1] - size + 1, stride)
    ]
    return np.stack([area[r : r + size, c : c + size] for r, c in offsets]), offsets


def four_fields() -> np.ndarray:
    """8 × 12 area: one 'other' background, two maize fields, one wheat field, one hole."""
    area = np.full((8, 12), OTHER, dtype=np.int16)
    area[1:7, 2:6] = MAIZE  # crosses all four patches of the left half
    area[0:3, 7:11] = WHEAT  # crosses the border of the two right patch columns
    area[5:8, 9:12] = MAIZE
    area[7, 0] = -1
    return area


# Components ---------------------------------------------------------------------------------


def test_components_per_class_value_and_connectivity() -> None:
    labels = np.array(
        [
            [1, 1, 0, 1],
            [0, -1, 0, 1],
            [1, 0, 1, -1],
        ]
    )
    ids = parcel_ids(labels)
    assert ids[1, 1] == -1 and ids[2, 3] == -1
    assert ids[0, 0] == ids[0, 1] and ids[0, 3] == ids[1, 3]
    assert ids[0, 1] != ids[0, 3]  # same class, not touching
    assert ids[0, 2] == ids[1, 2] != ids[1, 0]  # 0-fields split by the unlabelled pixel
    assert len(np.unique(ids[ids >= 0])) == 7 and ids.max() == 6  # 3 + 4, consecutive ids
    # The 0-pixels (1, 2) and (2, 1) touch diagonally: one parcel only with 8-connectivity.
    eight = parcel_ids(labels, connectivity=8)
    assert eight[1, 2] == eight[2, 1] and ids[1, 2] != ids[2, 1]
    classes = parcel_classes(ids, labels)
    assert all(classes[ids[labels >= 0]] == labels[labels >= 0])
    with pytest.raises(ValueError, match="2-D"):
        parcel_ids(labels[None])


def test_fields_crossing_patches_are_joined() -> None:
    area = four_fields()
    patches, offsets = cut(area, 4, 4)  # 2 × 3 patches
    joined = patch_parcels(patches, offsets)
    assert len(np.unique(joined[joined >= 0])) == 4
    classes = parcel_classes(joined, patches)
    assert sorted(classes.tolist()) == [OTHER, MAIZE, MAIZE, WHEAT]
    alone = np.stack([parcel_ids(p) for p in patches])
    counts_alone = sum(len(np.unique(a[a >= 0])) for a in alone)
    assert counts_alone > 10  # each patch on its own would count pieces of fields

    expected, _ = cut(parcel_ids(area), 4, 4)
    assert same_partition(joined, expected)


def test_overlapping_patches_and_separate_locations() -> None:
    area = four_fields()
    patches, offsets = cut(area, 4, 2)  # stride 2: every pixel in up to four patches
    expected, _ = cut(parcel_ids(area), 4, 2)
    assert same_partition(patch_parcels(patches, offsets), expected)

    tiles, corners = cut(area, 4, 4)
    twice = patch_parcels(
        np.concatenate([tiles, tiles]), corners + corners, [0] * len(tiles) + [1] * len(tiles)
    )
    first, second = twice[: len(tiles)], twice[len(tiles) :]
    assert len(np.unique(twice[twice >= 0])) == 8
    assert not set(first[first >= 0].tolist()) & set(second[second >= 0].tolist())

    bad = patches.copy()
    bad[1, 0, 0] = WHEAT if bad[1, 0, 0] != WHEAT else OTHER
    with pytest.raises(InputDataError, match="patch 1 disagrees with an overlapping patch"):
        patch_parcels(bad, offsets)


# Stores ---------------------------------------------------------------------------------------

P = 8
GRID = Grid(CRS.from_epsg(32631), Affine(10, 0, 500000, 0, -10, 5600000), 3 * P, 2 * P)


def blocks_area(seed: int = 3) -> np.ndarray:
    """16 × 24 area of 24 separate 3 × 3 fields (unlabelled 1-pixel lanes), random classes."""
    classes = np.random.default_rng(seed).choice([OTHER, MAIZE, WHEAT], size=(4, 6))
    area = np.full((16, 24), -1, dtype=np.int16)
    for i in range(4):
        for j in range(6):
            area[4 * i : 4 * i + 3, 4 * j : 4 * j + 3] = classes[i, j]
    return area


def write_area_store(
    path: Path,
    area: np.ndarray,
    split: list[str],
    *,
    locations: list[Location] | None = None,
    location: list[int] | None = None,
    grid: Grid = GRID,
) -> DatasetStore:
    patches, offsets = cut(area, P, P)
    if locations:
        patches = np.concatenate([patches] * len(locations))
        offsets = offsets * len(locations)
    n = len(patches)
    images = np.random.default_rng(0).uniform(-20, -5, (n, 2, 1, P, P)).astype(np.float32)
    meta = StoreMetadata(
        bands=("VH",),
        season=Season(dt.date(2021, 4, 1), steps=2, days=20),
        grid=grid,
        patch_size=P,
        stride=P,
        offsets=offsets,
        classes=CLASSES,
        split=split,
        normalization=Normalization((-20.0,), (-5.0,), ("VH",)),
        positive=["maize"],
        locations=locations or [],
        location=location or [],
    )
    return DatasetStore(write_store(path, images, patches, meta))


def test_store_parcels_follow_the_store_layout(tmp_path: Path) -> None:
    area = four_fields()
    area = np.pad(area, ((0, 8), (0, 12)), constant_values=-1)  # 16 × 24 = 2 × 3 patches
    store = write_area_store(tmp_path / "a.zarr", area, ["train"] * 6)
    parcels = store_parcels(store)
    assert parcels.shape == (6, P, P)
    assert len(np.unique(parcels[parcels >= 0])) == 4
    assert same_partition(parcels, cut(parcel_ids(area), P, P)[0])

    season = Season(dt.date(2021, 4, 1), steps=2, days=20)
    two = [Location("a.zarr", GRID, season), Location("b.zarr", GRID, season)]
    merged = write_area_store(
        tmp_path / "m.zarr", area, ["train"] * 12, locations=two, location=[0] * 6 + [1] * 6
    )
    parcels = store_parcels(merged.path)
    assert len(np.unique(parcels[parcels >= 0])) == 8


def test_ground_fields_join_the_parcels_of_stores_over_the_same_ground(tmp_path: Path) -> None:
    """A location scored whole, its own patch split, and another location: the split's parcels
    are the whole location's fields (a field cut by the split is still one), the other
    location's are fields of their own, numbered after."""
    area = np.pad(four_fields(), ((0, 8), (0, 12)), constant_values=-1)  # 2 × 3 patches
    whole = write_area_store(tmp_path / "whole.zarr", area, ["test"] * 6)
    split = ["test", "train", "train", "test", "test", "train"]
    own = write_area_store(tmp_path / "own.zarr", area, split)
    moved = Affine(10, 0, GRID.transform.c + 10_000, 0, -10, GRID.transform.f)
    elsewhere = write_area_store(
        tmp_path / "elsewhere.zarr", area, ["test"] * 6, grid=replace(GRID, transform=moved)
    )

    def scored(store: DatasetStore) -> ScoredParcels:
        return ScoredParcels(store, store_parcels(store)[store.indices("test")])

    tests = [scored(whole), scored(own), scored(elsewhere)]
    ids = ground_fields(tests)
    assert ids[0].tolist() == [0, 1, 2, 3] and ids[2].tolist() == [4, 5, 6, 7]
    # Each of the split's parcels is the whole location's parcel under its pixels.
    full = store_parcels(whole)
    mine = tests[1].parcels
    for parcel, field in zip(np.unique(mine[mine >= 0]), ids[1], strict=True):
        under = full[own.indices("test")][mine == parcel]
        assert set(under.tolist()) == {int(np.unique(full[full >= 0])[field])}
    assert ground_fields(tests[1:2])[0].tolist() == list(range(len(ids[1])))
    assert ground_fields([]) == []
    # Two splits score different patches of the wheat field (it crosses patches 0 and 1): they
    # share no scored pixel, and it is still one field.
    swapped = write_area_store(tmp_path / "swapped.zarr", area, ["train", "test", *split[2:]])
    a, b = scored(own), scored(swapped)
    wheat = int(full[0, 0, 7])  # these stores number their fields alike
    assert wheat in a.parcels[0] and wheat not in a.parcels[1:]  # own: patch 0 scores it
    assert wheat in b.parcels[0] and wheat not in b.parcels[1:]  # swapped: patch 1 does
    ids_a, ids_b = ground_fields([a, b])
    position = [np.unique(t.parcels[t.parcels >= 0]).tolist().index(wheat) for t in (a, b)]
    assert ids_a[position[0]] == ids_b[position[1]]


@pytest.fixture
def blocks(tmp_path: Path) -> DatasetStore:
    split = ["train", "train", "test", "train", "train", "test"]
    return write_area_store(tmp_path / "blocks.zarr", blocks_area(), split)


def kept_parcels(mask_keep: np.ndarray, parcels: np.ndarray, train: np.ndarray) -> set[int]:
    inside = train & (parcels >= 0)
    return set(np.unique(parcels[inside & mask_keep]).tolist())


def test_label_subset_keeps_whole_parcels_of_its_split(blocks: DatasetStore) -> None:
    parcels = store_parcels(blocks)
    train = np.zeros(parcels.shape, bool)
    train[blocks.indices("train")] = True
    n_train = len(np.unique(parcels[train & (parcels >= 0)]))
    assert n_train == 16  # 4 of the 6 patches, 4 fields each

    mask = label_subset(blocks, 0.25, seed=0)
    assert (mask.parcels, mask.total_parcels) == (math.ceil(0.25 * n_train), n_train)
    assert mask.keep[blocks.indices("test")].all()  # the test split is untouched
    kept = kept_parcels(mask.keep, parcels, train)
    assert len(kept) == mask.parcels
    for pid in np.unique(parcels[train & (parcels >= 0)]):
        pixels = mask.keep[train & (parcels == pid)]
        assert pixels.all() or not pixels.any()  # whole parcels only

    labels = blocks.read_labels(0)
    applied = mask.apply(0, labels)
    assert applied.dtype == labels.dtype
    assert np.array_equal(applied >= 0, (labels >= 0) & mask.keep[0])
    assert mask.as_dict()["parcels"] == mask.parcels


def test_label_subset_is_seeded_nested_and_keeps_both_classes(blocks: DatasetStore) -> None:
    parcels = store_parcels(blocks)
    labels = store_labels(blocks)
    train = np.zeros(parcels.shape, bool)
    train[blocks.indices("train")] = True
    chosen = {
        seed: kept_parcels(label_subset(blocks, 0.25, seed).keep, parcels, train)
        for seed in range(6)
    }
    assert chosen[0] == kept_parcels(label_subset(blocks, 0.25, 0).keep, parcels, train)
    assert len({frozenset(c) for c in chosen.values()}) > 1
    classes = parcel_classes(parcels, labels)
    for seed in range(6):
        smallest = kept_parcels(label_subset(blocks, 0.01, seed).keep, parcels, train)
        assert len(smallest) == 2  # one positive and one negative, even below one parcel
        assert {int(classes[p]) == MAIZE for p in smallest} == {True, False}
        larger = kept_parcels(label_subset(blocks, 0.5, seed).keep, parcels, train)
        assert (
            smallest <= larger <= kept_parcels(label_subset(blocks, 1.0, seed).keep, parcels, train)
        )


def test_crop_type_subset_keeps_a_parcel_of_every_class(
    blocks: DatasetStore, tmp_path: Path
) -> None:
    parcels = store_parcels(blocks)
    labels = store_labels(blocks)
    train = np.zeros(parcels.shape, bool)
    train[blocks.indices("train")] = True
    classes = parcel_classes(parcels, labels)
    for seed in range(6):
        smallest = kept_parcels(
            label_subset(blocks, 0.01, seed, classes=["maize", "wheat", "other"]).keep,
            parcels,
            train,
        )
        assert sorted(int(classes[p]) for p in smallest) == [OTHER, MAIZE, WHEAT]
        larger = label_subset(blocks, 0.5, seed, classes=["maize", "wheat", "other"])
        assert smallest <= kept_parcels(larger.keep, parcels, train)
    # Without any parcel of the rest (every field maize or wheat), crop types still subset:
    # a crop against the rest cannot, having no negative parcel.
    area = blocks_area()
    area[area == OTHER] = WHEAT
    store = write_area_store(tmp_path / "two-crops.zarr", area, ["train"] * 6)
    two = store_parcels(store)
    kept = kept_parcels(
        label_subset(store, 0.01, 0, classes=["maize", "wheat"]).keep, two, two >= 0
    )
    kinds = parcel_classes(two, store_labels(store))
    assert sorted(int(kinds[p]) for p in kept) == [MAIZE, WHEAT]
    with pytest.raises(InputDataError, match="none of them negative"):
        label_subset(store, 0.01, 0, positive=["maize", "wheat"])
    area[area == MAIZE] = WHEAT
    wheat = write_area_store(tmp_path / "wheat.zarr", area, ["train"] * 6)
    with pytest.raises(InputDataError, match="all of one class: a few-label subset needs two"):
        label_subset(wheat, 0.01, 0, classes=["maize", "wheat"])


def test_label_subset_errors_are_one_line(blocks: DatasetStore, tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"label fraction must be in \(0, 1\], got 0"):
        label_subset(blocks, 0, 0)
    area = blocks_area()
    area[area == MAIZE] = WHEAT
    store = write_area_store(tmp_path / "no-maize.zarr", area, ["train"] * 6)
    with pytest.raises(InputDataError) as info:
        label_subset(store, 0.5, 0)
    message = str(info.value)
    assert (
        "\n" not in message and "train split: 24 labelled parcels, none of them positive" in message
    )
    with pytest.raises(InputDataError, match="none of them negative"):
        choose_parcels(np.arange(3), np.ones(3, bool), 0.5, 0)


def test_written_subset_store_has_masked_labels(blocks: DatasetStore, tmp_path: Path) -> None:
    mask = label_subset(blocks, 0.25, seed=1)
    out = DatasetStore(write_label_subset(blocks, mask, tmp_path / "subset.zarr"))
    assert np.array_equal(store_labels(out), np.where(mask.keep, store_labels(blocks), -1))
    np.testing.assert_array_equal(out.read_image(3), blocks.read_image(3))
    pixels = out.metadata.statistics["class_pixels"]
    kept = store_labels(out)[out.indices("train")]
    assert pixels["train"]["maize"] == int((kept == MAIZE).sum())
    assert out.metadata.source["label_subset"]["parcels"] == mask.parcels
    assert out.normalization == blocks.normalization


# Real data ------------------------------------------------------------------------------------

MAIZE_CODE = 1200
LOCATIONS = (
    "00002806639B424A",
    "000028085BF08E7E",
    "2021_TZA_COPERNICUS-GEOGLAM_POLY_1101950",
)


@pytest.mark.realdata
@pytest.mark.parametrize("location", LOCATIONS)
def test_real_locations_parcel_counts(shared_data: Path, location: str) -> None:
    """Maize and other parcels per WorldCereal location, by crop code and by maize/other."""
    path = shared_data / "worldcereal-s1-croptype-patches" / "geotiff"
    with rasterio.open(path / f"{location}_labels_CT_LC_10m.tif") as src:
        codes = src.read(1).astype(np.int32)
    codes[codes == 0] = -1  # nodata
    by_code = parcel_ids(codes)
    classes = parcel_classes(by_code, codes)
    sizes = np.bincount(by_code[by_code >= 0])
    maize, other = int((classes == MAIZE_CODE).sum()), int((classes != MAIZE_CODE).sum())
    binary = parcel_ids(np.where(codes < 0, -1, (codes == MAIZE_CODE).astype(np.int32)))
    binary_other = len(np.unique(binary[(codes >= 0) & (codes != MAIZE_CODE)]))
    print(
        f"\n{location}: {maize} maize + {other} other parcels by crop code "
        f"(sizes {sizes.min()}-{sizes.max()} px, median {int(np.median(sizes))}); "
        f"{binary_other} 'other' parcels when the rest is one class"
    )
    assert maize >= 1 and other >= 1
    assert sizes.sum() == int((codes >= 0).sum())  # every labelled pixel in one parcel
    assert binary_other <= other  # merging crop types can only join parcels
    assert len(np.unique(binary[codes == MAIZE_CODE])) == maize


SEASON_START = {
    "00002806639B424A": dt.date(2018, 4, 21),
    "000028085BF08E7E": dt.date(2019, 4, 21),
    "2021_TZA_COPERNICUS-GEOGLAM_POLY_1101950": dt.date(2021, 1, 1),
}


@pytest.mark.realdata
@pytest.mark.parametrize("location", LOCATIONS)
def test_real_store_parcels_equal_the_raster_parcels(
    shared_data: Path, tmp_path: Path, location: str
) -> None:
    """A 64 × 64 location cut into four 32 × 32 patches keeps its fields whole."""
    from sarcrop.data.legends import read_worldcereal_legend
    from sarcrop.data.prepare import prepare
    from sarcrop.options import LabelOptions, SceneOptions, TilingOptions

    folder = shared_data / "worldcereal-s1-croptype-patches"
    labels = folder / "geotiff" / f"{location}_labels_CT_LC_10m.tif"
    with rasterio.open(labels) as src:
        codes = src.read(1).astype(np.int32)
    legend = read_worldcereal_legend(folder / "legend" / "wc2eurocrops_map.csv")
    present = [int(c) for c in np.unique(codes) if c != 0]
    out = prepare(
        str(folder / "geotiff" / f"{location}_S1_*"),
        tmp_path / "s.zarr",
        labels=labels,
        season=Season(SEASON_START[location]),
        label_options=LabelOptions(code_map={c: legend[c] for c in present}),
        positive=["maize"],
        scenes=SceneOptions(resolution=10),
        tiling=TilingOptions(patch_size=32),
        progress=False,
    )
    store = DatasetStore(out)
    parcels = store_parcels(store)
    codes[codes == 0] = -1
    by_code = parcel_ids(codes)
    assert len(store) == 4
    expected = np.stack([by_code[r : r + 32, c : c + 32] for r, c in store.offsets])
    assert same_partition(parcels, expected)
    assert len(np.unique(parcels[parcels >= 0])) == len(np.unique(by_code[by_code >= 0]))
