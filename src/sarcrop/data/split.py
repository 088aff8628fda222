"""Seeded train/test splits of patches.

The paper splits patches at random, 60 % train / 40 % test. Neighbouring patches share fields
and backscatter conditions, so a random split leaks information across the boundary; the
``"block"`` method instead assigns whole blocks of ``block × block`` neighbouring patches to one
side, which gives a more honest estimate of performance on unseen areas. ``"train"`` and
``"test"`` put a whole location on one side, for models trained in one place and tested in
another. Two stores cut from one location and season with different splits (a ``"train"``
store and a ``"test"`` store of the same place, say) share ground: :func:`check_disjoint`
refuses to score a model there.

Real ground is its coordinates and season, whatever file labels it: the GeoTIFF, the netCDF
and a parcel file of the same fields are one ground. Simulated draws share coordinates (each
preset has one origin) but not fields, so simulated ground is also its label file. A store
records which it is (``source.simulated``, from the ``region.json`` beside its labels); a store
from before that record is matched by label file, as simulated ground is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from sarcrop.errors import InputDataError
from sarcrop.options import SplitMethod

if TYPE_CHECKING:
    from sarcrop.data.store import DatasetStore

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


# ---------------------------------------------------------------------------------------------
# Train and test patches of two stores must not show the same labelled ground


def location_sources(store: DatasetStore) -> list[dict[str, Any]]:
    """The ``source`` record of each location of ``store`` (one for a store not merged)."""
    meta = store.metadata
    members = meta.source.get("stores") if meta.locations else [meta.source]
    members = members if isinstance(members, list) else []
    return [
        source if isinstance(source, dict) else {}
        for source in (
            members[location] if location < len(members) else {}
            for location in range(max(len(meta.locations), 1))
        )
    ]


def label_sources(store: DatasetStore) -> list[str | None]:
    """The label file of each location of ``store`` (one for a store that was not merged),
    resolved, or ``None`` where the store does not record it."""
    labels = (source.get("labels") for source in location_sources(store))
    return [str(Path(str(path)).resolve()) if path else None for path in labels]


class _Footprint(NamedTuple):
    """A patch's labelled ground: ``key`` "label file|CRS", whether it is real ground (the
    store says it is not simulated), and [left, bottom, right, top, season start, season end
    (ordinal days)]."""

    patch: int
    key: str
    real: bool
    extent: np.ndarray

    @property
    def crs(self) -> str:
        return self.key.rpartition("|")[2]


def _footprints(store: DatasetStore, split: str) -> list[_Footprint]:
    """The footprints of the split's patches that record their label file."""
    meta = store.metadata
    sources = location_sources(store)
    files = label_sources(store)
    seasons = [loc.season for loc in meta.locations] or [meta.season]
    out = []
    for index in store.indices(split):
        location = meta.location[index] if meta.locations else 0
        if files[location] is None:
            continue
        grid, season = store.patch_grid(index), seasons[location]
        extent = [*grid.bounds, season.start.toordinal(), season.end.toordinal()]
        real = sources[location].get("simulated") is False
        key = f"{files[location]}|{grid.crs}"
        out.append(_Footprint(index, key, real, np.asarray(extent, dtype=np.float64)))
    return out


def _same_ground(key: str, real: bool, test: _Footprint) -> bool:
    """Whether ground recorded as ``key`` (real or not) can be ``test``'s: the same label file
    and CRS, or real ground on both sides in the same CRS."""
    return key == test.key or (real and test.real and key.rpartition("|")[2] == test.crs)


def shared_ground(train: DatasetStore, test: DatasetStore) -> list[tuple[int, int]]:
    """(train patch, test patch) pairs of ``train``'s train split and ``test``'s test split
    over the same ground (:func:`_same_ground`), overlapping, in overlapping seasons.

    A model tested on such a pair is scored on labels it learnt from. Simulated draws, other
    years and other places differ in label file, season or ground and never pair. One
    store's own split is the split's business and is not checked here.
    """
    if Path(train.path).resolve() == Path(test.path).resolve():
        return []
    return _pairs(_footprints(train, "train"), _footprints(test, "test"))


def common_ground(first: DatasetStore, second: DatasetStore) -> list[tuple[int, int]]:
    """(patch of ``first``, patch of ``second``) pairs over the same ground in overlapping
    seasons, whatever their splits: two stores of one place and season, whose merge would put
    the same fields in both splits."""
    return _pairs(_footprints(first, "all"), _footprints(second, "all"))


def _pairs(ones: Sequence[_Footprint], others: Sequence[_Footprint]) -> list[tuple[int, int]]:
    """(one, other) patch pairs over the same ground (:func:`_same_ground`), overlapping."""
    if not others:
        return []
    extents = np.stack([f.extent for f in others])
    keys = np.array([f.key for f in others])
    crss = np.array([f.crs for f in others])
    reals = np.array([f.real for f in others])
    pairs = []
    for own in ones:  # _same_ground over every other patch at once
        same = (keys == own.key) | (own.real & reals & (crss == own.crs))
        overlap = same & _overlapping(own.extent, extents)
        pairs += [(own.patch, others[int(j)].patch) for j in np.flatnonzero(overlap)]
    return pairs


def _overlapping(extent: np.ndarray, extents: np.ndarray) -> np.ndarray:
    """Which rows of ``extents`` share area and days with ``extent`` (touching is not sharing)."""
    lows = np.maximum(extent[[0, 1, 4]], extents[:, [0, 1, 4]])
    highs = np.minimum(extent[[2, 3, 5]], extents[:, [2, 3, 5]])
    return np.asarray((highs > lows).all(axis=1))


def learnt_ground(store: DatasetStore) -> list[dict[str, Any]]:
    """The labelled ground a model trained on ``store``'s train split has seen, as a checkpoint
    records it: per label file and CRS (``key``), the store, whether the ground is real, and the
    extents [left, bottom, right, top, season start, season end (ordinal days)] of the train
    patches."""
    groups: dict[tuple[str, bool], list[list[float]]] = {}
    for footprint in _footprints(store, "train"):
        groups.setdefault((footprint.key, footprint.real), []).append(footprint.extent.tolist())
    path = str(Path(store.path).resolve())
    return [
        {"store": path, "key": key, "real": real, "extents": extents}
        for (key, real), extents in groups.items()
    ]


def check_unlearnt(
    ground: Sequence[Mapping[str, Any]], test: DatasetStore, *, other_fields: bool = False
) -> None:
    """Refuse to score a model on test patches that show ground it learnt from (``ground``:
    :func:`learnt_ground` records of its training and pre-training). A split of the store it
    trained on is the split's business. Real ground is compared by patch footprints whatever
    the label file; ``other_fields`` says that a test from another label file labels other
    fields (surveyed fields held back) and lets such patches be scored."""
    if not ground:  # a checkpoint from before ground was recorded, or a self-supervised one
        return
    own = str(Path(test.path).resolve())
    tests = _footprints(test, "test")
    for entry in ground:
        if entry.get("store") == own:
            continue
        extents = np.asarray(entry.get("extents", []), dtype=np.float64).reshape(-1, 6)
        key, real = str(entry.get("key")), entry.get("real") is True
        same = [f for f in tests if _same_ground(key, real, f)]
        if other_fields:
            same = [f for f in same if f.key == key]
        hit = [f for f in same if _overlapping(f.extent, extents).any()]
        if hit:
            other = any(f.key != key for f in hit)
            hint = (
                "; if its labels are other fields than the model learnt (fields held back, in "
                "another label file), --other-fields (other_fields=True) scores them"
                if other
                else ""
            )
            raise InputDataError(
                f"{len(hit)} test patches show labelled ground this model learnt from in"
                f" {entry.get('store')} (same ground and season): the score would measure what"
                " was learnt; evaluate on another place or season, or on a split of the store"
                f" it trained on{hint}",
                test.path,
            )


def check_disjoint(train: DatasetStore, test: DatasetStore) -> None:
    """Refuse a test split that shows labelled ground ``train``'s train split holds."""
    pairs = shared_ground(train, test)
    if pairs:
        shown = ", ".join(f"{a}/{b}" for a, b in pairs[:3]) + (" ..." if len(pairs) > 3 else "")
        tests = len({b for _, b in pairs})
        raise InputDataError(
            f"{tests} test patches overlap train patches of {train.path} (same ground and"
            f" season; train/test: {shown}): the score would measure what was"
            " learnt; train and test on one store's split instead",
            test.path,
        )
