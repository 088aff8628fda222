"""A Random Forest on a frozen pre-trained network's per-pixel features (the few-label head).

Foundation-model practice with a few hundred labelled pixels: keep the pre-trained network
frozen, use it as a per-pixel feature extractor, and fit only a light head on the target's
labels. The linear ``probe`` strategy trains a 1×1 convolution on the features; here the head
is the paper's Random Forest, which needs no epochs, no learning rate and no validation, and
copes with the non-linear, few-sample case where a linear head does not.

Features of a pixel: the decoder's last feature map (the input of the 1×1 output head,
``widths[0]`` channels, spatial context from the whole U-Net) and, with ``raw=True``, the
pixel's own ``T × B`` series, the RF baseline's features (a forest is invariant to the
per-band affine scaling, so the network's input scaling gives the same splits as the
baseline's). The forest then starts from everything the baseline sees and may use the
network's features where they help.

:func:`run_feature_forest` is the one pipeline behind ``sarcrop baseline --features`` and the
experiments' ``rf-features`` method; it learns from the same parcels as the forest and the
networks for a given ``label_fraction`` and seed.

Crop-type maps: with ``options.classes`` the forest is the plain forest's multi-class one (same
classes in the same order, ``other`` gathering the unlisted crops), on the same features, scored
by one :class:`~sarcrop.evaluation.metrics.MulticlassConfusion` per number of observed steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from sarcrop.errors import ConfigError, InputDataError
from sarcrop.evaluation.baseline import (
    BaselineResult,
    check_patches,
    fit_forest,
    forest_class_confusions,
    forest_confusions,
    forest_splits,
    kept_maps,
    open_stores,
    predict_patches,
    predict_proba_patches,
    stacked,
)
from sarcrop.evaluation.metrics import (
    BinaryConfusion,
    EvaluationInputError,
    MulticlassConfusion,
    zero_pad_after,
)
from sarcrop.models.forest import Forest, decoder_features
from sarcrop.options import BaselineOptions, as_options
from sarcrop.utils.validation import chosen_bands

if TYPE_CHECKING:
    from sarcrop.data.parcels import ParcelFold

LAYER = "decoder.head input"
DESIGN = {"layer": LAYER, "network_bands": "its own where present, else Eq. 3"}
"""What the features are (in results and the experiments' cache keys: change it with them)."""


class FeatureExtractor:
    """A frozen network's per-pixel features of a patch: ``(T, B, H, W)`` → ``(F, H, W)``.

    ``network_bands`` are the indices of the patch's bands the network reads (default: all).
    """

    def __init__(
        self, model: nn.Module, *, raw: bool = True, network_bands: Sequence[int] | None = None
    ) -> None:
        head = getattr(getattr(model, "decoder", None), "head", None)
        if not isinstance(head, nn.Module):
            raise ConfigError(f"{type(model).__name__} has no decoder.head to take features from")
        self.model = model.eval()
        self.head = head
        self.raw = raw
        self.network_bands = None if network_bands is None else list(network_bands)

    @property
    def width(self) -> int:
        """Feature channels of the network (before any raw series)."""
        return int(getattr(self.head, "in_channels", 0))

    def __call__(self, image: torch.Tensor | np.ndarray) -> np.ndarray:
        image = torch.as_tensor(np.asarray(image, dtype=np.float32))
        steps, bands, height, width = image.shape
        seen = image if self.network_bands is None else image[:, self.network_bands]
        features = decoder_features(self.model, torch.nan_to_num(seen)[None])[0].numpy()
        if self.raw:
            series = image.numpy().reshape(steps * bands, height, width)
            features = np.concatenate([features, series])
        return features.astype(np.float32, copy=False)


class FeatureDataset:
    """PatchDataset items with the image replaced by its features, as one "time step".

    ``timesteps=t`` extracts the features of the input with only its first ``t`` composites
    (the rest zero-padded): the early-season view the network gets.
    """

    def __init__(
        self, patches: Any, extractor: FeatureExtractor, timesteps: int | None = None
    ) -> None:
        self.patches, self.extractor, self.timesteps = patches, extractor, timesteps

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.patches[index]
        image = item["image"].numpy()
        if self.timesteps is not None:
            image = zero_pad_after(image[None], self.timesteps)[0]
        features = self.extractor(image)
        return {**item, "image": torch.from_numpy(features[None])}


@dataclass(frozen=True)
class FeatureForestResult(BaselineResult):
    """A forest fitted on a frozen network's features, and its test-split confusions."""

    checkpoint: Path | None = None
    raw: bool = True
    feature_width: int = 0
    network_bands: list[str] | None = None

    @property
    def early_copies(self) -> bool:
        """Never: the forest learns the features of full seasons (:func:`run_feature_forest`)."""
        return False

    def map_model(self) -> Forest:
        """The frozen network (band-adapted as it was fitted) with the trees on its features."""
        from sarcrop.data.store import DatasetStore
        from sarcrop.models.forest import FeatureTreeEnsemble, TreeEnsemble

        assert self.checkpoint is not None
        store = DatasetStore(self.store)
        extractor, _, _ = load_extractor(self.checkpoint, store, self.bands, raw=self.raw)
        features = extractor.width + (self.steps * len(self.bands) if self.raw else 0)
        trees = TreeEnsemble.from_forest(self.model.estimator_, features, 1, self.class_count)
        return FeatureTreeEnsemble(
            extractor.model, trees, raw=self.raw, network_bands=extractor.network_bands
        )

    def probabilities(self, timesteps: int | None = None) -> np.ndarray:
        """As :meth:`BaselineResult.probabilities`, from the features of the input cut to
        ``timesteps`` composites."""
        from sarcrop.data.store import DatasetStore

        if (kept := self._kept(timesteps)) is not None:
            return kept
        assert self.checkpoint is not None
        test = DatasetStore(self.test_store)
        extractor, _, _ = load_extractor(self.checkpoint, test, self.bands, raw=self.raw)
        features = FeatureDataset(self.test_set(), extractor, timesteps)
        predict = predict_proba_patches if self.classes else predict_patches
        return np.stack(
            [predict(self.model, features[i]["image"].numpy()) for i in range(len(features))]
        )

    def to_dict(self) -> dict[str, Any]:
        record = super().to_dict()
        record.update(
            method="feature_forest",
            features={
                "checkpoint": str(self.checkpoint),
                "layer": LAYER,
                "network_features": self.feature_width,
                "network_bands": self.network_bands,
                "raw_series": self.raw,
            },
        )
        return record


def load_extractor(
    checkpoint: str | Path,
    store: Any,
    bands: Sequence[str] | None = None,
    *,
    raw: bool = True,
) -> tuple[FeatureExtractor, dict[str, Any], list[str]]:
    """The frozen network of ``checkpoint`` for ``store``'s ``bands``, and its input scaling.

    A frozen network reads the bands it was trained on where ``bands`` hold them all (a VH
    model gets VH of a VH|VV patch; the series still give the forest every band): with no
    layer left to learn, the paper's Eq. 3 averaging would only shift its features. Otherwise
    its first layer is adapted to ``bands`` (Eq. 3). Inputs are scaled as ``finetune`` scales
    them for the pre-trained strategies (``"pretrained"``).
    """
    from sarcrop import pretrained
    from sarcrop.models import SegmentationModel, adapt_input_bands
    from sarcrop.training.api import _transfer_normalization
    from sarcrop.training.checkpoint import load_checkpoint, read_metadata, require_network
    from sarcrop.training.config import TrainConfig

    path = pretrained.resolve(checkpoint)
    meta = read_metadata(path)
    require_network(meta, path, "take features from")
    if store.steps != meta.time_steps:
        raise InputDataError(
            f"model {path} has {meta.time_steps} time steps, the store {store.steps}", store.path
        )
    bands = chosen_bands(bands, meta.bands)
    missing = [b for b in bands if b not in store.bands]
    if missing:
        raise InputDataError(f"bands {', '.join(missing)} not in the store", store.path)
    model, _ = load_checkpoint(path)
    own = [bands.index(b) for b in meta.bands] if set(meta.bands) <= set(bands) else None
    if own is None:
        assert isinstance(model, SegmentationModel)
        adapt_input_bands(model, bands, meta.bands)
    stats, _ = _transfer_normalization("pretrained", store, bands, meta, path, TrainConfig())
    return FeatureExtractor(model, raw=raw, network_bands=own), stats, bands


def run_feature_forest(
    checkpoint: str | Path,
    store: Any,
    options: BaselineOptions | None = None,
    *,
    test_store: Any = None,
    bands: Sequence[str] | None = None,
    positive: Sequence[str] | str | None = None,
    timesteps: int | Literal["all"] | None = None,
    raw: bool = True,
    jobs: int | None = -1,
    fold: ParcelFold | None = None,
) -> FeatureForestResult:
    """Fit the forest on the frozen ``checkpoint``'s features of ``store``'s train split.

    Everything else is :func:`sarcrop.evaluation.baseline.run_baseline`'s: ``options`` (trees,
    sample caps, ``label_fraction`` and ``seed``, so the same parcels as the forest and the
    networks), the test split of ``test_store`` (default ``store``), ``positive`` and
    ``timesteps`` (None, t or ``"all"``; at t the features are those of the input cut to t).
    ``bands`` default to the checkpoint's; ``checkpoint`` may be a shipped model's name.
    ``options.classes`` fits a crop-type forest of those classes (``class_confusions``).
    A ``fold`` of parcels learns from its ``train`` labels and scores its ``held_out`` fields.
    The forest learns the features of full seasons only, whatever ``options.early_season``
    says (copies would cost a network pass per step), and records ``early_season`` false.
    """
    from sarcrop.data.normalization import Normalization
    from sarcrop.training.config import every_timestep, positive_classes, timestep_list

    options = (
        BaselineOptions() if options is None else as_options(BaselineOptions, options, "options")
    )
    # What it learns, and so what it records: zero-padded features are no network's view of
    # an early season.
    options = options.updated(early_season=False)
    train_store, test = open_stores(store, test_store)
    classes = None if options.classes is None else list(options.classes)
    positive = positive_classes(train_store, positive, classes=classes)
    extractor, stats, bands = load_extractor(checkpoint, train_store, bands, raw=raw)
    scaling = Normalization.from_dict(stats)
    splits = forest_splits((train_store, test), options, (positive, classes), bands, scaling, fold)
    train_set, test_set = splits.train, splits.test
    check_patches(test_set, "test", test.path)
    confusions: dict[int, BinaryConfusion] = {}
    class_confusions: dict[int, MulticlassConfusion] = {}
    try:
        n_classes = len(classes) if classes else 2
        model = fit_forest(FeatureDataset(train_set, extractor), options, jobs, n_classes=n_classes)
        wanted = timestep_list(timesteps, train_store.steps)
        kept = kept_maps(wanted, every_timestep=every_timestep(timesteps))
        for t in wanted:
            features = FeatureDataset(test_set, extractor, t)
            whole = [None]  # the features are already those of the first t composites
            at_t: dict[int | None, list[np.ndarray]] | None = {None: kept[t]} if t in kept else None
            if classes:
                class_confusions[t] = forest_class_confusions(
                    model, features, whole, classes, kept=at_t
                )[None]
            else:
                confusions[t] = forest_confusions(
                    model, features, whole, options.threshold, kept=at_t
                )[None]
    except EvaluationInputError as exc:
        raise InputDataError(str(exc), train_store.path) from None
    return FeatureForestResult(
        model=model,
        options=options,
        store=train_store.path,
        test_store=test.path,
        positive=positive,
        bands=bands,
        normalization=stats,
        train_patches=len(train_set),
        test_patches=len(test_set),
        steps=train_store.steps,
        confusions=confusions,
        every_timestep=every_timestep(timesteps),
        label_subset=splits.label_subset,
        classes=classes,
        class_confusions=class_confusions,
        checkpoint=Path(str(checkpoint)),
        raw=raw,
        feature_width=extractor.width,
        network_bands=[bands[i] for i in extractor.network_bands or range(len(bands))],
        kept_probabilities=stacked(kept),
    )


def probability_maps(result: FeatureForestResult) -> np.ndarray:
    """Maize probability ``(N, H, W)`` of every test patch (the experiments' saved maps), or
    every class's ``(N, K, H, W)`` for a crop-type forest; no data becomes 0."""
    return np.nan_to_num(result.probabilities())
