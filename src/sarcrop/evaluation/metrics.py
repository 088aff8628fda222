"""Confusion-matrix metrics of the positive class, accumulated over a whole split.

The paper reports IoU, recall, precision and F1 *of the positive class* (Tables 1-4) computed
over every labelled pixel of the test split, not averaged per patch: small patches with a few
positives would otherwise weigh as much as large ones. :class:`BinaryConfusion` therefore keeps
integer counts and derives every metric from the totals.

Works with NumPy arrays and PyTorch tensors (on any device); counts are exact int64 sums.

Crop-type maps (several classes) use :class:`MulticlassConfusion`, one ``K × K`` matrix over the
split, from which per-class IoU/precision/recall/F1 and the overall mIoU, overall accuracy and
Cohen's kappa follow; a binary model's metrics are untouched by it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarcrop.errors import InputDataError
from sarcrop.utils.atomic import write_text_atomic

METRICS = ("iou", "precision", "recall", "f1")
"""Metric names of the positive class, as used in result tables and JSON files."""

OVERALL_METRICS = ("miou", "accuracy", "kappa")
"""Whole-map metrics of a multi-class confusion (per-class ones use :data:`METRICS`)."""


class EvaluationInputError(InputDataError, ValueError):
    """Predictions, targets or features that cannot be evaluated (also a ``ValueError``)."""


def _is_tensor(value: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass
class BinaryConfusion:
    """Pixel counts of a binary segmentation: true/false positives/negatives.

    Metrics whose denominator is zero (e.g. precision when nothing was predicted positive) are
    ``nan``: they are undefined, and a number such as 0 or 1 would bias averages over seeds.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def update(
        self,
        pred: Any,
        target: Any,
        valid: Any = None,
        *,
        threshold: float = 0.5,
    ) -> BinaryConfusion:
        """Add one batch; pixels where ``valid`` is False are ignored. Returns ``self``.

        ``pred`` is boolean/0-1, or probabilities in [0, 1] thresholded at ``threshold``
        (pass probabilities, not logits). ``target`` holds 0/1 on valid pixels.
        """
        if _is_tensor(pred) or _is_tensor(target) or _is_tensor(valid):
            counts = _counts_torch(pred, target, valid, threshold)
        else:
            counts = _counts_numpy(pred, target, valid, threshold)
        self.tn += counts[0]
        self.fn += counts[1]
        self.fp += counts[2]
        self.tp += counts[3]
        return self

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        """Intersection over union of the positive class: TP / (TP + FP + FN)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall: 2TP / (2TP + FP + FN)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.total)

    def as_dict(self) -> dict[str, float | int]:
        """Metrics and counts, e.g. for JSON files and result tables."""
        return {
            "iou": self.iou,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "accuracy": self.accuracy,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }

    def merge(self, *others: BinaryConfusion) -> BinaryConfusion:
        """A new confusion with the counts of ``self`` and ``others`` summed (e.g. workers)."""
        merged = BinaryConfusion(self.tp, self.fp, self.fn, self.tn)
        for other in others:
            merged.tp += other.tp
            merged.fp += other.fp
            merged.fn += other.fn
            merged.tn += other.tn
        return merged

    def __add__(self, other: BinaryConfusion) -> BinaryConfusion:
        if not isinstance(other, BinaryConfusion):
            return NotImplemented
        return self.merge(other)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinaryConfusion:
        """Rebuild from :meth:`as_dict` output (only the counts are read)."""
        try:
            return cls(*(int(data[key]) for key in ("tp", "fp", "fn", "tn")))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationInputError(
                f"confusion counts tp/fp/fn/tn missing or invalid: {exc}"
            ) from None


def _check_shapes(pred_shape: tuple, target_shape: tuple, valid_shape: tuple | None) -> None:
    if pred_shape != target_shape:
        raise EvaluationInputError(
            f"prediction shape {pred_shape} does not match target shape {target_shape}"
        )
    if valid_shape is not None and valid_shape != target_shape:
        raise EvaluationInputError(
            f"valid-mask shape {valid_shape} does not match target shape {target_shape}"
        )


def _counts_numpy(pred: Any, target: Any, valid: Any, threshold: float) -> list[int]:
    pred = np.asarray(pred)
    target = np.asarray(target)
    valid = None if valid is None else np.asarray(valid, dtype=bool)
    _check_shapes(pred.shape, target.shape, None if valid is None else valid.shape)
    keep = np.ones(target.shape, bool) if valid is None else valid
    p, t = pred[keep], target[keep]
    if p.dtype.kind == "f":
        if np.isnan(p).any() or (p.size and (p.min() < 0 or p.max() > 1)):
            raise EvaluationInputError(
                "float predictions must be probabilities in [0, 1] without NaN on valid pixels"
            )
        p = p >= threshold
    elif p.dtype != bool and not np.isin(p, (0, 1)).all():
        raise EvaluationInputError("integer predictions must be 0 or 1")
    if not np.isin(t, (0, 1)).all():
        raise EvaluationInputError("targets must be 0 or 1 on valid pixels (mask the rest)")
    code = 2 * p.astype(np.int64) + t.astype(np.int64)
    return np.bincount(code.ravel(), minlength=4).tolist()


def _counts_torch(pred: Any, target: Any, valid: Any, threshold: float) -> list[int]:
    import torch

    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target, device=pred.device)
    valid = None if valid is None else torch.as_tensor(valid, device=pred.device).bool()
    _check_shapes(
        tuple(pred.shape), tuple(target.shape), None if valid is None else tuple(valid.shape)
    )
    p, t = (pred, target) if valid is None else (pred[valid], target[valid])
    if p.is_floating_point():
        if p.numel() and (p.isnan().any() or p.min() < 0 or p.max() > 1):
            raise EvaluationInputError(
                "float predictions must be probabilities in [0, 1] without NaN on valid pixels"
            )
        p = p >= threshold
    elif p.dtype != torch.bool and not ((p == 0) | (p == 1)).all():
        raise EvaluationInputError("integer predictions must be 0 or 1")
    if not ((t == 0) | (t == 1)).all():
        raise EvaluationInputError("targets must be 0 or 1 on valid pixels (mask the rest)")
    code = 2 * p.to(torch.int64) + t.to(torch.int64)
    return torch.bincount(code.reshape(-1), minlength=4).tolist()


# --------------------------------------------------------------------------- multi-class


def _check_class_indices(name: str, values: np.ndarray, size: int) -> None:
    """Refuse what is not a class index on valid pixels: a NaN or a fraction would otherwise
    be counted as some class (cast to an integer) instead of being masked."""
    integral = values.dtype.kind in "biu" or (
        values.dtype.kind == "f" and bool(np.all(np.isfinite(values) & (values % 1 == 0)))
    )
    if not integral or (values.size and (values.min() < 0 or values.max() >= size)):
        raise EvaluationInputError(
            f"{name} must be class indices 0..{size - 1} on valid pixels (mask the rest)"
        )


@dataclass
class MulticlassConfusion:
    """A ``K × K`` pixel confusion matrix: ``matrix[truth, predicted]``, over a whole split.

    Per-class metrics treat each class as the positive one against the rest; an undefined one
    (a class neither present nor predicted) is ``nan`` and left out of the mIoU, which is the
    mean IoU over the classes where it is defined.
    """

    classes: list[str]
    matrix: np.ndarray | None = None

    def __post_init__(self) -> None:
        size = len(self.classes)
        if self.matrix is None:
            self.matrix = np.zeros((size, size), dtype=np.int64)
        self.matrix = np.asarray(self.matrix, dtype=np.int64)
        if self.matrix.shape != (size, size):
            raise EvaluationInputError(
                f"confusion matrix of shape {self.matrix.shape} for {size} classes"
            )

    @property
    def counts(self) -> np.ndarray:
        assert self.matrix is not None  # set in __post_init__
        return self.matrix

    def update(self, pred: Any, target: Any, valid: Any = None) -> MulticlassConfusion:
        """Add one batch of predicted class indices (or scores ``(N, K, ...)``, argmax taken)
        against target class indices; pixels where ``valid`` is False are ignored."""
        size = len(self.classes)
        if _is_tensor(pred) or _is_tensor(target) or _is_tensor(valid):
            import torch

            pred = torch.as_tensor(pred)
            if pred.ndim == torch.as_tensor(target).ndim + 1:
                pred = pred.argmax(dim=1)
            pred, target = pred.detach().cpu().numpy(), torch.as_tensor(target).cpu().numpy()
            valid = None if valid is None else torch.as_tensor(valid).cpu().numpy()
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(axis=1)
        valid = None if valid is None else np.asarray(valid, dtype=bool)
        _check_shapes(pred.shape, target.shape, None if valid is None else valid.shape)
        p, t = (pred, target) if valid is None else (pred[valid], target[valid])
        for name, values in (("predictions", p), ("targets", t)):
            _check_class_indices(name, values, size)
        code = t.astype(np.int64).ravel() * size + p.astype(np.int64).ravel()
        self.matrix = self.counts + np.bincount(code, minlength=size * size).reshape(size, size)
        return self

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def _per_class(self) -> dict[str, np.ndarray]:
        m = self.counts.astype(np.float64)
        tp = np.diag(m)
        truth, predicted = m.sum(axis=1), m.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "iou": np.where(truth + predicted - tp > 0, tp / (truth + predicted - tp), np.nan),
                "precision": np.where(predicted > 0, tp / predicted, np.nan),
                "recall": np.where(truth > 0, tp / truth, np.nan),
                "f1": np.where(truth + predicted > 0, 2 * tp / (truth + predicted), np.nan),
            }

    @property
    def iou(self) -> np.ndarray:
        """IoU of each class (``nan`` where undefined)."""
        return self._per_class()["iou"]

    @property
    def miou(self) -> float:
        """Mean IoU over the classes where it is defined (``nan`` for an empty matrix)."""
        iou = self.iou
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan

    @property
    def accuracy(self) -> float:
        """Overall accuracy: the share of valid pixels with the right class."""
        return _ratio(int(np.trace(self.counts)), self.total)

    @property
    def kappa(self) -> float:
        """Cohen's kappa: agreement beyond the chance agreement of the two marginals."""
        total = self.total
        if not total:
            return math.nan
        m = self.counts.astype(np.float64)
        observed = np.trace(m) / total
        expected = float((m.sum(axis=1) * m.sum(axis=0)).sum()) / total**2
        return math.nan if expected == 1 else float((observed - expected) / (1 - expected))

    def as_dict(self) -> dict[str, Any]:
        """Overall metrics, per-class metrics by name, and the matrix with its class order."""
        per_class = self._per_class()
        support = self.counts.sum(axis=1)
        return {
            "miou": self.miou,
            "accuracy": self.accuracy,
            "kappa": self.kappa,
            "per_class": {
                name: {
                    **{metric: float(per_class[metric][k]) for metric in METRICS},
                    "support": int(support[k]),
                }
                for k, name in enumerate(self.classes)
            },
            "classes": list(self.classes),
            "confusion": self.counts.tolist(),
        }

    def merge(self, *others: MulticlassConfusion) -> MulticlassConfusion:
        """A new confusion with the matrices of ``self`` and ``others`` summed."""
        for other in others:
            if other.classes != self.classes:
                raise EvaluationInputError(f"classes differ: {self.classes} vs {other.classes}")
        return MulticlassConfusion(
            list(self.classes), self.counts + sum((o.counts for o in others), np.int64(0))
        )

    def __add__(self, other: MulticlassConfusion) -> MulticlassConfusion:
        if not isinstance(other, MulticlassConfusion):
            return NotImplemented
        return self.merge(other)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MulticlassConfusion:
        """Rebuild from :meth:`as_dict` output (the classes and the matrix are read)."""
        try:
            return cls([str(c) for c in data["classes"]], np.asarray(data["confusion"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationInputError(f"confusion matrix missing or invalid: {exc}") from None


Confusion = BinaryConfusion | MulticlassConfusion


def empty_confusion(classes: Sequence[str] | None) -> Confusion:
    """An empty confusion of one positive class, or of a crop-type map's ``classes``."""
    return BinaryConfusion() if classes is None else MulticlassConfusion(list(classes))


# --------------------------------------------------------------------------- early season


def zero_pad_after(images: Any, t: int, *, time_axis: int = 1) -> Any:
    """Copy of ``images`` with every time step after the first ``t`` set to zero.

    This is how the paper obtains early-season predictions (Appendix A.2): the network always
    sees the full-length series, with the not-yet-acquired periods zero-padded.
    """
    steps = images.shape[time_axis]
    if not 1 <= t <= steps:
        raise EvaluationInputError(f"time step t={t} is outside 1..{steps}")
    padded = images.clone() if _is_tensor(images) else np.array(images, copy=True)
    index = [slice(None)] * padded.ndim
    index[time_axis] = slice(t, None)
    padded[tuple(index)] = 0
    return padded


def early_season_confusions(
    predict: Callable[[Any], Any],
    batches: Iterable[Mapping[str, Any]],
    time_steps: int | None = None,
    *,
    threshold: float = 0.5,
) -> dict[int, BinaryConfusion]:
    """Confusions for t = 1..T, predicting each batch with steps after t zero-padded.

    ``predict(images (N, T, B, H, W)) -> probabilities (N, H, W)`` (or ``(N, 1, H, W)``);
    ``batches`` yields dicts with ``image``, ``target`` and ``valid`` (PatchDataset items
    collated by a DataLoader, or NumPy arrays). One pass over the data serves every t.
    """
    confusions: dict[int, BinaryConfusion] = {}
    for batch in batches:
        images = batch["image"]
        steps = images.shape[1] if time_steps is None else time_steps
        if steps > images.shape[1]:
            raise EvaluationInputError(
                f"time_steps={steps} exceeds the {images.shape[1]} steps of the images"
            )
        for t in range(1, steps + 1):
            prob = predict(zero_pad_after(images, t))
            if prob.ndim == images.ndim - 1:  # (N, 1, H, W) from a network
                prob = prob[:, 0]
            confusions.setdefault(t, BinaryConfusion()).update(
                prob, batch["target"], batch.get("valid"), threshold=threshold
            )
    return confusions


def early_season_metrics(
    confusions: Mapping[int, BinaryConfusion] | Sequence[BinaryConfusion],
) -> dict[int, dict[str, float | int]]:
    """``{t: metrics}`` for t = 1..T from per-step confusions (a sequence is taken as t = 1..)."""
    if not isinstance(confusions, Mapping):
        confusions = {t: c for t, c in enumerate(confusions, start=1)}
    steps = sorted(confusions)
    if steps != list(range(1, len(steps) + 1)):
        raise EvaluationInputError(f"early-season steps must be 1..T without gaps, got {steps}")
    return {t: confusions[t].as_dict() for t in steps}


# --------------------------------------------------------------------------- JSON


def _json_ready(value: Any) -> Any:
    if isinstance(value, BinaryConfusion | MulticlassConfusion):
        return _json_ready(value.as_dict())
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN; undefined metrics are written as null
    return value


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write metrics (nested dicts, confusions allowed) as strict JSON, atomically.

    Undefined metrics (``nan``) become ``null``; :func:`read_metrics_json` turns them back.
    """
    text = json.dumps(_json_ready(metrics), indent=2, sort_keys=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def read_metrics_json(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`write_metrics_json`; ``null`` metrics come back as nan."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationInputError("metrics file not found", path) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise EvaluationInputError(f"not a readable metrics JSON file: {exc}", path) from None

    def restore(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: restore(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return math.nan if value is None and key in (*METRICS, *OVERALL_METRICS) else value

    return restore(data)


def format_class_table(rows: Mapping[Any, Mapping[str, Any]], key: str = "t") -> str:
    """A plain-text table of multi-class metrics (:meth:`MulticlassConfusion.as_dict`), one row
    per key (by default the number of observed time steps ``t``): mIoU, overall accuracy,
    kappa and the IoU of each class."""

    def cell(value: Any) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    first = next(iter(rows.values()))
    names = list(first["per_class"])
    width = max(6, *(len(n) for n in names))
    header = [key.rjust(3), "mIoU".rjust(6), "OA".rjust(6), "kappa".rjust(6)]
    lines = ["  ".join(header + [n.rjust(width) for n in names])]
    for key, m in rows.items():
        cells = [str(key).rjust(3), *(cell(m[k]).rjust(6) for k in OVERALL_METRICS)]
        cells += [cell(m["per_class"][n]["iou"]).rjust(width) for n in names]
        lines.append("  ".join(cells))
    return "\n".join(lines)
