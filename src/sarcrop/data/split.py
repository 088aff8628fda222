"""Seeded train/test splits of patches.

The paper splits patches at random, 60 % train / 40 % test. Neighbouring patches share fields
and backscatter conditions, so a random split leaks information across the boundary; the
``"block"`` method instead assigns whole blocks of ``block × block`` neighbouring patches to one
side, which gives a more honest estimate of performance on unseen areas. ``"train"`` and
``"test"`` put a whole location on one side, for models trained in one place and tested in
another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sarcrop.options import SplitMethod

TRAIN, TEST = "train", "test"


def _n_train(n: int, fraction: float) -> int:
    """Rounded train count, keeping at least one patch on each side when there are two."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"train fraction must be in (0, 1), got {fraction}")
    count = round(n * fraction)
    return min(max(count, 1), n - 1) if n >= 2 else n


def split_patches(
    offsets: Sequence[tuple[int, int]],
    *,
    train_fraction: float = 0.6,
    seed: int = 0,
    method: SplitMethod = "patch",
    block: int = 4,
    stride: int | None = None,
) -> list[str]:
    """``"train"``/``"test"`` for each patch, deterministic for a given ``seed``.

    ``offsets`` are the (row, col) pixel offsets of the patches in the area grid; ``stride`` (the
    tiling step in pixels) is needed by the ``"block"`` method to know which patches neighbour.
    """
    n = len(offsets)
    if method in (TRAIN, TEST):
        return [method] * n
    rng = np.random.default_rng(seed)
    split = np.full(n, TEST, dtype=object)
    if n == 0:
        return []
    target = _n_train(n, train_fraction)
    if method == "patch":
        split[rng.permutation(n)[:target]] = TRAIN
        return split.tolist()
    if method != "block":
        raise ValueError(f"unknown split method {method!r} (use patch, block, train or test)")
    if stride is None or stride < 1 or block < 1:
        raise ValueError("block split needs a positive stride and block size")
    size = stride * block
    keys = [(int(r) // size, int(c) // size) for r, c in offsets]
    groups = sorted(set(keys))
    members: dict[tuple[int, int], list[int]] = {g: [] for g in groups}
    for i, key in enumerate(keys):
        members[key].append(i)
    count = 0
    for g in rng.permutation(len(groups)):
        if count >= target:
            break
        idx = members[groups[g]]
        # Take the block if it brings the count closer to the target than leaving it out.
        if count == 0 or abs(count + len(idx) - target) <= abs(count - target):
            split[idx] = TRAIN
            count += len(idx)
    return split.tolist()


def validation_split(
    train_indices: Sequence[int], fraction: float = 0.1, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Hold out a seeded ``fraction`` of the training patches for early stopping."""
    indices = np.asarray(train_indices, dtype=np.int64)
    n_val = len(indices) - _n_train(len(indices), 1.0 - fraction)
    order = np.random.default_rng(seed).permutation(len(indices))
    val = np.sort(indices[order[:n_val]])
    train = np.sort(indices[order[n_val:]])
    return train.tolist(), val.tolist()
