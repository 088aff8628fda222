"""Random corruptions of a small valid input: a clean SarcropError or a valid output, nothing else.

Hypothesis breaks a copy of a tiny valid input (8 GeoTIFF scenes, a label raster, parcels) in
one or more random ways — truncating a file at a random byte, flipping bytes, setting a random
region to NaN/Inf/nodata, dropping a band, changing the CRS of one file, shifting its
transform, removing the label file, writing garbage parcels — then runs ``prepare`` and
``predict_map``. Each run must either raise a :class:`SarcropError` whose message is one line
naming a path, or write an output that opens and validates. No other exception type, and never
a partial output under the final name.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.errors import RasterioError

import faults_support as fs
from sarcrop.data.season import Season
from sarcrop.errors import SarcropError

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("valid")
    fs.write_scenes(root / "scenes")
    fs.write_label_raster(root / "labels.tif")
    fs.valid_parcels(root / "parcels.gpkg")
    fs.tiny_checkpoint(root / "model.safetensors")
    return root


def _scenes(root: Path) -> list[Path]:
    return sorted((root / "scenes").glob("*.tif"))


def _pick(paths: list[Path], index: int) -> Path:
    return paths[index % len(paths)]


def apply(root: Path, corruption: tuple) -> None:
    """Apply one corruption (a tuple drawn by :data:`corruptions`) to the input under root.

    A corruption that needs to read a file an earlier one already broke or removed is skipped.
    """
    with contextlib.suppress(RasterioError, FileNotFoundError, IndexError):
        _apply(root, corruption)


def _apply(root: Path, corruption: tuple) -> None:
    kind, index, a, b = corruption
    scenes = _scenes(root)
    if kind == "truncate":
        target = _pick([*scenes, root / "labels.tif", root / "parcels.gpkg"], index)
        fs.truncate(target, a / 1000)
    elif kind == "flip":
        target = _pick([*scenes, root / "labels.tif", root / "parcels.gpkg"], index)
        fs.flip_bytes(target, [a * 37 + i * b for i in range(1 + b % 16)])
    elif kind in ("nan", "inf", "-inf", "nodata"):
        fill = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "nodata": fs.NODATA}[kind]
        r0, c0 = a % fs.SIZE, b % fs.SIZE
        box = (r0, r0 + 1 + (a * 7) % fs.SIZE, c0, c0 + 1 + (b * 5) % fs.SIZE)
        targets = scenes if index % 5 == 0 else [_pick(scenes, index)]
        for path in targets:
            fs.rewrite_scene(path, values=lambda v, box=box: fs.nan_region(v, fill, box))
    elif kind == "drop_band":
        for path in scenes if index % 4 == 0 else [_pick(scenes, index)]:
            fs.rewrite_scene(path, keep=[1 + a % 2])
    elif kind == "crs":
        fs.rewrite_scene(_pick(scenes, index), crs=("EPSG:32632", "EPSG:4326", "EPSG:3857")[a % 3])
    elif kind == "shift":
        dx, dy = (a % 61 - 30) * 10.0, (b % 61 - 30) * 10.0
        fs.rewrite_scene(
            _pick(scenes, index), transform=Affine(10, 0, 500000 + dx, 0, -10, 5600000 + dy)
        )
    elif kind == "remove_labels":
        (root / ("labels.tif" if index % 2 else "parcels.gpkg")).unlink(missing_ok=True)
    elif kind == "garbage_parcels":
        rng = np.random.default_rng(a)
        (root / "parcels.gpkg").write_bytes(rng.bytes(1 + b * 13))
    elif kind == "flip_metadata":
        target = _pick([*scenes, root / "labels.tif"], index)
        data = bytearray(target.read_bytes())
        key = (b"VH", b"ACQUISITION_TIME", b"UNITS", b"CLASS_1", b"EPSG")[a % 5]
        at = data.find(key)
        if at >= 0:
            data[at + b % len(key)] = 0x80 + b % 0x80  # not valid UTF-8 on its own
            target.write_bytes(bytes(data))
    elif kind == "remove_scene":
        _pick(scenes, index).unlink()
    else:  # pragma: no cover
        raise AssertionError(kind)


corruptions = st.tuples(
    st.sampled_from(
        [
            "truncate",
            "flip",
            "nan",
            "inf",
            "-inf",
            "nodata",
            "drop_band",
            "crs",
            "shift",
            "remove_labels",
            "garbage_parcels",
            "remove_scene",
            "flip_metadata",
        ]
    ),
    st.integers(0, 50),
    st.integers(0, 1000),
    st.integers(0, 1000),
)


def assert_clean(exc: SarcropError) -> None:
    text = str(exc)
    assert "\n" not in text and text.strip(), repr(text)
    assert exc.path is not None or "/" in text, f"no path named: {text}"


def _run(fn, final: Path, check) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except SarcropError as exc:
            assert_clean(exc)
            assert not final.exists(), "error raised but a final output exists"
        else:
            check(final)
    leftovers = [p for p in final.parent.iterdir() if ".tmp-" in p.name]
    assert not leftovers, leftovers


@SETTINGS
@given(
    st.lists(corruptions, min_size=1, max_size=3), st.sampled_from(["labels.tif", "parcels.gpkg"])
)
def test_prepare_on_corrupted_input(base, changes, labels_name):
    from sarcrop.data.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        shutil.copytree(base, root)
        for change in changes:
            apply(root, change)
        out = Path(tmp) / "out.zarr"
        _run(
            lambda: prepare(
                root / "scenes",
                out,
                labels=root / labels_name,
                patch_size=fs.PATCH,
                season=Season(fs.SEASON_START, fs.STEPS, fs.DAYS),
                positive=["rice"],
                progress=False,
            ),
            out,
            fs.check_store,
        )


@settings(SETTINGS, max_examples=20)
@given(st.lists(corruptions, min_size=1, max_size=3))
def test_predict_on_corrupted_input(base, changes):
    from sarcrop.prediction import predict_map

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        shutil.copytree(base, root)
        for change in changes:
            if change[0] in ("truncate", "flip") and change[1] % 3 == 0:
                fs.flip_bytes(root / "model.safetensors", [change[2], change[3]])
            apply(root, change)
        out = Path(tmp) / "map.tif"
        _run(
            lambda: predict_map(
                root / "model.safetensors",
                root / "scenes",
                out,
                window=16,
                overlap=4,
                progress=False,
            ),
            out,
            fs.check_map,
        )
