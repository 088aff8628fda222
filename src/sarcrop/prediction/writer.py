"""Merge blocks tile by tile and write the map as a Cloud-Optimized GeoTIFF.

The map is assembled one 512 × 512 tile at a time, row-major, from the few blocks that meet
each tile (see :func:`merged_tiles`), encoded to uint8 and written to an intermediate tiled
GeoTIFF, so memory holds a handful of blocks regardless of the area. The intermediate is then
copied with GDAL's COG driver (tiles, compression, overviews) under a temporary name and
renamed onto the output; GDAL's cache is capped so that the overviews do not grow with the area.

Encoding: probability ``p`` → ``round(250·p)`` (0–250, scale 1/250), class → ``p >= threshold``
(0/1); 255 is nodata in both bands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.options import MapOptions
from sarcrop.prediction.engine import finalize
from sarcrop.prediction.windows import WindowLayout
from sarcrop.utils.atomic import atomic_path

NODATA = 255
GDAL_CACHE_MB = 64
PROBABILITY_SCALE = 250


def band_names(output: MapOptions) -> list[str]:
    """The map's band descriptions, in band order."""
    return [n for n, on in (("probability", output.probability), ("class", output.classes)) if on]


def encode(prob: np.ndarray, output: MapOptions) -> np.ndarray:
    """``(rows, cols)`` float probability (NaN = no data) → ``(bands, rows, cols)`` uint8."""
    nodata = np.isnan(prob)
    out = []
    if output.probability:
        scaled = np.rint(np.nan_to_num(prob) * PROBABILITY_SCALE).astype(np.uint8)
        out.append(np.where(nodata, NODATA, scaled).astype(np.uint8))
    if output.classes:
        cls = (np.nan_to_num(prob) >= output.threshold).astype(np.uint8)
        out.append(np.where(nodata, NODATA, cls).astype(np.uint8))
    return np.stack(out)


def merged_tiles(
    layout: WindowLayout, load: Callable[[int], np.ndarray], tile: int = 512
) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield ``(window, probability)`` for every ``tile × tile`` piece of the area, row-major.

    Each piece is the sum of the blocks that meet it, always added in block order (so the
    bytes never depend on who computed what), divided by the layout's weight totals. Blocks
    are loaded when first needed and dropped when no later piece of the tile row needs them:
    memory holds the blocks of about two tile columns, whatever the area.
    """
    loaded: dict[int, np.ndarray] = {}
    col_weights = layout.weight_profile(0, layout.width, layout.width)
    for r0 in range(0, layout.height, tile):
        r1 = min(r0 + tile, layout.height)
        row_weights = layout.weight_profile(r0, r1, layout.height)
        for c0 in range(0, layout.width, tile):
            c1 = min(c0 + tile, layout.width)
            blocks = layout.blocks_in((r0, r1), (c0, c1))
            for stale in set(loaded) - {b.index for b in blocks}:
                del loaded[stale]
            sums = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
            for block in blocks:
                if block.index not in loaded:
                    loaded[block.index] = load(block.index)
                e = block.extent
                part = loaded[block.index]
                a0, a1 = max(r0, e.row_off), min(r1, e.row_off + part.shape[0])
                b0, b1 = max(c0, e.col_off), min(c1, e.col_off + part.shape[1])
                sums[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] += part[
                    a0 - e.row_off : a1 - e.row_off, b0 - e.col_off : b1 - e.col_off
                ]
            weights = np.outer(row_weights, col_weights[c0:c1])
            yield Window(c0, r0, c1 - c0, r1 - r0), finalize(sums, weights)


def write_map(
    pieces: Iterable[tuple[Window, np.ndarray]],
    grid: Grid,
    out: Path,
    *,
    work: Path,
    output: MapOptions,
    tags: Mapping[str, object],
    band_tags: Mapping[str, Mapping[str, object]] | None = None,
    blocksize: int = 512,
    compress: str = "DEFLATE",
    cache_mb: int = GDAL_CACHE_MB,
) -> Path:
    """Write probability pieces to ``out`` as a COG; ``work`` holds the intermediate.

    ``pieces`` are whole ``blocksize`` tiles (see :func:`merged_tiles`), so every tile of the
    intermediate is written and compressed once. GDAL's block cache is capped at ``cache_mb``:
    by default GDAL may take 5 % of the RAM, which it would fill while building overviews.
    """
    intermediate = work / "assembled.tif"
    names = band_names(output)
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(names),
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
    with rasterio.Env(GDAL_CACHEMAX=cache_mb):
        with rasterio.open(intermediate, "w", **profile) as dst:
            covered = 0
            for window, prob in pieces:
                dst.write(encode(prob, output), window=window)
                covered += int(window.width) * int(window.height)
            expected = grid.width * grid.height
            if covered != expected:
                raise RuntimeError(f"assembled {covered} pixels, expected {expected}")
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
                extra = (band_tags or {}).get(name, {})
                dst.update_tags(i, **{k: str(v) for k, v in extra.items()})
            if output.probability:
                dst.scales = tuple(
                    1.0 / PROBABILITY_SCALE if n == "probability" else 1.0 for n in names
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
