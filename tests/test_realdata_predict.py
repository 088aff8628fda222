"""Whole-area prediction straight from every real Sentinel-1 layout (read in place).

The model is a small real network with fixed random weights: the point is that `predict` builds
the composites the model expects from each layout and writes a map on the input's grid.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import realdata_support
from sarcrop.data.normalization import Normalization
from sarcrop.data.reader import open_scenes
from sarcrop.data.season import Season
from sarcrop.models import build_model
from sarcrop.prediction import predict_map
from sarcrop.prediction.engine import ModelSpec

shared_data = realdata_support.shared_data

NORM = Normalization((-30.0, -25.0), (0.0, 5.0), ("VH", "VV"))
FLANDERS = "00002806639B424A"


def spec(start: dt.date, steps: int = 4, days: int = 20) -> ModelSpec:
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, steps, widths=[4, 8])
    return ModelSpec(model, ("VH", "VV"), Season(start, steps, days), NORM)


def check_map(path: Path, images: object) -> np.ndarray:
    """The map is on the scenes' grid and holds valid probabilities wherever there is data."""
    stack = open_scenes(images, bands=["VH", "VV"])  # type: ignore[arg-type]
    with rasterio.open(path) as src:
        assert src.crs == stack.grid.crs
        assert src.transform.almost_equals(stack.grid.transform)
        assert (src.width, src.height) == (stack.grid.width, stack.grid.height)
        probability = src.read(1)
    valid = probability[probability != 255]
    assert valid.size > 0.9 * probability.size
    assert valid.max() <= 250
    return probability


def worldcereal(root: Path) -> Path:
    return root / "worldcereal-s1-croptype-patches"


def test_predict_worldcereal_geotiff_glob(shared_data: Path, tmp_path: Path) -> None:
    images = str(worldcereal(shared_data) / "geotiff" / f"{FLANDERS}_S1_*")
    out = predict_map(spec(dt.date(2018, 4, 21)), images, tmp_path / "map.tif", progress=False)
    check_map(out, images)


def test_predict_worldcereal_netcdf_equals_geotiff(shared_data: Path, tmp_path: Path) -> None:
    netcdf = next((worldcereal(shared_data) / "netcdf" / FLANDERS).glob("S1_GRD-*.nc"))
    model = spec(dt.date(2018, 4, 21))
    a = predict_map(model, netcdf, tmp_path / "nc.tif", progress=False)
    geotiff = str(worldcereal(shared_data) / "geotiff" / f"{FLANDERS}_S1_*")
    b = predict_map(model, geotiff, tmp_path / "tif.tif", progress=False)
    # The GeoTIFFs are the netCDF cast to float32: the maps agree to a level.
    assert np.abs(check_map(a, netcdf).astype(int) - check_map(b, geotiff).astype(int)).max() <= 1


def test_predict_togo_named_bands_geographic(shared_data: Path, tmp_path: Path) -> None:
    images = shared_data / "cropharvest-togo-s1s2-monthly" / "98-togo_2019-02-06_2020-02-01.tif"
    out = predict_map(
        spec(dt.date(2019, 3, 1), steps=4, days=30), images, tmp_path / "togo.tif", progress=False
    )
    assert check_map(out, images).shape == (17, 17)
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 4326


def test_predict_belgium_monthly_cube(shared_data: Path, tmp_path: Path) -> None:
    images = (
        shared_data / "worldcereal-s1-monthly-cube-belgium" / "worldcereal_preprocessed_inputs.nc"
    )
    out = predict_map(
        spec(dt.date(2021, 3, 1), steps=4, days=30), images, tmp_path / "be.tif", progress=False
    )
    assert check_map(out, images).shape == (100, 100)


def test_the_shipped_model_maps_monthly_data_and_names_its_pixel_size(
    shared_data: Path, tmp_path: Path
) -> None:
    """The Belgian monthly cube, its means read at mid-month, leaves periods 1, 4 and 7 of the
    20-day season without a date: interpolated, the shipped maize model maps maize there (0.0 %
    when they were read as 0).
    The WorldCereal 20 m scenes are mapped on their grid, with the model's 10 m named."""
    cube = (
        shared_data / "worldcereal-s1-monthly-cube-belgium" / "worldcereal_preprocessed_inputs.nc"
    )
    with pytest.warns(UserWarning, match=r"interpolated in time: periods 1 \(2021-04-21 to"):
        out = predict_map(
            "europe-maize",
            cube,
            tmp_path / "be.tif",
            season_start=dt.date(2021, 4, 21),
            progress=False,
        )
    with rasterio.open(out) as src:
        maize = src.read(2)
    assert 0.01 < np.mean(maize == 1) < 0.5
    images = str(worldcereal(shared_data) / "geotiff" / f"{FLANDERS}_S1_*")
    with pytest.warns(UserWarning, match="^europe-maize learnt from 10 m pixels and the images"):
        predict_map(
            "europe-maize",
            images,
            tmp_path / "f.tif",
            season_start=dt.date(2018, 4, 21),
            progress=False,
        )


def test_predict_local_stac_catalog(shared_data: Path, tmp_path: Path) -> None:
    folder = worldcereal(shared_data) / "geotiff"
    season = Season(dt.date(2018, 4, 21), steps=2, days=20)
    catalog = realdata_support.stac_catalog(folder, FLANDERS, season, tmp_path)
    model = spec(dt.date(2018, 4, 21), steps=2)
    stac_map = predict_map(model, catalog, tmp_path / "stac.tif", progress=False)
    glob_map = predict_map(
        model, str(folder / f"{FLANDERS}_S1_*"), tmp_path / "glob.tif", progress=False
    )
    with rasterio.open(stac_map) as a, rasterio.open(glob_map) as b:
        assert a.transform == b.transform and np.array_equal(a.read(), b.read())


def test_predict_camargue_vv_only_names_missing_vh(shared_data: Path, tmp_path: Path) -> None:
    from sarcrop.errors import InputDataError

    with pytest.raises(InputDataError, match="missing band VH"):
        predict_map(
            spec(dt.date(2015, 3, 1)),
            shared_data / "pyrosar-camargue-s1-vv",
            tmp_path / "camargue.tif",
            progress=False,
        )
    assert not (tmp_path / "camargue.tif").exists()
