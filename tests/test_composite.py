"""Composites of real GeoTIFFs (simulator convention) against hand computations."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pytest
from rasterio.windows import Window

from realdata_support import db_mean, write_scene
from sarcrop.data.composite import (
    acquisitions_per_period,
    composite,
    composite_dates,
    gap_neighbours,
    period_indices,
)
from sarcrop.data.reader import open_scenes
from sarcrop.data.season import Season
from sarcrop.prediction.engine import restrict

SEASON = Season(dt.date(2020, 1, 1), steps=4, days=20)
# Period 0: 3 acquisitions, 1: one, 2: none, 3: two; one before the season.
TIMES = [
    dt.datetime(2019, 12, 20, 17, 30),
    dt.datetime(2020, 1, 3, 17, 30),
    dt.datetime(2020, 1, 8, 17, 30),
    dt.datetime(2020, 1, 15, 17, 30),
    dt.datetime(2020, 1, 25, 17, 30),
    dt.datetime(2020, 3, 5, 17, 30),
    dt.datetime(2020, 3, 10, 17, 30),
]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, np.ndarray]:
    """Scene folder and the values written, (t, band, y, x) in dB with NaN = nodata."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(7)
    values = rng.uniform(-25, -5, size=(len(TIMES), 2, 16, 16)).astype(np.float32)
    values[2, :, 3, 4] = np.nan  # nodata pixel in one acquisition of period 0
    values[1:4, :, 5, 6] = np.nan  # a pixel with no valid value in all of period 0
    values[5, 0, 7, 8] = np.nan  # one of two in period 3 (VH only)
    for when, image in zip(TIMES, values):
        write_scene(folder, when, image)
    return folder, values


def test_acquisition_counts_and_dates(scenes: tuple[object, np.ndarray]) -> None:
    stack = open_scenes(scenes[0])
    assert acquisitions_per_period(stack, SEASON) == [3, 1, 0, 2]
    assert period_indices(stack, SEASON)[3] == [5, 6]
    assert composite_dates(SEASON) == [
        dt.date(2020, 1, 1),
        dt.date(2020, 1, 21),
        dt.date(2020, 2, 10),
        dt.date(2020, 3, 1),
    ]


def test_linear_mean_matches_hand_computation(scenes: tuple[object, np.ndarray]) -> None:
    folder, values = scenes
    stack = open_scenes(folder)
    result = composite(stack, SEASON, ["VH", "VV"], gaps="empty")
    assert result.shape == (4, 2, 16, 16) and result.dtype == np.float32
    expected = np.stack(
        [db_mean(values[1:4]), values[4], np.full((2, 16, 16), np.nan), db_mean(values[5:7])]
    )
    np.testing.assert_allclose(result, expected, atol=1e-4, equal_nan=True)
    # Nodata skipped per pixel: the pixel with a gap uses the two other acquisitions.
    assert np.isclose(result[0, 0, 3, 4], db_mean(values[[1, 3], 0, 3, 4]), atol=1e-4)
    assert np.isnan(result[0, :, 5, 6]).all()
    assert np.isnan(result[2]).all()
    # A linear-power mean is brighter than the dB mean (Jensen), never darker.
    finite = np.isfinite(result[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        arithmetic = np.nanmean(values[1:4], axis=0)
    assert (result[0][finite] >= arithmetic[finite] - 1e-4).all()


def test_a_period_without_acquisition_is_interpolated_from_those_around_it(
    scenes: tuple[object, np.ndarray],
) -> None:
    """Period 2 (Feb 10 to Mar 1) has no acquisition: at its middle, Feb 20, the dB value
    between the last one before (Jan 25) and the first after (Mar 5); where one of them has
    no value, the other's. At a season's edge an acquisition up to a period outside it counts;
    with none there the period stays empty, as an early map's unobserved steps."""
    folder, values = scenes
    stack = open_scenes(folder)
    result = composite(stack, SEASON, ["VH", "VV"])
    weight = (dt.datetime(2020, 2, 20) - TIMES[4]) / (TIMES[5] - TIMES[4])
    expected = values[4] + np.float32(weight) * (values[5] - values[4])
    expected[0, 7, 8] = values[4, 0, 7, 8]  # no VH on Mar 5 there
    np.testing.assert_allclose(result[2], expected, atol=1e-4)
    empty = composite(stack, SEASON, ["VH", "VV"], gaps="empty")
    np.testing.assert_array_equal(np.delete(result, 2, 0), np.delete(empty, 2, 0))
    # Feb 1 to 21, alone: Jan 25 before it, Mar 5 within a period after it.
    edge = composite(stack, Season(dt.date(2020, 2, 1), steps=1, days=20), ["VH"])
    weight = (dt.datetime(2020, 2, 11) - TIMES[4]) / (TIMES[5] - TIMES[4])
    between = values[4] + weight * (values[5] - values[4])
    np.testing.assert_allclose(edge[0, 0, 0], between[0, 0], atol=1e-4)
    # Mar 11 to 31: Mar 10 before it, nothing until Apr 20.
    assert np.isnan(composite(stack, Season(dt.date(2020, 3, 11), 1, 20), ["VH"])).all()
    with pytest.raises(ValueError, match="gaps must be interpolate or empty"):
        composite(stack, SEASON, ["VH"], gaps="nearest")  # type: ignore[arg-type]


def test_a_gap_is_interpolated_only_from_periods_of_min_acquisitions(
    scenes: tuple[object, np.ndarray],
) -> None:
    """Under min_acquisitions=2 period 1 (one acquisition, Jan 25) is no data, so the gap after
    it, period 2, is interpolated from period 0's last acquisition (Jan 15) and period 3's
    first (Mar 5); it was from Jan 25, while period 1 itself read NaN. Under 3 only period 0
    qualifies: nothing after the gap to draw on, so it stays empty."""
    folder, values = scenes
    stack = open_scenes(folder)
    middle = dt.datetime(2020, 2, 20)
    assert gap_neighbours(stack, SEASON) == {2: (4, 5, (middle - TIMES[4]) / (TIMES[5] - TIMES[4]))}
    weight = (middle - TIMES[3]) / (TIMES[5] - TIMES[3])
    assert gap_neighbours(stack, SEASON, 2) == {2: (3, 5, weight)}
    two = composite(stack, SEASON, ["VH", "VV"], min_acquisitions=2)
    expected = values[3] + np.float32(weight) * (values[5] - values[3])
    expected[0, 7, 8] = values[3, 0, 7, 8]  # no VH on Mar 5 there
    expected[:, 5, 6] = values[5, :, 5, 6]  # none on Jan 15 there
    np.testing.assert_allclose(two[2], expected, atol=1e-4)
    assert np.isnan(two[1]).all()
    assert gap_neighbours(stack, SEASON, 3) == {}
    assert np.isnan(composite(stack, SEASON, ["VH"], min_acquisitions=3)[2]).all()


def test_db_space_median_first_and_min_acquisitions(scenes: tuple[object, np.ndarray]) -> None:
    folder, values = scenes
    stack = open_scenes(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        db_avg = np.nanmean(values[1:4], axis=0)
        median = np.nanmedian(values[5:7], axis=0)
    in_db = composite(stack, SEASON, ["VH", "VV"], space="db")
    np.testing.assert_allclose(in_db[0], db_avg, atol=1e-4, equal_nan=True)

    med = composite(stack, SEASON, ["VH", "VV"], method="median", space="db")
    np.testing.assert_allclose(med[3], median, atol=1e-4, equal_nan=True)

    first = composite(stack, SEASON, ["VV"], method="first")
    np.testing.assert_allclose(
        first[0, 0],
        np.where(np.isnan(values[1, 1]), values[2, 1], values[1, 1]),
        atol=1e-4,
        equal_nan=True,
    )
    assert np.isclose(first[0, 0, 3, 4], values[1, 1, 3, 4], atol=1e-4)

    two = composite(stack, SEASON, ["VH"], min_acquisitions=2)
    assert np.isnan(two[1]).all()  # period 1 has a single acquisition
    assert np.isnan(two[3, 0, 7, 8])  # only one valid VH value there
    assert np.isfinite(two[3, 0, 7, 9])
    assert np.isnan(two[0, 0, 5, 6]) and np.isfinite(two[0, 0, 3, 4])


def test_window_equals_slice_of_full(scenes: tuple[object, np.ndarray]) -> None:
    stack = open_scenes(scenes[0])
    full = composite(stack, SEASON, ["VH", "VV"])
    window = Window(3, 2, 9, 7)
    part = composite(stack, SEASON, ["VH", "VV"], window)
    np.testing.assert_array_equal(part, full[:, :, 2:9, 3:12])


def test_speckle_filter_keeps_constant_field_and_smooths(tmp_path) -> None:
    rng = np.random.default_rng(3)
    constant = np.full((2, 16, 16), -12.0, dtype=np.float32)
    noisy = (-12 + 10 * np.log10(rng.exponential(1.0, size=(2, 16, 16)))).astype(np.float32)
    write_scene(tmp_path / "c", dt.datetime(2020, 1, 5), constant)
    write_scene(tmp_path / "n", dt.datetime(2020, 1, 5), noisy)
    flat = composite(open_scenes(tmp_path / "c"), SEASON, ["VV"], speckle_filter=5)
    np.testing.assert_allclose(flat[0], -12.0, atol=1e-4)
    raw = composite(open_scenes(tmp_path / "n"), SEASON, ["VV"])
    smooth = composite(open_scenes(tmp_path / "n"), SEASON, ["VV"], speckle_filter=5)
    assert np.nanstd(smooth[0]) < 0.5 * np.nanstd(raw[0])


@pytest.mark.parametrize("window", [Window(3, 2, 9, 7), Window(0, 0, 5, 16), Window(10, 12, 6, 4)])
def test_speckle_filtered_window_equals_the_whole_area_cut(tmp_path, window) -> None:
    """A filtered window reads the pixels its filter needs, so cutting never changes values."""
    rng = np.random.default_rng(4)
    noisy = (-12 + 10 * np.log10(rng.exponential(1.0, size=(2, 16, 16)))).astype(np.float32)
    write_scene(tmp_path / "n", dt.datetime(2020, 1, 5), noisy)
    stack = open_scenes(tmp_path / "n")
    full = composite(stack, SEASON, ["VH", "VV"], speckle_filter=5)
    part = composite(stack, SEASON, ["VH", "VV"], window, speckle_filter=5)
    rows = slice(window.row_off, window.row_off + window.height)
    cols = slice(window.col_off, window.col_off + window.width)
    np.testing.assert_allclose(part, full[:, :, rows, cols], rtol=1e-6)


def test_linear_stack_gives_db(tmp_path) -> None:
    rng = np.random.default_rng(5)
    power = rng.uniform(0.01, 0.2, size=(2, 2, 8, 8)).astype(np.float32)
    for i, image in enumerate(power):
        write_scene(tmp_path, dt.datetime(2020, 1, 2 + i), image, units="linear")
    stack = open_scenes(tmp_path)
    assert stack.units == "linear"
    result = composite(stack, SEASON, ["VH"])
    np.testing.assert_allclose(result[0, 0], 10 * np.log10(power[:, 0].mean(axis=0)), atol=1e-4)


@pytest.mark.parametrize("units", ["dB", "linear"])
def test_fills_the_files_do_not_declare_are_no_data(tmp_path, units) -> None:
    """A 0 row and a -9999 pixel, without a nodata value declared (and, in linear power, a
    negative value): no backscatter, so each pixel's composite is the other acquisition's
    value. Averaged in, the 0 row read about -3 dB in dB data and darkened linear data."""
    rng = np.random.default_rng(8)
    clean = rng.uniform(-22, -8, size=(2, 2, 8, 8)).astype(np.float32)
    values = clean if units == "dB" else 10 ** (clean / 10)
    filled = values.copy()
    fills = [(0, slice(None), 0.0), (3, 3, -9999.0)]
    if units == "linear":
        fills.append((5, 5, -0.001))
    expected = db_mean(clean)
    for row, col, fill in fills:
        filled[0, :, row, col] = fill
        expected[:, row, col] = clean[1, :, row, col]
    for i, image in enumerate(filled):
        write_scene(tmp_path, dt.datetime(2020, 1, 2 + 5 * i), image, units=units, nodata=None)
    result = composite(open_scenes(tmp_path), SEASON, ["VH", "VV"])
    np.testing.assert_allclose(result[0], expected, atol=1e-4)


def test_bad_arguments(scenes: tuple[object, np.ndarray]) -> None:
    stack = open_scenes(scenes[0])
    with pytest.raises(ValueError, match="method"):
        composite(stack, SEASON, ["VH"], method="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_acquisitions"):
        composite(stack, SEASON, ["VH"], min_acquisitions=0)


MONTHS = [dt.datetime(2020, month, 1) for month in (4, 5, 6, 7)]


def test_monthly_means_stamped_on_the_first_are_read_at_mid_month(tmp_path) -> None:
    """A slice stamped on the 1st at midnight is a month's mean (no acquisition has that stamp):
    composites place it at its month's middle, so that May's mean fills the period around
    May 16, not the one that holds May 1. Stamps of a real acquisition stay as they are."""
    values = np.stack([np.full((2, 4, 4), -20.0 + m, np.float32) for m in range(len(MONTHS))])
    values[:, 1] += 7  # VV above VH, as over land
    for when, image in zip(MONTHS, values):
        write_scene(tmp_path / "monthly", when, image)
    stack = open_scenes(tmp_path / "monthly")
    assert stack.middles[1] == dt.datetime(2020, 5, 16, 12)  # May: 31 days
    assert stack.acquisitions[0].until == dt.datetime(2020, 5, 1)
    season = Season(dt.date(2020, 4, 21), steps=3, days=20)  # Apr 21, May 11, May 31
    assert period_indices(stack, season) == [[], [1], [2]]
    result = composite(stack, season, ["VH"])
    # Period 1's middle, May 1, between April's middle (Apr 15 12:00) and May's.
    weight = (dt.datetime(2020, 5, 1) - stack.middles[0]) / (stack.middles[1] - stack.middles[0])
    np.testing.assert_allclose(result[:, 0, 0, 0], [-20 + weight, -19, -18], atol=1e-4)
    # A whole season reads the months whose middle is in its reach (to July 10); an early map
    # of two periods (to May 30) no month that runs past it: May's mean holds later days.
    assert [a.time.month for a in restrict(stack, season, 3).acquisitions] == [4, 5, 6]
    assert [a.time.month for a in restrict(stack, season, 2).acquisitions] == [4]

    for when, image in zip([MONTHS[0].replace(hour=17), *MONTHS[1:]], values):
        write_scene(tmp_path / "acquired", when, image)
    acquired = open_scenes(tmp_path / "acquired")
    assert all(a.until is None for a in acquired.acquisitions)
    assert period_indices(acquired, season) == [[1], [], [2]]


def test_a_season_is_given_as_the_api_or_as_a_regions_yaml_names_it():
    """``Season.of`` reads ``{start, steps, days}`` and the names of a region's YAML and the
    command line (``season_start``, ``timesteps``); anything else, or a name given twice, is
    refused in one line."""
    from sarcrop.errors import ConfigError

    expected = Season(dt.date(2019, 4, 21), 6, 20)
    assert Season.of({"start": "2019-04-21", "steps": 6, "days": 20}) == expected
    assert Season.of({"season_start": "2019-04-21", "timesteps": 6, "days": 20}) == expected
    for bad in (
        {"season_start": "2019-04-21", "start": "2019-04-21"},
        {"timesteps": 6, "days": 20},
        {"season_start": "2019-04-21", "step": 6},
    ):
        with pytest.raises(ConfigError, match="a season mapping takes start or season_start"):
            Season.of(bad)
