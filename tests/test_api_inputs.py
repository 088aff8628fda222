"""The Python API as a notebook calls it: options as objects or as plain mappings of their
fields, bands and dates as text, and one-line errors that name the parameter otherwise."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

import faults_support as fs
from sarcrop.data.prepare import prepare
from sarcrop.data.season import Season
from sarcrop.data.store import DatasetStore
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.evaluation.sampling import draw_sample
from sarcrop.options import BaselineOptions, SamplingOptions, TilingOptions, as_options
from sarcrop.prediction import predict_map
from sarcrop.training import TrainConfig, evaluate

SEASON = Season(fs.SEASON_START, fs.STEPS, fs.DAYS)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    fs.write_scenes(root / "scenes")
    fs.write_label_raster(root / "labels.tif")
    store = prepare(
        root / "scenes",
        root / "store.zarr",
        labels=root / "labels.tif",
        season=SEASON,
        bands="VH,VV",  # one string: two bands, not four letters
        positive=["rice"],
        tiling={"patch_size": fs.PATCH},  # a mapping of TilingOptions' fields
        progress=False,
    )
    model = fs.tiny_checkpoint(root / "model.safetensors")
    return {"root": root, "scenes": root / "scenes", "store": Path(store), "model": model}


def test_options_as_mappings_give_what_the_option_objects_give(inputs, tmp_path):
    store = DatasetStore(inputs["store"])
    assert tuple(store.bands) == ("VH", "VV") and store.patch_size == fs.PATCH
    assert as_options(TilingOptions, {"patch_size": 8}, "tiling") == TilingOptions(patch_size=8)
    given = run_baseline(inputs["store"], {"n_estimators": 5, "seed": 1}, jobs=1)
    objects = run_baseline(inputs["store"], BaselineOptions(n_estimators=5, seed=1), jobs=1)
    assert given.options == objects.options
    assert given.confusions[fs.STEPS].as_dict() == objects.confusions[fs.STEPS].as_dict()
    # A map: windows and output as mappings, the last day as text.
    maps = []
    for name, until in (("text", "2021-05-20"), ("date", dt.date(2021, 5, 20))):
        out = predict_map(
            inputs["model"],
            inputs["scenes"],
            tmp_path / f"{name}.tif",
            until=until,
            windows={"window": 16, "overlap": 4},
            output={"threshold": 0.4},
            progress=False,
        )
        with rasterio.open(out) as src:
            assert src.tags()["THRESHOLD"] == "0.4" and src.tags()["TIME_STEPS_USED"] == "2"
            maps.append(src.read())
    np.testing.assert_array_equal(*maps)
    sample = draw_sample(tmp_path / "text.tif", 20, options={"seed": 3, "min_per_stratum": 5})
    again = draw_sample(
        tmp_path / "text.tif", 20, options=SamplingOptions(seed=3, min_per_stratum=5)
    )
    assert sample.points.equals(again.points)


def test_a_count_given_as_text_is_the_command_lines_count():
    assert TrainConfig(devices="2") == TrainConfig(devices=2)  # --devices 2 gives the int
    assert TrainConfig(devices="auto").devices == "auto"


def test_scoring_reads_auto_and_all_as_the_command_line_does(inputs):
    by_name = evaluate(inputs["model"], inputs["store"], device="auto", timesteps="ALL")
    plain = evaluate(inputs["model"], inputs["store"], device="cpu", timesteps="all")
    assert by_name["metrics"] == plain["metrics"]
    assert by_name["early_season"] == plain["early_season"]  # "ALL" was every t, unsaid
    assert (
        evaluate(inputs["model"], inputs["store"], timesteps=np.int64(2), threshold="0.5")[
            "timesteps"
        ]
        == evaluate(inputs["model"], inputs["store"], timesteps=2)["timesteps"]
    )


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (
            lambda i, t: predict_map(i["model"], i["scenes"], t / "m.tif", windows=16),
            "windows must be WindowOptions(...) or a mapping of its fields, got int",
        ),
        (
            lambda i, t: predict_map(i["model"], i["scenes"], t / "m.tif", until="20 May"),
            "until must be a date or YYYY-MM-DD, got '20 May'",
        ),
        (
            lambda i, t: run_baseline(i["store"], {"trees": 5}),
            "options: trees: unknown option",
        ),
        (lambda i, t: evaluate(i["model"], i["store"], device="gpu"), "device must be auto"),
        (lambda i, t: evaluate(i["model"], i["store"], batch_size=0), "batch_size must be"),
        (lambda i, t: evaluate(i["model"], i["store"], timesteps="ALL8"), "timesteps must be"),
        (
            lambda i, t: prepare(
                i["scenes"], t / "s.zarr", labels=t / "l.tif", season=SEASON, bands=[]
            ),
            "bands: no band given",
        ),
        (
            lambda i, t: prepare(
                i["scenes"], t / "s.zarr", labels=t / "l.tif", season=SEASON, percentiles=(99, 1)
            ),
            "percentiles must satisfy 0 <= low < high <= 100, got 99 1",
        ),
        (
            lambda i, t: prepare(i["scenes"], t / "s.zarr", labels=t / "l.tif", season="April"),
            "season start must be a date or YYYY-MM-DD, got 'April'",
        ),
        (lambda i, t: TrainConfig(epochs=-1), "epochs: Input should be greater than or equal to 1"),
        (lambda i, t: TilingOptions(patch_size=4), "patch_size: Input should be greater than"),
    ],
)
def test_a_wrong_argument_is_one_line_naming_it(inputs, tmp_path, call, problem):
    with pytest.raises(ConfigError) as error:
        call(inputs, tmp_path)
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_an_area_smaller_than_a_patch_is_said_to_be(inputs, tmp_path):
    """The default 256 px patch over a 24 px area: one patch of padding, which no random split
    can share between train and test; both are said, with the patch size that fits."""
    with pytest.warns(UserWarning) as caught:
        prepare(
            inputs["scenes"],
            tmp_path / "one.zarr",
            labels=inputs["root"] / "labels.tif",
            season=SEASON,
            progress=False,
        )
    said = [str(w.message) for w in caught]
    assert (
        "the area is 24 × 24 px, smaller than one 256 px patch: its patches are mostly padding "
        "and few to split; --patch-size 8 (tiling: patch_size) tiles it" in said
    )
    assert any("the patch split left the test or train set empty" in s for s in said)
    assert len(DatasetStore(tmp_path / "one.zarr")) == 1


def test_a_map_refused_before_it_is_written_leaves_no_folder(inputs, tmp_path):
    """The map's folder holds its lock while the run reads its inputs: a run they refuse
    takes away the folder it made for it."""
    with pytest.raises(SarcropError, match=r"absent\.safetensors"):
        predict_map(tmp_path / "absent.safetensors", inputs["scenes"], tmp_path / "new" / "m.tif")
    assert not (tmp_path / "new").exists()


def test_a_store_is_not_written_over_a_folder_of_other_files(inputs, tmp_path):
    """A mistaken ``--out`` (a scenes folder, ``.``) must not delete what is there: refused
    before any compositing, the files untouched. A store, or an empty folder, is replaced."""
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    options = {"labels": inputs["root"] / "labels.tif", "season": SEASON, "progress": False}
    options["tiling"] = {"patch_size": fs.PATCH}
    with pytest.raises(SarcropError, match=r"mine: output exists and is a folder that is not"):
        prepare(inputs["scenes"], mine, **options)
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "sub").is_dir()
    with pytest.raises(SarcropError, match=r"notes\.txt: output exists and is a file"):
        prepare(inputs["scenes"], mine / "notes.txt", **options)
    (tmp_path / "empty").mkdir()
    store = shutil.copytree(inputs["store"], tmp_path / "store.zarr")  # the module's stays
    for out in (tmp_path / "empty", store):
        # One crop given as a name and the season as its first day, as a notebook gives them.
        start = SEASON.start.isoformat()
        kept = {**options, "season": {"start": start, "steps": SEASON.steps, "days": SEASON.days}}
        prepare(inputs["scenes"], out, **{**kept, "positive": "rice"})
        assert DatasetStore(out).metadata.positive == ["rice"]
