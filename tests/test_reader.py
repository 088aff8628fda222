"""open_scenes on GeoTIFFs written in the test: detection, clear errors, orbits, grids, STAC."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from realdata_support import NODATA, write_scene
from sarcrop.data.grid import Grid
from sarcrop.data.reader import open_scenes
from sarcrop.data.units import detect_units
from sarcrop.errors import InputDataError

T0 = dt.datetime(2020, 5, 1, 17, 30, 5)


def _values(seed: int, shape: tuple[int, ...] = (2, 12, 12)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-22, -6, size=shape).astype(np.float32)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Four acquisitions, two ascending and two descending, with some nodata."""
    for i in range(4):
        values = _values(i)
        values[:, i, i] = np.nan
        write_scene(
            tmp_path, T0 + dt.timedelta(days=6 * i), values, orbit="ASC" if i % 2 == 0 else "DESC"
        )
    return tmp_path


def test_geotiff_per_date_opens_lazily_with_metadata(folder: Path) -> None:
    stack = open_scenes(folder)
    assert stack.attrs["layout"] == "geotiff_per_date"
    assert stack.bands == ("VV", "VH") and stack.units == "db"
    assert stack.times == [T0 + dt.timedelta(days=6 * i) for i in range(4)]
    first = stack.acquisitions[0]
    assert (first.orbit, first.relative_orbit, first.platform) == ("ascending", 88, "S1A")
    data = stack.read([2, 0], ["VH"], Window(1, 2, 5, 4))
    assert data.shape == (2, 1, 4, 5) and data.dtype == np.float32
    expected = _values(2)
    expected[:, 2, 2] = np.nan
    np.testing.assert_array_equal(data[0, 0], expected[0, 2:6, 1:6])
    np.testing.assert_array_equal(data[1, 0], _values(0)[0, 2:6, 1:6])
    full = stack.read([2], ["VH", "VV"])
    assert np.isnan(full[0, :, 2, 2]).all()  # nodata -9999 → NaN
    assert np.isfinite(full).sum() == 2 * (144 - 1)


def test_glob_and_file_list(folder: Path) -> None:
    files = sorted(folder.glob("*.tif"))
    assert len(open_scenes(str(folder / "*_ASC_*.tif")).acquisitions) == 2
    assert len(open_scenes(files[:3]).acquisitions) == 3
    with pytest.raises(InputDataError, match="glob matches no files"):
        open_scenes(str(folder / "*.nope"))
    # A URL the reader cannot read is said to be one (not "no such file"), alone or in a list.
    other = "not read: scenes are local files, or an http(s) URL of a STAC API or item"
    for source in ("s3://bucket/scenes/*.tif", [*files[:2], "gs://bucket/x.tif"]):
        with pytest.raises(InputDataError, match=re.escape(other)) as refused:
            open_scenes(source)
        assert refused.value.path is not None and "://" in str(refused.value.path)


def test_orbit_filter(folder: Path) -> None:
    asc = open_scenes(folder, orbit="ascending")
    desc = open_scenes(folder, orbit="descending")
    assert [a.orbit for a in asc.acquisitions] == ["ascending"] * 2
    assert desc.times == [T0 + dt.timedelta(days=6), T0 + dt.timedelta(days=18)]
    np.testing.assert_array_equal(desc.read([1], ["VV"]), open_scenes(folder).read([3], ["VV"]))


def test_orbit_and_time_from_file_names(tmp_path: Path) -> None:
    values = _values(1, (1, 8, 8))
    write_scene(
        tmp_path,
        T0,
        values,
        bands=("",),
        units=None,
        tags={"ACQUISITION_TIME": None, "ORBIT_DIRECTION": None, "PLATFORM": None},
        name="S1B__IW___D_20200501T173005_VV_grd_mli_geo_norm_db.tif",
    )
    stack = open_scenes(tmp_path, orbit="descending")
    assert stack.bands == ("VV",) and stack.times == [T0]
    assert stack.acquisitions[0].platform == "S1B"
    with pytest.raises(InputDataError, match="missing band VH: found VV"):
        open_scenes(tmp_path, bands=["VV", "VH"])


def test_missing_time_is_a_clear_error(tmp_path: Path) -> None:
    for i in range(3):
        write_scene(
            tmp_path,
            T0,
            _values(i, (1, 8, 8)),
            bands=("VV",),
            tags={"ACQUISITION_TIME": None},
            name=f"scene_{i}.tif",
        )
    with pytest.raises(InputDataError) as info:
        open_scenes(tmp_path)
    message = str(info.value)
    assert "3 .tif files, 1 band each, no acquisition time in names/tags" in message
    assert "geotiff_per_date" in message and "stac" in message and "\n" not in message


def test_mixed_crs_and_resolution_need_a_target(tmp_path: Path) -> None:
    write_scene(tmp_path / "a", T0, _values(0))
    write_scene(tmp_path / "a", T0 + dt.timedelta(days=1), _values(1), crs="EPSG:32632")
    with pytest.raises(InputDataError, match=r"grids differ: .*EPSG:32631 at 10, .*EPSG:32632"):
        open_scenes(tmp_path / "a")
    write_scene(tmp_path / "b", T0, _values(0))
    write_scene(
        tmp_path / "b",
        T0 + dt.timedelta(days=1),
        _values(1, (2, 6, 6)),
        transform=Affine(20.0, 0, 500000.0, 0, -20.0, 5600000.0),
    )
    with pytest.raises(InputDataError, match=r"at 10, .* at 20; pass --crs/--resolution \(crs="):
        open_scenes(tmp_path / "b")
    # With a target resolution both are brought onto one 10 m grid.
    stack = open_scenes(tmp_path / "b", resolution=10)
    assert stack.grid.resolution == (10.0, 10.0)
    assert np.isfinite(stack.read([0, 1], ["VV"])).all()


def test_a_pixel_larger_than_the_area_is_refused(tmp_path: Path) -> None:
    """Metres given to a CRS in degrees (a 10° pixel) made a one-pixel map, or a label grid
    of billions of pixels; now one line names the unit and the UTM zone of the area."""
    write_scene(tmp_path, T0, _values(0))  # 120 m square in UTM 31N, east of 3°E
    with pytest.raises(InputDataError) as info:
        open_scenes(tmp_path, crs="EPSG:4326", resolution=10)
    assert "a pixel of 10 degrees is larger than the area" in str(info.value)
    assert "--crs EPSG:32631 --resolution 10" in str(info.value)
    with pytest.raises(InputDataError, match="a pixel of 200 metre is larger than the area"):
        open_scenes(tmp_path, resolution=200)
    assert open_scenes(tmp_path, crs="EPSG:4326", resolution=0.0001).grid.width > 1


def test_non_overlapping_scenes(tmp_path: Path) -> None:
    write_scene(tmp_path, T0, _values(0))
    write_scene(
        tmp_path,
        T0 + dt.timedelta(days=1),
        _values(1),
        transform=Affine(10.0, 0, 600000.0, 0, -10.0, 5600000.0),
    )
    with pytest.raises(InputDataError, match=r"overlaps none of the other scenes \(1, e\.g\."):
        open_scenes(tmp_path)
    far = Grid(rasterio.crs.CRS.from_epsg(32631), Affine(10.0, 0, 0.0, 0, -10.0, 0.0), 4, 4)
    with pytest.raises(InputDataError, match="no acquisition overlaps the target grid"):
        open_scenes(tmp_path, grid=far)


def test_frames_of_a_track_are_mapped_whole(tmp_path: Path) -> None:
    """Two frames that overlap by a third: the grid covers both, on the first one's pixels
    (it was the first frame's alone, and the rest of the area was left out without a word),
    with a target grid too; each pixel reads the frame that holds it."""
    first = Affine(10.0, 0, 500000.0, 0, -10.0, 5600000.0)
    second = Affine(10.0, 0, 500080.0, 0, -10.0, 5600000.0)  # 8 px east: 4 px overlap
    for i, transform in enumerate((first, second, first, second)):
        values = np.full((2, 12, 12), -20.0 + i, np.float32)
        write_scene(tmp_path, T0 + dt.timedelta(days=6 * i), values, transform=transform)
    for stack in (open_scenes(tmp_path), open_scenes(tmp_path, crs="EPSG:32631", resolution=10)):
        assert (stack.grid.width, stack.grid.height) == (20, 12)
        assert stack.grid.transform == first
        pixels = stack.read([0, 1], ["VH"])  # (time, band, row, col)
        assert np.isfinite(pixels[0, 0, :, :12]).all() and np.isnan(pixels[0, 0, :, 12:]).all()
        assert np.isfinite(pixels[1, 0, :, 8:]).all() and np.isnan(pixels[1, 0, :, :8]).all()


def test_a_scene_apart_from_the_others_is_named_whichever_comes_first(tmp_path: Path) -> None:
    """A first scene whose CRS is wrong set the grid of every map made with --crs, 420 km from
    the data, and nothing said so: the scene apart from most of the others is named."""
    for i in range(3):
        write_scene(tmp_path, T0 + dt.timedelta(days=6 * (i + 1)), _values(i))
    wrong = write_scene(tmp_path, T0, _values(3), crs="EPSG:32632")
    with pytest.raises(InputDataError) as info:
        open_scenes(tmp_path, crs="EPSG:32631", resolution=10)
    assert str(info.value).count("\n") == 0
    assert f"{wrong} (bounds" in str(info.value) and "overlaps none of the other scenes (3," in str(
        info.value
    )


def test_truncated_file(tmp_path: Path) -> None:
    path = write_scene(tmp_path, T0, _values(0, (2, 64, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError, match=path.name):
        stack = open_scenes(tmp_path)
        stack.read([0], ["VV", "VH"])
    path.write_bytes(b"II*\x00garbage")
    with pytest.raises(InputDataError, match="cannot read raster"):
        open_scenes(tmp_path)


def test_units_checked_against_values(tmp_path: Path) -> None:
    linear = np.random.default_rng(0).uniform(0.005, 0.3, size=(2, 8, 8)).astype(np.float32)
    write_scene(tmp_path / "lin", T0, linear, units="dB")
    with pytest.raises(
        InputDataError, match="declared as db by the file metadata but the values look linear"
    ):
        open_scenes(tmp_path / "lin")
    write_scene(tmp_path / "ok", T0, linear, units=None)
    assert open_scenes(tmp_path / "ok").units == "linear"
    with pytest.raises(InputDataError, match="declared as db by units="):
        open_scenes(tmp_path / "ok", units="db")
    write_scene(tmp_path / "dn", T0, np.full((2, 8, 8), 3000.0), units=None)
    with pytest.raises(InputDataError, match="values fit neither"):
        open_scenes(tmp_path / "dn")


def test_detect_units() -> None:
    rng = np.random.default_rng(1)
    db = rng.normal(-14, 4, 5000)
    assert detect_units(db) == "db"
    assert detect_units(10 ** (db / 10)) == "linear"
    assert detect_units(rng.uniform(1000, 40000, 100)) is None
    assert detect_units(np.array([np.nan, np.inf])) is None


def test_reprojection_to_finer_grid_in_linear_power(tmp_path: Path) -> None:
    constant = np.full((2, 8, 8), -11.0, dtype=np.float32)
    write_scene(
        tmp_path / "c", T0, constant, transform=Affine(20.0, 0, 500000.0, 0, -20.0, 5600000.0)
    )
    fine = Grid(
        rasterio.crs.CRS.from_epsg(32631), Affine(10.0, 0, 500000.0, 0, -10.0, 5600000.0), 16, 16
    )
    flat = open_scenes(tmp_path / "c", grid=fine).read([0], ["VV"])
    np.testing.assert_allclose(flat, -11.0, atol=1e-4)

    values = _values(4, (2, 8, 8))
    write_scene(
        tmp_path / "v", T0, values, transform=Affine(20.0, 0, 500000.0, 0, -20.0, 5600000.0)
    )
    stack = open_scenes(tmp_path / "v", resolution=10)
    assert (stack.grid.width, stack.grid.height) == (16, 16)
    out = stack.read([0], ["VH"])[0, 0]
    assert np.isfinite(out).all()
    power_in = np.mean(10 ** (values[0] / 10))  # band 1 is VH
    power_out = np.mean(10 ** (out / 10))
    assert abs(power_out / power_in - 1) < 0.05
    # Windowed reads of the reprojected stack match the full read.
    part = stack.read([0], ["VH"], Window(4, 6, 5, 3))[0, 0]
    np.testing.assert_allclose(part, out[6:9, 4:9], atol=1e-4)


def test_geographic_input_to_utm(tmp_path: Path) -> None:
    deg = 8.983152841195215e-05
    values = _values(9, (2, 17, 17))
    write_scene(
        tmp_path, T0, values, crs="EPSG:4326", transform=Affine(deg, 0, 1.42203, 0, -deg, 7.72030)
    )
    native = open_scenes(tmp_path)
    assert native.grid.crs.to_epsg() == 4326 and native.grid.width == 17
    utm = open_scenes(tmp_path, crs="EPSG:32631", resolution=10)
    assert utm.grid.crs.to_epsg() == 32631 and utm.grid.resolution == (10.0, 10.0)
    out = utm.read([0], ["VV"])
    assert np.isfinite(out).mean() > 0.8
    assert np.nanmin(out) >= values[0].min() - 1e-3 and np.nanmax(out) <= values[0].max() + 1e-3


def _write_catalog(root: Path, scenes: list[Path]) -> Path:
    import pystac

    catalog = pystac.Catalog(id="test", description="scenes")
    for path in scenes:
        with rasterio.open(path) as src:
            when = dt.datetime.fromisoformat(src.tags()["ACQUISITION_TIME"])
        item = pystac.Item(
            id=path.stem,
            geometry=None,
            bbox=None,
            datetime=when,
            properties={"sat:orbit_state": "ascending", "sat:relative_orbit": 88},
        )
        item.add_asset("data", pystac.Asset(href=str(path), media_type=pystac.MediaType.GEOTIFF))
        catalog.add_item(item)
    catalog.normalize_hrefs(str(root / "stac"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "stac" / "catalog.json"


def test_local_stac_catalog_matches_folder(folder: Path, tmp_path: Path) -> None:
    scenes = sorted(folder.glob("*.tif"))
    catalog = _write_catalog(tmp_path / "cat", scenes)
    via_stac = open_scenes(catalog)
    via_folder = open_scenes(folder)
    assert via_stac.attrs["layout"] == "stac"
    assert via_stac.times == via_folder.times
    assert via_stac.bands == via_folder.bands
    assert via_stac.acquisitions[0].relative_orbit == 88
    np.testing.assert_array_equal(
        via_stac.read([0, 3], ["VH", "VV"]), via_folder.read([0, 3], ["VH", "VV"])
    )


def test_stac_single_band_assets_and_band_map(tmp_path: Path) -> None:
    import pystac

    items = []
    for i in range(2):
        when = T0 + dt.timedelta(days=12 * i)
        item = pystac.Item(
            id=f"s{i}",
            geometry=None,
            bbox=None,
            datetime=when,
            properties={"sat:orbit_state": "descending"},
        )
        for key, b in (("sigma0_vv", 0), ("sigma0_vh", 1)):
            path = write_scene(
                tmp_path / "tif",
                when,
                _values(10 * i + b, (1, 8, 8)),
                bands=("",),
                name=f"s{i}_{key}.tif",
            )
            item.add_asset(key, pystac.Asset(href=str(path)))
        items.append(item)
    collection_path = tmp_path / "items.json"
    collection_path.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    stack = open_scenes(
        collection_path, band_map={"VV": "SIGMA0_VV", "VH": "sigma0_vh"}, orbit="descending"
    )
    assert stack.bands == ("VV", "VH") and len(stack.acquisitions) == 2
    np.testing.assert_allclose(stack.read([1], ["VH"])[0, 0], _values(11, (1, 8, 8))[0])
    # Without band_map, the polarisation in the asset file names is enough.
    assert open_scenes(collection_path).bands == ("VV", "VH")
    plain = write_scene(tmp_path / "tif", T0, _values(0, (1, 8, 8)), bands=("",), name="plain.tif")
    item = pystac.Item(id="p", geometry=None, bbox=None, datetime=T0, properties={})
    item.add_asset("image", pystac.Asset(href=str(plain), media_type=pystac.MediaType.GEOTIFF))
    collection_path.write_text(json.dumps(pystac.ItemCollection([item]).to_dict()))
    with pytest.raises(InputDataError, match="none with a datetime and vv/vh GeoTIFF assets"):
        open_scenes(collection_path)


def test_stac_assets_of_each_polarisation_pointing_at_one_file_read_their_own_band(
    folder: Path, tmp_path: Path
) -> None:
    """Assets ``vh`` and ``vv`` with one two-band file as their href both read its band 1
    (VH twice: the map was 0 % maize); each now reads the band its description names."""
    import pystac

    items = []
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as src:
            when = dt.datetime.fromisoformat(src.tags()["ACQUISITION_TIME"])
        item = pystac.Item(id=path.stem, geometry=None, bbox=None, datetime=when, properties={})
        for key in ("vh", "vv"):
            item.add_asset(key, pystac.Asset(href=str(path)))
        items.append(item)
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    np.testing.assert_array_equal(
        open_scenes(collection).read([0, 3], ["VH", "VV"]),
        open_scenes(folder).read([0, 3], ["VH", "VV"]),
    )


def test_nodata_nan_and_inf_become_nan(tmp_path: Path) -> None:
    values = _values(2, (2, 6, 6))
    values[0, 0, 0] = np.inf
    values[1, 1, 1] = NODATA
    write_scene(tmp_path, T0, values, nodata=NODATA)
    data = open_scenes(tmp_path).read([0], ["VH", "VV"])[0]
    assert np.isnan(data[0, 0, 0]) and np.isnan(data[1, 1, 1])
    assert np.isfinite(data).sum() == 2 * 36 - 2


@pytest.mark.parametrize("kind", ["zarr", "nc"])
def test_xarray_cube_zarr_and_netcdf_with_ascending_y(tmp_path: Path, kind: str) -> None:
    import xarray as xr

    values = _values(6, (3, 2, 5, 4))  # time, band, y (south → north), x
    times = [np.datetime64("2021-03-01T06:00:00") + np.timedelta64(12 * i, "D") for i in (2, 0, 1)]
    ds = xr.Dataset(
        {
            "sigma0_vv": (("time", "y", "x"), values[:, 0], {"units": "dB"}),
            "sigma0_vh": (("time", "y", "x"), values[:, 1], {"units": "dB"}),
            "spatial_ref": ((), 0, {"crs_wkt": rasterio.crs.CRS.from_epsg(32633).to_wkt()}),
        },
        coords={
            "time": times,
            "y": 4_000_005.0 + 10 * np.arange(5),
            "x": 300_005.0 + 10 * np.arange(4),
        },
    )
    path = tmp_path / f"cube.{kind}"
    ds.to_zarr(path, consolidated=False) if kind == "zarr" else ds.to_netcdf(path)
    stack = open_scenes(path)
    assert stack.attrs["layout"] == "xarray_cube" and stack.bands == ("VV", "VH")
    assert stack.grid.crs.to_epsg() == 32633
    assert stack.grid.transform == Affine(10.0, 0, 300_000.0, 0, -10.0, 4_000_050.0)
    assert stack.times == sorted(stack.times) and stack.times[0] == dt.datetime(2021, 3, 1, 6)
    # Stack time 0 is dataset time 1; rows come north-up.
    data = stack.read([0, 2], ["VH", "VV"], Window(1, 1, 3, 3))
    np.testing.assert_allclose(data[0, 0], values[1, 1, ::-1][1:4, 1:4])
    np.testing.assert_allclose(data[1, 1], values[0, 0, ::-1][1:4, 1:4])


def test_a_named_layout_subclass_registers_itself_in_detection_order(tmp_path: Path) -> None:
    from sarcrop.data.scenes import LAYOUTS, Layout

    class Never(Layout, name="never", order=45):
        """a layout that
        recognises nothing"""

        def detect(self, paths: list[Path], source: object, band_map: object = None) -> bool:
            return False

        def open(self, paths: list[Path], source: object, **options: object) -> object:
            raise AssertionError("never detected")

    try:
        names = [layout.name for layout in LAYOUTS]
        assert names.index("multidate_per_pol") < names.index("never")
        assert names.index("never") < names.index("geotiff_per_date")
        (tmp_path / "fields.csv").write_text("id,crop\n1,rice\n")
        with pytest.raises(InputDataError, match=r"never \(a layout that recognises nothing\)"):
            open_scenes(tmp_path / "fields.csv")
    finally:
        LAYOUTS[:] = [layout for layout in LAYOUTS if layout.name != "never"]


def test_a_cube_with_one_time_twice_is_refused(tmp_path: Path) -> None:
    """Two slices of one time are two acquisitions at once: refused in one line naming the
    file and the time, as two files or two bands of one acquisition are."""
    import xarray as xr

    values = _values(7, (3, 5, 4))
    ds = xr.Dataset(
        {
            "VV": (("time", "y", "x"), values, {"units": "dB"}),
            "VH": (("time", "y", "x"), values - 7, {"units": "dB"}),
        },
        coords={
            "time": [np.datetime64("2021-03-01T06:00:00")] * 2 + [np.datetime64("2021-03-13")],
            "y": 4_000_045.0 - 10 * np.arange(5),
            "x": 300_005.0 + 10 * np.arange(4),
        },
        attrs={"epsg": 32633},
    )
    ds.to_netcdf(tmp_path / "cube.nc")
    with pytest.raises(
        InputDataError,
        match=r"cube.nc: 1 acquisition time\(s\) twice along 'time', first 2021-03-01T06:00:00",
    ):
        open_scenes(tmp_path / "cube.nc")


def test_a_read_error_names_gdal_s_own_problem() -> None:
    """rasterio's "Read failed. See previous exception for details." says nothing on one
    line: the problem GDAL gave behind it is named instead."""
    from rasterio.errors import RasterioIOError

    from sarcrop.data.scenes import _first_line

    try:
        try:
            raise RuntimeError("S1_x.tif, band 1: IReadBlock failed at X offset 0, Y offset 0")
        except RuntimeError as gdal:
            raise RasterioIOError("Read failed. See previous exception for details.") from gdal
    except RasterioIOError as exc:
        assert _first_line(exc) == "S1_x.tif, band 1: IReadBlock failed at X offset 0, Y offset 0"


def test_band_map_renames_described_bands_and_a_name_no_file_has_is_refused(
    tmp_path: Path,
) -> None:
    """Per-date GeoTIFFs whose bands are described ``cross``/``co``: a band_map names them; one
    naming a description no file has is refused, listing the descriptions, where it would
    otherwise be ignored and the bands found some other way."""
    values = np.stack([np.full((4, 4), -18.0), np.full((4, 4), -11.0)])
    for day in (1, 13):
        write_scene(tmp_path, dt.datetime(2020, 5, day, 17), values, bands=("cross", "co"))
    stack = open_scenes(tmp_path, band_map={"VH": "cross", "VV": "co"})
    assert set(stack.bands) == {"VH", "VV"}
    assert np.allclose(stack.read([0], ["VH"])[0, 0], -18.0, atol=1e-4)
    with pytest.raises(InputDataError, match=r"band_map VV=COPOL: .*\(descriptions: CO, CROSS\)"):
        open_scenes(tmp_path, band_map={"VH": "cross", "VV": "COPOL"})


def test_band_map_finds_a_named_band_export_under_other_names(tmp_path: Path) -> None:
    """A monthly export whose bands are ``S1_VV``, ``S1_VH``, ``S1_VV_1``, …: recognised as
    one raster of named bands through the band_map, each step a month from the file's date."""
    path = tmp_path / "field_2020-04-01_2020-07-01.tif"
    names = [f"S1_{band}{suffix}" for suffix in ("", "_1", "_2") for band in ("VV", "VH")]
    values = np.stack([np.full((4, 4), -11.0 if "VV" in n else -18.0, np.float32) for n in names])
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": len(names)}
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
    with rasterio.open(
        path, "w", **profile, dtype="float32", crs="EPSG:32631", transform=transform
    ) as dst:
        dst.write(values)
        dst.descriptions = tuple(names)
    stack = open_scenes(path, band_map={"VV": "S1_VV", "VH": "S1_VH"})
    assert stack.attrs["layout"] == "named_bands" and len(stack.acquisitions) == 3
    assert stack.middles[0] == dt.datetime(2020, 4, 16)  # April's mean
    assert np.allclose(stack.read([2], ["VH"]), -18.0, atol=1e-4)


def test_one_sampled_acquisition_in_other_units_is_named(tmp_path: Path) -> None:
    """The first, middle and last acquisitions are sampled together; where one of them alone
    is in linear power their values fit no units, and the error names that one, not the first."""
    rng = np.random.default_rng(3)
    for day in (1, 13, 25):
        vh = rng.uniform(-22, -12, (32, 32)).astype(np.float32)
        values = np.stack([vh, vh + 7])
        if day == 13:
            values = 10 ** (values / 10)
        write_scene(tmp_path, dt.datetime(2020, 5, day, 17), values, units=None)
    with pytest.raises(
        InputDataError, match=r"20200513T.*: V[HV] of the acquisition of 2020-05-13"
    ):
        open_scenes(tmp_path)


def test_band_map_wins_over_an_earlier_band_of_the_same_polarisation(tmp_path: Path) -> None:
    """Bands ``VH_raw, VH_filtered, VV`` with band_map ``{"VH": "VH_filtered"}``: the band
    named is read, not the first whose description holds VH (the map was ignored)."""
    vh = np.full((4, 4), -18.0)
    for day in (1, 13):
        write_scene(
            tmp_path,
            dt.datetime(2020, 5, day, 17),
            np.stack([vh + 5, vh, vh + 7]),
            bands=("VH_raw", "VH_filtered", "VV"),
        )
    stack = open_scenes(tmp_path, band_map={"VH": "VH_filtered"})
    assert stack.refs[0]["VH"].index == 2 and stack.refs[0]["VV"].index == 3  # type: ignore[attr-defined]
    assert np.allclose(stack.read([0], ["VH"]), -18.0, atol=1e-4)


def _two_date_cube(values: np.ndarray):
    """A (time, y, x) cube of VV ``values`` and VH 7 dB below, two dates, UTM 33N at 10 m."""
    import xarray as xr

    return xr.Dataset(
        {"VV": (("time", "y", "x"), values), "VH": (("time", "y", "x"), values - 7)},
        coords={
            "time": [np.datetime64("2021-03-01T06:00"), np.datetime64("2021-03-13T06:00")],
            "y": 4_000_045.0 - 10 * np.arange(values.shape[1]),
            "x": 300_005.0 + 10 * np.arange(values.shape[2]),
        },
        attrs={"epsg": 32633},
    )


def test_fills_a_cube_does_not_declare_read_as_no_data(tmp_path: Path) -> None:
    """A cube's 0 and -9999 values (no ``_FillValue``) are no backscatter: NaN, as in rasters."""

    values = _values(9, (2, 5, 4))
    values[0, 0, 0], values[1, 2, 3] = 0.0, -9999.0
    ds = _two_date_cube(values)
    ds.to_netcdf(tmp_path / "cube.nc")
    data = open_scenes(tmp_path / "cube.nc").read([0, 1], ["VV"])[:, 0]
    assert np.isnan(data[0, 0, 0]) and np.isnan(data[1, 2, 3])
    assert np.isfinite(data).sum() == 2 * 20 - 2


def _item_collection(path: Path, items: list[tuple[str, dt.datetime, dict[str, Path]]]) -> Path:
    """An item collection JSON of ``(id, time, {asset key: href})`` items."""
    import pystac

    collection = []
    for name, when, assets in items:
        item = pystac.Item(id=name, geometry=None, bbox=None, datetime=when, properties={})
        for key, href in assets.items():
            item.add_asset(key, pystac.Asset(href=str(href)))
        collection.append(item)
    path.write_text(json.dumps(pystac.ItemCollection(collection).to_dict()))
    return path


def test_stac_items_of_one_time_are_merged_by_band_and_a_band_twice_is_refused(
    tmp_path: Path,
) -> None:
    """Two items of one time holding the same band counted that acquisition twice: refused,
    as two files of one acquisition are. Items of one time holding other bands are one
    acquisition."""
    files = {
        pol: write_scene(
            tmp_path, T0, _values(k, (1, 6, 6)) - 7 * k, bands=("",), name=f"{pol}.tif"
        )
        for k, pol in enumerate(("vv", "vh"))
    }
    later = T0 + dt.timedelta(days=12)
    split = _item_collection(
        tmp_path / "split.json",
        [("a", T0, {"vv": files["vv"]}), ("b", T0, {"vh": files["vh"]}), ("c", later, files)],
    )
    stack = open_scenes(split)
    assert stack.times == [T0, later] and set(stack.refs[0]) == {"VV", "VH"}  # type: ignore[attr-defined]
    twice = _item_collection(tmp_path / "twice.json", [("a", T0, files), ("b", T0, files)])
    with pytest.raises(
        InputDataError,
        match=r"twice.json: two items for the same acquisition 2020-05-01T17:30:05 and band "
        r"V[HV]: a and b",
    ):
        open_scenes(twice)


def test_a_band_map_naming_no_asset_or_band_is_refused_with_the_names_there_are(
    tmp_path: Path,
) -> None:
    """A STAC band_map key no item has was dropped silently (the band read from another asset,
    or missing); refused listing the asset keys. A named-band export's refusal lists its
    band names, without their step suffix."""
    files = {
        pol: write_scene(
            tmp_path, T0, _values(k, (1, 6, 6)) - 7 * k, bands=("",), name=f"{pol}.tif"
        )
        for k, pol in enumerate(("vv", "vh"))
    }
    collection = _item_collection(tmp_path / "items.json", [("a", T0, files)])
    with pytest.raises(
        InputDataError,
        match=r"items.json: band_map VH=sigma0_vh: no item has an asset of that key "
        r"\(assets: vh, vv\)",
    ):
        open_scenes(collection, band_map={"VH": "sigma0_vh", "VV": "vv"})
    path = tmp_path / "field_2020-04-01_2020-07-01.tif"
    names = [f"{band}{suffix}" for suffix in ("", "_1") for band in ("VV", "VH", "B2")]
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": len(names)}
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
    with rasterio.open(
        path, "w", **profile, dtype="float32", crs="EPSG:32631", transform=transform
    ) as dst:
        dst.write(np.full((len(names), 4, 4), -12.0, np.float32))
        dst.descriptions = tuple(names)
    with pytest.raises(InputDataError, match=r"band_map VV=S1_VV: .* \(bands: VV, VH, B2\)"):
        open_scenes(path, band_map={"VV": "S1_VV"})


def test_relative_asset_hrefs_of_an_item_collection_are_read_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item collection has no self link: its relative hrefs were read from the working
    directory, so the same JSON read from elsewhere failed, or read other files."""
    folder = tmp_path / "stac"
    for k, pol in enumerate(("vv", "vh")):
        write_scene(folder, T0, _values(k, (1, 6, 6)) - 7 * k, bands=("",), name=f"{pol}.tif")
    items = _item_collection(
        folder / "items.json", [("a", T0, {"vv": Path("vv.tif"), "vh": Path("vh.tif")})]
    )
    monkeypatch.chdir(tmp_path)
    stack = open_scenes(Path("stac") / items.name)
    assert stack.refs[0]["VH"].path == str(Path("stac") / "vh.tif")  # type: ignore[attr-defined]
    np.testing.assert_array_equal(stack.read([0], ["VV"])[0, 0], _values(0, (1, 6, 6))[0])


@pytest.mark.parametrize(("kind", "fill"), [("nc", 0), ("nc", 65535), ("zarr", 0)])
def test_a_scaled_uint16_cube_with_a_fill_value_is_read_as_db(
    tmp_path: Path, kind: str, fill: int
) -> None:
    """WorldCereal's uint16 numbers with a ``_FillValue``: xarray decodes them to float, and
    the cube was refused as fitting no units (values in the thousands)."""
    import xarray as xr

    db = _values(10, (2, 5, 4))
    dn = np.stack([np.round(10 ** ((db - 7 * k + 83) / 20)).astype(np.uint16) for k in (0, 1)])
    dn[0, 0, 0, 0] = fill
    names = ("S1-SIGMA0-VV", "S1-SIGMA0-VH")
    ds = xr.Dataset(
        {name: (("t", "y", "x"), dn[k]) for k, name in enumerate(names)},
        coords={
            "t": [np.datetime64("2021-03-01T06:00"), np.datetime64("2021-03-13T06:00")],
            "y": 4_000_045.0 - 10 * np.arange(5),
            "x": 300_005.0 + 10 * np.arange(4),
        },
        attrs={"epsg": 32633},
    )
    encoding = {name: {"_FillValue": fill} for name in names}
    path = tmp_path / f"cube.{kind}"
    if kind == "zarr":
        ds.to_zarr(path, encoding=encoding, consolidated=False)
    else:
        ds.to_netcdf(path, encoding=encoding)
    stack = open_scenes(path)
    assert stack.attrs["scaled"] == ["VV", "VH"] and stack.units == "db"
    vv = stack.read([0, 1], ["VV"])[:, 0]
    assert np.isnan(vv[0, 0, 0]) and np.isfinite(vv).sum() == 2 * 20 - 1
    np.testing.assert_allclose(vv[1], 20 * np.log10(dn[0, 1].astype(np.float64)) - 83, atol=1e-4)


def test_a_geotiff_of_scaled_uint16_numbers_is_refused_as_fitting_no_units(tmp_path: Path) -> None:
    """Only cubes' WorldCereal variable names tell scaled numbers (docs/real-data.md): a
    uint16 GeoTIFF of them is refused, never read as some other units."""
    dn = np.round(10 ** ((np.stack([_values(11)[0], _values(11)[0] + 7]) + 83) / 20))
    profile = {"driver": "GTiff", "width": 12, "height": 12, "count": 2, "dtype": "uint16"}
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
    path = tmp_path / "S1A_20200501.tif"
    with rasterio.open(path, "w", **profile, crs="EPSG:32631", transform=transform) as dst:
        dst.write(dn.astype(np.uint16))
        dst.descriptions = ("VH", "VV")
    with pytest.raises(InputDataError, match=r"S1A_20200501.tif: VV values fit neither dB"):
        open_scenes(tmp_path)


def test_a_damaged_cube_chunk_is_one_line_naming_the_store(tmp_path: Path) -> None:
    """A chunk of random bytes failed deep in Zarr's codecs, a page of traceback."""

    values = _values(12, (2, 5, 4))
    ds = _two_date_cube(values)
    path = tmp_path / "cube.zarr"
    ds.chunk({"time": 1}).to_zarr(path, consolidated=False)
    chunks = [p for p in (path / "VH").rglob("*") if p.is_file()]
    chunks = [p for p in chunks if not p.name.startswith((".", "zarr"))]  # not metadata
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(b"garbage")
    with pytest.raises(InputDataError, match=r"cube.zarr: cannot read variable VH: \S") as info:
        open_scenes(path)
    assert "\n" not in str(info.value)


def test_units_that_cannot_be_told_are_explained_for_the_command_line_too(tmp_path: Path) -> None:
    """The error told to pass units= to open_scenes, which no command takes: it says which
    values the file holds where it was checked, and how files state their units."""
    write_scene(tmp_path, T0, np.full((2, 6, 6), np.nan), units=None, nodata=None)
    with pytest.raises(
        InputDataError,
        match=r"_test.tif: no valid pixel where the units are checked \(the central 6x6 pixels "
        r"on 2020-05-01\): every value there is nodata, .* state it in the files \(a UNITS tag",
    ):
        open_scenes(tmp_path)
