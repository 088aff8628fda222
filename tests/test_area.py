"""Accuracy and area estimators: published examples, census, coverage and end to end.

Published numbers come from:

- Olofsson, Foody, Herold, Stehman, Woodcock & Wulder (2014), "Good practices for estimating
  area and assessing accuracy of land change", Remote Sensing of Environment 148:42-57,
  Section 5: Table 8 (sample counts, mapped pixels), Table 9 (area proportions), Section 5.2
  (accuracies ± 95 % half-widths, areas in ha ± 95 % half-widths, all computed with z = 1.96).
  The printed producer's accuracy half-widths of forest gain (0.23) and stable non-forest
  (0.01) disagree with the paper's own Eq. 7 (0.254 and 0.018, as the R packages mapaccuracy
  and others also find), so those two are not asserted.
- Stehman (2014), "Estimating area and map accuracy for stratified random sampling when the
  strata are different from the map classes", International Journal of Remote Sensing
  35:4923-4939: Table 2 (40 points in 4 strata) and the results on pp. 4932-4936. The printed SE
  of class B's producer's accuracy (0.114) uses s²_x4 = 0 where the paper's Table 3 has 0.1;
  Eq. 28 gives 0.1165, which is what is asserted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

import realdata_support
from sarcrop.cli import main
from sarcrop.errors import InputDataError
from sarcrop.evaluation import (
    allocate,
    assess,
    census_estimates,
    olofsson_estimates,
    read_sample,
    stehman_estimates,
)
from sarcrop.evaluation.assessment import assess_sample
from sarcrop.options import ReferenceOptions

shared_data = realdata_support.shared_data

# Olofsson et al. (2014) Table 8: rows = map class (= stratum), columns = reference class;
# deforestation, forest gain, stable forest, stable non-forest; 30 m pixels (0.09 ha).
OLOFSSON_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
OLOFSSON_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
HA_PER_PIXEL = 0.09


def points_of(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-point (stratum, map, reference) of an error matrix whose strata are its rows."""
    rows, cols = np.indices(counts.shape)
    map_ = np.repeat(rows.ravel(), counts.ravel())
    ref = np.repeat(cols.ravel(), counts.ravel())
    return map_, map_, ref


def test_olofsson_2014_worked_example() -> None:
    e = olofsson_estimates(OLOFSSON_COUNTS, OLOFSSON_PIXELS, fpc=False)
    table9 = [
        [0.0176, 0, 0.0013, 0.0011],
        [0, 0.0110, 0.0016, 0.0024],
        [0.0019, 0, 0.2967, 0.0213],
        [0.0040, 0.0020, 0.0179, 0.6212],
    ]
    np.testing.assert_array_equal(np.round(e.proportions, 4), table9)
    assert [round(u.value, 2) for u in e.users] == [0.88, 0.73, 0.93, 0.96]
    assert [round(1.96 * u.se, 2) for u in e.users] == [0.07, 0.10, 0.04, 0.02]
    assert [round(p.value, 2) for p in e.producers] == [0.75, 0.85, 0.93, 0.96]
    half = [round(1.96 * p.se, 2) for p in e.producers]
    assert (half[0], half[2]) == (0.21, 0.03)
    assert (round(e.overall.value, 2), round(1.96 * e.overall.se, 2)) == (0.95, 0.02)
    total_ha = sum(OLOFSSON_PIXELS) * HA_PER_PIXEL
    assert [round(a.value * total_ha) for a in e.area] == [21158, 11686, 285770, 581386]
    assert [round(1.96 * a.se * total_ha) for a in e.area] == [6158, 3756, 15510, 16282]


def test_stehman_2014_numerical_example() -> None:
    # Table 2: stratum, map class and reference class of 40 points; N_h = 40k, 30k, 20k, 10k.
    strata = "AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDDDD"
    mapped = "AAAAAAABBBABBBBBBBBBBBCCCCCCBBDDDDDDDDDD"
    ref = "AAAAACBABCABBBBBAABBCCCCCDDBBADDDDDDDCCB"
    code = {c: i for i, c in enumerate("ABCD")}
    e = stehman_estimates(
        [code[c] for c in strata],
        [code[c] for c in mapped],
        [code[c] for c in ref],
        {0: 40_000, 1: 30_000, 2: 20_000, 3: 10_000},
        classes=range(4),
    )
    assert (round(e.area[0].value, 2), round(e.area[0].se, 3)) == (0.35, 0.082)
    assert (round(e.area[2].value, 2), round(e.area[2].se, 3)) == (0.20, 0.064)
    assert (round(e.overall.value, 2), round(e.overall.se, 3)) == (0.63, 0.085)
    assert (round(e.users[1].value, 3), round(e.users[1].se, 3)) == (0.574, 0.125)
    assert round(e.producers[1].value, 3) == 0.794
    assert round(e.producers[1].se, 4) == 0.1165  # printed 0.114, see the module docstring
    assert round(e.proportions[1, 2], 2) == 0.08


@pytest.mark.parametrize("fpc", [False, True])
def test_stehman_equals_olofsson_when_strata_are_map_classes(fpc: bool) -> None:
    sizes = [400, 300, 2_000, 5_000]  # small N_h so that the fpc matters
    a = olofsson_estimates(OLOFSSON_COUNTS, sizes, fpc=fpc)
    b = stehman_estimates(*points_of(OLOFSSON_COUNTS), dict(enumerate(sizes)), fpc=fpc)
    np.testing.assert_allclose(a.proportions, b.proportions, atol=1e-15)
    pairs = [(a.overall, b.overall), *zip(a.users, b.users), *zip(a.producers, b.producers)]
    pairs += list(zip(a.area, b.area, strict=True))
    for x, y in pairs:
        assert x.value == pytest.approx(y.value, abs=1e-12)
        assert x.se == pytest.approx(y.se, abs=1e-12)
    assert b.overall.se != pytest.approx(
        olofsson_estimates(OLOFSSON_COUNTS, sizes, fpc=not fpc).overall.se
    )


def test_census_gives_the_true_values_with_zero_width_intervals() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random(5_000) < 0.3).astype(int)
    mapped = np.where(rng.random(5_000) < 0.15, 1 - truth, truth)
    truth[:400] = -1  # no reference class (roads): in areas, not in accuracies
    sizes = {c: int(np.sum(mapped == c)) for c in (0, 1)}
    labelled = truth >= 0
    counts = np.array(
        [[np.sum((mapped == i) & (truth == j)) for j in (-1, 0, 1)] for i in (-1, 0, 1)]
    )
    for e in (
        stehman_estimates(mapped, mapped, truth, sizes),
        census_estimates(counts, (-1, 0, 1)),
    ):
        assert e.area[2].value * 5_000 == pytest.approx(np.sum(truth == 1))
        assert e.area[0].value * 5_000 == pytest.approx(400)
        assert e.overall.value == pytest.approx(np.mean((mapped == truth)[labelled]))
        assert e.users[2].value == pytest.approx(np.mean(truth[labelled & (mapped == 1)]))
        assert e.producers[2].value == pytest.approx(mapped[truth == 1].mean())
        for est in (e.overall, *e.users[1:], *e.producers[1:], *e.area):
            assert est.se == pytest.approx(0, abs=1e-12)
            assert est.ci95[0] == pytest.approx(est.ci95[1], abs=1e-12)
    labelled_counts = counts[1:, 1:]
    e = olofsson_estimates(labelled_counts, labelled_counts.sum(axis=1))  # no unlabelled
    assert e.area[1].value == pytest.approx(np.sum(truth == 1) / labelled.sum())
    assert all(est.se == 0 for est in (e.overall, *e.users, *e.producers, *e.area))


def acceptance(draws: int, p: float = 0.95) -> tuple[float, float]:
    """Coverage rates within 3 binomial SDs of ``p`` (a false alarm about 1 in 370)."""
    sd = math.sqrt(p * (1 - p) / draws)
    return p - 3 * sd, p + 3 * sd


def assert_unbiased(estimates: list[float], truth: float) -> None:
    """The mean of the draws lies within 4 standard errors of the mean of the truth."""
    values = np.asarray(estimates)
    assert abs(values.mean() - truth) < 4 * values.std(ddof=1) / np.sqrt(len(values))


def simulated_population(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth, map and an uncertainty level on a 200 × 200 grid with known error rates:
    pixels near a class boundary are uncertain and wrong far more often."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:200, 0:200]
    field_id = (yy // 20) * 10 + xx // 20
    truth = (rng.random(100) < 0.3)[field_id].astype(int)
    edge = ((yy % 20) < 3) | ((xx % 20) < 3)
    wrong = rng.random(truth.shape) < np.where(edge, 0.30, 0.04)
    mapped = np.where(wrong, 1 - truth, truth)
    return truth.ravel(), mapped.ravel(), edge.ravel().astype(int)


def test_95_percent_intervals_cover_the_true_area_strata_are_map_classes() -> None:
    truth, mapped, _ = simulated_population()
    sizes = {c: int(np.sum(mapped == c)) for c in (0, 1)}
    n_h = allocate(sizes, 300, "min-then-proportional", min_per_stratum=100)
    members = {c: np.flatnonzero(mapped == c) for c in (0, 1)}
    rng = np.random.default_rng(2014)
    covered = pixel_counting_covered = 0
    estimates = []
    draws = 1000
    for _ in range(draws):
        idx = np.concatenate([rng.choice(members[c], n_h[c], replace=False) for c in (0, 1)])
        counts = np.zeros((2, 2), dtype=int)
        np.add.at(counts, (mapped[idx], truth[idx]), 1)
        e = olofsson_estimates(counts, [sizes[0], sizes[1]])
        low, high = e.area[1].ci95
        covered += low <= truth.mean() <= high
        estimates.append(e.area[1].value)
        pixel_counting_covered += low <= mapped.mean() <= high
    low, high = acceptance(draws)
    assert low <= covered / draws <= high
    assert_unbiased(estimates, truth.mean())
    assert pixel_counting_covered / draws < 0.5  # the map's pixel count is biased


def test_95_percent_intervals_cover_with_uncertainty_strata() -> None:
    """Strata = map class × uncertain/certain, uncertain areas oversampled (Stehman case)."""
    truth, mapped, edge = simulated_population()
    strata = edge * 256 + mapped
    codes = sorted(set(strata.tolist()))
    sizes = {c: int(np.sum(strata == c)) for c in codes}
    n_h = allocate(sizes, 480, "equal")
    members = {c: np.flatnonzero(strata == c) for c in codes}
    rng = np.random.default_rng(2015)
    covered_area = covered_users = 0
    estimates = []
    draws = 1000
    true_users = truth[mapped == 1].mean()
    for _ in range(draws):
        idx = np.concatenate([rng.choice(members[c], n_h[c], replace=False) for c in codes])
        e = stehman_estimates(strata[idx], mapped[idx], truth[idx], sizes, classes=(0, 1))
        low, high = e.area[1].ci95
        covered_area += low <= truth.mean() <= high
        estimates.append(e.area[1].value)
        low, high = e.users[1].ci95
        covered_users += low <= true_users <= high
    low, high = acceptance(draws)
    assert low <= covered_area / draws <= high
    assert low <= covered_users / draws <= high
    assert_unbiased(estimates, truth.mean())


# --- end to end: sample → fill the reference from a truth raster → assess --------------------


def write_map(path: Path, classes: np.ndarray, profile: dict) -> Path:
    """A map as ``sarcrop predict`` writes it: probability (p × 250) and class, 255 = nodata."""
    nodata = classes == 255
    prob = np.where(nodata, 255, np.where(classes == 1, 200, 50)).astype(np.uint8)
    profile = {**profile, "driver": "GTiff", "count": 2, "dtype": "uint8", "nodata": 255}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack([prob, classes.astype(np.uint8)]))
        dst.descriptions = ("probability", "class")
    return path


def run_ok(*argv: object) -> None:
    assert main([str(a) for a in argv]) == 0


def end_to_end(tmp_path: Path, map_path: Path, labels: Path, n: int, *extra: object) -> dict:
    samples = tmp_path / "samples.gpkg"
    run_ok("sample", map_path, "--n", n, "--out", samples, "--fill-from", labels, *extra)
    run_ok("assess", map_path, "--reference", samples, "--out", tmp_path / "sample")
    result = json.loads((tmp_path / "sample.json").read_text())
    markdown = (tmp_path / "sample.md").read_text()
    for heading in ("sample counts", "area proportions", "## Accuracy", "## Area per class"):
        assert heading in markdown
    assert result["sample_size"] == len(read_sample(samples).points) == n
    # The API writes what the command writes, heading and all.
    from sarcrop.evaluation import assess, write_assessment

    write_assessment(assess(map_path, samples), tmp_path / "api")
    assert (tmp_path / "api.md").read_text() == markdown
    return result


def test_end_to_end_on_a_simulated_region(tmp_path: Path) -> None:
    from sarcrop.data.simulate.simulator import simulate_region

    region = simulate_region("spain", tmp_path / "sim", seed=3, size=(96, 128), revisit_days=24)
    with rasterio.open(region.labels) as src:
        labels, profile = src.read(1), src.profile
    positive = region.classes.index(region.positive)
    truth = (labels == positive).astype(int)
    rng = np.random.default_rng(5)
    wrong = rng.random(truth.shape) < np.where(truth == 1, 0.15, 0.05)  # omission > commission
    classes = np.where(wrong, 1 - truth, truth)  # roads (label nodata) are mapped too
    classes[:4] = 255  # a nodata strip of the map
    map_path = write_map(tmp_path / "map.tif", classes, profile)
    mapped, labelled = classes != 255, labels != 255

    result = end_to_end(tmp_path, map_path, region.labels, 150)
    true_pixels = int(np.sum(truth[mapped]))
    area = result["area"]["1"]
    assert area["pixel_count"] == int(np.sum(classes == 1))
    assert area["pixels"]["ci95_low"] <= true_pixels <= area["pixels"]["ci95_high"]
    assert area["hectares"]["value"] == pytest.approx(area["pixels"]["value"] / 100)
    assert result["total_pixels"] == int(mapped.sum())

    run_ok("assess", map_path, "--reference", region.labels, "--out", tmp_path / "census")
    census = json.loads((tmp_path / "census.json").read_text())
    assert census["area"]["1"]["pixels"]["value"] == pytest.approx(true_pixels)
    assert census["area"]["-1"]["pixels"]["value"] == pytest.approx(np.sum(mapped & ~labelled))
    assert census["area"]["1"]["pixels"]["se"] == pytest.approx(0, abs=1e-9)
    assert census["overall_accuracy"]["value"] == pytest.approx(
        np.mean((classes == truth)[mapped & labelled])
    )

    # The experiment report's area section: estimate and CI beside pixel count and truth.
    from sarcrop.evaluation import area_record
    from sarcrop.reports.html import build_report_html

    sample_result = assess(map_path, tmp_path / "samples.gpkg")
    truth_result = assess(map_path, region.labels)
    # A class by its number, where the classes start with -1 (unlabelled pixels): not by its
    # position, where 1 is class 0.
    assert truth_result.classes == (-1, 0, 1)
    assert truth_result.class_area(1).value == pytest.approx(true_pixels)
    assert truth_result.area_pixels(1).value == truth_result.class_area(0).value
    with pytest.raises(InputDataError, match="no reference class 2: the classes are -1, 0, 1"):
        truth_result.class_area(2)
    # Points of no class left blank instead of -1: out of the estimates, and the warning says
    # what that costs.
    blanked = read_sample(tmp_path / "samples.gpkg")
    roads = blanked.points["reference"] == -1
    assert roads.any()
    blanked.points.loc[roads, "reference"] = pd.NA
    with pytest.warns(
        UserWarning,
        match=rf"{roads.sum()} sample points without a reference "
        "label are left out, so the estimates stand for the map only if",
    ):
        assess_sample(blanked)
    record = area_record(sample_result, scenario="spain", truth=truth_result)
    assert record["true"] == pytest.approx(true_pixels / 100)  # 10 m pixels → ha
    assert record["pixel_count"] == pytest.approx(np.sum(classes == 1) / 100)
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text(json.dumps({"name": "t", "area_estimates": [record]}))
    html = build_report_html(run)
    assert 'id="area"' in html and f"{record['estimate']:,.2f}" in html and "<td>yes</td>" in html
    # The roads the truth leaves unlabelled: said, since both areas then count labelled crop.
    share = truth_result.class_area(-1).value / truth_result.total_pixels
    assert record["unlabelled_share"] == pytest.approx(share) and share >= 0.01
    assert f"up to {100 * share:.0f} % of the mapped area has no label" in html


def test_uncertainty_strata_end_to_end(tmp_path: Path) -> None:
    """Strata from the map's own probability band binned into levels (the Stehman case)."""
    rng = np.random.default_rng(11)
    truth = (rng.random((60, 80)) < 0.35).astype(int)
    classes = np.where(rng.random(truth.shape) < 0.1, 1 - truth, truth)
    profile = {
        "width": 80,
        "height": 60,
        "crs": "EPSG:32631",
        "transform": Affine(10, 0, 500_000, 0, -10, 4_000_000),
    }
    map_path = write_map(tmp_path / "map.tif", classes, profile)
    labels = tmp_path / "truth.tif"
    with rasterio.open(
        labels, "w", driver="GTiff", count=1, dtype="uint8", nodata=255, **profile
    ) as dst:
        dst.write(truth.astype(np.uint8), 1)
    result = end_to_end(
        tmp_path,
        map_path,
        labels,
        120,
        "--strata",
        map_path,
        "--strata-band",
        "probability",
        "--strata-edges",
        "100",
        "--allocation",
        "equal",
    )
    assert "Stehman" in result["estimator"]
    assert {s["level"] for s in result["strata"]} == {0, 1}
    sample = read_sample(tmp_path / "samples.gpkg")
    np.testing.assert_array_equal(
        sample.points["reference"].to_numpy(int), truth[sample.points["row"], sample.points["col"]]
    )


def test_end_to_end_on_a_worldcereal_location(shared_data: Path, tmp_path: Path) -> None:
    """Real labels (WorldCereal, Flanders): maize (1200) vs rest, a map with 10 % flipped."""
    labels = (
        shared_data
        / "worldcereal-s1-croptype-patches/geotiff"
        / ("000028085BF08E7E_labels_CT_LC_10m.tif")
    )
    if not labels.is_file():
        pytest.skip(f"{labels} not found")
    with rasterio.open(labels) as src:
        crop_type, profile = src.read(1), src.profile
    truth = (crop_type == 1200).astype(int)
    rng = np.random.default_rng(3)
    classes = np.where(
        crop_type == 0, 255, np.where(rng.random(truth.shape) < 0.1, 1 - truth, truth)
    )
    map_path = write_map(tmp_path / "map.tif", classes, profile)
    result = end_to_end(tmp_path, map_path, labels, 200, "--positive-codes", "1200")
    labelled = classes != 255
    area = result["area"]["1"]
    assert area["pixel_count"] == int(np.sum(classes == 1))
    assert area["pixels"]["ci95_low"] <= int(truth[labelled].sum()) <= area["pixels"]["ci95_high"]
    census = assess(map_path, labels, options=ReferenceOptions(positive_codes=(1200,)))
    assert census.area_pixels(1).value == pytest.approx(truth[labelled].sum())
    assert census.estimates.overall.value == pytest.approx(np.mean((classes == truth)[labelled]))
    assert census.estimates.area[1].se == 0


def test_crop_codes_read_as_map_classes_are_refused(tmp_path: Path, capsys) -> None:
    """A label raster of crop codes (WorldCereal: 1200 maize) without --positive-codes would
    give an overall accuracy of 0 and areas of classes the map cannot hold: refused in one line
    naming the file, before the sample is written."""
    transform = Affine(10, 0, 500_000, 0, -10, 4_000_200)
    profile = {"crs": "EPSG:32631", "transform": transform, "width": 20, "height": 20}
    classes = np.zeros((20, 20), np.uint8)
    classes[:, :8] = 1
    map_path = write_map(tmp_path / "map.tif", classes, profile)
    codes = np.full((20, 20), 9120, np.uint16)  # grassland
    codes[:, :10] = 1200  # maize
    codes[:4] = 1110  # winter wheat
    labels = tmp_path / "codes.tif"
    with rasterio.open(labels, "w", driver="GTiff", count=1, dtype="uint16", **profile) as dst:
        dst.write(codes, 1)
    samples = tmp_path / "samples.gpkg"
    argv = ["sample", map_path, "--n", 100, "--out", samples, "--fill-from", labels]
    assert main([str(a) for a in argv]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(labels) in error
    assert "reference classes 1110, 1200, 9120 are not classes of the map (0 to 1" in error
    assert not samples.exists()
    with pytest.raises(InputDataError, match="1110, 1200, 9120") as err:
        assess(map_path, labels)
    assert err.value.path == str(labels)
    census = assess(map_path, labels, options=ReferenceOptions(positive_codes=(1200,)))
    assert census.classes == (0, 1)
    assert census.estimates.overall.value == pytest.approx(np.mean(classes == (codes == 1200)))
    run_ok(*argv, "--positive-codes", 1200)
    assert set(read_sample(samples).points["reference"]) <= {0, 1}
    table = tmp_path / "labels.csv"
    table.write_text("point_id,reference\n1,0\n")
    with pytest.raises(InputDataError, match=r"--reference SAMPLE\.gpkg --labels-csv labels\.csv"):
        assess(map_path, table)
    capsys.readouterr()
    run_ok("assess", map_path, "--reference", samples, "--out", tmp_path / "sample")
    said = capsys.readouterr().out.splitlines()
    assert said[2] == "estimate ± half-width of the 95 % interval (1.96 SE)"
    assert said[3].startswith("overall accuracy ")
    # A slip of one digit (1220): no pixel holds it, which made the crop's area 0 unsaid.
    samples.unlink()
    assert main([str(a) for a in [*argv, "--positive-codes", 1220]]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(labels) in error and not samples.exists()
    assert "--positive-codes 1220: no pixel of band 1 holds them (its codes: 1110, 1200, 9120)" in (
        error
    )
    with pytest.raises(InputDataError, match="--positive-codes 1220: no pixel of band 1"):
        assess(map_path, labels, options=ReferenceOptions(positive_codes=(1220,)))


def test_a_sample_is_assessed_against_the_map_it_was_drawn_from(tmp_path: Path) -> None:
    """A map predicted again under the same name (another threshold): where no sample point
    changed class, its class areas did, and the estimates weigh the areas of the map drawn."""
    transform = Affine(10, 0, 500_000, 0, -10, 4_000_200)
    profile = {"crs": "EPSG:32631", "transform": transform, "width": 20, "height": 20}
    classes = np.zeros((20, 20), np.uint8)
    classes[:, :8] = 1
    map_path = write_map(tmp_path / "map.tif", classes, profile)
    labels = write_map(tmp_path / "labels.tif", classes, profile)
    samples = tmp_path / "samples.gpkg"
    run_ok(
        "sample", map_path, "--n", 100, "--out", samples, "--fill-from", labels, "--label-band", 2
    )
    assert assess(map_path, samples).area_pixels(1).value == pytest.approx(160)
    points = read_sample(samples).points
    taken = set(zip(points["row"], points["col"], strict=True))
    free = next((r, c) for r in range(20) for c in range(8) if (r, c) not in taken)
    again = classes.copy()
    again[free] = 0
    write_map(map_path, again, profile)
    with pytest.raises(
        InputDataError,
        match=r"class 0: 240 px then, 241 now, class 1: 160 px "
        r"then, 159 now\), and the estimates weigh those: draw a new sample",
    ):
        assess(map_path, samples)
    row, col = int(points["row"].iloc[0]), int(points["col"].iloc[0])
    again[row, col] = 1 - again[row, col]
    write_map(map_path, again, profile)
    with pytest.raises(InputDataError, match="1 of 100 sample points have another class"):
        assess(map_path, samples)


def test_parcels_of_a_test_area_are_a_census(tmp_path: Path) -> None:
    """Polygons rasterised onto the map's grid: the map's crop (its POSITIVE tag) is class 1,
    other parcels and the space between them class 0, parcels without a value unlabelled."""
    import geopandas as gpd
    from shapely.geometry import box

    transform = Affine(10, 0, 500_000, 0, -10, 4_000_200)
    classes = np.zeros((20, 20), np.uint8)
    classes[:, :8] = 1  # mapped maize: columns 0-7
    profile = {"crs": "EPSG:32631", "transform": transform, "width": 20, "height": 20}
    map_path = write_map(tmp_path / "map.tif", classes, profile)
    with rasterio.open(map_path, "r+") as ds:
        ds.update_tags(POSITIVE="maize")

    def cells(c0: int, r0: int, c1: int, r1: int) -> object:
        x0, y0 = transform @ (c0, r0)
        x1, y1 = transform @ (c1, r1)
        return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    parcels = gpd.GeoDataFrame(
        {"crop": ["maize", "wheat", None]},
        geometry=[cells(0, 0, 10, 10), cells(10, 0, 20, 10), cells(0, 10, 20, 15)],
        crs="EPSG:32631",
    )
    parcels.to_file(tmp_path / "parcels.gpkg", engine="pyogrio")
    reference = np.zeros((20, 20), np.int64)  # rows 15-19: between parcels, class 0
    reference[:10, :10] = 1
    reference[10:15] = -1
    expected = np.zeros((3, 3), np.int64)  # classes -1, 0, 1
    for m, r in zip(classes.ravel(), reference.ravel(), strict=True):
        expected[int(m) + 1, int(r) + 1] += 1
    expected = expected[1:]  # map classes 0, 1 only

    got = assess(map_path, tmp_path / "parcels.gpkg", label_column="crop")
    assert got.design == "census"
    np.testing.assert_array_equal(got.counts[1:], expected)
    # crop is the parcels' default column, as prepare reads them (a sample's is reference)
    default = assess(map_path, tmp_path / "parcels.gpkg")
    np.testing.assert_array_equal(default.counts, got.counts)
    maize = got.estimates.area[got.classes.index(1)]
    assert maize.value * got.total_pixels == pytest.approx(np.sum(reference == 1))
    assert maize.se == 0

    with rasterio.open(map_path, "r+") as ds:
        ds.update_tags(POSITIVE="")
    with pytest.raises(InputDataError, match="POSITIVE") as err:
        assess(map_path, tmp_path / "parcels.gpkg", label_column="crop")
    assert "map.tif" in str(err.value)
    with rasterio.open(map_path, "r+") as ds:  # on the class band, as predict writes it
        ds.update_tags(2, POSITIVE="maize")
    on_band = assess(map_path, tmp_path / "parcels.gpkg", label_column="crop")
    np.testing.assert_array_equal(on_band.counts, got.counts)

    # A few surveyed fields: the ground between them is unlabelled, as prepare reads it, and
    # the census holds the fields alone; left unsaid with most of the ground outside them.
    few = parcels.iloc[:1]  # the maize field alone: 75 % of the ground outside it
    few.to_file(tmp_path / "few.gpkg", engine="pyogrio")
    with pytest.warns(UserWarning, match="pass --outside-parcels unlabelled"):
        assess(map_path, tmp_path / "few.gpkg", label_column="crop")
    fields = assess(
        map_path, tmp_path / "few.gpkg", label_column="crop", outside_parcels="unlabelled"
    )
    labelled = fields.counts[:, [i for i, c in enumerate(fields.classes) if c >= 0]]
    maize = fields.classes.index(1)  # rows and columns: the same classes
    assert labelled.sum() == 100 and fields.counts[maize, maize] == 80
    with pytest.raises(InputDataError, match="no parcel file"):
        assess(map_path, map_path, outside_parcels="unlabelled")
