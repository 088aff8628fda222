"""Every real Sentinel-1 sample in ../shared/data opens through open_scenes with the right
times, bands, CRS and values (compared with direct rasterio/xarray reads)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import realdata_support
from sarcrop.data.composite import acquisitions_per_period, composite
from sarcrop.data.grid import Grid
from sarcrop.data.reader import open_scenes
from sarcrop.data.season import Season
from sarcrop.errors import InputDataError

pytestmark = pytest.mark.realdata
shared_data = realdata_support.shared_data  # the fixture (skips where the data is absent)

BE = "00002806639B424A"


def _patches(root: Path) -> Path:
    return root / "worldcereal-s1-croptype-patches"


def _direct(path: Path) -> tuple[np.ndarray, list[str]]:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32), list(src.descriptions)


def test_worldcereal_geotiff_per_location(shared_data: Path) -> None:
    folder = _patches(shared_data) / "geotiff"
    stack = open_scenes(str(folder / f"{BE}_S1_*"))
    vv, times = _direct(folder / f"{BE}_S1_VV_sigma0_dB_20m.tif")
    vh, _ = _direct(folder / f"{BE}_S1_VH_sigma0_dB_20m.tif")
    assert stack.attrs["layout"] == "multidate_per_pol"
    assert len(stack.acquisitions) == 159 and stack.bands == ("VV", "VH")
    assert stack.times == [dt.datetime.fromisoformat(t) for t in times]
    assert stack.times[0] == dt.datetime(2017, 8, 1, 17, 32, 36)
    assert {a.orbit for a in stack.acquisitions} == {"ascending"}
    assert stack.grid.crs.to_epsg() == 32631 and stack.grid.resolution == (20.0, 20.0)
    assert stack.units == "db"
    np.testing.assert_array_equal(
        stack.read([0, 100, 158], ["VV", "VH"]),
        np.stack([vv[[0, 100, 158]], vh[[0, 100, 158]]], axis=1),
    )
    # Their bands are dates, their polarisation is in the name: a band_map would be ignored.
    with pytest.raises(InputDataError, match="polarisation each, read from the file name"):
        open_scenes(str(folder / f"{BE}_S1_*"), band_map={"VH": "VV", "VV": "VH"})


def test_worldcereal_folder_with_three_locations_asks_to_choose(shared_data: Path) -> None:
    folder = _patches(shared_data) / "geotiff"
    with pytest.raises(
        InputDataError,
        match=r"3 locations in one input .*choose one, e\.g\. "
        r"with the glob '.*00002806639B424A_S1_\*'",
    ):
        open_scenes(folder)


def test_worldcereal_netcdf_matches_xarray_and_geotiff(shared_data: Path) -> None:
    path = next((_patches(shared_data) / "netcdf" / BE).glob("S1_GRD-ASCENDING_*.nc"))
    stack = open_scenes(path)
    with xr.open_dataset(path) as ds:
        vv = ds["VV"].values.astype(np.float32)
        times = [dt.datetime.fromisoformat(str(t)[:19]) for t in ds["timestamp"].values]
    assert stack.attrs["layout"] == "xarray_cube" and stack.times == times
    assert stack.grid.crs.to_epsg() == 32631
    assert stack.grid.bounds == (501360.0, 5629040.0, 502000.0, 5629680.0)
    assert {a.orbit for a in stack.acquisitions} == {"ascending"}
    np.testing.assert_array_equal(stack.read([3, 50], ["VV"])[:, 0], vv[[3, 50]])
    tif = open_scenes(str(_patches(shared_data) / "geotiff" / f"{BE}_S1_*"))
    assert tif.grid.same_as(stack.grid)
    np.testing.assert_array_equal(stack.read([7], ["VH", "VV"]), tif.read([7], ["VH", "VV"]))


def test_belgium_monthly_cube_scaled_uint16(shared_data: Path) -> None:
    path = shared_data / "worldcereal-s1-monthly-cube-belgium"
    path = path / "worldcereal_preprocessed_inputs.nc"
    stack = open_scenes(path, bands=["VV", "VH"])
    assert stack.attrs["variables"] == {"VV": "S1-SIGMA0-VV", "VH": "S1-SIGMA0-VH"}
    assert stack.attrs["scaled"] == ["VV", "VH"]
    assert len(stack.acquisitions) == 12 and stack.times[0] == dt.datetime(2020, 11, 1)
    # Monthly means: each stands for the middle of its month (November: 30 days).
    assert stack.middles[0] == dt.datetime(2020, 11, 16)
    assert stack.grid.crs.to_epsg() == 32631 and stack.grid.resolution == (10.0, 10.0)
    assert stack.grid.transform.c == 664000.0 and stack.grid.transform.f == 5612120.0
    with xr.open_dataset(path) as ds:
        dn = ds["S1-SIGMA0-VV"].isel(t=4).values.astype(np.float64)
    expected = 20 * np.log10(dn) - 83
    data = stack.read([4], ["VV"])[0, 0]
    np.testing.assert_allclose(data, expected, atol=1e-4)
    all_vv = stack.read(range(12), ["VV"])
    assert np.nanmedian(all_vv) == pytest.approx(-9.9, abs=0.3)
    # Windowed read = slice of the full read.
    from rasterio.windows import Window

    np.testing.assert_array_equal(
        stack.read([4], ["VV"], Window(10, 20, 30, 40))[0, 0], data[20:60, 10:40]
    )


def test_togo_named_bands_geographic(shared_data: Path) -> None:
    path = shared_data / "cropharvest-togo-s1s2-monthly" / "98-togo_2019-02-06_2020-02-01.tif"
    stack = open_scenes(path)
    raw, names = _direct(path)
    assert stack.attrs["layout"] == "named_bands"
    assert stack.grid.crs.to_epsg() == 4326 and (stack.grid.width, stack.grid.height) == (17, 17)
    assert stack.times[:3] == [
        dt.datetime(2019, 2, 6),
        dt.datetime(2019, 3, 6),
        dt.datetime(2019, 4, 6),
    ]
    assert len(stack.times) == 12 and stack.times[-1] == dt.datetime(2020, 1, 6)
    assert stack.acquisitions[0].until == dt.datetime(2019, 3, 6)  # a month from the 6th
    data = stack.read([0, 5], ["VV", "VH"])
    np.testing.assert_array_equal(data[0, 0], raw[names.index("VV")])
    np.testing.assert_array_equal(data[1, 1], raw[names.index("VH_5")])
    assert np.nanmin(data[0, 0]) > -18.5 and np.nanmax(data[0, 0]) < -9.3
    utm = open_scenes(path, crs="EPSG:32631", resolution=10)
    assert utm.grid.crs.to_epsg() == 32631 and utm.grid.resolution == (10.0, 10.0)
    projected = utm.read([0], ["VV"])[0, 0]
    assert np.isfinite(projected).mean() > 0.7
    assert abs(np.nanmean(10 ** (projected / 10)) / np.mean(10 ** (raw[0] / 10)) - 1) < 0.1
    # A band_map naming bands the file lacks: one line, not a crash or a band quietly lost.
    for wrong in ({"VV": "VV_X", "VH": "VH_X"}, {"VV": "VV_X"}):
        with pytest.raises(InputDataError, match=r"band_map VV=VV_X.*: no band of that name"):
            open_scenes(path, band_map=wrong)
    # A resolution in metres given to its geographic CRS: the UTM zone of the area is named.
    with pytest.raises(InputDataError, match="--crs EPSG:32631 --resolution 10"):
        open_scenes(path, resolution=10)


def test_camargue_single_vv_scene(shared_data: Path) -> None:
    folder = shared_data / "pyrosar-camargue-s1-vv"
    stack = open_scenes(folder)
    raw, _ = _direct(next(folder.glob("*.tif")))
    acquisition = stack.acquisitions[0]
    assert stack.bands == ("VV",) and stack.units == "db"
    assert stack.description == str(next(folder.glob("*.tif")))  # errors name the file
    assert acquisition.time == dt.datetime(2015, 3, 9, 17, 30, 17)
    assert (acquisition.orbit, acquisition.platform) == ("ascending", "S1A")
    assert stack.grid.crs.to_epsg() == 32631 and (stack.grid.width, stack.grid.height) == (268, 217)
    data = stack.read([0], ["VV"])[0, 0]
    np.testing.assert_array_equal(data, raw[0])
    assert np.nanmean(data) == pytest.approx(-12.12, abs=0.01)
    with pytest.raises(InputDataError, match="missing band VH: found VV"):
        open_scenes(folder, bands=["VH", "VV"])
    season = Season(dt.date(2015, 3, 1), steps=2, days=20)
    assert acquisitions_per_period(stack, season) == [1, 0]


def _vrt(path: Path, source: Path, band: int, grid: Grid) -> Path:
    """A one-band VRT pointing at band ``band`` of the real file (read in place)."""
    a, _, c, _, e, f = list(grid.transform)[:6]
    path.write_text(
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">'
        f"<SRS>{grid.crs.to_wkt()}</SRS>"
        f"<GeoTransform>{c}, {a}, 0, {f}, 0, {e}</GeoTransform>"
        '<VRTRasterBand dataType="Float32" band="1"><NoDataValue>nan</NoDataValue>'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        f"<SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    return path


def test_stac_catalog_over_real_files(shared_data: Path, tmp_path: Path) -> None:
    import pystac

    folder = _patches(shared_data) / "geotiff"
    reference = open_scenes(str(folder / f"{BE}_S1_*"))
    catalog = pystac.Catalog(id="worldcereal", description="real WorldCereal S1 bands")
    picks = [0, 1, 40, 120]
    for k in picks:
        when = reference.times[k]
        item = pystac.Item(
            id=f"{BE}_{k}",
            geometry=None,
            bbox=None,
            datetime=when,
            properties={"sat:orbit_state": "ascending"},
        )
        for pol in ("VV", "VH"):
            source = folder / f"{BE}_S1_{pol}_sigma0_dB_20m.tif"
            vrt = _vrt(tmp_path / f"{k}_{pol}.vrt", source, k + 1, reference.grid)
            item.add_asset(pol.lower(), pystac.Asset(href=str(vrt)))
        catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "stac"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    stack = open_scenes(tmp_path / "stac" / "catalog.json", orbit="ascending")
    assert stack.attrs["layout"] == "stac"
    assert stack.times == [reference.times[k] for k in picks]
    np.testing.assert_array_equal(
        stack.read(range(4), ["VV", "VH"]), reference.read(picks, ["VV", "VH"])
    )


def test_worldcereal_20m_onto_10m_label_grid(shared_data: Path) -> None:
    folder = _patches(shared_data) / "geotiff"
    with rasterio.open(folder / f"{BE}_labels_CT_LC_10m.tif") as src:
        labels = Grid(src.crs, src.transform, src.width, src.height)
    coarse = open_scenes(str(folder / f"{BE}_S1_*"))
    fine = open_scenes(str(folder / f"{BE}_S1_*"), grid=labels)
    assert fine.grid.same_as(labels) and (fine.grid.width, fine.grid.height) == (64, 64)
    src = coarse.read([10], ["VV"])[0, 0]
    out = fine.read([10], ["VV"])[0, 0]
    assert np.isfinite(out).all()
    power_src, power_out = 10 ** (src / 10), 10 ** (out / 10)
    assert abs(power_out.mean() / power_src.mean() - 1) < 0.02
    blocks = power_out.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert np.corrcoef(blocks.ravel(), power_src.ravel())[0, 1] > 0.9
    season = Season(dt.date(2018, 4, 1), steps=8, days=20)
    composites = composite(fine, season, ["VV", "VH"])
    assert composites.shape == (8, 2, 64, 64) and np.isfinite(composites).all()
    assert min(acquisitions_per_period(fine, season)) >= 2


def _copy_location(shared_data: Path, folder: Path, edit=None) -> str:
    """The real 2018 location's VH and VV files rewritten into ``folder``; ``edit(pol, data,
    descriptions)`` changes them first. Returns the glob that opens them."""
    folder.mkdir()
    for pol in ("VH", "VV"):
        name = f"{BE}_S1_{pol}_sigma0_dB_20m.tif"
        with rasterio.open(_patches(shared_data) / "geotiff" / name) as src:
            data, profile, tags = src.read(), src.profile, src.tags()
            descriptions = list(src.descriptions)
        if edit is not None:
            edit(pol, data, descriptions)
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**tags)
            if descriptions is not None:
                dst.descriptions = tuple(descriptions)
    return str(folder / f"{BE}_S1_*")


def test_real_multidate_files_with_a_broken_band_are_refused(shared_data, tmp_path) -> None:
    """One band of a multi-date file in linear power, one polarisation exported in linear
    power, or two bands of one date: each is one line naming the file; the files as
    published open without a word."""
    import warnings

    vh = f"{BE}_S1_VH_sigma0_dB_20m.tif"

    def one_linear_band(pol, data, descriptions):
        if pol == "VH":
            data[100] = 10 ** (data[100] / 10)

    def linear_vh(pol, data, descriptions):
        if pol == "VH":
            data[:] = 10 ** (data / 10)

    def same_date_twice(pol, data, descriptions):
        descriptions[101] = descriptions[100]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_scenes(_copy_location(shared_data, tmp_path / "as-published"))
    date = open_scenes(_copy_location(shared_data, tmp_path / "again")).times[100]
    with pytest.raises(InputDataError, match=rf"{vh}: VH of the acquisition of {date:%Y-%m-%d}"):
        open_scenes(_copy_location(shared_data, tmp_path / "one", one_linear_band))
    with pytest.raises(
        InputDataError, match=rf"{vh}: VH values look linear .* VV values in .*VV.* look db"
    ):
        open_scenes(_copy_location(shared_data, tmp_path / "linear", linear_vh))
    with pytest.raises(InputDataError, match=rf"{vh}: bands 101 and 102 are both the acquisition"):
        open_scenes(_copy_location(shared_data, tmp_path / "twice", same_date_twice))


def test_real_vh_file_of_vv_values_or_without_dates_is_said(shared_data, tmp_path) -> None:
    """VV's values under VH's name read as high as VV: said; a VH file whose band
    descriptions were lost is named as left out, not reported as a missing band alone."""

    def vv_as_vh(pol, data, descriptions):
        if pol == "VH":
            with rasterio.open(
                _patches(shared_data) / "geotiff" / f"{BE}_S1_VV_sigma0_dB_20m.tif"
            ) as src:
                data[:] = src.read()

    def no_dates(pol, data, descriptions):
        if pol == "VH":
            descriptions[:] = [""] * len(descriptions)

    with pytest.warns(UserWarning, match=r"VH_sigma0_dB_20m.tif: VH reads about as high as VV"):
        open_scenes(_copy_location(shared_data, tmp_path / "copied", vv_as_vh))
    with pytest.raises(InputDataError, match=r"missing band VH: found VV; skipped .*VH.* \(no acq"):
        open_scenes(_copy_location(shared_data, tmp_path / "blank", no_dates), bands=["VH", "VV"])
