"""`prepare` end to end on small GeoTIFFs: georeference, labels, split, normalisation, CLI."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry import box

from sarcrop.cli import main
from sarcrop.data.dataset import PatchDataset
from sarcrop.data.prepare import prepare, prepare_region, tile_offsets
from sarcrop.data.season import Season
from sarcrop.data.split import split_patches
from sarcrop.data.store import DatasetStore
from sarcrop.errors import InputDataError
from sarcrop.options import SplitOptions, TilingOptions

P = 16
TILES = TilingOptions(patch_size=P)
H, W = 40, 52  # not multiples of P: edge patches are padded
UTM = CRS.from_epsg(32631)
TRANSFORM = Affine(10, 0, 600000, 0, -10, 4800000)
SEASON = Season(dt.date(2021, 4, 1), steps=3, days=10)
CLASSES = ["other", "maize", "rice"]
NODATA = -9999.0


def write_scene(folder, when, data):
    name = f"S1A_IW_GRDH_{when:%Y%m%dT%H%M%S}_ASC_test.tif"
    path = folder / name
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=W,
        height=H,
        count=2,
        dtype="float32",
        crs=UTM,
        transform=TRANSFORM,
        nodata=NODATA,
    ) as ds:
        ds.write(np.where(np.isnan(data), NODATA, data).astype(np.float32))
        ds.descriptions = ("VH", "VV")
        ds.update_tags(ACQUISITION_TIME=when.isoformat())
    return path


def label_array():
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[:, 20:40] = 2  # rice band of columns
    labels[30:, :10] = 1
    labels[0, :] = 255  # unlabelled first row
    return labels


def write_labels(path, labels):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=W,
        height=H,
        count=1,
        dtype="uint8",
        crs=UTM,
        transform=TRANSFORM,
        nodata=255,
    ) as ds:
        ds.write(labels, 1)
        ds.update_tags(**{f"CLASS_{i}": n for i, n in enumerate(CLASSES)})
    return path


@pytest.fixture
def region(tmp_path):
    """One scene per period, one more after the season, a class raster on the same grid."""
    rng = np.random.default_rng(0)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for k in range(SEASON.steps):
        img = rng.uniform(-22, -8, size=(2, H, W)).astype(np.float32)
        img[:, 5, 7] = np.nan  # one nodata pixel
        write_scene(scenes, dt.datetime(2021, 4, 3 + 10 * k, 6), img)
    write_scene(scenes, dt.datetime(2021, 6, 20, 6), np.full((2, H, W), -1.0, np.float32))
    labels = write_labels(tmp_path / "labels.tif", label_array())
    return tmp_path, scenes, labels


def test_prepare_georeference_labels_and_stats(region, tmp_path):
    _, scenes, labels = region
    out = prepare(
        scenes,
        tmp_path / "ds.zarr",
        labels=labels,
        season=SEASON,
        tiling=TILES,
        split=SplitOptions(seed=1),
        positive=["rice"],
        progress=False,
    )
    store = DatasetStore(out)
    offsets = tile_offsets(H, W, P, P)
    assert offsets[-1] == (32, 48) and len(offsets) == 12
    assert store.offsets == offsets  # every patch has labelled, observed pixels
    assert store.classes == CLASSES and store.metadata.positive == ["rice"]
    assert store.split == split_patches(offsets, seed=1)

    # The patch at (16, 32) read from the source GeoTIFF with rasterio, window by window.
    i = offsets.index((16, 32))
    image, lab = store.read_patch(i)
    patch_grid = store.patch_grid(i)
    assert patch_grid.transform == TRANSFORM @ Affine.translation(32, 16)
    for k, path in enumerate(sorted(scenes.glob("*.tif"))[: SEASON.steps]):
        with rasterio.open(path) as src:
            window = Window(32, 16, P, P)
            assert src.window_transform(window) == patch_grid.transform
            expected = src.read(window=window, masked=True).filled(np.nan)
        np.testing.assert_allclose(image[k], expected, rtol=1e-5)
    np.testing.assert_array_equal(lab, label_array()[16:32, 32:48].astype(np.int16))

    # Bottom-right edge patch: padded with NaN / -1 outside the area.
    image, lab = store.read_patch(offsets.index((32, 48)))
    assert np.isnan(image[:, :, 8:, :]).all() and np.isnan(image[:, :, :, 4:]).all()
    assert (lab[8:] == -1).all() and (lab[:, 4:] == -1).all()
    np.testing.assert_array_equal(lab[:8, :4], 0)

    # Never-observed pixel (5, 7) is unlabelled; first row keeps the raster's nodata.
    first, lab0 = store.read_patch(0)
    assert lab0[5, 7] == -1 and np.isnan(first[:, :, 5, 7]).all()
    assert (lab0[0] == -1).all()

    # Normalisation from train patches only, per band over all steps.
    train = store.indices("train")
    images = np.stack([store.read_image(j) for j in train])
    assert store.normalization.min == pytest.approx([np.nanmin(images[:, :, b]) for b in range(2)])
    assert store.normalization.max == pytest.approx([np.nanmax(images[:, :, b]) for b in range(2)])
    attrs = store.metadata
    assert attrs.source["acquisitions"] == [f"2021-04-{d:02d}T06:00:00" for d in (3, 13, 23)]
    assert attrs.source["acquisitions_per_period"] == [1, 1, 1]
    pixels = attrs.statistics["class_pixels"]
    total_rice = sum(pixels[s]["rice"] for s in ("train", "test"))
    assert total_rice == np.count_nonzero(label_array()[1:] == 2)


def test_periods_without_an_acquisition_are_named_in_one_warning(region, tmp_path):
    """A season running past the scenes (a start or length off by months) leaves composites
    empty, which the store would otherwise take without a sign."""
    _, scenes, labels = region
    options = {"labels": labels, "tiling": TILES, "progress": False}
    with warnings.catch_warnings(record=True) as fits:
        warnings.simplefilter("always")
        prepare(scenes, tmp_path / "fits.zarr", season=SEASON, **options)
    assert not [w for w in fits if "composite periods" in str(w.message)]  # a scene in each
    longer = Season(SEASON.start, steps=5, days=SEASON.days)  # to 21 May; no scene 1-21 May
    with pytest.warns(UserWarning) as caught:
        out = prepare(scenes, tmp_path / "longer.zarr", season=longer, **options)
    said = [str(w.message) for w in caught if "composite periods" in str(w.message)]
    assert said == [
        "2 of the 5 composite periods have no acquisition; empty (read as not yet observed): "
        "periods 4 (2021-05-01 to 2021-05-10), 5 (2021-05-11 to 2021-05-20); check "
        "--season-start, --timesteps and --days against the acquisitions"
    ]
    assert DatasetStore(out).metadata.source["acquisitions_per_period"] == [1, 1, 1, 0, 0]


def test_normalisation_ignores_extreme_test_patches(tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    offsets = tile_offsets(H, W, P, P)
    split = split_patches(offsets, seed=0)
    r, c = offsets[split.index("test")]
    rng = np.random.default_rng(3)
    for k in range(SEASON.steps):
        img = rng.uniform(-20, -10, size=(2, H, W)).astype(np.float32)
        img[:, r : r + P, c : c + P] = 5.0  # very bright test patch
        img[:, r + 1, c + 1] = -60.0
        write_scene(scenes, dt.datetime(2021, 4, 2 + 10 * k), img)
    labels = write_labels(tmp_path / "labels.tif", np.zeros((H, W), np.uint8))
    store = DatasetStore(
        prepare(
            scenes, tmp_path / "ds.zarr", labels=labels, season=SEASON, tiling=TILES, progress=False
        )
    )
    assert store.split == split
    assert all(-20 <= v <= -10 for v in store.normalization.min + store.normalization.max)
    test_patch = store.read_image(store.offsets.index((r, c)))
    assert np.nanmax(test_patch) == pytest.approx(5.0, abs=1e-3)
    assert np.nanmin(test_patch) == pytest.approx(-60.0, abs=1e-3)


def test_prepare_with_parcels_and_skipped_patches(region, tmp_path):
    import geopandas as gpd

    _, scenes, _ = region
    # One rice parcel in the top-left patch; another over an area with no scenes' data.
    x0, y0 = TRANSFORM @ (2, 2)
    x1, y1 = TRANSFORM @ (10, 12)
    parcels = gpd.GeoDataFrame({"crop": ["rice"]}, geometry=[box(x0, y1, x1, y0)], crs=UTM)
    path = tmp_path / "parcels.gpkg"
    parcels.to_crs(4326).to_file(path, driver="GPKG")
    out = prepare(
        scenes,
        tmp_path / "p.zarr",
        labels=path,
        season=SEASON,
        tiling=TilingOptions(patch_size=P, stride=8),  # overlapping: a store that trains
        split=SplitOptions(method="train"),
        progress=False,
    )
    store = DatasetStore(out)
    assert store.classes == ["background", "rice"]
    assert len(store) == len(tile_offsets(H, W, P, 8))  # background labels everywhere
    assert store.metadata.stride == 8 and set(store.split) == {"train"}
    ds = PatchDataset(store, split="all", positive="rice")
    total = int(ds[store.offsets.index((0, 0))]["target"].sum())
    assert 70 <= total <= 90  # 8 × 10 pixels; reprojection may move an edge by a pixel

    # With min_valid_fraction, patches mostly outside the area are skipped.
    store = DatasetStore(
        prepare(
            scenes,
            tmp_path / "q.zarr",
            labels=path,
            season=SEASON,
            tiling=TilingOptions(patch_size=P, min_valid_fraction=0.5),
            progress=False,
        )
    )
    assert (32, 48) not in store.offsets and (0, 0) in store.offsets


def test_prepare_errors(region, tmp_path):
    _, scenes, labels = region
    late = Season(dt.date(2022, 1, 1), steps=3, days=10)
    with pytest.raises(InputDataError, match="no acquisition falls in the season"):
        prepare(
            scenes, tmp_path / "x.zarr", labels=labels, season=late, tiling=TILES, progress=False
        )
    with pytest.raises(InputDataError, match="classes present: other, maize, rice"):
        prepare(
            scenes,
            tmp_path / "x.zarr",
            labels=labels,
            season=SEASON,
            tiling=TILES,
            positive=["barley"],
            progress=False,
        )
    assert not (tmp_path / "x.zarr").exists()


def test_cli_prepare_region_folder(region, tmp_path, capsys):
    root, _, _ = region
    (root / "region.json").write_text(
        json.dumps(
            {
                "region": "testland",
                "year": 2021,
                "positive": "rice",
                "season": SEASON.to_dict(),
                "files": {"scenes": "scenes", "labels": "labels.tif"},
            }
        )
    )
    out = tmp_path / "cli.zarr"
    code = main(
        ["prepare", "--images", str(root), "--patch-size", str(P), "--quiet", "--out", str(out)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "patches: 12 (7 train, 5 test)" in text
    assert "positive (rice)" in text and "normalisation (minmax, train only)" in text
    store = DatasetStore(out)
    assert store.metadata.region == "testland" and store.metadata.year == 2021
    assert store.season == SEASON
    same = prepare_region(root, tmp_path / "api.zarr", tiling=TILES, progress=False)
    assert DatasetStore(same).split == store.split

    code = main(
        [
            "prepare",
            "--images",
            str(root / "scenes"),
            "--labels",
            str(root / "labels.tif"),
            "--positive",
            "barley",
            "--season-start",
            "2021-04-01",
            "--out",
            str(tmp_path / "bad.zarr"),
        ]
    )
    assert code == 2
    assert "barley" in capsys.readouterr().err


# ------------------------------------------------------------------ option groups, whole splits


def _same_store(a: DatasetStore, b: DatasetStore) -> None:
    assert a.offsets == b.offsets and a.split == b.split and a.classes == b.classes
    assert a.season == b.season and a.normalization == b.normalization
    assert a.metadata.source["composite"] == b.metadata.source["composite"]
    for i in range(len(a)):
        np.testing.assert_array_equal(a.read_image(i), b.read_image(i))
        np.testing.assert_array_equal(a.read_labels(i), b.read_labels(i))


def _one_region(region: dict, folder: Path) -> dict:
    """An experiment config of one real region ``a``, fine-tuned and tested on itself from a
    pre-trained checkpoint that is never read."""
    return {
        "name": "t",
        "regions": {"a": region},
        "pretrain": {"checkpoint": str(folder / "unused.safetensors")},
        "scenarios": [{"finetune": "a", "test": "a", "crop": "rice"}],
    }


# The same tiling and split as API options, flags and YAML: overlapping patches of a store
# that trains, and a block split of patches side by side.
LAYOUTS = {
    "overlap": ({"patch_size": P, "stride": 8}, {"method": "train"}),
    "blocks": ({"patch_size": P}, {"method": "block", "block": 2, "seed": 3}),
}


def _flags(options: dict) -> list[str]:
    return [f for key, value in options.items() for f in (f"--{key.replace('_', '-')}", str(value))]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_api_cli_and_experiment_yaml_build_the_same_store(region, tmp_path, layout):
    from sarcrop.experiments.config import experiment_config_from_dict
    from sarcrop.experiments.runner import ExperimentRunner
    from sarcrop.options import CompositeOptions

    _, scenes, labels = region
    tiling, split = LAYOUTS[layout]
    season = Season(dt.date(2021, 4, 1), steps=2, days=15)
    api = prepare(
        scenes,
        tmp_path / "api.zarr",
        labels=labels,
        season=season,
        composite=CompositeOptions(method="median", space="db", speckle_filter=3),
        tiling=TilingOptions(**tiling),
        split=SplitOptions(**split),
        percentiles=(2, 98),
        progress=False,
    )
    cli = tmp_path / "cli.zarr"
    argv = ["prepare", "--images", str(scenes), "--labels", str(labels), "--out", str(cli)]
    argv += ["--season-start", "2021-04-01", "--timesteps", "2", "--days", "15"]
    argv += ["--method", "median", "--space", "db", "--speckle-filter", "3"]
    rest = {key: value for key, value in split.items() if key != "method"}
    argv += [*_flags(tiling), "--split", split["method"], *_flags(rest)]
    argv += ["--percentiles", "2", "98"]
    assert main([*argv, "--quiet"]) == 0
    region_yaml = {
        "images": str(scenes),
        "labels": str(labels),
        "season_start": "2021-04-01",
        "timesteps": 2,
        "days": 15,
        "composite": {"method": "median", "space": "db", "speckle_filter": 3},
        "tiling": tiling,
        "split": split,
        "percentiles": [2, 98],
    }
    config = experiment_config_from_dict(_one_region(region_yaml, tmp_path))
    runner_store, _ = ExperimentRunner(config, tmp_path / "run").region_store("a")

    stores = [DatasetStore(p) for p in (api, cli, runner_store)]
    assert stores[0].metadata.source["composite"] == {
        "method": "median",
        "space": "db",
        "min_acquisitions": 1,
        "speckle_filter": 3,
        "gaps": "interpolate",
    }
    assert stores[0].metadata.source["split"]["method"] == split["method"]
    assert stores[0].normalization.method == "percentile 2-98"
    assert stores[0].steps == 2 and stores[0].metadata.stride == tiling.get("stride", P)
    for other in stores[1:]:
        _same_store(stores[0], other)


def test_yaml_region_options_are_validated_as_groups():
    from sarcrop.errors import ConfigError
    from sarcrop.experiments.config import experiment_config_from_dict

    def config(region: dict) -> dict:
        return {
            "name": "t",
            "regions": {"a": {"simulate": {"preset": "spain"}, **region}},
            "pretrain": {"region": "a"},
            "scenarios": [{"finetune": "a", "test": "a", "crop": "rice"}],
        }

    with pytest.raises(ConfigError, match=r"patch_size: unknown key"):
        experiment_config_from_dict(config({"patch_size": 32}))
    with pytest.raises(ConfigError, match=r"tiling.patch_size"):
        experiment_config_from_dict(config({"tiling": {"patch_size": 4}}))
    parsed = experiment_config_from_dict(config({"split": {"method": "test"}}))
    assert parsed.regions["a"].split.method == "test"
    assert parsed.regions["a"].tiling == TilingOptions()  # the API's defaults
    # percentiles left out stay out of the region's dump: earlier cache keys stay valid
    assert "percentiles" not in parsed.regions["a"].model_dump(mode="json")
    with pytest.raises(ConfigError, match=r"percentiles must satisfy 0 <= low < high <= 100"):
        experiment_config_from_dict(config({"percentiles": [99, 1]}))
    drawn = config({"percentiles": [1, 99]})
    drawn["regions"]["a"]["simulate"]["draws"] = 2
    merged = experiment_config_from_dict(drawn).regions
    assert merged["a"].percentiles == merged["a1"].percentiles == (1.0, 99.0)


def test_speckle_filtered_strips_match_the_whole_area(region, tmp_path):
    from sarcrop.data.composite import composite
    from sarcrop.data.reader import open_scenes
    from sarcrop.options import CompositeOptions

    _, scenes, labels = region
    options = CompositeOptions(speckle_filter=5)
    store = DatasetStore(
        prepare(
            scenes,
            tmp_path / "f.zarr",
            labels=labels,
            season=SEASON,
            composite=options,
            tiling=TILES,
            progress=False,
        )
    )
    whole = composite(open_scenes(scenes), SEASON, ("VH", "VV"), **options.model_dump())
    plain = composite(open_scenes(scenes), SEASON, ("VH", "VV"))
    for i, (r, c) in enumerate(store.offsets):
        h, w = min(P, H - r), min(P, W - c)
        image = store.read_image(i)[:, :, :h, :w]
        np.testing.assert_allclose(image, whole[:, :, r : r + h, c : c + w], rtol=1e-5)
    assert not np.allclose(whole, plain, equal_nan=True)  # the filter did something


@pytest.mark.parametrize("side", ["train", "test"])
def test_a_whole_location_goes_to_one_split(region, tmp_path, capsys, side):
    _, scenes, labels = region
    out = tmp_path / f"{side}.zarr"
    argv = ["prepare", "--images", str(scenes), "--labels", str(labels), "--out", str(out)]
    argv += ["--season-start", "2021-04-01", "--timesteps", "3", "--days", "10"]
    assert main([*argv, "--patch-size", str(P), "--split", side, "--quiet"]) == 0
    text = capsys.readouterr().out
    store = DatasetStore(out)
    assert store.split == [side] * len(store) and len(store) == 12
    assert store.metadata.statistics["patches"][side] == 12
    other = "test" if side == "train" else "train"
    assert f"{side} pixels: " in text and f"{other} pixels" not in text  # nothing to list there
    assert f"{other} positive" not in text
    images = np.stack([store.read_image(i) for i in range(len(store))])
    expected_min = [np.nanmin(images[:, :, b]) for b in range(2)]
    assert store.normalization.min == pytest.approx(expected_min)
    if side == "train":
        assert store.normalization.method == "minmax"
        assert "minmax, train only" in text
    else:
        # Recorded for reference, marked so nobody mistakes it for training statistics.
        assert store.normalization.method == "minmax (test patches)"
        assert "normalisation (minmax (test patches))" in text
        # Usable for evaluation with another model's statistics.
        theirs = {"min": [-30.0, -25.0], "max": [0.0, 5.0], "bands": ["VH", "VV"]}
        sample = PatchDataset(store, "test", "rice", normalization=theirs)[0]
        raw = store.read_image(store.indices("test")[0])
        expected = np.nan_to_num(np.clip((raw[:, 0] + 30) / 30, 0, 1))
        np.testing.assert_allclose(sample["image"][:, 0], expected, rtol=1e-5)
        assert PatchDataset(store, "train", "rice").indices == []


def test_invalid_options_fail_before_any_work():
    from sarcrop.errors import ConfigError

    with pytest.raises(ConfigError, match="stride 32 is larger than patch_size 16"):
        TilingOptions(patch_size=16, stride=32)
    with pytest.raises(ConfigError):
        SplitOptions(method="random")


@pytest.mark.parametrize("method", ["patch", "block", "test"])
def test_overlapping_patches_are_refused_where_a_location_is_tested(region, tmp_path, method):
    """A stride below the patch size puts the same ground in train and test of one location
    (a random or block split), or scores a test pixel once per patch over it: refused before
    any compositing, in prepare and in an experiment's region alike."""
    from sarcrop.errors import ConfigError
    from sarcrop.experiments.config import experiment_config_from_dict

    _, scenes, labels = region
    tiling, split = TilingOptions(patch_size=P, stride=8), SplitOptions(method=method)
    with pytest.raises(ConfigError, match=r"stride 8 below patch_size 16 overlaps patches"):
        prepare(
            scenes,
            tmp_path / "s.zarr",
            labels=labels,
            season=SEASON,
            tiling=tiling,
            split=split,
            progress=False,
        )
    assert not (tmp_path / "s.zarr").exists()
    region_yaml = {"images": str(scenes), "labels": str(labels), "season_start": "2021-04-01"}
    region_yaml |= {"tiling": {"patch_size": P, "stride": 8}, "split": {"method": method}}
    with pytest.raises(ConfigError, match=r"regions.a.*overlaps patches"):
        experiment_config_from_dict(_one_region(region_yaml, tmp_path))
