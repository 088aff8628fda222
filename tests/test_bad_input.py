"""Bad input gets a clear error: one line naming the file and the problem, exit code 2.

Every case writes a small real input (GeoTIFF scenes in the simulator's convention, label
rasters, parcel files, YAML configs, checkpoints), breaks one thing and runs the ``sarcrop``
command line on it. The cases that must *work* (labels on another grid, parcels in another
CRS, some acquisitions outside the season, NaN/Inf regions) are checked to produce a store.
docs/reliability.md lists every case with the message a user sees.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

import faults_support as fs
from sarcrop.data.store import DatasetStore

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A valid input: 8 scenes, a label raster, matching parcels."""
    root = tmp_path_factory.mktemp("base")
    fs.write_scenes(root / "scenes")
    fs.write_label_raster(root / "labels.tif")
    fs.valid_parcels(root / "parcels.gpkg")
    return root


@pytest.fixture
def work(base: Path, tmp_path: Path) -> Path:
    """A private copy of the valid input to break."""
    shutil.copytree(base, tmp_path / "in")
    return tmp_path / "in"


def scene(work: Path, index: int) -> Path:
    return sorted((work / "scenes").glob("*.tif"))[index]


def all_scenes(work: Path) -> list[Path]:
    return sorted((work / "scenes").glob("*.tif"))


def prepare_cli(work: Path, capsys, *extra: str, labels: Path | None = None) -> tuple[int, str]:
    argv = fs.prepare_args(work / "scenes", labels or work / "labels.tif", work / "out.zarr")
    return fs.run_cli([*argv, *extra], capsys)


# ------------------------------------------------------------------------------ scenes

# (name, how to break the input, substrings of the error line; the first is the file named)
SceneBreak = Callable[[Path], Path]


def _truncate(work: Path) -> Path:
    fs.truncate(scene(work, 3), 0.5)
    return scene(work, 3)


def _truncate_header(work: Path) -> Path:
    fs.truncate(scene(work, 3), 100)
    return scene(work, 3)


def _garbage(work: Path) -> Path:
    path = work / "scenes" / "S1A_IW_GRDH_20210503T060000_ASC_test.tif"
    path.write_bytes(b"not a tiff " * 40)
    return path


def _flip(work: Path) -> Path:
    fs.flip_bytes(scene(work, 2), range(0, 64))
    return scene(work, 2)


def _vh_only(work: Path) -> Path:
    for path in all_scenes(work):
        fs.rewrite_scene(path, keep=[1])
    return work / "scenes"


def _bad_band_names(work: Path) -> Path:
    for path in all_scenes(work):
        fs.rewrite_scene(path, bands=["band_1", "band_2"])
    return work / "scenes"


def _mixed_crs(work: Path) -> Path:
    fs.rewrite_scene(scene(work, 2), crs="EPSG:32632")
    return scene(work, 2)


def _mixed_resolution(work: Path) -> Path:
    fs.rewrite_scene(scene(work, 2), transform=Affine(20, 0, 500000, 0, -20, 5600000))
    return scene(work, 2)


def _no_overlap(work: Path) -> Path:
    fs.rewrite_scene(scene(work, 2), transform=Affine(10, 0, 600000, 0, -10, 5600000))
    return scene(work, 2)


def _no_dates(work: Path) -> Path:
    for i, path in enumerate(all_scenes(work)):
        fs.rewrite_scene(path, drop_tags=["ACQUISITION_TIME"])
        path.rename(path.with_name(f"scene_{i}.tif"))
    return work / "scenes"


def _all_nodata(work: Path) -> Path:
    for path in all_scenes(work):
        fs.rewrite_scene(path, values=lambda v: np.full_like(v, fs.NODATA))
    return work / "scenes"


def _all_nan_inf(work: Path) -> Path:
    for k, path in enumerate(all_scenes(work)):
        fs.rewrite_scene(path, values=lambda v, k=k: np.full_like(v, np.nan if k % 2 else np.inf))
    return work / "scenes"


def _linear_declared_db(work: Path) -> Path:
    for path in all_scenes(work):
        fs.rewrite_scene(path, values=lambda v: 10 ** (v / 10))
    return scene(work, 0)


def _db_declared_linear(work: Path) -> Path:
    for path in all_scenes(work):
        fs.rewrite_scene(path, tags={"UNITS": "linear"})
    return scene(work, 0)


def _one_linear_among_db(work: Path) -> Path:
    fs.rewrite_scene(scene(work, 5), values=lambda v: 10 ** (v / 10))
    return scene(work, 5)


def _empty_folder(work: Path) -> Path:
    shutil.rmtree(work / "scenes")
    (work / "scenes").mkdir()
    return work / "scenes"


def _missing_folder(work: Path) -> Path:
    shutil.rmtree(work / "scenes")
    return work / "scenes"


SCENE_CASES: list[tuple[str, SceneBreak, tuple[str, ...]]] = [
    ("truncated GeoTIFF", _truncate, ("cannot read raster",)),
    ("GeoTIFF cut inside its header", _truncate_header, ("cannot read raster",)),
    ("not a GeoTIFF", _garbage, ("cannot read raster", "not recognized")),
    ("flipped header bytes", _flip, ("cannot read raster",)),
    ("VV missing (bands VH VV requested)", _vh_only, ("missing band VV", "found VH")),
    ("band names not polarisations", _bad_band_names, ("no polarisation",)),
    ("mixed CRS", _mixed_crs, ("grids differ", "EPSG:32632")),
    ("mixed resolution", _mixed_resolution, ("grids differ", "at 20")),
    ("grids do not overlap", _no_overlap, ("overlaps none of the other scenes",)),
    ("no acquisition dates", _no_dates, ("no acquisition time",)),
    ("all nodata", _all_nodata, ("no valid pixel",)),
    ("all NaN/Inf", _all_nan_inf, ("no valid pixel",)),
    ("linear values declared dB", _linear_declared_db, ("declared as db", "look linear")),
    ("dB values declared linear", _db_declared_linear, ("declared as linear", "look db")),
    ("one linear file among dB files", _one_linear_among_db, ("look linear", "are db")),
    ("empty folder", _empty_folder, ("folder is empty",)),
    ("missing folder", _missing_folder, ("no such file or folder",)),
]


@pytest.mark.parametrize(
    ("breaker", "expected"), [c[1:] for c in SCENE_CASES], ids=[c[0] for c in SCENE_CASES]
)
def test_bad_scenes_give_one_line_naming_the_file(work, capsys, breaker, expected):
    named = breaker(work)
    code, err = prepare_cli(work, capsys)
    line = fs.assert_clean_error(code, err, named, *expected)
    assert line.startswith("sarcrop prepare: error: ")
    assert not (work / "out.zarr").exists()
    assert not fs.temporaries(work)


def test_missing_images_are_named_before_anything_else(work, capsys):
    """A mistyped folder was answered with "--season-start is required", the first question
    the command asked, not the problem."""
    gone = work / "nope"
    code, err = fs.run_cli(
        ["prepare", "--images", gone, "--labels", work / "labels.tif", "--out", work / "out.zarr"],
        capsys,
    )
    fs.assert_clean_error(code, err, gone, "no such file or folder")


def test_all_acquisitions_outside_the_season_is_an_error(work, capsys):
    code, err = prepare_cli(work, capsys, "--season-start", "2020-01-01")
    fs.assert_clean_error(
        code,
        err,
        work / "scenes",
        "no acquisition falls in the season 2020-01-01 to 2020-02-09",
        "acquisitions: 2021-05-02 to 2021-06-06",
    )


def test_some_acquisitions_outside_the_season_are_ignored(work, capsys):
    fs.rewrite_scene(scene(work, 0), tags={"ACQUISITION_TIME": "2021-09-01T06:00:00"})
    fs.write_scene(work / "scenes", fs.dt.datetime(2020, 1, 1, 6), fs.scene_values(0))
    code, err = prepare_cli(work, capsys)
    assert code == 0, err
    store = DatasetStore(work / "out.zarr")
    assert "2021-09-01T06:00:00" not in store.metadata.source["acquisitions"]
    assert len(store.metadata.source["acquisitions"]) == 7


def test_nan_inf_and_nodata_regions_are_missing_data(work, capsys):
    """NaN, +/-Inf and nodata in a scene are treated alike: as no observation."""
    fs.rewrite_scene(
        scene(work, 2),
        values=lambda v: fs.nan_region(
            fs.nan_region(fs.nan_region(v, np.nan, (0, 8, 0, 8)), np.inf, (8, 16, 0, 8)),
            -np.inf,
            (16, 24, 0, 8),
        ),
    )
    fs.rewrite_scene(scene(work, 3), values=lambda v: fs.nan_region(v, fs.NODATA, (0, 24, 0, 8)))
    code, err = prepare_cli(work, capsys)
    assert code == 0, err
    store = DatasetStore(work / "out.zarr")
    for i in range(len(store)):
        image = store.read_image(i)
        assert not np.isinf(image).any()
        finite = image[np.isfinite(image)]
        assert finite.min() > -40 and finite.max() < 10  # no -9999 or Inf averaged in


def test_a_missing_band_or_date_in_one_file_is_tolerated(work, capsys):
    """One file without VV contributes VH only; one file with no date is left out, and the
    run says so, naming it."""
    fs.rewrite_scene(scene(work, 2), keep=[1])
    undated = scene(work, 4)
    fs.rewrite_scene(undated, drop_tags=["ACQUISITION_TIME"])
    undated.rename(undated.with_name("scene_without_date.tif"))
    with pytest.warns(
        UserWarning,
        match=r"1 input\(s\) hold no Sentinel-1 acquisition and are "
        r"left out: scene_without_date.tif \(no acquisition time\)",
    ):
        code, err = prepare_cli(work, capsys)
    assert code == 0, err
    assert len(DatasetStore(work / "out.zarr").metadata.source["acquisitions"]) == 7


def test_debug_shows_the_traceback(work):
    from sarcrop.cli import main
    from sarcrop.errors import InputDataError

    _mixed_crs(work)
    argv = fs.prepare_args(work / "scenes", work / "labels.tif", work / "out.zarr")
    with pytest.raises(InputDataError, match="grids differ"):
        main(["--debug", *argv])


def test_real_command_exits_2_without_traceback(work):
    _truncate(work)
    argv = fs.prepare_args(work / "scenes", work / "labels.tif", work / "out.zarr")
    proc = subprocess.run(
        [fs.SARCROP, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and str(scene(work, 3)) in errors[0]


# ------------------------------------------------------------------------------ labels


def test_label_raster_on_another_grid_is_reprojected(work, capsys):
    with rasterio.open(work / "labels.tif") as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds, resolution=5
        )
        other = np.full((height, width), 255, np.uint8)
        reproject(
            src.read(1),
            other,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs="EPSG:3857",
            resampling=Resampling.nearest,
            src_nodata=255,
            dst_nodata=255,
        )
    labels = fs.write_label_raster(
        work / "labels_3857.tif", other, crs="EPSG:3857", transform=transform
    )
    code, err = prepare_cli(work, capsys, labels=labels)
    assert code == 0, err
    _assert_rice_where_expected(work / "out.zarr")


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_parcels_in_another_crs_are_reprojected(work, capsys, crs, suffix):
    parcels = fs.valid_parcels(work / f"parcels_other{suffix}", crs=crs)
    code, err = prepare_cli(work, capsys, labels=parcels)
    assert code == 0, err
    _assert_rice_where_expected(work / "out.zarr")


def _assert_rice_where_expected(path: Path) -> None:
    store = DatasetStore(path)
    rice = store.classes.index("rice")
    expected = fs.label_array() == 1
    found = np.zeros_like(expected)
    for i, (row, col) in enumerate(store.offsets):
        lab = store.read_labels(i)
        h, w = min(fs.PATCH, fs.SIZE - row), min(fs.PATCH, fs.SIZE - col)
        found[row : row + h, col : col + w] = lab[:h, :w] == rice
    assert (found == expected).mean() > 0.97


def test_invalid_parcel_geometries_are_repaired_with_a_warning(work, capsys):
    x0, y0 = fs.TRANSFORM @ (2, 2)
    x1, y1 = fs.TRANSFORM @ (12, 10)
    bowtie = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    parcels = fs.write_parcels(
        work / "bowtie.gpkg", [bowtie, fs.grid_box(12, 8, 22, 20)], ["rice", "maize"]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, err = prepare_cli(work, capsys, labels=parcels)
    assert code == 0, err
    assert any("repaired 1 invalid parcel" in str(w.message) for w in caught)
    assert "rice" in DatasetStore(work / "out.zarr").classes


LABEL_CASES: list[tuple[str, Callable[[Path], tuple[Path, list[str]]], tuple[str, ...]]] = [
    (
        "positive class absent",
        lambda w: (w / "labels.tif", ["--positive", "wheat"]),
        ("positive class 'wheat' is not in the labels", "classes present: background, rice"),
    ),
    (
        "positive class named by the labels, on no pixel",
        lambda w: (
            fs.write_label_raster(w / "norice.tif", np.zeros_like(fs.label_array())),
            [],
        ),
        ("positive 'rice': no pixel of the image area has it", "(labelled pixels: background"),
    ),
    (
        "parcels outside the area",
        lambda w: (
            fs.write_parcels(w / "far.gpkg", [shapely.box(7e5, 5e6, 7.001e5, 5.0001e6)], ["rice"]),
            [],
        ),
        ("no parcel overlaps the image area",),
    ),
    (
        "label raster outside the area",
        lambda w: (
            fs.write_label_raster(w / "far.tif", transform=Affine(10, 0, 7e5, 0, -10, 5.6e6)),
            [],
        ),
        ("no patch has both image data and labels",),
    ),
    (
        "label raster without class names",
        lambda w: (fs.write_label_raster(w / "notags.tif", classes=()), []),
        ("no CLASS_<i>=<name> tags",),
    ),
    ("missing label raster", lambda w: (w / "none.tif", []), ("No such file",)),
    ("missing parcel file", lambda w: (w / "none.gpkg", []), ("parcel file does not exist",)),
    (
        "garbage parcel file",
        lambda w: (_write(w / "bad.gpkg", b"not a geopackage " * 20), []),
        ("cannot read parcels",),
    ),
    (
        "truncated GeoJSON",
        lambda w: (_write(w / "bad.geojson", b'{"type": "FeatureCollection", "feat'), []),
        ("cannot read parcels",),
    ),
    (
        "parcels without the label column",
        lambda w: (w / "parcels.gpkg", ["--label-column", "kind"]),
        ("parcels have no column 'kind'",),
    ),
    (
        "truncated label raster",
        lambda w: (_write(w / "cut.tif", (w / "labels.tif").read_bytes()[:300]), []),
        ("cannot open label raster",),
    ),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "expected"), [c[1:] for c in LABEL_CASES], ids=[c[0] for c in LABEL_CASES]
)
def test_bad_labels_give_one_line_naming_the_file(work, capsys, make, expected):
    labels, extra = make(work)
    code, err = prepare_cli(work, capsys, *extra, labels=labels)
    fs.assert_clean_error(code, err, labels, *expected)
    assert not (work / "out.zarr").exists()


# ------------------------------------------------------------------ configs, checkpoints


@pytest.fixture(scope="module")
def store(base: Path, tmp_path_factory) -> Path:
    from sarcrop.data.prepare import prepare
    from sarcrop.data.season import Season
    from sarcrop.options import TilingOptions

    out = tmp_path_factory.mktemp("store") / "store.zarr"
    return prepare(
        base / "scenes",
        out,
        labels=base / "labels.tif",
        tiling=TilingOptions(patch_size=fs.PATCH),
        season=Season(fs.SEASON_START, fs.STEPS, fs.DAYS),
        progress=False,
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "good": fs.tiny_checkpoint(root / "good.safetensors"),
        "steps3": fs.tiny_checkpoint(root / "steps3.safetensors", steps=3),
        "hh": fs.tiny_checkpoint(root / "hh.safetensors", bands=("HH", "HV")),
    }


CONFIG_CASES = [
    ("unknown key", "epochs: 2\nlearning_rate: 0.1\n", "learning_rate: unknown setting"),
    ("wrong type", "epochs: two\n", "epochs: Input should be a valid integer"),
    ("out of range", "batch_size: 0\n", "batch_size: Input should be greater than or equal to 1"),
    ("not a mapping", "- 1\n- 2\n", "training config must be a mapping of settings"),
    ("invalid YAML", "epochs: [1\n", "not a readable YAML file"),
    ("unknown key in train section", "train:\n  epoch: 3\n", "epoch: unknown setting"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_bad_training_config(tmp_path, store, checkpoints, capsys, command, text, expected):
    config = tmp_path / "train.yaml"
    config.write_text(text)
    argv = (
        ["train", store]
        if command == "train"
        else ["finetune", checkpoints["good"], store, "--strategy", "ft"]
    )
    code, err = fs.run_cli([*argv, "--out", tmp_path / "run", "--config", config], capsys)
    fs.assert_clean_error(code, err, config, expected)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_missing_training_config(tmp_path, store, capsys):
    config = tmp_path / "absent.yaml"
    code, err = fs.run_cli(["train", store, "--out", tmp_path / "run", "--config", config], capsys)
    fs.assert_clean_error(code, err, config, "training config not found")


def test_missing_or_foreign_store(tmp_path, base, capsys):
    code, err = fs.run_cli(["train", tmp_path / "none.zarr", "--out", tmp_path / "r"], capsys)
    fs.assert_clean_error(code, err, tmp_path / "none.zarr", "dataset store does not exist")
    code, err = fs.run_cli(["train", base / "scenes", "--out", tmp_path / "r"], capsys)
    fs.assert_clean_error(code, err, base / "scenes", "not a sarcrop dataset store")


@pytest.mark.parametrize("command", ["evaluate", "finetune"])
def test_checkpoint_with_other_time_steps_than_the_store(
    tmp_path, store, checkpoints, capsys, command
):
    ckpt = checkpoints["steps3"]
    argv = [command, ckpt, store]
    if command == "finetune":
        argv += ["--out", tmp_path / "run", "--strategy", "ft"]
    code, err = fs.run_cli(argv, capsys)
    fs.assert_clean_error(code, err, ckpt, "model has 3 time steps", f"{store} has 4")


def test_checkpoint_with_bands_the_store_lacks(store, checkpoints, capsys):
    code, err = fs.run_cli(["evaluate", checkpoints["hh"], store], capsys)
    fs.assert_clean_error(code, err, store, "store has no band(s) HH, HV (has VH, VV)")


def test_checkpoint_with_bands_the_scenes_lack(tmp_path, base, checkpoints, capsys):
    code, err = fs.run_cli(
        [
            "predict",
            checkpoints["hh"],
            "--images",
            base / "scenes",
            "--out",
            tmp_path / "m.tif",
            "--quiet",
        ],
        capsys,
    )
    fs.assert_clean_error(code, err, base / "scenes", "missing band HH, HV")
    assert not (tmp_path / "m.tif").exists()


def test_predict_timesteps_beyond_the_checkpoint(tmp_path, base, checkpoints, capsys):
    code, err = fs.run_cli(
        [
            "predict",
            checkpoints["good"],
            "--images",
            base / "scenes",
            "--out",
            tmp_path / "m.tif",
            "--timesteps",
            "9",
            "--quiet",
        ],
        capsys,
    )
    fs.assert_clean_error(code, err, "timesteps must be between 1 and 4, got 9")


NOT_CHECKPOINTS = [
    ("GeoTIFF", lambda d: shutil.copy(d / "labels.tif", d / "x.safetensors")),
    ("empty file", lambda d: _write(d / "x.safetensors", b"")),
    ("text", lambda d: _write(d / "x.safetensors", b"hello world, no checkpoint here\n")),
    ("huge header length", lambda d: _write(d / "x.safetensors", b"\xff" * 8 + b"{}")),
]


@pytest.mark.parametrize(
    "make", [c[1] for c in NOT_CHECKPOINTS], ids=[c[0] for c in NOT_CHECKPOINTS]
)
@pytest.mark.parametrize("command", ["evaluate", "predict", "finetune"])
def test_file_that_is_not_a_checkpoint(tmp_path, base, store, capsys, make, command):
    shutil.copy(base / "labels.tif", tmp_path / "labels.tif")
    make(tmp_path)
    ckpt = tmp_path / "x.safetensors"
    argv = {
        "evaluate": ["evaluate", ckpt, store],
        "predict": ["predict", ckpt, "--images", base / "scenes", "--out", tmp_path / "m.tif"],
        "finetune": ["finetune", ckpt, store, "--out", tmp_path / "run", "--strategy", "ft"],
    }[command]
    code, err = fs.run_cli(argv, capsys)
    fs.assert_clean_error(code, err, ckpt, "not a safetensors checkpoint")


def test_missing_checkpoint(tmp_path, store, capsys):
    code, err = fs.run_cli(["evaluate", tmp_path / "none.safetensors", store], capsys)
    fs.assert_clean_error(code, err, tmp_path / "none.safetensors", "checkpoint not found")


def test_a_refused_map_leaves_no_folder_of_its_output_path(tmp_path, capsys):
    """``--out`` in folders that do not exist yet: the run makes them, and a refused one
    removes every folder it made, not only the innermost."""
    out = tmp_path / "maps" / "2019" / "map.tif"
    argv = ["predict", tmp_path / "none.safetensors", "--images", tmp_path, "--out", out]
    code, err = fs.run_cli(argv, capsys)
    fs.assert_clean_error(code, err, tmp_path / "none.safetensors", "checkpoint not found")
    assert not (tmp_path / "maps").exists()


def test_a_crop_only_in_the_test_patches_is_named_and_the_folder_stays_usable(
    base, tmp_path, capsys
):
    """Training without a pixel of the crop fails in one line naming the store, before any
    checkpoint; the same folder then takes the corrected run."""
    from sarcrop.data.prepare import prepare
    from sarcrop.data.season import Season
    from sarcrop.options import TilingOptions

    def store(name: str, labels: np.ndarray) -> Path:
        return prepare(
            base / "scenes",
            tmp_path / f"{name}.zarr",
            labels=fs.write_label_raster(tmp_path / f"{name}.tif", labels),
            tiling=TilingOptions(patch_size=fs.PATCH),
            season=Season(fs.SEASON_START, fs.STEPS, fs.DAYS),
            progress=False,
        )

    first = DatasetStore(store("rice", fs.label_array() * (fs.label_array() == 1)))
    row, col = first.offsets[first.indices("test")[0]]
    labels = fs.label_array() * (fs.label_array() == 1)
    labels[row : row + fs.PATCH, col : col + fs.PATCH] = 2  # maize in one test patch only
    path = store("test-maize", labels)
    run = tmp_path / "run"
    argv = ["train", path, "--out", run, "--recipe", "few-labels", "--epochs", "1"]
    code, err = fs.run_cli([*argv, "--positive", "maize"], capsys)
    fs.assert_clean_error(code, err, path, "holds no maize pixel in its train split")
    assert not (run / "model.safetensors").exists()
    code, err = fs.run_cli([*argv, "--positive", "rice", "--quiet"], capsys)
    assert code == 0, err
    assert (run / "model.safetensors").is_file()


def test_a_model_of_other_bands_than_the_store_names_the_flag_to_use(
    tmp_path, store, checkpoints, capsys
):
    argv = ["finetune", checkpoints["hh"], store, "--strategy", "ft", "--out", tmp_path / "run"]
    code, err = fs.run_cli(argv, capsys)
    fs.assert_clean_error(
        code, err, checkpoints["hh"], "bands HH, HV not in store", "--bands VH VV (bands=[...])"
    )


def test_a_missing_class_lists_the_classes_with_pixels_not_the_whole_legend(base, tmp_path):
    """A legend names many classes a location lacks; the error lists those it holds."""
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.data.prepare import prepare
    from sarcrop.data.season import Season
    from sarcrop.errors import InputDataError
    from sarcrop.options import TilingOptions

    labels = fs.write_label_raster(
        tmp_path / "legend.tif", classes=("background", "rice", "maize", "wheat", "sorghum")
    )
    store = prepare(
        base / "scenes",
        tmp_path / "legend.zarr",
        labels=labels,
        tiling=TilingOptions(patch_size=fs.PATCH),
        season=Season(fs.SEASON_START, fs.STEPS, fs.DAYS),
        progress=False,
    )
    assert DatasetStore(store).classes_with_pixels == ["background", "rice", "maize"]
    with pytest.raises(InputDataError, match=r"classes present: background, rice, maize$"):
        PatchDataset(store, "train", "potato")
    with pytest.raises(InputDataError, match=r"classes present: background, rice, maize$"):
        PatchDataset(store, "train", classes=["potato", "other"])


def test_scenes_a_fraction_of_a_pixel_off_the_grid_are_said_to_be_resampled(work):
    """A scene shifted 5 m (half a 10 m pixel) is resampled onto the first scene's grid, which
    smooths it: said once, naming it; a shift of whole pixels moves only its extent."""
    from sarcrop.data.reader import open_scenes

    fs.rewrite_scene(scene(work, 2), transform=Affine(10, 0, 500005, 0, -10, 5600000))
    with pytest.warns(UserWarning, match=r"1 scene\(s\) lie a fraction of a pixel off the grid"):
        open_scenes(work / "scenes")
    fs.rewrite_scene(scene(work, 2), transform=Affine(10, 0, 500020, 0, -10, 5600000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_scenes(work / "scenes")


def test_swapped_polarisations_are_said(work):
    """VH lies several dB below VV over land: scenes whose VH reads above VV have their bands
    swapped or mislabelled, said once, naming what was read; the scenes as written say nothing."""
    from sarcrop.data.reader import open_scenes

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_scenes(work / "scenes")
    for path in all_scenes(work):
        fs.rewrite_scene(path, bands=["VV", "VH"])
    swapped = r"VH reads above VV \(median -\d+\.\d against -\d+\.\d dB\)"
    with pytest.warns(UserWarning, match=swapped):
        open_scenes(work / "scenes")
    for path in all_scenes(work):
        fs.rewrite_scene(path, values=lambda v: 10 ** (v / 10), tags={"UNITS": "linear"})
    with pytest.warns(UserWarning, match="are the bands swapped"):  # in linear power alike
        open_scenes(work / "scenes")


def test_labels_a_fraction_of_a_pixel_off_the_scene_grid_are_said(work, capsys):
    """Labels shifted 5 m (half a 10 m pixel) are read onto the scenes' grid by nearest
    neighbour, moving every field edge: said once, naming the file; whole pixels say nothing."""
    from sarcrop.data.grid import Grid
    from sarcrop.data.labels import labels_from_raster

    grid = Grid(rasterio.crs.CRS.from_string(fs.CRS), fs.TRANSFORM, fs.SIZE, fs.SIZE)
    half = fs.write_label_raster(
        work / "half.tif", transform=fs.TRANSFORM @ Affine.translation(0.5, 0)
    )
    with pytest.warns(UserWarning, match=r"half.tif: the labels lie 5 m off the scenes' grid"):
        labels_from_raster(half, grid)
    whole = fs.write_label_raster(
        work / "whole.tif", transform=fs.TRANSFORM @ Affine.translation(3, 0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        labels_from_raster(whole, grid)
