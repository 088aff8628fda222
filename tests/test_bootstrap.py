"""Parcel bootstrap: intervals over fields, not pixels, with the evaluation's own metrics."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from sarcrop.evaluation import bootstrap
from sarcrop.evaluation.bootstrap import (
    Difference,
    Interval,
    PairedTestSet,
    paired_difference,
    parcel_bootstrap,
    parcel_confusions,
    pooled_difference,
)
from sarcrop.evaluation.metrics import METRICS, BinaryConfusion, EvaluationInputError


def simulate(
    rng: np.random.Generator,
    n_parcels: int,
    *,
    share: float = 0.4,
    hit: tuple[float, float] = (8.0, 2.0),
    false_alarm: tuple[float, float] = (1.0, 9.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels ``(pred, target, parcel)`` of fields with their own accuracy.

    A field is positive with probability ``share``; a positive field's pixels are found with
    its own rate ~ Beta(hit), a negative field's pixels are false alarms at its own rate
    ~ Beta(false_alarm). Field sizes are 20-200 pixels.
    """
    sizes = rng.integers(20, 201, n_parcels)
    positive = rng.random(n_parcels) < share
    rate = np.where(positive, rng.beta(*hit, n_parcels), rng.beta(*false_alarm, n_parcels))
    parcel = np.repeat(np.arange(n_parcels), sizes)
    target = np.repeat(positive, sizes).astype(np.uint8)
    pred = (rng.random(parcel.size) < np.repeat(rate, sizes)).astype(np.uint8)
    return pred, target, parcel


def true_iou(share: float, hit: tuple[float, float], false_alarm: tuple[float, float]) -> float:
    """The population IoU of :func:`simulate` (sizes independent of everything else)."""
    found = hit[0] / sum(hit)
    alarms = false_alarm[0] / sum(false_alarm)
    return share * found / (share + (1 - share) * alarms)


def test_counts_per_parcel_add_up_to_the_pixel_confusion() -> None:
    target = np.array([[1, 1, 0, 0], [1, 0, 0, 9]])
    pred = np.array([[1, 0, 1, 0], [1, 0, 0, 1]])
    parcels = np.array([[5, 5, 7, 7], [5, 2, 2, -1]])  # -1: unlabelled (target 9 ignored)
    counts = parcel_confusions(pred, target, parcels)
    # ids 2, 5, 7 in order; columns tp, fp, fn, tn
    assert counts.tolist() == [[0, 0, 0, 2], [2, 0, 1, 0], [0, 1, 0, 1]]
    pixel = BinaryConfusion().update(pred, target, parcels >= 0)
    assert counts.sum(axis=0).tolist() == [pixel.tp, pixel.fp, pixel.fn, pixel.tn]
    probabilities = np.where(pred == 1, 0.7, 0.2)
    assert np.array_equal(parcel_confusions(probabilities, target, parcels), counts)
    with pytest.raises(EvaluationInputError, match="does not match"):
        parcel_confusions(pred[:, :3], target, parcels)


@pytest.mark.parametrize("metric", METRICS)
def test_estimate_is_the_evaluation_metric(metric: str) -> None:
    pred, target, parcel = simulate(np.random.default_rng(1), 40)
    interval = parcel_bootstrap(pred, target, parcel, metric=metric, n=300)
    expected = getattr(BinaryConfusion().update(pred, target), metric)
    assert interval.estimate == pytest.approx(expected)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.n_parcels == 40


def test_perfect_prediction_gives_a_zero_width_interval_at_one() -> None:
    _, target, parcel = simulate(np.random.default_rng(2), 30)
    interval = parcel_bootstrap(target.copy(), target, parcel)
    assert interval == Interval(1.0, 1.0, 1.0, 30)
    assert interval.width == 0.0


def test_fewer_parcels_give_wider_intervals() -> None:
    rng = np.random.default_rng(3)
    widths = {
        k: np.mean([parcel_bootstrap(*simulate(rng, k), n=400).width for _ in range(5)])
        for k in (15, 60, 240)
    }
    assert widths[15] > widths[60] > widths[240]
    assert widths[15] > 2 * widths[240]  # width shrinks roughly like 1/sqrt(k)


def test_interval_is_seeded() -> None:
    pred, target, parcel = simulate(np.random.default_rng(4), 25)
    first = parcel_bootstrap(pred, target, parcel, seed=7)
    assert parcel_bootstrap(pred, target, parcel, seed=7) == first
    assert parcel_bootstrap(pred, target, parcel, seed=8) != first


def test_coverage_of_the_true_iou() -> None:
    """The 95 % interval covers the population IoU in about 95 % of repeated test sets."""
    rng = np.random.default_rng(5)
    truth = true_iou(0.4, (8.0, 2.0), (1.0, 9.0))
    covered = 0
    for rep in range(200):
        interval = parcel_bootstrap(*simulate(rng, 60), n=500, seed=rep)
        covered += interval.low <= truth <= interval.high
    assert 0.90 * 200 <= covered <= 0.99 * 200, covered


def test_pixel_bootstrap_would_be_overconfident() -> None:
    """Every pixel its own parcel: far narrower than the parcel interval on the same data."""
    pred, target, parcel = simulate(np.random.default_rng(6), 20)
    by_parcel = parcel_bootstrap(pred, target, parcel)
    by_pixel = parcel_bootstrap(pred, target, np.arange(parcel.size))
    assert by_pixel.estimate == by_parcel.estimate
    assert by_pixel.width < by_parcel.width / 2


def test_pooled_seeds_share_each_parcel_draw() -> None:
    rng = np.random.default_rng(7)
    pred, target, parcel = simulate(rng, 30)
    single = parcel_bootstrap(pred, target, parcel, seed=3)
    # The same prediction three times: identical draws give exactly the single interval
    # (independent draws per seed would shrink it).
    tripled = parcel_bootstrap([pred] * 3, target, parcel, seed=3)
    assert tripled.as_dict() == pytest.approx(single.as_dict(), rel=1e-12)

    other = np.where(rng.random(pred.size) < 0.1, 1 - pred, pred)
    pooled = parcel_bootstrap([pred, other], target, parcel, seed=3)
    estimates = [BinaryConfusion().update(p, target).iou for p in (pred, other)]
    assert pooled.estimate == pytest.approx(np.mean(estimates))
    assert pooled.low <= pooled.estimate <= pooled.high


def test_undefined_metrics_and_bad_arguments() -> None:
    target = np.array([0, 0, 1, 1])
    parcels = np.array([0, 1, 2, 3])
    nothing = parcel_bootstrap(np.zeros(4, int), target, parcels, metric="precision")
    assert math.isnan(nothing.estimate) and math.isnan(nothing.low)
    with pytest.raises(EvaluationInputError, match="unknown metric 'kappa'"):
        parcel_bootstrap(target, target, parcels, metric="kappa")
    with pytest.raises(EvaluationInputError, match="no labelled parcels"):
        parcel_bootstrap(target, target, np.full(4, -1))
    with pytest.raises(EvaluationInputError, match="0 < level < 1"):
        parcel_bootstrap(target, target, parcels, level=95)
    with pytest.raises(EvaluationInputError, match="at least one prediction"):
        parcel_bootstrap([], target, parcels)


def flip(rng: np.random.Generator, pred: np.ndarray, rate: float) -> np.ndarray:
    """``pred`` with a share ``rate`` of its pixels flipped."""
    return np.where(rng.random(pred.size) < rate, 1 - pred, pred)


def test_a_difference_carries_the_two_means_it_is_the_difference_of() -> None:
    pred, target, parcel = simulate(np.random.default_rng(9), 30)
    worse = flip(np.random.default_rng(11), pred, 0.2)
    d = paired_difference(pred, worse, target, parcel)
    assert d.mean_a == parcel_bootstrap(pred, target, parcel).estimate
    assert d.mean_b == parcel_bootstrap(worse, target, parcel).estimate
    assert d.estimate == d.mean_a - d.mean_b and d.estimate > 0


def test_paired_difference_of_identical_predictions_is_exactly_zero() -> None:
    pred, target, parcel = simulate(np.random.default_rng(9), 30)
    same = paired_difference(pred, pred.copy(), target, parcel)
    alone = parcel_bootstrap(pred, target, parcel).estimate
    assert same == Difference(0.0, 0.0, 0.0, 30, 0.0, alone, alone)
    seeds = [pred, flip(np.random.default_rng(10), pred, 0.2)]
    assert paired_difference(seeds, seeds, target, parcel).width == 0.0


def test_better_on_every_parcel_gives_an_interval_above_zero() -> None:
    rng = np.random.default_rng(11)
    _, target, parcel = simulate(rng, 12)
    worse = target.copy()
    for k in range(12):  # one wrong pixel in every parcel, the rest right
        worse[np.flatnonzero(parcel == k)[0]] ^= 1
    better = paired_difference(target, worse, target, parcel, n=500)
    assert 0 < better.low <= better.estimate <= better.high
    assert better.p_above == 1.0
    expected = 1.0 - BinaryConfusion().update(worse, target).iou
    assert better.estimate == pytest.approx(expected)


def test_paired_difference_is_antisymmetric() -> None:
    rng = np.random.default_rng(12)
    pred, target, parcel = simulate(rng, 25)
    a, b = [pred, flip(rng, pred, 0.05)], flip(rng, pred, 0.15)
    ab = paired_difference(a, b, target, parcel, seed=4)
    ba = paired_difference(b, a, target, parcel, seed=4)
    assert ab.estimate == pytest.approx(-ba.estimate)
    assert (ab.low, ab.high) == pytest.approx((-ba.high, -ba.low))
    assert ab.p_above + ba.p_above <= 1.0  # ties count for neither
    assert ab.p_above + ba.p_above == pytest.approx(1.0, abs=0.01)


def test_paired_interval_is_tighter_than_unpaired_ones_on_correlated_predictions() -> None:
    """Two methods that find the same fields: their intervals overlap, their difference does not
    straddle 0, and its interval is far narrower than the unpaired ones combined."""
    rng = np.random.default_rng(13)
    pred, target, parcel = simulate(rng, 20)
    worse = np.where((target == 1) & (rng.random(pred.size) < 0.15), 0, pred)  # misses more
    a, b = (parcel_bootstrap(p, target, parcel, seed=1) for p in (pred, worse))
    paired = paired_difference(pred, worse, target, parcel, seed=1)
    assert a.low < b.high  # the unpaired intervals overlap
    assert paired.low > 0 and paired.p_above > 0.99
    assert paired.estimate == pytest.approx(a.estimate - b.estimate)
    assert paired.width < math.hypot(a.width, b.width) / 3


def test_paired_difference_thresholds_each_side_on_its_own() -> None:
    pred, target, parcel = simulate(np.random.default_rng(14), 20)
    a = np.where(pred == 1, 0.8, 0.1)  # positive above 0.5
    b = np.where(pred == 1, 0.3, 0.1)  # positive only above 0.2
    assert paired_difference(a, b, target, parcel, threshold=(0.5, 0.2)).width == 0.0
    assert paired_difference(a, b, target, parcel, threshold=0.5).low > 0


def test_a_numpy_threshold_is_a_threshold_for_both_sides() -> None:
    """A threshold read from an array (``np.float32(0.5)``) is one number, not a pair."""
    pred, target, parcel = simulate(np.random.default_rng(14), 20)
    a = np.where(pred == 1, 0.8, 0.1).astype(np.float32)
    b = np.where(pred == 1, 0.3, 0.1).astype(np.float32)
    expected = paired_difference(a, b, target, parcel, threshold=0.5, n=50)
    for threshold in (np.float32(0.5), np.float64(0.5), np.array(0.5)):
        assert paired_difference(a, b, target, parcel, threshold=threshold, n=50) == expected
        test_set = PairedTestSet(a, b, target, parcel)
        assert pooled_difference([test_set], threshold=threshold, n=50) == expected
    pair = (np.float32(0.5), np.float32(0.2))
    assert paired_difference(a, b, target, parcel, threshold=pair, n=50).width == 0.0
    with pytest.raises(EvaluationInputError, match="one number or"):
        paired_difference(a, b, target, parcel, threshold=(0.5, 0.2, 0.1), n=50)


def test_pooled_difference_weighs_each_test_set_and_resamples_each_on_its_own() -> None:
    rng = np.random.default_rng(16)
    test_sets = []
    for n_parcels in (20, 35):
        pred, target, parcel = simulate(rng, n_parcels)
        test_sets.append(PairedTestSet(pred, flip(rng, pred, 0.1), target, parcel))
    pooled = pooled_difference(test_sets, seed=2)
    each = [paired_difference(t.pred_a, t.pred_b, t.target, t.parcels) for t in test_sets]
    assert pooled.estimate == pytest.approx(np.mean([d.estimate for d in each]))
    assert pooled.n_parcels == 55
    assert pooled_difference(test_sets[:1], seed=2) == paired_difference(
        *(getattr(test_sets[0], f) for f in ("pred_a", "pred_b", "target", "parcels")), seed=2
    )
    # Two copies of one test set, each drawn on its own: the mean's interval narrows by about
    # the square root of two (drawn alike, it would not narrow at all).
    one = pooled_difference(test_sets[:1])
    twice = pooled_difference(test_sets[:1] * 2)
    assert twice.estimate == pytest.approx(one.estimate)
    assert 0.6 * one.width < twice.width < 0.85 * one.width
    with pytest.raises(EvaluationInputError, match="at least one test set"):
        pooled_difference([])


def test_test_sets_over_the_same_fields_are_drawn_together() -> None:
    """A field shared by two test sets is drawn once for both: one test set twice over the same
    fields is the evidence of one, to the last digit; a test set over fields of its own keeps
    its own draws (seed + its index), and the parcels count each field once."""
    rng = np.random.default_rng(16)
    pred, target, parcel = simulate(rng, 20)
    first = PairedTestSet(pred, flip(rng, pred, 0.1), target, parcel, fields=np.arange(20))
    one = pooled_difference([first], seed=2)
    assert pooled_difference([first, first], seed=2) == one
    other = np.arange(100, 120)
    apart = pooled_difference([first, replace(first, fields=other)], seed=2)
    assert apart == pooled_difference([first, replace(first, fields=None)], seed=2)
    assert apart.n_parcels == 40 and apart.width < 0.85 * one.width
    # Half the parcels of a second test set lie in the first one's fields: the two are drawn
    # from the 30 fields they hold together.
    half = np.concatenate([np.arange(10), np.arange(200, 210)])
    partly = pooled_difference([first, replace(first, fields=half)], seed=2)
    assert partly.n_parcels == 30 and partly.estimate == pytest.approx(one.estimate)
    with pytest.raises(EvaluationInputError, match=r"fields: one id per parcel expected \(20\)"):
        pooled_difference([replace(first, fields=np.arange(3))])


def test_draws_in_chunks_give_the_draws_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by resampling a few draws at a time; the draws are the same."""
    pred, target, parcel = simulate(np.random.default_rng(8), 100)
    seeds = [pred, flip(np.random.default_rng(15), pred, 0.1)]
    at_once = parcel_bootstrap(seeds, target, parcel, n=1000)
    monkeypatch.setattr(bootstrap, "DRAW_CELLS", 100 * 64)  # 64 draws per chunk, the last short
    assert parcel_bootstrap(seeds, target, parcel, n=1000) == at_once


def test_draws_without_the_crop_are_undefined_not_zero():
    """A near-perfect map of 2 maize fields among 7: 8 % of draws hold no maize field, where
    IoU would be 0 whatever the map (one false pixel over no truth), and the lower bound was
    0.000 for a map that scores 0.986; those draws are undefined now, as recall's were."""
    sizes, maize = [300, 40, 200, 100, 50, 250, 60], [1, 1, 0, 0, 0, 0, 0]
    parcels = np.concatenate([np.full(s, i) for i, s in enumerate(sizes)])
    target = np.concatenate([np.full(s, m) for s, m in zip(sizes, maize, strict=True)])
    pred = target.astype(np.float32)
    for i, m in enumerate(maize):
        if not m:
            pred[np.flatnonzero(parcels == i)[0]] = 1.0  # one false pixel in each other field
    iou = bootstrap.parcel_bootstrap(pred, target, parcels, metric="iou")
    assert iou.estimate == pytest.approx(340 / 345) and iou.low > 0.8
    worse = np.where(target == 1, 0.0, pred).astype(np.float32)  # misses both maize fields
    difference = bootstrap.paired_difference(pred, worse, target, parcels)
    assert difference.low > 0.8 and difference.p_above == 1.0  # no ties at 0 from empty draws
    # Crop types alike: the class a draw lacks is out of that draw's mIoU.
    classes = ["other", "maize"]
    per_class = bootstrap.class_bootstrap((pred > 0.5).astype(np.int64), target, parcels, classes)
    assert per_class["maize"].low > 0.8 and per_class[bootstrap.MIOU].low > 0.8
