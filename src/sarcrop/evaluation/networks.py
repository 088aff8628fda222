"""A trained network (a checkpoint) scored on a store's split: ``evaluate``, and the one path
by which it and an experiment's test maps run a model over patches.

Kept apart from training so that scoring a model does not import Lightning.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from sarcrop import pretrained
from sarcrop.data.split import check_unlearnt
from sarcrop.data.store import DatasetStore
from sarcrop.errors import CheckpointError, ConfigError, InputDataError
from sarcrop.training.checkpoint import (
    CheckpointMetadata,
    load_checkpoint,
    warn_season_cut_short,
)
from sarcrop.training.config import every_timestep, timestep_list
from sarcrop.training.ordering import pad_steps
from sarcrop.training.strategies import crop_outputs, merge_head
from sarcrop.utils.memory import reuse_freed_memory
from sarcrop.utils.validation import whole_number

if TYPE_CHECKING:
    from sarcrop.data.dataset import PatchDataset


def warn_other_composites(checkpoint: Path, meta: CheckpointMetadata, store: Any) -> None:
    """Warn where the store's composites are not as long as those the model learnt: each step
    then covers another part of the season than its weights read (RI learns none of them)."""
    learnt = (meta.season or {}).get("days")
    days = store.season.days
    if learnt and days != learnt:
        warnings.warn(
            f"{checkpoint.name} learnt composites of {learnt} days, and {store.path} holds "
            f"composites of {days}: each of the {store.steps} steps covers another part of the "
            f"season than the model learnt; prepare the store with --days {learnt} to match",
            stacklevel=3,
        )


def scoring_device(device: str | None) -> torch.device:
    """The device to score on: ``None`` or ``auto`` picks cuda where torch sees a GPU, as
    predict does; a name torch does not know, or cuda without a GPU, is one line."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda: torch sees no CUDA GPU here (use cpu or auto)")
    return chosen


def learnt_labels(meta: CheckpointMetadata) -> bool:
    """Whether a checkpoint learnt from labels (a self-supervised reconstruction did not)."""
    return bool(meta.training.get("objective", "segment") != "reconstruct")


def one_crop_view(
    model: nn.Module,
    meta: CheckpointMetadata,
    positive: Sequence[str] | str,
    checkpoint: str | Path | None = None,
) -> tuple[nn.Module, CheckpointMetadata]:
    """A crop-type model read as a map of ``positive`` (one or more of its classes) against
    the rest: the log-odds of their summed probability (:func:`merge_head`), which is where a
    one-crop fine-tuning of it starts. A one-crop model of that crop comes back as it is."""
    wanted = [positive] if isinstance(positive, str) else list(positive)
    try:
        crop = crop_outputs(meta.target_classes or (), meta.positive, wanted)
    except ValueError as exc:
        raise CheckpointError(str(exc), checkpoint) from None
    if crop is None:
        return model, meta
    merge_head(model, crop)
    options = {**meta.options, "out_channels": 1, "merged_head": crop}
    update = {"target_classes": None, "positive": wanted, "options": options}
    return model, meta.model_copy(update=update)


def scoring_model(
    checkpoint: str | Path, positive: Sequence[str] | str | None = None
) -> tuple[nn.Module, CheckpointMetadata]:
    """``checkpoint`` loaded to be scored (read as ``positive`` where given), refused where
    no score would mean anything: a model that learnt no labels."""
    model, meta = load_checkpoint(checkpoint)
    if not learnt_labels(meta):
        raise CheckpointError(
            "a self-supervised (reconstruct) model maps no crop; fine-tune it first", checkpoint
        )
    if positive:
        model, meta = one_crop_view(model, meta, positive, checkpoint)
    return model, meta


def model_to_score(
    checkpoint: str | Path, store: Any, positive: Sequence[str] | str | None = None
) -> tuple[nn.Module, CheckpointMetadata]:
    """:func:`scoring_model` for ``store``, refused for another season length. Whether the
    test patches show ground the model learnt from is the caller's check (``evaluate``'s; an
    experiment checks its scenarios before it trains)."""
    model, meta = scoring_model(checkpoint, positive)
    check_season_length(meta, DatasetStore.open(store), checkpoint)
    return model, meta


def check_season_length(meta: CheckpointMetadata, store: Any, checkpoint: str | Path) -> None:
    """Refuse a store of another number of composites than the model reads."""
    if store.steps != meta.time_steps:
        raise CheckpointError(
            f"model has {meta.time_steps} time steps, store {store.path} has {store.steps}",
            checkpoint,
        )


def scored_patches(store: Any, split: str, meta: CheckpointMetadata) -> PatchDataset:
    """The patches of ``store``'s ``split`` as the model of ``meta`` reads them (its bands,
    positive crop or classes, and normalisation), unaugmented."""
    from sarcrop.data.dataset import PatchDataset

    return PatchDataset(
        store,
        split,
        meta.positive,
        meta.bands,
        normalization=meta.normalization,
        classes=meta.target_classes,
    )


def split_probabilities(
    model: nn.Module,
    patches: PatchDataset,
    steps: Sequence[int],
    *,
    batch_size: int = 8,
    device: torch.device | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[dict[str, Any], dict[int, torch.Tensor]]]:
    """Each batch of ``patches`` with the model's probabilities from its first ``t``
    composites (the later ones zero-padded) for every ``t`` in ``steps``: sigmoid ``(B, H, W)``
    of a one-crop model, softmax ``(B, K, H, W)`` of a crop-type one (patches read for
    classes). The one path by which ``evaluate`` and an experiment's test maps run a model over
    a split."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    crop_types = patches.target_classes is not None
    model.to(device).eval()
    loader = DataLoader(patches, batch_size=batch_size, num_workers=num_workers)
    with torch.inference_mode():
        for batch in loader:
            image = batch["image"].to(device)
            probabilities = {}
            for t in steps:
                logits = model(pad_steps(image, t)).float()
                probabilities[t] = (
                    torch.softmax(logits, dim=1) if crop_types else torch.sigmoid(logits[:, 0])
                )
            yield batch, probabilities


def probability_value(value: object) -> float:
    """A threshold given as a number or as text (a notebook's ``"0.5"``)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number between 0 and 1, got {value!r}") from None


def evaluate(
    checkpoint: str | Path,
    store: Any,
    *,
    split: str = "test",
    timesteps: int | Literal["all"] | None = None,
    batch_size: int = 8,
    threshold: float | None = None,
    device: str | None = None,
    num_workers: int = 0,
    out: str | Path | None = None,
    positive: Sequence[str] | str | None = None,
    other_fields: bool = False,
) -> dict[str, Any]:
    """IoU/precision/recall/F1 of the positive class over a whole split (one confusion matrix).

    ``checkpoint`` is a ``.safetensors`` file or the name of one shipped with sarcrop
    (``"europe-maize"``): the shipped model scored as it is, without fine-tuning. ``positive``
    scores a crop-type model's map of one (or more) of its classes against the rest
    (:func:`one_crop_view`).

    A crop-type checkpoint (``target_classes`` in its metadata) is scored by one ``K × K``
    matrix instead: per-class IoU/precision/recall/F1, mIoU, overall accuracy and kappa
    (:class:`~sarcrop.evaluation.metrics.MulticlassConfusion`); ``threshold`` does not apply.
    ``timesteps=None`` evaluates the full season, an integer ``t`` the input with only the first
    ``t`` composites, ``"all"`` additionally every ``t = 1..T`` (early-season curve) under
    ``"early_season"``, and for a binary model the IoU's parcel-bootstrap interval at each
    ``t`` under ``"early_season_intervals"``. Inputs are scaled with the checkpoint's
    normalisation statistics. A test split over ground the model learnt from is refused;
    ``other_fields`` scores one whose labels (another label file) are fields it did not learn.
    """
    from sarcrop.evaluation.metrics import (
        MulticlassConfusion,
        empty_confusion,
        write_metrics_json,
    )
    from sarcrop.evaluation.parcel_scores import evaluation_by_parcel

    reuse_freed_memory()
    if not whole_number(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number of patches >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    checkpoint = pretrained.resolve(checkpoint)
    model, meta = scoring_model(checkpoint, positive)  # the checkpoint's errors first
    store = DatasetStore.open(store)
    check_season_length(meta, store, checkpoint)
    warn_other_composites(Path(checkpoint), meta, store)
    steps = meta.time_steps
    wanted = timestep_list(timesteps, steps)
    every = every_timestep(timesteps)
    if timesteps is not None and not every:
        name = pretrained.display_name(checkpoint)
        crop_types = bool(meta.target_classes)
        warn_season_cut_short(
            name, meta.learnt_early_seasons(), wanted[-1], steps, crop_types=crop_types
        )
    threshold = meta.class_threshold() if threshold is None else probability_value(threshold)
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be between 0 and 1, got {threshold}")
    if split == "test":
        check_unlearnt(meta.training.get("ground", []), store, other_fields=other_fields)
    classes = meta.target_classes
    if split != "all" and not store.indices(split):
        held = ", ".join(f"{n} {name}" for name, n in Counter(store.split).items())
        raise InputDataError(
            f"no {split} patch to score (the store holds {held} patches); --split "
            f"{'train' if split == 'test' else 'test'} or all scores those",
            store.path,
        )
    dataset = scored_patches(store, split, meta)
    target_device = scoring_device(device)
    confusions = {t: empty_confusion(classes) for t in wanted}
    # Target indices at the headline t, and at every t where every t is scored (binary).
    every_t = every and classes is None
    predictions: dict[int, list[np.ndarray]] = {t: [] for t in (wanted if every_t else wanted[-1:])}
    batches = split_probabilities(
        model,
        dataset,
        wanted,
        batch_size=batch_size,
        device=target_device,
        num_workers=num_workers,
    )
    for batch, probabilities in batches:
        target = batch["target"].to(target_device)
        valid = batch["valid"].to(target_device)
        for t, prob in probabilities.items():
            confusion = confusions[t]
            if isinstance(confusion, MulticlassConfusion):
                confusion.update(prob, target, valid)
                chosen = prob.argmax(dim=1)
            else:
                confusion.update(prob, target, valid, threshold=threshold)
                chosen = prob >= threshold
            if t in predictions:
                predictions[t].append(chosen.cpu().numpy())
    headline = confusions[wanted[-1]]
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "store": str(store.path),
        "split": split,
        "patches": len(dataset),
        "positive": meta.positive,
        "bands": meta.bands,
        "timesteps": steps if every else wanted[-1],
        "threshold": threshold,
        "metrics": headline.as_dict(),
    }
    if classes is not None:
        del result["threshold"]
        result["classes"] = list(classes)
    if every:
        result["early_season"] = {t: confusions[t].as_dict() for t in wanted}
    predicted = {t: np.concatenate(p) if p else np.zeros(0) for t, p in predictions.items()}
    early = predicted if every_t else None
    result.update(evaluation_by_parcel(dataset, predicted[wanted[-1]], early))
    if out is not None:
        write_metrics_json(out, result)
    return result
