"""Per-band min–max normalisation (as in the paper), with statistics from the train split only.

Statistics are taken per band over all time steps and valid (non-NaN) pixels of the training
patches, so nothing about the test patches leaks into the model's inputs. Plain min/max is the
paper's choice; ``percentiles=(1, 99)`` gives a robust variant that ignores a few extreme pixels
(bright targets, edge artefacts).

:func:`normalize` maps values to [0, 1] (clipped) and then sets NaN to 0. So 0 means both "the
band's minimum" and "no data" — the same value the zero padding of not-yet-observed time steps
uses for early-season prediction, which the model has learnt to read as "no signal".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sarcrop.errors import ConfigError, InputDataError

# Histogram used for percentile statistics: dB values, 0.01 dB bins (exact to the bin width).
_HIST_LOW, _HIST_HIGH, _HIST_BIN = -100.0, 50.0, 0.01


@dataclass(frozen=True)
class Normalization:
    """Per-band ``min`` and ``max`` (in dB) mapping each band to [0, 1]."""

    min: tuple[float, ...]
    max: tuple[float, ...]
    bands: tuple[str, ...] | None = None
    method: str = "minmax"

    def __post_init__(self) -> None:
        if len(self.min) != len(self.max):
            raise ValueError("normalization needs as many minima as maxima")
        if self.bands is not None and len(self.bands) != len(self.min):
            raise ValueError("normalization needs one min/max per band")

    def select(self, bands: Sequence[str]) -> Normalization:
        """The statistics of a subset (or reordering) of the bands."""
        if self.bands is None:
            raise InputDataError("normalization statistics do not name their bands")
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise InputDataError(
                f"normalization has no statistics for band(s) {', '.join(missing)} "
                f"(has {', '.join(self.bands)})"
            )
        idx = [self.bands.index(b) for b in bands]
        return Normalization(
            tuple(self.min[i] for i in idx),
            tuple(self.max[i] for i in idx),
            tuple(bands),
            self.method,
        )

    @property
    def percentiles(self) -> tuple[float, float] | None:
        """The (low, high) percentiles of robust statistics, None for plain min/max ones."""
        found = re.match(r"percentile ([\d.]+)-([\d.]+)", self.method)
        return (float(found[1]), float(found[2])) if found else None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "min": list(self.min),
            "max": list(self.max),
            "method": self.method,
        }
        if self.bands is not None:
            out["bands"] = list(self.bands)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Normalization:
        bands = data.get("bands")
        return cls(
            tuple(float(v) for v in data["min"]),  # type: ignore[attr-defined]
            tuple(float(v) for v in data["max"]),  # type: ignore[attr-defined]
            None if bands is None else tuple(str(b) for b in bands),  # type: ignore[attr-defined]
            str(data.get("method", "minmax")),
        )


def checked_percentiles(percentiles: Sequence[float] | None) -> tuple[float, float] | None:
    """``percentiles`` as (low, high) of robust normalisation, refused unless
    ``0 <= low < high <= 100``: checked before a store is composited, not after."""
    if percentiles is None:
        return None
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise ConfigError(
            f"percentiles must be two numbers, low and high, got {percentiles!r}"
        ) from None
    if not 0 <= low < high <= 100:
        raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {low:g} {high:g}")
    return low, high


class StatsAccumulator:
    """Streams patches ``(steps, bands, h, w)`` and yields per-band statistics."""

    def __init__(self, bands: Sequence[str], percentiles: tuple[float, float] | None = None):
        self.bands = tuple(bands)
        self.percentiles = checked_percentiles(percentiles)
        n = len(self.bands)
        self._min = np.full(n, np.inf)
        self._max = np.full(n, -np.inf)
        self._edges = np.arange(_HIST_LOW, _HIST_HIGH + _HIST_BIN / 2, _HIST_BIN)
        self._hist = np.zeros((n, len(self._edges) - 1), dtype=np.int64) if percentiles else None

    def update(self, patch: np.ndarray) -> None:
        if patch.ndim != 4 or patch.shape[1] != len(self.bands):
            raise ValueError(f"expected (steps, {len(self.bands)}, h, w), got {patch.shape}")
        for b in range(len(self.bands)):
            values = patch[:, b]
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            self._min[b] = min(self._min[b], float(values.min()))
            self._max[b] = max(self._max[b], float(values.max()))
            if self._hist is not None:
                clipped = np.clip(values, _HIST_LOW, _HIST_HIGH - _HIST_BIN / 2)
                self._hist[b] += np.histogram(clipped, bins=self._edges)[0]

    def result(self) -> Normalization:
        empty = [b for b, v in zip(self.bands, self._min) if not np.isfinite(v)]
        if empty:
            raise InputDataError(
                f"no valid training pixels for band(s) {', '.join(empty)} to normalise with"
            )
        if self._hist is None:
            return Normalization(
                tuple(map(float, self._min)), tuple(map(float, self._max)), self.bands, "minmax"
            )
        low, high = self.percentiles  # type: ignore[misc]
        lows, highs = [], []
        for b in range(len(self.bands)):
            cdf = np.cumsum(self._hist[b]) / self._hist[b].sum()
            lo = self._edges[np.searchsorted(cdf, low / 100.0, side="left")]
            hi = self._edges[
                min(np.searchsorted(cdf, high / 100.0, side="left") + 1, len(self._edges) - 1)
            ]
            # Never widen beyond the observed range (histogram edges are coarser than data).
            lows.append(float(max(lo, self._min[b])))
            highs.append(float(min(hi, self._max[b])))
        return Normalization(tuple(lows), tuple(highs), self.bands, f"percentile {low:g}-{high:g}")


def compute_normalization(
    patches: Iterable[np.ndarray],
    bands: Sequence[str],
    *,
    percentiles: tuple[float, float] | None = None,
) -> Normalization:
    """Per-band statistics over ``patches`` (each ``(steps, bands, h, w)`` dB, NaN = no data)."""
    acc = StatsAccumulator(bands, percentiles)
    for patch in patches:
        acc.update(np.asarray(patch))
    return acc.result()


def normalize(
    images: np.ndarray,
    stats: Normalization,
    *,
    band_axis: int = -3,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Map each band to [0, 1] with ``stats`` (clipped), then NaN → 0; float32 out.

    ``images`` has its bands on ``band_axis`` (default: ``(..., bands, h, w)``). ``out`` (a
    float32 array of their shape, ``images`` itself to normalise in place) receives the result.
    """
    images = np.asarray(images, dtype=np.float32)
    n = images.shape[band_axis]
    if n != len(stats.min):
        raise InputDataError(f"images have {n} bands but normalization has {len(stats.min)}")
    shape = [1] * images.ndim
    shape[band_axis] = n
    low = np.asarray(stats.min, dtype=np.float32).reshape(shape)
    span = np.asarray(stats.max, dtype=np.float32).reshape(shape) - low
    scale = np.float32(1.0) / np.where(span > 0, span, np.float32(1.0))
    out = np.subtract(images, low, out=out, dtype=np.float32)
    np.multiply(out, scale, out=out)
    # Clipped to [0, 1] with NaN → 0 in two passes: fmax returns the number where one side is
    # NaN (np.clip keeps NaN, and nan_to_num takes four more passes).
    np.fmax(out, np.float32(0.0), out=out)
    np.minimum(out, np.float32(1.0), out=out)
    return out


# Fixed physical ranges (dB) of Sentinel-1 sigma0 composites over farmland, the same in every
# region and store, so that a dB value means the same model input wherever a model is used.
# VH: 0.1-99.9 % of every single acquisition of the three WorldCereal patch locations
# (Flanders 2018, Flanders 2019, Tanzania 2021: -30.0 / -5.4 dB). VV: the same 25 dB width,
# shifted by the 7 dB median VV-VH difference there (covers 0.1-99.5 %: -18.3 / +2.2 dB).
# Composites average several acquisitions, so fewer of their values reach the clipped ends.
FIXED_DB_RANGES: dict[str, tuple[float, float]] = {"VH": (-30.0, -5.0), "VV": (-23.0, 2.0)}
FIXED_METHOD = "fixed"


def fixed_normalization(bands: Sequence[str]) -> Normalization:
    """The fixed dB ranges (:data:`FIXED_DB_RANGES`) of ``bands``, as a Normalization."""
    bands = [b.upper() for b in bands]
    unknown = [b for b in bands if b not in FIXED_DB_RANGES]
    if unknown:
        raise InputDataError(
            f"no fixed dB range for band(s) {', '.join(unknown)} "
            f"(known: {', '.join(FIXED_DB_RANGES)}); use normalization 'store'"
        )
    return Normalization(
        tuple(FIXED_DB_RANGES[b][0] for b in bands),
        tuple(FIXED_DB_RANGES[b][1] for b in bands),
        tuple(bands),
        FIXED_METHOD,
    )
