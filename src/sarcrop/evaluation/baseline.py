"""The paper's locally trained Random Forest baseline ("RF" in Tables 1-4).

Each pixel is classified from its own time series: the ``T × B`` normalised composite values,
flattened time-major (feature ``t * B + b``). No spatial context - that is what the U-Net adds.

Training pixels are sampled per class with a cap (``max_samples_per_class``) so that a handful
of large patches cannot swamp the forest and rare crops (barley) keep their positives. The
sample is drawn uniformly over the whole dataset in one streaming pass, so memory stays bounded
by the cap, not by the dataset size.

Early season: like the network, the forest predicts from the first t steps with the later steps
zero-padded (:func:`sarcrop.evaluation.metrics.zero_pad_after`). A forest fitted on full
seasons only has never seen zeros, so by default (``BaselineOptions.early_season``) it also
trains on zero-padded copies for every t.

:func:`run_baseline` is the one pipeline behind ``sarcrop baseline`` and the experiments'
``rf`` method: store in, fitted forest and test-split metrics out.

Crop-type maps: with ``n_classes=K > 2`` the same forest learns the ``K`` classes of a
multi-class :class:`~sarcrop.data.dataset.PatchDataset` (scikit-learn forests are multi-class
natively), samples up to the cap per class, and is scored by one
:class:`~sarcrop.evaluation.metrics.MulticlassConfusion` per number of observed steps. The binary
forest (``n_classes=2``) is unchanged.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.validation import check_is_fitted

from sarcrop.errors import InputDataError
from sarcrop.evaluation.metrics import (
    BinaryConfusion,
    EvaluationInputError,
    MulticlassConfusion,
    zero_pad_after,
)
from sarcrop.options import BaselineOptions, as_options
from sarcrop.utils.validation import chosen_bands

if TYPE_CHECKING:
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.data.normalization import Normalization
    from sarcrop.data.parcels import ParcelFold
    from sarcrop.data.store import DatasetStore
    from sarcrop.models.forest import Forest


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, possibly on a GPU
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _check_features(X: Any, n_features: int | None = None) -> np.ndarray:
    X = _numpy(X)
    if X.ndim != 2:
        raise EvaluationInputError(
            f"features must be 2-D (pixels, time × bands), got shape {X.shape}; "
            "use pixels_from_patches() for patch arrays"
        )
    if X.dtype.kind not in "fiub":
        raise EvaluationInputError(f"features must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise EvaluationInputError("no pixels to fit or predict (empty feature array)")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise EvaluationInputError(
            "features contain NaN or infinite values; drop those pixels (pixels_from_patches does)"
        )
    if n_features is not None and X.shape[1] != n_features:
        raise EvaluationInputError(
            f"features have {X.shape[1]} columns but the forest was fitted on {n_features}"
        )
    return X


def _check_labels(y: Any, n: int, n_classes: int = 2) -> np.ndarray:
    y = _numpy(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise EvaluationInputError(f"labels must be 1-D with {n} values, got shape {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise EvaluationInputError("labels contain NaN")
    if n_classes == 2 and not np.isin(y, (0, 1)).all():
        raise EvaluationInputError(f"labels must be 0 or 1, got values {np.unique(y)[:5].tolist()}")
    if not np.isin(y, np.arange(n_classes)).all():
        raise EvaluationInputError(
            f"labels must be class indices 0..{n_classes - 1}, got {np.unique(y)[:5].tolist()}"
        )
    y = y.astype(np.int8 if n_classes <= 127 else np.int64)
    present = np.unique(y)
    if present.size < 2:
        raise EvaluationInputError(
            f"training pixels contain only class {int(present[0])}; "
            "the baseline needs both positive and negative pixels"
            if n_classes == 2
            else "the baseline needs pixels of at least two classes"
        )
    return y


def sample_per_class(
    y: np.ndarray, max_samples_per_class: int | None, random_state: Any = 0
) -> np.ndarray:
    """Sorted indices keeping at most ``max_samples_per_class`` uniformly drawn pixels per class."""
    rng = np.random.default_rng(random_state)
    keep = []
    for value in np.unique(y):
        index = np.flatnonzero(y == value)
        if max_samples_per_class is not None and index.size > max_samples_per_class:
            index = rng.choice(index, size=max_samples_per_class, replace=False)
        keep.append(index)
    return np.sort(np.concatenate(keep))


class RandomForestBaseline(ClassifierMixin, BaseEstimator):
    """Per-pixel Random Forest on flattened SAR time series, with per-class sample caps.

    A scikit-learn estimator (``clone``/``get_params`` work). ``predict_proba`` returns the
    columns of ``classes_ = [0, 1]``; ``predict`` thresholds the positive column at 0.5.
    With ``n_classes=K > 2`` (crop types) the columns are ``0..K-1`` (zero for a class the
    training pixels lack) and ``predict`` takes the most probable class.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        *,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        max_features: str | float | None = "sqrt",
        max_samples_per_class: int | None = 50_000,
        class_weight: str | dict | None = None,
        n_jobs: int | None = -1,
        random_state: int | None = 0,
        n_classes: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_samples_per_class = max_samples_per_class
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.n_classes = n_classes

    def fit(
        self, X: Any, y: Any, *, feature_shape: tuple[int, int] | None = None
    ) -> RandomForestBaseline:
        """Fit on pixels ``X (n, T*B)`` with labels ``y`` in {0, 1} (``0..n_classes-1``).

        ``feature_shape=(T, B)`` is recorded so :func:`predict_patches` can check its input.
        """
        X = _check_features(X)
        y = _check_labels(y, X.shape[0], self.n_classes)
        cap = self.max_samples_per_class
        if cap is not None and (not isinstance(cap, int | np.integer) or cap < 1):
            raise EvaluationInputError(f"max_samples_per_class must be a positive int, got {cap!r}")
        if feature_shape is not None and int(np.prod(feature_shape)) != X.shape[1]:
            raise EvaluationInputError(
                f"feature_shape {tuple(feature_shape)} does not match {X.shape[1]} feature columns"
            )
        index = sample_per_class(y, cap, self.random_state)
        X, y = X[index], y[index]
        labels = range(self.n_classes)
        self.n_samples_per_class_ = {int(c): int((y == c).sum()) for c in labels}
        with _quiet_joblib():
            self.estimator_ = RandomForestClassifier(**self._forest_params()).fit(X, y)
        self.classes_ = np.arange(self.n_classes)
        self.n_features_in_ = X.shape[1]
        self.feature_shape_ = (
            None if feature_shape is None else tuple(int(v) for v in feature_shape)
        )
        return self

    def _forest_params(self) -> dict[str, Any]:
        # Every parameter but the sample cap is the forest's, under the same name.
        params = self.get_params()
        del params["max_samples_per_class"], params["n_classes"]
        return params

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, 2)``, columns ``[negative, positive]`` (``(n, K)``)."""
        check_is_fitted(self, "estimator_")
        X = _check_features(X, self.n_features_in_)
        with _quiet_joblib():
            proba = self.estimator_.predict_proba(X).astype(np.float32)
        if self.n_classes == 2:
            return proba
        full = np.zeros((len(X), self.n_classes), np.float32)
        full[:, self.estimator_.classes_] = proba
        return full

    def predict(self, X: Any) -> np.ndarray:
        """Class labels 0/1 (positive where its probability is at least 0.5), or the most
        probable of ``n_classes``."""
        if self.n_classes != 2:
            return self.predict_proba(X).argmax(axis=1)
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)


@contextlib.contextmanager
def _quiet_joblib() -> Iterator[None]:
    """Hide scikit-learn's configuration-propagation warning about ``delayed``.

    It is printed once per forest call in processes that trained a network with Lightning
    before, and says nothing about the forest's results.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*sklearn\.utils\.parallel\.delayed.*")
        yield


def pixels_from_patches(
    images: Any, targets: Any, valid: Any = None, n_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel features ``X (n, T*B)`` and labels ``y (n,)`` from patch arrays.

    ``images (N, T, B, H, W)``, ``targets (N, H, W)`` in {0, 1} (``0..n_classes-1``),
    ``valid (N, H, W)`` bool. Pixels that are not valid, or have any NaN feature or a target
    outside the classes, are dropped.
    """
    images, targets = _numpy(images), _numpy(targets)
    if images.ndim != 5:
        raise EvaluationInputError(
            f"images must be (patches, time, bands, height, width), got shape {images.shape}"
        )
    n, steps, bands, height, width = images.shape
    if targets.shape != (n, height, width):
        raise EvaluationInputError(
            f"targets shape {targets.shape} does not match images {images.shape}: "
            f"expected {(n, height, width)}"
        )
    keep = np.isin(targets, np.arange(n_classes))
    if valid is not None:
        valid = _numpy(valid)
        if valid.shape != targets.shape:
            raise EvaluationInputError(
                f"valid-mask shape {valid.shape} does not match targets {targets.shape}"
            )
        keep &= valid.astype(bool)
    X = images.transpose(0, 3, 4, 1, 2).reshape(n, height, width, steps * bands)
    X, y = X[keep], targets[keep]
    finite = np.isfinite(X).all(axis=1)
    return X[finite].astype(np.float32, copy=False), y[finite].astype(np.int8)


def predict_proba_patches(
    model: RandomForestBaseline, images: Any, *, timesteps: int | None = None
) -> np.ndarray:
    """Probabilities of every class ``(N, K, H, W)`` for ``images (N, T, B, H, W)``.

    As :func:`predict_patches` (zero-padding after ``timesteps``, NaN where a feature is NaN),
    for crop-type forests.
    """
    images = _numpy(images)
    single = images.ndim == 4
    if single:
        images = images[None]
    _check_images(model, images)
    n, steps, bands, height, width = images.shape
    if timesteps is not None:
        images = zero_pad_after(images, timesteps)
    X = images.transpose(0, 3, 4, 1, 2).reshape(-1, steps * bands)
    finite = np.isfinite(X).all(axis=1)
    prob = np.full((X.shape[0], len(model.classes_)), np.nan, np.float32)
    if finite.any():
        prob[finite] = model.predict_proba(X[finite])
    out = prob.reshape(n, height, width, -1).transpose(0, 3, 1, 2)
    return out[0] if single else out


def _check_images(model: RandomForestBaseline, images: np.ndarray) -> None:
    if images.ndim != 5:
        raise EvaluationInputError(
            f"images must be (patches, time, bands, height, width), got shape {images.shape}"
        )
    check_is_fitted(model, "estimator_")
    _, steps, bands, _, _ = images.shape
    expected = getattr(model, "feature_shape_", None)
    if expected is not None and tuple(expected) != (steps, bands):
        raise EvaluationInputError(
            f"images have {steps} steps × {bands} bands but the forest was fitted on "
            f"{expected[0]} × {expected[1]}"
        )
    if steps * bands != model.n_features_in_:
        raise EvaluationInputError(
            f"images give {steps * bands} features per pixel, the forest expects "
            f"{model.n_features_in_}"
        )


def predict_patches(
    model: RandomForestBaseline, images: Any, *, timesteps: int | None = None
) -> np.ndarray:
    """Positive-class probability ``(N, H, W)`` for ``images (N, T, B, H, W)``.

    A single patch ``(T, B, H, W)`` gives ``(H, W)``. ``timesteps=t`` predicts from the first
    t steps with the rest zero-padded. Pixels with any NaN feature get NaN.
    """
    prob = predict_proba_patches(model, images, timesteps=timesteps)
    return np.ascontiguousarray(prob[..., 1, :, :])


# --------------------------------------------------------------------------- datasets


def _item(dataset: Any, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    item = dataset[index]
    if not isinstance(item, dict) or "image" not in item or "target" not in item:
        raise EvaluationInputError(
            "dataset items must be dicts with 'image' (T, B, H, W), 'target' (H, W) and "
            f"optionally 'valid' (H, W); item {index} is {type(item).__name__}"
        )
    image = _numpy(item["image"])
    if image.ndim != 4:
        raise EvaluationInputError(
            f"dataset item {index}: image must be (time, bands, height, width), got {image.shape}"
        )
    valid = item.get("valid")
    return image, _numpy(item["target"]), None if valid is None else _numpy(valid)


class _Reservoir:
    """Uniform sample without replacement of at most ``size`` rows per class, streamed."""

    def __init__(self, size: int | None, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {0: [], 1: []}

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        for value in sorted({0, 1, *np.unique(y).tolist()}):
            self.parts.setdefault(value, [])
            rows = X[y == value]
            if not len(rows):
                continue
            self.parts[value].append((self.rng.random(len(rows)), rows))
            if self.size is not None and sum(len(k) for k, _ in self.parts[value]) > 2 * self.size:
                self._shrink(value)

    def _shrink(self, value: int) -> None:
        keys = np.concatenate([k for k, _ in self.parts[value]])
        rows = np.concatenate([r for _, r in self.parts[value]])
        if self.size is not None and len(keys) > self.size:
            smallest = np.argpartition(keys, self.size - 1)[: self.size]
            keys, rows = keys[smallest], rows[smallest]
        self.parts[value] = [(keys, rows)]

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        X, y = [], []
        for value in sorted(self.parts):
            if self.parts[value]:
                self._shrink(value)
                X.append(self.parts[value][0][1])
                y.append(np.full(len(X[-1]), value, np.int8))
        if not X:
            raise EvaluationInputError("the dataset has no valid labelled pixels")
        return np.concatenate(X), np.concatenate(y)


def check_patches(dataset: Any, split: str, path: Any) -> None:
    """A split to learn from or to score must hold patches; the error names its store."""
    if len(dataset) == 0:
        raise InputDataError(f"the store has no {split} patches", path)


def open_stores(
    store: str | Path | DatasetStore, test_store: str | Path | DatasetStore | None
) -> tuple[DatasetStore, DatasetStore]:
    """The training store and the test store (``store`` itself unless another is given), which
    must have the same number of time steps."""
    from sarcrop.data.store import DatasetStore

    train = DatasetStore.open(store)
    test = train if test_store is None else test_store
    test = DatasetStore.open(test)
    if test.steps != train.steps:
        raise InputDataError(
            f"test store has {test.steps} time steps, the training store {train.steps}",
            test.path,
        )
    return train, test


@dataclass(frozen=True)
class ForestSplits:
    """What a forest learns from and is scored on: the train split (of a label subset) and the
    test split, both scaled alike."""

    train: PatchDataset
    test: PatchDataset
    label_subset: dict[str, Any] | None


def forest_splits(
    stores: tuple[DatasetStore, DatasetStore],
    options: BaselineOptions,
    target: tuple[list[str], list[str] | None],
    bands: list[str],
    normalization: Normalization,
    fold: ParcelFold | None = None,
) -> ForestSplits:
    """The splits of a forest (the plain one and the one on network features alike).

    ``target`` is ``(positive, classes)``: a crop against the rest, or crop types. Below
    ``options.label_fraction`` 1 the train split keeps a seeded subset of its parcels, the
    subset :func:`sarcrop.training.train` chooses for that fraction and seed. A ``fold``
    (:func:`sarcrop.data.parcels.parcel_folds`, on patches the two stores share) learns from
    ``fold.train``'s labels and scores ``fold.held_out``'s only: fields held out of training.
    """
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.data.parcels import label_subset
    from sarcrop.data.split import check_disjoint

    (train_store, test), (positive, classes) = stores, target
    if fold is not None:
        if np.any(fold.train.keep & fold.held_out.keep):
            raise InputDataError("a fold trains on pixels it holds out", train_store.path)
        return ForestSplits(
            PatchDataset(
                train_store,
                "train",
                positive,
                bands,
                normalization=normalization,
                label_mask=fold.train,
                classes=classes,
            ),
            PatchDataset(
                test,
                "test",
                positive,
                bands,
                normalization=normalization,
                label_mask=fold.held_out,
                classes=classes,
            ),
            fold.train.as_dict(),
        )
    mask = None
    if options.label_fraction < 1:
        mask = label_subset(
            train_store,
            options.label_fraction,
            options.seed,
            positive=positive,
            classes=classes or None,
        )
    train_set = PatchDataset(
        train_store,
        "train",
        positive,
        bands,
        normalization=normalization,
        label_mask=mask,
        classes=classes,
    )
    test_set = PatchDataset(
        test, "test", positive, bands, normalization=normalization, classes=classes
    )
    check_patches(train_set, "train", train_store.path)
    check_disjoint(train_store, test)
    return ForestSplits(train_set, test_set, None if mask is None else mask.as_dict())


_EARLY_SEASON = bool(BaselineOptions.model_fields["early_season"].default)
"""Whether a forest learns zero-padded early-season copies unless told: the options' default,
so that every way of fitting one agrees with ``sarcrop baseline`` and the experiments."""


def fit_forest(
    dataset: Any,
    options: BaselineOptions,
    jobs: int | None,
    *,
    early_season: bool | None = None,
    n_classes: int = 2,
) -> RandomForestBaseline:
    """:func:`fit_baseline_from_dataset` with the forest settings of ``options``
    (``early_season`` None: ``options.early_season``)."""
    return fit_baseline_from_dataset(
        dataset,
        max_samples_per_class=options.max_samples_per_class,
        early_season=options.early_season if early_season is None else early_season,
        random_state=options.seed,
        n_estimators=options.n_estimators,
        max_depth=options.max_depth,
        n_jobs=jobs,
        n_classes=n_classes,
    )


def fit_baseline_from_dataset(
    dataset: Any,
    *,
    max_samples_per_class: int | None = 50_000,
    early_season: bool = _EARLY_SEASON,
    random_state: int | None = 0,
    n_classes: int = 2,
    **params: Any,
) -> RandomForestBaseline:
    """Fit a :class:`RandomForestBaseline` on a map-style patch dataset (PatchDataset items).

    Pixels are sampled per class in one pass. With ``early_season=True`` (the default, as
    :class:`~sarcrop.options.BaselineOptions`') every pixel also contributes its zero-padded
    series for t = 1..T-1, so the forest can predict mid-season.
    """
    if len(dataset) == 0:
        raise EvaluationInputError("the training dataset is empty")
    rng = np.random.default_rng(random_state)
    reservoir = _Reservoir(max_samples_per_class, rng)
    shape = None
    for index in range(len(dataset)):
        image, target, valid = _item(dataset, index)
        if shape is None:
            shape = image.shape[:2]
        elif image.shape[:2] != shape:
            raise EvaluationInputError(
                f"dataset item {index} has {image.shape[:2]} (time, bands), item 0 has {shape}"
            )
        X, y = pixels_from_patches(
            image[None], target[None], None if valid is None else valid[None], n_classes
        )
        if len(X) == 0:  # a patch without labels (e.g. left out by a label fraction)
            continue
        reservoir.add(X, y)
        if early_season:
            for t in range(1, shape[0]):
                reservoir.add(zero_pad_after(X.reshape(-1, *shape), t).reshape(len(X), -1), y)
    X, y = reservoir.sample()
    model = RandomForestBaseline(
        max_samples_per_class=max_samples_per_class,
        random_state=random_state,
        n_classes=n_classes,
        **params,
    )
    return model.fit(X, y, feature_shape=shape)


def forest_confusions(
    model: RandomForestBaseline,
    dataset: Any,
    timesteps: Sequence[int | None] | None,
    threshold: float,
    *,
    kept: dict[int | None, list[np.ndarray]] | None = None,
) -> dict[int | None, BinaryConfusion]:
    """Per-``t`` confusions of the forest over every valid, labelled pixel of ``dataset`` (any
    map-style dataset of ``image``/``target``/``valid`` dicts, e.g. of network features).

    ``kept`` receives each item's probability map at every ``t`` it holds a list for, so that
    nothing predicts the split again for its maps or parcels."""
    if model.n_classes != 2:
        return forest_class_confusions(model, dataset, timesteps, kept=kept)  # type: ignore[return-value]
    confusions: dict[int | None, BinaryConfusion] = {}
    for index in range(len(dataset)):
        image, target, valid = _item(dataset, index)
        mask = np.isin(target, (0, 1)) & (True if valid is None else valid.astype(bool))
        steps = list(range(1, image.shape[0] + 1) if timesteps is None else timesteps)
        for t in steps:
            prob = predict_patches(model, image, timesteps=t)
            confusions.setdefault(t, BinaryConfusion()).update(
                np.nan_to_num(prob), target, mask & np.isfinite(prob), threshold=threshold
            )
            if kept is not None and t in kept:
                kept[t].append(prob)
    if not confusions:
        raise EvaluationInputError("the test dataset is empty")
    return confusions


def forest_class_confusions(
    model: RandomForestBaseline,
    dataset: Any,
    timesteps: Sequence[int | None] | None,
    names: Sequence[str] | None = None,
    *,
    kept: dict[int | None, list[np.ndarray]] | None = None,
) -> dict[int | None, MulticlassConfusion]:
    """Per-``t`` confusion matrices of a crop-type forest (most probable class per pixel);
    ``kept`` as in :func:`forest_confusions`."""
    names = names or getattr(dataset, "target_classes", None) or [str(c) for c in model.classes_]
    confusions: dict[int | None, MulticlassConfusion] = {}
    for index in range(len(dataset)):
        image, target, valid = _item(dataset, index)
        mask = True if valid is None else valid.astype(bool)
        steps = list(range(1, image.shape[0] + 1) if timesteps is None else timesteps)
        for t in steps:
            prob = predict_proba_patches(model, image, timesteps=t)
            finite = np.isfinite(prob).all(axis=0)
            confusions.setdefault(t, MulticlassConfusion(list(names))).update(
                np.nan_to_num(prob).argmax(axis=0), target, mask & finite
            )
            if kept is not None and t in kept:
                kept[t].append(prob)
    if not confusions:
        raise EvaluationInputError("the test dataset is empty")
    return confusions


def kept_maps(wanted: Sequence[int], *, every_timestep: bool) -> dict[int | None, list[np.ndarray]]:
    """Where :func:`forest_confusions` keeps the maps it scores: at the headline (last) ``t``,
    or at every ``t`` where every one is evaluated (the experiments save them all)."""
    return {t: [] for t in (wanted if every_timestep else wanted[-1:])}


def stacked(kept: Mapping[int | None, list[np.ndarray]]) -> dict[int, np.ndarray]:
    """The kept maps of each ``t`` as one array (``t`` None: the full season is not keyed)."""
    return {int(t): np.stack(maps) for t, maps in kept.items() if t is not None and maps}


def evaluate_baseline(
    model: RandomForestBaseline,
    dataset: Any,
    *,
    timesteps: int | None = None,
    threshold: float = 0.5,
) -> BinaryConfusion:
    """Confusion of the forest over every valid pixel of ``dataset``.

    ``timesteps=t`` evaluates the early-season prediction from the first t steps.
    """
    return forest_confusions(model, dataset, [timesteps], threshold)[timesteps]


def early_season_baseline(
    model: RandomForestBaseline,
    dataset: Any,
    *,
    timesteps: Sequence[int] | None = None,
    threshold: float = 0.5,
) -> dict[int, BinaryConfusion]:
    """Confusions ``{t: BinaryConfusion}`` for t in ``timesteps`` (default 1..T), in one pass."""
    return forest_confusions(model, dataset, timesteps, threshold)  # type: ignore[return-value]


# --------------------------------------------------------------------------- stores


@dataclass(frozen=True)
class BaselineResult:
    """A fitted forest and its test-split confusions, one per evaluated number of steps.

    A crop-type forest (``classes``) keeps its confusion matrices in ``class_confusions``
    (``confusions`` is then empty).
    """

    model: RandomForestBaseline
    options: BaselineOptions
    store: Path
    test_store: Path
    positive: list[str]
    bands: list[str]
    normalization: dict[str, Any]
    train_patches: int
    test_patches: int
    steps: int
    confusions: dict[int, BinaryConfusion]
    every_timestep: bool  # evaluated for t = 1..T (timesteps="all")
    label_subset: dict[str, Any] | None = None  # the parcels a few-label forest learnt from
    classes: list[str] | None = None  # the target classes of a crop-type forest
    class_confusions: dict[int, MulticlassConfusion] = field(default_factory=dict)
    # The test split's probability maps as they were scored: at the headline t, and at every t
    # where every t was evaluated (``timesteps="all"``).
    kept_probabilities: dict[int, np.ndarray] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def early_copies(self) -> bool:
        """Whether the forest also learnt zero-padded early-season series."""
        return self.options.early_season

    @property
    def class_count(self) -> int:
        """The forest's classes: the crop types, or the crop and the rest."""
        return len(self.classes) if self.classes else 2

    @property
    def scored(self) -> bool:
        """Whether a test split was scored (not where every patch of the store trained)."""
        return bool(self.confusions or self.class_confusions)

    @property
    def metrics(self) -> BinaryConfusion:
        """The headline: the largest evaluated t (the full season unless one t was asked)."""
        if not self.scored:
            raise ValueError("no test patches: the forest was fitted, not scored")
        if not self.confusions:
            raise ValueError("a crop-type forest has class_metrics, not binary metrics")
        return self.confusions[max(self.confusions)]

    @property
    def class_metrics(self) -> MulticlassConfusion:
        """The headline matrix of a crop-type forest (largest evaluated t)."""
        return self.class_confusions[max(self.class_confusions)]

    @property
    def headline_timesteps(self) -> int:
        """The number of composites of the headline metrics."""
        return max(self.class_confusions or self.confusions)

    def test_set(self) -> PatchDataset:
        """The test split as the forest reads it: its bands, scaling, and classes."""
        from sarcrop.data.dataset import PatchDataset

        return PatchDataset(
            self.test_store,
            "test",
            self.positive,
            self.bands,
            normalization=self.normalization,
            classes=self.classes,
        )

    def probabilities(self, timesteps: int | None = None) -> np.ndarray:
        """The forest's probabilities on the test split from the first ``timesteps``
        composites (default: all): ``(N, H, W)`` of the positive class, or ``(N, K, H, W)`` of
        every class of a crop-type forest; NaN where the input has no data."""
        if (kept := self._kept(timesteps)) is not None:
            return kept
        test_set = self.test_set()
        predict = predict_proba_patches if self.classes else predict_patches
        images = (test_set[i]["image"].numpy() for i in range(len(test_set)))
        return np.stack([predict(self.model, image, timesteps=timesteps) for image in images])

    def _kept(self, timesteps: int | None) -> np.ndarray | None:
        """The maps scored at ``timesteps`` composites, where they were kept."""
        maps = self.kept_probabilities.get(self.steps if timesteps is None else timesteps)
        return None if maps is None else maps.copy()

    def by_parcel(self) -> dict[str, Any]:
        """The headline metrics' parcel-bootstrap intervals and the score of each test parcel
        (:func:`sarcrop.evaluation.parcel_scores.evaluation_by_parcel`)."""
        from sarcrop.evaluation.parcel_scores import NO_PREDICTION, evaluation_by_parcel

        t = self.headline_timesteps
        prob = self.probabilities(None if t == self.steps else t)
        if self.classes:
            predicted = np.where(np.isfinite(prob).all(axis=1), prob.argmax(axis=1), NO_PREDICTION)
        else:
            predicted = np.where(np.isfinite(prob), prob >= self.options.threshold, NO_PREDICTION)
        return evaluation_by_parcel(self.test_set(), predicted)

    def save(self, path: str | Path) -> Path:
        """Write the forest as a checkpoint (safetensors, never pickled) that ``predict`` and
        ``evaluate`` take as they take a network's: its trees (:class:`~sarcrop.models.forest.
        TreeEnsemble`) with the bands, season, scaling, classes and learnt ground of its
        store, written atomically."""
        from sarcrop.data.split import learnt_ground
        from sarcrop.data.store import DatasetStore
        from sarcrop.training.checkpoint import CheckpointMetadata, save_checkpoint

        store = DatasetStore(self.store)
        model = self.map_model()
        options = self.options
        metadata = CheckpointMetadata(
            architecture=str(model.name),
            options=dict(model.options),
            bands=list(self.bands),
            time_steps=self.steps,
            season=store.season.to_dict(),
            normalization=dict(self.normalization),
            normalization_source=f"train split of {store.path}",
            positive=list(self.positive),
            classes=list(store.classes),
            target_classes=self.classes,
            region=store.metadata.region,
            year=store.metadata.year,
            composite=store.metadata.source.get("composite"),
            training={
                **{k: v for k, v in self.to_dict().items() if k in ("method", "features")},
                "config": {"threshold": options.threshold, "early_season": self.early_copies},
                "options": options.model_dump(),
                "training_pixels": dict(self.model.n_samples_per_class_),
                "label_subset": self.label_subset or {"fraction": 1.0},
                "ground": learnt_ground(store),
                **store.read_as(),
                # A network's features may depend on the window: map in windows of its patches.
                **({"patch_size": store.metadata.patch_size} if model.reads_neighbours else {}),
            },
        )
        return save_checkpoint(path, model, metadata)

    def map_model(self) -> Forest:
        """The forest as a module that maps as a network does (:meth:`save` writes it)."""
        from sarcrop.models.forest import TreeEnsemble

        return TreeEnsemble.from_forest(
            self.model.estimator_, len(self.bands), self.steps, self.class_count
        )

    def to_dict(self) -> dict[str, Any]:
        """The run's record; ``sarcrop baseline --out`` writes it with :meth:`by_parcel`'s."""
        record: dict[str, Any] = {
            "method": "random_forest",
            "store": str(self.store),
            "test_store": str(self.test_store),
            "split": "test",
            "positive": self.positive,
            "bands": self.bands,
            "train_patches": self.train_patches,
            "test_patches": self.test_patches,
            "training_pixels": dict(self.model.n_samples_per_class_),
            "label_subset": self.label_subset or {"fraction": 1.0},
            "options": self.options.model_dump(),
        }
        if not self.scored:
            return record
        if self.classes is not None:
            record.update(
                classes=self.classes,
                timesteps=max(self.class_confusions),
                metrics=self.class_metrics.as_dict(),
            )
            if self.every_timestep:
                record["early_season"] = {t: c.as_dict() for t, c in self.class_confusions.items()}
            return record
        record.update(
            timesteps=max(self.confusions),
            threshold=self.options.threshold,
            metrics=self.metrics.as_dict(),
        )
        if self.every_timestep:
            record["early_season"] = {t: c.as_dict() for t, c in self.confusions.items()}
        return record


def run_baseline(
    store: Any,
    options: BaselineOptions | None = None,
    *,
    test_store: Any = None,
    bands: Sequence[str] | None = None,
    positive: Sequence[str] | str | None = None,
    timesteps: int | Literal["all"] | None = None,
    jobs: int | None = -1,
    fold: ParcelFold | None = None,
) -> BaselineResult:
    """Fit the forest on the train split of ``store``; score the test split of ``test_store``.

    The one pipeline behind ``sarcrop baseline`` and the experiments' ``rf`` method. The test
    split is that of ``store`` unless ``test_store`` (another location or year) is given; both
    are scaled with ``store``'s train statistics, as a forest deployed from the training area
    would see them. ``positive`` defaults to the store's class; ``timesteps`` is ``None`` (full
    season), ``t`` or ``"all"`` (every t = 1..T) as in :func:`sarcrop.training.evaluate`.
    ``options.classes`` fits a crop-type forest of those classes instead (see
    :class:`~sarcrop.data.dataset.PatchDataset`), scored by confusion matrices.
    ``jobs`` (parallel workers) does not change the result. With ``options.label_fraction``
    below 1 the forest learns from a seeded subset of the train split's parcels, the same
    subset :func:`sarcrop.training.train` chooses for that fraction and seed. A ``fold`` of
    parcels replaces that subset: the forest learns from its ``train`` labels and is scored on
    the fields it ``held_out`` (see :func:`forest_splits`). A ``store`` without test patches
    (``prepare --split train``) and no ``test_store``: the forest learns every labelled patch
    and is not scored (:attr:`BaselineResult.scored` False), a forest to map with
    (:meth:`BaselineResult.save`).
    """
    from sarcrop.training.config import every_timestep, positive_classes, timestep_list

    options = (
        BaselineOptions() if options is None else as_options(BaselineOptions, options, "options")
    )
    train_store, test = open_stores(store, test_store)
    classes = None if options.classes is None else list(options.classes)
    positive = positive_classes(train_store, positive, classes=classes)
    bands = chosen_bands(bands, train_store.bands)
    wanted = timestep_list(timesteps, train_store.steps)
    normalization = train_store.normalization.select(bands)
    target = (positive, classes)
    splits = forest_splits((train_store, test), options, target, bands, normalization, fold)
    train_set, test_set = splits.train, splits.test
    scored = len(test_set) > 0 or test_store is not None or fold is not None
    if scored:
        check_patches(test_set, "test", test.path)
    try:
        model = fit_forest(
            train_set,
            options,
            jobs,
            early_season=options.early_season,
            n_classes=len(classes) if classes else 2,
        )
        confusions: dict[int, BinaryConfusion] = {}
        class_confusions: dict[int, MulticlassConfusion] = {}
        kept = kept_maps(wanted, every_timestep=every_timestep(timesteps))
        if scored and classes:
            class_confusions = forest_class_confusions(model, test_set, wanted, kept=kept)  # type: ignore[assignment]
        elif scored:
            confusions = forest_confusions(  # type: ignore[assignment]
                model, test_set, wanted, options.threshold, kept=kept
            )
    except EvaluationInputError as exc:
        raise InputDataError(str(exc), train_store.path) from None
    return BaselineResult(
        model=model,
        options=options,
        store=train_store.path,
        test_store=test.path,
        positive=positive,
        bands=bands,
        normalization=normalization.to_dict(),
        train_patches=len(train_set),
        test_patches=len(test_set),
        steps=train_store.steps,
        confusions=confusions,
        every_timestep=every_timestep(timesteps),
        label_subset=splits.label_subset,
        classes=classes,
        class_confusions=class_confusions,
        kept_probabilities=stacked(kept),
    )
