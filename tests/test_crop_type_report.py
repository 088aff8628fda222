"""Crop-type scenarios in the report: class maps with a legend, per-class parcel-bootstrap
intervals and the early-season mIoU curve, all redrawn from the run directory alone."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from sarcrop.cli import main
from sarcrop.errors import SarcropError
from sarcrop.evaluation.bootstrap import (
    MIOU,
    PairedTestSet,
    class_bootstrap,
    paired_class_difference,
    parcel_class_confusions,
    pooled_difference,
)
from sarcrop.evaluation.metrics import EvaluationInputError, MulticlassConfusion
from sarcrop.experiments.classes import CLASS_RESULTS, binary_view, read_class_results
from sarcrop.experiments.compare import Arm, compare_methods
from sarcrop.experiments.config import experiment_config_from_dict
from sarcrop.experiments.intervals import CLASS_INTERVALS, read_class_intervals
from sarcrop.experiments.runner import run_experiment
from sarcrop.prediction.writer import class_colors
from sarcrop.reports.figures import class_maps_figure, class_palette, class_rgb
from test_experiment_classes import CLASSES, STEPS, config, make_store

SCENARIO = "nl-nl-types-vh-from-binary"


def parcels_of(rng: np.random.Generator, n: int, accuracy: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pixels ``(pred, target, parcel)`` of ``n`` fields of 3 classes: each field's pixels are
    right with its class's ``accuracy``, else of the next class."""
    sizes = rng.integers(10, 60, n)
    truth = rng.integers(0, 3, n)
    parcel = np.repeat(np.arange(n), sizes)
    target = np.repeat(truth, sizes)
    right = rng.random(parcel.size) < accuracy[target]
    return np.where(right, target, (target + 1) % 3), target, parcel


def test_class_bootstrap_counts_intervals_and_seed_means() -> None:
    classes = ["a", "b", "c"]
    target = np.array([[0, 0, 1, 1], [2, 2, 1, 9]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 1, 0]])
    parcels = np.array([[4, 4, 6, 6], [8, 8, 6, -1]])  # -1: ignored (target 9 too)
    counts = parcel_class_confusions(pred, target, parcels, classes)
    assert counts.shape == (3, 3, 3)
    whole = MulticlassConfusion(classes).update(pred, target, parcels >= 0)
    assert counts.sum(axis=0).tolist() == whole.counts.tolist()
    # Scores (N, K, ...) are argmaxed like every evaluation's.
    scores = np.moveaxis(np.eye(3)[np.where(parcels >= 0, pred, 0)], -1, 0)[None]
    again = parcel_class_confusions(scores, target[None], parcels[None], classes)
    assert again.tolist() == counts.tolist()
    with pytest.raises(EvaluationInputError, match="class indices"):
        parcel_class_confusions(pred + 5, target, parcels, classes)
    with pytest.raises(EvaluationInputError, match="class indices"):  # NaN: not a class
        class_bootstrap(pred, np.where(target == 1, np.nan, target), parcels, classes, n=10)

    rng = np.random.default_rng(1)
    accuracy = np.array([0.9, 0.6, 0.3])
    small = parcels_of(rng, 25, accuracy)
    large = parcels_of(rng, 400, accuracy)
    one = class_bootstrap(small[0], small[1], small[2], classes, n=400)
    assert set(one) == {*classes, MIOU}
    with pytest.raises(EvaluationInputError, match="class named 'miou' clashes"):
        class_bootstrap(small[0], small[1], small[2], ["a", MIOU, "c"], n=10)  # lost mIoU
    whole = MulticlassConfusion(classes).update(small[0], small[1])
    assert one[MIOU].estimate == pytest.approx(whole.miou)
    assert [one[c].estimate for c in classes] == pytest.approx(list(whole.iou))
    for interval in one.values():
        assert interval.low <= interval.estimate <= interval.high
        assert interval.n_parcels == 25
    # 16x the parcels narrow every interval, around the population IoU: a class's pixels go
    # wrong into the next class, so IoU = accuracy / (1 + errors of the class before).
    many = class_bootstrap(large[0], large[1], large[2], classes, n=400)
    assert all(many[k].width < one[k].width for k in one)
    population = accuracy / (1 + (1 - np.roll(accuracy, 1)))
    truth = {**dict(zip(classes, population)), MIOU: population.mean()}
    for name, interval in many.items():
        assert interval.low < truth[name] < interval.high, (name, interval)
    assert many["c"].high < min(many["a"].low, many["b"].low)
    # Several seeds: the estimate is the mean of each seed's own mIoU, on the same draws.
    other = np.where(rng.random(small[0].size) < 0.5, small[1], small[0])
    both = class_bootstrap([small[0], other], small[1], small[2], classes, n=400)
    second = MulticlassConfusion(classes).update(other, small[1]).miou
    assert both[MIOU].estimate == pytest.approx((whole.miou + second) / 2)
    assert both[MIOU].low <= both[MIOU].estimate <= both[MIOU].high
    # A class in one parcel has no interval (its draws would repeat one value); the rest do.
    first = small[2][small[1] == 2].flat[0]  # the first parcel holding class c
    lone = np.where(small[2] == first, small[1], np.minimum(small[1], 1))
    sparse = class_bootstrap(small[0], lone, small[2], classes, n=400)
    held = {int(p) for p in np.unique(small[2][lone == 2])}
    assert len(held) == 1 and np.isnan([sparse["c"].low, sparse["c"].high]).all()
    assert np.isfinite([sparse["a"].low, sparse["b"].high, sparse[MIOU].low]).all()


def test_a_paired_mIoU_difference_resolves_what_overlapping_intervals_do_not() -> None:
    """B is A with one in twenty of its right pixels spoilt: their unpaired intervals overlap on 25
    fields, the paired difference (same draws) is above 0 on every draw, and equals the
    difference of the two means."""
    classes = ["a", "b", "c"]
    rng = np.random.default_rng(3)
    pred_a, target, parcels = parcels_of(rng, 25, np.array([0.9, 0.7, 0.6]))
    spoilt = (rng.random(pred_a.size) < 0.05) & (pred_a == target)
    pred_b = np.where(spoilt, (target + 2) % 3, pred_a)
    a, b = (class_bootstrap(p, target, parcels, classes, n=400)[MIOU] for p in (pred_a, pred_b))
    assert a.low < b.high  # unpaired: the intervals overlap
    difference = paired_class_difference(pred_a, pred_b, target, parcels, classes, n=400)
    assert difference.estimate == pytest.approx(a.estimate - b.estimate)
    assert 0 < difference.low <= difference.estimate <= difference.high
    assert difference.p_above == 1.0 and difference.n_parcels == 25
    same = paired_class_difference([pred_a, pred_b], [pred_a, pred_b], target, parcels, classes)
    assert (same.estimate, same.low, same.high, same.p_above) == (0, 0, 0, 0)


def test_a_pooled_mIoU_difference_averages_the_test_sets_each_on_its_own_draws() -> None:
    """Two crop-type test sets weigh the same: the pooled means are those of the single ones,
    the parcels add up, and a test set of one crop needs a metric of one crop."""
    classes = ("a", "b", "c")
    rng = np.random.default_rng(5)
    sets, singles = [], []
    for index, size in enumerate((20, 60)):
        pred_a, target, parcels = parcels_of(rng, size, np.array([0.9, 0.8, 0.5]))
        pred_b = np.where(rng.random(pred_a.size) < 0.3, (target + 1) % 3, pred_a)
        sets.append(PairedTestSet(pred_a, pred_b, target, parcels, classes))
        single = paired_class_difference(
            pred_a, pred_b, target, parcels, classes, n=300, seed=9 + index
        )
        singles.append(single)
    pooled = pooled_difference(sets, metric=MIOU, n=300, seed=9)
    assert pooled.mean_a == pytest.approx(np.mean([d.mean_a for d in singles]))
    assert pooled.estimate == pytest.approx(np.mean([d.estimate for d in singles]))
    assert pooled.n_parcels == 80 and 0 < pooled.low < pooled.estimate < pooled.high
    with pytest.raises(EvaluationInputError, match="metric 'iou': one crop's maps are scored"):
        pooled_difference(sets, metric="iou")
    binary = PairedTestSet(pred_a > 0, pred_b > 0, target > 0, parcels)
    with pytest.raises(EvaluationInputError, match="metric 'miou': crop-type maps"):
        pooled_difference([binary], metric=MIOU)


def test_class_rgb_is_the_palette_of_predicted_maps() -> None:
    classes = ["maize", "potato", "other"]
    palette = class_palette(classes)
    rgb = class_colors(3)
    assert palette["potato"] == "#{:02x}{:02x}{:02x}".format(*rgb[1])
    label = np.array([[0, 1], [2, 0]])
    valid = np.array([[True, True], [True, False]])
    drawn = class_rgb(label, 3, valid)
    assert drawn[0, 1].tolist() == list(rgb[1]) and drawn[1, 0].tolist() == list(rgb[2])
    assert drawn[1, 1].tolist() == [200, 200, 200]  # unlabelled grey
    scores = np.stack([label == k for k in range(3)]).astype(np.float32)
    fig = class_maps_figure([label], {"RF": [scores]}, classes, valid=[valid])
    panels = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert np.array_equal(panels[0], drawn)
    assert np.array_equal(panels[1], class_rgb(label, 3))  # argmax of the scores
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert texts == [*classes, "unlabelled"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("types") / "store.zarr")


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    changes = {
        "methods": ["rf", "ri"],
        "figure_patches": 2,
        "comparisons": [{"a": "rf", "b": "ri", "metric": "miou"}],
    }
    spec = config(store, early_season={"scenario": 0}, **changes)
    spec["scenarios"] = spec["scenarios"][1:2]
    out = tmp_path_factory.mktemp("run") / "run"
    run_experiment(experiment_config_from_dict(spec), out)
    return out


def _colour_pixels(png: np.ndarray, hex_color: str) -> int:
    rgb = np.round(png[..., :3] * 255).astype(int)
    want = [int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]
    return int(np.all(rgb == want, axis=-1).sum())


def test_crop_type_maps_intervals_and_early_season_in_the_report(run) -> None:
    manifest = json.loads((run / "experiment.json").read_text())
    (entry,) = manifest["crop_types"]
    assert entry["scenario"] == SCENARIO
    assert manifest["early_season"] is None  # no binary curve for a crop-type scenario
    maps = run / entry["maps_figure"]
    early = run / entry["early_season_figure"]
    assert maps.is_file() and early.is_file()
    assert entry["maps"]["seed"] == 0 and entry["maps"]["label_fraction"] == 1.0
    assert set(entry["maps"]["probabilities"]) == {"rf", "ri"}
    palette = class_palette(CLASSES)
    assert entry["legend"] == [{"class": c, "color": palette[c]} for c in CLASSES]

    report = (run / "report.html").read_text()
    for figure in (maps, early):
        assert base64.b64encode(figure.read_bytes()).decode("ascii") in report
    legend = re.search(r'<ul class="legend".*?</ul>', report)
    assert legend is not None
    for name in CLASSES:
        assert f'<span class="swatch" style="background:{palette[name]}"></span>{name}</li>' in (
            legend.group(0)
        )
    # Each of the fixture's fields (6 x 6 px of maize, potato, grassland) fills a block of the
    # label panel in its map colour; the legend's swatches alone are far smaller.
    png = imread(maps)
    swatch = _colour_pixels(png, palette["potato"])
    assert swatch > 1500, swatch
    assert _colour_pixels(png, "#123456") == 0

    # Per-class intervals: every class and the mIoU, per method; the mean lies inside.
    intervals = read_class_intervals(run)
    assert intervals is not None
    assert set(intervals["method"]) == {"rf", "ri"}
    assert set(intervals["class"]) == {*CLASSES, ""}
    assert set(intervals[intervals["class"] == ""]["metric"]) == {"miou"}
    finite = intervals.dropna(subset=["low", "high", "mean"])
    assert len(finite) >= len(intervals) - 2 and (finite["n_parcels"] > 0).all()
    assert (
        (finite["low"] <= finite["mean"] + 1e-9) & (finite["mean"] <= finite["high"] + 1e-9)
    ).all()
    results = read_class_results(run)
    assert results is not None
    full = results[(results["timestep"] == STEPS) & (results["metric"] == "miou")]
    ri = intervals[(intervals["method"] == "ri") & (intervals["metric"] == "miou")]
    assert ri["mean"].item() == pytest.approx(full[full["method"] == "ri"]["value"].mean())
    # The mIoU rows compare each method with the baselines, paired; class rows do not.
    rf = intervals[(intervals["method"] == "rf") & (intervals["metric"] == "miou")]
    rf_mean = full[full["method"] == "rf"]["value"].mean()
    assert rf["minus_ri"].item() == pytest.approx(rf_mean - ri["mean"].item())
    assert rf["minus_ri_low"].item() <= rf["minus_ri"].item() <= rf["minus_ri_high"].item()
    assert (
        ri["minus_ri"].isna().all() and intervals[intervals["class"] != ""]["minus_rf"].isna().all()
    )
    tables = (run / "tables.md").read_text()
    cell = r"\d\.\d{3} ± \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]"
    assert re.search(rf"\| RI \| {cell} \|", tables), tables
    assert CLASS_INTERVALS in tables and CLASS_INTERVALS in report
    # RF's mIoU minus RI's, paired, in RF's row as class_intervals.csv has it.
    difference = rf["minus_ri"].item(), rf["minus_ri_low"].item(), rf["minus_ri_high"].item()
    paired = "{:+.3f} [{:+.3f}, {:+.3f}]".format(*difference)
    assert "| mIoU − RI |" in tables and re.search(rf"\| RF \|.* {re.escape(paired)} \|", tables)
    assert "mIoU − RI" in report

    # The early-season curve: RI is scored after every composite t.
    steps = results[(results["method"] == "ri") & (results["metric"] == "miou")]["timestep"]
    assert sorted(set(steps)) == list(range(1, STEPS + 1))


def test_report_redraw_draws_the_crop_type_figures_again(run) -> None:
    manifest = json.loads((run / "experiment.json").read_text())
    (entry,) = manifest["crop_types"]
    for name in ("maps_figure", "early_season_figure"):
        (run / entry[name]).unlink()
    before = (run / CLASS_RESULTS).read_text()
    assert main(["report", str(run), "--redraw"]) == 0
    assert (run / entry["maps_figure"]).is_file()
    assert (run / entry["early_season_figure"]).is_file()
    redrawn = json.loads((run / "experiment.json").read_text())["crop_types"]
    assert redrawn[0]["legend"] == entry["legend"] and redrawn[0]["maps"] == entry["maps"]
    assert (run / CLASS_RESULTS).read_text() == before
    report = (run / "report.html").read_text()
    maps = (run / entry["maps_figure"]).read_bytes()
    assert base64.b64encode(maps).decode("ascii") in report
    table = pd.read_csv(run / CLASS_INTERVALS)
    assert len(table) == 2 * (len(CLASSES) + 1)


def test_early_season_on_a_crop_type_scenario_leaves_binary_curves_alone(store) -> None:
    spec = config(store, early_season={"scenario": 1, "method": "fte"})
    parsed = experiment_config_from_dict(spec)
    assert parsed.early_season is not None and parsed.early_season.scenario == 1
    view = binary_view(parsed)
    assert len(view.scenarios) == 1 and view.early_season is None


def test_crop_type_runs_compare_by_their_mIoU_as_class_intervals_pair_them(run, capsys) -> None:
    """``comparisons:`` and ``sarcrop compare --metric miou`` pair two methods' mIoU on the
    parcel draws of ``class_intervals.csv``; a metric of one crop, or a per-``t`` comparison,
    is refused with the reason."""
    intervals = read_class_intervals(run)
    assert intervals is not None
    rf = intervals[(intervals["method"] == "rf") & (intervals["metric"] == "miou")].iloc[0]
    (row,) = pd.read_csv(run / "comparisons.csv").itertuples(index=False)
    assert (row.metric, row.pairs, row.seeds) == ("miou", SCENARIO, 2)
    expected = (rf["minus_ri"], rf["minus_ri_low"], rf["minus_ri_high"])
    assert (row.difference, row.low, row.high) == pytest.approx(expected)
    (full,) = compare_methods(run, Arm("rf"), Arm("ri"), metric="miou")
    assert (full.difference.estimate, full.difference.low) == pytest.approx(expected[:2])
    assert full.difference.mean_a == pytest.approx(rf["mean"])
    assert "| RF 100 % − RI 100 % | mIoU | full | 1: all |" in (run / "tables.md").read_text()
    assert main(["compare", str(run), "rf", "ri", "--metric", "miou"]) == 0
    printed = capsys.readouterr().out
    fields = full.difference.n_parcels
    said = f"rf@1 − ri@1: mean miou over 2 seeds, paired over {fields} test fields of 1 scenario\n"
    assert said in printed
    assert f"{full.difference.estimate:+7.3f}" in printed
    errors = [
        ({}, "the run has no one-crop scenario to compare by iou: compare its scenarios by miou"),
        (
            {"a": Arm("rf", 1.0, ("nl-*",))},
            f"scenario {SCENARIO} maps crop types: compare it by miou",
        ),
        ({"metric": "miou", "timesteps": 2}, "crop-type runs keep their full-season maps only"),
        ({"metric": "kappa"}, "unknown metric 'kappa'"),
    ]
    for change, problem in errors:
        options = {"a": Arm("rf"), "b": Arm("ri"), **change}
        with pytest.raises(SarcropError, match=re.escape(problem)):
            compare_methods(run, options.pop("a"), options.pop("b"), **options)
