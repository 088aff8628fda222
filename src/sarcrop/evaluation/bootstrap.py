"""Confidence intervals from a bootstrap over parcels, not pixels.

Pixels of one field are not independent samples: a field is recognised or missed as a whole, so
a test location with ~20 fields carries the information of ~20 samples, not of 4000 pixels.
:func:`parcel_bootstrap` resamples parcels with replacement, sums their confusion counts per
draw and takes percentile intervals of the metric. Metrics are those of
:class:`~sarcrop.evaluation.metrics.BinaryConfusion` (the positive class, pooled over pixels),
so the point estimate is exactly the metric reported elsewhere.

Given several seeds' predictions of one test set, it does the same for their mean: every seed
sees the same parcel draw, so the interval reflects the test set's uncertainty once, not once
per seed. :func:`paired_difference` compares two methods the same way: both are scored on the
same draws and the interval is that of their per-draw difference; :func:`pooled_difference`
does it over several test sets at once (several locations, or one split at random in several
ways), drawing a field that several test sets hold once for all of them, for the same reason:
a field is one sample however many test sets score it.

Crop-type maps are scored the same way by :func:`class_bootstrap`: each parcel's ``K × K``
confusion counts are resampled, and each draw is scored by
:class:`~sarcrop.evaluation.metrics.MulticlassConfusion` (IoU per class and mIoU).

Fields are resampled as if independent. Neighbouring fields are not (two maps err on them
together), so on one contiguous test area a paired interval covers less than its level: 78-84 %
for 95 % intervals over 15-54 simulated fields (``benchmarks/bootstrap_coverage.py``,
docs/results.md).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sarcrop.evaluation.metrics import (
    METRICS,
    BinaryConfusion,
    EvaluationInputError,
    MulticlassConfusion,
)

DRAW_CELLS = 2_000_000
"""Draws × parcels resampled at a time (bounds memory for large test sets)."""

MIOU = "miou"
"""The mean IoU of crop-type maps: the key among :func:`class_bootstrap`'s intervals, and the
metric of crop-type comparisons."""

_Score = Callable[[np.ndarray], np.ndarray]
"""Scores ``(...)`` of summed parcel counts ``(..., c)``."""


@dataclass(frozen=True)
class Interval:
    """A metric's point estimate and its bootstrap interval over ``n_parcels`` parcels."""

    estimate: float
    low: float
    high: float
    n_parcels: int

    @property
    def width(self) -> float:
        return self.high - self.low

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.n_parcels} parcels)"


def parcel_confusions(
    pred: np.ndarray, target: np.ndarray, parcels: np.ndarray, *, threshold: float = 0.5
) -> np.ndarray:
    """Counts ``(k, 4)`` as (tp, fp, fn, tn) of each parcel, in the order of its id.

    Pixels with parcel id -1 are ignored; ``pred`` and ``target`` follow
    :meth:`BinaryConfusion.update` (0/1 or probabilities; targets 0/1 on parcel pixels).
    """
    pred, target, parcels = np.asarray(pred), np.asarray(target), np.asarray(parcels)
    inside = parcels >= 0
    # Validates shapes and values with the same rules (and messages) as every evaluation.
    BinaryConfusion().update(pred, target, inside, threshold=threshold)
    _, parcel = np.unique(parcels[inside], return_inverse=True)
    p = pred[inside]
    positive = p >= threshold if p.dtype.kind == "f" else p.astype(bool)
    code = 4 * parcel.ravel() + 2 * positive + target[inside].astype(np.int64)
    counts = np.bincount(code, minlength=4 * (int(parcel.max(initial=-1)) + 1)).reshape(-1, 4)
    return counts[:, [3, 2, 1, 0]]  # codes 0..3 are tn, fn, fp, tp


def parcel_bootstrap(
    pred: np.ndarray | Sequence[np.ndarray],
    target: np.ndarray,
    parcels: np.ndarray,
    *,
    metric: str = "iou",
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float = 0.5,
) -> Interval:
    """``metric`` of the positive class with a percentile interval from resampled parcels.

    ``pred`` is one prediction (an array) or a sequence of predictions of the same test set
    (e.g. one per seed): each draw picks one multiset of parcels and scores every prediction
    on it, and the estimate and interval are those of the per-draw mean. Undefined metrics
    (nan, e.g. precision without predicted positives) are left out of means and percentiles.
    """
    _check(metric, n, level)
    counts = _counts(pred, target, parcels, threshold)
    [(estimate, drawn)] = _joint_draws([([counts], lambda t: _scores(t, metric))], n, seed)
    return Interval(float(estimate[0]), *_percentiles(drawn[0], level), counts.shape[1])


@dataclass(frozen=True)
class Difference(Interval):
    """A paired difference A − B with its interval, the share of draws where A > B, and the
    two means it is the difference of."""

    p_above: float
    mean_a: float = float("nan")
    mean_b: float = float("nan")

    def __str__(self) -> str:
        return f"{super().__str__()}, A > B in {100 * self.p_above:.1f} % of draws"


def paired_difference(
    pred_a: np.ndarray | Sequence[np.ndarray],
    pred_b: np.ndarray | Sequence[np.ndarray],
    target: np.ndarray,
    parcels: np.ndarray,
    *,
    metric: str = "iou",
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float | tuple[float, float] = 0.5,
) -> Difference:
    """Mean ``metric`` of A minus that of B, both scored on the same parcel draws.

    Two methods tested on the same parcels share the luck of the draw (a test set whose maize
    is easy is easy for both), so their unpaired intervals overlap even where one is better on
    every draw; the interval of the per-draw difference removes that shared part. ``pred_a``
    and ``pred_b`` are each one prediction or several (seeds, averaged per draw as in
    :func:`parcel_bootstrap`); ``threshold`` is one for both or (A's, B's). ``p_above`` is the
    share of draws, among those where both are defined, in which A scores above B.
    """
    test_set = PairedTestSet(pred_a, pred_b, target, parcels)
    return pooled_difference(
        [test_set], metric=metric, n=n, seed=seed, level=level, threshold=threshold
    )


@dataclass(frozen=True)
class PairedTestSet:
    """One test set of a paired comparison: A's and B's predictions of it (each one array or
    one per seed), its targets and its parcel ids; ``classes`` names a crop-type test set's
    classes (class-index targets, maps scored by their mIoU, :data:`MIOU`). ``fields`` gives
    each of its parcels (in the order of their ids) the id of the physical field it lies in,
    shared by test sets over the same ground (:func:`sarcrop.data.parcels.ground_fields`);
    None: ground of its own."""

    pred_a: np.ndarray | Sequence[np.ndarray]
    pred_b: np.ndarray | Sequence[np.ndarray]
    target: np.ndarray
    parcels: np.ndarray
    classes: tuple[str, ...] | None = None
    fields: np.ndarray | None = None


def pooled_difference(
    test_sets: Sequence[PairedTestSet],
    *,
    metric: str = "iou",
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float | tuple[float, float] = 0.5,
) -> Difference:
    """:func:`paired_difference` over several test sets (e.g. several test locations), each
    weighing the same: the difference of A's and B's means over the test sets, A and B scored
    on the same draws. Each draw resamples the fields of each stretch of ground once: test sets
    that share fields (``fields``; e.g. one location split at random in several ways, or its
    patch split beside the whole location) are drawn together from the fields they hold between
    them, with the bootstrap seed ``seed + i`` of the first of them (test set i); every other
    test set is drawn from its own parcels alone. ``n_parcels`` counts each field once.
    Crop-type test sets (with ``classes``) are compared by their mIoU (``metric=MIOU``;
    ``threshold`` unused: each pixel's class is its highest score)."""
    check_compared(metric)
    _check("iou" if metric == MIOU else metric, n, level)
    if not test_sets:
        raise EvaluationInputError("a pooled difference needs at least one test set")
    a, b = _threshold_pair(threshold)
    counted = [_paired_counts(test_set, metric, (a, b)) for test_set in test_sets]
    fields = _field_ids(test_sets, [groups[0].shape[1] for groups, _ in counted])
    estimates: dict[int, np.ndarray] = {}
    draws: dict[int, np.ndarray] = {}
    parcels = 0
    for members in _strata(fields):
        columns, width = _columns([fields[i] for i in members])
        shared = [
            ([_onto(g, where, width) for g in counted[i][0]], counted[i][1])
            for i, where in zip(members, columns, strict=True)
        ]
        for i, (estimate, drawn) in zip(
            members, _joint_draws(shared, n, seed + members[0]), strict=True
        ):
            estimates[i], draws[i] = estimate, drawn
        parcels += width
    order = range(len(test_sets))
    mean_a, mean_b = _nanmean(np.stack([estimates[i] for i in order]), axis=0)
    mean_draws = _nanmean(np.stack([draws[i] for i in order]), axis=0)
    return _difference((mean_a, mean_b), mean_draws[0] - mean_draws[1], parcels, level)


def _threshold_pair(threshold: Any) -> tuple[Any, Any]:
    """(A's, B's) thresholds from one for both or a pair; one may be any real scalar (a NumPy
    one too, as a threshold read from an array is), passed on as it is."""
    if isinstance(threshold, numbers.Real) or np.ndim(threshold) == 0:
        return threshold, threshold
    if len(threshold) != 2:
        raise EvaluationInputError(f"threshold: one number or (A's, B's), got {threshold!r}")
    return threshold[0], threshold[1]


def _field_ids(test_sets: Sequence[PairedTestSet], sizes: Sequence[int]) -> list[np.ndarray]:
    """Each test set's field ids, one per parcel: its ``fields`` (checked), or where it has
    none, ids of its own that no other test set holds."""
    given = [np.asarray(t.fields, np.int64) for t in test_sets if t.fields is not None]
    fresh = 1 + max((int(ids.max()) for ids in given if ids.size), default=-1)
    out = []
    for test_set, size in zip(test_sets, sizes, strict=True):
        if test_set.fields is None:
            out.append(np.arange(fresh, fresh + size))
            fresh += size
            continue
        ids = np.asarray(test_set.fields, np.int64)
        if ids.shape != (size,):
            raise EvaluationInputError(
                f"fields: one id per parcel expected ({size}), got shape {ids.shape}"
            )
        out.append(ids)
    return out


def _strata(fields: Sequence[np.ndarray]) -> list[list[int]]:
    """Test sets linked by shared fields, each group in test-set order, groups in the order
    of their first test set."""
    group = list(range(len(fields)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    holder: dict[int, int] = {}
    for i, ids in enumerate(fields):
        for field in ids.tolist():
            first, second = sorted((root(i), root(holder.setdefault(field, i))))
            group[second] = first
    strata: dict[int, list[int]] = {}
    for i in range(len(fields)):
        strata.setdefault(root(i), []).append(i)
    return list(strata.values())


def _columns(fields: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Each test set's parcels as columns of its group's fields (in order of first
    appearance), and the number of fields."""
    seen: dict[int, int] = {}
    columns = []
    for ids in fields:
        columns.append(np.array([seen.setdefault(f, len(seen)) for f in ids.tolist()], np.int64))
    return columns, len(seen)


def _onto(counts: np.ndarray, columns: np.ndarray, width: int) -> np.ndarray:
    """Counts ``(seeds, k, c)`` of ``k`` parcels summed into ``width`` fields."""
    if columns.size == width and np.array_equal(columns, np.arange(width)):
        return counts
    into = np.eye(width, dtype=counts.dtype)[columns]  # (k, width): parcel → its field
    return np.einsum("skc,kw->swc", counts, into)


def _joint_draws(
    members: Sequence[tuple[Sequence[np.ndarray], _Score]], n: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each member's estimates ``(g,)`` and per-draw values ``(g, n)`` of the means over
    predictions of its ``g`` groups of counts (e.g. A's and B's), each member scored by its own
    score, every group (over the same fields) on the same ``n`` draws."""
    totals = iter(_shared_totals([g for groups, _ in members for g in groups], n, seed))
    out = []
    for groups, score in members:
        full = [_nanmean(score(g.sum(axis=1))) for g in groups]
        drawn = [_nanmean(score(next(totals)), axis=0) for _ in groups]
        out.append((np.array(full), np.stack(drawn)))
    return out


def _difference(
    means: tuple[float, float], differences: np.ndarray, parcels: int, level: float
) -> Difference:
    """A :class:`Difference` of the means (A's, B's) and its per-draw values (nan: undefined)."""
    defined = differences[np.isfinite(differences)]
    p_above = float(np.mean(defined > 0)) if defined.size else float("nan")
    low, high = _percentiles(differences, level)
    a, b = (float(mean) for mean in means)
    return Difference(a - b, low, high, parcels, p_above, a, b)


def _paired_counts(
    test_set: PairedTestSet, metric: str, thresholds: tuple[float, float]
) -> tuple[list[np.ndarray], _Score]:
    """A's and B's parcel counts of one test set, and what scores their sums by ``metric``."""
    target, parcels, classes = test_set.target, test_set.parcels, test_set.classes
    if (metric == MIOU) != (classes is not None):
        kind = "crop-type maps (with classes) are" if metric == MIOU else "one crop's maps are"
        other = "one-crop" if metric == MIOU else "crop-type"
        raise EvaluationInputError(f"metric {metric!r}: {kind} scored by it, not {other} maps")
    if classes is not None:
        groups = [
            _class_counts(p, target, parcels, classes) for p in (test_set.pred_a, test_set.pred_b)
        ]
        held = _parcels_of_each_class(groups[0], len(classes)) > 0
        return groups, lambda totals: _class_scores(totals, classes, held)[..., -1]
    groups = [
        _counts(pred, target, parcels, threshold)
        for pred, threshold in zip((test_set.pred_a, test_set.pred_b), thresholds, strict=True)
    ]
    return groups, lambda totals: _scores(totals, metric)


def check_compared(metric: str) -> None:
    """A metric two methods can be compared by: one of the crop's, or the mIoU of crop types."""
    if metric not in (*METRICS, MIOU):
        raise EvaluationInputError(
            f"unknown metric {metric!r} (one crop: {', '.join(METRICS)}; crop types: {MIOU})"
        )


def _check(metric: str, n: int, level: float) -> None:
    if metric not in METRICS:
        raise EvaluationInputError(f"unknown metric {metric!r} (use {', '.join(METRICS)})")
    if not 0 < level < 1 or n < 1:
        raise EvaluationInputError(f"bootstrap needs 0 < level < 1 and n ≥ 1 (got {level}, {n})")


def _counts(
    pred: np.ndarray | Sequence[np.ndarray],
    target: np.ndarray,
    parcels: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """Parcel counts ``(predictions, k, 4)`` of one prediction or a sequence of them."""
    preds = [pred] if isinstance(pred, np.ndarray) else list(pred)
    if not preds:
        raise EvaluationInputError("bootstrap needs at least one prediction")
    counts = np.stack([parcel_confusions(p, target, parcels, threshold=threshold) for p in preds])
    if counts.shape[1] == 0:
        raise EvaluationInputError("no labelled parcels to bootstrap")
    return counts


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite draws (nan without any)."""
    if not np.isfinite(draws).any():
        return float("nan"), float("nan")
    tail = 50 * (1 - level)
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_totals(counts: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Summed counts ``(seeds, n, c)`` of ``n`` draws of ``k`` parcels with replacement
    (``counts`` is ``(seeds, k, c)``)."""
    return _shared_totals([counts], n, seed)[0]


def _shared_totals(groups: Sequence[np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    """:func:`_resampled_totals` of several count arrays ``(seeds, k, c)`` over the same ``k``
    parcels, all on the same ``n`` draws."""
    rng = np.random.default_rng(seed)
    k = groups[0].shape[1]
    step = max(1, DRAW_CELLS // k)
    totals: list[list[np.ndarray]] = [[] for _ in groups]
    for start in range(0, n, step):
        # How often each parcel is drawn: the multinomial equals k uniform draws.
        times = rng.multinomial(k, np.full(k, 1 / k), size=min(step, n - start))
        for out, counts in zip(totals, groups, strict=True):
            out.append(np.einsum("dk,skc->sdc", times, counts))
    return [np.concatenate(parts, axis=1) for parts in totals]


def parcel_class_confusions(
    pred: np.ndarray, target: np.ndarray, parcels: np.ndarray, classes: Sequence[str]
) -> np.ndarray:
    """Confusion matrices ``(k, K, K)`` (``[truth, predicted]``) of each parcel, in the order
    of its id.

    ``pred`` holds class indices or scores ``(N, K, ...)`` (argmax taken), ``target`` class
    indices; pixels with parcel id -1 are ignored.
    """
    pred, target, parcels = np.asarray(pred), np.asarray(target), np.asarray(parcels)
    size = len(classes)
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(axis=1)
    inside = parcels >= 0
    # Validates shapes and class indices with the rules (and messages) of every evaluation.
    MulticlassConfusion(list(classes)).update(pred, target, inside)
    _, parcel = np.unique(parcels[inside], return_inverse=True)
    cells = target[inside].astype(np.int64) * size + pred[inside].astype(np.int64)
    code = parcel.ravel() * size * size + cells
    count = int(parcel.max(initial=-1)) + 1
    return np.bincount(code, minlength=count * size * size).reshape(count, size, size)


MIN_PARCELS = 2
"""Parcels of a class below which its interval is undefined: the draws without its one parcel
are undefined and left out, and those with it repeat one value, a zero-width interval that
would look exact."""


def class_bootstrap(
    pred: np.ndarray | Sequence[np.ndarray],
    target: np.ndarray,
    parcels: np.ndarray,
    classes: Sequence[str],
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """IoU of each class and the mIoU (key :data:`MIOU`) with percentile intervals from
    resampled parcels.

    As :func:`parcel_bootstrap`: ``pred`` is one prediction or several of the same test set
    (seeds), every prediction is scored on the same draws and the estimate and interval are
    those of the per-draw mean; undefined values (a class a draw lacks) are left out. A class
    in fewer than :data:`MIN_PARCELS` parcels has no interval (NaN bounds): its draws repeat
    one parcel's value, which would look exact.
    """
    _check("iou", n, level)
    if MIOU in classes:  # its interval would overwrite the mIoU's, or be overwritten
        raise EvaluationInputError(
            f"a class named {MIOU!r} clashes with the mIoU's key in class intervals: rename it"
        )
    counts = _class_counts(pred, target, parcels, classes)
    size = len(classes)
    parcels_of = _parcels_of_each_class(counts, size)
    held = parcels_of > 0
    full = _nanmean(_class_scores(counts.sum(axis=1), classes, held), axis=0)
    drawn = _nanmean(_class_scores(_resampled_totals(counts, n, seed), classes, held), axis=0)
    out = {}
    for j, name in enumerate([*classes, MIOU]):
        low, high = _percentiles(drawn[..., j], level)
        if j < size and parcels_of[j] < MIN_PARCELS:
            low = high = math.nan
        out[name] = Interval(float(full[j]), low, high, counts.shape[1])
    return out


def paired_class_difference(
    pred_a: np.ndarray | Sequence[np.ndarray],
    pred_b: np.ndarray | Sequence[np.ndarray],
    target: np.ndarray,
    parcels: np.ndarray,
    classes: Sequence[str],
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Difference:
    """Mean mIoU of A minus that of B, both scored on the same parcel draws: what
    :func:`paired_difference` is to one crop, for crop types (predictions as in
    :func:`class_bootstrap`)."""
    test_set = PairedTestSet(pred_a, pred_b, target, parcels, tuple(classes))
    return pooled_difference([test_set], metric=MIOU, n=n, seed=seed, level=level)


def _class_counts(
    pred: np.ndarray | Sequence[np.ndarray],
    target: np.ndarray,
    parcels: np.ndarray,
    classes: Sequence[str],
) -> np.ndarray:
    """Flattened parcel confusion matrices ``(predictions, k, K * K)`` of one prediction or
    a sequence of them."""
    preds = [pred] if isinstance(pred, np.ndarray) else list(pred)
    if not preds:
        raise EvaluationInputError("bootstrap needs at least one prediction")
    size = len(classes)
    counts = np.stack(
        [
            parcel_class_confusions(p, target, parcels, classes).reshape(-1, size * size)
            for p in preds
        ]
    )
    if counts.shape[1] == 0:
        raise EvaluationInputError("no labelled parcels to bootstrap")
    return counts


def _class_scores(
    totals: np.ndarray, classes: Sequence[str], held: np.ndarray | None = None
) -> np.ndarray:
    """IoU of each class and the mIoU ``(..., K + 1)`` of each row of flattened ``K × K``
    counts, by :class:`MulticlassConfusion` itself. A class the test set holds (``held``) and a
    draw does not is undefined in that draw, and out of its mIoU, as for one crop
    (:func:`_scores`): its IoU would be 0 wherever the map predicts it."""
    size = len(classes)
    flat = totals.reshape(-1, size, size)
    values = []
    for matrix in flat:
        iou = MulticlassConfusion(list(classes), matrix).iou
        if held is not None:
            iou = np.where(held & (matrix.sum(axis=1) == 0), np.nan, iou)  # rows: truth
        values.append([*iou, _nanmean(iou) if np.isfinite(iou).any() else math.nan])
    return np.asarray(values, dtype=np.float64).reshape(*totals.shape[:-1], size + 1)


def _parcels_of_each_class(counts: np.ndarray, size: int) -> np.ndarray:
    """How many parcels of the test set of counts ``(predictions, k, K * K)`` hold each class
    (rows: truth)."""
    return (counts[0].reshape(-1, size, size).sum(axis=2) > 0).sum(axis=0)


def _scores(totals: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of each row of (tp, fp, fn, tn) counts, by :class:`BinaryConfusion` itself;
    undefined (nan) in a row without a pixel of the crop in its reference: a draw of fields
    none of which holds the crop would score IoU, precision and F1 0 whatever the map, and
    pull every lower bound to 0 (recall was undefined there already)."""
    flat = totals.reshape(-1, 4).tolist()
    values = [getattr(BinaryConfusion(*row), metric) for row in flat]
    scores = np.asarray(values, dtype=np.float64).reshape(totals.shape[:-1])
    return np.where(totals[..., 0] + totals[..., 2] > 0, scores, np.nan)


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan slices stay nan
        return np.nanmean(values, axis=axis)
