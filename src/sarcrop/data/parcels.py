"""Parcels in label rasters and stores, and few-label subsets made of whole parcels.

A test location of a few hundred metres holds a few dozen fields, and every pixel of a field
shares its fate (a field is either recognised or not), so uncertainty and label budgets are
counted in *parcels*: connected pixels of one class value. A raster has no field boundaries, so
two touching fields of the same class are one parcel here; label stores should therefore keep
the crop types apart (e.g. the full WorldCereal legend) rather than ``maize``/``other``, whose
``other`` fields would merge into a few large components.

Patches of a store are cut from their location's area, possibly with overlap; a field that
continues into the neighbouring patch is the same parcel, so :func:`store_parcels` paints each
location's patches back into one array before labelling it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sarcrop.data.labels import OTHER, class_lookup, positive_indices
from sarcrop.data.prepare import split_class_pixels
from sarcrop.data.store import SPLITS, DatasetStore, create_store
from sarcrop.errors import InputDataError

UNLABELLED = -1
_STRUCTURE = {
    4: ndimage.generate_binary_structure(2, 1),
    8: ndimage.generate_binary_structure(2, 2),
}


def parcel_ids(labels: np.ndarray, *, connectivity: int = 4) -> np.ndarray:
    """Parcel id ``0..k-1`` of every labelled pixel of a 2-D class raster (-1 stays -1).

    A parcel is a connected component of one class value (4- or 8-connected); ids are
    numbered class by class, each class in scan order.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"parcel_ids needs a 2-D label raster, got shape {labels.shape}")
    if connectivity not in _STRUCTURE:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    out = np.full(labels.shape, UNLABELLED, dtype=np.int32)
    next_id = 0
    for value in np.unique(labels[labels >= 0]):
        components, count = ndimage.label(labels == value, structure=_STRUCTURE[connectivity])
        inside = components > 0
        out[inside] = components[inside] - 1 + next_id
        next_id += count
    return out


def patch_parcels(
    labels: np.ndarray,
    offsets: Sequence[tuple[int, int]],
    locations: Sequence[int] | None = None,
    *,
    connectivity: int = 4,
) -> np.ndarray:
    """Parcel ids ``(n, P, P)`` of patches, joined where a parcel crosses patch borders.

    ``offsets`` are the patches' (row, col) in their area; ``locations`` tells the areas of a
    merged store apart (patches of different locations never share a parcel). Ids are unique
    over all patches. Overlapping patches must agree on their labels.
    """
    labels = np.asarray(labels)
    n, size = labels.shape[0], labels.shape[-1]
    corners = np.asarray(offsets, dtype=np.int64).reshape(n, 2)
    where = np.zeros(n, dtype=np.int64) if locations is None else np.asarray(locations)
    out = np.full(labels.shape, UNLABELLED, dtype=np.int32)
    next_id = 0
    for location in np.unique(where):
        members = np.flatnonzero(where == location)
        corner = corners[members].min(axis=0)
        canvas = np.full(tuple(corners[members].max(axis=0) - corner + size), UNLABELLED)
        windows = {
            int(i): (slice(r, r + size), slice(c, c + size))
            for i, (r, c) in zip(members, corners[members] - corner, strict=True)
        }
        for i, window in windows.items():
            _paint(canvas[window], labels[i], i)
        ids = parcel_ids(canvas, connectivity=connectivity)
        for i, window in windows.items():
            out[i] = np.where(labels[i] >= 0, ids[window] + next_id, UNLABELLED)
        next_id += int(ids.max()) + 1  # -1 + 1 when the location has no labels
    return out


def _paint(window: np.ndarray, patch: np.ndarray, index: int) -> None:
    labelled = patch >= 0
    if np.any(labelled & (window >= 0) & (window != patch)):
        raise InputDataError(f"patch {index} disagrees with an overlapping patch on its labels")
    np.copyto(window, patch, where=labelled)


def store_labels(store: DatasetStore) -> np.ndarray:
    """All labels ``(n, P, P)`` of a store (one small int16 array per patch)."""
    return store.read_all_labels().reshape(-1, store.patch_size, store.patch_size)


def store_parcels(
    store: DatasetStore | str | Path, *, connectivity: int = 4, labels: np.ndarray | None = None
) -> np.ndarray:
    """Parcel ids ``(n, P, P)`` of every patch of a store, joined across patches per location.

    Ids are physical fields, not per split: a field cut by the train/test boundary has one id
    in both; select the split's patches (``parcels[store.indices("test")]``) to use one.
    ``labels`` are the store's labels where the caller has read them (:func:`store_labels`).
    """
    store = DatasetStore.open(store)
    meta = store.metadata
    return patch_parcels(
        store_labels(store) if labels is None else labels,
        meta.offsets,
        meta.location if meta.locations else None,
        connectivity=connectivity,
    )


def parcel_classes(parcels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class value of each parcel id ``0..max`` (-1 for ids that do not occur)."""
    parcels, labels = np.asarray(parcels), np.asarray(labels)
    inside = parcels >= 0
    out = np.full(int(parcels.max(initial=-1)) + 1, UNLABELLED, dtype=np.int64)
    out[parcels[inside]] = labels[inside]
    return out


@dataclass(frozen=True)
class ScoredParcels:
    """Which fields of its store a test set scores: the parcel id of each of its pixels, as
    :func:`store_parcels` numbers the store's fields (-1 where nothing is scored)."""

    store: DatasetStore | str | Path
    parcels: np.ndarray


def ground_fields(test_sets: Sequence[ScoredParcels]) -> list[np.ndarray]:
    """The physical field each test set's parcels lie in (one id per parcel, in the order of its
    ids), shared by test sets over the same ground.

    Stores of one location (its patch split and the whole location, or two random splits)
    number their parcels on their own. Two parcels of different test sets are one field where
    at least half of the smaller one's footprint (its pixels in every patch of its store, the
    same CRS and pixel centre on the ground) lies on the other's: a field cut between train and
    test patches keeps its whole footprint in every split, and two unrelated layouts over the
    same ground (another year's fields) rarely overlap that much. A bootstrap that pools such
    test sets must draw each field once for all of them, or a shared field counts as new
    evidence in every test set that holds it. Ids run from 0 in order of first appearance, so
    a test set over ground of its own gets its parcels' order.
    """
    crs_ids: dict[str, int] = {}
    keys: list[np.ndarray] = []
    nodes: list[np.ndarray] = []
    sizes: list[int] = []
    for test in test_sets:
        where, parcel, size = _ground_pixels(test, crs_ids)
        keys.append(where)
        nodes.append(sum(sizes) + parcel)
        sizes.append(size)
    total = sum(sizes)
    if total == 0:
        return [np.zeros(0, np.int64) for _ in test_sets]
    links = _one_field(np.concatenate(keys), np.concatenate(nodes), total)
    _, component = connected_components(links, directed=False)
    _, first_seen, field = np.unique(component, return_index=True, return_inverse=True)
    renumbered = np.argsort(np.argsort(first_seen))[field.ravel()]  # by first appearance
    return [part.astype(np.int64) for part in np.split(renumbered, np.cumsum(sizes)[:-1])]


def _one_field(keys: np.ndarray, parcels: np.ndarray, total: int) -> coo_matrix:
    """Links ``(total, total)`` between the parcels that are one field: at least half of the
    smaller one's pixels (``keys`` on the ground, one row per pixel of ``parcels``) lie on the
    other's."""
    _, pixel = np.unique(keys, axis=0, return_inverse=True)
    # One row per (pixel on the ground, parcel), sorted by pixel: overlapping patches of one
    # store repeat their pixels, and a pixel lies in one parcel of each test set at most.
    rows = np.unique(np.column_stack([pixel.ravel(), parcels]), axis=0)
    area = np.bincount(rows[:, 1], minlength=total)
    pairs, shared = _shared_pixels(rows)
    one = 2 * shared >= np.minimum(area[pairs[:, 0]], area[pairs[:, 1]])
    return coo_matrix((np.ones(int(one.sum())), tuple(pairs[one].T)), shape=(total, total))


def _shared_pixels(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of parcels that share pixels ``(p, 2)`` and how many they share, from rows of
    (pixel, parcel) sorted by pixel."""
    pairs = [np.zeros((0, 2), np.int64)]
    deepest = int(np.bincount(rows[:, 0]).max(initial=1))  # parcels on one pixel at most
    for step in range(1, deepest):
        same = rows[step:, 0] == rows[:-step, 0]
        pairs.append(np.column_stack([rows[:-step, 1][same], rows[step:, 1][same]]))
    found, shared = np.unique(np.concatenate(pairs), axis=0, return_counts=True)
    return found, shared


def _ground_pixels(
    test: ScoredParcels, crs_ids: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Ground keys ``(m, 3)`` (CRS, x and y of the pixel centre in cm) of the whole footprint of
    each parcel a test set scores (in every patch of its store, not only the scored ones: two
    splits may score different parts of one field), the parcel's index among its scored
    parcels (in the order of their ids), and the number of those."""
    store = DatasetStore.open(test.store)
    parcels = np.asarray(test.parcels)
    scored = np.unique(parcels[parcels >= 0])
    everywhere = store_parcels(store)
    keys, parcel = [np.zeros((0, 3), np.int64)], [np.zeros(0, np.int64)]
    for patch, ids in enumerate(everywhere):
        rows, cols = np.nonzero(np.isin(ids, scored))
        if not rows.size:
            continue
        crs = crs_ids.setdefault(store.metadata.area(patch).crs.to_string(), len(crs_ids))
        t = store.metadata.transform(patch)
        x, y = cols + 0.5, rows + 0.5
        ground = np.stack([t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f], axis=1)
        keys.append(
            np.column_stack([np.full(rows.size, crs), np.round(ground * 100)]).astype(np.int64)
        )
        parcel.append(np.searchsorted(scored, ids[rows, cols]))
    return np.concatenate(keys), np.concatenate(parcel), int(scored.size)


# ---------------------------------------------------------------------------------------------
# Few labels


def subset_names(classes: Sequence[str] | None, positive: Sequence[str]) -> list[str]:
    """The classes whose parcels a few-label subset or a fold keeps apart from the rest: a
    crop-type map's named classes (``other`` gathers the rest, so it names no parcels), else
    the ``positive`` ones."""
    if classes is None:
        return list(positive)
    return [name for name in classes if name.casefold() != OTHER]


def choose_parcels(
    candidates: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Ids of a seeded random ``fraction`` of ``candidates`` (at least one), whole parcels.

    ``groups[j]`` is the kind of ``candidates[j]``: a boolean, whether it is of the positive
    class (a crop against the rest), or a class index (crop types). One parcel of each kind
    is always among the chosen, which needs two kinds, and a larger fraction of the same seed
    chooses a superset (nested learning-curve subsets).
    """
    candidates, groups = np.asarray(candidates), np.asarray(groups)
    if not 0 < fraction <= 1:
        raise InputDataError(f"label fraction must be in (0, 1], got {fraction}")
    binary = groups.dtype == bool
    if binary:
        groups = (~groups).astype(int)  # kind 0: positive, kind 1: the rest
    n, kinds = len(candidates), np.unique(groups)
    if len(kinds) < 2:
        if binary:
            problem = f"none of them {'negative' if 0 in kinds else 'positive'}: "
            problem += "a few-label subset needs both classes"
        else:
            problem = "all of one class: a few-label subset needs two classes"
        raise InputDataError(f"{n} labelled parcels, {problem}")
    order = np.random.default_rng(seed).permutation(n)
    first = [int(np.argmax(groups[order] == kind)) for kind in kinds]
    ranked = order[first + [j for j in range(n) if j not in first]]
    count = max(math.ceil(fraction * n - 1e-9), len(kinds))
    return np.sort(candidates[ranked[:count]])


@dataclass(frozen=True)
class LabelMask:
    """The labelled pixels a few-label run may use: ``keep`` ``(n, P, P)`` over a whole store.

    Pixels outside the subset's split are kept, so the same mask can be handed to a dataset of
    any split; :meth:`apply` unlabels the rest of the split's parcels.
    """

    keep: np.ndarray
    split: str
    fraction: float
    seed: int
    parcels: int
    total_parcels: int
    fold: str | None = None  # "2/3": the subset of cross-validation fold 2 of 3

    def apply(self, index: int, labels: np.ndarray) -> np.ndarray:
        """Labels of patch ``index`` with the parcels left out set to -1."""
        return np.where(self.keep[index], labels, UNLABELLED).astype(labels.dtype, copy=False)

    def as_dict(self) -> dict[str, object]:
        """What a result file records about the subset."""
        return {
            "split": self.split,
            "fraction": self.fraction,
            "seed": self.seed,
            "parcels": self.parcels,
            "total_parcels": self.total_parcels,
            **({"fold": self.fold} if self.fold is not None else {}),
        }


def label_subset(
    store: DatasetStore | str | Path,
    fraction: float,
    seed: int,
    *,
    split: str = "train",
    positive: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    connectivity: int = 4,
) -> LabelMask:
    """Keep a seeded ``fraction`` of the labelled parcels of ``split`` (whole parcels).

    ``positive`` names the crop of interest (default: the store's own positive classes); one
    parcel of it and one of the rest are always kept. For a crop-type map (``classes``, as a
    crop-type dataset maps them) one parcel of each class the split holds is kept instead, so
    that no class is left without an example.
    """
    store = DatasetStore.open(store)
    if split not in SPLITS:
        raise InputDataError(f"unknown split {split!r} (use {' or '.join(SPLITS)})", store.path)
    names = positive if positive is not None else (store.metadata.positive or [])
    if not names and classes is None:
        raise InputDataError("store names no positive class; pass positive=", store.path)
    found = _split_parcels(store, split, subset_names(classes, names), connectivity=connectivity)
    parcels, in_split, candidates, is_positive, values = found
    kinds = _parcel_kinds(store, classes, is_positive, values)
    try:
        chosen = choose_parcels(candidates, kinds, fraction, seed)
    except InputDataError as exc:
        raise InputDataError(f"{split} split: {exc.problem}", store.path) from None
    keep = ~in_split | np.isin(parcels, chosen)
    return LabelMask(keep, split, float(fraction), int(seed), len(chosen), len(candidates))


def _split_parcels(
    store: DatasetStore,
    split: str,
    positive: Sequence[str],
    *,
    keep: np.ndarray | None = None,
    connectivity: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parcel ids of the store, which pixels lie in ``split``, the split's labelled parcels
    (those ``keep`` keeps), whether each is of a ``positive`` class and its class value."""
    labels = store_labels(store)
    parcels = store_parcels(store, connectivity=connectivity, labels=labels)
    in_split = np.zeros(parcels.shape, dtype=bool)
    in_split[store.indices(split)] = True
    usable = in_split & (parcels >= 0)
    if keep is not None:
        usable &= keep
    candidates = np.unique(parcels[usable])
    classes = parcel_classes(parcels, labels)[candidates]
    is_positive = np.isin(classes, positive_indices(store.classes, list(positive)))
    return parcels, in_split, candidates, is_positive, classes


def _parcel_kinds(
    store: DatasetStore, classes: Sequence[str] | None, is_positive: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """The kind of each candidate parcel a few-label subset keeps one of: positive or not, or
    its crop-type class (``-1``: a class the map leaves out)."""
    return is_positive if classes is None else class_lookup(store.classes, classes)[values]


def _binary_groups(
    store: DatasetStore, split: str, positive: Sequence[str], is_positive: np.ndarray
) -> list[np.ndarray]:
    """The positive and the negative parcels (masks over the candidates), two of each."""
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if min(n_pos, n_neg) < 2:
        raise InputDataError(
            f"{split} split: {n_pos} {'/'.join(positive)} and {n_neg} other labelled parcels; "
            "cross-validation over parcels needs at least 2 of each",
            store.path,
        )
    return [is_positive, ~is_positive]


def _class_groups(
    store: DatasetStore, split: str, classes: Sequence[str], target: np.ndarray
) -> list[np.ndarray]:
    """The parcels of each target class in turn, then those the classes leave out (masks over
    the candidates, from each one's class index ``target``); two of each class but ``other``."""
    short = [
        f"{name} {int(np.sum(target == k))}"
        for k, name in enumerate(classes)
        if name.casefold() != OTHER and np.sum(target == k) < 2
    ]
    if short:
        raise InputDataError(
            f"{split} split: {', '.join(short)} labelled parcels; cross-validation over "
            "parcels needs at least 2 of each class but other",
            store.path,
        )
    return [target == k for k in range(len(classes))] + [target < 0]


@dataclass(frozen=True)
class ParcelFold:
    """One fold of a cross-validation over parcels: the labels to train on and those to score.

    ``train`` keeps, like any :class:`LabelMask`, every pixel outside the split; ``held_out``
    keeps only the fold's parcels (in the split), so it scores nothing else.
    """

    train: LabelMask
    held_out: LabelMask


def parcel_folds(
    store: DatasetStore | str | Path,
    folds: int,
    seed: int,
    *,
    positive: Sequence[str],
    subset: LabelMask | None = None,
    fraction: float = 1.0,
    split: str = "train",
    classes: Sequence[str] | None = None,
) -> list[ParcelFold]:
    """Deal the labelled parcels of ``split`` (those ``subset`` keeps) into ``folds`` folds.

    Positive and negative parcels are dealt in turn after a seeded shuffle, so each fold holds
    its share of both and every training side keeps at least one of each; that needs two
    parcels of each kind. For a crop-type map (``classes``, as a crop-type dataset maps them)
    each class is dealt in turn instead, and each class but ``other`` needs two parcels. Folds
    left empty (fewer parcels than folds) are dropped. Below ``fraction`` 1 each training side
    keeps a seeded share of its parcels (as :func:`label_subset` chooses them, nested over
    fractions), while every fold still holds out all of its own: the same fields are scored at
    every fraction.
    """
    store = DatasetStore.open(store)
    keep = None if subset is None else subset.keep
    found = _split_parcels(store, split, positive, keep=keep)
    parcels, in_split, candidates, is_positive, values = found
    kinds = _parcel_kinds(store, classes, is_positive, values)
    if classes is None:
        groups = _binary_groups(store, split, positive, is_positive)
    else:
        groups = _class_groups(store, split, classes, kinds)
    rng = np.random.default_rng(seed)
    dealt = np.concatenate([rng.permutation(candidates[group]) for group in groups])
    groups = [group for i in range(folds) if len(group := dealt[i::folds])]
    base = np.ones(parcels.shape, dtype=bool) if keep is None else keep
    out = []
    for number, group in enumerate(groups, start=1):
        fold = f"{number}/{len(groups)}"
        held = in_split & np.isin(parcels, group)
        rest = ~np.isin(candidates, group)
        trained = candidates[rest]
        if fraction < 1:
            trained = choose_parcels(trained, kinds[rest], fraction, seed)
        train = base & ~(in_split & ~np.isin(parcels, trained))
        total, share = len(candidates), fraction * (1.0 if subset is None else subset.fraction)
        out.append(
            ParcelFold(
                LabelMask(train, split, share, seed, len(trained), total, fold),
                LabelMask(held, split, share, seed, len(group), total, fold),
            )
        )
    return out


def write_label_subset(store: DatasetStore | str | Path, mask: LabelMask, out: str | Path) -> Path:
    """A copy of ``store`` at ``out`` with the labels ``mask`` leaves out unlabelled.

    For tools that take a store path (the CLI, the Random Forest baseline); training in Python
    applies the mask to its dataset instead of copying the images. Normalisation is kept (it
    comes from the images, which are unchanged); class pixel counts are recomputed.
    """
    store = DatasetStore.open(store)
    meta = store.metadata
    counts = []
    with create_store(
        out, steps=store.steps, bands=len(store.bands), patch_size=store.patch_size
    ) as writer:
        for i in range(len(store)):
            image, labels = store.read_patch(i)
            labels = mask.apply(i, labels)
            writer.append(image[None], labels[None])
            counts.append(np.bincount(labels.ravel() + 1, minlength=len(meta.classes) + 1))
        statistics = dict(meta.statistics)
        statistics["class_pixels"] = split_class_pixels(counts, meta.split, meta.classes)
        source = {**meta.source, "label_subset": {"store": str(store.path), **mask.as_dict()}}
        writer.metadata = replace(meta, statistics=statistics, source=source)
    return Path(out)
