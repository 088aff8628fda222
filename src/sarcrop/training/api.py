"""Train, fine-tune and evaluate: the Python API behind ``sarcrop train|finetune|evaluate``.

A run writes everything into its output directory::

    out_dir/
      run.json            configuration fingerprint, status and result of the run
      metrics.csv         train/val metrics per step and epoch
      last.ckpt           Lightning state for resuming (pickle-based: only read from here)
      best.ckpt           Lightning state of the best validation IoU so far (if validated)
      model.safetensors   the exported best model with full metadata (the deliverable)

Re-running the same command on the same ``out_dir`` resumes an interrupted run from
``last.ckpt`` (or returns at once if it had finished); a different configuration is refused
rather than mixed with the old run.

Few labels (:class:`TrainConfig`): ``label_fraction`` trains on a seeded subset of the train
split's parcels (validation uses only labels inside it), ``augment`` flips and rotates the
training patches, ``pos_weight: auto`` balances BCE by the training labels, ``val_fraction: 0``
trains a fixed number of epochs and keeps the last weights, and ``normalization: fixed`` scales
inputs by fixed dB ranges rather than by the store's statistics.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    ModelCheckpoint,
    Timer,
)
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from sarcrop import pretrained
from sarcrop.data.split import learnt_ground
from sarcrop.data.store import DatasetStore
from sarcrop.errors import CheckpointError, ConfigError, InputDataError
from sarcrop.evaluation.networks import (
    check_season_length,
    learnt_labels,
    warn_other_composites,
)
from sarcrop.evaluation.networks import evaluate as evaluate  # sarcrop.training.evaluate
from sarcrop.options import as_options
from sarcrop.training.calibration import (
    ThresholdChoice,
    choose_threshold,
    labelled_pixels,
    shift_threshold,
)
from sarcrop.training.checkpoint import (
    CheckpointMetadata,
    file_sha256,
    load_checkpoint,
    read_metadata,
    require_network,
    save_checkpoint,
)
from sarcrop.training.config import (
    AUTO_POS_WEIGHT_CAP,
    GPU_LOADER_WORKERS,
    MODEL_FILE,
    TrainConfig,
    positive_classes,
)
from sarcrop.training.logger import MetricsCSVLogger
from sarcrop.training.losses import balanced_class_weights, balanced_pos_weight
from sarcrop.training.ordering import (
    ShardedBatchSampler,
    TimestepBatchSampler,
    TimestepDataset,
)
from sarcrop.training.strategies import (
    STRATEGIES,
    apply_strategy,
    head_rows,
    keeps_head,
    merge_head,
    parameter_counts,
    parent_class,
    parent_names,
    replace_head,
)
from sarcrop.training.task import SegmentationTask, monitored_metric, monitored_mode
from sarcrop.utils.atomic import atomic_path, write_text_atomic
from sarcrop.utils.environment import environment
from sarcrop.utils.memory import reuse_freed_memory
from sarcrop.utils.signals import signal_handler
from sarcrop.utils.validation import chosen_bands

if TYPE_CHECKING:
    from sarcrop.data.parcels import LabelMask
    from sarcrop.training.search import FoldRun, SearchChoice

RUN_FILE = "run.json"
# A validation IoU over fewer labelled fields (connected parcels) than this moves by a whole
# field's share from one epoch to the next, so selecting on it is a draw (a rule of thumb; in
# docs/training.md two validation patches of six to eight fields cost 0.4 IoU on real maize).
MIN_VALIDATION_FIELDS = 10


@dataclass(frozen=True)
class TrainResult:
    """Where a run's outputs are and how it went."""

    out_dir: Path
    checkpoint: Path
    best_val_iou: float | None  # the validation mIoU of a crop-type (``classes``) run
    best_epoch: int | None
    epochs: int
    resumed: bool = False
    label_subset: dict[str, Any] | None = None  # fraction and parcels of a few-label run
    search: dict[str, Any] | None = None  # the held-out search's scores and choice
    threshold: dict[str, Any] | None = None  # the bias strategy's choice (ThresholdChoice)
    out_of_time: bool = False  # stopped by ``max_time``: run again to go on

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(out_dir=str(self.out_dir), checkpoint=str(self.checkpoint))
        return data


# ------------------------------------------------------------------------------ data


def split_train_val(
    dataset: Dataset, val_fraction: float, seed: int = 0
) -> tuple[Subset, Subset | None]:
    """Random, seeded patch-level split of the training split into train and validation.

    ``val_fraction=0`` keeps every patch for training and returns no validation set.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if val_fraction == 0:
        if n < 1:
            raise InputDataError("no training patches")
        return Subset(dataset, list(range(n))), None
    if n < 2:
        raise InputDataError(f"need at least 2 training patches to carve a validation set, got {n}")
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    return Subset(dataset, sorted(order[n_val:].tolist())), Subset(dataset, sorted(order[:n_val]))


class _Data(L.LightningDataModule):
    """Builds the loaders once the process group exists, so samplers know their rank."""

    def __init__(
        self, train: Dataset, val: Dataset | None, config: TrainConfig, time_steps: int
    ) -> None:
        super().__init__()
        self.train_set = TimestepDataset(train, time_steps)
        self.val_set = None if val is None else TimestepDataset(val, time_steps)
        self.config = config
        self.time_steps = time_steps

    def _loader(self, dataset: Dataset, batch_sampler: Any) -> DataLoader:
        # Worker processes start afresh each epoch (not persistent), seeded from the main
        # process's random state, which checkpoints hold: a resumed run draws the random
        # augmentations of the run it resumes. They start at the epoch's first batch, once
        # Lightning has set the batch sampler's epoch, as a loader without workers reads its
        # batches (else a resumed run's first epoch would take the order of epoch 0).
        workers = loader_workers(self.config)
        return (_LoaderStartingAtFirstBatch if workers > 0 else DataLoader)(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=workers,
            pin_memory=_on_gpu(self.config),  # page-locked batches copy to the GPU asynchronously
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        assert trainer is not None, "the data module must be attached to a Trainer"
        sampler = TimestepBatchSampler(
            len(self.train_set),
            self.config.batch_size,
            self.time_steps,
            self.config.ordering,
            coverage=self.config.ordering_coverage,
            seed=self.config.seed,
            num_replicas=trainer.world_size,
            rank=trainer.global_rank,
        )
        sampler.set_epoch(trainer.current_epoch)  # right order also when resuming
        return self._loader(self.train_set, sampler)

    def val_dataloader(self) -> Any:
        trainer = self.trainer
        assert trainer is not None, "the data module must be attached to a Trainer"
        if self.val_set is None:
            return []  # no validation (the trainer runs none either)
        sampler = ShardedBatchSampler(
            len(self.val_set),
            self.config.batch_size,
            self.time_steps,
            num_replicas=trainer.world_size,
            rank=trainer.global_rank,
        )
        return self._loader(self.val_set, sampler)


class _LoaderStartingAtFirstBatch(DataLoader):
    """A DataLoader whose iterator starts its worker processes, which take their first batches
    from the batch sampler at once, when the first batch is asked for rather than when it is
    made: Lightning makes a run's first iterator before it sets the sampler's epoch."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # any iterator will do
        return _StartedAtFirstNext(super().__iter__)


class _StartedAtFirstNext(Iterator[Any]):
    """An iterator made by ``start`` at the first ``next``."""

    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start = start
        self._iterator: Iterator[Any] | None = None

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


# ------------------------------------------------------------------------------ runs


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written through :func:`sarcrop.utils.atomic.atomic_path`."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class _RandomState(Callback):
    """Torch's random state (the dropout's and augmentations' draws) in every checkpoint a
    run resumes from, so that a resumed run goes on as the run it resumes, with validation or
    without."""

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state(state_dict["cuda"])


class _LastEveryFewSeconds(Checkpoint):
    """``last.ckpt`` of a run without validation, to resume from: Lightning writes its last
    checkpoint only beside a top-k one, which such a run never saves. Written at the end of
    the first epoch, then of the epoch that ends ``every`` seconds after the last write, so
    that the short epochs of a few labels do not wait on the disk (an interrupted run loses at
    most that much), and of the epoch ``max_time`` ends."""

    def __init__(self, path: Path, every: float = 10.0) -> None:
        self.path, self.every = path, every
        self.written: float | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = self.written is None or time.monotonic() - self.written >= self.every
        due = due or trainer.should_stop  # max_time ends the run here: its last epoch
        # Saving ends in a barrier that every process must reach: process 0's clock decides
        # for all, or one process would wait there while another waits in the next step.
        if trainer.strategy.broadcast(due):
            trainer.save_checkpoint(self.path)
            self.written = time.monotonic()


def _fit_interruptibly(trainer: L.Trainer, task: Any, data: Any, resume: Path | None) -> None:
    """``trainer.fit``, where Ctrl-C is a ``KeyboardInterrupt`` as everywhere else in sarcrop:
    Lightning turns it into ``sys.exit(1)`` and ignores SIGINT from then on."""
    try:
        with signal_handler(signal.SIGINT):  # the handler before, again after Lightning's
            trainer.fit(task, datamodule=data, ckpt_path=resume, weights_only=True)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def _read_run(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError("unreadable run record; remove it to start over", path) from None


def _write_run(out_dir: Path, record: dict[str, Any]) -> None:
    if global_zero():
        write_text_atomic(out_dir / RUN_FILE, json.dumps(record, indent=2, default=str) + "\n")


def _on_gpu(config: TrainConfig) -> bool:
    return config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )


def loader_workers(config: TrainConfig) -> int:
    """``config.num_workers``, else none on CPU and up to GPU_LOADER_WORKERS per GPU process."""
    if config.num_workers is not None:
        return config.num_workers
    if not _on_gpu(config):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = (cores or 1) // max(1, torch.cuda.device_count())
    return max(0, min(GPU_LOADER_WORKERS, per_process - 1))  # one core drives the GPU


def _deterministic(config: TrainConfig) -> bool:
    if config.deterministic is not None:
        return config.deterministic
    return not _on_gpu(config)


def _prepare_model(model: nn.Module, config: TrainConfig) -> None:
    """channels_last and torch.compile, in place: parameter names (checkpoint keys) unchanged."""
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if config.compile:
        model.compile()


def _restore_model(model: nn.Module, config: TrainConfig) -> None:
    """Undo :func:`_prepare_model`, so the exported model is a plain contiguous module."""
    if config.channels_last:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if config.compile:
        model._compiled_call_impl = None  # what nn.Module.compile() set


# Lightning's start-up chatter and warnings that say nothing about a sarcrop run.
_IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r"Checkpoint directory .* exists and is not empty.*",
    r"The number of training batches .* is smaller than the logging interval.*",
    r".*does not have many workers which may be a bottleneck.*",
    # Frozen parts of a fine-tuned model are pinned to eval mode on purpose (see strategies).
    r"Found \d+ module\(s\) in eval mode at the start of training.*",
)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Keep Lightning's info messages and known-harmless warnings out of the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _IGNORED_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_hardware(config: TrainConfig) -> None:
    """Refuse, in one line, hardware settings this machine or Lightning cannot run: a GPU
    asked for where torch sees none, or a distributed strategy Lightning does not know."""
    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"accelerator {config.accelerator}: torch sees no GPU here (CUDA is not available "
            "to it); use --accelerator cpu, or auto (a GPU where there is one)"
        )
    from lightning.pytorch.strategies import StrategyRegistry

    known = StrategyRegistry.available_strategies()
    if config.distributed.lower() not in ("auto", *known):
        shown = ", ".join(["auto", *(name for name in known if "_" not in name)])
        raise ConfigError(
            f"distributed {config.distributed!r} is not a Lightning strategy (such as {shown})"
        )


def _trainer(
    out_dir: Path, config: TrainConfig, callbacks: list[Callback], validate: bool
) -> L.Trainer:
    """Lightning's Trainer for a run; settings it refuses (more devices than the machine
    has, say) are a one-line ConfigError."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return _lightning_trainer(out_dir, config, callbacks, validate)
    except (MisconfigurationException, TypeError, ValueError) as exc:
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"hardware settings: {problem}") from None


def _lightning_trainer(
    out_dir: Path, config: TrainConfig, callbacks: list[Callback], validate: bool
) -> L.Trainer:
    return L.Trainer(
        limit_val_batches=None if validate else 0,
        default_root_dir=out_dir,
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.distributed,
        precision=config.precision,
        deterministic=_deterministic(config),
        gradient_clip_val=config.gradient_clip,
        callbacks=callbacks,
        logger=MetricsCSVLogger(out_dir / "metrics.csv"),
        plugins=[_AtomicCheckpointIO()],
        log_every_n_steps=config.log_every_n_steps,
        enable_progress_bar=config.progress_bar,
        enable_model_summary=config.progress_bar,
        use_distributed_sampler=False,  # the batch samplers shard by rank themselves
    )


def fit(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    out_dir: str | Path,
    config: TrainConfig,
    metadata: CheckpointMetadata,
    *,
    callbacks: Sequence[Callback] = (),
    start: Mapping[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_data`` with model selection on ``val_data``; export the best.

    The lower-level entry point under :func:`train` and :func:`finetune`, usable with any
    dataset yielding PatchDataset-style items. ``metadata`` describes the model and data and
    is completed with a training summary in ``out_dir/model.safetensors``. Extra Lightning
    ``callbacks`` are added to the trainer. Without ``val_data`` the run trains all
    ``config.epochs`` (no early stopping) and exports the last epoch's weights.
    ``config.interpolation`` below 1 exports ``(1 - a) * start + a * trained`` instead, with
    ``start`` the weights fine-tuning began from (:func:`finetune` passes them); at 0 that is
    the start itself, so nothing is trained. ``config.distillation`` pulls the unlabelled
    pixels towards the start's predictions while training. A ``bias`` run (``metadata.strategy``)
    trains nothing either: it moves the model's threshold to the labelled pixels' best
    (:mod:`sarcrop.training.calibration`).
    """
    if config.interpolation < 1 and start is None:
        raise ConfigError(
            "interpolation mixes fine-tuned weights with the pre-trained start: only "
            "fine-tuning (ft, fte, ftd) has one; leave it at 1"
        )
    if config.distillation > 0 and start is None:
        raise ConfigError(
            "distillation learns from the pre-trained start's predictions: only fine-tuning "
            "(ft, fte, ftd) has one; leave it at 0"
        )
    out_dir = Path(out_dir)
    reuse_freed_memory()
    settings = config.fingerprint()
    trains = metadata.strategy != "bias" and not (start is not None and config.interpolation == 0)
    workers = loader_workers(config)
    if trains and workers > 0 and config.draws_augmentations:
        # The workers draw the augmentations: how many there are changes what the run learns.
        settings["num_workers"] = workers
    if trains:
        check_hardware(config)
    fingerprint: dict[str, Any] = {
        "config": settings,
        # A binary run's fingerprint is what it was before crop-type models existed.
        "metadata": metadata.model_dump(
            exclude={"created", "training", "version"}
            | ({"target_classes"} if metadata.target_classes is None else set())
        ),
        "train_patches": len(train_data),  # type: ignore[arg-type]
        "val_patches": len(val_data) if val_data is not None else 0,  # type: ignore[arg-type]
    }
    if (store := _store_of(train_data)) is not None:
        # What the store holds, not where: prepared again from other labels, it is other data.
        fingerprint["store"] = store.content_token()
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    record = _read_run(out_dir)
    last = out_dir / "last.ckpt"
    if record is not None and _stopped_before_learning(record, out_dir):
        record = None  # a run that failed before its first checkpoint holds nothing to keep
    recorded = None if record is None else _placed(record.get("fingerprint"))
    if record is not None and not _same_run(recorded, _placed(fingerprint)):
        changes = _changes({"fingerprint": recorded}, _placed(fingerprint))
        raise ConfigError(
            f"holds a run with a different configuration ({changes}); use another output directory",
            out_dir,
        )
    if record is None and last.exists():
        raise ConfigError(
            "holds a last.ckpt from an unknown run; use another output directory", out_dir
        )
    if record and record.get("status") == "complete" and (out_dir / MODEL_FILE).is_file():
        done = dict(record["result"])  # its paths as the run gave them, maybe elsewhere
        here = {"out_dir": out_dir, "checkpoint": out_dir / MODEL_FILE, "resumed": True}
        return TrainResult(**{**done, **here})
    resume = last.is_file()
    _write_run(out_dir, {"status": "running", "fingerprint": fingerprint})

    multiclass = config.classes is not None
    calibration = None
    weights: dict[str, Any] = {}  # the loss's class balance, where gradients train weights
    if metadata.strategy == "bias":  # one number learns, by a search instead of gradients
        calibration = _calibrate(model, train_data, val_data, config.threshold)
        selection = f"threshold {calibration.threshold:g} of the labelled pixels' best IoU"
        trained = _Trained(0, None, None, selection)
    elif not trains:
        # Weight 0 exports the start as it is: whatever training learnt would be discarded.
        trained = _Trained(0, None, None, "pre-trained start (interpolation 0)")
    else:
        # A reconstruction has no labels to balance.
        pos_weight = (
            1.0 if multiclass or config.reconstructs else resolved_pos_weight(config, train_data)
        )
        class_weight = resolved_class_weight(config, train_data) if multiclass else None
        weights = {"class_weight": class_weight} if multiclass else {"pos_weight": pos_weight}
        data = _Data(train_data, val_data, config, metadata.time_steps)
        teacher = None
        if start is not None and config.distillation > 0:
            teacher = _teacher(model, start)
        task = SegmentationTask(model, config, pos_weight, class_weight, teacher=teacher)
        trained = _train(task, data, out_dir, callbacks, last if resume else None)
    if start is not None and config.interpolation < 1:
        interpolate_weights(model, start, config.interpolation)
    learnt = trained.epochs > 0 and not config.reconstructs
    fit = _fit_on_labels(model, train_data, config) if learnt and global_zero() else {}
    result = TrainResult(
        out_dir=out_dir,
        checkpoint=out_dir / MODEL_FILE,
        best_val_iou=trained.best_val_iou,
        best_epoch=trained.best_epoch,
        epochs=trained.epochs,
        resumed=resume,
        label_subset=metadata.training.get("label_subset"),
        search=metadata.training.get("search"),
        threshold=None if calibration is None else calibration.to_dict(),
        out_of_time=trained.out_of_time,
    )
    trainer = trained.trainer
    writes = trainer.is_global_zero if trainer is not None else global_zero()
    if writes:
        summary = {
            "epochs": trained.epochs,
            "best_val_iou": trained.best_val_iou,
            "best_epoch": trained.best_epoch,
            "selection": trained.selection,
            "objective": config.objective,
            "train_patches": len(train_data),  # type: ignore[arg-type]
            "val_patches": len(val_data) if val_data is not None else 0,  # type: ignore[arg-type]
            **_learnt_from(train_data),
            **weights,
            **({"threshold_search": result.threshold} if result.threshold else {}),
            **({"fit_on_train": fit} if fit else {}),
            "parameters": parameter_counts(model),
            "config": config.model_dump(),
            "environment": environment(),  # which weights a rerun can match bit for bit
        }
        exported = metadata.model_copy(update={"training": {**metadata.training, **summary}})
        save_checkpoint(out_dir / MODEL_FILE, model, exported)
        _write_run(
            out_dir,
            {
                # a run that max_time stopped goes on from last.ckpt when run again
                "status": "stopped" if trained.out_of_time else "complete",
                "fingerprint": fingerprint,
                "result": result.to_dict(),
                "environment": environment(),
            },
        )
    if trainer is not None:
        trainer.strategy.barrier("export")
    return result


def global_zero() -> bool:
    """Whether this is the process that writes, where no trainer knows the ranks."""
    # lightning_utilities sets ``rank`` on the function object; its overloads do not declare it.
    return bool(rank_zero_only.rank == 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Trained:
    """What :func:`fit` records of a training."""

    epochs: int
    best_epoch: int | None
    best_val_iou: float | None
    selection: str
    trainer: L.Trainer | None = None  # None where nothing was trained
    out_of_time: bool = False


def _train(
    task: SegmentationTask,
    data: _Data,
    out_dir: Path,
    callbacks: Sequence[Callback],
    resume: Path | None,
) -> _Trained:
    """Train ``task.model`` in place with Lightning, from ``resume``'s state if given; it ends
    with the selected epoch's weights (the best validation epoch's, else the last one's)."""
    model, config = task.model, task.config
    validate = data.val_set is not None
    L.seed_everything(config.seed, workers=True, verbose=False)
    # Lightning keeps each module's mode; a model fresh from load_checkpoint is in eval mode.
    # Frozen parts stay in eval mode regardless (see strategies).
    model.train()
    _prepare_model(model, config)
    monitor = monitored_metric(config)  # val_iou, val_miou (crop types), val_loss (reconstruct)
    mode = monitored_mode(config)
    checkpointing = ModelCheckpoint(
        dirpath=out_dir,
        filename="best",
        monitor=monitor if validate else None,
        mode=mode,
        save_top_k=1 if validate else 0,
        save_last=True,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    callbacks = [checkpointing, _RandomState(), *callbacks]
    early = None
    if config.patience is not None and validate:
        early = EarlyStopping(monitor=monitor, mode=mode, patience=config.patience)
        callbacks.append(early)
    if not validate:
        callbacks.append(_LastEveryFewSeconds(out_dir / "last.ckpt"))
    # max_time is checked as each epoch ends: a run stopped by it resumes at an epoch's start,
    # as the run never stopped would go on (Trainer(max_time=...) stops after any step).
    timer = None if config.max_time is None else Timer(duration=config.max_time, interval="epoch")
    if timer is not None:  # kept, to ask it afterwards
        callbacks.append(timer)
    with _quiet_lightning():
        trainer = _trainer(out_dir, config, callbacks, validate)
        try:
            _fit_interruptibly(trainer, task, data, resume)
        finally:
            _restore_model(model, config)

    best_path = checkpointing.best_model_path
    best_epoch = None
    if best_path:
        state = torch.load(best_path, map_location="cpu", weights_only=True)
        model.load_state_dict(
            {
                k.removeprefix("model."): v
                for k, v in state["state_dict"].items()
                if k.startswith("model.")
            }
        )
        best_epoch = int(state["epoch"])
    elif not validate:  # the model holds the last epoch's weights
        best_epoch = trainer.current_epoch - 1
    score = checkpointing.best_model_score if validate and not config.reconstructs else None
    best_iou = None if score is None or math.isnan(float(score)) else float(score)
    selection = f"best {monitor}" if validate else "last epoch"
    epochs = trainer.current_epoch
    out_of_time = timer is not None and _out_of_time(trainer, timer, early, config.epochs)
    return _Trained(epochs, best_epoch, best_iou, selection, trainer, out_of_time)


def _out_of_time(
    trainer: L.Trainer, timer: Timer, early: EarlyStopping | None, epochs: int
) -> bool:
    """Whether ``max_time`` ended the fit, rather than its epochs or early stopping: a run
    whose last epoch ends after the time is up is complete."""
    left = timer.time_remaining()
    stopped = left is not None and left <= 0
    stopped = bool(trainer.strategy.broadcast(stopped))  # process 0's clock decides for all
    ended = trainer.current_epoch >= epochs or (early is not None and early.stopped_epoch > 0)
    return stopped and not ended


def _calibrate(
    model: nn.Module, train_data: Dataset, val_data: Dataset | None, cut: float
) -> ThresholdChoice:
    """The ``bias`` strategy's training: the threshold of the best IoU on every labelled pixel
    of the run (both parts: nothing is selected on the validation part), moved to ``cut``, the
    threshold the model is used with."""
    parts = [_as_they_are(data) for data in (train_data, val_data) if data is not None]
    choice = choose_threshold(*labelled_pixels(model, ConcatDataset(parts)))
    if choice.positives == 0:
        warnings.warn(
            f"bias: none of the {choice.pixels} labelled pixels is of the positive class, so "
            "the threshold stays at 0.5; label fields of the crop too",
            stacklevel=4,
        )
    elif choice.iou == 0:
        warnings.warn(
            f"bias: at no threshold does the model find one of the {choice.positives} labelled "
            "pixels of the crop (IoU 0), so the threshold stays at 0.5: the model as it is "
            "does not map this crop here; fine-tune it instead (ft, fte, ftd)",
            stacklevel=4,
        )
    shift_threshold(model, choice.threshold, cut)
    return choice


def _as_they_are(data: Dataset) -> Dataset:
    """A training part's patches without its random augmentations."""
    if isinstance(data, Subset) and hasattr(data.dataset, "with_augmentation"):
        return Subset(data.dataset.with_augmentation(), data.indices)
    return data


def _teacher(model: nn.Module, start: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` holding the ``start`` weights (the task freezes it)."""
    teacher = copy.deepcopy(model)
    teacher.load_state_dict(start)
    return teacher


def interpolate_weights(model: nn.Module, start: Mapping[str, torch.Tensor], weight: float) -> None:
    """``model``'s floating-point weights and buffers become ``(1 - weight) * start + weight *
    own``, in place (WiSE-FT, Wortsman et al. 2022): a step back towards the pre-trained
    model keeps more of what it learnt where a few labelled patches would over-fit it."""
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.lerp(start[name].to(value), value, weight))


def class_balance(dataset: Dataset) -> tuple[int, int]:
    """Labelled ``(negative, positive)`` pixels of a dataset of PatchDataset-style items.

    A PatchDataset, or a Subset of one, counts from its labels alone (no image is read and no
    augmentation drawn); any other dataset is iterated once.
    """
    from sarcrop.data.dataset import PatchDataset

    if isinstance(dataset, Subset) and isinstance(dataset.dataset, PatchDataset):
        return dataset.dataset.class_counts(dataset.indices)
    if isinstance(dataset, PatchDataset):
        return dataset.class_counts()
    negative = positive = 0
    for item in range(len(dataset)):  # type: ignore[arg-type]
        sample = dataset[item]
        valid = sample["valid"].bool()
        hits = int((sample["target"][valid] > 0.5).sum())
        positive += hits
        negative += int(valid.sum()) - hits
    return negative, positive


def _same_run(recorded: Any, fingerprint: Mapping[str, Any]) -> bool:
    """Whether a run recorded with ``recorded`` is the run of ``fingerprint``; a run recorded
    before fingerprints held the store's contents is compared without them."""
    if isinstance(recorded, dict) and "store" not in recorded:
        fingerprint = {key: value for key, value in fingerprint.items() if key != "store"}
    return recorded == fingerprint


def _placed(fingerprint: Any) -> Any:
    """A run's ``fingerprint`` without the paths it names (the store its statistics were
    computed on, the parent checkpoint's file), compared when a run resumes: the statistics
    and the parent's content (sha256) stay, so a run resumes in a folder that has moved, or
    that the command names otherwise (relative or absolute, from another folder)."""
    if not isinstance(fingerprint, dict) or not isinstance(fingerprint.get("metadata"), dict):
        return fingerprint
    metadata = {k: v for k, v in fingerprint["metadata"].items() if k != "normalization_source"}
    if isinstance(metadata.get("parent"), dict):
        metadata["parent"] = {k: v for k, v in metadata["parent"].items() if k != "path"}
    return {**fingerprint, "metadata": metadata}


def _changes(record: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str:
    """``lr 0.003 -> 0.001, epochs 20 -> 30``: the settings in which a recorded run differs."""
    before = record.get("fingerprint") or {}
    pairs = []
    for part in ("config", "metadata"):
        old, new = before.get(part) or {}, fingerprint.get(part) or {}
        names = [*new, *(key for key in old if key not in new)]  # a setting left out too
        pairs += [
            f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in names if old.get(k) != new.get(k)
        ]
    pairs += [
        f"{key} {before.get(key)!r} -> {fingerprint[key]!r}"
        for key in ("train_patches", "val_patches")
        if before.get(key) != fingerprint.get(key)
    ]
    if "store" in before and before.get("store") != fingerprint.get("store"):
        pairs.append("the store's patches, labels or split")
    return ", ".join(pairs[:4]) + (", …" if len(pairs) > 4 else "") or "its record differs"


def _stopped_before_learning(record: Mapping[str, Any], out_dir: Path) -> bool:
    """Whether the run recorded in ``out_dir`` stopped (on bad input, say) before it wrote a
    checkpoint: the folder then holds no weights, and another run may start there."""
    written = (out_dir / "last.ckpt").exists() or (out_dir / MODEL_FILE).exists()
    return record.get("status") == "running" and not written


def resolved_pos_weight(config: TrainConfig, train_data: Dataset) -> float:
    """``config.pos_weight``, with ``auto`` counted from the training labels."""
    if config.pos_weight != "auto":
        return float(config.pos_weight)
    from sarcrop.data.dataset import PatchDataset

    negative, positive = class_balance(train_data)
    try:
        return balanced_pos_weight(negative, positive, AUTO_POS_WEIGHT_CAP)
    except ValueError as exc:
        patches = train_data.dataset if isinstance(train_data, Subset) else train_data
        if not isinstance(patches, PatchDataset):
            raise InputDataError(str(exc)) from None
        kind = "/".join(patches.positive) if positive == 0 else "other"
        raise InputDataError(
            f"the training patches hold no {kind} pixel ({exc})", patches.store.path
        ) from None


def resolved_class_weight(config: TrainConfig, train_data: Dataset) -> list[float] | None:
    """Per-class loss weights of a crop-type run: with ``pos_weight: auto`` the capped inverse
    class frequencies of the training labels (:func:`balanced_class_weights`), else none.
    A class without a training pixel is warned of either way."""
    names, counts = _class_counts(config, train_data)
    _warn_unlearnt_classes(names, counts)
    if config.pos_weight != "auto":
        if config.pos_weight != 1.0:
            raise ConfigError(
                "pos_weight weighs one positive class; with classes use 1 or auto (class weights)"
            )
        return None
    try:
        return balanced_class_weights(counts, AUTO_POS_WEIGHT_CAP)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None


def _class_counts(config: TrainConfig, train_data: Dataset) -> tuple[list[str], np.ndarray]:
    """The target classes of ``train_data`` (else ``config.classes``) and the labelled
    training pixels of each."""
    from sarcrop.data.dataset import PatchDataset

    if isinstance(train_data, Subset) and isinstance(train_data.dataset, PatchDataset):
        patches = train_data.dataset
        return list(patches.target_classes or ()), patches.target_counts(train_data.indices)
    if isinstance(train_data, PatchDataset):
        return list(train_data.target_classes or ()), train_data.target_counts()
    names = list(config.classes or ())
    counts = np.zeros(len(names), dtype=np.int64)
    for item in range(len(train_data)):  # type: ignore[arg-type]
        sample = train_data[item]
        target = np.asarray(sample["target"])[np.asarray(sample["valid"], dtype=bool)]
        counts += np.bincount(target.astype(np.int64), minlength=len(counts))
    return names, counts


def _warn_unlearnt_classes(classes: Sequence[str], counts: np.ndarray) -> None:
    """A class without a labelled training pixel (winter cereal where a year grew none) is
    learnt from nothing: its output stays what the start gave it, untrained for a new head."""
    absent = [name for name, count in zip(classes, counts.tolist(), strict=True) if not count]
    if absent:
        warnings.warn(
            f"class {', '.join(absent)} has no labelled pixel among the training labels, so "
            "the model learns nothing of it (its output is the pre-trained head's where it "
            "carries one, else untrained); leave it out of classes where the area grows none",
            stacklevel=3,
        )


# ------------------------------------------------------------------------------ public API


def _bands(store: Any, bands: Sequence[str] | None) -> list[str]:
    return chosen_bands(bands, store.bands)


def _training_data(
    store: Any,
    positive: Sequence[str],
    bands: Sequence[str],
    normalization: Mapping[str, Any],
    config: TrainConfig,
    label_mask: LabelMask | None = None,
) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
    """Train and validation parts of the store's train split, and what labels they use.

    With ``label_fraction < 1`` both parts see only the chosen parcels' labels (patches left
    without any label are dropped), so model selection never peeks at labels outside the
    subset. ``label_mask`` (a fold of an epoch search) replaces that subset. Only the train
    part is augmented.
    """
    from sarcrop.data.dataset import PatchDataset

    split: str | list[int] = "train"
    mask = label_mask
    labels: dict[str, Any] = {"fraction": 1.0}
    if mask is None and config.label_fraction < 1:
        from sarcrop.data.parcels import label_subset

        mask = label_subset(
            store, config.label_fraction, config.seed, positive=positive, classes=config.classes
        )
    if mask is not None:
        split = [
            i for i in store.indices("train") if np.any(mask.apply(i, store.read_labels(i)) >= 0)
        ]
        labels = mask.as_dict()
    dataset = PatchDataset(
        store,
        split,
        positive,
        bands,
        normalization=normalization,
        label_mask=mask,
        classes=config.classes,
    )
    if config.classes is None and not config.reconstructs:
        dataset.store.require_positive(positive, "train")
    train_data, val_data = split_train_val(dataset, config.val_fraction, config.seed)
    if val_data is not None:
        _check_validation_fields(dataset, val_data.indices)
    if config.draws_augmentations:
        augmented = dataset.with_augmentation(
            config.augment, config.level_jitter, config.date_dropout
        )
        train_data = Subset(augmented, train_data.indices)
    return train_data, val_data, labels


def _store_of(data: Dataset) -> DatasetStore | None:
    """The store whose patches ``data`` holds (a PatchDataset, or a Subset of one), if any."""
    while isinstance(data, Subset):
        data = data.dataset
    store = getattr(data, "store", None)
    return store if isinstance(store, DatasetStore) else None


def _learnt_from(data: Dataset) -> dict[str, Any]:
    """``{"patch_size": side, "pixel_size": metres, "orbit": direction}`` of the patches
    ``data`` trains on, where its store records them (empty if not from a store): ``predict``
    maps in windows of that size by default, the size the model learnt and was scored at, and
    names images of another pixel size or a reading of another orbit."""
    store = _store_of(data)
    if store is None:
        return {}
    return {"patch_size": int(store.patch_size), **store.read_as()}


def _check_validation_fields(dataset: Any, items: Sequence[int]) -> None:
    """Warn when the validation patches hold too few labelled fields to select a model on."""
    from sarcrop.data.parcels import UNLABELLED, parcel_ids

    fields = 0
    for item in items:
        _, valid = dataset.target(item)
        labels = np.where(valid, dataset.labels(item), UNLABELLED)
        fields += int(parcel_ids(labels).max(initial=-1)) + 1
        if fields >= MIN_VALIDATION_FIELDS:
            return
    patches = f"{len(items)} validation patch{'' if len(items) == 1 else 'es'}"
    warnings.warn(
        f"model selection on {patches} holding {fields} labelled field{'' if fields == 1 else 's'}"
        " picks an epoch largely by chance; with few labels train a fixed budget without "
        "validation: recipe few-labels (--recipe few-labels), or val_fraction 0",
        stacklevel=4,
    )


def _new_normalization(
    store: Any, bands: Sequence[str], scaling: str
) -> tuple[dict[str, Any], str]:
    """Statistics of a model that has none yet: the store's train split's, or fixed dB ranges."""
    from sarcrop.data.normalization import fixed_normalization

    if scaling == "fixed":
        ranges = fixed_normalization(bands).to_dict()
        return ranges, "fixed dB ranges (sarcrop.data.normalization.FIXED_DB_RANGES)"
    stats = store.normalization.select(bands)
    flat = [b for b, low, high in zip(bands, stats.min, stats.max, strict=True) if not low < high]
    if flat:
        raise InputDataError(
            f"band(s) {', '.join(flat)} hold one value over the train split's valid pixels, "
            "so the statistics scale nothing: leave the band(s) out (--bands) or use "
            "normalization: fixed",
            store.path,
        )
    return stats.to_dict(), f"train split of {store.path}"


def _base_metadata(
    store: Any,
    model: nn.Module,
    bands: Sequence[str],
    positive: Sequence[str],
    normalization: Mapping[str, Any],
    source: str,
    target_classes: Sequence[str] | None = None,
    objective: str = "segment",
) -> CheckpointMetadata:
    from sarcrop.models import model_config

    config = model_config(model)
    name = config.pop("name")
    config.pop("in_bands")
    time_steps = config.pop("time_steps")
    return CheckpointMetadata(
        architecture=name,
        options=config,
        bands=list(bands),
        time_steps=time_steps,
        season=store.season.to_dict(),
        normalization=dict(normalization),
        normalization_source=source,
        positive=list(positive),
        classes=list(store.classes),
        target_classes=None if target_classes is None else list(target_classes),
        region=store.metadata.region,
        year=store.metadata.year,
        composite=store.metadata.source.get("composite"),
        training={"objective": objective},  # a reconstruction's outputs are not classes
    )


@dataclass(frozen=True)
class _Scratch:
    """What a run from random weights trains: the architecture, its bands and classes, and
    how its checkpoint records where it came from (``provenance``)."""

    model: str
    model_options: Mapping[str, Any] | None
    bands: Sequence[str] | None
    positive: Sequence[str] | str | None
    provenance: Mapping[str, Any]


def _from_scratch(
    job: _Scratch,
    store: Any,
    out_dir: str | Path,
    config: TrainConfig | None,
    label_mask: LabelMask | None = None,
) -> TrainResult:
    """A fresh ``job.model`` trained on the store's train split (``config.normalization``)."""
    from sarcrop.models import build_model

    config = TrainConfig() if config is None else as_options(TrainConfig, config, "config")
    store = DatasetStore.open(store)
    bands = _bands(store, job.bands)
    classes = config.classes
    reconstructs = config.reconstructs
    positive = [] if reconstructs else positive_classes(store, job.positive, classes=classes)
    resolved = replace(job, bands=bands, positive=positive)
    search = None
    without_parent = {
        "interpolation_search": "mixes fine-tuned weights with the pre-trained start",
        "parent_classes": "maps our classes to the pre-trained head's",
    }
    for name, what in without_parent.items():
        if getattr(config, name) is not None:
            only = "only fine-tuning (ft, fte, ftd) has one; leave it out"
            raise ConfigError(f"{name} {what}: {only}")
    if config.searches:

        def fold(out: Path, settings: TrainConfig, mask: LabelMask) -> Path:
            return _fold_model(_from_scratch(resolved, store, out, settings, mask), settings)

        config, search = _searched(fold, store, out_dir, config, positive, label_mask)
    # One logit for a positive class, one per class of a crop-type map, and one per time step
    # and band for a reconstruction.
    outputs = store.steps * len(bands) if reconstructs else len(classes) if classes else 1
    options = {**dict(job.model_options or {}), "out_channels": outputs}
    options.pop("merged_head", None)  # a parent's head answering for one crop: a plain one here
    L.seed_everything(config.seed, verbose=False)
    network = build_model(job.model, len(bands), store.steps, **options)
    normalization, source = _new_normalization(store, bands, config.normalization)
    # A reconstruction reads no target; any class of the store fills the dataset's slot.
    read_as = positive or list(store.classes[:1])
    train_data, val_data, labels = _training_data(
        store, read_as, bands, normalization, config, label_mask
    )
    metadata = _base_metadata(
        store, network, bands, positive, normalization, source, classes, config.objective
    )
    training: dict[str, Any] = {"label_subset": labels, **_search_record(search)}
    if not reconstructs:  # a reconstruction learns no labels
        training["ground"] = learnt_ground(store)
    metadata = metadata.model_copy(update={**job.provenance, "training": training})
    return fit(network, train_data, val_data, out_dir, config, metadata)


def _searched(
    fold: FoldRun,
    store: Any,
    out_dir: str | Path,
    config: TrainConfig,
    positive: Sequence[str],
    label_mask: LabelMask | None,
    start: Mapping[str, torch.Tensor] | None = None,
) -> tuple[TrainConfig, SearchChoice]:
    """``config`` with the epochs and interpolation its searches choose among the run's labels
    (those of ``label_mask``, else of ``config.label_fraction``), and the choice."""
    from sarcrop.data.parcels import label_subset, subset_names
    from sarcrop.training.search import SEARCH_DIR, search_held_out

    named = subset_names(config.classes, positive)
    subset = label_mask
    if subset is None and config.label_fraction < 1:
        subset = label_subset(
            store, config.label_fraction, config.seed, positive=positive, classes=config.classes
        )
    out = Path(out_dir) / SEARCH_DIR
    choice = search_held_out(fold, store, out, config, named, subset, start)
    return config.updated(epochs=choice.epochs, interpolation=choice.interpolation), choice


def _fold_model(result: TrainResult, settings: TrainConfig) -> Path:
    """The model of a held-out search's fold run, which the search scores as trained for its
    whole budget: a fold run that ``max_time`` stopped short stops the search instead."""
    if result.out_of_time:
        raise ConfigError(
            f"max_time stopped this fold run of the held-out search after {result.epochs} of "
            f"its {settings.epochs} epochs, and the search scores whole budgets only: run the "
            "same command with a larger max_time (or none) to go on from there (finished "
            "fold runs are kept)",
            result.out_dir,
        )
    return result.checkpoint


def _search_record(choice: SearchChoice | None) -> dict[str, Any]:
    return {} if choice is None else {"search": choice.to_dict()}


def train(
    store: Any,
    out_dir: str | Path,
    *,
    model: str = "recurrent_unet",
    model_options: Mapping[str, Any] | None = None,
    bands: Sequence[str] | None = None,
    positive: Sequence[str] | str | None = None,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Train ``model`` from scratch on a store's train split (pre-training on a source region).

    A ``val_fraction`` of the train split is held out for model selection (best val IoU) and
    early stopping; the test split is never touched. Inputs use the store's train statistics
    (``config.normalization: store``) or fixed dB ranges (``fixed``).
    ``positive`` defaults to the class the store was prepared for.
    """
    job = _Scratch(model, model_options, bands, positive, {"strategy": "scratch"})
    return _from_scratch(job, store, out_dir, config)


def train_ri(
    store: Any,
    out_dir: str | Path,
    *,
    model: str = "recurrent_unet",
    model_options: Mapping[str, Any] | None = None,
    bands: Sequence[str] | None = None,
    positive: Sequence[str] | str | None = None,
    config: TrainConfig | None = None,
    parent: str | Path | None = None,
    label_mask: LabelMask | None = None,
) -> TrainResult:
    """RI, the paper's transfer baseline: the pre-trained architecture, trained on the target.

    Nothing but the architecture is transferred, so the inputs are scaled as any model
    trained from scratch there would be (``config.normalization``). ``finetune(strategy="ri")``
    (with the architecture read from ``parent``) and the experiment runner both run this, so
    they give the same model for the same seed. ``label_mask`` as in :func:`finetune`.
    """
    provenance: dict[str, Any] = {"strategy": "ri"}
    if parent is not None:
        provenance["parent"] = _parent_record(parent, read_metadata(parent))
    job = _Scratch(model, model_options, bands, positive, provenance)
    return _from_scratch(job, store, out_dir, config, label_mask)


def _parent_record(checkpoint: str | Path, meta: CheckpointMetadata) -> dict[str, Any]:
    return {
        "path": str(checkpoint),
        "sha256": file_sha256(checkpoint),
        "region": meta.region,
        "year": meta.year,
        "bands": meta.bands,
        "positive": meta.positive,
        "early_seasons": meta.learnt_early_seasons(),
    }


def finetune(
    checkpoint: str | Path,
    store: Any,
    out_dir: str | Path,
    *,
    strategy: str,
    last_k: int | None = None,
    bands: Sequence[str] | None = None,
    positive: Sequence[str] | str | None = None,
    statistics: Literal["pretrained", "target", "checkpoint"] | None = None,
    config: TrainConfig | None = None,
    label_mask: LabelMask | None = None,
) -> TrainResult:
    """Transfer a pre-trained model to a target store with strategy ri, ft, fte, ftd, probe or
    bias (the pre-trained model as it is, its threshold chosen on the labels:
    :mod:`sarcrop.training.calibration`).

    ``checkpoint`` is a ``.safetensors`` file or the name of one shipped with sarcrop
    (``"europe-maize"``, see :func:`sarcrop.pretrained.available`).
    ``bands`` different from the checkpoint's (VH → VH, VV) adapt the first layer (paper
    Eq. 3). ``positive`` defaults to the target store's positive class, else the checkpoint's.
    ``statistics`` chooses whose input statistics scale each band, which the exported
    checkpoint records (``config.normalization`` says how new statistics are made):

    - ``"pretrained"`` (default of ft, fte, ftd): bands the pre-trained model knows keep its
      statistics, so the transferred weights see inputs on the scale they were trained on;
      new bands (VV) get new statistics: fixed dB ranges if the parent was trained with fixed
      ranges (or ``config.normalization`` is ``fixed``), else the target store's;
    - ``"target"`` (the only choice of ri, see :func:`train_ri`): every band gets new
      statistics as in training from scratch (``config.normalization``);
    - ``"checkpoint"``: every band must have pre-training statistics.

    ``label_mask`` (:class:`sarcrop.data.parcels.LabelMask`, e.g. a fold of
    :func:`sarcrop.data.parcels.parcel_folds`) names the train split's labels to learn from,
    instead of the subset ``config.label_fraction`` chooses.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    config = None if config is None else as_options(TrainConfig, config, "config")
    if config is not None and config.objective != "segment":
        raise ConfigError("fine-tuning learns the target's labels: objective must be segment")
    checkpoint = pretrained.resolve(checkpoint)
    parent_meta = read_metadata(checkpoint)
    require_network(parent_meta, checkpoint, "fine-tune")
    store = DatasetStore.open(store)
    check_season_length(parent_meta, store, checkpoint)
    bands = chosen_bands(bands, parent_meta.bands)
    missing = [b for b in bands if b not in store.bands]
    if missing:
        has = ", ".join(store.bands)
        raise CheckpointError(
            f"bands {', '.join(missing)} not in store {store.path} (has {has}); --bands "
            f"{' '.join(store.bands)} (bands=[...]) fine-tunes on the store's bands",
            checkpoint,
        )
    classes = config.classes if config else None
    default = parent_meta.positive
    positive = positive_classes(store, positive, default=default, classes=classes)
    if strategy == "ri":
        if statistics not in (None, "target"):
            raise ConfigError(
                "ri trains from scratch on the target store and uses its statistics; "
                f"statistics {statistics!r} does not apply"
            )
        if last_k is not None:
            raise ConfigError("last_k applies to the ftd strategy only, not 'ri'")
        return train_ri(
            store,
            out_dir,
            model=parent_meta.architecture,
            model_options=parent_meta.options,
            bands=bands,
            positive=positive,
            config=config,
            parent=checkpoint,
            label_mask=label_mask,
        )
    warn_other_composites(Path(checkpoint), parent_meta, store)
    transfer = statistics or "pretrained"
    job = _Transfer(
        Path(checkpoint), parent_meta, store, strategy, last_k, bands, positive, transfer
    )
    config = config or TrainConfig()
    if strategy == "bias":
        config = _bias_config(config)
    search = None
    if config.searches:

        def fold(out: Path, settings: TrainConfig, mask: LabelMask) -> Path:
            result = _transfer(job, out, settings, mask, score_start=False)
            return _fold_model(result, settings)

        start = None
        if config.interpolation_search is not None:
            parent, new_head, _ = _prepared_parent(job, config)
            start = _start_weights(parent, new_head, job.strategy, "interpolation_search")
        config, search = _searched(fold, store, out_dir, config, positive, label_mask, start)
    return _transfer(job, out_dir, config, label_mask, search)


def _bias_config(config: TrainConfig) -> TrainConfig:
    """``bias`` learns one number for one crop: the settings that shape weights do not apply,
    and with no epoch to select, every labelled patch counts (no validation part)."""
    if config.classes:
        raise ConfigError("strategy bias chooses the threshold of one crop: leave classes out")
    if named := config.unused_by_bias():
        raise ConfigError(
            f"strategy bias trains no weights, so {', '.join(named)} cannot apply: leave "
            f"{'it' if len(named) == 1 else 'them'} out"
        )
    return config.updated(val_fraction=0)


@dataclass(frozen=True)
class _Transfer:
    """What a fine-tuning run transfers: the parent, the target and how."""

    checkpoint: Path
    parent_meta: CheckpointMetadata
    store: Any
    strategy: str
    last_k: int | None
    bands: list[str]
    positive: list[str]
    statistics: str = "pretrained"


def _transfer(
    job: _Transfer,
    out_dir: str | Path,
    config: TrainConfig,
    label_mask: LabelMask | None = None,
    search: SearchChoice | None = None,
    *,
    score_start: bool = True,
) -> TrainResult:
    """Fine-tune ``job``'s parent on its target with ``config`` (and a fold's labels);
    ``score_start`` scores a distillation start on the labels (not in a search's fold runs,
    whose final run does it once)."""
    parent_meta, store, bands = job.parent_meta, job.store, job.bands
    parent, new_head, carried = _prepared_parent(job, config)
    if job.strategy == "bias" and new_head is not None:
        raise ConfigError(
            f"strategy bias keeps the pre-trained head, and {job.checkpoint.name}'s does not "
            f"map {', '.join(job.positive)}: choose another strategy"
        )
    start = None
    if config.interpolation < 1 or config.distillation > 0:
        setting = "interpolation" if config.interpolation < 1 else "distillation"
        start = _start_weights(parent, new_head, job.strategy, setting)
    target_classes = list(config.classes) if config.classes else None
    stats, source = _transfer_normalization(
        job.statistics, store, bands, parent_meta, job.checkpoint, config
    )
    train_data, val_data, labels = _training_data(
        store, job.positive, bands, stats, config, label_mask
    )
    metadata = _base_metadata(
        store, parent, bands, job.positive, stats, source, target_classes, config.objective
    )
    # The labelled ground of this run and of every labelled training before it.
    inherited = parent_meta.training.get("ground", []) if learnt_labels(parent_meta) else []
    training: dict[str, Any] = {
        "label_subset": labels,
        "ground": learnt_ground(store) + list(inherited),
        **_search_record(search),
    }
    if carried:
        training["carried_classes"] = carried
    merged = getattr(parent, "options", {}).get("merged_head")
    if merged is not None:
        training["merged_head"] = _merged_record(parent_meta, merged)
    if config.distillation > 0 and score_start:
        training["distillation_start"] = _start_on_labels(parent, train_data, config)
    if new_head is not None:
        fresh = "carried_classes' outputs from the parent, the rest " if carried else ""
        training["new_head"] = (
            f"{new_head} output(s) for the target's classes, {fresh}re-initialised"
        )
    metadata = metadata.model_copy(
        update={
            "strategy": job.strategy,
            "last_k": job.last_k,
            "parent": _parent_record(job.checkpoint, parent_meta),
            "training": training,
        }
    )
    return fit(parent, train_data, val_data, out_dir, config, metadata, start=start)


def _prepared_parent(
    job: _Transfer, config: TrainConfig
) -> tuple[nn.Module, int | None, dict[str, str]]:
    """The parent as fine-tuning starts from it (new bands adapted, the strategy's parts
    frozen, a new head where the classes change), the new head's outputs, if any, and the
    classes whose outputs moved or carried over into a new head (ours: the parent's)."""
    from sarcrop.models import SegmentationModel, adapt_input_bands

    parent, _ = load_checkpoint(job.checkpoint)
    if job.bands != list(job.parent_meta.bands):
        assert isinstance(parent, SegmentationModel)  # load_checkpoint's default builder
        adapt_input_bands(parent, job.bands, job.parent_meta.bands)
    L.seed_everything(config.seed, verbose=False)
    # Another set of output classes (binary <-> crop types, or other classes), or a parent
    # that reconstructed its input (one output per time step and band): a new head, which
    # keeps the outputs of the classes the parent knows. The same classes (by name or by
    # parent_classes) keep the parent's head, its outputs in the target's order, and one crop
    # among the parent's classes keeps it whole, answering for that crop against the rest.
    meta = job.parent_meta
    names = head_classes(meta) or []
    rows = _carried_rows(job, config)
    merged = _merged_classes(job, config)
    crop = [name in merged.values() for name in names] if merged else []
    outputs = len(config.classes) if config.classes else 1
    target_classes = list(config.classes) if config.classes else None
    new_head = None
    if crop:
        merge_head(parent, crop)
    elif keeps_head(rows, parent_outputs(meta)):
        if rows != list(range(outputs)):
            replace_head(parent, outputs, rows)
    elif rows or target_classes != meta.target_classes or parent_outputs(meta) != outputs:
        new_head = outputs
    apply_strategy(parent, job.strategy, job.last_k, head_channels=new_head, carried=rows)
    if crop:
        return parent, None, merged
    if not rows or rows == list(range(parent_outputs(meta))):
        return parent, new_head, {}
    pairs = zip(config.classes or (), rows, strict=True)
    return parent, new_head, {ours: names[row] for ours, row in pairs if row is not None}


def _merged_record(parent_meta: CheckpointMetadata, flags: Sequence[bool]) -> str:
    """What a merged head answers, in class names where the parent has them."""
    names = parent_meta.target_classes or [f"output {i}" for i in range(len(flags))]
    crop = [name for name, flag in zip(names, flags, strict=True) if flag]
    rest = [name for name, flag in zip(names, flags, strict=True) if not flag]
    return (
        f"the parent's outputs, {' + '.join(crop)} against {', '.join(rest)} "
        "(the log-odds of their summed probabilities)"
    )


def _merged_classes(job: _Transfer, config: TrainConfig) -> dict[str, str]:
    """For a one-crop target and a parent that maps crop types, the parent's class each of the
    crop's positive label names continues (by name or by ``parent_classes``); empty where it
    maps none of them or nothing would be left against them, for the probe, whose head trains
    afresh, and where ``fresh_head`` asks for a new one."""
    known = job.parent_meta.target_classes if learnt_labels(job.parent_meta) else None
    if config.classes or not known or job.strategy == "probe" or config.fresh_head:
        return {}
    names = parent_names(job.positive, known, config.parent_classes)
    theirs = {ours: parent_class(ours, known, names) for ours in job.positive}
    carried = {ours: name for ours, name in theirs.items() if name is not None}
    return carried if 0 < len(set(carried.values())) < len(known) else {}


def _carried_rows(job: _Transfer, config: TrainConfig) -> list[int | None]:
    """For each of the target's classes, the parent's head output that maps it (or None);
    empty where no output carries over (one crop, a parent that learnt no classes, the
    probe, whose head trains afresh, or ``fresh_head`` for classes that are not the parent's)."""
    known = head_classes(job.parent_meta)
    if config.parent_classes is not None:
        if not known:
            raise ConfigError(f"parent_classes: {job.checkpoint} maps no classes; leave it out")
        if job.strategy == "probe":
            raise ConfigError("parent_classes: the probe trains its head afresh; leave it out")
    if not config.classes or not known or job.strategy == "probe":
        return []
    rows = head_rows(config.classes, known, config.parent_classes)
    if config.fresh_head and not keeps_head(rows, len(known)):
        return []
    return rows if any(row is not None for row in rows) else []


def _fit_on_labels(model: nn.Module, train_data: Any, config: TrainConfig) -> dict[str, Any]:
    """How the trained model maps the labelled pixels it learnt from (IoU, or mIoU for crop
    types), beside the best map of one class everywhere. Below that it did not learn them
    (a fine-tuning that collapsed, too few steps), which no validation split may show, and the
    run says so instead of exporting it silently."""
    record, short = _on_labels(model.cpu(), train_data, config, "trained")
    if short:
        warnings.warn(
            f"the trained model scores {short[0]} on its own training labels, below {short[1]}: "
            "it did not learn them; train longer (epochs), at another learning rate (lr) or "
            "with another strategy",
            stacklevel=4,
        )
    return record


def _start_on_labels(start: nn.Module, train_data: Any, config: TrainConfig) -> dict[str, Any]:
    """How the start that ``distillation`` learns from maps the run's own labelled pixels (IoU,
    or mIoU for crop types), beside the best map of one class everywhere: a start below that
    teaches the unlabelled pixels a map worse than none, and the run says so (docs/results.md,
    "Checked where it was not chosen")."""
    record, short = _on_labels(copy.deepcopy(start), train_data, config, "start")
    if short:
        warnings.warn(
            f"distillation {config.distillation:g}: the pre-trained start scores {short[0]} on "
            f"this run's labelled pixels, below {short[1]}; it teaches the unlabelled pixels its "
            "map, so distillation may cost more than it gives here (leave it at 0)",
            stacklevel=4,
        )
    return record


def _on_labels(
    model: nn.Module, train_data: Any, config: TrainConfig, name: str
) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """``model``'s score on the run's labelled pixels (recorded under ``name``) beside the best
    map of one class everywhere, and, where it falls below that, both as words."""
    from sarcrop.training.search import confusions_of, constant_score, score

    [confusion] = confusions_of(
        {0: model}, _as_they_are(train_data), config.classes, config.threshold
    ).values()
    found, constant = score(confusion), constant_score(confusion)
    metric = "mIoU" if config.classes else "IoU"
    scores = {name: found, "one_class_everywhere": constant}
    record = {"metric": metric} | {
        k: None if np.isnan(v) else round(v, 4) for k, v in scores.items()
    }
    if not found < constant:
        return record, None
    everywhere = "its largest class" if config.classes else "the positive class"
    return record, (f"{metric} {found:.2f}", f"{constant:.2f} for {everywhere} everywhere")


def _start_weights(
    parent: nn.Module, new_head: int | None, strategy: str, setting: str = "interpolation"
) -> dict[str, torch.Tensor]:
    """The weights fine-tuning starts from, which ``interpolation`` mixes back in and
    ``distillation`` learns from: only a parent whose own head carries on has a start worth
    it (``setting`` names the option that asked, for the error)."""
    if new_head is not None or strategy == "probe":
        fixes = {"interpolation": "leave it at 1", "distillation": "leave it at 0"}
        fix = fixes.get(setting, "leave it out")
        raise ConfigError(
            f"{setting} needs the pre-trained head; this run trains a new one "
            f"({'probe' if strategy == 'probe' else 'classes it does not map'}): {fix}"
            + ("" if strategy == "probe" else ", or name ours in its terms (parent_classes)")
        )
    return {name: value.detach().clone() for name, value in parent.state_dict().items()}


def head_classes(meta: CheckpointMetadata) -> list[str] | None:
    """The class of each of a checkpoint's head outputs, where it learnt labels: its
    ``target_classes``, or for a model of one crop its one logit's crop, so that fine-tuning
    it to crop types starts that crop's output from it."""
    if not learnt_labels(meta):
        return None
    if meta.target_classes:
        return list(meta.target_classes)
    one_crop = parent_outputs(meta) == 1 and len(meta.positive) == 1
    return [meta.positive[0]] if one_crop else None


def parent_outputs(meta: CheckpointMetadata) -> int:
    """The output channels of a checkpoint's model (its head)."""
    return int(meta.options.get("out_channels", 1))


def _transfer_normalization(
    mode: str,
    store: Any,
    bands: Sequence[str],
    parent_meta: CheckpointMetadata,
    checkpoint: str | Path,
    config: TrainConfig,
) -> tuple[dict[str, Any], str]:
    """Per-band statistics for fine-tuning and a description of where they come from."""
    from sarcrop.data.normalization import FIXED_METHOD, Normalization

    if mode not in ("pretrained", "target", "checkpoint"):
        raise ConfigError(f"statistics must be pretrained, target or checkpoint, got {mode!r}")
    known = (
        Normalization.from_dict(dict(parent_meta.normalization))
        if (parent_meta.normalization)
        else None
    )
    # A parent trained on fixed dB ranges reads every band on fixed ranges, new ones too.
    fixed = known is not None and known.method == FIXED_METHOD and mode != "target"
    scaling = "fixed" if fixed else config.normalization
    new, target_source = _new_normalization(store, bands, scaling)
    target = Normalization.from_dict(new)
    if mode == "target":
        return new, target_source
    known_bands = set(known.bands or ()) if known else set()
    missing = [b for b in bands if b not in known_bands]
    if mode == "checkpoint" and missing:
        raise ConfigError(f"checkpoint has no normalization statistics for {missing}", checkpoint)
    low, high = [], []
    for i, band in enumerate(bands):
        source = known.select([band]) if known and band in known_bands else None
        low.append(source.min[0] if source else target.min[i])
        high.append(source.max[0] if source else target.max[i])
    methods = {known.method} if known and not missing else {target.method}
    if known and missing and known_bands & set(bands):
        methods.add(known.method)
    method = "+".join(sorted(methods))
    stats = Normalization(tuple(low), tuple(high), tuple(bands), method).to_dict()
    parent_source = parent_meta.normalization_source or f"checkpoint {checkpoint}"
    if not missing:
        return stats, parent_source
    return (
        stats,
        f"{parent_source} ({', '.join(sorted(known_bands & set(bands)))}); "
        f"{target_source} ({', '.join(missing)})",
    )
