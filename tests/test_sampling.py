"""Stratified random sampling of map pixels: sample size, allocation, the draw and its files.

Sample-size planning numbers are from Olofsson et al. (2014), Remote Sensing of Environment
148:42-57, Section 5.1 and Table 5: weights 0.020, 0.015, 0.320, 0.645, anticipated user's
accuracies 0.70, 0.60, 0.90, 0.95 and a target SE of overall accuracy of 0.01 give n = 641,
allocated proportionally as 13, 10, 205, 413.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import faults_support as fs
from sarcrop.errors import InputDataError
from sarcrop.evaluation import (
    allocate,
    assess,
    draw_sample,
    fill_reference,
    rasters,
    read_sample,
    sample_size_for_se,
    stratum_size_for_users_se,
    write_sample,
)
from sarcrop.options import ReferenceOptions, SamplingOptions

WEIGHTS = [0.020, 0.015, 0.320, 0.645]
SIZES = {i: int(w * 10_000_000) for i, w in enumerate(WEIGHTS)}
TRANSFORM = Affine(10, 0, 500_000, 0, -10, 4_000_000)


def test_sample_size_for_a_target_se_of_overall_accuracy() -> None:
    assert sample_size_for_se(WEIGHTS, [0.70, 0.60, 0.90, 0.95], 0.01) == 641
    assert sample_size_for_se(WEIGHTS, [0.70, 0.60, 0.90, 0.95], 0.02) < 641 / 3
    assert stratum_size_for_users_se(0.9, 0.05) == 37  # 0.09 / 0.0025 + 1


def test_users_accuracy_se_of_the_planned_size_meets_the_target() -> None:
    from sarcrop.evaluation import olofsson_estimates

    n = stratum_size_for_users_se(0.8, 0.04)
    counts = np.array([[round(0.8 * n), n - round(0.8 * n)], [5, 95]])
    users = olofsson_estimates(counts, [10**6, 10**6], fpc=False).users[0]
    assert users.value == pytest.approx(0.8, abs=0.01) and users.se <= 0.04 * 1.01


def test_allocations() -> None:
    assert list(allocate(SIZES, 641, "proportional").values()) == [13, 10, 205, 413]
    assert list(allocate(SIZES, 640, "equal").values()) == [160, 160, 160, 160]
    # 100 for the rare strata, the remaining 441 in proportion 0.320 : 0.645.
    minimum = allocate(SIZES, 641, "min-then-proportional", min_per_stratum=100)
    assert list(minimum.values()) == [100, 100, 146, 295]
    neyman = allocate({0: 1000, 1: 1000}, 80, "neyman", expected_accuracy=[0.5, 0.9])
    assert neyman == {0: 50, 1: 30}  # S_h = 0.5 and 0.3
    capped = allocate({0: 5, 1: 10_000}, 200, "min-then-proportional", min_per_stratum=50)
    assert capped == {0: 5, 1: 195}  # a stratum smaller than the minimum is taken whole
    assert allocate({0: 1, 1: 10_000}, 50, "proportional") == {0: 1, 1: 49}  # never empty


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 10**9, "allocation": "proportional"}, "exceeds"),
        ({"n": 100, "allocation": "min-then-proportional", "min_per_stratum": 30}, "minimum"),
        ({"n": 100, "allocation": "neyman"}, "expected"),
        ({"n": 100, "allocation": "neyman", "expected_accuracy": [0.9, 0.8]}, "give 1 or 4"),
        # A stratum without a point left its pixels counted as wrong in the estimates.
        ({"n": 3, "allocation": "proportional"}, "leaves 1 of the 4 strata without a point"),
    ],
)
def test_impossible_allocations_are_refused(kwargs: dict, message: str) -> None:
    n = kwargs.pop("n")
    with pytest.raises(InputDataError, match=message):
        allocate(SIZES, n, **kwargs)


def test_a_target_se_takes_one_expected_accuracy_or_one_per_stratum() -> None:
    """It was a numpy broadcasting traceback."""
    with pytest.raises(InputDataError, match="2 expected accuracies for 4 strata: give 1 or 4"):
        sample_size_for_se(list(SIZES.values()), [0.9, 0.7], 0.02)


def write_map(
    path: Path, classes: np.ndarray, *, transform: Affine = TRANSFORM, nodata: int | None = 255
) -> Path:
    h, w = classes.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=2,
        dtype="uint8",
        nodata=nodata,
        crs="EPSG:32631",
        transform=transform,
    ) as dst:
        prob = np.where(classes == 255, 255, classes * 200 + 25).astype(np.uint8)
        dst.write(np.stack([prob, classes.astype(np.uint8)]))
        dst.descriptions = ("probability", "class")
    return path


@pytest.fixture
def classes() -> np.ndarray:
    rng = np.random.default_rng(0)
    out = (rng.random((90, 70)) < 0.2).astype(np.uint8)
    out[:10, :] = 255
    return out


def test_draw_is_stratified_seeded_and_independent_of_the_strip_size(
    tmp_path: Path, classes: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    map_path = write_map(tmp_path / "map.tif", classes)
    sample = draw_sample(map_path, 150, options=SamplingOptions(min_per_stratum=60))
    points = sample.points
    assert sample.map_pixels == {0: int(np.sum(classes == 0)), 1: int(np.sum(classes == 1))}
    assert {s.code: s.n for s in sample.strata} == {0: 90, 1: 60}
    np.testing.assert_array_equal(classes[points["row"], points["col"]], points["map_class"])
    assert not points.duplicated(["row", "col"]).any()
    assert (points["row"] >= 10).all()  # nodata is never drawn
    np.testing.assert_allclose(points["x"], 500_000 + 10 * (points["col"] + 0.5))
    np.testing.assert_allclose(points["y"], 4_000_000 - 10 * (points["row"] + 0.5))
    ratio = {s.code: s.n / s.pixels for s in sample.strata}
    np.testing.assert_allclose(points["inclusion_probability"], points["stratum"].map(ratio))

    monkeypatch.setattr(rasters, "STRIP_PIXELS", 150)  # two rows per strip
    again = draw_sample(map_path, 150, options=SamplingOptions(min_per_stratum=60))
    assert again.points.equals(points)
    other = draw_sample(map_path, 150, options=SamplingOptions(min_per_stratum=60, seed=1))
    assert not other.points[["row", "col"]].equals(points[["row", "col"]])


def test_a_sample_of_every_pixel_holds_each_pixel_once(
    tmp_path: Path, classes: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranks map one to one onto the pixels of a stratum, across strips."""
    monkeypatch.setattr(rasters, "STRIP_PIXELS", 500)
    map_path = write_map(tmp_path / "map.tif", classes)
    total = int(np.sum(classes != 255))
    points = draw_sample(map_path, total, options=SamplingOptions(allocation="proportional")).points
    hits = np.zeros(classes.shape, dtype=int)
    np.add.at(hits, (points["row"], points["col"]), 1)
    np.testing.assert_array_equal(hits, (classes != 255).astype(int))
    assert (points["inclusion_probability"] == 1).all()


def test_sample_file_round_trip_and_fill(tmp_path: Path, classes: np.ndarray) -> None:
    map_path = write_map(tmp_path / "map.tif", classes)
    sample = draw_sample(map_path, 120)
    out = write_sample(sample, tmp_path / "s.gpkg")
    back = read_sample(out)
    assert back.points["reference"].isna().all()
    assert back.strata == sample.strata and back.map_pixels == sample.map_pixels
    assert back.grid.same_as(sample.grid)
    filled = fill_reference(back, map_path, ReferenceOptions(label_band=2))
    np.testing.assert_array_equal(
        filled.points["reference"].to_numpy(int), filled.points["map_class"].to_numpy(int)
    )
    import geopandas as gpd

    frame = gpd.read_file(out, layer="samples")
    assert frame.crs.to_epsg() == 32631
    assert {"stratum", "map_class", "row", "col", "reference"} <= set(frame.columns)


def test_a_labelled_sample_is_never_replaced(tmp_path: Path, classes: np.ndarray, capsys) -> None:
    """Points labelled by hand are the work a sample stands for: drawing another sample onto
    them, or onto a file that is not a sample, is refused in one line, before anything is
    drawn; an unlabelled sample may be drawn again, and a sample is a GeoPackage."""
    import hashlib

    map_path = write_map(tmp_path / "map.tif", classes)
    out = tmp_path / "s.gpkg"
    draw = ["sample", map_path, "--n", "120", "--out", out]
    assert fs.run_cli(draw, capsys)[0] == 0
    assert fs.run_cli([*draw[:3], "100", *draw[4:]], capsys)[0] == 0  # unlabelled: drawn again
    assert len(read_sample(out).points) == 100
    fill = ["--fill-from", map_path, "--label-band", "2"]
    assert fs.run_cli([*draw, *fill], capsys)[0] == 0  # labelled from the map
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    code, err = fs.run_cli(draw, capsys)
    fs.assert_clean_error(code, err, out, "holds a sample with 120 reference labels")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    other = tmp_path / "other.gpkg"
    fs.valid_parcels(other)
    code, err = fs.run_cli([*draw[:5], other], capsys)
    fs.assert_clean_error(code, err, other, "exists and is not a sample")
    code, err = fs.run_cli([*draw[:5], tmp_path / "s.csv"], capsys)
    fs.assert_clean_error(code, err, tmp_path / "s.csv", "name it .gpkg")
    assert not (tmp_path / "s.csv").exists()


def test_target_se_sets_the_sample_size(tmp_path: Path, classes: np.ndarray) -> None:
    map_path = write_map(tmp_path / "map.tif", classes)
    options = SamplingOptions(allocation="proportional", expected_accuracy=(0.8,))
    sample = draw_sample(map_path, target_se=0.05, options=options)
    assert len(sample.points) == sample_size_for_se([1, 1], 0.8, 0.05) == 64
    with pytest.raises(InputDataError, match=r"give a sample size \(n, --n\) or a target SE"):
        draw_sample(map_path, 100, target_se=0.05, options=options)  # one or the other


# --- bad input: one line naming the file ------------------------------------------------------


def test_strata_on_another_grid(tmp_path: Path, classes: np.ndarray, capsys) -> None:
    map_path = write_map(tmp_path / "map.tif", classes)
    other = write_map(
        tmp_path / "strata.tif", classes, transform=Affine(20, 0, 500_000, 0, -20, 4_000_000)
    )
    code, err = fs.run_cli(
        ["sample", map_path, "--n", "50", "--out", tmp_path / "s.gpkg", "--strata", other], capsys
    )
    assert code == 2 and str(other) in err and "grid" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.gpkg").exists()


def test_sample_without_the_label_column(tmp_path: Path, classes: np.ndarray, capsys) -> None:
    map_path = write_map(tmp_path / "map.tif", classes)
    samples = tmp_path / "s.gpkg"
    assert fs.run_cli(["sample", map_path, "--n", "120", "--out", samples], capsys)[0] == 0
    code, err = fs.run_cli(
        ["assess", map_path, "--reference", samples, "--label-column", "crop"], capsys
    )
    assert code == 2 and str(samples) in err and "'crop'" in err and len(err.splitlines()) == 1
    code, err = fs.run_cli(["assess", map_path, "--reference", samples], capsys)
    assert code == 2 and str(samples) in err and "no sample point has a reference" in err


def test_assess_against_another_map_or_polygons(
    tmp_path: Path, classes: np.ndarray, capsys
) -> None:
    map_path = write_map(tmp_path / "map.tif", classes)
    samples = tmp_path / "s.gpkg"
    assert fs.run_cli(["sample", map_path, "--n", "120", "--out", samples], capsys)[0] == 0
    other = write_map(tmp_path / "other.tif", classes[:50])
    code, err = fs.run_cli(["assess", other, "--reference", samples], capsys)
    assert code == 2 and str(other) in err and "grid" in err
    flipped = write_map(tmp_path / "flipped.tif", np.where(classes == 255, 255, 1 - classes))
    code, err = fs.run_cli(["assess", flipped, "--reference", samples], capsys)
    assert code == 2 and str(flipped) in err and "120 of 120 sample points" in err
    fs.valid_parcels(tmp_path / "parcels.gpkg")
    argv = ["assess", map_path, "--reference", tmp_path / "parcels.gpkg", "--label-column", "crop"]
    code, err = fs.run_cli(argv, capsys)  # parcels are a census of the map's crop, which
    assert code == 2 and str(map_path) in err and "POSITIVE" in err  # this map does not name


@pytest.mark.parametrize("nodata", [255, None], ids=["nodata-tagged", "untagged"])
def test_points_of_another_design_are_post_stratified(
    tmp_path: Path, classes: np.ndarray, nodata: int | None
) -> None:
    """A simple random sample in another CRS, labelled elsewhere: strata = map classes. Points
    on the map's nodata (255 where the map has no nodata tag) are left out."""
    import geopandas as gpd

    from sarcrop.evaluation import assess, olofsson_estimates

    map_path = write_map(tmp_path / "map.tif", classes, nodata=nodata)
    rng = np.random.default_rng(4)
    rows, cols = rng.integers(0, 90, 300), rng.integers(0, 70, 300)
    truth = np.where(rng.random(300) < 0.1, 1 - classes[rows, cols] % 2, classes[rows, cols] % 2)
    frame = gpd.GeoDataFrame(
        {"crop": truth},
        geometry=gpd.points_from_xy(500_000 + 10 * cols + 5, 4_000_000 - 10 * rows - 5),
        crs="EPSG:32631",
    ).to_crs("EPSG:4326")
    frame.to_file(tmp_path / "points.gpkg", engine="pyogrio")
    with pytest.warns(UserWarning, match=r"^\d+ points off the map or on its nodata are left"):
        result = assess(map_path, tmp_path / "points.gpkg", label_column="crop")
    on_map = classes[rows, cols] != 255
    mapped, ref = classes[rows, cols][on_map], truth[on_map]
    counts = np.array([[np.sum((mapped == i) & (ref == j)) for j in (0, 1)] for i in (0, 1)])
    expected = olofsson_estimates(counts, [np.sum(classes == 0), np.sum(classes == 1)])
    assert "post-stratified" in result.design
    assert result.estimates.area[1].value == pytest.approx(expected.area[1].value)
    assert result.estimates.area[1].se == pytest.approx(expected.area[1].se)
    assert result.estimates.overall.value == pytest.approx(expected.overall.value)


def test_strata_that_mix_map_classes(tmp_path: Path, classes: np.ndarray) -> None:
    """Zones of another raster as strata (not crossed with the map classes), with nodata."""
    from sarcrop.evaluation import assess

    zones = np.zeros(classes.shape, dtype=np.uint8)
    zones[:, 35:] = 1
    zones[80:, :] = 255  # no zone: outside the population
    zone_path = tmp_path / "zones.tif"
    with rasterio.open(
        zone_path,
        "w",
        driver="GTiff",
        width=70,
        height=90,
        count=1,
        dtype="uint8",
        nodata=255,
        crs="EPSG:32631",
        transform=TRANSFORM,
    ) as dst:
        dst.write(zones, 1)
    map_path = write_map(tmp_path / "map.tif", classes)
    options = SamplingOptions(cross_map_class=False, min_per_stratum=40)
    population = (classes != 255) & (zones != 255)
    outside = int(np.sum((classes != 255) & (zones == 255)))
    with pytest.warns(UserWarning, match=f"{outside} mapped pixels are nodata in the strata"):
        sample = draw_sample(map_path, 100, strata=zone_path, options=options)
    assert {s.code: s.pixels for s in sample.strata} == {
        z: int(np.sum(population & (zones == z))) for z in (0, 1)
    }
    assert all(s.map_class is None for s in sample.strata)  # both classes in each zone
    assert sum(sample.map_pixels.values()) == int(population.sum())
    assert (sample.points["row"] < 80).all()
    sample = fill_reference(sample, map_path, ReferenceOptions(label_band=2))
    out = write_sample(sample, tmp_path / "s.gpkg")
    result = assess(map_path, out)
    assert "Stehman" in result.estimates.method
    assert f"{outside} mapped pixels without a stratum outside the population" in result.design
    assert result.estimates.overall.value == 1 and result.estimates.overall.se == 0
    # Zones mix the classes, so even a perfect map's class area is estimated, with an SE.
    area = result.area_pixels(1)
    assert area.se > 0 and abs(area.value - np.sum(population & (classes == 1))) < 3 * area.se


def test_a_stratum_without_a_labelled_point_is_refused_and_one_point_said(
    tmp_path: Path, classes: np.ndarray
) -> None:
    """A stratum whose points were all left unlabelled counted as wrong everywhere: overall
    accuracy 0.63 where its labelled strata agreed 82 %, areas short of the map. It is refused
    now, naming the sample; a stratum of one labelled point (no variance) is said in the
    design, beside the warning."""
    map_path = write_map(tmp_path / "map.tif", classes)
    sample = fill_reference(
        draw_sample(map_path, 60, options=SamplingOptions(allocation="equal")),
        map_path,
        ReferenceOptions(label_band=2),
    )
    points = sample.points.copy()
    in_one = points.index[points["stratum"] == 1]
    points.loc[in_one, "reference"] = None
    blank = write_sample(replace(sample, points=points), tmp_path / "blank.gpkg")
    with pytest.raises(
        InputDataError, match=r"strata 1 \(1,\d+ px\) have no labelled point"
    ) as err:
        assess(map_path, blank)
    assert err.value.path == str(blank)
    points.loc[in_one[0], "reference"] = 1
    single = write_sample(replace(sample, points=points), tmp_path / "single.gpkg")
    with pytest.warns(UserWarning, match=r"strata \[1\] have 1 labelled point"):
        result = assess(map_path, single)
    assert result.design.endswith("; SEs omit the variance of 1 stratum of 1 labelled point")
    assert result.area_pixels(1).value == pytest.approx(np.sum(classes == 1))


def test_labels_come_back_from_a_csv_table(tmp_path: Path, classes: np.ndarray, capsys) -> None:
    """sample --csv → label the table elsewhere → assess --labels-csv, same as filling in place."""
    import pandas as pd
    from rasterio.warp import transform

    map_path = write_map(tmp_path / "map.tif", classes)
    argv = ["sample", map_path, "--n", "120", "--out", tmp_path / "s.gpkg"]
    assert fs.run_cli([*argv, "--csv", tmp_path / "s.csv"], capsys)[0] == 0
    table = pd.read_csv(tmp_path / "s.csv")
    x, y = transform("EPSG:4326", "EPSG:32631", table["lon"].tolist(), table["lat"].tolist())
    np.testing.assert_allclose(x, table["x"], atol=0.05)
    np.testing.assert_allclose(y, table["y"], atol=0.05)
    table["crop"] = classes[table["row"], table["col"]]
    table = table.sample(frac=1, random_state=0)  # order does not matter, ids do
    table[["point_id", "crop"]].to_csv(tmp_path / "labels.csv", index=False)
    code, _ = fs.run_cli(
        [
            "assess",
            map_path,
            "--reference",
            tmp_path / "s.gpkg",
            "--labels-csv",
            tmp_path / "labels.csv",
            "--label-column",
            "crop",
            "--out",
            tmp_path / "a",
        ],
        capsys,
    )
    assert code == 0
    import json

    result = json.loads((tmp_path / "a.json").read_text())
    assert result["sample_size"] == 120 and result["overall_accuracy"]["value"] == 1.0
    table[["crop"]].to_csv(tmp_path / "no_ids.csv", index=False)
    code, err = fs.run_cli(
        [
            "assess",
            map_path,
            "--reference",
            tmp_path / "s.gpkg",
            "--labels-csv",
            tmp_path / "no_ids.csv",
            "--label-column",
            "crop",
        ],
        capsys,
    )
    assert code == 2 and "no_ids.csv" in err and "'point_id'" in err
