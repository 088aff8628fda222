"""Batch orderings over observed time steps: full, chronological (paper A.2) and random."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from sarcrop.training.ordering import (
    Key,
    ShardedBatchSampler,
    TimestepBatchSampler,
    TimestepDataset,
    batch_types,
    pad_steps,
)


def t_sequence(batches: list[list[Key]]) -> list[int]:
    ts = []
    for batch in batches:
        assert len({key.t for key in batch}) == 1, "a batch mixes time steps"
        ts.append(batch[0].t)
    return ts


def test_chronological_feeds_t_1_to_T_each_covering_the_training_set():
    n, batch_size, steps = 10, 3, 4
    sampler = TimestepBatchSampler(n, batch_size, steps, "chronological", seed=1)
    batches = list(sampler)
    per_type = math.ceil(n / batch_size)
    assert len(batches) == len(sampler) == per_type * steps
    assert t_sequence(batches) == [t for t in range(1, steps + 1) for _ in range(per_type)]
    for t in range(1, steps + 1):
        indices = [k.index for b in batches for k in b if k.t == t]
        assert sorted(indices) == list(range(n))  # every sample once per batch type
    # A fresh shuffle per batch type, not the same order T times.
    orders = {tuple(k.index for b in batches for k in b if k.t == t) for t in range(1, steps + 1)}
    assert len(orders) > 1


def test_coverage_limits_each_batch_type_to_a_share_of_the_set():
    sampler = TimestepBatchSampler(20, 4, 5, "chronological", coverage=0.2, seed=0)
    batches = list(sampler)
    assert t_sequence(batches) == [1, 2, 3, 4, 5]
    assert all(len(b) == 4 and len({k.index for k in b}) == 4 for b in batches)


def test_random_order_has_the_same_batches_shuffled_and_covers_every_t():
    args = (12, 2, 4)
    chrono = list(TimestepBatchSampler(*args, "chronological", seed=3))
    rand = list(TimestepBatchSampler(*args, "random", seed=3))
    assert Counter(tuple(b) for b in rand) == Counter(tuple(b) for b in chrono)
    ts = t_sequence(rand)
    assert ts != sorted(ts)
    assert set(ts) == {1, 2, 3, 4}


def test_full_ordering_is_one_pass_at_T():
    sampler = TimestepBatchSampler(7, 2, 8, "full")
    batches = list(sampler)
    assert set(t_sequence(batches)) == {8}
    assert sorted(k.index for b in batches for k in b) == list(range(7))
    assert batch_types("full", 8) == [8]


def test_seeded_deterministic_and_reshuffled_per_epoch():
    a = TimestepBatchSampler(16, 4, 3, "random", seed=5)
    b = TimestepBatchSampler(16, 4, 3, "random", seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert a.sampler is a  # Lightning sets epochs through batch_sampler.sampler


@pytest.mark.parametrize("ordering", ["chronological", "random"])
@pytest.mark.parametrize("n", [9, 10])
def test_ranks_share_batch_types_and_split_the_data(ordering, n):
    ranks = [
        list(TimestepBatchSampler(n, 2, 3, ordering, seed=7, num_replicas=2, rank=r))
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1])
    assert t_sequence(ranks[0]) == t_sequence(ranks[1])  # same t at every step on every rank
    for t in (1, 2, 3):
        seen = [k.index for rank in ranks for b in rank for k in b if k.t == t]
        assert set(seen) == set(range(n))
        assert len(seen) == n + (n % 2)  # DistributedSampler-style padding only


def test_sharded_evaluation_counts_every_sample_once():
    n = 7
    shards = [list(ShardedBatchSampler(n, 2, 8, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    counted = [k.index for s in shards for b in s for k in b if k.counted]
    assert sorted(counted) == list(range(n))


def test_dataset_and_padding():
    items = [
        {
            "image": torch.ones(4, 1, 2, 2),
            "target": torch.zeros(2, 2),
            "valid": torch.ones(2, 2, dtype=torch.bool),
            "index": 0,
        }
    ]
    data = TimestepDataset(items, 4)
    assert data[0]["t"] == 4
    item = data[Key(0, 2, counted=False)]
    assert item["t"] == 2 and not item["valid"].any()
    images = torch.ones(2, 4, 1, 2, 2)
    padded = pad_steps(images, torch.tensor([1, 3]))
    assert padded[0, :1].eq(1).all() and padded[0, 1:].eq(0).all()
    assert padded[1, :3].eq(1).all() and padded[1, 3:].eq(0).all()
    assert pad_steps(images, 4) is images


def test_invalid_arguments():
    with pytest.raises(ValueError, match="ordering"):
        TimestepBatchSampler(4, 2, 3, "backwards")
    with pytest.raises(ValueError, match="rank"):
        TimestepBatchSampler(4, 2, 3, num_replicas=2, rank=2)
