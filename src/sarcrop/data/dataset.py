"""A plain map-style PyTorch dataset over a dataset store.

Each item is one patch::

    {"image":  float32 (T, B, P, P)  min-max normalised, NaN → 0,
     "target": float32 (P, P)        1 = positive crop, 0 = anything else,
     "valid":  bool    (P, P)        labelled pixels (loss and metrics ignore the rest),
     "index":  int                   patch index in the store}

With ``classes=[...]`` (crop-type maps) the target is instead int64 ``(P, P)``, the index of
each pixel's class in that list (0 where not valid); the name ``other`` gathers the classes not
listed, and without it their pixels are not valid (see :func:`sarcrop.data.labels.class_lookup`).
Binary (one ``positive`` class against the rest) stays the default.

Normalisation uses the store's train-split statistics unless others are given (e.g. those of a
pre-trained checkpoint, so fine-tuning sees inputs scaled as in pre-training). ``timesteps=t``
keeps the first ``t`` composites and zero-pads the rest, i.e. the early-season input of the
paper. The store is opened lazily in each process, so the dataset works with DataLoader workers.

``label_mask`` (a :class:`sarcrop.data.parcels.LabelMask`) unlabels the parcels a few-label run
may not use, before anything else sees the labels; ``augment`` flips and rotates each patch and
``level_jitter`` shifts each band of a patch by a random dB offset within ± that;
``date_dropout`` zeroes each observed composite with that chance, as an unobserved (padded)
one is, keeping at least one; of an early-season sample, which sees the first ``t``
composites only (:meth:`PatchDataset.observed_item`), one of those (training only: never
pass any of them for validation or test data).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sarcrop.data.labels import class_lookup, parse_classes, positive_indices
from sarcrop.data.normalization import Normalization, normalize
from sarcrop.data.store import DatasetStore
from sarcrop.errors import InputDataError

if TYPE_CHECKING:
    from sarcrop.data.parcels import LabelMask

Sample = dict[str, Any]


class PatchDataset(Dataset[Sample]):
    """Patches of a dataset store as normalised image time series and binary targets."""

    def __init__(
        self,
        store: DatasetStore | str | Path,
        split: str | Sequence[int] = "train",
        positive: Sequence[str] | str = ("rice",),
        bands: Sequence[str] | None = None,
        timesteps: int | None = None,
        normalization: Normalization | Mapping[str, Any] | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        augment: bool = False,
        label_mask: LabelMask | None = None,
        classes: Sequence[str] | str | None = None,
        level_jitter: float = 0.0,
        date_dropout: float = 0.0,
    ) -> None:
        self.store = DatasetStore.open(store)
        if isinstance(split, str):
            self.indices = self.store.indices(split)
        else:
            self.indices = [int(i) for i in split]
            bad = [i for i in self.indices if not 0 <= i < len(self.store)]
            if bad:
                raise InputDataError(
                    f"patch indices {bad[:5]} out of range (store has {len(self.store)})",
                    self.store.path,
                )
        # Multi-class: the target classes in output order, and store label -> target index;
        # ``positive`` then plays no part.
        self.target_classes = None if classes is None else parse_classes(classes)
        self._lookup: np.ndarray | None = None
        shown = self.store.classes_with_pixels  # an error lists these, not a whole legend
        try:  # a class the store lacks: name the store
            if self.target_classes is not None:
                self._lookup = class_lookup(self.store.classes, self.target_classes, shown)
                positive = ()
            self.positive = [positive] if isinstance(positive, str) else list(positive)
            binary = self.target_classes is None
            wanted = positive_indices(self.store.classes, self.positive, shown) if binary else []
        except InputDataError as exc:
            raise InputDataError(exc.problem, exc.path or self.store.path) from None
        self._positive_ids = np.asarray(wanted, dtype=np.int64)

        self.bands = tuple(b.upper() for b in bands) if bands else self.store.bands
        missing = [b for b in self.bands if b not in self.store.bands]
        if missing:
            raise InputDataError(
                f"store has no band(s) {', '.join(missing)} (has {', '.join(self.store.bands)})",
                self.store.path,
            )
        self._band_ids = [self.store.bands.index(b) for b in self.bands]

        steps = self.store.steps
        self.timesteps = steps if timesteps is None else int(timesteps)
        if not 1 <= self.timesteps <= steps:
            raise InputDataError(
                f"timesteps must be between 1 and {steps}, got {timesteps}", self.store.path
            )
        self.normalization = self._resolve_normalization(normalization)
        self.transform = transform
        self.augment = augment
        self.level_jitter = float(level_jitter)
        self.date_dropout = float(date_dropout)
        self.label_mask = label_mask
        if label_mask is not None and label_mask.keep.shape[0] != len(self.store):
            raise InputDataError(
                f"label mask covers {label_mask.keep.shape[0]} patches, the store has "
                f"{len(self.store)}",
                self.store.path,
            )

    def _resolve_normalization(
        self, given: Normalization | Mapping[str, Any] | None
    ) -> Normalization:
        stats = self.store.normalization if given is None else given
        if not isinstance(stats, Normalization):
            stats = Normalization.from_dict(dict(stats))
        if stats.bands is not None:
            return stats.select(self.bands)
        if len(stats.min) != len(self.bands):
            raise InputDataError(
                f"normalization has {len(stats.min)} bands, dataset uses "
                f"{len(self.bands)} ({', '.join(self.bands)})"
            )
        return stats

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> Sample:
        return self.observed_item(item, self.timesteps)

    def observed_item(self, item: int, t: int) -> Sample:
        """Item ``item`` of which only the first ``t`` composites will be seen (the rest
        zero-padded later, as early-season batches are): ``date_dropout`` keeps one of those.
        Over the whole season it is ``self[item]``, the same random draws included."""
        index = self.indices[item]
        raw, labels = self.store.read_patch(index)
        if self.label_mask is not None:
            labels = self.label_mask.apply(index, labels)
        image = np.zeros((self.store.steps, len(self.bands), *raw.shape[-2:]), dtype=np.float32)
        observed = raw[: self.timesteps, self._band_ids]
        if self.level_jitter > 0:
            observed = observed + self._level_offsets()
        image[: self.timesteps] = normalize(observed, self.normalization)
        if self.date_dropout > 0:
            image[self._dropped_dates(min(t, self.timesteps))] = 0.0
        target, valid = self._target(labels)
        sample: Sample = {
            "image": torch.from_numpy(image),
            "target": torch.from_numpy(target),
            "valid": torch.from_numpy(valid),
            "index": index,
        }
        if self.augment:
            sample = random_flip_rotate(sample)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def with_augmentation(
        self, augment: bool = False, level_jitter: float = 0.0, date_dropout: float = 0.0
    ) -> PatchDataset:
        """A copy with these training-only random changes (by default none: the patches as
        they are), sharing the store and everything else."""
        changed = copy.copy(self)
        changed.augment = augment
        changed.level_jitter = float(level_jitter)
        changed.date_dropout = float(date_dropout)
        return changed

    def _dropped_dates(self, seen: int) -> np.ndarray:
        """Steps to zero, each with chance ``date_dropout``, keeping at least one of the first
        ``seen``."""
        dropped = (torch.rand(self.timesteps) < self.date_dropout).numpy()
        first = dropped[:seen]  # a view
        if first.all():
            first[int(torch.randint(seen, ()))] = False
        return np.flatnonzero(dropped)

    def _level_offsets(self) -> np.ndarray:
        """One random dB offset per band, ``(1, bands, 1, 1)``, from torch's (per-worker seeded)
        generator; no-data (NaN) stays no-data."""
        offsets = (torch.rand(len(self.bands)) * 2 - 1) * self.level_jitter
        return offsets.numpy().astype(np.float32)[None, :, None, None]

    def _target(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float 0/1 target (binary) or int64 class indices (multi-class), and validity."""
        if self._lookup is None:
            return np.isin(labels, self._positive_ids).astype(np.float32), labels >= 0
        mapped = self._lookup[labels.astype(np.int64)]
        valid = mapped >= 0
        return np.where(valid, mapped, 0), valid

    def labels(self, item: int) -> np.ndarray:
        """Class labels of item ``item`` after the label mask (-1 = unlabelled), no image read."""
        index = self.indices[item]
        labels = np.asarray(self.store.read_labels(index))
        return labels if self.label_mask is None else self.label_mask.apply(index, labels)

    def target(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """Target and validity of item ``item``, as ``self[item]`` gives them unaugmented; no
        image read."""
        return self._target(self.labels(item))

    def class_counts(self, items: Sequence[int] | None = None) -> tuple[int, int]:
        """Labelled ``(negative, positive)`` pixels of ``items`` (default: all), unaugmented."""
        negative = positive = 0
        for item in range(len(self)) if items is None else items:
            labels = self.labels(item)
            hits = int(np.isin(labels, self._positive_ids).sum())
            positive += hits
            negative += int((labels >= 0).sum()) - hits
        return negative, positive

    def target_counts(self, items: Sequence[int] | None = None) -> np.ndarray:
        """Valid pixels per target class of ``items`` (default: all), unaugmented.

        Binary datasets count ``[negative, positive]``.
        """
        size = 2 if self.target_classes is None else len(self.target_classes)
        counts = np.zeros(size, dtype=np.int64)
        for item in range(len(self)) if items is None else items:
            target, valid = self._target(self.labels(item))
            counts += np.bincount(target[valid].astype(np.int64), minlength=size)
        return counts

    @property
    def classes(self) -> list[str]:
        """The store's class legend (the target's classes are ``target_classes``)."""
        return self.store.classes

    def __repr__(self) -> str:
        return (
            f"PatchDataset({str(self.store.path)!r}, n={len(self)}, bands={self.bands}, "
            f"timesteps={self.timesteps}/{self.store.steps}, "
            + (
                f"positive={self.positive})"
                if self.target_classes is None
                else f"classes={self.target_classes})"
            )
        )


def random_flip_rotate(sample: Sample) -> Sample:
    """Random horizontal/vertical flip and 90° rotation, the same for every time step.

    Draws from torch's generator, which DataLoader seeds per worker.
    """
    flips = torch.randint(0, 2, (2,)).tolist()
    k = int(torch.randint(0, 4, (1,)))
    out = dict(sample)
    for key in ("image", "target", "valid"):
        x = sample[key]
        if flips[0]:
            x = torch.flip(x, dims=(-1,))
        if flips[1]:
            x = torch.flip(x, dims=(-2,))
        if k:
            x = torch.rot90(x, k, dims=(-2, -1))
        out[key] = x.contiguous()
    return out
