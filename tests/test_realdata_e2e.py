"""Real data end to end: the Flanders maize example at CI size, and `prepare` on every real
layout in ../shared/data (skipped where that folder is absent)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio

import realdata_support
from sarcrop.cli import main as cli_main
from sarcrop.data.prepare import prepare
from sarcrop.data.reader import open_scenes
from sarcrop.data.season import Season
from sarcrop.data.store import DatasetStore
from sarcrop.errors import InputDataError
from sarcrop.evaluation.metrics import read_metrics_json
from sarcrop.options import LabelOptions, SceneOptions, TilingOptions
from sarcrop.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.realdata
shared_data = realdata_support.shared_data  # the fixture (skips where the data is absent)

MAIZE_PIXELS = {"00002806639B424A": 1249, "000028085BF08E7E": 1277}
# 16 px patches kept by prepare (two 2018 patches have too few valid labelled pixels).
PATCHES_16 = {"00002806639B424A": 14, "000028085BF08E7E": 16}
OTHER_PIXELS = {"00002806639B424A": 31 + 25 + 96 + 835, "000028085BF08E7E": 190 + 290 + 445 + 1102}


def _load_example() -> ModuleType:
    path = realdata_support.REPO / "examples" / "worldcereal_flanders.py"
    spec = importlib.util.spec_from_file_location("worldcereal_flanders", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


example = _load_example()


@pytest.fixture(scope="module")
def stores(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("flanders")
    return {
        "finetune": example.prepare_location(
            shared_data, example.FINETUNE_LOCATION, work / "finetune.zarr", split="train"
        ),
        "test": example.prepare_location(
            shared_data, example.TEST_LOCATION, work / "test.zarr", split="test"
        ),
    }


@pytest.mark.parametrize(
    ("role", "location", "year"),
    [("finetune", "00002806639B424A", 2018), ("test", "000028085BF08E7E", 2019)],
)
def test_flanders_store_grid_labels_and_values(
    stores: dict[str, Path], role: str, location: str, year: int
) -> None:
    store = DatasetStore(stores[role])
    with rasterio.open(store.metadata.source["labels"]) as src:
        label_transform = src.transform
    assert store.grid.crs.to_epsg() == 32631
    assert store.grid.resolution == (10.0, 10.0)
    assert (store.grid.width, store.grid.height) == (64, 64)
    assert store.grid.transform == label_transform  # the 10 m label grid, not the 20 m scenes
    assert len(store) == PATCHES_16[location]
    assert set(store.split) == {"train" if role == "finetune" else "test"}
    assert store.classes == ["other", "maize"] and store.metadata.year == year
    assert store.season.start == dt.date(year, 4, 21) and store.steps == 8
    labels = np.stack([store.read_labels(i) for i in range(len(store))])
    assert int((labels == 1).sum()) == MAIZE_PIXELS[location]
    assert int((labels == 0).sum()) == OTHER_PIXELS[location]
    images = np.stack([store.read_image(i) for i in range(len(store))])
    assert np.isfinite(images).all()  # every 20-day period has acquisitions (5-8 each)
    vh, vv = np.median(images[:, :, 0]), np.median(images[:, :, 1])
    assert -22.0 < vh < -13.0 and -14.0 < vv < -6.0 and vv - vh > 4.0
    assert images.min() > -40.0 and images.max() < 15.0


def test_flanders_random_forest_across_locations(stores: dict[str, Path]) -> None:
    settings = example.Settings.quick()
    metrics = example.random_forest(stores["finetune"], stores["test"], settings)
    assert metrics["tp"] + metrics["fn"] == MAIZE_PIXELS[example.TEST_LOCATION]
    assert metrics["tp"] + metrics["fp"] + metrics["fn"] + metrics["tn"] == 3304
    for key in ("iou", "precision", "recall", "f1"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0
    # Always saying "maize" scores IoU 1277/3304 = 0.39; the forest must beat that.
    assert metrics["iou"] > 0.45


def test_flanders_baseline_cli(stores: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    code = cli_main(
        [
            "baseline",
            str(stores["finetune"]),
            "--test-store",
            str(stores["test"]),
            "--positive",
            "maize",
            "--n-estimators",
            "20",
            "--jobs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = read_metrics_json(out)
    assert result["test_patches"] == 16 and result["positive"] == ["maize"]
    assert 0.0 < result["metrics"]["iou"] <= 1.0
    # The fine-tuning store has no test split of its own: a one-line error, exit 2.
    assert cli_main(["baseline", str(stores["finetune"])]) == 2


def test_flanders_shipped_model_then_fte(stores: dict[str, Path], tmp_path: Path) -> None:
    settings = example.Settings.quick()
    metrics = example.transfer(
        stores["finetune"], stores["test"], "fte", tmp_path / "fte", settings
    )
    _, tuned = load_checkpoint(tmp_path / "fte" / "model.safetensors")
    assert tuned.bands == ["VH", "VV"] and tuned.positive == ["maize"]
    assert tuned.strategy == "fte" and tuned.parent["bands"] == ["VH", "VV"]
    assert tuned.normalization["method"] == "fixed"  # the shipped model's dB ranges
    assert metrics["tp"] + metrics["fn"] == MAIZE_PIXELS[example.TEST_LOCATION]
    assert math.isfinite(metrics["iou"]) and 0.0 <= metrics["iou"] <= 1.0


def test_flanders_example_table(shared_data: Path, tmp_path: Path) -> None:
    settings = dataclasses.replace(example.Settings.quick(), seeds=2, strategies=())
    result = example.run(shared_data, tmp_path, settings, reverse=True)
    assert result["test_location"] == example.FINETUNE_LOCATION
    assert [m["tp"] + m["fn"] for m in result["metrics"]["RF"]] == [1249, 1249]
    table = example.format_table(result)
    assert "RF" in table and "answering maize everywhere: IoU 0.559" in table


# ------------------------------------------------------------------ prepare on every layout


def _patches(root: Path) -> Path:
    return root / "worldcereal-s1-croptype-patches"


def test_prepare_worldcereal_netcdf(shared_data: Path, tmp_path: Path) -> None:
    location = example.FINETUNE_LOCATION
    cube = next((_patches(shared_data) / "netcdf" / location).glob("S1_GRD-ASCENDING_*.nc"))
    labels = _patches(shared_data) / "geotiff" / f"{location}_labels_CT_LC_10m.tif"
    out = prepare(
        cube,
        tmp_path / "nc.zarr",
        labels=labels,
        season=Season(dt.date(2018, 4, 21)),
        label_options=LabelOptions(code_map={1200: "maize"}),
        positive=["maize"],
        scenes=SceneOptions(resolution=10),
        tiling=TilingOptions(patch_size=64),
        progress=False,
    )
    store = DatasetStore(out)
    assert len(store) == 1 and store.grid.resolution == (10.0, 10.0)
    assert int((store.read_labels(0) == store.classes.index("maize")).sum()) == 1249
    assert store.metadata.source["acquisitions_per_period"] == [8, 6, 6, 8, 5, 6, 8, 5]


@pytest.mark.parametrize("location", ["00002806639B424A", "000028085BF08E7E"])
def test_worldcereal_netcdf_labels_as_published(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], location: str
) -> None:
    """``--labels OUTPUT_POLY-110_*.nc`` (CT by default) gives the GeoTIFF labels' classes."""
    folder = _patches(shared_data)
    cube = next((folder / "netcdf" / location).glob("S1_GRD-ASCENDING_*.nc"))
    labels_nc = next((folder / "netcdf" / location).glob("OUTPUT_POLY-110_*.nc"))
    labels_tif = folder / "geotiff" / f"{location}_labels_CT_LC_10m.tif"
    legend = folder / "legend" / "wc2eurocrops_map.csv"
    scenes = ["--images", str(cube), "--season-start", f"{example.SEASON_START[location]}"]
    scenes += ["--resolution", "10", "--patch-size", "32", "--quiet"]
    crops = ["--legend", str(legend), "--positive", "maize"]
    stores = {}
    for kind, labels in (("nc", labels_nc), ("tif", labels_tif)):
        out = tmp_path / f"{kind}.zarr"
        argv = ["prepare", *scenes, *crops, "--labels", str(labels), "--out", str(out)]
        assert cli_main(argv) == 0
        stores[kind] = DatasetStore(out)
    capsys.readouterr()
    nc, tif = stores["nc"], stores["tif"]
    assert nc.classes == tif.classes and set(nc.classes) == {"maize", "other"}
    assert nc.metadata.statistics["class_pixels"] == tif.metadata.statistics["class_pixels"]
    for i in range(len(tif)):
        np.testing.assert_array_equal(nc.read_labels(i), tif.read_labels(i))
    maize = nc.classes.index("maize")
    assert (
        sum(int((nc.read_labels(i) == maize).sum()) for i in range(len(nc)))
        == (MAIZE_PIXELS[location])
    )
    # The legend as a notebook (or a YAML region) gives it: the command's labels.
    from sarcrop.data.prepare import prepare

    api = prepare(
        cube,
        tmp_path / "api.zarr",
        labels=labels_tif,
        season=example.SEASON_START[location],
        positive="maize",
        label_options={"legend": legend},
        scenes={"resolution": 10},
        tiling={"patch_size": 32},
        progress=False,
    )
    api_store = DatasetStore(api)
    assert api_store.classes == tif.classes
    for i in range(len(tif)):
        np.testing.assert_array_equal(api_store.read_labels(i), tif.read_labels(i))

    # Another variable by name: land cover, every code named.
    out = tmp_path / "lc.zarr"
    land = ["--code-map", '{"11": "annual", "13": "grass", "60": "built"}', "--labels"]
    land += [str(labels_nc), "--label-variable", "LC"]
    assert cli_main(["prepare", *scenes, *land, "--out", str(out)]) == 0
    pixels = DatasetStore(out).metadata.statistics["class_pixels"]
    total = {k: pixels["train"][k] + pixels["test"][k] for k in ("annual", "grass", "built")}
    import xarray as xr

    with xr.open_dataset(labels_nc) as ds:
        codes = ds["LC"].values
    assert total == {
        n: int((codes == c).sum()) for n, c in (("annual", 11), ("grass", 13), ("built", 60))
    }
    assert total["annual"] > 0
    land[-1] = "IRRIGATION"
    assert cli_main(["prepare", *scenes, *land, "--out", str(out)]) == 2
    assert "no label variable 'IRRIGATION'" in capsys.readouterr().err


def test_prepare_togo_named_bands_with_label_raster(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "cropharvest-togo-s1s2-monthly" / "98-togo_2019-02-06_2020-02-01.tif"
    with rasterio.open(path) as src:
        profile = {
            "driver": "GTiff",
            "width": src.width,
            "height": src.height,
            "count": 1,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "nodata": 255,
        }
    classes = np.zeros((17, 17), np.uint8)
    classes[:, :9] = 1  # a "crop" field on the western half
    classes[0] = 255
    labels = tmp_path / "labels.tif"
    with rasterio.open(labels, "w", **profile) as dst:
        dst.write(classes, 1)
    out = prepare(
        path,
        tmp_path / "togo.zarr",
        labels=labels,
        label_options=LabelOptions(class_names=("noncrop", "crop")),
        positive=["crop"],
        season=Season(dt.date(2019, 2, 6), steps=4, days=30),
        tiling=TilingOptions(patch_size=16),
        progress=False,
    )
    store = DatasetStore(out)
    assert store.grid.crs.to_epsg() == 4326 and len(store) == 4
    counts = store.metadata.statistics["class_pixels"]
    total = {k: sum(split.get(k, 0) for split in counts.values()) for k in ("crop", "noncrop")}
    assert total == {"crop": 16 * 9, "noncrop": 16 * 8}
    image = store.read_image(0)
    assert np.nanmedian(image[:, 0]) < np.nanmedian(image[:, 1]) < -5  # VH below VV, in dB


def test_prepare_stac_catalog_over_real_files(shared_data: Path, tmp_path: Path) -> None:
    location = example.FINETUNE_LOCATION
    folder = _patches(shared_data) / "geotiff"
    season = Season(dt.date(2018, 4, 21), steps=2, days=20)
    reference = open_scenes(str(folder / f"{location}_S1_*"))
    picks = [k for k, t in enumerate(reference.times) if season.period_of(t) is not None]
    catalog = realdata_support.stac_catalog(folder, location, season, tmp_path)
    out = prepare(
        catalog,
        tmp_path / "stac.zarr",
        labels=folder / f"{location}_labels_CT_LC_10m.tif",
        label_options=LabelOptions(code_map={1200: "maize"}),
        season=season,
        scenes=SceneOptions(resolution=10),
        tiling=TilingOptions(patch_size=32),
        progress=False,
    )
    store = DatasetStore(out)
    assert len(store) == 4 and store.grid.resolution == (10.0, 10.0)
    assert len(store.metadata.source["acquisitions"]) == len(picks) >= 8


def test_prepare_camargue_vv_only_names_missing_vh(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "pyrosar-camargue-s1-vv"
    with pytest.raises(InputDataError, match="missing band VH: found VV"):
        prepare(
            folder,
            tmp_path / "camargue.zarr",
            labels=tmp_path / "unused.tif",
            season=Season(dt.date(2015, 3, 1)),
            tiling=TilingOptions(patch_size=64),
            progress=False,
        )
    assert not (tmp_path / "camargue.zarr").exists()
