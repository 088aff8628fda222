"""Accuracy and area of a crop-type map: ``sample`` and ``assess`` take its class band, name its
classes, and a parcel census maps each parcel's crop to the map's class as training does."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import box

import faults_support as fs
from sarcrop.errors import InputDataError
from sarcrop.evaluation import draw_sample, fill_reference, read_sample, write_sample
from sarcrop.evaluation.assessment import assess, parcel_classes
from sarcrop.options import MapOptions, ReferenceOptions
from sarcrop.prediction import predict_map
from test_predict import write_scenes
from test_predict_classes import CLASSES, OPTIONS, save_crop_type_checkpoint


@pytest.fixture(scope="module")
def crop_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class crop-type map (class band only) of a small area."""
    root = tmp_path_factory.mktemp("assess-classes")
    scenes = write_scenes(root / "scenes", 200, 180, seed=7)
    ckpt = save_crop_type_checkpoint(root / "crops.safetensors", 0)
    options = MapOptions(probability=False)
    return predict_map(ckpt, scenes, root / "crops.tif", output=options, **OPTIONS)


def mapped_counts(path: Path) -> dict[int, int]:
    with rasterio.open(path) as src:
        classes = src.read(1)
    values, counts = np.unique(classes[classes != 255], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_a_sample_labelled_from_the_map_gives_its_own_areas(crop_map: Path, tmp_path: Path) -> None:
    counts = mapped_counts(crop_map)
    assert sorted(counts) == [0, 1, 2]  # the model maps every class somewhere
    sample = draw_sample(crop_map, 180)
    assert sorted(s.map_class for s in sample.strata) == [0, 1, 2]
    filled = fill_reference(sample, crop_map, ReferenceOptions(label_band=1))
    samples = write_sample(filled, tmp_path / "s.gpkg")
    result = assess(crop_map, samples)
    assert result.class_names == tuple(CLASSES)
    assert result.estimates.overall.value == pytest.approx(1.0)
    for i, c in enumerate(result.classes):  # a perfect map: estimates equal the pixel counts
        assert result.area_pixels(i).value == pytest.approx(counts[c])
    text = result.to_markdown()
    assert "| 1 winter wheat |" in text and "| 2 grassland |" in text
    assert result.class_area("Winter wheat").value == pytest.approx(counts[1])  # by its name
    with pytest.raises(InputDataError, match="no map class named 'potato': its classes are"):
        result.class_area("potato")


def test_the_command_names_the_classes(crop_map: Path, tmp_path: Path, capsys) -> None:
    samples = tmp_path / "s.gpkg"
    assert fs.run_cli(["sample", crop_map, "--n", "150", "--out", samples], capsys)[0] == 0
    filled = fill_reference(read_sample(samples), crop_map, ReferenceOptions(label_band=1))
    write_sample(filled, samples)
    out = tmp_path / "a"
    code, err = fs.run_cli(["assess", crop_map, "--reference", samples, "--out", out], capsys)
    assert code == 0, err
    record = json.loads(out.with_name("a.json").read_text())
    assert record["class_names"] == CLASSES
    assert "0 maize" in out.with_name("a.md").read_text()


def test_parcel_classes_follow_training() -> None:
    names = ["background", "grassland", "maize", "potato"]
    codes = np.array([0, 1, 2, 3, -1])
    no_other = parcel_classes(codes, names, ["maize", "grassland"])
    np.testing.assert_array_equal(no_other, [-1, 1, 0, -1, -1])
    other = parcel_classes(codes, names, ["Maize", "other"])
    np.testing.assert_array_equal(other, [1, 1, 0, 1, -1])


def test_a_parcel_census_of_a_crop_type_map(crop_map: Path, tmp_path: Path) -> None:
    with rasterio.open(crop_map) as src:
        mapped, transform, crs = src.read(1), src.transform, src.crs
    # a maize parcel, a grassland parcel and a potato parcel (not a map class: unlabelled)
    cells = {"maize": (10, 10, 60, 50), "grassland": (70, 20, 120, 90), "potato": (20, 80, 60, 120)}
    frame = gpd.GeoDataFrame(
        {"crop": list(cells)},
        geometry=[
            box(*(transform @ (c0, r1)), *(transform @ (c1, r0)))
            for c0, r0, c1, r1 in cells.values()
        ],
        crs=crs,
    )
    parcels = tmp_path / "parcels.gpkg"
    frame.to_file(parcels)
    result = assess(crop_map, parcels, label_column="crop")
    assert result.design == "census"
    for crop, (c0, r0, c1, r1) in cells.items():
        inside = mapped[r0:r1, c0:c1]
        inside = inside[inside != 255]
        if crop == "potato":
            continue
        ref = result.classes.index(CLASSES.index(crop))
        column = result.counts[:, ref]
        assert column.sum() == inside.size  # every mapped pixel of the parcel
        for m, count in zip(*np.unique(inside, return_counts=True), strict=True):
            assert column[result.classes.index(int(m))] == count
    assert result.class_names == tuple(CLASSES)


def test_positive_codes_are_refused_for_a_crop_type_map(
    crop_map: Path, tmp_path: Path, capsys
) -> None:
    """Labels read as one crop (1) against the rest (0) would be scored as the map's classes
    0 and 1, two of its crops: refused in one line, before a point is drawn."""
    out = tmp_path / "s.gpkg"
    argv = ["--fill-from", crop_map, "--label-band", "1", "--positive-codes", "1"]
    code, err = fs.run_cli(["sample", crop_map, "--n", "90", "--out", out, *argv], capsys)
    fs.assert_clean_error(code, err, crop_map, "--positive-codes reads the labels as one crop")
    assert not out.exists()
    census = ["assess", crop_map, "--reference", crop_map, "--positive-codes", "1"]
    code, err = fs.run_cli(census, capsys)
    fs.assert_clean_error(code, err, crop_map, f"crop-type map has {len(CLASSES)} classes")


def test_label_options_without_labels_to_read_are_refused(
    crop_map: Path, tmp_path: Path, capsys
) -> None:
    """``--positive-codes`` or ``--label-band`` without ``--fill-from`` read nothing: said in
    one line, not ignored without a word."""
    out = tmp_path / "s.gpkg"
    argv = ["sample", crop_map, "--n", "90", "--out", out, "--positive-codes", "1200"]
    code, err = fs.run_cli([*argv, "--label-band", "2"], capsys)
    fs.assert_clean_error(code, err, "--label-band, --positive-codes read the labels of")
    assert not out.exists()
