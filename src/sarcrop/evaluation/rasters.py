"""Reading a map and rasters on its grid for sampling and assessment: in row strips with GDAL's
block cache capped, never whole, so that memory stays bounded whatever the map's size; and what
the map's class numbers are (:class:`MapClasses`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.errors import InputDataError

MAP_NODATA = 255
STRIP_PIXELS = 1 << 22
GDAL_CACHE_MB = 64


def grid_of(ds: rasterio.io.DatasetReader) -> Grid:
    return Grid(ds.crs, ds.transform, ds.width, ds.height)


def band_index(ds: rasterio.io.DatasetReader, band: str | int, path: str | Path) -> int:
    """A 1-based band index from a number or a band description."""
    text = str(band)
    if text.isdigit() and 1 <= int(text) <= ds.count:
        return int(text)
    for i, name in enumerate(ds.descriptions, start=1):
        if name == text:
            return i
    names = [d or str(i) for i, d in enumerate(ds.descriptions, start=1)]
    raise InputDataError(f"no band {text!r} (bands: {', '.join(names)})", path)


def class_band(ds: rasterio.io.DatasetReader, path: str | Path) -> int:
    """The map's class band: the one named ``class``, or the only band."""
    if "class" in ds.descriptions:
        return ds.descriptions.index("class") + 1
    if ds.count == 1:
        return 1
    raise InputDataError("no band named 'class' in a map of several bands", path)


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster with GDAL's block cache capped, so that memory stays bounded whatever
    the size of the map (the cache would otherwise keep every decoded tile up to 5 % of RAM)."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        try:
            ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            problem = " ".join(str(exc).split())
            raise InputDataError(f"not a readable raster: {problem}", path) from None
        with ds:
            yield ds


def check_same_grid(
    reference: Grid, ds: rasterio.io.DatasetReader, path: str | Path, what: str = "the map's"
) -> None:
    other = grid_of(ds)
    if not reference.same_as(other):
        raise InputDataError(
            f"grid {other.width}×{other.height} {other.crs} {tuple(other.transform)[:6]} differs "
            f"from {what} {reference.width}×{reference.height} {reference.crs} "
            f"{tuple(reference.transform)[:6]}",
            path,
        )


def strips(grid: Grid, block_rows: int = 1) -> Iterator[Window]:
    """Full-width row strips of about :data:`STRIP_PIXELS` pixels, top to bottom, a multiple
    of ``block_rows`` high (the raster's tile height, so that no tile is decoded twice)."""
    rows = max(1, STRIP_PIXELS // max(grid.width, 1)) // block_rows * block_rows
    rows = max(rows, block_rows)
    for r0 in range(0, grid.height, rows):
        yield Window(0, r0, grid.width, min(rows, grid.height - r0))


def block_rows(ds: rasterio.io.DatasetReader, band: int = 1) -> int:
    """The tile height of a band (1 for strip-organised files of one row per block)."""
    return max(1, int(ds.block_shapes[band - 1][0]))


def read_map_classes(ds: rasterio.io.DatasetReader, band: int, window: Window) -> np.ndarray:
    """Map classes of a window as int32, -1 on nodata (its tag, else 255) and, in a float map,
    on values that are not finite (NaN, whatever its nodata tag says); a fraction is refused,
    since no class is numbered so."""
    values = ds.read(band, window=window)
    nodata = ds.nodatavals[band - 1]
    missing = values == (MAP_NODATA if nodata is None else nodata)
    if values.dtype.kind == "f":
        missing |= ~np.isfinite(values)
        fractions = values[~missing & (values % 1 != 0)]
        if fractions.size:
            raise InputDataError(
                f"the class band holds {fractions[0]:g}, not a class number: give a map of "
                "whole class numbers (band 'class' of `sarcrop predict`)",
                ds.name,
            )
    out = np.where(missing, 0, values).astype(np.int32)
    out[missing] = -1
    return out


def map_class_pixels(ds: rasterio.io.DatasetReader, band: int) -> dict[int, int]:
    """Pixels of each class of a map (nodata left out), read strip by strip."""
    pixels: dict[int, int] = {}
    for window in strips(grid_of(ds), block_rows(ds, band)):
        for c, k in pixel_counts(read_map_classes(ds, band, window)).items():
            pixels[c] = pixels.get(c, 0) + k
    return pixels


def pixel_counts(values: np.ndarray) -> dict[int, int]:
    codes, counts = np.unique(values[values >= 0], return_counts=True)
    return dict(zip(codes.tolist(), counts.tolist(), strict=True))


@dataclass(frozen=True)
class MapClasses:
    """What a map's class numbers are: a crop-type map's class names by index, or a one-crop
    map's crop (its ``POSITIVE`` tag), class 1 against the rest, 0."""

    names: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many classes the map can hold (a one-crop map: 0 and 1)."""
        return len(self.names) or 2

    def design(self) -> dict[str, str]:
        """The entries of a sample's ``design`` that keep them."""
        return {"class_names": json.dumps(list(self.names)), "positive": ",".join(self.positive)}


def map_class_names(ds: rasterio.io.DatasetReader) -> tuple[str, ...]:
    """A crop-type map's class names by index (its ``CLASS_NAMES`` tag); empty for a binary
    map."""
    names = ds.tags().get("CLASS_NAMES")
    return tuple(json.loads(names)) if names else ()


def map_classes(ds: rasterio.io.DatasetReader, path: str | Path) -> MapClasses:
    """The classes of the map open as ``ds``: ``CLASS_NAMES``, or the ``POSITIVE`` tag of its
    class band (as ``predict`` writes it) or of the file (a map from elsewhere)."""
    band = class_band(ds, path)
    named = ds.tags(band).get("POSITIVE") or ds.tags().get("POSITIVE", "")
    return MapClasses(map_class_names(ds), tuple(p for p in named.split(",") if p))


def map_classes_at(
    ds: rasterio.io.DatasetReader, band: int, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Map classes at points ``(x, y)``, NaN outside or on the map's nodata: its tag, else 255
    (:data:`MAP_NODATA`), as :func:`read_map_classes` reads it."""
    values = values_at(ds, band, x, y)
    if ds.nodatavals[band - 1] is None:
        values[values == MAP_NODATA] = np.nan
    return values


def values_at(ds: rasterio.io.DatasetReader, band: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixel values of ``band`` at points ``(x, y)`` (float, NaN outside or on nodata), read
    point by point, so that a sample never reads a whole raster."""
    values = ds.sample(zip(x.tolist(), y.tolist(), strict=True), indexes=band, masked=True)
    return np.array([np.nan if v.mask.any() else float(v[0]) for v in values])
