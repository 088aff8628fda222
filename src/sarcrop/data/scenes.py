"""One reader for every Sentinel-1 layout.

:func:`sarcrop.data.reader.open_scenes` takes a folder, glob, file list, netCDF/Zarr cube or STAC
source, asks each registered layout whether it recognises the source, and returns a
:class:`SceneStack`: a lazily read ``(time, band, y, x)`` cube with acquisition times, band names,
grid and units. Data is only read by :meth:`SceneStack.read`, one window at a time, so any area
size streams.

A new layout plugs in by subclassing :class:`Layout` with a name and a detection order
(``class Mine(Layout, name="mine", order=60)``); nothing else in sarcrop changes. Layouts whose
pixels live in raster files describe each (acquisition, band) as a :class:`BandRef` and return a
:class:`RasterStack`, which does the windowed reading, nodata masking and regridding for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from sarcrop.data.grid import Grid
from sarcrop.data.units import db_to_linear, dn_to_db, linear_to_db, mask_fills
from sarcrop.errors import InputDataError

Units = Literal["db", "linear"]
Orbit = Literal["ascending", "descending"]
Source = str | Path | Sequence[str | Path]


def is_url(source: Source) -> bool:
    """Whether ``source`` is an http(s) URL (a STAC API or item), the one kind of input that
    is not read from local files."""
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def has_scheme(text: str) -> bool:
    """Whether ``text`` names a URL of any scheme (``s3://``, ``gs://``, ``http://`` …) rather
    than a local path: not to be resolved against a folder, and read only where :func:`is_url`."""
    return "://" in text


OTHER_URL = "not read: scenes are local files, or an http(s) URL of a STAC API or item"


@dataclass(frozen=True)
class Acquisition:
    """Metadata of one acquisition (one time slice of a stack). ``time`` is naive UTC.

    ``until`` is set where the slice is a mean over time rather than one acquisition (a monthly
    composite stamped on its first day): it covers ``[time, until)`` and stands for the middle
    of that span, where composites read it (:attr:`middle`)."""

    time: dt.datetime
    orbit: Orbit | None = None
    relative_orbit: int | None = None
    platform: str | None = None
    source: str = ""
    until: dt.datetime | None = None

    @property
    def middle(self) -> dt.datetime:
        """The time the slice's values stand for: the acquisition's, or its span's middle."""
        return self.time if self.until is None else self.time + (self.until - self.time) / 2


@dataclass
class SceneStack(ABC):
    """A lazily read ``(time, band, y, x)`` backscatter cube on one grid.

    ``read`` returns float32 with NaN wherever the input had nodata, NaN, Inf or a fill no
    backscatter takes (:func:`~sarcrop.data.units.mask_fills`), in the stack's ``units``.
    Acquisitions are sorted by time. ``sources`` lists each input raster with its own
    (native) grid; reads bring them onto ``grid``, which :func:`open_scenes` may change.
    """

    grid: Grid
    acquisitions: list[Acquisition]
    bands: tuple[str, ...]
    units: Units
    description: str = ""
    attrs: dict[str, object] = field(default_factory=dict)
    sources: list[tuple[str, Grid]] = field(default_factory=list)

    @property
    def times(self) -> list[dt.datetime]:
        return [a.time for a in self.acquisitions]

    @property
    def middles(self) -> list[dt.datetime]:
        """The times the slices stand for (:attr:`Acquisition.middle`), which composites use."""
        return [a.middle for a in self.acquisitions]

    @abstractmethod
    def read(
        self,
        time_indices: Sequence[int],
        bands: Sequence[str],
        window: Window | None = None,
    ) -> np.ndarray:
        """Read ``(len(time_indices), len(bands), h, w)`` float32, NaN for missing data."""

    def require_bands(self, bands: Sequence[str]) -> None:
        missing = [b for b in bands if b not in self.bands]
        if missing:
            skipped = self.skipped()
            where = self.sources[0][0] if len(self.sources) == 1 else self.description
            raise InputDataError(
                f"missing band {', '.join(missing)}: found {', '.join(self.bands) or 'none'}"
                + (f"; skipped {skipped}" if skipped else ""),
                where,
            )

    def skipped(self) -> str:
        """The inputs the layout left out, and why (at most three named), or ""."""
        names = [str(name) for name in self.attrs.get("skipped") or []]  # type: ignore[attr-defined]
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more

    def select(self, keep: Callable[[Acquisition], bool]) -> SceneStack:
        """A view of this stack keeping only the acquisitions for which ``keep`` is true."""
        return _Subset(self, [i for i, a in enumerate(self.acquisitions) if keep(a)])

    def target(self, window: Window | None) -> Grid:
        """The grid a read of ``window`` (None = everything) returns."""
        if window is None:
            return self.grid
        window = Window(
            *(round(v) for v in (window.col_off, window.row_off, window.width, window.height))
        )
        return self.grid.window_grid(window)


@dataclass
class _Subset(SceneStack):
    def __init__(self, parent: SceneStack, indices: list[int]) -> None:
        super().__init__(
            parent.grid,
            [parent.acquisitions[i] for i in indices],
            parent.bands,
            parent.units,
            parent.description,
            dict(parent.attrs),
            list(parent.sources),
        )
        self._parent = parent
        self._indices = indices

    def read(
        self, time_indices: Sequence[int], bands: Sequence[str], window: Window | None = None
    ) -> np.ndarray:
        self._parent.grid, self._parent.units = self.grid, self.units
        return self._parent.read([self._indices[i] for i in time_indices], bands, window)


@dataclass(frozen=True)
class BandRef:
    """Where one band of one acquisition lives: a 1-based band ``index`` of a raster file.

    ``scaled`` marks uint16 digital numbers in the WorldCereal convention (see
    :func:`sarcrop.data.units.dn_to_db`), for a layout that knows its files hold them: the
    built-in raster layouts never set it, since plain uint16 values (uncalibrated amplitude,
    say) would be converted silently; only cubes' WorldCereal variable names tell them.
    """

    path: str
    index: int
    grid: Grid
    nodata: float | None = None
    scaled: bool = False


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.DatasetReader]:
    """``rasterio.open`` whose failures become one-line :class:`InputDataError`."""
    try:
        with rasterio.open(path) as src:
            yield src
    except RasterioError as exc:
        raise InputDataError(f"cannot read raster: {_first_line(exc)}", path) from exc
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"cannot read raster: corrupt metadata (not UTF-8 text: {exc.reason})", path
        ) from exc


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or of GDAL's own error behind it where rasterio
    says only "See previous exception for details"."""
    text = str(exc).strip()
    if "previous exception" in text and exc.__cause__ is not None:
        return _first_line(exc.__cause__)
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class RasterStack(SceneStack):
    """A stack whose pixels are bands of raster files (GeoTIFF, VRT, COG over HTTP…).

    ``refs[t][band]`` says where band ``band`` of acquisition ``t`` lives; a band absent from an
    acquisition reads as NaN. Each file is opened once per :meth:`read` and all requested bands
    of it are read in one windowed call.
    """

    refs: list[dict[str, BandRef]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sources:
            seen: dict[str, Grid] = {}
            for per_band in self.refs:
                for ref in per_band.values():
                    seen.setdefault(ref.path, ref.grid)
            self.sources = list(seen.items())

    def select(self, keep: Callable[[Acquisition], bool]) -> RasterStack:
        kept = [i for i, a in enumerate(self.acquisitions) if keep(a)]
        return RasterStack(
            self.grid,
            [self.acquisitions[i] for i in kept],
            self.bands,
            self.units,
            self.description,
            dict(self.attrs),
            refs=[self.refs[i] for i in kept],
        )

    def read(
        self, time_indices: Sequence[int], bands: Sequence[str], window: Window | None = None
    ) -> np.ndarray:
        target = self.target(window)
        # Not filled with NaN up front: every band read is written whole (saves a pass).
        out = np.empty(
            (len(time_indices), len(bands), target.height, target.width), dtype=np.float32
        )
        groups: dict[str, list[tuple[int, int, BandRef]]] = {}
        for ti, t in enumerate(time_indices):
            for bi, band in enumerate(bands):
                ref = self.refs[t].get(band)
                if ref is None:
                    out[ti, bi] = np.nan
                else:
                    groups.setdefault(ref.path, []).append((ti, bi, ref))
        for path, entries in groups.items():
            dest = _destination(out, entries)
            data = self._read_file(path, entries, target, dest)
            if data is not dest:
                for k, (ti, bi, _) in enumerate(entries):
                    out[ti, bi] = data[k]
        return out

    def _read_file(
        self,
        path: str,
        entries: list[tuple[int, int, BandRef]],
        target: Grid,
        dest: np.ndarray | None = None,
    ) -> np.ndarray:
        """The bands of ``entries`` on ``target``; read straight into ``dest`` (and returned)
        when the file is float32 and pixel-aligned with ``target``, saving a copy."""
        first = entries[0][2]
        with open_raster(path) as src:
            indexes = [ref.index for _, _, ref in entries]
            float32 = all(src.dtypes[i - 1] == "float32" for i in indexes)

            def read_native(win: Window) -> np.ndarray:
                shape = (len(indexes), int(win.height), int(win.width))
                into = dest if float32 and dest is not None and dest.shape == shape else None
                try:
                    raw = src.read(indexes, window=win, out=into)
                except RasterioError as exc:
                    raise InputDataError(f"cannot read pixels: {_first_line(exc)}", path) from exc
                if first.scaled:
                    return dn_to_db(raw)
                data = raw.astype(np.float32, copy=False)
                if first.nodata is not None and not math.isnan(first.nodata):
                    data[raw == first.nodata] = np.nan
                return mask_fills(data)

            return read_onto(first.grid, target, read_native, self.units, len(entries))


def _destination(out: np.ndarray, entries: list[tuple[int, int, BandRef]]) -> np.ndarray | None:
    """The part of ``out`` that ``entries`` fill, if they are consecutive bands of one time."""
    ti, first = entries[0][0], entries[0][1]
    if all(t == ti and b == first + k for k, (t, b, _) in enumerate(entries)):
        return out[ti, first : first + len(entries)]
    return None


def _aligned_offset(native: Grid, target: Grid) -> tuple[int, int] | None:
    """(row, col) of the target's origin in native pixels, if both share pixel edges."""
    a, b, c, d, e, f = list(native.transform)[:6]
    ta, tb, tc, td, te, tf = list(target.transform)[:6]
    if native.crs != target.crs or b or d or tb or td:
        return None
    if not (math.isclose(a, ta, rel_tol=1e-9) and math.isclose(e, te, rel_tol=1e-9)):
        return None
    col, row = (tc - c) / a, (tf - f) / e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


def read_onto(
    native: Grid,
    target: Grid,
    read_native: Callable[[Window], np.ndarray],
    units: Units,
    count: int,
) -> np.ndarray:
    """Read the part of a native raster covering ``target`` and return it on ``target``.

    ``read_native(window)`` returns ``(count, h, w)`` float32 (NaN = no data) for a window inside
    the native grid. Pixel-aligned grids are cut without resampling; anything else is reprojected
    with GDAL in linear power (bilinear when the target is finer, area average when coarser)
    and converted back, because averaging dB values would bias dark pixels.
    """
    offset = _aligned_offset(native, target)
    if offset is not None:
        row, col = offset
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + target.height, native.height), min(col + target.width, native.width)
        if r1 <= r0 or c1 <= c0:
            return np.full((count, target.height, target.width), np.nan, dtype=np.float32)
        data = read_native(Window(c0, r0, c1 - c0, r1 - r0))
        if (r0, c0, r1, c1) == (row, col, row + target.height, col + target.width):
            return data
        out = np.full((data.shape[0], target.height, target.width), np.nan, dtype=np.float32)
        out[:, r0 - row : r1 - row, c0 - col : c1 - col] = data
        return out
    bounds = transform_bounds(target.crs, native.crs, *target.bounds, densify_pts=21)
    covering = from_bounds(*bounds, transform=native.transform)
    r0 = max(math.floor(covering.row_off) - 2, 0)
    c0 = max(math.floor(covering.col_off) - 2, 0)
    r1 = min(math.ceil(covering.row_off + covering.height) + 2, native.height)
    c1 = min(math.ceil(covering.col_off + covering.width) + 2, native.width)
    if r1 <= r0 or c1 <= c0:
        return np.full((count, target.height, target.width), np.nan, dtype=np.float32)
    win = Window(c0, r0, c1 - c0, r1 - r0)
    data = read_native(win)
    if units == "db":
        data = db_to_linear(data)
    coarser = covering.width * covering.height > 1.5 * target.width * target.height
    out = np.full((data.shape[0], target.height, target.width), np.nan, dtype=np.float32)
    reproject(
        source=np.ascontiguousarray(data, dtype=np.float32),
        destination=out,
        src_transform=native.transform @ Affine.translation(c0, r0),
        src_crs=native.crs,
        src_nodata=np.nan,
        dst_transform=target.transform,
        dst_crs=target.crs,
        dst_nodata=np.nan,
        resampling=Resampling.average if coarser else Resampling.bilinear,
    )
    return linear_to_db(out) if units == "db" else out


class Layout(ABC):
    """A way Sentinel-1 data can be laid out on disk (or in a catalog).

    A subclass declared with ``name=`` registers itself; its docstring, on one line, is the
    ``description`` that the "no layout matched" message lists.
    """

    name: str = ""
    description: str = ""
    #: Detection order: lower values are asked first (more specific layouts go first).
    order: int = 100

    def __init_subclass__(cls, *, name: str = "", order: int = 100, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if name:
            cls.name, cls.order = name, order
            cls.description = " ".join((cls.__doc__ or "").split())
            register_layout(cls)

    @abstractmethod
    def detect(
        self, paths: list[Path], source: Source, band_map: dict[str, str] | None = None
    ) -> bool:
        """Whether this layout recognises the resolved input paths (with ``band_map``'s names
        for its bands, where it names bands)."""

    @abstractmethod
    def open(self, paths: list[Path], source: Source, **options: object) -> SceneStack:
        """Open the input as a stack (lazily: no pixel data is read here)."""

    def rejection(self, paths: list[Path], source: Source) -> str | None:
        """Why the input almost matched but was refused (for the "no layout" error), if known."""
        return None


LAYOUTS: list[Layout] = []


def register_layout(cls: type[Layout]) -> type[Layout]:
    """Add a layout to the detection order (first match wins); ``name=`` subclasses call it."""
    LAYOUTS[:] = [layout for layout in LAYOUTS if type(layout).__name__ != cls.__name__]
    LAYOUTS.append(cls())
    LAYOUTS.sort(key=lambda layout: layout.order)
    return cls
