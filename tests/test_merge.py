"""Several locations into one store: classes by name, splits and georeference kept, statistics."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from realdata_support import write_scene
from sarcrop.cli import main
from sarcrop.data.merge import merge_stores
from sarcrop.data.normalization import compute_normalization
from sarcrop.data.prepare import prepare
from sarcrop.data.season import Season
from sarcrop.data.store import DatasetStore
from sarcrop.errors import InputDataError
from sarcrop.options import SceneOptions, SplitOptions, TilingOptions

P, SIZE = 16, 32
TILES = TilingOptions(patch_size=P)


def location(
    folder: Path,
    *,
    crs: str,
    transform: Affine,
    classes: list[str],
    start: dt.date,
    offset_db: float,
    seed: int,
) -> tuple[Path, Path, Season]:
    """Scenes (one per 10-day period) and a class raster on one 32 × 32 grid."""
    rng = np.random.default_rng(seed)
    season = Season(start, steps=2, days=10)
    for k in range(season.steps):
        values = rng.uniform(-20, -10, size=(2, SIZE, SIZE)).astype(np.float32) + offset_db
        when = dt.datetime.combine(start, dt.time(6)) + dt.timedelta(days=2 + 10 * k)
        write_scene(folder / "scenes", when, values, crs=crs, transform=transform)
    codes = rng.integers(0, len(classes), size=(SIZE, SIZE)).astype(np.uint8)
    labels = folder / "labels.tif"
    with rasterio.open(
        labels,
        "w",
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
    ) as ds:
        ds.write(codes, 1)
        ds.update_tags(**{f"CLASS_{i}": name for i, name in enumerate(classes)})
    return folder / "scenes", labels, season


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """Two locations in different UTM zones and years: one all-train, one all-test."""
    root = tmp_path_factory.mktemp("merge")
    a_transform = Affine(10, 0, 500000, 0, -10, 5600000)
    b_transform = Affine(10, 0, 300000, 0, -10, 4400000)
    a = location(
        root / "a",
        crs="EPSG:32631",
        transform=a_transform,
        classes=["other", "maize", "rice"],
        start=dt.date(2020, 4, 1),
        offset_db=0.0,
        seed=1,
    )
    b = location(
        root / "b",
        crs="EPSG:32630",
        transform=b_transform,
        classes=["rice", "wheat"],
        start=dt.date(2021, 5, 1),
        offset_db=3.0,
        seed=2,
    )
    out = {}
    for name, (scenes, labels, season), side in (("a", a, "train"), ("b", b, "test")):
        out[name] = prepare(
            scenes,
            root / f"{name}.zarr",
            labels=labels,
            season=season,
            tiling=TILES,
            split=SplitOptions(method=side),
            region=f"loc-{name}",
            year=season.start.year,
            progress=False,
        )
    out["root"] = root
    return out


def test_merged_store_keeps_splits_georeference_and_class_names(stores):
    a, b = DatasetStore(stores["a"]), DatasetStore(stores["b"])
    merged = DatasetStore(
        merge_stores([a.path, b.path], stores["root"] / "ab.zarr", progress=False)
    )
    assert len(merged) == len(a) + len(b) == 8
    assert merged.classes == ["other", "maize", "rice", "wheat"]
    assert merged.split == a.split + b.split == ["train"] * 4 + ["test"] * 4
    meta = merged.metadata
    assert [loc.region for loc in meta.locations] == ["loc-a", "loc-b"]
    assert [loc.store for loc in meta.locations] == [str(a.path.resolve()), str(b.path.resolve())]
    assert meta.location == [0] * 4 + [1] * 4
    assert meta.region == "loc-a+loc-b" and meta.year is None
    assert meta.locations[1].season == b.season

    for i, (source, j) in enumerate([(a, k) for k in range(4)] + [(b, k) for k in range(4)]):
        # Pixels identical, labels renamed by class name, georeference of the source patch.
        np.testing.assert_array_equal(merged.read_image(i), source.read_image(j))
        names = np.array([*source.classes, "-"])[source.read_labels(j)]
        merged_names = np.array([*merged.classes, "-"])[merged.read_labels(i)]
        np.testing.assert_array_equal(merged_names, names)
        assert merged.patch_grid(i) == source.patch_grid(j)
    assert merged.patch_grid(4).crs.to_epsg() == 32630

    # Statistics: the merged train split (all of a), class pixels by name.
    assert merged.normalization == a.normalization
    pixels = meta.statistics["class_pixels"]
    assert pixels["test"]["rice"] == b.metadata.statistics["class_pixels"]["test"]["rice"]
    assert pixels["train"]["wheat"] == 0

    # Written attributes agree with what readers compute.
    reopened = DatasetStore(merged.path)
    assert [reopened.metadata.transform(i) for i in range(8)] == [
        s.metadata.transform(j) for s in (a, b) for j in range(4)
    ]


def another_location(
    root: Path, side: str, *, east: float = 600000, percentiles: tuple[float, float] | None = None
) -> Path:
    """A third place (UTM 31N, 100 km from ``a``), all ``side``."""
    scenes, labels, season = location(
        root / f"c-{side}",
        crs="EPSG:32631",
        transform=Affine(10, 0, east, 0, -10, 5600000),
        classes=["other", "rice"],
        start=dt.date(2020, 4, 1),
        offset_db=1.0,
        seed=3,
    )
    split = SplitOptions(method=side)  # type: ignore[arg-type]
    return prepare(
        scenes,
        root / f"c-{side}.zarr",
        labels=labels,
        season=season,
        tiling=TILES,
        split=split,
        region="loc-c",
        year=2020,
        percentiles=percentiles,
        progress=False,
    )


def test_normalisation_is_recomputed_over_the_merged_train_split(stores, tmp_path):
    root = stores["root"]
    b_train = merge_stores([stores["b"], stores["a"]], root / "ba.zarr", progress=False)
    # Re-assign nothing: b stays test, a stays train, so only a's patches count.
    merged = DatasetStore(b_train)
    a = DatasetStore(stores["a"])
    assert merged.normalization == a.normalization
    # Two train locations: statistics over both.
    c = another_location(tmp_path, "train")
    both = DatasetStore(merge_stores([c, merged.path], tmp_path / "cba.zarr", progress=False))
    train = [both.read_image(i) for i in both.indices("train")]
    assert both.normalization == compute_normalization(train, both.bands)
    # A merge of a merge keeps the original locations.
    assert [loc.region for loc in both.metadata.locations] == ["loc-c", "loc-b", "loc-a"]
    assert both.patch_grid(len(both) - 1) == a.patch_grid(len(a) - 1)


def test_a_merge_keeps_the_stores_robust_normalisation_unless_told_otherwise(stores, tmp_path):
    c = another_location(tmp_path, "train", percentiles=(2, 98))
    d = another_location(tmp_path / "d", "test", east=700000, percentiles=(2, 98))
    kept = DatasetStore(merge_stores([c, d], tmp_path / "cd.zarr", progress=False))
    assert kept.normalization == DatasetStore(c).normalization
    assert kept.normalization.percentiles == (2.0, 98.0)
    plain = merge_stores([c, d], tmp_path / "plain.zarr", percentiles=(0, 100), progress=False)
    assert DatasetStore(plain).normalization.percentiles == (0.0, 100.0)
    # Stores of plain min/max beside robust ones: the merge cannot guess.
    with pytest.raises(InputDataError, match=r"normalised differently .*--percentiles LOW HIGH"):
        merge_stores([c, stores["a"]], tmp_path / "mixed.zarr", progress=False)
    assert not (tmp_path / "mixed.zarr").exists()


def test_all_test_merge_marks_its_statistics(stores, tmp_path):
    c = another_location(tmp_path, "test")
    out = merge_stores([stores["b"], c], tmp_path / "bc.zarr", progress=False)
    assert DatasetStore(out).normalization.method == "minmax (test patches)"


def test_the_same_ground_twice_is_refused(stores, tmp_path):
    """Two stores of one place and season (its own twice, or its labels read for another crop)
    would put the same fields in both splits: every score of learnt ground."""
    ba = merge_stores([stores["b"], stores["a"]], tmp_path / "ba.zarr", progress=False)
    for twice in ([stores["b"], stores["b"]], [stores["a"], ba]):
        with pytest.raises(InputDataError, match="hold the same ground in the same season"):
            merge_stores(twice, tmp_path / "x.zarr", progress=False)
        assert not (tmp_path / "x.zarr").exists()


def test_incompatible_stores_are_named_in_one_line(stores, tmp_path):
    first = DatasetStore(stores["a"])
    scenes, labels = (Path(first.metadata.source[key]) for key in ("images", "labels"))

    def prepared(name: str, **options) -> Path:
        """The first store's scenes and labels, prepared with ``options`` changed."""
        options = {"tiling": TILES, **options}
        return prepare(
            scenes, tmp_path / name, labels=labels, season=first.season, progress=False, **options
        )

    wide = prepared("wide.zarr", tiling=TilingOptions(patch_size=32))
    with pytest.raises(InputDataError) as info:
        merge_stores([stores["a"], wide], tmp_path / "x.zarr", progress=False)
    text = str(info.value)
    assert text.startswith(str(wide)) and "patch size 32 here, 16 in" in text
    assert "\n" not in text and not (tmp_path / "x.zarr").exists()

    vh = prepared("vh.zarr", bands=("VH",))
    with pytest.raises(InputDataError, match=r"vh\.zarr: cannot merge: bands VH here, VH\|VV in"):
        merge_stores([stores["a"], vh], tmp_path / "x.zarr", progress=False)
    with pytest.raises(InputDataError, match="at least two stores"):
        merge_stores([stores["a"]], tmp_path / "x.zarr", progress=False)

    coarse = prepared("coarse.zarr", scenes=SceneOptions(resolution=20))
    with pytest.raises(InputDataError, match=r"coarse\.zarr: cannot merge: pixel size 20 m here"):
        merge_stores([stores["a"], coarse], tmp_path / "x.zarr", progress=False)


def test_cli_merge(stores, tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    code = main(["merge", str(stores["a"]), str(stores["b"]), "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "patches: 8 (4 train, 4 test)" in text and "minmax, train only" in text
    assert DatasetStore(out).split == ["train"] * 4 + ["test"] * 4

    code = main(["merge", str(stores["a"]), str(tmp_path / "missing.zarr"), "--out", str(out)])
    assert code == 2
    assert "missing.zarr: dataset store does not exist" in capsys.readouterr().err
