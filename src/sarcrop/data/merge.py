"""Several dataset stores into one, e.g. locations that are trained on (or tested on) together.

Each location is prepared on its own (its grid, season and split, e.g. ``--split train`` for a
fine-tuning location) and :func:`merge_stores` concatenates their patches:

- bands, timesteps, period length, patch size and composite options must agree (the model sees
  one kind of input);
- class lists are unified by name (first seen first) and labels remapped;
- each patch keeps its split, its offsets and its georeference: the merged store lists its
  ``locations`` (source store, grid, season, region, year) and the ``location`` of every patch;
- normalisation statistics are recomputed over the merged train split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from sarcrop.data.labels import fold_spellings
from sarcrop.data.normalization import checked_percentiles
from sarcrop.data.prepare import split_class_pixels, split_normalization
from sarcrop.data.split import TEST, TRAIN, common_ground, location_sources
from sarcrop.data.store import (
    DatasetStore,
    Location,
    StoreMetadata,
    check_store_out,
    create_store,
)
from sarcrop.errors import InputDataError
from sarcrop.options import CompositeOptions

BATCH = 32  # patches appended at a time
T = TypeVar("T")


def merge_stores(
    stores: Sequence[str | Path],
    out: str | Path,
    *,
    region: str | None = None,
    percentiles: Sequence[float] | None = None,
    progress: bool = True,
) -> Path:
    """Write the patches of ``stores`` as one store at ``out`` (atomically); returns ``out``.

    ``region`` names the merged store (default: the stores' regions joined by ``+``);
    ``percentiles`` chooses robust normalisation as in :func:`~sarcrop.data.prepare.prepare`,
    by default the one the stores share.
    """
    if len(stores) < 2:
        raise InputDataError(f"merge needs at least two stores, got {len(stores)}")
    out = Path(out)
    if any(Path(s).resolve() == out.resolve() for s in stores):
        raise InputDataError("the merged store cannot replace one of its inputs", out)
    check_store_out(out)
    opened = [DatasetStore(s) for s in stores]
    first = opened[0]
    for other in opened[1:]:
        _check_compatible(first, other)
    percentiles = checked_percentiles(percentiles) or _shared_percentiles(opened)
    _check_other_ground(opened)
    # Classes by name, spellings of one class (class_key) as one: "Maize" and "maize".
    every = [c for s in opened for c in s.classes]
    folded = fold_spellings(every, "classes of the stores")
    spelt = {name: str(one) for name, one in zip(every, folded, strict=True)}
    classes = list(dict.fromkeys(spelt[c] for c in every))

    locations: list[Location] = []
    location: list[int] = []
    offsets: list[tuple[int, int]] = []
    split: list[str] = []
    pixels: list[np.ndarray] = []
    with create_store(
        out, steps=first.steps, bands=len(first.bands), patch_size=first.patch_size
    ) as writer:
        for store in opened:
            own, which = _locations(store)
            location += [len(locations) + i for i in which]
            locations += own
            offsets += store.offsets
            split += store.split
            table = np.array([classes.index(spelt[c]) for c in store.classes], dtype=np.int16)
            for images, labels in _batches(store, progress):
                labels = np.where(labels >= 0, table[np.clip(labels, 0, None)], -1)
                writer.append(images, labels)
                pixels += [
                    np.bincount(lab.ravel() + 1, minlength=len(classes) + 1) for lab in labels
                ]

        stats = split_normalization(
            lambda i: np.asarray(writer.images[i]), split, first.bands, percentiles
        )
        writer.metadata = StoreMetadata(
            bands=first.bands,
            season=first.season,
            grid=first.grid,
            patch_size=first.patch_size,
            stride=first.metadata.stride,
            offsets=offsets,
            classes=classes,
            split=split,
            normalization=stats,
            region=region or _joined(s.metadata.region for s in opened),
            year=_common([s.metadata.year for s in opened]),
            positive=_common([s.metadata.positive for s in opened if s.metadata.positive]),
            source={
                "merged": [str(s.path) for s in opened],
                "composite": first.metadata.source.get("composite"),
                # one per location: a merged store's own members, not its merged record
                "stores": [source for s in opened for source in location_sources(s)],
            },
            statistics={
                "class_pixels": split_class_pixels(pixels, split, classes),
                "patches": {s: split.count(s) for s in (TRAIN, TEST)},
                "tiled": sum(int(s.metadata.statistics.get("tiled", len(s))) for s in opened),  # type: ignore[call-overload]
            },
            locations=locations,
            location=location,
        )
    return out


def _check_other_ground(stores: Sequence[DatasetStore]) -> None:
    """Refuse two stores of the same ground and season: merged, the same fields would sit in
    both splits (and under two sets of labels), and every score would be of learnt ground."""
    for i, one in enumerate(stores):
        for other in stores[i + 1 :]:
            pairs = common_ground(one, other)
            if pairs:
                raise InputDataError(
                    f"{one.path} and {other.path} hold the same ground in the same season "
                    f"({len(pairs)} overlapping patch pairs): merged, its fields would be in "
                    "both splits; merge stores of other places or seasons",
                    other.path,
                )


def _check_compatible(first: DatasetStore, other: DatasetStore) -> None:
    """One-line error naming ``other`` when its patches cannot join ``first``'s."""
    checks: list[tuple[str, object, object]] = [
        ("bands", "|".join(first.bands), "|".join(other.bands)),
        ("timesteps", first.steps, other.steps),
        ("days per timestep", first.season.days, other.season.days),
        ("patch size", first.patch_size, other.patch_size),
        ("composite options", _composite(first), _composite(other)),
    ]
    sizes = (first.pixel_size, other.pixel_size)
    if None not in sizes:  # a model learns fields in pixels: one size, or none it can be told
        checks.append(("pixel size", f"{sizes[0]:g} m", f"{sizes[1]:g} m"))
    for what, expected, found in checks:
        if expected != found:
            raise InputDataError(
                f"cannot merge: {what} {found} here, {expected} in {first.path}", other.path
            )


def _composite(store: DatasetStore) -> str:
    recorded = store.metadata.source.get("composite") or {}
    options = CompositeOptions.model_validate(recorded)
    return ", ".join(f"{k}={v}" for k, v in options.model_dump().items())


def _locations(store: DatasetStore) -> tuple[list[Location], list[int]]:
    """The locations of ``store`` and the location index of each of its patches."""
    meta = store.metadata
    if meta.locations:
        return list(meta.locations), list(meta.location)
    own = Location(
        store=str(store.path.resolve()),
        grid=meta.grid,
        season=meta.season,
        region=meta.region,
        year=meta.year,
    )
    return [own], [0] * len(store)


def _shared_percentiles(stores: Sequence[DatasetStore]) -> tuple[float, float] | None:
    """The stores' own normalisation (plain min/max, or robust percentiles), refused where
    they differ: a merge keeps what the stores were prepared with unless told otherwise."""
    chosen = {s.normalization.percentiles for s in stores}
    if len(chosen) > 1:
        methods = ", ".join(f"{s.path.name}: {s.normalization.method}" for s in stores)
        raise InputDataError(
            f"the stores are normalised differently ({methods}): choose one for the merged "
            "store with --percentiles LOW HIGH (0 100 for plain min/max)"
        )
    return chosen.pop()


def _batches(store: DatasetStore, progress: bool) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    indices = range(0, len(store), BATCH)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"merge {store.path.name}", unit="batch")
    for start in indices:
        chosen = range(start, min(start + BATCH, len(store)))
        yield (
            np.stack([store.read_image(i) for i in chosen]),
            np.stack([store.read_labels(i) for i in chosen]),
        )


def _joined(names: Iterable[str | None]) -> str | None:
    unique = list(dict.fromkeys(n for n in names if n))
    return "+".join(unique) or None


def _common(values: Sequence[T]) -> T | None:
    """The value all entries share, else ``None``."""
    return values[0] if values and all(v == values[0] for v in values) else None
