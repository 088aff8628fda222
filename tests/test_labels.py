"""Labels onto the composite grid: rasters, parcels, binary targets."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import Polygon, box

from sarcrop.data.grid import Grid
from sarcrop.data.labels import (
    binary_target,
    class_lookup,
    labels_from_file,
    labels_from_parcels,
    labels_from_raster,
    positive_indices,
)
from sarcrop.data.legends import worldcereal_code_map
from sarcrop.errors import InputDataError
from sarcrop.options import LabelOptions

UTM = CRS.from_epsg(32631)
# 40 × 50 pixels of 10 m, origin (500000, 5000400).
GRID = Grid(UTM, Affine(10, 0, 500000, 0, -10, 5000400), 50, 40)


def write_raster(path, data, transform, crs=UTM, nodata=None, tags=None):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(data, 1)
        if tags:
            ds.update_tags(**tags)
    return path


def test_raster_same_grid_uses_tags_and_nodata(tmp_path):
    data = np.zeros((40, 50), dtype=np.uint8)
    data[5:10, 5:10] = 2
    data[0, 0] = 255
    path = write_raster(
        tmp_path / "l.tif",
        data,
        GRID.transform,
        nodata=255,
        tags={"CLASS_0": "other", "CLASS_1": "maize", "CLASS_2": "rice"},
    )
    labels, classes = labels_from_raster(path, GRID)
    assert classes == ["other", "maize", "rice"]
    assert labels.dtype == np.int16 and labels.shape == (40, 50)
    assert labels[0, 0] == -1
    assert (labels[5:10, 5:10] == 2).all()
    assert np.count_nonzero(labels == 2) == 25


def test_codes_mapped_to_unlabelled_label_nothing_and_worldcereal_unknown_is_such_a_code(tmp_path):
    """A label raster without a nodata value: WorldCereal's "Unknown" code 0 (no crop declared)
    is left out of training and metrics, not taken for a negative."""
    data = np.zeros((40, 50), dtype=np.uint16)
    data[:10] = 1200
    data[10:20] = 9120
    path = write_raster(tmp_path / "ct.tif", data, GRID.transform)
    legend = tmp_path / "legend.csv"
    legend.write_text("name,croptype\nUnknown,0\nMaize,1200\nPermanent grass,9120\nUnknown,9700\n")
    for code_map in (
        {0: "unlabelled", 1200: "maize"},
        worldcereal_code_map(legend, ["maize"]),
    ):
        labels, classes = labels_from_raster(path, GRID, code_map=code_map)
        assert classes == ["maize", "other"]
        counts = {c: int(np.count_nonzero(labels == c)) for c in (-1, 0, 1)}
        assert counts == {-1: 20 * 50, 0: 10 * 50, 1: 10 * 50}
    full = worldcereal_code_map(legend)
    assert full == {0: "unlabelled", 1200: "maize", 9120: "permanent grass", 9700: "unlabelled"}
    labels, classes = labels_from_raster(path, GRID, code_map=full)
    assert classes == ["maize", "permanent grass", "other"] and (labels[20:] == -1).all()


def test_several_positive_crops_of_a_legend_keep_their_names(tmp_path):
    """``prepare --legend L --positive maize potatoes`` looks both names up among the classes:
    each crop keeps its own name (a sub-class its group's), unless one ``name`` is given."""
    legend = tmp_path / "legend.csv"
    legend.write_text(
        "name,croptype\nUnknown,0\nMaize,1200\nGrain maize,1201\nPotatoes,5100\nGrass,9120\n"
    )
    both = worldcereal_code_map(legend, ["maize", "Potatoes"])
    assert both == {0: "unlabelled", 1200: "maize", 1201: "maize", 5100: "potatoes", 9120: "other"}
    assert worldcereal_code_map(legend, [5100, "maize"], name="crop") == {
        0: "unlabelled",
        1200: "crop",
        1201: "crop",
        5100: "crop",
        9120: "other",
    }
    data = np.full((40, 50), 9120, dtype=np.uint16)
    data[:10], data[10:15] = 1201, 5100
    labels, classes = labels_from_raster(
        write_raster(tmp_path / "ct.tif", data, GRID.transform), GRID, code_map=both
    )
    assert classes == ["maize", "potatoes", "other"]
    assert [int(np.count_nonzero(labels == c)) for c in range(3)] == [500, 250, 1250]
    assert positive_indices(classes, ["maize", "potatoes"]) == [0, 1]


def test_a_fill_code_a_code_map_leaves_out_is_said_to_become_other(tmp_path):
    """Code 0 in a raster without a nodata value, not in the code map: it becomes "other"
    like an unlisted crop, and the run says so with its pixel count and the fix."""
    data = np.zeros((40, 50), dtype=np.int16)
    data[:10] = 1200
    data[10:20] = 9120
    data[20:22] = -9999
    path = write_raster(tmp_path / "ct.tif", data, GRID.transform)
    with pytest.warns(UserWarning) as caught:
        labels, classes = labels_from_raster(path, GRID, code_map={1200: "maize"})
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        f"{path}: code(s) -9999 (100 px), 0 (900 px) are not in the code map and become "
        "'other'; if they mean no label, set the raster's nodata or name them unlabelled in "
        """the code map (e.g. '{"-9999": "unlabelled", ...}')"""
    ]
    assert classes == ["maize", "other"] and np.count_nonzero(labels == 1) == 1500
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        labels_from_raster(path, GRID, code_map={1200: "maize", 0: "unlabelled", -9999: "other"})


def test_raster_coarser_grid_is_nearest(tmp_path):
    # 20 m labels covering the grid; every 10 m pixel takes its 20 m parent's class.
    coarse = np.arange(20 * 25, dtype=np.uint8).reshape(20, 25) % 3
    path = write_raster(tmp_path / "l20.tif", coarse, Affine(20, 0, 500000, 0, -20, 5000400))
    labels, classes = labels_from_raster(path, GRID, class_names=["a", "b", "c"])
    assert classes == ["a", "b", "c"]
    np.testing.assert_array_equal(labels, np.repeat(np.repeat(coarse, 2, 0), 2, 1))


def test_raster_finer_grid_takes_majority(tmp_path):
    # 5 m labels: each 10 m pixel covers 2×2 fine pixels, 3 of which are class 1.
    fine = np.ones((80, 100), dtype=np.uint8)
    fine[::2, ::2] = 0
    path = write_raster(tmp_path / "l5.tif", fine, Affine(5, 0, 500000, 0, -5, 5000400))
    labels, _ = labels_from_raster(path, GRID, class_names=["a", "b"])
    assert (labels == 1).all()


@pytest.mark.parametrize(
    ("minor_codes", "expected"),
    [((1110, 1120), "wheat"), ((9001, 9002), "other")],
    ids=["two wheat codes", "two unlisted codes"],
)
def test_a_finer_raster_takes_the_majority_class_not_the_most_frequent_code(
    tmp_path, minor_codes, expected
):
    # 2.5 m labels: each 10 m pixel covers 16 fine pixels, 6 of code 1200 (maize) and 5 each of
    # two other codes of one class, which together outvote maize.
    tile = np.array([1200] * 6 + [minor_codes[0]] * 5 + [minor_codes[1]] * 5, np.uint16)
    fine = np.tile(tile.reshape(4, 4), (40, 50))
    path = write_raster(tmp_path / "l2_5.tif", fine, Affine(2.5, 0, 500000, 0, -2.5, 5000400))
    code_map = {1200: "maize", 1110: "wheat", 1120: "wheat"}
    labels, classes = labels_from_raster(path, GRID, code_map=code_map)
    assert classes == ["maize", "wheat", "other"]
    assert (labels == classes.index(expected)).all()


def test_raster_partial_overlap_is_unlabelled_outside(tmp_path):
    # Raster covers only the left 20 columns of the grid.
    data = np.full((40, 20), 1, dtype=np.uint8)
    path = write_raster(
        tmp_path / "part.tif", data, Affine(10, 0, 500000, 0, -10, 5000400), nodata=255
    )
    labels, _ = labels_from_raster(path, GRID, class_names=["a", "b"])
    assert (labels[:, :20] == 1).all()
    assert (labels[:, 20:] == -1).all()


def test_raster_code_map_maps_unknown_codes_to_other(tmp_path):
    data = np.full((40, 50), 1110, dtype=np.uint16)  # wheat
    data[:, 10:20] = 1510  # rice
    data[:, 20:30] = 9999  # not in the map
    data[:, 30:] = 0  # nodata
    path = write_raster(tmp_path / "wc.tif", data, GRID.transform, nodata=0)
    labels, classes = labels_from_raster(path, GRID, code_map={1110: "wheat", 1510: "rice"})
    assert classes == ["wheat", "rice", "other"]
    assert (labels[:, :10] == 0).all() and (labels[:, 10:20] == 1).all()
    assert (labels[:, 20:30] == 2).all() and (labels[:, 30:] == -1).all()


def test_raster_values_without_names_are_refused(tmp_path):
    data = np.full((40, 50), 7, dtype=np.uint8)
    path = write_raster(tmp_path / "l.tif", data, GRID.transform, tags={"CLASS_0": "x"})
    with pytest.raises(InputDataError, match=r"l\.tif.*\[7\]"):
        labels_from_raster(path, GRID)


def test_a_band_of_a_label_raster_is_chosen_by_its_description(tmp_path):
    """WorldCereal's label GeoTIFFs hold crop type (CT) and land cover (LC): --label-variable
    picks one, as it picks a cube's variable (it was ignored, and band 1 read)."""
    crop = np.full((40, 50), 1200, dtype=np.uint16)
    cover = np.full((40, 50), 11, dtype=np.uint16)
    path = tmp_path / "ct_lc.tif"
    profile = {"driver": "GTiff", "width": 50, "height": 40, "count": 2, "dtype": "uint16"}
    with rasterio.open(path, "w", crs=UTM, transform=GRID.transform, **profile) as ds:
        ds.write(np.stack([crop, cover]))
        ds.descriptions = ("CT (crop type)", "LC (land cover)")
    read = labels_from_file(path, GRID, LabelOptions(variable="lc", code_map={11: "cropland"}))
    assert read[1] == ["cropland", "other"] and (read[0] == 0).all()
    assert labels_from_file(path, GRID, LabelOptions(code_map={1200: "maize"}))[1][0] == "maize"
    with pytest.raises(InputDataError, match=r"no label band 'IRR' \(its bands: 'CT \(crop"):
        labels_from_file(path, GRID, LabelOptions(variable="IRR", code_map={11: "cropland"}))


def test_an_image_given_as_labels_is_refused(tmp_path):
    backscatter = np.random.default_rng(0).uniform(-25, -5, (40, 50)).astype(np.float32)
    path = write_raster(tmp_path / "vh.tif", backscatter, GRID.transform)
    with pytest.raises(InputDataError, match=r"vh\.tif: band 1 holds non-integer values"):
        labels_from_raster(path, GRID, code_map={1200: "maize"})
    whole = write_raster(tmp_path / "codes.tif", np.round(backscatter), GRID.transform)
    assert labels_from_raster(whole, GRID, code_map={-10: "x"})[1] == ["x", "other"]


def test_missing_raster_is_input_error(tmp_path):
    with pytest.raises(InputDataError, match=r"nope\.tif"):
        labels_from_raster(tmp_path / "nope.tif", GRID)


def squares_frame(crs=UTM):
    import geopandas as gpd

    # Two squares in pixel units → map coordinates: rice at rows 2..6, cols 3..8; maize at
    # rows 20..30, cols 10..15.
    def px_box(r0, c0, r1, c1):
        x0, y0 = GRID.transform @ (c0, r0)
        x1, y1 = GRID.transform @ (c1, r1)
        return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    frame = gpd.GeoDataFrame(
        {"crop": ["rice", "maize"]}, geometry=[px_box(2, 3, 6, 8), px_box(20, 10, 30, 15)], crs=UTM
    )
    return frame.to_crs(crs)


def expected_squares():
    expected = np.zeros((40, 50), dtype=np.int16)
    expected[2:6, 3:8] = 2  # classes: background, maize, rice
    expected[20:30, 10:15] = 1
    return expected


def test_parcels_rasterize_to_the_right_pixels(tmp_path):
    path = tmp_path / "parcels.gpkg"
    squares_frame().to_file(path, driver="GPKG")
    labels, classes = labels_from_parcels(path, GRID)
    assert classes == ["background", "maize", "rice"]
    np.testing.assert_array_equal(labels, expected_squares())


def test_parcels_in_another_crs_are_reprojected(tmp_path):
    path = tmp_path / "parcels_4326.gpkg"
    squares_frame(CRS.from_epsg(4326)).to_file(path, driver="GPKG")
    labels, _ = labels_from_parcels(path, GRID)
    # Squares stay squares up to a pixel of boundary change after the round trip.
    expected = expected_squares()
    assert np.count_nonzero(labels != expected) <= 4
    assert (labels[3:5, 4:7] == 2).all() and (labels[21:29, 11:14] == 1).all()


def test_invalid_bowtie_is_repaired_with_warning(tmp_path):
    import geopandas as gpd

    x0, y0 = GRID.transform @ (20, 10)  # col 20, row 10
    bowtie = Polygon([(x0, y0), (x0 + 100, y0 - 100), (x0 + 100, y0), (x0, y0 - 100)])
    assert not bowtie.is_valid
    frame = gpd.GeoDataFrame(
        {"crop": ["rice", "maize"]}, geometry=[bowtie, squares_frame().geometry[1]], crs=UTM
    )
    path = tmp_path / "bowtie.gpkg"
    frame.to_file(path, driver="GPKG")
    with pytest.warns(UserWarning, match="repaired 1 invalid"):
        labels, classes = labels_from_parcels(path, GRID)
    rice = classes.index("rice")
    # Two triangles meeting at the centre: about half of the 10×10 pixel square.
    count = np.count_nonzero(labels[10:20, 20:30] == rice)
    assert 40 <= count <= 60
    assert np.count_nonzero(labels == rice) == count


def test_parcels_outside_the_area_warn_and_missing_column_errors(tmp_path):
    import geopandas as gpd

    far = box(900000, 100000, 900100, 100100)
    frame = gpd.GeoDataFrame(
        {"crop": ["rice", "maize", "rice"]}, geometry=[*squares_frame().geometry, far], crs=UTM
    )
    path = tmp_path / "p.gpkg"
    frame.to_file(path, driver="GPKG")
    with pytest.warns(UserWarning, match="1 of 3 parcels lie outside"):
        labels, _ = labels_from_parcels(path, GRID)
    np.testing.assert_array_equal(labels, expected_squares())
    with pytest.raises(InputDataError, match="no column 'variety'"):
        labels_from_parcels(path, GRID, column="variety")
    # A GeoJSON of UTM coordinates without a crs member is read as longitude and latitude:
    # the error gives both extents and names the CRS; an empty file says it is empty.
    utm = tmp_path / "utm.geojson"
    collection = json.loads(squares_frame().to_json())
    collection.pop("crs", None)  # no crs member, as many writers leave it out
    utm.write_text(json.dumps(collection))
    with pytest.raises(InputDataError) as refused:
        labels_from_parcels(utm, GRID)
    message = str(refused.value)
    assert "no parcel overlaps the image area (parcels [500030, 5.0001e+06, 500150, " in message
    assert "5.00038e+06] in EPSG:4326, image" in message
    assert "image [500000, 5e+06, 500500, 5.0004e+06] in EPSG:32631" in message
    assert message.endswith("check the parcels' CRS)")
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputDataError, match=r"empty.geojson: holds no parcels$"):
        labels_from_parcels(empty, GRID)


def test_binary_target_and_unknown_positive():
    labels = np.array([[-1, 0, 1], [2, 2, 1]], dtype=np.int16)
    classes = ["background", "maize", "rice"]
    target, valid = binary_target(labels, classes, ["Rice"])
    np.testing.assert_array_equal(target, [[0, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(valid, [[False, True, True], [True, True, True]])
    target, _ = binary_target(labels, classes, ("rice", "maize"))
    assert target.sum() == 4
    with pytest.raises(InputDataError, match=r"'barley'.*classes present: background, maize"):
        binary_target(labels, classes, ["barley"])


# ---------------------------------------------------------------------------------------------
# Label cubes (netCDF / Zarr, as WorldCereal publishes them)


def write_label_cube(path, *, ascending_y: bool = False):
    """CT (crop codes) and LC (land cover) as float32 with NaN, georeferenced by ``epsg``."""
    import xarray as xr

    ct = np.full((40, 50), np.nan, dtype=np.float32)
    ct[:, :20] = 1200
    ct[:, 20:30] = 1110
    lc = np.where(np.isnan(ct), 99, 11).astype(np.float32)
    y = 5000400 - 5 - 10 * np.arange(40)  # pixel centres, north first
    if ascending_y:
        ct, lc, y = ct[::-1], lc[::-1], y[::-1]
    ds = xr.Dataset(
        {"CT": (("y", "x"), ct), "LC": (("y", "x"), lc)},
        coords={"y": y.astype(float), "x": 500005.0 + 10 * np.arange(50)},
        attrs={"epsg": "32631"},
    )
    if path.suffix == ".zarr":
        ds.to_zarr(path)
    else:
        ds.to_netcdf(path)
    return path


@pytest.mark.parametrize(("name", "ascending_y"), [("l.nc", False), ("l.zarr", True)])
def test_label_cube_reads_like_a_raster(tmp_path, name, ascending_y):
    from sarcrop.data.labels import labels_from_file
    from sarcrop.options import LabelOptions

    path = write_label_cube(tmp_path / name, ascending_y=ascending_y)
    options = LabelOptions(code_map={1110: "wheat", 1200: "maize"})
    labels, classes = labels_from_file(path, GRID, options)  # CT: the crop-type variable
    assert classes == ["wheat", "maize", "other"]
    assert (labels[:, :20] == 1).all() and (labels[:, 20:30] == 0).all()
    assert (labels[:, 30:] == -1).all()  # NaN is unlabelled

    # On a coarser grid in another CRS: warped as categories (mode), like a raster.
    coarse = Grid(UTM, Affine(20, 0, 500000, 0, -20, 5000400), 25, 20)
    labels, _ = labels_from_file(path, coarse, options)
    assert (labels[:, :10] == 1).all() and (labels[:, 10:15] == 0).all()
    assert (labels[:, 15:] == -1).all()

    lc, lc_classes = labels_from_file(
        path, GRID, LabelOptions(variable="LC", code_map={11: "crop"})
    )
    assert lc_classes == ["crop", "other"]
    assert (lc[:, :30] == 0).all() and (lc[:, 30:] == 1).all()  # 99 is not in the map: other


def test_label_cube_variable_errors_name_the_file(tmp_path):
    import xarray as xr

    from sarcrop.data.labels import labels_from_cube

    path = write_label_cube(tmp_path / "l.nc")
    with pytest.raises(InputDataError, match=r"l\.nc: no label variable 'IRR' .*has: CT, LC"):
        labels_from_cube(path, GRID, variable="IRR", code_map={1: "a"})
    with pytest.raises(
        InputDataError, match="CLASS_<i>=<name> tags: name its codes with --legend or --code-map"
    ):
        labels_from_cube(path, GRID)

    with xr.open_dataset(path) as ds:
        two = ds.rename({"CT": "crop"}).load()
    two.to_netcdf(tmp_path / "two.nc")
    with pytest.raises(InputDataError, match="cannot tell the label variable among crop, LC"):
        labels_from_cube(tmp_path / "two.nc", GRID, code_map={1: "a"})
    fractional = two.drop_vars("LC")
    fractional["crop"] = fractional["crop"] / 7
    fractional.to_netcdf(tmp_path / "frac.nc")
    with pytest.raises(InputDataError, match="non-integer values"):
        labels_from_cube(tmp_path / "frac.nc", GRID, code_map={1: "a"})
    series = two.drop_vars("LC")["crop"].expand_dims(t=2).to_dataset()  # a (t, y, x) cube
    series.to_netcdf(tmp_path / "series.nc")
    with pytest.raises(InputDataError, match=r"series\.nc: holds no \(y, x\) variable to read"):
        labels_from_cube(tmp_path / "series.nc", GRID, code_map={1: "a"})


def test_pixels_outside_the_parcels_are_background_or_unlabelled(tmp_path):
    """A few labelled fields of an area: the rest is not known to be "not the crop"."""
    path = tmp_path / "parcels.gpkg"
    squares_frame().to_file(path, driver="GPKG")
    labels, classes = labels_from_parcels(path, GRID, outside_parcels="unlabelled")
    expected = expected_squares()
    expected[expected == 0] = -1
    assert classes == ["background", "maize", "rice"]  # the same indices either way
    np.testing.assert_array_equal(labels, expected)
    # Left at its default, most labelled pixels outside the parcels are named in one warning.
    share = f"{np.mean(expected_squares() == 0):.0%}"  # 70 of 2000 pixels in parcels
    with pytest.warns(UserWarning, match=rf"parcels.gpkg: {share} of the labelled pixels lie"):
        labels, _ = labels_from_file(path, GRID)
    np.testing.assert_array_equal(labels, expected_squares())
    for outside in ("background", "unlabelled"):  # chosen either way: no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            labels_from_file(path, GRID, LabelOptions(outside_parcels=outside))


def test_class_names_match_whatever_their_case_spaces_or_underscores():
    """A legend's "Winter cereal" is the command line's winter_cereal."""
    classes = ["background", "Winter cereal", "maize"]
    assert positive_indices(classes, "winter_cereal") == [1]
    assert class_lookup(classes, ["winter-cereal", "other"]).tolist() == [1, 0, 1, -1]
    with pytest.raises(InputDataError, match="classes named twice"):
        class_lookup(classes, ["winter cereal", "winter_cereal"])


def test_a_name_not_in_the_labels_is_answered_with_the_closest_class_or_the_quoting_it_needs():
    """A typo names the class meant; a name split at its space by the shell names the quotes."""
    classes = ["other", "maize", "winter cereal", "potato"]
    with pytest.raises(
        InputDataError, match=r"'maiz' is not in the labels \(did you mean 'maize'\?\)"
    ):
        positive_indices(classes, ["maiz"])
    with pytest.raises(
        InputDataError, match="quote a name with spaces: --positive 'winter cereal'"
    ):
        positive_indices(classes, ["winter", "cereal"])
    with pytest.raises(InputDataError, match="quote a name with spaces: --classes 'winter cereal'"):
        class_lookup(classes, ["maize", "winter", "cereal", "other"])
    with pytest.raises(InputDataError) as wheat:  # nothing close: no guess
        positive_indices(classes, ["wheat"])
    assert "did you mean" not in str(wheat.value) and "quote" not in str(wheat.value)


def test_a_code_map_given_as_json_text_reads_as_the_mapping_and_bad_text_is_one_line():
    """``--code-map`` passes its JSON text to LabelOptions, as a YAML or notebook user may."""
    from sarcrop.errors import ConfigError
    from sarcrop.options import validated

    text = validated(LabelOptions, {"code_map": '{"1200": "maize", "0": "unlabelled"}'})
    assert text.code_map == {1200: "maize", 0: "unlabelled"}
    with pytest.raises(ConfigError, match=r"^code_map: must be a JSON object of code: name"):
        validated(LabelOptions, {"code_map": "{1200: maize}"})


def test_an_unreadable_label_raster_is_named_once(tmp_path):
    """GDAL's message starts with the path, which the line already names first."""
    missing = tmp_path / "NOPE.tif"
    with pytest.raises(InputDataError, match="cannot open label raster") as raised:
        labels_from_raster(missing, GRID)
    assert str(raised.value).count(str(missing)) == 1


def test_spellings_of_one_crop_in_the_parcels_are_one_class(tmp_path):
    """Positive classes are matched whatever their case or spaces: "Maize" and "maize " in
    one parcel file are one class (the most frequent spelling), not two of which a positive
    would take one and leave the other's pixels among the negatives."""
    import geopandas as gpd
    import pandas as pd

    frame = squares_frame()
    shifted = [frame.geometry.iloc[[1]].translate(xoff=dx) for dx in (100, 200)]
    frame = gpd.GeoDataFrame(geometry=pd.concat([frame.geometry, *shifted], ignore_index=True))
    frame["crop"] = ["rice", "Maize", "maize", "maize "]
    path = tmp_path / "parcels.gpkg"
    frame.to_file(path, driver="GPKG")
    with pytest.warns(UserWarning, match=r"crops spelt differently are one class: 'Maize' as "):
        labels, classes = labels_from_parcels(path, GRID)
    assert classes == ["background", "maize", "rice"]
    expected = expected_squares()
    expected[20:30, 20:25] = expected[20:30, 30:35] = 1
    np.testing.assert_array_equal(labels, expected)


def test_missing_crops_of_any_kind_label_nothing(tmp_path):
    """None, NaN, pandas' NA and blank text in the crop column: no label, not a class."""
    import geopandas as gpd
    import pandas as pd

    frame = squares_frame()
    shifted = frame.geometry.iloc[[1]].translate(xoff=100)
    frame = gpd.GeoDataFrame(geometry=pd.concat([frame.geometry, shifted], ignore_index=True))
    frame["crop"] = pd.array([1200, pd.NA, 1200], dtype="Int64")
    path = tmp_path / "parcels.parquet"
    frame.to_parquet(path)
    labels, classes = labels_from_parcels(path, GRID)
    assert classes == ["background", "1200"]
    assert (labels[2:6, 3:8] == 1).all() and (labels[20:30, 20:25] == 1).all()
    assert (labels[20:30, 10:15] == -1).all()  # the parcel of no crop
    # A crop named "unlabelled" labels nothing, as in a code map
    frame["crop"] = ["maize", "Unlabelled", "maize"]
    frame.to_parquet(path)
    labels, classes = labels_from_parcels(path, GRID)
    assert classes == ["background", "maize"] and (labels[20:30, 10:15] == -1).all()


def test_nan_in_a_float_label_raster_without_nodata_labels_nothing(tmp_path):
    """NaN is no label (as docs/real-data.md says), also where the raster declares no nodata
    value: before, it was cast to an integer code and became a class."""
    data = np.full((40, 50), 1.0, dtype=np.float32)
    data[5:10, 5:10] = 2.0
    data[:3] = np.nan
    tags = {"CLASS_0": "other", "CLASS_1": "maize", "CLASS_2": "rice"}
    path = write_raster(tmp_path / "l.tif", data, GRID.transform, tags=tags)
    labels, classes = labels_from_raster(path, GRID)
    assert classes == ["other", "maize", "rice"]
    assert (labels[:3] == -1).all() and (labels[3:] >= 1).all()
    # the same on a grid of other pixels (the warped path)
    coarse = Grid(UTM, Affine(20, 0, 500000, 0, -20, 5000400), 25, 20)
    labels, _ = labels_from_raster(path, coarse)
    assert (labels[:1] == -1).all() and (labels[2:] >= 1).all()


def test_a_code_map_names_the_crop_codes_of_parcels_as_it_names_a_rasters(tmp_path):
    """Parcels carrying crop codes (WorldCereal's 1200, …) are named by ``code_map`` (or a
    legend read into one) as a label raster is: codes it leaves out are other, its
    "unlabelled" ones label nothing. Before, the map was dropped without a word."""
    import geopandas as gpd
    import pandas as pd

    frame = squares_frame()
    shifted = frame.geometry.iloc[[1]].translate(xoff=100)
    frame = gpd.GeoDataFrame(geometry=pd.concat([frame.geometry, shifted], ignore_index=True))
    frame["crop"] = [1200, 9120, 1110]
    path = tmp_path / "codes.gpkg"
    frame.to_file(path, driver="GPKG")
    options = LabelOptions(code_map={1200: "maize", 9120: "unlabelled"}, column="crop")
    labels, classes = labels_from_file(path, GRID, options)
    assert classes == ["background", "maize", "other"]
    assert (labels[2:6, 3:8] == 1).all() and (labels[20:30, 20:25] == 2).all()
    assert (labels[20:30, 10:15] == -1).all()
    frame["crop"] = ["maize", "x", "y"]
    frame.to_file(path, driver="GPKG")
    with pytest.raises(InputDataError, match=r"column 'crop' holds 'maize', not a crop code"):
        labels_from_file(path, GRID, options)
    with pytest.raises(InputDataError, match="class_names name a label raster's codes"):
        labels_from_file(path, GRID, LabelOptions(class_names=("a", "b")))


def test_a_parcel_file_of_several_layers_is_refused_naming_them(tmp_path):
    """A GeoPackage with roads and parcels: the first layer was read without a word (roads
    as crop labels). A table without geometry beside the parcels (QGIS' styles) is no layer."""
    import pandas as pd
    import pyogrio

    path = tmp_path / "two.gpkg"
    roads = squares_frame().assign(crop="road")
    roads.to_file(path, layer="roads", driver="GPKG")
    squares_frame().to_file(path, layer="parcels", driver="GPKG")
    with pytest.raises(InputDataError, match=r"holds 2 layers \(roads, parcels\): give the "):
        labels_from_parcels(path, GRID)
    single = tmp_path / "styled.gpkg"  # the table first, where a reader takes its first layer
    pyogrio.write_dataframe(pd.DataFrame({"style": ["x"]}), single, layer="layer_styles")
    squares_frame().to_file(single, layer="parcels", driver="GPKG")
    labels, classes = labels_from_parcels(single, GRID)
    assert classes == ["background", "maize", "rice"]
    np.testing.assert_array_equal(labels, expected_squares())


def test_parcel_options_on_a_label_raster_are_refused(tmp_path):
    """``column`` and ``outside_parcels`` read parcel files: given for a raster they were
    ignored without a word."""
    data = np.zeros((40, 50), dtype=np.uint8)
    path = write_raster(tmp_path / "l.tif", data, GRID.transform, tags={"CLASS_0": "other"})
    for options in (LabelOptions(column="crop"), LabelOptions(outside_parcels="unlabelled")):
        with pytest.raises(InputDataError, match=r"read a parcel file .*: leave them out"):
            labels_from_file(path, GRID, options)
    labels, classes = labels_from_file(path, GRID, LabelOptions())
    assert classes == ["other"] and (labels == 0).all()


def test_lines_label_nothing_and_points_alone_are_not_read_as_parcels_with_background(tmp_path):
    """Field boundaries or roads in a parcel file label no area, and a survey of points with
    the background fill would teach every pixel between them as "not the crop"."""
    import geopandas as gpd
    from shapely.geometry import LineString, Point

    x0, y0 = GRID.transform @ (5.5, 5.5)  # the centre of pixel (row 5, col 5)
    road = LineString([(x0, y0), (x0 + 300, y0)])
    mixed = gpd.GeoDataFrame(
        {"crop": ["rice", "maize", "road"]}, geometry=[*squares_frame().geometry, road], crs=UTM
    )
    mixed.to_file(tmp_path / "mixed.gpkg", driver="GPKG")
    with pytest.warns(UserWarning) as caught:
        labels, classes = labels_from_parcels(tmp_path / "mixed.gpkg", GRID)
    said = [str(warning.message) for warning in caught]
    assert said == [
        f"{tmp_path / 'mixed.gpkg'}: 1 line geometries are not parcels and label nothing"
    ]
    assert classes == ["background", "maize", "rice"]
    np.testing.assert_array_equal(labels, expected_squares())

    gpd.GeoDataFrame({"crop": ["road"]}, geometry=[road], crs=UTM).to_file(tmp_path / "r.gpkg")
    with pytest.raises(InputDataError, match=r"r\.gpkg: holds lines only \(1\)"):
        labels_from_parcels(tmp_path / "r.gpkg", GRID)

    survey = gpd.GeoDataFrame(
        {"crop": ["maize", "rice"]}, geometry=[Point(x0, y0), Point(x0 + 100, y0)], crs=UTM
    )
    survey.to_file(tmp_path / "survey.gpkg", driver="GPKG")
    with pytest.raises(InputDataError, match=r"survey\.gpkg: holds points only \(2\).*unlabelled"):
        labels_from_parcels(tmp_path / "survey.gpkg", GRID)
    labels, classes = labels_from_parcels(
        tmp_path / "survey.gpkg", GRID, outside_parcels="unlabelled"
    )
    assert labels[5, 5] == classes.index("maize") and labels[5, 15] == classes.index("rice")
    assert np.count_nonzero(labels >= 0) == 2
