"""Backscatter units: dB vs linear power, detected from the values themselves.

Metadata about units is often missing or wrong, and mixing them silently ruins every composite
(a mean of dB values treated as power is meaningless). So every stack's declared units are checked
against a sample of its values, and values that fit neither range are refused.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np

Units = Literal["db", "linear"]

# WorldCereal / openEO store sigma0 as uint16 digital numbers: dB = 20 * log10(DN) - 83.
_DN_OFFSET = 83.0
DN_NODATA = (0, 65535)
# No Sentinel-1 backscatter reads this low (the darkest water lies near -40 dB): a fill does.
FILL_DB = -100.0


def detect_units(sample: np.ndarray) -> Units | None:
    """Guess whether ``sample`` holds sigma0 in dB or linear power; None if it fits neither.

    dB backscatter lies roughly in -35..+10 with a negative median; linear sigma0 is non-negative
    (up to a little noise-removal undershoot) with a median below about 2. Percentiles (1 %, 99 %)
    are used so a few outliers (bright targets, edge artefacts) do not flip the answer.
    """
    values = np.asarray(sample, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    p01, p50, p99 = np.percentile(values, [1, 50, 99])
    if -45.0 <= p50 < 0.0 and p01 >= -70.0 and p99 <= 25.0:
        return "db"
    negative = np.count_nonzero(values < 0) / values.size
    if 0.0 < p50 <= 2.0 and negative <= 0.02 and p01 >= -0.05 and p99 <= 30.0:
        return "linear"
    return None


def mask_fills(data: np.ndarray) -> np.ndarray:
    """``data`` (float, changed in place) with NaN where a value is no backscatter in dB nor in
    linear power, whatever nodata the file declares: NaN, ±Inf, exactly 0 and -100 or below.

    Fills a file leaves undeclared (a 0 border, -9999) were averaged in as backscatter: a 0 dB
    row raised a dB composite to about -3 dB. No measured float dB value is exactly 0, and zero
    power has no dB value. Negative power depends on the units, which are told from values
    read here: composites skip it (:mod:`sarcrop.data.composite`).
    """
    bad = ~(data > FILL_DB)  # NaN, -Inf and fills such as -9999
    bad |= data == 0
    bad |= data == np.inf
    data[bad] = np.nan
    return data


def units_from_text(text: str | None) -> Units | None:
    """Units named in metadata or a file name (``"dB"``, ``"linear"``, ``"_db.tif"``…)."""
    if not text:
        return None
    lowered = text.strip().lower()
    if lowered in {"db", "decibel", "decibels"}:
        return "db"
    if lowered in {"linear", "lin", "power", "intensity", "1", "m2/m2", "m^2/m^2"}:
        return "linear"
    tokens = set(_split_tokens(lowered))
    if "db" in tokens:
        return "db"
    if tokens & {"linear", "lin"}:
        return "linear"
    return None


def _split_tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", text) if t]


def db_to_linear(values: np.ndarray) -> np.ndarray:
    """10 ** (dB / 10), keeping NaN."""
    return np.power(np.float32(10.0), values / np.float32(10.0), dtype=np.float32)


def linear_to_db(values: np.ndarray) -> np.ndarray:
    """10 * log10(power); zero or negative power becomes NaN (no valid dB value)."""
    values = np.asarray(values, dtype=np.float32)
    out = np.full(values.shape, np.nan, dtype=np.float32)
    positive = values > 0
    out[positive] = 10.0 * np.log10(values[positive])
    return out


def dn_to_db(dn: np.ndarray) -> np.ndarray:
    """Scaled uint16 sigma0 (WorldCereal/openEO) to dB; 0 and 65535 become NaN."""
    dn = np.asarray(dn)
    out = np.full(dn.shape, np.nan, dtype=np.float32)
    valid = (dn != DN_NODATA[0]) & (dn != DN_NODATA[1])
    out[valid] = 20.0 * np.log10(dn[valid].astype(np.float32)) - _DN_OFFSET
    return out
