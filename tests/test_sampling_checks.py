"""`sample` and `assess` refuse what would give wrong numbers or lose labels, in one line.

Each test here stands for a way the commands once went wrong without a word: a design read as
another, labels joined to the points of another draw, hectares of a CRS whose pixels are not of
equal area, a labelled file replaced, options silently ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import faults_support as fs
from sarcrop.errors import InputDataError
from sarcrop.evaluation import olofsson_estimates, stehman_estimates
from test_sampling import write_map


@pytest.fixture
def classes() -> np.ndarray:
    rng = np.random.default_rng(0)
    out = (rng.random((90, 70)) < 0.2).astype(np.uint8)
    out[:10, :] = 255
    return out


@pytest.fixture
def map_path(tmp_path: Path, classes: np.ndarray) -> Path:
    return write_map(tmp_path / "map.tif", classes)


def drawn(map_path: Path, out: Path, capsys, *extra: object) -> Path:
    """``sarcrop sample MAP --n 120 --out OUT`` (an unlabelled sample)."""
    assert fs.run_cli(["sample", map_path, "--n", "120", "--out", out, *extra], capsys)[0] == 0
    return out


def add_column(sample: Path, name: str, values: object) -> None:
    """A column added to the points of a sample file, as a GIS would (the other layers kept)."""
    import geopandas as gpd

    points = gpd.read_file(sample, layer="samples", engine="pyogrio")
    points[name] = values(points) if callable(values) else values
    points.to_file(sample, layer="samples", driver="GPKG", engine="pyogrio")


def test_the_estimators_refuse_a_stratum_of_pixels_without_a_point() -> None:
    """Its pixels were in no estimate: the areas summed to 0.9 of the map."""
    with pytest.raises(InputDataError, match=r"strata 1 \(100 px\) have no sample point"):
        olofsson_estimates(np.array([[8, 2], [0, 0]]), [900, 100])
    with pytest.raises(InputDataError, match=r"strata 1 \(100 px\) have no sample point"):
        stehman_estimates([0] * 10, [0] * 10, [0] * 8 + [1] * 2, {0: 900, 1: 100})
    # A reference class that no pixel is mapped as is no stratum: it needs no point.
    e = olofsson_estimates(np.array([[8, 2], [0, 0]]), [900, 0])
    assert sum(a.value for a in e.area) == pytest.approx(1)


def test_labels_in_another_column_of_a_sample(map_path: Path, tmp_path: Path, capsys) -> None:
    """The documented workflow: `sample` writes an empty `reference`, the labels go in `crop`,
    `assess --label-column crop` reads them (it was a TypeError of two `reference` columns)."""
    sample = drawn(map_path, tmp_path / "s.gpkg", capsys)
    add_column(sample, "crop", lambda p: p["map_class"])
    argv = ["assess", map_path, "--reference", sample, "--label-column", "crop"]
    code, err = fs.run_cli([*argv, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["sample_size"] == 120 and result["overall_accuracy"]["value"] == 1.0


@pytest.mark.parametrize("name", ["points.gpkg", "points.geojson"])
def test_the_points_of_a_sample_without_its_design_are_refused(
    map_path: Path, tmp_path: Path, capsys, name: str
) -> None:
    """The `samples` layer alone was post-stratified by map class, its own strata ignored:
    an uncertain stratum sampled heavily weighed as much as the rest, the area 2× off."""
    import geopandas as gpd

    sample = drawn(map_path, tmp_path / "s.gpkg", capsys)
    add_column(sample, "reference", lambda p: p["map_class"])
    points = gpd.read_file(sample, layer="samples", engine="pyogrio")
    points.to_file(tmp_path / name, engine="pyogrio")
    code, err = fs.run_cli(["assess", map_path, "--reference", tmp_path / name], capsys)
    line = fs.assert_clean_error(code, err, tmp_path / name, "a stratified sample's points")
    assert "without its layers strata, map_classes, design" in line
    assert "give the whole GeoPackage that `sarcrop sample` wrote" in line
    assert fs.run_cli(["assess", map_path, "--reference", sample], capsys)[0] == 0


def test_labels_of_another_draw_are_refused(
    map_path: Path, classes: np.ndarray, tmp_path: Path, capsys
) -> None:
    """Labels were joined by point id alone: after a sample was drawn again into the same
    file, ids 1..n were other pixels and the labels landed on them without a word."""
    import pandas as pd

    sample = drawn(map_path, tmp_path / "s.gpkg", capsys, "--csv", tmp_path / "s.csv")
    table = pd.read_csv(tmp_path / "s.csv")
    table["crop"] = classes[table["row"], table["col"]]
    table.to_csv(tmp_path / "labelled.csv", index=False)
    table.drop(columns=["x", "y", "lon", "lat"]).to_csv(tmp_path / "cells.csv", index=False)
    table[["point_id", "crop"]].to_csv(tmp_path / "ids.csv", index=False)
    assess = ["assess", map_path, "--reference", sample, "--label-column", "crop"]
    for name in ("labelled.csv", "cells.csv"):  # the same draw: accepted
        assert fs.run_cli([*assess, "--labels-csv", tmp_path / name], capsys)[0] == 0
    drawn(map_path, sample, capsys, "--seed", "1")  # unlabelled, so drawn again
    for name, where in (("labelled.csv", "x/y"), ("cells.csv", "row/col")):
        code, err = fs.run_cli([*assess, "--labels-csv", tmp_path / name], capsys)
        line = fs.assert_clean_error(code, err, tmp_path / name, f"point 1 is at {where} ")
        assert "the table belongs to another draw" in line
    # A table of ids alone cannot be checked, and is read as before.
    assert fs.run_cli([*assess, "--labels-csv", tmp_path / "ids.csv"], capsys)[0] == 0


def test_hectares_only_where_the_crs_keeps_areas(classes: np.ndarray, tmp_path: Path) -> None:
    """Web Mercator at 52° N: the transform's 10 m pixels cover 38 m² of ground, and the
    hectares were 2.6× the truth. Areas are in pixels there, with a warning naming the CRS;
    UTM (within 1 % of equal area near its zone) keeps its hectares."""
    import rasterio
    from affine import Affine

    from sarcrop.evaluation import assess

    web = Affine(10, 0, 445_000, 0, -10, 6_800_000)
    labels = write_map(tmp_path / "labels.tif", classes, transform=web)
    with rasterio.open(labels, "r+") as ds:
        ds.crs = "EPSG:3857"
    with pytest.warns(
        UserWarning, match=r"CRS EPSG:3857 does not keep areas \(it scales them by 2\.6"
    ):
        result = assess(labels, labels, options={"label_band": 2})
    assert result.pixel_area_m2 is None
    assert result.to_dict()["area"]["1"]["hectares"] is None
    assert "no hectares" in result.to_markdown()
    utm = write_map(tmp_path / "utm.tif", classes)
    assert assess(utm, utm, options={"label_band": 2}).pixel_area_m2 == 100


def test_labels_in_a_column_of_their_own_are_never_replaced(
    map_path: Path, tmp_path: Path, capsys
) -> None:
    """Only `reference` was counted: labels entered in a field `crop` were replaced by a new
    draw into the same file."""
    import hashlib

    sample = drawn(map_path, tmp_path / "s.gpkg", capsys)
    add_column(sample, "crop", None)  # an empty field added: nothing to lose yet
    drawn(map_path, sample, capsys, "--seed", "1")
    add_column(sample, "crop", lambda p: p["map_class"].where(p["point_id"] <= 7))
    before = hashlib.sha256(sample.read_bytes()).hexdigest()
    code, err = fs.run_cli(["sample", map_path, "--n", "120", "--out", sample], capsys)
    fs.assert_clean_error(code, err, sample, "holds a sample with 7 values in column 'crop'")
    assert hashlib.sha256(sample.read_bytes()).hexdigest() == before


def test_a_labelled_points_table_is_never_replaced(map_path: Path, tmp_path: Path, capsys) -> None:
    """`--csv` overwrote any file; a bad --csv failed after the sample was written. Now a
    table with labels, or a path that cannot take it, is refused before a point is drawn."""
    import pandas as pd

    table = tmp_path / "s.csv"
    drawn(map_path, tmp_path / "s.gpkg", capsys, "--csv", table)
    drawn(map_path, tmp_path / "s.gpkg", capsys, "--csv", table, "--seed", "1")  # no labels
    pd.read_csv(table).assign(crop=1).to_csv(table, index=False)
    before = table.read_bytes()
    new = tmp_path / "new.gpkg"
    draw = ["sample", map_path, "--n", "120", "--out", new, "--csv"]
    code, err = fs.run_cli([*draw, table], capsys)
    fs.assert_clean_error(code, err, table, "holds a points table with 120 values in column 'crop'")
    assert table.read_bytes() == before
    (tmp_path / "notes.txt").write_text("field notes\n")
    for bad, problem in (
        (tmp_path / "notes.txt", "is not a points table"),
        (tmp_path, "is a folder"),
        (map_path / "s.csv", "is not a writable folder"),
    ):
        code, err = fs.run_cli([*draw, bad], capsys)
        fs.assert_clean_error(code, err, bad, problem)
    code, err = fs.run_cli([*draw, new], capsys)
    fs.assert_clean_error(code, err, new, "is the sample's own file")
    assert not new.exists() and (tmp_path / "notes.txt").read_text() == "field notes\n"


def write_float_map(path: Path, classes: np.ndarray, nodata: float | None = np.nan) -> Path:
    """The class map as float32, NaN where it has no class."""
    import rasterio

    values = np.where(classes == 255, np.nan, classes).astype(np.float32)
    profile = {"driver": "GTiff", "width": classes.shape[1], "height": classes.shape[0]}
    with rasterio.open(
        path,
        "w",
        **profile,
        count=1,
        dtype="float32",
        crs="EPSG:32631",
        nodata=nodata,
        transform=rasterio.transform.from_origin(500_000, 4_000_000, 10, 10),
    ) as dst:
        dst.write(values, 1)
    return path


@pytest.mark.parametrize("nodata", [np.nan, None], ids=["nan-nodata", "untagged"])
def test_a_float_map_with_nan_has_no_class_there(
    map_path: Path, classes: np.ndarray, tmp_path: Path, capsys, nodata: float | None
) -> None:
    """`int(nodata)` of a NaN nodata stopped `sample` and `assess` with a ValueError."""
    floats = write_float_map(tmp_path / "f.tif", classes, nodata)
    out = tmp_path / "f.gpkg"
    fill = ["--fill-from", map_path, "--label-band", "2"]
    code, err = fs.run_cli(["sample", floats, "--n", "120", "--out", out, *fill], capsys)
    assert code == 0, err
    code, err = fs.run_cli(["assess", floats, "--reference", out, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "a.json").read_text())
    mapped = {str(c): int(np.sum(classes == c)) for c in (0, 1)}
    assert {c: a["pixel_count"] for c, a in result["area"].items()} == mapped
    assert result["overall_accuracy"]["value"] == 1.0
    census = ["assess", floats, "--reference", map_path, "--label-band", "2"]
    code, err = fs.run_cli([*census, "--out", tmp_path / "c"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["classes"] == [0, 1] and result["total_pixels"] == sum(mapped.values())


def test_a_map_of_fractions_is_refused(classes: np.ndarray, tmp_path: Path, capsys) -> None:
    import rasterio

    floats = write_float_map(tmp_path / "f.tif", classes)
    with rasterio.open(floats, "r+") as ds:
        ds.write(np.where(classes == 255, np.nan, classes * 0.8).astype(np.float32), 1)
    code, err = fs.run_cli(["sample", floats, "--n", "120", "--out", tmp_path / "s.gpkg"], capsys)
    fs.assert_clean_error(code, err, floats, "the class band holds 0.8, not a class number")


def test_strata_with_a_negative_nodata(map_path: Path, tmp_path: Path) -> None:
    """An int16 strata raster with nodata -9999 was refused as 'outside 0..': the range was
    checked before nodata was set aside."""
    import rasterio

    from sarcrop.evaluation import draw_sample

    zones = np.zeros((90, 70), dtype=np.int16)
    zones[:, 35:] = 1
    zones[80:, :] = -9999
    with rasterio.open(map_path) as ds:
        profile = {**ds.profile, "count": 1, "dtype": "int16", "nodata": -9999}
    with rasterio.open(tmp_path / "zones.tif", "w", **profile) as dst:
        dst.write(zones, 1)
    with pytest.warns(UserWarning, match="mapped pixels are nodata in the strata raster"):
        sample = draw_sample(map_path, 200, strata=tmp_path / "zones.tif")
    assert {s.level for s in sample.strata} == {0, 1} and (sample.points["row"] < 80).all()
    zones[0, 0] = -3  # a negative level is still refused
    with rasterio.open(tmp_path / "zones.tif", "r+") as dst:
        dst.write(zones, 1)
    with pytest.raises(InputDataError, match=r"strata values outside 0\.\.8388607"):
        draw_sample(map_path, 200, strata=tmp_path / "zones.tif")


def test_a_map_without_class_tags_has_the_classes_it_holds(tmp_path: Path, capsys) -> None:
    """Plain values are map classes: a map of classes 0, 1 and 2 without CLASS_NAMES or
    POSITIVE tags was refused ("reference classes 2 are not classes of the map (0 to 1")."""
    import rasterio

    rng = np.random.default_rng(3)
    three = rng.integers(0, 3, (40, 50)).astype(np.uint8)
    profile = {
        "driver": "GTiff",
        "width": 50,
        "height": 40,
        "count": 1,
        "dtype": "uint8",
        "nodata": 255,
        "crs": "EPSG:32631",
        "transform": rasterio.transform.from_origin(500_000, 5_800_000, 10, 10),
    }
    map_path = tmp_path / "map3.tif"
    with rasterio.open(map_path, "w", **profile) as dst:
        dst.write(three, 1)
    out = tmp_path / "s.gpkg"
    argv = ["sample", map_path, "--n", "150", "--out", out, "--fill-from", map_path]
    assert fs.run_cli(argv, capsys)[0] == 0
    assert (
        fs.run_cli(["assess", map_path, "--reference", out, "--out", tmp_path / "a"], capsys)[0]
        == 0
    )
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["classes"] == [0, 1, 2] and result["overall_accuracy"]["value"] == 1.0
    census = ["assess", map_path, "--reference", map_path, "--out", tmp_path / "c"]
    assert fs.run_cli(census, capsys)[0] == 0
    # Crop codes are still no classes of it.
    codes = tmp_path / "codes.tif"
    with rasterio.open(codes, "w", **{**profile, "dtype": "uint16", "nodata": 0}) as dst:
        dst.write(np.where(three == 1, 1200, 9120).astype(np.uint16), 1)
    code, err = fs.run_cli(["assess", map_path, "--reference", codes], capsys)
    line = fs.assert_clean_error(code, err, codes, "reference classes 1200, 9120 are not")
    assert "(0 to 2, and -1 for no class)" in line and "map's class numbers" in line


def test_assess_refuses_label_options_the_reference_would_ignore(
    map_path: Path, classes: np.ndarray, tmp_path: Path, capsys
) -> None:
    """--labels-csv was ignored for points that are not a sample and for label rasters, and
    --label-column for rasters, where label raster options were refused for points."""
    import geopandas as gpd

    table = tmp_path / "labels.csv"
    table.write_text("point_id,crop\n1,0\n")
    points = tmp_path / "points.gpkg"
    gpd.GeoDataFrame(
        {"crop": [0, 1]},
        geometry=gpd.points_from_xy([500_105, 500_205], [3_999_805, 3_999_805]),
        crs="EPSG:32631",
    ).to_file(points, engine="pyogrio")
    assess = ["assess", map_path, "--reference"]
    for argv, said in (
        ([map_path, "--label-band", "2", "--labels-csv", table], "(--labels-csv)"),
        ([map_path, "--label-band", "2", "--label-column", "crop"], "(--label-column)"),
        ([points, "--label-column", "crop", "--labels-csv", table], "(--labels-csv)"),
    ):
        code, err = fs.run_cli([*assess, *argv], capsys)
        line = fs.assert_clean_error(code, err, argv[0], said, "leave it out")
        assert ("a label raster" in line) == (argv[0] == map_path)
    fs.valid_parcels(tmp_path / "parcels.gpkg")
    code, err = fs.run_cli([*assess, tmp_path / "parcels.gpkg", "--labels-csv", table], capsys)
    fs.assert_clean_error(code, err, tmp_path / "parcels.gpkg", "a file of parcels")


@pytest.mark.parametrize(
    ("flags", "options", "said"),
    [
        (
            ["--strata-band", "probability"],
            {"strata_band": "probability"},
            "--strata-band read a strata raster, which is not given",
        ),
        (
            ["--no-cross-map-class"],
            {"cross_map_class": False},
            "--no-cross-map-class read a strata raster",
        ),
        (
            ["--allocation", "equal", "--min-per-stratum", "10"],
            {"allocation": "equal", "min_per_stratum": 10},
            "min-then-proportional allocation, which equal does not use",
        ),
        (
            ["--allocation", "proportional", "--expected-accuracy", "0.8"],
            {"allocation": "proportional", "expected_accuracy": 0.8},
            "--expected-accuracy sizes a sample for --target-se or allocates it by neyman",
        ),
    ],
    ids=["strata-band", "no-cross-map-class", "min-per-stratum", "expected-accuracy"],
)
def test_sample_refuses_options_it_would_ignore(
    map_path: Path, tmp_path: Path, capsys, flags: list[str], options: dict, said: str
) -> None:
    """They changed nothing without a word: strata options without --strata, a minimum per
    stratum that only min-then-proportional takes, accuracies that only neyman and
    --target-se read."""
    from sarcrop.errors import ConfigError
    from sarcrop.evaluation import draw_sample

    out = tmp_path / "s.gpkg"
    code, err = fs.run_cli(["sample", map_path, "--n", "120", "--out", out, *flags], capsys)
    fs.assert_clean_error(code, err, said)
    assert not out.exists()
    with pytest.raises(ConfigError, match=said):
        draw_sample(map_path, 120, options=options)


def test_a_point_or_pixel_held_twice_is_refused(map_path: Path, tmp_path: Path) -> None:
    """A sample drawn without replacement holds each point and pixel once: a copied point
    counted twice in its stratum's estimate."""
    from dataclasses import replace

    import pandas as pd

    from sarcrop.evaluation import assess, draw_sample, fill_reference, write_sample
    from sarcrop.options import ReferenceOptions

    sample = fill_reference(draw_sample(map_path, 120), map_path, ReferenceOptions(label_band=2))
    points = sample.points
    copied = pd.concat([points, points.iloc[[3]].assign(point_id=121)], ignore_index=True)
    renumbered = points.assign(point_id=points["point_id"].where(points["point_id"] != 9, 8))
    for frame, said in (
        (copied, r"pixel row, col \d+, \d+ is held by 2 points"),
        (renumbered, "point id 8 is held by 2 points"),
    ):
        out = write_sample(replace(sample, points=frame), tmp_path / "s.gpkg", overwrite=True)
        with pytest.raises(InputDataError, match=said) as err:
            assess(map_path, out)
        assert err.value.path == str(out) and "without replacement" in str(err.value)
