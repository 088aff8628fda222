"""One evaluation seen parcel by parcel: bootstrap intervals and the fields behind the errors.

The IoU of a split is pooled over its pixels, but a test location of a few hundred metres holds a
few dozen fields, and a field is recognised or missed as a whole. So an evaluation also reports
its metrics' 95 % intervals from a bootstrap over the split's parcels
(:mod:`sarcrop.evaluation.bootstrap`; the same parcels, draws and level as an experiment's
``intervals.csv``) and a score per parcel: which class it is, how many labelled pixels it has, the
share of them the model gave the right class, what it gave most, and in which patches it lies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sarcrop.data.parcels import UNLABELLED, parcel_classes, store_labels, store_parcels
from sarcrop.data.store import DatasetStore
from sarcrop.evaluation.bootstrap import class_bootstrap, parcel_bootstrap
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


def evaluation_by_parcel(dataset: PatchDataset, predicted: np.ndarray) -> dict[str, Any]:
    """The entries ``interval_level``, ``intervals`` and ``parcels`` of an evaluation.

    ``predicted`` holds the target index ``(n, P, P)`` given to every pixel of each item of
    ``dataset`` (0/1 for a binary model, the class for a crop-type one; :data:`NO_PREDICTION`
    where there is none). Binary: IoU, precision, recall and F1 of the positive class; crop
    types: the IoU of each class and the mIoU. Parcels are joined across patches as in the
    experiments' intervals; without labelled pixels there are no intervals and no parcels.
    """
    store, patches = dataset.store, list(dataset.indices)
    classes = dataset.target_classes
    binary = classes is None
    targets = ["other", "+".join(dataset.positive)] if classes is None else list(classes)
    truth = [dataset.target(i) for i in range(len(dataset))]
    target = np.stack([t for t, _ in truth]).astype(np.int64) if truth else np.zeros((0, 1, 1))
    valid = np.stack([v for _, v in truth]) if truth else np.zeros((0, 1, 1), dtype=bool)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(target.shape)
    ids = store_parcels(store)[patches] if patches else np.zeros((0, 1, 1), dtype=np.int64)
    ids = np.where(valid & (predicted != NO_PREDICTION), ids, UNLABELLED)
    record: dict[str, Any] = {"interval_level": LEVEL, "intervals": {}, "parcels": []}
    if not np.any(ids >= 0):
        return record
    predicted = np.where(ids >= 0, predicted, 0)
    if binary:
        intervals = {
            metric: parcel_bootstrap(predicted, target, ids, metric=metric, level=LEVEL)
            for metric in METRICS
        }
    else:
        intervals = class_bootstrap(predicted, target, ids, targets, level=LEVEL)
    labels = store_labels(store)[patches].astype(np.int64)
    scores = _scores(store, _Split(patches, labels, ids, predicted, target), targets)
    record["intervals"] = {name: interval.as_dict() for name, interval in intervals.items()}
    record["parcels"] = [score.as_dict() for score in scores]
    return record


@dataclass(frozen=True)
class _Split:
    """Evaluated patches, their labels and parcel ids, the targets given and true."""

    patches: list[int]
    labels: np.ndarray
    ids: np.ndarray
    predicted: np.ndarray
    target: np.ndarray


def _scores(store: DatasetStore, split: _Split, targets: list[str]) -> list[ParcelScore]:
    inside = split.ids >= 0
    parcel, predicted = split.ids[inside], split.predicted[inside]
    pixels = np.bincount(parcel)
    correct = np.bincount(parcel, weights=predicted == split.target[inside])
    given = np.bincount(parcel * len(targets) + predicted, minlength=pixels.size * len(targets))
    most = given.reshape(-1, len(targets)).argmax(axis=1)
    crop = parcel_classes(split.ids, split.labels)
    where: dict[int, list[int]] = {}
    for index, ids in zip(split.patches, split.ids, strict=True):
        for p in np.unique(ids[ids >= 0]).tolist():
            where.setdefault(p, []).append(index)
    return [
        ParcelScore(
            parcel=int(p),
            crop=store.classes[int(crop[p])],
            pixels=int(pixels[p]),
            correct=float(correct[p] / pixels[p]),
            predicted=targets[int(most[p])],
            patches=tuple(where[int(p)]),
        )
        for p in np.flatnonzero(pixels)
    ]
