"""Parcel layout: road-bounded blocks on a jittered, rotated lattice, split into fields.

The layout is a pure function of (region, year, seed) and lattice cell, so the parcels of any
window can be generated on their own, identically, whatever the window: large areas are
simulated block by block with bounded memory. A block is one land cover (fields, forest, town,
lake); field blocks are cut into strips and strips into fields (1-10 ha at 10 m). Fields of one
block share a dominant crop with probability ``clustering`` (farms, irrigation schemes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window
from shapely import affinity
from shapely.geometry import Polygon, box

from sarcrop.data.simulate.phenology import VARIETIES
from sarcrop.data.simulate.regions import RegionPreset, year_effects

ROAD_HALF_WIDTH_PX = 0.6  # 12 m roads between blocks
NODE_JITTER = 0.22  # of the block side
_OFFSET = 1 << 20  # keeps lattice indices non-negative inside seed sequences
_MAX_FIELDS = 64  # fields per block, for unique parcel ids


@dataclass(frozen=True)
class Parcel:
    """One parcel: geometry in pixel coordinates of the region grid and its crop parameters."""

    parcel_id: int
    crop: str
    variety: str
    sowing_doy: int
    amplitude: float
    offset_db: float
    pixels: Polygon  # (col, row) coordinates
    cell: tuple[int, int]

    def geometry(self, transform: Affine) -> Polygon:
        """The parcel in map coordinates of ``transform``'s CRS."""
        a, b, c, d, e, f = list(transform)[:6]
        return affinity.affine_transform(self.pixels, [a, b, d, e, c, f])


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


class ParcelLayout:
    """Deterministic parcels of a region for a given year and seed, over an unbounded plane."""

    def __init__(self, region: RegionPreset, year: int, seed: int) -> None:
        self.region = region
        self.year = year
        self.seed = seed
        self.shift_days, _ = year_effects(region, year)
        theta = math.radians(region.rotation_deg)
        self._cos, self._sin = math.cos(theta), math.sin(theta)

    # -- lattice --------------------------------------------------------------------------
    def _rng(self, *keys: int) -> np.random.Generator:
        words = [self.seed, self.region.code, self.year, *[k + _OFFSET for k in keys]]
        return np.random.default_rng(np.random.SeedSequence(words))

    def _node(self, i: int, j: int) -> tuple[float, float]:
        """Pixel (col, row) of lattice node (i, j), jittered and rotated."""
        du, dv = self._rng(0, i, j).uniform(-NODE_JITTER, NODE_JITTER, 2)
        s = self.region.block_px
        u, v = (i + du) * s, (j + dv) * s
        return (u * self._cos - v * self._sin, u * self._sin + v * self._cos)

    def cells(self, window: Window) -> Iterator[tuple[int, int]]:
        """Lattice cells that may intersect ``window`` (pixel window of the region grid)."""
        s = self.region.block_px
        margin = s * (1 + NODE_JITTER)
        c0, r0 = window.col_off - margin, window.row_off - margin
        c1, r1 = window.col_off + window.width + margin, window.row_off + window.height + margin
        us, vs = [], []
        for col, row in ((c0, r0), (c1, r0), (c0, r1), (c1, r1)):
            us.append(col * self._cos + row * self._sin)
            vs.append(-col * self._sin + row * self._cos)
        for i in range(math.floor(min(us) / s), math.ceil(max(us) / s) + 1):
            for j in range(math.floor(min(vs) / s), math.ceil(max(vs) / s) + 1):
                yield i, j

    def cell_polygon(self, i: int, j: int) -> Polygon:
        return Polygon(
            [self._node(i, j), self._node(i + 1, j), self._node(i + 1, j + 1), self._node(i, j + 1)]
        )

    # -- content --------------------------------------------------------------------------
    def _landcover(self, i: int, j: int) -> str:
        """Block land cover, clustered through a coarse 4×4-block pattern (forests, towns)."""
        coarse = _pick(self._rng(1, i // 4, j // 4), self.region.landcover)
        rng = self._rng(2, i, j)
        own = _pick(rng, self.region.landcover)
        return coarse if rng.random() < 0.5 else own

    def _parcel(
        self,
        rng: np.random.Generator,
        pid: int,
        crop: str,
        variety: str | None,
        shape: Polygon,
        cell: tuple[int, int],
    ) -> Parcel:
        choices = self.region.crops[crop]
        if variety is None:
            variety = _pick(rng, {c.variety: c.weight for c in choices})
        choice = next(c for c in choices if c.variety == variety)
        spec = VARIETIES[variety]
        jitter = float(np.clip(rng.normal(0.0, 1.0), -2.5, 2.5)) * spec.sowing_sd
        sowing = choice.sowing_doy + (self.shift_days if spec.sowing_sd > 0 else 0)
        return Parcel(
            parcel_id=pid,
            crop=crop,
            variety=variety,
            sowing_doy=round(sowing + jitter),
            amplitude=float(np.clip(rng.normal(1.0, 0.12), 0.7, 1.3)),
            offset_db=float(rng.normal(0.0, spec.field_offset_db))
            + self.region.realism.level(crop),
            pixels=shape,
            cell=cell,
        )

    def parcels_of_cell(self, i: int, j: int) -> list[Parcel]:
        """The parcels of lattice cell (i, j), roads removed."""
        cell = self.cell_polygon(i, j)
        inner = cell.buffer(-ROAD_HALF_WIDTH_PX, join_style="mitre")
        if inner.is_empty or inner.geom_type != "Polygon":
            return []
        rng = self._rng(3, i, j)
        base = ((i + _OFFSET) * (2 * _OFFSET) + (j + _OFFSET)) * _MAX_FIELDS
        cover = self._landcover(i, j)
        if cover != "fields":
            return [self._parcel(rng, base, cover, None, inner, (i, j))]
        r = self.region
        dominant = _pick(rng, r.crop_weights)
        dominant_variety = _pick(rng, {c.variety: c.weight for c in r.crops[dominant]})
        p00, p10, p11, p01 = (np.asarray(p) for p in list(cell.exterior.coords)[:4])
        along_u = rng.random() < 0.5
        n = int(rng.integers(r.strips[0], r.strips[1] + 1))
        cuts = _fractions(rng, n)
        parcels: list[Parcel] = []
        for a0, a1 in itertools.pairwise(cuts):
            m = int(rng.integers(r.splits[0], r.splits[1] + 1))
            splits = _fractions(rng, m)
            for b0, b1 in itertools.pairwise(splits):
                corners = [(a0, b0), (a1, b0), (a1, b1), (a0, b1)]
                if not along_u:
                    corners = [(b, a) for a, b in corners]
                quad = Polygon([_bilinear(p00, p10, p11, p01, fu, fv) for fu, fv in corners])
                shape = quad.intersection(inner)
                if shape.geom_type != "Polygon" or shape.area < 4.0:
                    continue
                if rng.random() < r.clustering:
                    crop, variety = dominant, dominant_variety
                else:
                    crop, variety = _pick(rng, r.crop_weights), None
                pid = base + len(parcels)
                parcels.append(self._parcel(rng, pid, crop, variety, shape, (i, j)))
        return parcels

    def parcels(self, window: Window) -> list[Parcel]:
        """All parcels intersecting ``window``, in a deterministic order."""
        frame = box(
            window.col_off,
            window.row_off,
            window.col_off + window.width,
            window.row_off + window.height,
        )
        out: list[Parcel] = []
        for i, j in self.cells(window):
            if self.cell_polygon(i, j).intersects(frame):
                out.extend(p for p in self.parcels_of_cell(i, j) if p.pixels.intersects(frame))
        return out


def _fractions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` intervals of [0, 1] with jittered, roughly equal lengths."""
    widths = rng.uniform(0.7, 1.3, n)
    return np.concatenate([[0.0], np.cumsum(widths) / widths.sum()])


def _bilinear(
    p00: np.ndarray, p10: np.ndarray, p11: np.ndarray, p01: np.ndarray, fu: float, fv: float
) -> tuple[float, float]:
    """Point of the quad at fractions (fu, fv): shared field edges are exactly straight lines."""
    p = (1 - fu) * (1 - fv) * p00 + fu * (1 - fv) * p10 + fu * fv * p11 + (1 - fu) * fv * p01
    return (float(p[0]), float(p[1]))
