"""One evaluation seen parcel by parcel: bootstrap intervals and the fields behind the errors.

The IoU of a split is pooled over its pixels, but a test location of a few hundred metres holds a
few dozen fields, and a field is recognised or missed as a whole. So an evaluation also reports
its metrics' 95 % intervals from a bootstrap over the split's parcels
(:mod:`sarcrop.evaluation.bootstrap`; the same parcels, draws and level as an experiment's
``intervals.csv``) and a score per parcel: which class it is, how many labelled pixels it has, the
share of them the model gave the right class, what it gave most, and in which patches it lies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sarcrop.data.parcels import UNLABELLED, parcel_classes, store_labels, store_parcels
from sarcrop.evaluation.bootstrap import (
    MIN_PARCELS,
    Interval,
    class_bootstrap,
    parcel_bootstrap,
)
from sarcrop.evaluation.metrics import METRICS

if TYPE_CHECKING:
    from sarcrop.data.dataset import PatchDataset

LEVEL = 0.95
"""The level of every interval of an evaluation."""


@dataclass(frozen=True)
class ParcelScore:
    """How the model did on one parcel (a connected field of one class in the store's labels)."""

    parcel: int  # its id in :func:`sarcrop.data.parcels.store_parcels`
    crop: str  # its class in the store's legend
    pixels: int  # its labelled pixels in the evaluated patches
    correct: float  # share of them given its own target (the positive class or not; its class)
    predicted: str  # the target most of its pixels were given
    patches: tuple[int, ...]  # store indices of the evaluated patches it lies in

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["patches"] = list(self.patches)
        return record


NO_PREDICTION = -1
"""A pixel a model gave no class (a forest's input had no data there): left out, as in the
metrics."""


@dataclass(frozen=True)
class SplitTruth:
    """What a split's pixels are: targets ``(n, P, P)``, parcel ids (-1 where no metric counts
    the pixel), store classes, and the names of a model's outputs. Read once, it scores any
    number of predictions of the split."""

    patches: list[int]
    target: np.ndarray
    parcels: np.ndarray
    labels: np.ndarray
    classes: list[str]  # the store's legend
    targets: list[str]  # the model's outputs: ("other", "maize") or its target classes

    @classmethod
    def of(cls, dataset: PatchDataset) -> SplitTruth:
        """The truth of every item of ``dataset``, read from its labels alone."""
        store, patches = dataset.store, list(dataset.indices)
        size = store.patch_size
        truth = [dataset.target(i) for i in range(len(dataset))]
        target = np.stack([t for t, _ in truth]) if truth else np.zeros((0, size, size))
        valid = np.stack([v for _, v in truth]) if truth else np.zeros((0, size, size), bool)
        labels = store_labels(store)
        names = dataset.target_classes
        return cls(
            patches=patches,
            target=target.astype(np.int64),
            parcels=np.where(valid, store_parcels(store, labels=labels)[patches], UNLABELLED),
            labels=labels[patches].astype(np.int64),
            classes=list(store.classes),
            targets=["other", "+".join(dataset.positive)] if names is None else list(names),
        )

    def scored(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``predicted`` as target indices, and the parcel ids of the pixels it scores."""
        predicted = np.asarray(predicted, dtype=np.int64).reshape(self.target.shape)
        ids = np.where(predicted != NO_PREDICTION, self.parcels, UNLABELLED)
        return np.where(ids >= 0, predicted, 0), ids

    def scores(self, predicted: np.ndarray) -> list[ParcelScore]:
        """The score of every parcel with a scored pixel."""
        predicted, ids = self.scored(predicted)
        inside = ids >= 0
        parcel, given = ids[inside], predicted[inside]
        k = len(self.targets)
        pixels = np.bincount(parcel)
        correct = np.bincount(parcel, weights=given == self.target[inside])
        most = np.bincount(parcel * k + given, minlength=pixels.size * k).reshape(-1, k)
        crop = parcel_classes(ids, self.labels)
        where: dict[int, list[int]] = {}
        for index, patch_ids in zip(self.patches, ids, strict=True):
            for p in np.unique(patch_ids[patch_ids >= 0]).tolist():
                where.setdefault(p, []).append(index)
        return [
            ParcelScore(
                parcel=int(p),
                crop=self.classes[int(crop[p])],
                pixels=int(pixels[p]),
                correct=float(correct[p] / pixels[p]),
                predicted=self.targets[int(most[p].argmax())],
                patches=tuple(where[int(p)]),
            )
            for p in np.flatnonzero(pixels)
        ]


def evaluation_by_parcel(
    dataset: PatchDataset,
    predicted: np.ndarray,
    early: Mapping[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The entries ``interval_level``, ``intervals`` and ``parcels`` of an evaluation.

    ``predicted`` holds the target index ``(n, P, P)`` given to every pixel of each item of
    ``dataset`` (0/1 for a binary model, the class for a crop-type one; :data:`NO_PREDICTION`
    where there is none). Binary: IoU, precision, recall and F1 of the positive class; crop
    types: the IoU of each class and the mIoU. Parcels are joined across patches as in the
    experiments' intervals; without labelled pixels there are no intervals and no parcels.

    ``early`` (a binary model's maps at each number of observed composites ``t``) adds
    ``early_season_intervals``, the IoU's interval at each ``t`` on the same parcels: an
    early-season map rests on as few fields as the full-season one.
    """
    truth = SplitTruth.of(dataset)
    given, ids = truth.scored(predicted)
    record: dict[str, Any] = {"interval_level": LEVEL, "intervals": {}, "parcels": []}
    if early is not None:
        record["early_season_intervals"] = {}
    if not np.any(ids >= 0):
        return record
    if dataset.target_classes is None:
        crop = truth.targets[1]
        behind = {metric: (crop, class_parcels(truth.target, ids, 1)) for metric in METRICS}
        intervals = {
            metric: parcel_bootstrap(given, truth.target, ids, metric=metric, level=LEVEL)
            for metric in METRICS
        }
    else:
        intervals = class_bootstrap(given, truth.target, ids, truth.targets, level=LEVEL)
        behind = {
            name: (name, class_parcels(truth.target, ids, j))
            for j, name in enumerate(truth.targets)
        }
    record["intervals"] = {
        name: interval_record(interval, *behind.get(name, ("", interval.n_parcels)))
        for name, interval in intervals.items()
    }
    record["parcels"] = [score.as_dict() for score in truth.scores(predicted)]
    for t, maps in (early or {}).items():
        given_t, ids_t = truth.scored(maps)
        interval = parcel_bootstrap(given_t, truth.target, ids_t, metric="iou", level=LEVEL)
        crop_parcels = class_parcels(truth.target, ids_t, 1)
        record["early_season_intervals"][t] = interval_record(
            interval, truth.targets[1], crop_parcels
        )
    return record


def class_parcels(target: np.ndarray, ids: np.ndarray, value: int) -> int:
    """How many scored parcels hold target class ``value``."""
    return int(np.unique(ids[(ids >= 0) & (target == value)]).size)


def interval_record(interval: Interval, name: str, parcels: int) -> dict[str, Any]:
    """``interval`` as a record; one resting on fewer than :data:`MIN_PARCELS` parcels of its
    class ``name`` (``""``: all parcels, the mIoU) is undefined: no bounds, and why
    (``undefined``, ``class_parcels``)."""
    record: dict[str, Any] = interval.as_dict()
    if parcels >= MIN_PARCELS:
        return record
    what = f"{name} lies in" if name else "the scores rest on"
    record.update(
        low=None,
        high=None,
        class_parcels=parcels,
        undefined=f"{what} {parcels} test parcel{'' if parcels == 1 else 's'}: an interval "
        f"over parcels needs at least {MIN_PARCELS}",
    )
    return record
