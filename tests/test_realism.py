"""Realism statistics on hand-made arrays with known answers, and the real-versus-simulated gap."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

import realdata_support
from sarcrop.data.parcels import parcel_ids
from sarcrop.data.season import Season
from sarcrop.evaluation.realism import (
    MIN_FIELDS,
    MIN_PIXELS,
    Row,
    Sample,
    SceneData,
    compare,
    coverage,
    edge_flags,
    field_residuals,
    format_coverage,
    format_real_against_real,
    format_table,
    interval_union,
    lag1_autocorrelation,
    measure,
    neighbour_pairs,
    real_against_real,
    sharp_changes,
    spatial_autocorrelation,
    temporal_correlation,
)

shared_data = realdata_support.shared_data  # the fixture (skips where the data is absent)


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator seeded for each test: its draws do not depend on which tests ran before."""
    return np.random.default_rng(0)


def one_field(size: int = 64) -> np.ndarray:
    return np.zeros((size, size), dtype=np.int64)


def test_independent_noise_has_no_spatial_autocorrelation(rng: np.random.Generator) -> None:
    noise = rng.normal(size=(20, 64, 64))
    assert abs(spatial_autocorrelation(noise, one_field())) < 0.03


def test_smoothed_noise_has_clear_spatial_autocorrelation(rng: np.random.Generator) -> None:
    smooth = uniform_filter(rng.normal(size=(20, 64, 64)), size=(1, 3, 3))
    # A 3-pixel boxcar: neighbours share 2 of 3 columns (rows), so the correlation is 2/3.
    assert spatial_autocorrelation(smooth, one_field()) == pytest.approx(2 / 3, abs=0.05)


def test_pairs_across_fields_are_not_counted(rng: np.random.Generator) -> None:
    fields = np.zeros((8, 8), dtype=np.int64)
    fields[:, 4:] = 1
    # Each field constant but different: no same-field pair varies, and the step between the
    # fields (which would look like correlation) is never paired.
    values = np.where(fields == 0, 1.0, -1.0) + rng.normal(scale=1e-3, size=(8, 8))
    residuals = field_residuals(values[None], fields, pixel_mean=False)
    assert abs(np.nanmean(residuals)) < 1e-9
    first, second = neighbour_pairs(fields)
    assert len(first) == 2 * 8 * 3 + 7 * 8  # 3 horizontal pairs per row and field, 7 vertical
    assert (fields.ravel()[first] == fields.ravel()[second]).all()


def test_double_centred_residuals_remove_field_dates_and_pixel_means(
    rng: np.random.Generator,
) -> None:
    t, h, w = 6, 5, 5
    pixel = rng.normal(size=(h, w))
    date = rng.normal(size=t)
    series = pixel[None] + date[:, None, None]
    residuals = field_residuals(series, parcel_ids(np.zeros((h, w), int)), pixel_mean=True)
    np.testing.assert_allclose(residuals, 0, atol=1e-12)


def test_temporal_autocorrelation_known_values_and_constant_series(
    rng: np.random.Generator,
) -> None:
    alternating = np.tile([1.0, -1.0], 20)[:, None, None]
    trend = np.linspace(0, 1, 40)[:, None, None]
    constant = np.full((40, 1, 1), -15.0)
    assert lag1_autocorrelation(alternating)[0, 0] == pytest.approx(-39 / 40)
    assert lag1_autocorrelation(trend)[0, 0] > 0.9
    assert np.isnan(lag1_autocorrelation(constant)[0, 0])
    white = rng.normal(size=(400, 4, 4))
    assert np.abs(lag1_autocorrelation(white)).max() < 0.2


def test_temporal_correlation(rng: np.random.Generator) -> None:
    a = rng.normal(size=(50, 3, 3))
    np.testing.assert_allclose(temporal_correlation(a, 2 * a - 3), 1.0)
    np.testing.assert_allclose(temporal_correlation(a, -a), -1.0)
    assert np.isnan(temporal_correlation(a, np.zeros_like(a))).all()


def test_edge_flags_and_fields() -> None:
    labels = np.zeros((6, 6), dtype=np.int16)
    labels[:, 3:] = 1
    labels[0, 0] = -1
    flags = edge_flags(labels)
    assert flags[3, 2] == 1 and flags[3, 3] == 1  # the boundary between the classes
    assert flags[3, 0] == 0 and flags[3, 5] == 0  # interior (the image border is not an edge)
    assert flags[0, 0] == -1 and flags[1, 0] == 1  # unlabelled, and its labelled neighbour
    ids = parcel_ids(np.array([[0, 1, 0], [0, 1, 0]]))
    assert len(np.unique(ids)) == 3  # two separate class-0 fields and one class-1 field


def test_sharp_changes_counts_steps_not_speckle_spikes() -> None:
    base = np.full(30, -17.0)
    base[10:16] -= 3.0  # one cut: a drop, then a rise
    spiky = np.full(30, -17.0)
    spiky[[5, 20]] += 4.0  # single-date spikes
    series = np.stack([base, spiky, np.full(30, -17.0)], axis=1)[:, :, None]
    counts = sharp_changes(series, step_db=2.0)[:, 0]
    np.testing.assert_array_equal(counts, [2, 0, 0])


def test_bootstrap_interval_resamples_fields() -> None:
    values = np.concatenate([np.zeros(50), np.ones(50)])[:, None]
    fields = np.repeat([0, 1], 50)
    sample = Sample(values, fields, lambda v: float(v[:, 0].mean()))
    low, high = sample.interval(200, np.random.default_rng(0))
    assert sample.estimate() == 0.5
    assert low == 0.0 and high == 1.0  # only two fields: a draw may hold either one twice
    single = Sample(values, np.zeros(100, dtype=int), sample.reduce)
    assert single.interval(50, np.random.default_rng(0)) == (0.5, 0.5)


def synthetic_scene(smooth: bool, rng: np.random.Generator) -> SceneData:
    """Two crops in alternating 8-pixel strips (two fields each); speckle independent or
    spatially smoothed."""
    labels = np.zeros((32, 32), dtype=np.int16)
    labels[:, 8:16] = labels[:, 24:] = 1
    level = np.where(labels == 0, -17.0, -14.0)
    noise = rng.normal(scale=1.5, size=(24, 2, 32, 32))
    if smooth:
        noise = uniform_filter(noise, size=(1, 1, 3, 3)) * 2
    series = level[None, None] + noise
    composites = series.reshape(8, 3, 2, 32, 32).mean(axis=1)
    return SceneData(
        series, composites, labels, ("maize", "grassland"), Season(dt.date(2020, 4, 21)), 20.0
    )


def test_compare_flags_the_missing_spatial_correlation() -> None:
    real = {"a": measure(synthetic_scene(True, np.random.default_rng(1)), ["maize", "grassland"])}
    simulated = measure(synthetic_scene(False, np.random.default_rng(2)), ["maize", "grassland"])
    rows = {(r.statistic, r.crop): r for r in compare(real, simulated, draws=20)}
    speckle = rows[("VH speckle spatial AC", "maize")]
    assert speckle.real["a"] > 0.4 and abs(speckle.simulated) < 0.1
    assert speckle.inside is False and speckle.gap < -0.3
    assert rows[("VH median p1", "maize")].real["a"] == pytest.approx(-17, abs=0.3)
    assert ("VH sharp changes per season", "grassland") in rows
    assert "outside" in format_table(list(rows.values()))


def test_row_gap_is_signed_distance_to_interval() -> None:
    assert Row("s", "c", {}, {"a": (0.0, 1.0)}, 1.5).gap == pytest.approx(0.5)
    assert Row("s", "c", {}, {"a": (0.0, 1.0)}, -0.25).gap == pytest.approx(-0.25)
    assert Row("s", "c", {}, {"a": (0.0, 1.0)}, 0.5).inside is True
    assert Row("s", "c", {}, {}, 0.5).inside is None


def test_a_value_between_two_locations_intervals_is_not_inside() -> None:
    apart = {"a": (0.0, 1.0), "b": (2.0, 3.0)}
    assert interval_union(apart.values()) == ((0.0, 1.0), (2.0, 3.0))
    assert interval_union([(2.0, 3.0), (0.0, 2.5), (4.0, float("nan"))]) == ((0.0, 3.0),)
    gap = Row("s", "c", {}, apart, 1.4)
    assert gap.inside is False and gap.gap == pytest.approx(0.4)  # nearest: a's upper end
    assert Row("s", "c", {}, apart, 1.8).gap == pytest.approx(-0.2)  # nearest: b's lower end
    assert Row("s", "c", {}, apart, 2.5).inside is True
    assert "[0.00, 1.00] ∪ [2.00, 3.00]" in format_table([gap])
    # The same through compare(): two locations whose fields all hold 0 and 2.
    real = {"a": constant_samples(level_maize=0.0), "b": constant_samples(level_maize=2.0)}
    (row,) = compare(real, constant_samples(level_maize=1.0), draws=20)
    assert row.union == ((0.0, 0.0), (2.0, 2.0)) and row.inside is False
    assert row.to_dict()["real_intervals"] == {"a": [0.0, 0.0], "b": [2.0, 2.0]}


def test_coverage_asks_whether_the_simulations_range_reaches_the_real_interval() -> None:
    nan = float("nan")

    def rows(*values: float) -> list[Row]:
        return [
            Row("spread", "maize", {}, {"a": (1.0, 2.0)}, values[0], {"a": 9}),
            Row("level", "maize", {}, {"a": (-18.0, -17.0)}, values[1], {"a": 2}),
            Row("edges", "potato", {}, {"a": (0.2, 0.3)}, values[2], {"a": 2}),
            # No real interval (a single real field).
            Row("mowing", "grassland", {}, {}, 4.0, {"a": 1}),
        ]

    # The draws straddle the first interval (none inside), one lands in the second, the
    # third is never measured, and the fourth has nothing real to meet.
    items = coverage([rows(0.5, -16.0, nan), rows(2.5, -17.5, nan), rows(3.0, -15.0, nan)])
    spread, level, edges, mowing = items
    assert (spread.covered, spread.inside, spread.simulated) == (True, 0, (0.5, 2.5, 3.0))
    assert (level.covered, level.inside, level.fields) == (True, 1, {"a": 2})
    assert (edges.covered, edges.inside) == (None, 0)
    assert (mowing.covered, mowing.inside) == (None, 0)
    # All above the interval: not covered, however many draws.
    (above, *_) = coverage([rows(2.1, -17.5, 0.25), rows(2.4, -17.5, 0.25)])
    assert above.covered is False and above.to_dict()["simulations_inside"] == 0
    table = format_coverage(items)
    assert "[0.50, 3.00]" in table and "0/3" in table and "not covered" not in table
    assert "not covered" in format_coverage([above])


def test_coverage_needs_the_range_to_meet_one_locations_interval() -> None:
    def rows(value: float) -> list[Row]:
        return [Row("s", "maize", {}, {"a": (0.0, 1.0), "b": (2.0, 3.0)}, value)]

    # Both draws in the gap between the locations: the range [1.2, 1.8] meets neither.
    (gap,) = coverage([rows(1.2), rows(1.8)])
    assert gap.covered is False and gap.inside == 0
    assert "[0.00, 1.00] ∪ [2.00, 3.00]" in format_coverage([gap])
    (reach,) = coverage([rows(1.2), rows(2.1)])
    assert reach.covered is True and reach.inside == 1


def test_coverage_refuses_comparisons_against_different_real_intervals() -> None:
    first = [Row("s", "maize", {}, {"a": (0.0, 1.0)}, 0.5)]
    other = [Row("s", "maize", {}, {"a": (0.0, 1.2)}, 0.5)]
    with pytest.raises(ValueError, match="real intervals"):
        coverage([first, other])
    with pytest.raises(ValueError, match="at least one"):
        coverage([])


def constant_samples(**statistics: float) -> dict[tuple[str, str], Sample]:
    """Samples over three fields that all hold the same value: a point interval."""
    fields = np.repeat([0, 1, 2], 4)
    samples = {}
    for name, value in statistics.items():
        statistic, crop = name.split("_")
        samples[(statistic, crop)] = Sample(
            np.full((12, 1), value), fields, lambda v: float(v[:, 0].mean())
        )
    return samples


def test_real_against_real_holds_each_location_and_the_simulations_to_one_interval() -> None:
    real = {
        "a": constant_samples(level_maize=1.0, spread_maize=2.0, level_potato=5.0, level_grass=3.0),
        "b": constant_samples(level_maize=1.0, spread_maize=2.5, level_grass=3.0),
    }
    simulations = [
        constant_samples(level_maize=1.0, spread_maize=2.0, level_potato=5.0),
        constant_samples(level_maize=0.0, spread_maize=2.5, level_potato=5.0, level_grass=3.0),
    ]
    checks = {
        (c.reference, c.crop): (c.location, c.statistics, c.real_inside, c.simulated_inside)
        for c in real_against_real(real, simulations, draws=10)
    }
    # Potato is measured in "a" only, so it is compared in neither direction; a simulation
    # without grassland counts as outside on grassland's statistic.
    assert checks == {
        ("a", "maize"): ("b", 2, 1, (2, 0)),
        ("a", "grass"): ("b", 1, 1, (0, 1)),
        ("a", "all"): ("b", 3, 2, (2, 1)),
        ("b", "maize"): ("a", 2, 1, (1, 1)),
        ("b", "grass"): ("a", 1, 1, (0, 1)),
        ("b", "all"): ("a", 3, 2, (1, 2)),
    }
    table = format_real_against_real(real_against_real(real, simulations, draws=10))
    assert "1.5 (1-2)" in table and "held out" in table
    assert real_against_real({"a": real["a"]}, simulations) == []
    # Every interval rests on three fields: asking for four leaves nothing to compare.
    fewer = real_against_real(real, simulations, draws=10, min_fields=4)
    assert [(c.crop, c.statistics, c.simulated_inside) for c in fewer] == [("all", 0, (0, 0))] * 2


Box = tuple[slice, slice]


def fields_scene(levels: list[tuple[Box, float]], rng: np.random.Generator) -> SceneData:
    """Maize rectangles at the given VH/VV level (dB) in grassland, a little noise."""
    labels = np.ones((24, 24), dtype=np.int16)
    level = np.full((24, 24), -12.0)
    for where, value in levels:
        labels[where] = 0
        level[where] = value
    series = level[None, None] + rng.normal(scale=0.1, size=(24, 2, 24, 24))
    composites = series.reshape(8, 3, 2, 24, 24).mean(axis=1)
    return SceneData(
        series, composites, labels, ("maize", "grassland"), Season(dt.date(2020, 4, 21)), 20.0
    )


BIG = (slice(1, 11), slice(1, 11))  # 100 pixels
OTHER_BIG = (slice(13, 23), slice(1, 11))
TINY = (slice(1, 4), slice(14, 17))  # 9 pixels, below MIN_PIXELS
LARGE_ENOUGH = (slice(1, 5), slice(14, 18))  # 16 pixels


def test_a_field_below_the_minimum_size_is_not_measured() -> None:
    assert MIN_PIXELS == 16 and MIN_FIELDS == 2
    rng = np.random.default_rng(3)
    key = ("VH median p1", "maize")
    # One large field and a tiny bright one: the tiny one would be a quarter of the draws.
    real = {
        "a": measure(fields_scene([(BIG, -17.0), (TINY, -5.0)], rng), ["maize", "grassland"]),
        "b": measure(fields_scene([(BIG, -17.5), (OTHER_BIG, -16.5)], rng), ["maize"]),
    }
    assert len(np.unique(real["a"][key].fields)) == 1
    assert real["a"][key].values.shape[0] == 100
    simulated = {key: Sample(np.full((4, 1), -10.0), np.zeros(4, int), real["a"][key].reduce)}
    row = {(r.statistic, r.crop): r for r in compare(real, simulated, draws=50)}[key]
    # "a" rests on one field: no interval; "b" alone sets it, far below the simulated -10 dB.
    assert row.fields == {"a": 1, "b": 2} and set(row.intervals) == {"b"}
    assert row.inside is False and row.union[0][1] < -16
    # A field of exactly MIN_PIXELS counts; a crop made only of tiny fields is not measured.
    kept = measure(fields_scene([(BIG, -17.0), (LARGE_ENOUGH, -5.0)], rng), ["maize"])
    assert len(np.unique(kept[key].fields)) == 2
    assert not measure(fields_scene([(TINY, -17.0)], rng), ["maize"])


@pytest.mark.realdata
def test_real_speckle_is_spatially_correlated(shared_data: Path, tmp_path: Path) -> None:
    from benchmarks.realism import run

    result = run(shared_data, locations=["000028085BF08E7E"], size=96, draws=20, work=tmp_path)
    rows = {(r["statistic"], r["crop"]): r for r in result["rows"]}
    for crop in ("maize", "wheat", "grassland"):
        for band in ("VH", "VV"):
            real = rows[(f"{band} speckle spatial AC", crop)]["real"]["000028085BF08E7E"]
            assert real > 0.3, (band, crop, real)  # multi-looked GRD: clearly correlated
    assert result["real"]["000028085BF08E7E"]["resolution_m"] == 20.0
    assert result["summary"]["statistics"] == len(result["rows"]) > 100


@pytest.mark.realdata
def test_several_simulations_are_held_against_the_same_real_intervals(
    shared_data: Path, tmp_path: Path
) -> None:
    from benchmarks.realism import report, run

    common = {"locations": ["000028085BF08E7E"], "size": 64, "draws": 20, "work": tmp_path}
    result = run(shared_data, preset="europe", simulations=2, seed=3, **common)
    assert [sim["seed"] for sim in result["simulated"]] == [3, 4]
    singles = [run(shared_data, preset="europe", seed=s, **common) for s in (3, 4)]
    summary = result["summary"]
    # The bootstrap seed does not follow the simulation seed: each single run counts what its
    # simulation counts among several.
    assert summary["inside_per_simulation"] == [one["summary"]["inside"] for one in singles]
    for row, first, second in zip(
        result["rows"], singles[0]["rows"], singles[1]["rows"], strict=True
    ):
        assert row["real_union"] == first["real_union"]
        assert row["simulated"][0] == first["simulated"]
        assert row["simulated"][1] == pytest.approx(second["simulated"], nan_ok=True)
    assert summary["covered"] >= max(summary["inside_per_simulation"])
    assert f"{summary['covered']} of {summary['comparable']} comparable real intervals" in report(
        result
    )


@pytest.mark.realdata
def test_two_real_flanders_locations_are_held_against_each_other(
    shared_data: Path, tmp_path: Path
) -> None:
    from benchmarks.realism import FLANDERS, report, run

    result = run(shared_data, preset="europe", size=64, draws=20, work=tmp_path)
    checks = result["real_against_real"]
    assert {(c["reference"], c["location"]) for c in checks} == {
        (a, b) for a in FLANDERS for b in FLANDERS if a != b
    }
    # At 20 m the 2018 location has one maize field of at least MIN_PIXELS: no maize interval.
    expected = {"00002806639B424A": {"grassland"}, "000028085BF08E7E": {"maize", "grassland"}}
    for reference in FLANDERS:
        rows = [c for c in checks if c["reference"] == reference]
        (total,) = [c for c in rows if c["crop"] == "all"]
        crops = [c for c in rows if c["crop"] != "all"]
        assert {c["crop"] for c in crops} == expected[reference]
        for key in ("statistics", "real_inside"):
            assert total[key] == sum(c[key] for c in crops)
        assert total["simulated_inside"][0] == sum(c["simulated_inside"][0] for c in crops)
        # Neither real location is inside the other's intervals everywhere.
        assert total["statistics"] >= 40 and 0 < total["real_inside"] < total["statistics"]
    assert "Real against real" in report(result)
