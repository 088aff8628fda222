"""Merge strips in order and write the map as a Cloud-Optimized GeoTIFF.

Strips are merged top to bottom: the rows a strip shares with the one above are the sum of both
strips' weighted contributions (always added in the same order, so the bytes never depend on
who computed what), the rows only it covers are final already. Finished rows are encoded to
uint8 and buffered into whole 512-row tile rows of an intermediate tiled GeoTIFF, so memory
holds about two strips regardless of the area. The intermediate is then copied with GDAL's COG
driver (tiles, compression, overviews) under a temporary name and renamed onto the output.

Encoding: probability ``p`` → ``round(250·p)`` (0–250, scale 1/250), class → ``p >= threshold``
(0/1); 255 is nodata in both bands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.prediction.engine import StripResult, finalize
from sarcrop.prediction.windows import WindowLayout
from sarcrop.utils.atomic import atomic_path

NODATA = 255
PROBABILITY_SCALE = 250


@dataclass(frozen=True)
class OutputBands:
    """Which bands the map has and how class is derived from probability."""

    probability: bool = True
    classes: bool = True
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not (self.probability or self.classes):
            raise ValueError("the map needs at least one of probability and classes")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")

    @property
    def names(self) -> list[str]:
        return [n for n, on in (("probability", self.probability), ("class", self.classes)) if on]

    def encode(self, prob: np.ndarray) -> np.ndarray:
        """``(rows, cols)`` float probability (NaN = no data) → ``(bands, rows, cols)`` uint8."""
        nodata = np.isnan(prob)
        out = []
        if self.probability:
            scaled = np.rint(np.nan_to_num(prob) * PROBABILITY_SCALE).astype(np.uint8)
            out.append(np.where(nodata, NODATA, scaled).astype(np.uint8))
        if self.classes:
            cls = (np.nan_to_num(prob) >= self.threshold).astype(np.uint8)
            out.append(np.where(nodata, NODATA, cls).astype(np.uint8))
        return np.stack(out)


def merged_rows(
    layout: WindowLayout, load: Callable[[int], StripResult]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, probability rows)`` top to bottom; two strips in memory at most."""
    carry: tuple[np.ndarray, np.ndarray] | None = None
    for index in range(layout.n_strips):
        strip = load(index)
        rows = layout.strip(index)
        if rows.head[1] > rows.head[0]:
            assert carry is not None
            yield rows.head[0], finalize(carry[0] + strip.head_sum, carry[1] + strip.head_weight)
        if rows.body[1] > rows.body[0]:
            yield rows.body[0], strip.body
        carry = (strip.tail_sum, strip.tail_weight)


def write_map(
    rows: Iterable[tuple[int, np.ndarray]],
    grid: Grid,
    out: Path,
    *,
    work: Path,
    bands: OutputBands,
    tags: Mapping[str, object],
    band_tags: Mapping[str, Mapping[str, object]] | None = None,
    blocksize: int = 512,
    compress: str = "DEFLATE",
) -> Path:
    """Write probability rows (in order) to ``out`` as a COG; ``work`` holds the intermediate."""
    intermediate = work / "assembled.tif"
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(bands.names),
        "dtype": "uint8",
        "nodata": NODATA,
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "ZSTD",
        "zstd_level": 1,
        "bigtiff": "IF_SAFER",
    }
    with rasterio.open(intermediate, "w", **profile) as dst:
        pending: list[np.ndarray] = []
        written = 0  # rows flushed so far (always a multiple of blocksize until the end)
        for first, prob in rows:
            if first != written + sum(p.shape[1] for p in pending):
                raise RuntimeError(f"rows out of order at {first}")
            pending.append(bands.encode(prob))
            buffered = sum(p.shape[1] for p in pending)
            if buffered >= blocksize:
                block = np.concatenate(pending, axis=1)
                n = (buffered // blocksize) * blocksize
                dst.write(block[:, :n], window=Window(0, written, grid.width, n))
                written += n
                pending = [block[:, n:]] if n < buffered else []
        if pending:
            block = np.concatenate(pending, axis=1)
            dst.write(block, window=Window(0, written, grid.width, block.shape[1]))
            written += block.shape[1]
        if written != grid.height:
            raise RuntimeError(f"assembled {written} rows, expected {grid.height}")
        dst.update_tags(**{k: str(v) for k, v in tags.items()})
        for i, name in enumerate(bands.names, start=1):
            dst.set_band_description(i, name)
            dst.update_tags(i, **{k: str(v) for k, v in (band_tags or {}).get(name, {}).items()})
        if bands.probability:
            dst.scales = tuple(
                1.0 / PROBABILITY_SCALE if n == "probability" else 1.0 for n in bands.names
            )

    with atomic_path(out) as tmp:
        rasterio.shutil.copy(
            intermediate,
            tmp,
            driver="COG",
            compress=compress,
            blocksize=blocksize,
            overviews="AUTO",
            overview_resampling="NEAREST",
            bigtiff="IF_SAFER",
            num_threads="ALL_CPUS",
        )
    intermediate.unlink(missing_ok=True)
    return out
