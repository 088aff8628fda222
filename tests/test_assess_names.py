"""A crop-type map assessed against labels that name their classes: a simulated region's
labels (``CLASS_<i>`` tags) and rasters of legend codes (``--legend``, ``--code-map``) are
matched to the map's classes by name, as training matches a store's classes; a one-crop map
keeps its crop against the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import faults_support as fs
import realdata_support
from sarcrop.errors import InputDataError
from sarcrop.evaluation import assess, draw_sample, fill_reference, read_sample
from sarcrop.options import ReferenceOptions, SamplingOptions

shared_data = realdata_support.shared_data
FEW = SamplingOptions(min_per_stratum=10)

SIZE = 40
PROFILE = {
    "driver": "GTiff",
    "crs": "EPSG:32631",
    "transform": Affine(10, 0, 500_000, 0, -10, 4_000_400),
    "width": SIZE,
    "height": SIZE,
}
# A simulated region's legend, barley its positive class (as `sarcrop simulate` writes it).
REGION = ["rice", "barley", "maize", "wheat", "potato", "grassland", "water"]
MAP = ["barley", "wheat", "maize", "potato", "other"]
BY_NAME = np.array([4, 0, 2, 1, 3, 4, 4])  # region class → map class: rice, grass, water: other


def write_classes(path: Path, classes: np.ndarray, names: list[str], **tags: str) -> Path:
    """A crop-type map (``CLASS_NAMES``, class band) or a one-crop one (``POSITIVE`` on it)."""
    profile = {**PROFILE, "count": 1, "dtype": "uint8", "nodata": 255}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(classes.astype(np.uint8), 1)
        dst.descriptions = ("class",)
        if names:
            dst.update_tags(CLASS_NAMES=json.dumps(names))
        dst.update_tags(1, **tags)
    return path


def region_labels(path: Path) -> tuple[Path, np.ndarray]:
    """Labels as a simulated region's ``labels.tif``: class indices with ``CLASS_<i>``,
    ``CLASSES`` and ``POSITIVE`` tags; the top row is nodata."""
    labels = (np.arange(SIZE)[None, :] // 6 + np.arange(SIZE)[:, None] // 10) % len(REGION)
    labels[0] = 255
    profile = {**PROFILE, "count": 1, "dtype": "uint8", "nodata": 255}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(labels.astype(np.uint8), 1)
        names = {f"CLASS_{i}": name for i, name in enumerate(REGION)}
        dst.update_tags(CLASSES=json.dumps(REGION), POSITIVE="barley", **names)
    return path, labels


@pytest.fixture
def region(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A crop-type map that is the labels' classes by name, wrong on a block of pixels."""
    labels, values = region_labels(tmp_path / "labels.tif")
    truth = np.where(values == 255, 255, BY_NAME[np.minimum(values, len(REGION) - 1)])
    mapped = np.where(values == 255, 0, truth)
    mapped[20:30, 5:25] = (mapped[20:30, 5:25] + 1) % len(MAP)
    return write_classes(tmp_path / "map.tif", mapped, MAP), labels, truth


def test_region_labels_are_matched_to_a_crop_type_map_by_name(region, tmp_path, capsys) -> None:
    """Read as the region's positive class against the rest, the labels were scored as the
    map's barley (0) and wheat (1): overall accuracy near 0 instead of the map's own."""
    map_path, labels, truth = region
    with rasterio.open(map_path) as src:
        mapped = src.read(1)
    labelled = truth != 255
    with pytest.warns(UserWarning, match="'grassland', 'rice', 'water' not in the map's classes"):
        census = assess(map_path, labels)
    assert census.estimates.overall.value == pytest.approx(np.mean((mapped == truth)[labelled]))
    assert census.estimates.overall.value > 0.8
    for c in range(len(MAP)):  # each reference class holds the pixels of its name
        assert census.class_area(c).value == pytest.approx(np.sum(truth == c))
    samples = tmp_path / "s.gpkg"
    argv = [
        "sample",
        map_path,
        "--n",
        120,
        "--min-per-stratum",
        10,
        "--out",
        samples,
        "--fill-from",
        labels,
    ]
    with pytest.warns(UserWarning, match="counted as its 'other'"):
        code, err = fs.run_cli(argv, capsys)
    assert code == 0, err
    points = read_sample(samples).points
    expected = truth[points["row"], points["col"]]
    np.testing.assert_array_equal(
        points["reference"].to_numpy(int), np.where(expected == 255, -1, expected)
    )


def test_label_classes_a_map_without_other_lacks_are_refused(region, tmp_path, capsys) -> None:
    map_path, labels, _ = region
    with rasterio.open(map_path) as src:
        mapped = np.minimum(src.read(1), 3)
    narrow = write_classes(tmp_path / "narrow.tif", mapped, MAP[:4])
    code, err = fs.run_cli(["assess", narrow, "--reference", labels], capsys)
    line = fs.assert_clean_error(code, err, labels, "label class 'rice' is not a class of the map")
    assert "no 'other' class" in line
    out = tmp_path / "s.gpkg"
    argv = [
        "sample",
        narrow,
        "--n",
        60,
        "--min-per-stratum",
        10,
        "--out",
        out,
        "--fill-from",
        labels,
    ]
    fs.assert_clean_error(*fs.run_cli(argv, capsys), labels, "no 'other' class")
    assert not out.exists()


def test_a_one_crop_map_is_scored_on_its_own_crop_by_name(region, tmp_path, capsys) -> None:
    """A map of barley against the region's labels (their positive class barley) and a map of
    maize against the same labels: each is scored on its own crop against the rest, not on
    the labels' positive class; a crop the labels do not name is refused in one line."""
    _, labels, _ = region
    values = region_labels(tmp_path / "again.tif")[1]
    for crop, index in (("barley", 1), ("maize", 2)):
        one_crop = write_classes(tmp_path / f"{crop}.tif", values == index, [], POSITIVE=crop)
        census = assess(one_crop, labels)
        assert census.classes == (-1, 0, 1)
        assert census.estimates.overall.value == pytest.approx(1.0)
        assert census.class_area(1).value == np.sum(values == index)
    sorghum = write_classes(tmp_path / "sorghum.tif", values == 2, [], POSITIVE="sorghum")
    code, err = fs.run_cli(["assess", sorghum, "--reference", labels], capsys)
    fs.assert_clean_error(code, err, sorghum, "the map's crop (sorghum) is none of the label")


def test_label_raster_options_are_refused_for_a_file_of_points(region, tmp_path, capsys):
    """--legend, --code-map, --positive-codes and --label-band read a label raster; a sample
    file's labels are map classes in its column, so they would be ignored without a word."""
    map_path, labels, _ = region
    samples = tmp_path / "s.gpkg"
    argv = ["sample", map_path, "--n", 60, "--min-per-stratum", 10, "--out", samples]
    with pytest.warns(UserWarning, match="counted as its 'other'"):
        assert fs.run_cli([*argv, "--fill-from", labels], capsys)[0] == 0
    for extra in (["--label-band", "1"], ["--code-map", '{"1": "barley"}']):
        code, err = fs.run_cli(["assess", map_path, "--reference", samples, *extra], capsys)
        fs.assert_clean_error(code, err, samples, f"{extra[0]} read a label raster")


def test_fill_reference_refuses_positive_codes_for_a_crop_type_map(region) -> None:
    """The command refused them; the Python API filled 0/1 and assess scored them as the
    map's first two crops."""
    map_path, labels, _ = region
    sample = draw_sample(map_path, 100, options=FEW)
    with pytest.raises(
        InputDataError, match="--positive-codes reads the labels as one crop"
    ) as err:
        fill_reference(sample, labels, ReferenceOptions(positive_codes=(1,)))
    assert err.value.path == str(map_path)
    with pytest.raises(InputDataError, match="crop-type map has 5 classes"):
        assess(map_path, labels, options={"positive_codes": (1,)})


# --- legend codes --------------------------------------------------------------------------

LEGEND = """name,croptype,ewoc_code,landcover
Unknown,0,00-00-00-000-0,0
Wheat,1100,11-01-01-000-0,11
Winter wheat,1110,11-01-01-000-1,11
Maize,1200,11-01-06-000-0,11
Potatoes,5100,11-07-00-001-0,11
Permanent grass crops,9120,13-00-00-000-0,13
Unknown,991,00-00-00-000-0,0
"""
CODES = np.array([1110, 1200, 5100, 9120, 991, 1100])
CROP_TYPES = ["maize", "winter wheat", "potatoes", "other"]
BY_LEGEND = np.array([1, 0, 2, 3, -1, 3])  # wheat (1100) is not a class of the map: other


@pytest.fixture
def codes(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray]:
    """A WorldCereal-like raster of crop codes (0 = nodata), its legend, and a crop-type map
    of it with errors; the classes the codes are by name (-1: unknown, 255: nodata)."""
    index = (np.arange(SIZE)[None, :] // 7 + np.arange(SIZE)[:, None] // 9) % len(CODES)
    raster = CODES[index]
    raster[:, 0] = 0
    path = tmp_path / "codes.tif"
    profile = {**PROFILE, "count": 1, "dtype": "uint16", "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(raster.astype(np.uint16), 1)
    legend = tmp_path / "legend.csv"
    legend.write_text(LEGEND)
    truth = np.where(raster == 0, 255, BY_LEGEND[index])
    mapped = np.where(truth < 0, 3, np.where(truth == 255, 0, truth))
    mapped[5:15, 10:30] = 0
    return write_classes(tmp_path / "types.tif", mapped, CROP_TYPES), path, legend, truth


def test_codes_are_read_as_names_by_a_legend_or_a_code_map(codes, tmp_path, capsys) -> None:
    """--positive-codes is refused for a crop-type map, and without a legend codes are not
    map classes: the first error named --positive-codes, a circle."""
    map_path, raster, legend, truth = codes
    code, err = fs.run_cli(["assess", map_path, "--reference", raster], capsys)
    line = fs.assert_clean_error(code, err, raster, "--legend", "--code-map")
    assert "--positive-codes" not in line
    with rasterio.open(map_path) as src:
        mapped = src.read(1)
    scored = (truth >= 0) & (truth != 255)
    expected = np.mean((mapped == truth)[scored])
    out = tmp_path / "census"
    argv = ["assess", map_path, "--reference", raster, "--legend", legend, "--out", out]
    with pytest.warns(
        UserWarning, match="'permanent grass crops', 'wheat' not in the map's classes"
    ):
        code, err = fs.run_cli(argv, capsys)
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["overall_accuracy"]["value"] == pytest.approx(expected)
    assert record["area"]["-1"]["pixels"]["value"] == np.sum((truth < 0) | (truth == 255))
    named = {"1110": "winter_wheat", "1200": "Maize", "5100": "potatoes", "991": "unlabelled"}
    census = assess(map_path, raster, options={"code_map": json.dumps(named)})
    assert census.estimates.overall.value == pytest.approx(expected)  # unlisted codes: other
    samples = tmp_path / "s.gpkg"
    argv = [
        "sample",
        map_path,
        "--n",
        80,
        "--min-per-stratum",
        10,
        "--out",
        samples,
        "--fill-from",
        raster,
    ]
    code, err = fs.run_cli([*argv, "--code-map", json.dumps(named)], capsys)  # unlisted: other
    assert code == 0, err
    points = read_sample(samples).points
    at = truth[points["row"], points["col"]]
    np.testing.assert_array_equal(points["reference"].to_numpy(int), np.where(at == 255, -1, at))
    sample = draw_sample(map_path, 80, options=FEW)
    with pytest.warns(UserWarning, match="counted as its 'other'"):
        by_api = fill_reference(sample, raster, ReferenceOptions(legend=str(legend)))
    np.testing.assert_array_equal(
        by_api.points["reference"].to_numpy(int), np.where(at == 255, -1, at)
    )
    both = ["assess", map_path, "--reference", raster, "--legend", legend, "--positive-codes", 1]
    fs.assert_clean_error(*fs.run_cli(both, capsys), "--positive-codes, --legend")


def test_a_one_crop_map_takes_its_crop_with_its_sub_classes_from_a_legend(codes, tmp_path) -> None:
    """As ``prepare --legend --positive wheat`` trains it: wheat with winter wheat (1110)."""
    _, raster, legend, _ = codes
    with rasterio.open(raster) as src:
        values = src.read(1)
    wheat = np.isin(values, (1100, 1110))
    one_crop = write_classes(tmp_path / "wheat.tif", wheat, [], POSITIVE="wheat")
    census = assess(one_crop, raster, options=ReferenceOptions(legend=str(legend)))
    assert census.estimates.overall.value == pytest.approx(1.0)
    assert census.class_area(1).value == np.sum(wheat)
    assert census.counts[:, 0].sum() == np.sum(np.isin(values, (0, 991)))  # 991: unknown
    by_codes = assess(one_crop, raster, options=ReferenceOptions(positive_codes=(1100, 1110)))
    assert by_codes.class_area(1).value == census.class_area(1).value
    unnamed = write_classes(tmp_path / "unnamed.tif", wheat, [])
    with pytest.raises(InputDataError, match="no POSITIVE tag naming its crop"):
        assess(unnamed, raster, options=ReferenceOptions(legend=str(legend)))


def test_real_worldcereal_codes_against_a_crop_type_map(shared_data: Path, tmp_path) -> None:
    """The Flanders 2019 labels and the WorldCereal legend: a map that is the labels by name
    scores 1."""
    from sarcrop.data.legends import worldcereal_code_map

    folder = shared_data / "worldcereal-s1-croptype-patches"
    raster = folder / "geotiff" / "000028085BF08E7E_labels_CT_LC_10m.tif"
    legend = folder / "legend" / "wc2eurocrops_map.csv"
    if not (raster.is_file() and legend.is_file()):
        pytest.skip("Flanders 2019 labels or the legend not found")
    names = worldcereal_code_map(legend)
    classes = ["maize", "winter cereal", "permanent grass crops", "other"]
    with rasterio.open(raster) as src:
        values, profile = src.read(1), src.profile
    index = {name: i for i, name in enumerate(classes)}
    truth = np.vectorize(lambda v: index.get(names.get(int(v), "other"), 3))(values)
    profile.update(count=1, dtype="uint8", nodata=255)
    map_path = tmp_path / "types.tif"
    with rasterio.open(map_path, "w", **profile) as dst:
        dst.write(truth.astype(np.uint8), 1)
        dst.descriptions = ("class",)
        dst.update_tags(CLASS_NAMES=json.dumps(classes))
    with pytest.warns(UserWarning, match="'potatoes', 'winter wheat' not in the map's classes"):
        census = assess(map_path, raster, options=ReferenceOptions(legend=str(legend)))
    assert census.estimates.overall.value == pytest.approx(1.0)
    assert census.class_area(0).value == np.sum(values == 1200)
