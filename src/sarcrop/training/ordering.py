"""Batch orderings over the number of observed time steps ``t`` (paper, Appendix A.2, Fig. 3).

One model serves every point of the season: an input with only the first ``t`` of ``T``
composites is the full series with steps ``t+1..T`` zero-padded. Training therefore feeds
batches of several *batch types*, one per ``t``. The order of the types matters:

``chronological``
    Every epoch first feeds all batches with ``t = 1``, then ``t = 2``, … and lastly the full
    season ``t = T``, so the parameters are updated "with an additional time step after every
    new batch type" and the late, strong-signal inputs do not wipe out what the early ones
    taught (the catastrophic forgetting the paper observed with random order).
``random``
    Exactly the same batches (same samples, same ``t`` counts) in a shuffled order: ``t`` is
    random from batch to batch. The baseline the paper compares against.
``full``
    One batch type, ``t = T``: ordinary full-season training (the default).

Each batch type covers a freshly shuffled ``coverage`` share of the training set, so with the
default ``coverage=1`` a chronological epoch sees every sample ``T`` times (``T``× the cost of a
full-season epoch); ``coverage=1/T`` keeps an epoch as cheap as a full-season one.

Samplers yield batches of :class:`Key` ``(index, t, counted)``; :class:`TimestepDataset` turns a
key into a dataset item carrying ``"t"``, and the task zero-pads steps after ``t``. In
distributed training every rank draws the same permutations (seed + epoch) and takes its own
slice of each batch type, so all ranks run the same number of batches per type and the
``t`` sequence is identical on every rank (gradients are averaged over same-``t`` batches).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, Subset

ORDERINGS = ("full", "chronological", "random")


class Key(NamedTuple):
    """One sample of a batch: dataset ``index``, observed steps ``t``; ``counted`` is False for
    the padding duplicates that even out distributed evaluation shards."""

    index: int  # type: ignore[assignment]  # deliberately shadows tuple.index()
    t: int
    counted: bool = True


def batch_types(ordering: str, time_steps: int) -> list[int]:
    """The ``t`` of each batch type, in the order the chronological schedule feeds them."""
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {', '.join(ORDERINGS)}, got {ordering!r}")
    if time_steps < 1:
        raise ValueError(f"time_steps must be positive, got {time_steps}")
    return [time_steps] if ordering == "full" else list(range(1, time_steps + 1))


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def _resolve_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    world, current = _world()
    num_replicas = world if num_replicas is None else int(num_replicas)
    rank = current if rank is None else int(rank)
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
    return num_replicas, rank


def _pad_to_multiple(indices: np.ndarray, multiple: int) -> np.ndarray:
    """Repeat indices cyclically so their count is a multiple of ``multiple``."""
    target = math.ceil(len(indices) / multiple) * multiple
    return np.resize(indices, target)


class TimestepBatchSampler(Sampler[list[Key]]):
    """Training batches of :class:`Key` in ``full``, ``chronological`` or ``random`` order.

    Deterministic for a given ``seed`` and epoch (call :meth:`set_epoch` each epoch, as with
    ``DistributedSampler``); ``num_replicas``/``rank`` default to the initialised process
    group. Like ``DistributedSampler``, each batch type is padded with repeated samples so it
    divides evenly over the ranks.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        time_steps: int,
        ordering: str = "full",
        *,
        coverage: float = 1.0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("cannot sample batches from an empty training set")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.time_steps = int(time_steps)
        self.ordering = ordering
        self.types = batch_types(ordering, time_steps)
        self.coverage = float(coverage)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.num_replicas, self.rank = _resolve_world(num_replicas, rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def sampler(self) -> TimestepBatchSampler:
        """Lightning calls ``batch_sampler.sampler.set_epoch(epoch)`` every epoch; this is us."""
        return self

    @property
    def samples_per_type(self) -> int:
        """Samples of one batch type over all ranks, before padding."""
        return max(1, math.ceil(self.coverage * self.size))

    def _batches_per_type(self) -> int:
        share = math.ceil(self.samples_per_type / self.num_replicas)
        return share // self.batch_size if self.drop_last else math.ceil(share / self.batch_size)

    def __len__(self) -> int:
        return self._batches_per_type() * len(self.types)

    def plan(self, epoch: int | None = None) -> list[list[Key]]:
        """All of this rank's batches of an epoch, in order."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        per_type = self._batches_per_type()
        batches: list[list[Key]] = []
        for t in self.types:
            order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
            chosen = _pad_to_multiple(order[: self.samples_per_type], self.num_replicas)
            share = chosen[self.rank :: self.num_replicas]
            for start in range(0, per_type * self.batch_size, self.batch_size):
                batches.append([Key(int(i), t) for i in share[start : start + self.batch_size]])
        if self.ordering == "random":
            # The same permutation on every rank keeps same-position batches at the same t.
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[Key]]:
        # A generator: the plan is drawn at the first batch, after set_epoch has been called.
        yield from self.plan()


class ShardedBatchSampler(Sampler[list[Key]]):
    """Evaluation batches in dataset order, split over ranks without changing the metrics.

    Every rank gets the same number of batches (collective metric syncs need that); the
    shorter shards are padded with ``counted=False`` keys whose pixels the dataset marks
    invalid, so no pixel is ever counted twice.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        t: int,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.t = int(t)
        self.num_replicas, self.rank = _resolve_world(num_replicas, rank)

    def _shard(self) -> list[Key]:
        per_rank = math.ceil(self.size / self.num_replicas) if self.size else 0
        own = list(range(self.rank, self.size, self.num_replicas))
        keys = [Key(i, self.t) for i in own]
        filler = own[0] if own else 0
        keys += [Key(filler, self.t, False)] * (per_rank - len(own))
        return keys

    def __len__(self) -> int:
        per_rank = math.ceil(self.size / self.num_replicas) if self.size else 0
        return math.ceil(per_rank / self.batch_size)

    def __iter__(self) -> Iterator[list[Key]]:
        keys = self._shard()
        for start in range(0, len(keys), self.batch_size):
            yield keys[start : start + self.batch_size]


class TimestepDataset(Dataset):
    """Wraps a patch dataset so it can be indexed by :class:`Key` (or a plain index = full season).

    Items gain ``"t"`` (observed steps); the padding is applied by the task on the device.
    Keys with ``counted=False`` come back with an all-False ``valid`` mask and ``"counted"``
    false.
    """

    def __init__(self, base: Sequence[Mapping[str, Any]] | Dataset, time_steps: int) -> None:
        self.base = base
        self.time_steps = int(time_steps)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: Key | tuple[int, int] | int) -> dict[str, Any]:
        if isinstance(key, int | np.integer):
            key = Key(int(key), self.time_steps)
        elif not isinstance(key, Key):
            key = Key(*key)
        item = dict(_observed_item(self.base, key.index, key.t))
        item["t"] = key.t
        item["counted"] = key.counted
        if not key.counted:
            item["valid"] = torch.zeros_like(torch.as_tensor(item["valid"]), dtype=torch.bool)
        return item


def _observed_item(base: Any, index: int, t: int) -> Mapping[str, Any]:
    """``base[index]``, told that its first ``t`` steps are the ones seen where it can be
    (:meth:`sarcrop.data.dataset.PatchDataset.observed_item`, also inside Subsets): date
    dropout then keeps one of them, where it zeroed every one of an early sample at times."""
    while isinstance(base, Subset):
        index, base = int(base.indices[index]), base.dataset
    observed = getattr(base, "observed_item", None)
    return observed(index, t) if callable(observed) else base[index]


def pad_steps(image: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """Zero every time step after ``t`` of ``image`` ``(B, T, bands, H, W)``; ``t`` per sample.

    Zero is the min-max-normalised minimum, the value the paper pads unobserved periods with.
    """
    steps = image.shape[1]
    t = torch.as_tensor(t, device=image.device).reshape(-1, 1)
    keep = torch.arange(steps, device=image.device).reshape(1, -1) < t
    if bool(keep.all()):
        return image
    return image * keep.to(image.dtype)[:, :, None, None, None]
