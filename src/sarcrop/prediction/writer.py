"""Merge blocks tile by tile and write the map as a Cloud-Optimized GeoTIFF.

The map is assembled one 512 × 512 tile at a time, row-major, from the few blocks that meet
each tile (see :func:`merged_tiles`), encoded to uint8 and written to an intermediate tiled
GeoTIFF, so memory holds a handful of blocks regardless of the area. The intermediate is then
copied with GDAL's COG driver (tiles, compression, overviews) under a temporary name and
renamed onto the output; GDAL's cache is capped so that the overviews do not grow with the area.

Encoding: probability ``p`` → ``round(250·p)`` (0–250, scale 1/250), class → ``p >= threshold``
(0/1), uncertainty → ``round(250·H(p))`` with ``H`` the binary entropy in bits (0–250), spread
→ ``round(250·σ)`` with ``σ`` the standard deviation of several models' probabilities (0–125);
255 is nodata in every band. With several models ``p`` is their mean probability.

Crop-type maps (a model with ``K`` classes) hold, in this order: ``class`` (index of the most
probable class, lowest index on ties), ``probability_<name>`` per class (``round(250·p_k)``) or,
with ``top_k``, ``class_top2`` … ``class_topk`` and ``probability_top1`` … ``probability_topk``,
``uncertainty`` (``round(250·H(p)/log K)``, the entropy normalised to 0–1) and ``spread`` (mean over
the classes of the models' standard deviation, 0–125; for ``K = 2`` the binary spread). GeoTIFF
keeps a colour table only in single-band files, so the class band's colour table and category
names go to GDAL's auxiliary file next to the map (``map.tif.aux.xml``, read by GDAL and so by
rasterio and QGIS), embedded as well when the class band is alone; the class names are also in
the COG's own tags.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.options import MapOptions
from sarcrop.prediction.engine import finalize
from sarcrop.prediction.windows import WindowLayout
from sarcrop.utils.atomic import atomic_path, write_text_atomic

NODATA = 255
GDAL_CACHE_MB = 64
PROBABILITY_SCALE = 250
SCALED_BANDS = ("probability", "uncertainty", "spread")  # value / 250 is the quantity
# Distinct class colours (Tableau 20, strong tones first); more classes get golden-angle hues.
PALETTE = (
    *("1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f", "bcbd22"),
    *("17becf", "aec7e8", "ffbb78", "98df8a", "ff9896", "c5b0d5", "c49c94", "f7b6d2", "c7c7c7"),
    *("dbdb8d", "9edae5"),
)


def band_names(output: MapOptions, models: int = 1, classes: Sequence[str] = ()) -> list[str]:
    """The map's band descriptions, in band order (``spread`` for several models); see the
    module docstring for crop-type maps (``classes``)."""
    if not classes:
        wanted = (
            ("probability", output.probability),
            ("class", output.classes),
            ("uncertainty", output.uncertainty),
            ("spread", models > 1),
        )
        return [name for name, on in wanted if on]
    names = ["class"] if output.classes else []
    if output.probability and output.top_k is None:
        names += [f"probability_{name}" for name in classes]
    elif output.probability and output.top_k is not None:
        ranks = range(1, output.top_k + 1)
        names += [f"class_top{r}" for r in ranks if r > 1]
        names += [f"probability_top{r}" for r in ranks]
    if output.uncertainty:
        names.append("uncertainty")
    if models > 1:
        names.append("spread")
    return names


def is_scaled(name: str) -> bool:
    """Whether band ``name`` holds a quantity × 250."""
    return name in SCALED_BANDS or name.startswith("probability_")


def class_colors(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct RGB colours, the same for the same number of classes."""
    colors = [(int(c[:2], 16), int(c[2:4], 16), int(c[4:], 16)) for c in PALETTE[:count]]
    for k in range(len(colors), count):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.65 + 0.35 * (k % 2), 0.85)
        colors.append((round(255 * r), round(255 * g), round(255 * b)))
    return colors


def colormap(count: int) -> dict[int, tuple[int, int, int, int]]:
    """The class band's colour table: one opaque colour per class, 255 (nodata) transparent."""
    table = {k: (*rgb, 255) for k, rgb in enumerate(class_colors(count))}
    return {**table, NODATA: (0, 0, 0, 0)}


def sidecar_path(out: Path) -> Path:
    """GDAL's auxiliary file of ``out`` (PAM), read by GDAL, rasterio and QGIS."""
    return out.with_name(out.name + ".aux.xml")


def sidecar_xml(band: int, classes: Sequence[str]) -> str:
    """PAM XML giving band ``band`` its colour table and category names (class per value)."""
    table = colormap(len(classes))
    entries = "\n".join(
        '      <Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*table.get(v, (0, 0, 0, 0)))
        for v in range(NODATA + 1)
    )
    names = "".join(f"<Category>{escape(name)}</Category>" for name in classes)
    return (
        "<PAMDataset>\n"
        f"  <PAMRasterBand band={quoteattr(str(band))}>\n"
        "    <ColorInterp>Palette</ColorInterp>\n"
        f"    <CategoryNames>{names}</CategoryNames>\n"
        f"    <ColorTable>\n{entries}\n    </ColorTable>\n"
        "  </PAMRasterBand>\n"
        "</PAMDataset>\n"
    )


def class_tags(classes: Sequence[str]) -> dict[str, str]:
    """Dataset tags naming the classes and their colours (in the COG itself)."""
    colors = ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in class_colors(len(classes))]
    return {"CLASS_NAMES": json.dumps(list(classes)), "CLASS_COLORS": json.dumps(colors)}


def binary_entropy(prob: np.ndarray) -> np.ndarray:
    """``H(p) = -p log2 p - (1-p) log2 (1-p)`` in bits: 0 when sure, 1 at ``p = 0.5``."""
    p = np.clip(prob.astype(np.float64), 0.0, 1.0)
    q = 1.0 - p
    return -(p * np.log2(np.where(p > 0, p, 1.0)) + q * np.log2(np.where(q > 0, q, 1.0)))


def normalized_entropy(prob: np.ndarray) -> np.ndarray:
    """``-Σ p_k log p_k / log K`` over the leading (class) axis: 0 when sure, 1 when uniform;
    for ``K = 2`` the binary entropy in bits."""
    p = np.clip(prob.astype(np.float64), 0.0, 1.0)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=0) / np.log(len(p))


def scaled_levels(value: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """``round(250·value)`` as uint8, 255 where ``nodata``."""
    level = np.rint(value * PROBABILITY_SCALE).astype(np.uint8)
    return np.where(nodata, NODATA, level).astype(np.uint8)


def encode_classes(prob: np.ndarray, output: MapOptions) -> np.ndarray:
    """``(models, classes, rows, cols)`` probabilities (NaN = no data) → crop-type bands.

    The models' mean probabilities give the class, the probability bands and the uncertainty;
    the spread is the mean over classes of their standard deviation.
    """
    mean = prob.mean(axis=0)
    nodata = np.isnan(mean[0])
    p = np.nan_to_num(mean)

    def label(index: np.ndarray) -> np.ndarray:
        return np.where(nodata, NODATA, index).astype(np.uint8)

    out = []
    if output.classes:
        out.append(label(np.argmax(p, axis=0)))
    if output.probability and output.top_k is None:
        out += [scaled_levels(q, nodata) for q in p]
    elif output.probability and output.top_k is not None:
        order = np.argsort(-p, axis=0, kind="stable")[: output.top_k]  # ties: lowest index
        out += [label(index) for index in order[1:]]
        out += [scaled_levels(q, nodata) for q in np.take_along_axis(p, order, axis=0)]
    if output.uncertainty:
        out.append(scaled_levels(normalized_entropy(p), nodata))
    if len(prob) > 1:
        spread = prob.astype(np.float64).std(axis=0).mean(axis=0)
        out.append(scaled_levels(np.nan_to_num(spread), nodata))
    return np.stack(out).astype(np.uint8)


def encode(prob: np.ndarray, output: MapOptions, classes: Sequence[str] = ()) -> np.ndarray:
    """Float probabilities (NaN = no data) → ``(bands, rows, cols)`` uint8.

    ``prob`` is ``(rows, cols)`` for one model or ``(models, rows, cols)`` for several: their
    mean is the probability, their standard deviation the ``spread`` band. With ``classes`` it
    is ``(models, classes, rows, cols)``: see :func:`encode_classes`.
    """
    if classes:
        return encode_classes(prob, output)
    ensemble = prob.ndim == 3
    mean = prob.mean(axis=0) if ensemble else prob
    nodata = np.isnan(mean)
    p = np.nan_to_num(mean)

    def scaled(value: np.ndarray) -> np.ndarray:
        level = np.rint(value * PROBABILITY_SCALE).astype(np.uint8)
        return np.where(nodata, NODATA, level).astype(np.uint8)

    out = []
    if output.probability:
        out.append(scaled(p))
    if output.classes:
        out.append(np.where(nodata, NODATA, (p >= output.threshold).astype(np.uint8)))
    if output.uncertainty:
        out.append(scaled(binary_entropy(p)))
    if ensemble:
        out.append(scaled(np.nan_to_num(prob.astype(np.float64).std(axis=0))))
    return np.stack(out).astype(np.uint8)


def merged_tiles(
    layout: WindowLayout, load: Callable[[int], np.ndarray], tile: int = 512
) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield ``(window, probability)`` for every ``tile × tile`` piece of the area, row-major.

    Blocks may hold one sum array or one per model (a leading axis), kept in the pieces. Each
    piece is the sum of the blocks that meet it, always added in block order (so the
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
            for block in blocks:
                if block.index not in loaded:
                    loaded[block.index] = load(block.index)
            models = loaded[blocks[0].index].shape[:-2]
            sums = np.zeros((*models, r1 - r0, c1 - c0), dtype=np.float32)
            for block in blocks:
                e = block.extent
                part = loaded[block.index]
                a0, a1 = max(r0, e.row_off), min(r1, e.row_off + part.shape[-2])
                b0, b1 = max(c0, e.col_off), min(c1, e.col_off + part.shape[-1])
                sums[..., a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] += part[
                    ..., a0 - e.row_off : a1 - e.row_off, b0 - e.col_off : b1 - e.col_off
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
    models: int = 1,
    classes: Sequence[str] = (),
    blocksize: int = 512,
    compress: str = "DEFLATE",
    cache_mb: int = GDAL_CACHE_MB,
) -> Path:
    """Write probability pieces to ``out`` as a COG; ``work`` holds the intermediate.

    ``pieces`` are whole ``blocksize`` tiles (see :func:`merged_tiles`) of ``models``
    probabilities (a leading axis when there are several; ``(models, classes, ...)`` for a
    crop-type model of ``classes``), so every tile of the intermediate is written and
    compressed once. GDAL's block cache is capped at ``cache_mb``:
    by default GDAL may take 5 % of the RAM, which it would fill while building overviews.
    """
    intermediate = work / "assembled.tif"
    names = band_names(output, models, classes)
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
    if len(names) > 1:  # GDAL takes 3 or 4 bytes a pixel as RGB(A): a 4th band as transparency
        profile["photometric"] = "MINISBLACK"
    with rasterio.Env(GDAL_CACHEMAX=cache_mb):
        with rasterio.open(intermediate, "w", **profile) as dst:
            covered = 0
            for window, prob in pieces:
                dst.write(encode(prob, output, classes), window=window)
                covered += int(window.width) * int(window.height)
            expected = grid.width * grid.height
            if covered != expected:
                raise RuntimeError(f"assembled {covered} pixels, expected {expected}")
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
                extra = (band_tags or {}).get(name, {})
                dst.update_tags(i, **{k: str(v) for k, v in extra.items()})
            if any(is_scaled(n) for n in names):
                dst.scales = tuple(1.0 / PROBABILITY_SCALE if is_scaled(n) else 1.0 for n in names)
            if classes and names == ["class"]:  # GeoTIFF holds colour tables of one band only
                dst.write_colormap(1, colormap(len(classes)))

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
            # The previous map's auxiliary file (statistics, colours) does not describe this one.
            sidecar_path(out).unlink(missing_ok=True)
            if classes and "class" in names:
                xml = sidecar_xml(names.index("class") + 1, classes)
                write_text_atomic(sidecar_path(out), xml)
    intermediate.unlink(missing_ok=True)
    return out
