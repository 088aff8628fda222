"""The experiment report's uncertainty panels and sample-based area estimates, on a tiny
simulated run of a forest only (no network is trained)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from sarcrop.evaluation.sampling import read_sample
from sarcrop.experiments import run_experiment
from sarcrop.experiments.area import NODATA, SAMPLE_SIZE, entropy

TILE = {"tiling": {"patch_size": 32}}
CONFIG = {
    "name": "area",
    "regions": {
        "korea": {"simulate": {"preset": "korea", "size": [64, 64]}, **TILE},
        "spain": {"simulate": {"preset": "spain", "size": [96, 96]}, **TILE},
        "france": {"simulate": {"preset": "france", "size": [96, 96]}, **TILE},
    },
    "pretrain": {"region": "korea", "bands": ["VH"], "model_options": {"widths": [4, 8]}},
    "scenarios": [{"finetune": "spain", "test": "france", "crop": "rice", "bands": ["VH"]}],
    "methods": ["rf"],
    "baseline": {"n_estimators": 5, "max_samples_per_class": 200},
    "figure_patches": 1,
}
SCENARIO = "spain-france-rice-vh"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("area")
    config = folder / "area.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    run_experiment(config, folder / "out")
    return folder / "out"


def manifest(run: Path) -> dict:
    return json.loads((run / "experiment.json").read_text(encoding="utf-8"))


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_truth_is_the_simulators_labels_on_the_test_patches(run):
    area = run / "area" / SCENARIO
    truth, mapped = read(area / "truth.tif"), read(area / "rf-class.tif") != NODATA
    regions = {
        (info := json.loads(path.read_text(encoding="utf-8")))["region"]: (path.parent, info)
        for path in run.glob("cache/region-*/simulated/region.json")
    }
    folder, info = regions["france"]  # the test region
    with rasterio.open(folder / "labels.tif") as src:
        labels = src.read(1)
    positive = info["classes"].index(info["positive"])
    assert labels.shape == truth.shape
    assert mapped.sum() > SAMPLE_SIZE and (truth[~mapped] == NODATA).all()
    known = mapped & (labels != info["label_nodata"])
    np.testing.assert_array_equal(truth[known], (labels[known] == positive).astype(np.uint8))


def test_area_estimate_with_ci_beside_truth_and_pixel_count(run):
    rows = manifest(run)["area_estimates"]
    assert [(r["scenario"], r["method"], r["data"]) for r in rows] == [
        (SCENARIO, "rf", "simulated")
    ]
    row = rows[0]
    assert (row["class"], row["crop"]) == (1, "rice")  # the map's class 1 is the crop
    folder = run / "area" / SCENARIO
    classes, truth = read(folder / "rf-class.tif"), read(folder / "truth.tif")
    probabilities = np.load(next(run.glob("cache/method-*/test_probabilities.npy")))
    # 96 px regions in 32 px patches: the test patches tile the map without overlap.
    assert int((classes == 1).sum()) == int((probabilities.astype(np.float32) >= 0.5).sum())
    hectares = 100 * 100 / 1e4 / 100  # 10 m pixels
    assert row["unit"] == "ha"
    assert row["pixel_count"] == pytest.approx((classes == 1).sum() * hectares)
    assert row["true"] == pytest.approx(((classes != NODATA) & (truth == 1)).sum() * hectares)
    assert row["sample_size"] == SAMPLE_SIZE
    assert row["se"] > 0 and row["ci95_low"] < row["estimate"] < row["ci95_high"]
    assert row["ci95_low"] <= row["true"] <= row["ci95_high"]  # fixed seed: deterministic
    # The sample behind it: its reference labels are the truth at its points.
    sample = read_sample(folder / "rf-samples.gpkg")
    points = sample.points
    expected = truth[points["row"], points["col"]].astype(int)
    expected[expected == NODATA] = -1
    np.testing.assert_array_equal(points["reference"].to_numpy(int), expected)
    assessment = json.loads((run / row["assessment"]).read_text(encoding="utf-8"))
    assert assessment["area"]["1"]["hectares"]["value"] == pytest.approx(row["estimate"])


def test_uncertainty_is_entropy_and_higher_on_errors(run):
    scenario = manifest(run)["scenarios"][0]
    figure = run / scenario["uncertainty_figure"]
    assert figure.is_file() and figure.stat().st_size > 10_000
    stats = scenario["uncertainty"]["rf"]
    folder = run / "area" / SCENARIO
    classes, truth = read(folder / "rf-class.tif"), read(folder / "truth.tif")
    assert stats["labelled_pixels"] == int(((truth != NODATA) & (classes != NODATA)).sum())
    assert stats["error_pixels"] == int(((truth != NODATA) & (classes != truth)).sum())
    assert stats["entropy_errors"] > stats["entropy_correct"]
    h = entropy(np.array([0.0, 0.5, 1.0, 0.11, np.nan]))
    np.testing.assert_allclose(h[:4], [0, 1, 0, 0.4999], atol=1e-3)
    assert np.isnan(h[4])


def test_redraw_recomputes_the_same_estimates_and_the_report_shows_them(run):
    from sarcrop.experiments.figures import redraw

    before = manifest(run)
    (run / "area").rename(run / "area-before")  # nothing is reused: all written again
    redraw(run)
    after = manifest(run)
    assert after["area_estimates"] == before["area_estimates"]
    assert after["scenarios"][0]["uncertainty"] == before["scenarios"][0]["uncertainty"]
    from sarcrop.reports.html import build_report_html

    html = build_report_html(run)
    row = after["area_estimates"][0]
    assert 'id="area"' in html and "<th>method</th>" in html
    assert f"<td>{row['estimate']:,.2f}</td>" in html and "<td>yes</td>" in html
    assert f"<td>{SCENARIO}</td><td>RF</td><td>rice</td>" in html  # the crop, not class 1
    assert "its uncertainty (binary entropy" in html
