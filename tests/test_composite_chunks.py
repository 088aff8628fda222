"""Composites reduced chunk by chunk equal the plain formulas over the whole area, bit for bit."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pytest
from rasterio.windows import Window

from realdata_support import write_scene
from sarcrop.data import composite as compositing
from sarcrop.data.composite import composite, period_indices
from sarcrop.data.reader import open_scenes
from sarcrop.data.scenes import SceneStack
from sarcrop.data.season import Season
from sarcrop.data.units import db_to_linear, linear_to_db

SEASON = Season(dt.date(2020, 1, 1), steps=3, days=20)
# Period 0: three acquisitions, 1: none, 2: two.
TIMES = [dt.datetime(2020, 1, d, 17, 30) for d in (3, 9, 15)] + [
    dt.datetime(2020, 2, d, 17, 30) for d in (13, 19)
]
HEIGHT, WIDTH = 203, 256  # several chunks of rows, the last one shorter


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> SceneStack:
    folder = tmp_path_factory.mktemp("chunks")
    rng = np.random.default_rng(11)
    values = rng.normal(-14, 5, size=(len(TIMES), 2, HEIGHT, WIDTH)).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = np.nan  # nodata
    values[:3, :, 100, 7:20] = np.nan  # pixels without any value in period 0
    values[3, :, 150:, 30], values[4, :, 150:, 30] = np.nan, -10.0  # one value in period 2
    for when, image in zip(TIMES, values):
        write_scene(folder, when, image)
    return open_scenes(folder)


def test_whole_area_spans_several_chunks(stack: SceneStack) -> None:
    values_per_row = 3 * 2 * WIDTH
    assert HEIGHT > compositing._CHUNK // values_per_row > 1


def test_mean_is_the_plain_formula(stack: SceneStack) -> None:
    result = composite(stack, SEASON, ["VH", "VV"], gaps="empty")
    assert np.isnan(result[1]).all()  # no acquisition, and not interpolated
    for step in (0, 2):
        power = db_to_linear(stack.read(period_indices(stack, SEASON)[step], ["VH", "VV"]))
        valid = np.isfinite(power)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.where(valid, power, 0).sum(axis=0, dtype=np.float64)
            expected = linear_to_db((total / valid.sum(axis=0)).astype(np.float32))
        assert np.array_equal(result[step], expected, equal_nan=True)
    assert np.isnan(result[0, :, 100, 7:20]).all() and np.isfinite(result[2, :, 160, 30]).all()


def test_median_first_and_min_acquisitions_are_the_plain_formulas(stack: SceneStack) -> None:
    data = stack.read(period_indices(stack, SEASON)[0], ["VH", "VV"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(data, axis=0)
    got = composite(stack, SEASON, ["VH", "VV"], method="median", space="db")
    assert np.array_equal(got[0], median, equal_nan=True)

    first = np.where(np.isnan(data[0]), np.where(np.isnan(data[1]), data[2], data[1]), data[0])
    got = composite(stack, SEASON, ["VH", "VV"], method="first", space="db")
    assert np.array_equal(got[0], first, equal_nan=True)

    got = composite(stack, SEASON, ["VH", "VV"], min_acquisitions=2)
    assert np.isnan(got[2, :, 160, 30]).all()
    assert np.array_equal(np.isnan(got[0]), (np.isfinite(data).sum(axis=0) < 2))


@pytest.mark.parametrize("method", ["mean", "median", "first"])
def test_windows_equal_the_whole_area_cut(stack: SceneStack, method: str) -> None:
    full = composite(stack, SEASON, ["VH", "VV"], method=method)  # type: ignore[arg-type]
    for window in (Window(0, 0, 1, HEIGHT), Window(17, 95, 200, 108), Window(250, 3, 6, 5)):
        part = composite(stack, SEASON, ["VH", "VV"], window, method=method)  # type: ignore[arg-type]
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        assert np.array_equal(part, full[:, :, rows, cols], equal_nan=True)
