"""The dataset store: labelled patches of one area and season, as a Zarr v3 directory.

Layout (see docs/architecture.md):

- ``images``: float32 ``(n, steps, bands, P, P)`` raw dB composites, NaN = no data, one patch
  per chunk (Blosc/zstd) so reading item ``i`` reads exactly one chunk;
- ``labels``: int16 ``(n, P, P)`` class index, -1 = unlabelled;
- group attribute ``"sarcrop"``: everything needed to use the patches without the inputs —
  bands, season, grid of the area, per-patch offsets and transforms, class names, the split
  and the train-only normalisation statistics.

A store merged from several locations (:func:`sarcrop.data.merge.merge_stores`) also lists
its ``locations`` (source store, region, year, season and grid of each) and the ``location`` of
each patch; a patch's offsets and transform are then in its own location's grid, and ``grid``
and ``season`` are those of the first location.

Raw dB is stored (not normalised values) so a checkpoint's own statistics can be applied when
fine-tuning on another region. Stores are written atomically: a store under its final name is
always complete. :class:`DatasetStore` opens lazily and re-opens in each process, so it can be
handed to DataLoader worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs
import zarr.storage
from affine import Affine
from zarr.core.buffer import Buffer

from sarcrop import __version__
from sarcrop.data.grid import Grid
from sarcrop.data.normalization import Normalization
from sarcrop.data.season import Season
from sarcrop.errors import InputDataError
from sarcrop.utils.atomic import atomic_path, output_lock

FORMAT = "sarcrop-dataset"
FORMAT_VERSION = 1
ATTRS_KEY = "sarcrop"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Location:
    """One source area of a merged store: where its patches come from and their grid."""

    store: str
    grid: Grid
    season: Season
    region: str | None = None
    year: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "store": self.store,
            "grid": self.grid.to_dict(),
            "season": self.season.to_dict(),
            "region": self.region,
            "year": self.year,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Location:
        return cls(
            store=str(data["store"]),
            grid=Grid.from_dict(data["grid"]),
            season=Season.from_dict(data["season"]),
            region=data.get("region"),
            year=data.get("year"),
        )


@dataclass
class StoreMetadata:
    """What a store records besides its arrays (the ``"sarcrop"`` group attribute)."""

    bands: tuple[str, ...]
    season: Season
    grid: Grid
    patch_size: int
    stride: int
    offsets: list[tuple[int, int]]
    classes: list[str]
    split: list[str]
    normalization: Normalization
    region: str | None = None
    year: int | None = None
    positive: list[str] | None = None
    source: dict[str, object] = field(default_factory=dict)
    statistics: dict[str, object] = field(default_factory=dict)
    created_with: str = __version__
    locations: list[Location] = field(default_factory=list)
    location: list[int] = field(default_factory=list)

    @property
    def dates(self) -> list[str]:
        """Start date of each composite period (ISO)."""
        return [start.isoformat() for start, _ in self.season.periods()]

    def area(self, index: int) -> Grid:
        """The grid of the area patch ``index`` was cut from (its location's, if merged)."""
        return self.locations[self.location[index]].grid if self.locations else self.grid

    def transform(self, index: int) -> Affine:
        """Affine transform of patch ``index`` (the area transform moved to its offset)."""
        row, col = self.offsets[index]
        return self.area(index).transform @ Affine.translation(col, row)

    def to_attrs(self) -> dict[str, Any]:
        merged = (
            {"locations": [loc.to_dict() for loc in self.locations], "location": self.location}
            if self.locations
            else {}
        )
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_with": self.created_with,
            "bands": list(self.bands),
            "season": self.season.to_dict(),
            "dates": self.dates,
            "region": self.region,
            "year": self.year,
            "grid": self.grid.to_dict(),
            "patch_size": self.patch_size,
            "stride": self.stride,
            "offsets": [[int(r), int(c)] for r, c in self.offsets],
            "transforms": [list(self.transform(i))[:6] for i in range(len(self.offsets))],
            "classes": list(self.classes),
            "split": list(self.split),
            "normalization": self.normalization.to_dict(),
            "positive": self.positive,
            "source": self.source,
            "statistics": self.statistics,
            **merged,
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, object]) -> StoreMetadata:
        return cls(
            bands=tuple(attrs["bands"]),  # type: ignore[arg-type]
            season=Season.from_dict(attrs["season"]),  # type: ignore[arg-type]
            grid=Grid.from_dict(attrs["grid"]),  # type: ignore[arg-type]
            patch_size=int(attrs["patch_size"]),  # type: ignore[call-overload]
            stride=int(attrs["stride"]),  # type: ignore[call-overload]
            offsets=[(int(r), int(c)) for r, c in attrs["offsets"]],  # type: ignore[attr-defined]
            classes=[str(c) for c in attrs["classes"]],  # type: ignore[attr-defined]
            split=[str(s) for s in attrs["split"]],  # type: ignore[attr-defined]
            normalization=Normalization.from_dict(attrs["normalization"]),  # type: ignore[arg-type]
            region=attrs.get("region"),  # type: ignore[arg-type]
            year=attrs.get("year"),  # type: ignore[arg-type]
            positive=attrs.get("positive"),  # type: ignore[arg-type]
            source=dict(attrs.get("source") or {}),  # type: ignore[call-overload]
            statistics=dict(attrs.get("statistics") or {}),  # type: ignore[call-overload]
            created_with=str(attrs.get("created_with", "unknown")),
            locations=[Location.from_dict(d) for d in attrs.get("locations") or []],  # type: ignore[attr-defined]
            location=[int(i) for i in attrs.get("location") or []],  # type: ignore[attr-defined]
        )


# ---------------------------------------------------------------------------------------------
# Writing


class _WriteGate:
    """Lets writes through until closed; closing waits for the writes already running."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._running = 0
        self._closed = False

    def run(self, write: Callable[[], None]) -> None:
        with self._state:
            if self._closed:
                raise RuntimeError("store is closed for writing")
            self._running += 1
        try:
            write()
        finally:
            with self._state:
                self._running -= 1
                self._state.notify_all()

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.wait_for(lambda: self._running == 0)


class _DrainableStore(zarr.storage.LocalStore):
    """The local Zarr store sarcrop writes through: :meth:`stop_writes` drains it.

    Zarr writes chunks as tasks on its own event loop, each in a worker thread; when one fails
    (a full disk) the error reaches the caller while the others are still writing. Stopping
    the store before its temporary folder is removed guarantees nothing is created there
    afterwards: writes not yet started are refused and running ones are waited for.
    """

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self._gate = _WriteGate()

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        path, data = self.root / key, value.to_bytes()
        await asyncio.to_thread(self._gate.run, lambda: _write_file(path, data))

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if not await self.exists(key):
            await self.set(key, value)

    def stop_writes(self) -> None:
        """Refuse new writes and return once no write is running."""
        self._gate.close()


def _write_file(path: Path, data: bytes) -> None:
    # No per-chunk temporary: the whole store is a temporary until create_store renames it.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class StoreWriter:
    """Appends patches to a store being written; obtained from :func:`create_store`."""

    def __init__(self, store: _DrainableStore, *, steps: int, bands: int, patch_size: int) -> None:
        self.path = store.root
        self.group = zarr.open_group(store, mode="w", zarr_format=3)
        compressor = zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
        p = patch_size
        self.images = self.group.create_array(
            "images",
            shape=(0, steps, bands, p, p),
            chunks=(1, steps, bands, p, p),
            dtype="float32",
            fill_value=np.nan,
            compressors=compressor,
            dimension_names=("patch", "time", "band", "y", "x"),
        )
        self.labels = self.group.create_array(
            "labels",
            shape=(0, p, p),
            chunks=(1, p, p),
            dtype="int16",
            fill_value=-1,
            compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
            dimension_names=("patch", "y", "x"),
        )
        self.metadata: StoreMetadata | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def append(self, images: np.ndarray, labels: np.ndarray) -> range:
        """Append ``(k, steps, bands, P, P)`` images and ``(k, P, P)`` labels; their indices."""
        if (
            images.shape[0] != labels.shape[0]
            or images.shape[1:] != self.images.shape[1:]
            or labels.shape[1:] != self.labels.shape[1:]
        ):
            raise ValueError(
                f"patch shapes {images.shape}, {labels.shape} do not fit the store "
                f"{self.images.shape[1:]}, {self.labels.shape[1:]}"
            )
        start, k = len(self), images.shape[0]
        if k == 0:
            return range(start, start)
        self.images.resize((start + k, *self.images.shape[1:]))
        self.labels.resize((start + k, *self.labels.shape[1:]))
        self.images[start : start + k] = images.astype(np.float32, copy=False)
        self.labels[start : start + k] = labels.astype(np.int16, copy=False)
        return range(start, start + k)


@contextlib.contextmanager
def create_store(
    path: str | Path, *, steps: int, bands: int, patch_size: int
) -> Iterator[StoreWriter]:
    """Write a store atomically: append patches, then set ``writer.metadata`` before leaving."""
    check_store_out(path)
    busy = "another run is writing this store"
    with (
        output_lock(Path(path), busy=busy, what="a store"),
        atomic_path(path, directory=True) as tmp,
    ):
        store = _DrainableStore(tmp)
        try:
            writer = StoreWriter(store, steps=steps, bands=bands, patch_size=patch_size)
            yield writer
            _finish(writer)
        finally:
            # Before atomic_path renames or removes the folder: no write may still be running.
            store.stop_writes()


def check_store_out(path: str | Path) -> None:
    """Refuse to write a store over anything but an empty folder or a sarcrop store: a new
    store replaces what is there, and a mistaken ``--out`` must not delete a user's files.
    Callers check before minutes of work; :func:`create_store` checks again."""
    path = Path(path)
    if not os.path.lexists(path) or (path.is_dir() and not any(path.iterdir())):
        return
    if path.is_dir() and _holds_store(path):
        return
    what = "folder that is not a sarcrop dataset store" if path.is_dir() else "file"
    raise InputDataError(
        f"output exists and is a {what}: not replaced (give a new path, or remove it first)",
        path,
    )


def _holds_store(path: Path) -> bool:
    """Whether ``path`` is a sarcrop dataset store, from its group's attributes alone (a
    damaged store may be replaced)."""
    import json

    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and (attrs.get(ATTRS_KEY) or {}).get("format") == FORMAT


def _finish(writer: StoreWriter) -> None:
    """Check the metadata against the arrays and record it (the store's last write)."""
    meta = writer.metadata
    if meta is None:
        raise RuntimeError("store metadata was not set before closing")
    n = len(writer)
    if len(meta.offsets) != n or len(meta.split) != n:
        raise RuntimeError(
            f"metadata describes {len(meta.offsets)} offsets and "
            f"{len(meta.split)} split entries for {n} patches"
        )
    if len(meta.bands) != writer.images.shape[2] or meta.season.steps != writer.images.shape[1]:
        raise RuntimeError("metadata bands/steps do not match the image array")
    writer.group.attrs[ATTRS_KEY] = meta.to_attrs()


def write_store(
    path: str | Path, images: np.ndarray, labels: np.ndarray, metadata: StoreMetadata
) -> Path:
    """Write in-memory patches and their metadata as a store (atomically)."""
    images = np.asarray(images)
    with create_store(
        path, steps=images.shape[1], bands=images.shape[2], patch_size=images.shape[-1]
    ) as writer:
        writer.append(images, np.asarray(labels))
        writer.metadata = metadata
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Reading


class DatasetStore:
    """A dataset store opened for reading: metadata up front, pixels per patch on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        group = _open_group(self.path)
        self.metadata = _validated_metadata(self.path, group)
        self._group: zarr.Group | None = group
        self._arrays_cache: tuple[zarr.Array, zarr.Array] | None = None
        self._pid = os.getpid()
        self._token: str | None = None  # content_token, once computed

    @classmethod
    def open(cls, store: str | Path | DatasetStore) -> DatasetStore:
        """``store`` as it is where it is open already, else opened from its path."""
        return store if isinstance(store, DatasetStore) else cls(store)

    # Lazy, per-process access to the arrays ------------------------------------------------
    def _arrays(self) -> tuple[zarr.Array, zarr.Array]:
        """The images and labels arrays, opened once per process (resolving them costs about
        a millisecond, as much as reading a small patch)."""
        if self._group is None or self._pid != os.getpid():
            self._group, self._arrays_cache = _open_group(self.path), None
            self._pid = os.getpid()
        if self._arrays_cache is None:
            self._arrays_cache = _arrays_of(self.path, self._group)
        return self._arrays_cache

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_group"] = state["_arrays_cache"] = None
        return state

    # Items ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.metadata.offsets)

    def _check(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"patch {index} out of range for a store of {len(self)} patches")
        return index

    def read_image(self, index: int) -> np.ndarray:
        """Raw dB composites ``(steps, bands, P, P)`` of patch ``index``."""
        return self._read(0, index)

    def read_labels(self, index: int) -> np.ndarray:
        """Class indices ``(P, P)`` of patch ``index`` (-1 = unlabelled)."""
        return self._read(1, index)

    def _read(self, array: int, index: int) -> np.ndarray:
        index = self._check(index)
        try:
            return np.asarray(self._arrays()[array][index])
        except _READ_ERRORS as exc:  # a damaged chunk: blosc, size or dtype errors
            problem = f"{('images', 'labels')[array]} of patch {index} unreadable: {_one_line(exc)}"
            raise InputDataError(problem, self.path) from exc

    def read_all_labels(self) -> np.ndarray:
        """Class indices ``(n, P, P)`` of every patch, in one read (-1 = unlabelled)."""
        try:
            return np.asarray(self._arrays()[1][:])
        except _READ_ERRORS:  # patch by patch, so that the error names the damaged one
            return np.stack([self.read_labels(i) for i in range(len(self))])

    def read_patch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image, labels)`` of patch ``index``."""
        return self.read_image(index), self.read_labels(index)

    def indices(self, split: str = "all") -> list[int]:
        """Indices of the patches in ``split`` (``"train"``, ``"test"`` or ``"all"``)."""
        if split == "all":
            return list(range(len(self)))
        if split not in SPLITS:
            raise InputDataError(f"unknown split {split!r} (use train, test or all)", self.path)
        return [i for i, s in enumerate(self.metadata.split) if s == split]

    # Metadata shortcuts --------------------------------------------------------------------
    @property
    def bands(self) -> tuple[str, ...]:
        return self.metadata.bands

    @property
    def classes(self) -> list[str]:
        return self.metadata.classes

    @property
    def season(self) -> Season:
        return self.metadata.season

    @property
    def steps(self) -> int:
        return self.metadata.season.steps

    @property
    def grid(self) -> Grid:
        return self.metadata.grid

    @property
    def patch_size(self) -> int:
        return self.metadata.patch_size

    @property
    def offsets(self) -> list[tuple[int, int]]:
        return self.metadata.offsets

    @property
    def split(self) -> list[str]:
        return self.metadata.split

    @property
    def normalization(self) -> Normalization:
        return self.metadata.normalization

    @property
    def classes_with_pixels(self) -> list[str]:
        """The classes that hold labelled pixels in some split (every class where the store
        does not count them): a legend's store names hundreds of classes, a few of them here."""
        counts = self.metadata.statistics.get("class_pixels")
        if not isinstance(counts, dict) or not counts:
            return list(self.classes)
        held = {name for split in counts.values() for name, n in dict(split).items() if n}
        return [name for name in self.classes if name in held]

    def require_positive(self, positive: Sequence[str] | str, split: str) -> None:
        """Refuse ``positive`` classes the labels lack, or a ``split`` that holds no labelled
        pixel of them: a binary model learnt from it calls nothing positive. Stores that do
        not count their classes pass the second check."""
        from sarcrop.data.labels import labelled_pixels, positive_indices

        try:
            found = positive_indices(self.classes, positive, self.classes_with_pixels)
        except InputDataError as exc:
            raise InputDataError(exc.problem, exc.path or self.path) from None
        counts = self.metadata.statistics.get("class_pixels")
        pixels = counts.get(split, {}) if isinstance(counts, dict) else {}
        if pixels and not any(pixels.get(self.classes[i], 0) for i in found):
            what = positive if isinstance(positive, str) else "/".join(positive)
            raise InputDataError(
                f"holds no {what} pixel in its {split} split (labelled: {labelled_pixels(pixels)})",
                self.path,
            )

    def read_as(self) -> dict[str, Any]:
        """``{"pixel_size": metres, "orbit": direction}`` where the store records them: a
        model keeps them, so that ``predict`` names images read otherwise."""
        read = {"pixel_size": self.pixel_size, "orbit": self.orbit}
        return {key: value for key, value in read.items() if value}

    @property
    def orbit(self) -> str | None:
        """The orbit direction whose acquisitions the composites hold (ascending, descending
        or both), where the store records it."""
        orbit = self.metadata.source.get("orbit")
        return str(orbit) if orbit else None

    @property
    def pixel_size(self) -> float | None:
        """The side of the store's square pixels in metres, where every location of it has
        the same on a metric grid (else None)."""
        grids = [location.grid for location in self.metadata.locations] or [self.grid]
        sizes = {grid.metre_pixels for grid in grids}
        return sizes.pop() if len(sizes) == 1 else None

    def content_token(self) -> str:
        """A digest of what the store holds, wherever it lies (its path plays no part): its
        metadata (bands, season, split, classes, statistics, normalisation), every label, and
        the size of each patch's compressed composites. A store prepared again under the same
        path from other labels or scenes has another; reading, copying or moving it keeps it.
        Cheap: labels compress to little and the images are only listed (a few milliseconds
        for hundreds of patches); computed once per opened store."""
        if self._token is None:
            digest = hashlib.sha256()
            for path in sorted(self.path.rglob("*")):
                name = path.relative_to(self.path).as_posix()
                if not path.is_file() or not _holds_content(name):
                    continue
                if name.startswith("images/") and path.name != "zarr.json":
                    digest.update(f"{name}\0{path.stat().st_size}\n".encode())
                else:
                    digest.update(f"{name}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
            self._token = digest.hexdigest()
        return self._token

    def patch_grid(self, index: int) -> Grid:
        """The georeferenced grid of patch ``index``."""
        p, index = self.patch_size, self._check(index)
        return Grid(self.metadata.area(index).crs, self.metadata.transform(index), p, p)

    def __repr__(self) -> str:
        counts = {s: self.split.count(s) for s in SPLITS}
        return (
            f"DatasetStore({str(self.path)!r}, patches={len(self)}, train={counts['train']}, "
            f"test={counts['test']}, bands={self.bands}, steps={self.steps}, "
            f"patch_size={self.patch_size})"
        )


# What Zarr raises on damaged metadata or chunks (JSON, codec and shape errors).
_READ_ERRORS = (zarr.errors.BaseZarrError, ValueError, TypeError, KeyError, RuntimeError, OSError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _holds_content(name: str) -> bool:
    """Whether the file ``name`` (relative to a store) is part of its Zarr group: the group's
    metadata and the images' and labels' arrays, not a file put beside them."""
    return name == "zarr.json" or name.split("/", 1)[0] in ("images", "labels")


def _open_group(path: Path) -> zarr.Group:
    if not path.exists():
        raise InputDataError("dataset store does not exist", path)
    if not (path / "zarr.json").is_file():
        raise InputDataError("not a sarcrop dataset store (no Zarr v3 group here)", path)
    try:
        return zarr.open_group(path, mode="r", zarr_format=3)
    except _READ_ERRORS as exc:
        raise InputDataError(f"not a readable Zarr v3 group: {_one_line(exc)}", path) from exc


def _arrays_of(path: Path, group: zarr.Group) -> tuple[zarr.Array, zarr.Array]:
    try:
        images, labels = group.get("images"), group.get("labels")
    except _READ_ERRORS as exc:
        raise InputDataError(f"unreadable array metadata: {_one_line(exc)}", path) from exc
    if not isinstance(images, zarr.Array) or not isinstance(labels, zarr.Array):
        raise InputDataError("dataset store lacks its 'images' or 'labels' array", path)
    return images, labels


def _validated_metadata(path: Path, group: zarr.Group) -> StoreMetadata:
    attrs = group.attrs.get(ATTRS_KEY)
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT:
        raise InputDataError("not a sarcrop dataset store (no 'sarcrop' attributes)", path)
    version = attrs.get("format_version")
    if version != FORMAT_VERSION:
        raise InputDataError(
            f"dataset store format {version} (written by sarcrop {attrs.get('created_with')}) "
            f"is not supported; this sarcrop {__version__} reads format {FORMAT_VERSION}",
            path,
        )
    try:
        meta = StoreMetadata.from_attrs(attrs)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputDataError(
            f"dataset store metadata is incomplete or invalid: {exc}", path
        ) from exc
    images, labels = _arrays_of(path, group)
    n, p = len(meta.offsets), meta.patch_size
    expected = (n, meta.season.steps, len(meta.bands), p, p)
    if tuple(images.shape) != expected or tuple(labels.shape) != (n, p, p) or len(meta.split) != n:
        raise InputDataError(
            f"dataset store arrays {tuple(images.shape)}, {tuple(labels.shape)} do not match "
            f"its metadata {expected}",
            path,
        )
    known = range(len(meta.locations))
    if meta.locations and (len(meta.location) != n or any(i not in known for i in meta.location)):
        raise InputDataError("dataset store locations do not cover its patches", path)
    return meta


def split_counts(split: Sequence[str]) -> dict[str, int]:
    """Number of patches per split name."""
    return {s: sum(1 for v in split if v == s) for s in SPLITS}
