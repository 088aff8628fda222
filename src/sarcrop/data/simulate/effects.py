"""Effects of real Sentinel-1 GRD data beyond the base model, each off unless a preset asks.

Measured against real Flanders parcels (``benchmarks/realism.py``), the base model's speckle is
independent per pixel, its texture is white, grassland is never mown and a field's VH and VV
move independently from one acquisition to the next. :class:`Realism` adds, per preset:

- spatially correlated speckle: a Gaussian field smoothed over ``speckle_sigma_px`` and mapped
  through the Gamma(ENL) quantile function, so every pixel keeps exactly Gamma(ENL, 1/ENL)
  statistics (multi-looked, resampled GRD) while neighbours share part of their speckle;
- an effective ENL per band (VH speckle is stronger: thermal noise near the noise floor);
- low-frequency texture inside fields and a point-spread function that mixes field edges;
- a per-field wetness term shared by VH and VV, correlated over a few days;
- grassland mowing: a sharp VH/VV drop at each cut, then regrowth;
- more relative orbits (:class:`OrbitPass`) and per-crop dB offsets;
- a coarser product read onto the 10 m grid (``product_px``): WorldCereal's 20 m σ⁰, for
  instance, has one speckle sample per 20 m cell, and a reader taking it to 10 m interpolates
  bilinearly between cells, so neighbours share most of their speckle and edges are wide.

:class:`Randomisation` draws calendars, levels, field sizes, grid rotation and revisit per
(seed, year) for pre-training on many plausible regions instead of one (domain randomisation).
All draws come from streams keyed by (seed, region, year, parcel or tile), so output stays
independent of the block size used to write it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage, special

if TYPE_CHECKING:
    from sarcrop.data.simulate.fields import Parcel

MOWN = "grassland"  # the crop whose fields are cut


@dataclass(frozen=True)
class OrbitPass:
    """A further relative orbit over the region, ``day_offset`` days after the main one."""

    relative_orbit: int
    time_utc: tuple[int, int, int]
    day_offset: int
    level_db: float = 0.0  # another incidence angle: a small level difference

    def to_dict(self) -> dict[str, object]:
        return {
            "relative_orbit": self.relative_orbit,
            "time_utc": list(self.time_utc),
            "day_offset": self.day_offset,
            "level_db": self.level_db,
        }


@dataclass(frozen=True)
class Realism:
    """Realism options of a preset; the defaults reproduce the base model exactly."""

    speckle_sigma_px: float = 0.0  # spatial correlation length of speckle (0: independent)
    enl: tuple[float, float] | None = None  # effective looks (VH, VV); None: one GRDH ENL
    texture_sigma_px: float = 0.0  # correlation length of within-field texture (0: white)
    psf_sigma_px: float = 0.0  # point-spread function: mixes the signal across field edges
    fluctuation_db: float = 0.0  # per-field wetness shared by VH and VV, per acquisition
    fluctuation_days: float = 8.0  # its correlation time
    mowing: tuple[int, int] = (0, 0)  # grassland cuts per year (fewest, most)
    mowing_drop_db: tuple[float, float] = (3.0, 1.5)  # (VH, VV) drop right after a cut
    regrowth_days: float = 25.0  # days until a cut field is back on its curve
    level_db: tuple[tuple[str, float], ...] = ()  # per-crop dB offsets
    product_px: int = 1  # the product's pixel in simulator pixels (2: a 20 m product at 10 m)

    @property
    def active(self) -> bool:
        return self != Realism()

    @property
    def halo_px(self) -> int:
        """Pixels a block must see beyond its edges for the spatial filters to be exact: the
        point-spread function blurs texture that is itself smoothed; speckle comes after."""
        texture = _radius(self.psf_sigma_px) + _radius(self.texture_sigma_px)
        speckle = _radius(self.speckle_sigma_px * self.product_px)
        if self.product_px > 1:  # a cell's mean, then the neighbouring cell it interpolates to
            return max(texture, speckle) + 2 * self.product_px
        return max(texture, speckle)

    @property
    def dynamic(self) -> bool:
        return self.fluctuation_db > 0 or self.mowing[1] > 0

    def level(self, crop: str) -> float:
        return dict(self.level_db).get(crop, 0.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "speckle_sigma_px": self.speckle_sigma_px,
            "enl": None if self.enl is None else list(self.enl),
            "texture_sigma_px": self.texture_sigma_px,
            "psf_sigma_px": self.psf_sigma_px,
            "fluctuation_db": self.fluctuation_db,
            "fluctuation_days": self.fluctuation_days,
            "mowing": list(self.mowing),
            "mowing_drop_db": list(self.mowing_drop_db),
            "regrowth_days": self.regrowth_days,
            "level_db": dict(self.level_db),
            **({"product_px": self.product_px} if self.product_px > 1 else {}),
        }


@dataclass(frozen=True)
class Randomisation:
    """Ranges drawn per (seed, year): each seed simulates another plausible region."""

    calendar_days: int = 0  # each sown crop's calendar moves by up to this many days
    level_db: float = 0.0  # standard deviation of each crop's dB offset
    block_scale: tuple[float, float] = (1.0, 1.0)  # field-size factor range
    rotation_deg: float = 0.0  # road-grid orientation range (±)
    revisits: tuple[tuple[int, int], ...] = ()  # (revisit days, orbits) choices

    def to_dict(self) -> dict[str, object]:
        return {
            "calendar_days": self.calendar_days,
            "level_db": self.level_db,
            "block_scale": list(self.block_scale),
            "rotation_deg": self.rotation_deg,
            "revisits": [list(r) for r in self.revisits],
        }


# -- spatial fields ---------------------------------------------------------------------------
def _radius(sigma: float) -> int:
    """Reach of ``ndimage.gaussian_filter`` (truncate 4) in pixels; 0 when off."""
    return int(4.0 * sigma + 0.5) if sigma > 0 else 0


@functools.lru_cache(maxsize=16)
def _gain(sigma: float) -> float:
    """1 / std of unit white noise after the Gaussian filter: restores unit variance."""
    r = _radius(sigma)
    delta = np.zeros((2 * r + 1, 2 * r + 1))
    delta[r, r] = 1.0
    kernel = ndimage.gaussian_filter(delta, sigma, mode="constant", truncate=4.0)
    return float(1.0 / np.sqrt((kernel**2).sum()))


def smooth(noise: np.ndarray, sigma: float) -> np.ndarray:
    """Unit-variance white noise (…, h, w) → unit-variance noise correlated over ``sigma`` px.

    Borders reflect: the caller passes the block with a halo, so only the area's own edges
    (the same for every block size) see the reflection.
    """
    if sigma <= 0:
        return noise
    axes = (0,) * (noise.ndim - 2) + (sigma, sigma)
    out = ndimage.gaussian_filter(noise, axes, mode="reflect", truncate=4.0)
    out *= np.float32(_gain(sigma))
    return out


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """The point-spread function: a Gaussian blur of (…, h, w) linear power."""
    if sigma <= 0:
        return image
    axes = (0,) * (image.ndim - 2) + (sigma, sigma)
    return ndimage.gaussian_filter(image, axes, mode="reflect", truncate=4.0)


@functools.lru_cache(maxsize=8)
def _gamma_table(enl: float) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(-6.0, 6.0, 4801)
    q = special.gammaincinv(enl, special.ndtr(z)) / enl
    return z.astype(np.float32), q.astype(np.float32)


def gamma_speckle(normal: np.ndarray, enl: float) -> np.ndarray:
    """Standard normal values → Gamma(enl, 1/enl) speckle of the same rank (Gaussian copula)."""
    z, q = _gamma_table(float(enl))
    return np.interp(normal, z, q).astype(np.float32)


def coarse_product(
    power: np.ndarray,
    speckle: np.ndarray,
    factor: int,
    origin: tuple[int, int],
    area: tuple[int, int],
) -> np.ndarray:
    """Speckle-free power (bands, h, w) → a product of ``factor``² px cells read back bilinearly.

    Cells are aligned to the area's origin: cell (i, j) covers rows i·f … i·f + f − 1. Each cell
    is the mean power over its pixels times the speckle at its first pixel (one look sample per
    product pixel), and every pixel interpolates between the four nearest cell centres, as
    rasterio's bilinear resampling of the coarser product onto the fine grid does. ``origin``
    is the block's (row, col) in the area of size ``area``, so cells and weights are the same
    whatever the block.
    """
    cells, samples = power, speckle
    axes = (power.ndim - 2, power.ndim - 1)
    for axis, start in zip(axes, origin, strict=True):
        cells, samples = _cell_means(cells, samples, axis, start, factor)
    product = cells * samples
    for axis, start, size in zip(axes, origin, area, strict=True):
        product = _interpolate(product, axis, start, factor, size, power.shape[axis])
    return product


def _cell_means(
    power: np.ndarray, speckle: np.ndarray, axis: int, start: int, factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``power`` and first sample of ``speckle`` over each cell along ``axis``."""
    n = power.shape[axis]
    index = (start + np.arange(n)) // factor
    firsts = np.flatnonzero(np.diff(index, prepend=index[0] - 1))
    counts = np.diff(np.append(firsts, n))
    shape = [1] * power.ndim
    shape[axis] = len(counts)
    means = np.add.reduceat(power, firsts, axis=axis) / counts.reshape(shape).astype(power.dtype)
    return means, np.take(speckle, firsts, axis=axis)


def _interpolate(
    cells: np.ndarray, axis: int, start: int, factor: int, size: int, n: int
) -> np.ndarray:
    """Bilinear weights along ``axis`` from cell centres back to the ``n`` pixels of the block
    starting at ``start``; beyond the area's first and last cell the edge cell is repeated."""
    rows = start + np.arange(n)
    u = (rows + 0.5) / factor - 0.5
    low = np.floor(u).astype(np.int64)
    weight = (u - low).astype(cells.dtype)
    last = (size - 1) // factor
    first_cell = start // factor
    local_last = cells.shape[axis] - 1
    low_cell = np.clip(np.clip(low, 0, last) - first_cell, 0, local_last)
    high_cell = np.clip(np.clip(low + 1, 0, last) - first_cell, 0, local_last)
    shape = [1] * cells.ndim
    shape[axis] = n
    weight = weight.reshape(shape)
    return (
        np.take(cells, low_cell, axis=axis) * (1 - weight)
        + np.take(cells, high_cell, axis=axis) * weight
    )


# -- per-field dynamics -----------------------------------------------------------------------
def _parcel_rng(seed: int, code: int, year: int, stream: int, pid: int) -> np.random.Generator:
    return np.random.default_rng([seed, code, year, stream, pid])


def cut_days(rng: np.random.Generator, cuts: tuple[int, int]) -> np.ndarray:
    """Day-of-year of each cut of one grassland field: first mid-May to June, then every
    4 to 8 weeks (silage grass in Western Europe)."""
    n = int(rng.integers(cuts[0], cuts[1] + 1))
    if n == 0:
        return np.empty(0)
    first = rng.uniform(128.0, 165.0)
    return first + np.concatenate([[0.0], np.cumsum(rng.uniform(28.0, 56.0, n - 1))])


def mowing_db(
    days: np.ndarray, cuts: np.ndarray, drop: Sequence[float], regrowth: float
) -> np.ndarray:
    """(t, bands) dB change: ``drop`` right after each cut, linear regrowth over ``regrowth``."""
    since = days[:, None] - cuts[None, :]
    depth = np.clip(1.0 - since / regrowth, 0.0, 1.0) * (since >= 0)
    return -depth.max(axis=1, initial=0.0)[:, None] * np.asarray(drop)[None, :]


def wetness_db(rng: np.random.Generator, days: np.ndarray, std: float, tau: float) -> np.ndarray:
    """An AR(1) series over acquisition days (stationary, correlation exp(-Δt/τ))."""
    out = np.empty(len(days))
    value = 0.0
    for t, eps in enumerate(rng.standard_normal(len(days))):
        rho = np.exp(-(days[t] - days[t - 1]) / tau) if t else 0.0
        value = rho * value + np.sqrt(1.0 - rho**2) * eps
        out[t] = value
    return std * out


def field_dynamics(
    parcels: Sequence[Parcel],
    times: Sequence[dt.datetime],
    realism: Realism,
    exposure: np.ndarray,
    keys: tuple[int, int, int],
) -> np.ndarray:
    """(n+1, t, bands) dB of mowing and wetness per parcel; row 0 (roads) stays 0.

    ``exposure`` is each row's sensitivity to wetness, ``keys`` (seed, region code, year).
    """
    days = np.asarray([_doy(t) for t in times])
    out = np.zeros((len(parcels) + 1, len(days), 2))
    for k, p in enumerate(parcels, start=1):
        if realism.fluctuation_db > 0:
            rng = _parcel_rng(*keys, 14, p.parcel_id)
            wet = wetness_db(rng, days, realism.fluctuation_db, realism.fluctuation_days)
            out[k] += exposure[k] * wet[:, None]
        if p.crop == MOWN and realism.mowing[1] > 0:
            cuts = cut_days(_parcel_rng(*keys, 13, p.parcel_id), realism.mowing)
            out[k] += mowing_db(days, cuts, realism.mowing_drop_db, realism.regrowth_days)
    return out


def _doy(when: dt.datetime) -> float:
    return (when - dt.datetime(when.year, 1, 1)).total_seconds() / 86400.0 + 1.0
