"""Accuracy and area with confidence intervals from a stratified random sample of reference labels.

Counting mapped pixels is biased by the map's errors; the estimators here weight each sample
point back to the population by its stratum's size, so that accuracies and class areas are
unbiased with a known standard error (SE).

- :func:`olofsson_estimates`: strata = map classes, from the error matrix of sample counts
  (Olofsson et al. 2014, Remote Sensing of Environment 148:42-57, Eqs. 1-11): ``p_ij = W_i
  n_ij / n_i.``, overall / user's / producer's accuracy and area proportions with SEs.
- :func:`stehman_estimates`: any strata, e.g. map class × uncertainty level (Stehman 2014,
  International Journal of Remote Sensing 35:4923-4939, Eqs. 2-3, 25-29): every quantity is a
  stratified mean of a per-point indicator, or a ratio of two such means.

Both apply the finite population correction ``1 - n_h/N_h`` when ``fpc`` is true (the default),
so a census (every pixel of a stratum sampled) has zero variance; Olofsson et al. omit it, which
changes nothing at pixel-scale ``N_h`` (``fpc=False`` reproduces their printed numbers). Where
both apply (strata = map classes) they give the same estimates and SEs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sarcrop.errors import InputDataError

Z95 = 1.959963984540054
"""Standard normal quantile of the 95 % two-sided interval."""
UNLABELLED = -1
"""Reference value of a point or pixel that has no reference class (label raster nodata)."""


@dataclass(frozen=True)
class Estimate:
    """An estimate with its standard error; the interval is ``value ± 1.96·se``."""

    value: float
    se: float

    @property
    def ci95(self) -> tuple[float, float]:
        return (self.value - Z95 * self.se, self.value + Z95 * self.se)

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.se * factor)

    def to_dict(self) -> dict[str, float | None]:
        low, high = self.ci95
        return {
            k: _finite(v)
            for k, v in (
                ("value", self.value),
                ("se", self.se),
                ("ci95_low", low),
                ("ci95_high", high),
            )
        }


_NAN = Estimate(math.nan, math.nan)


def _finite(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class Estimates:
    """Accuracy and area proportions over ``classes`` (map rows × reference columns)."""

    classes: tuple[int, ...]
    proportions: np.ndarray
    """``(k, k)`` estimated area proportion of map class i and reference class j."""
    overall: Estimate
    users: tuple[Estimate, ...]
    producers: tuple[Estimate, ...]
    area: tuple[Estimate, ...]
    """Area proportion of each reference class."""
    method: str


def _safe_div(a: np.ndarray | float, b: np.ndarray | float) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            np.asarray(b) != 0, np.asarray(a) / np.where(np.asarray(b) != 0, b, 1), np.nan
        )


def olofsson_estimates(
    counts: np.ndarray,
    map_pixels: Sequence[float],
    *,
    classes: Sequence[int] | None = None,
    fpc: bool = True,
) -> Estimates:
    """Estimates from the ``(k, k)`` error matrix of sample ``counts`` (rows: map class =
    stratum, columns: reference class) and the mapped size ``N_i`` of each class (pixels).

    Olofsson et al. (2014) Eqs. 2 (``p_ij``), 4-7 (accuracies and their variances), 9-10 and
    the SE of area proportions (Eq. 10 of Olofsson et al. 2013). A stratum with one sample point
    has no variance estimate; it contributes 0 (as in the reference R implementations) unless
    it is a census.
    """
    n = np.asarray(counts, dtype=float)
    sizes = np.asarray(map_pixels, dtype=float)
    k = n.shape[0]
    if n.shape != (k, k) or sizes.shape != (k,):
        raise InputDataError(f"error matrix {n.shape} does not fit {sizes.shape[0]} map classes")
    ni = n.sum(axis=1)
    codes = tuple(classes) if classes is not None else tuple(range(k))
    _refuse_unsampled(codes, sizes, ni)
    w = sizes / sizes.sum()
    within = _safe_div(n, ni[:, None])  # n_ij / n_i.
    within = np.nan_to_num(within)
    p = w[:, None] * within
    correction = 1 - np.divide(ni, sizes, out=np.zeros(k), where=sizes > 0) if fpc else np.ones(k)
    denom = _safe_div(correction, ni - 1)
    denom = np.where(ni > 1, denom, 0.0)

    users_p = _safe_div(np.diag(p), p.sum(axis=1))
    producers_p = _safe_div(np.diag(p), p.sum(axis=0))
    overall = float(np.trace(p))
    u = np.nan_to_num(users_p)
    var_users = u * (1 - u) * denom
    var_overall = float(np.sum(w**2 * u * (1 - u) * denom))
    var_area = np.sum(w[:, None] ** 2 * within * (1 - within) * denom[:, None], axis=0)

    # Eq. 7: producer's accuracy, with N_.j the estimated reference-class total in pixels.
    n_ref = (sizes[:, None] * within).sum(axis=0)
    var_producers = np.full(k, np.nan)
    for j in range(k):
        if n_ref[j] == 0:
            continue
        pa = producers_p[j]
        own = sizes[j] ** 2 * (1 - pa) ** 2 * u[j] * (1 - u[j]) * denom[j]
        others = sum(
            sizes[i] ** 2 * within[i, j] * (1 - within[i, j]) * denom[i] for i in range(k) if i != j
        )
        var_producers[j] = (own + pa**2 * others) / n_ref[j] ** 2
    return Estimates(
        classes=codes,
        proportions=p,
        overall=Estimate(overall, math.sqrt(var_overall)),
        users=_estimates(users_p, var_users),
        producers=_estimates(producers_p, var_producers),
        area=_estimates(p.sum(axis=0), var_area),
        method="stratified, strata = map classes (Olofsson et al. 2014)",
    )


def _refuse_unsampled(codes: Sequence[int], sizes: np.ndarray, n: np.ndarray) -> None:
    """Refuse strata of pixels without a sample point: their pixels would be in no estimate,
    and the areas would not add up to the map."""
    empty = [(c, int(s)) for c, s, k in zip(codes, sizes, n, strict=True) if s > 0 and k == 0]
    if empty:
        named = ", ".join(f"{c} ({s:,} px)" for c, s in empty)
        raise InputDataError(
            f"strata {named} have no sample point, so their pixels' classes cannot be "
            "estimated and the areas would not add up to 1: give every stratum of pixels at "
            "least 1 point (2 for a standard error)"
        )


def _estimates(values: np.ndarray, variances: np.ndarray) -> tuple[Estimate, ...]:
    return tuple(
        Estimate(float(v), math.sqrt(max(float(s), 0.0)) if math.isfinite(v) else math.nan)
        for v, s in zip(values, variances, strict=True)
    )


@dataclass(frozen=True)
class _StratumMoments:
    """Per-stratum means and (co)variances of indicator columns, weighted by ``N_h``."""

    sizes: np.ndarray  # N_h
    n: np.ndarray  # n_h
    means: np.ndarray  # (H, m)
    cov: np.ndarray  # (H, m, m), ddof=1, 0 where n_h < 2
    factor: np.ndarray = field(init=False)  # N_h² (1 - f_h) / n_h, or without the fpc

    @classmethod
    def of(cls, strata: np.ndarray, y: np.ndarray, sizes: Mapping[int, float], fpc: bool):
        codes = sorted(sizes)
        big_n = np.array([sizes[c] for c in codes], dtype=float)
        small_n = np.array([np.sum(strata == c) for c in codes], dtype=float)
        means = np.zeros((len(codes), y.shape[1]))
        cov = np.zeros((len(codes), y.shape[1], y.shape[1]))
        for h, code in enumerate(codes):
            rows = y[strata == code]
            if len(rows):
                means[h] = rows.mean(axis=0)
            if len(rows) > 1:
                centred = rows - means[h]
                cov[h] = centred.T @ centred / (len(rows) - 1)
        moments = cls(big_n, small_n, means, cov)
        correction = (1 - small_n / big_n) if fpc else np.ones_like(big_n)
        factor = np.where(small_n > 0, big_n**2 * correction / np.maximum(small_n, 1), 0.0)
        object.__setattr__(moments, "factor", factor)
        return moments


def stehman_estimates(
    strata: Sequence[int] | np.ndarray,
    map_class: Sequence[int] | np.ndarray,
    reference: Sequence[int] | np.ndarray,
    stratum_pixels: Mapping[int, float],
    *,
    classes: Sequence[int] | None = None,
    fpc: bool = True,
) -> Estimates:
    """Estimates for a stratified random sample whose strata may differ from the map classes.

    ``strata``, ``map_class`` and ``reference`` hold one value per sample point and
    ``stratum_pixels`` the size ``N_h`` of every stratum. Totals are ``Ŷ = Σ N_h ȳ_h``
    (Stehman 2014 Eq. 2-3) with variance Eq. 25; accuracies are ratios ``R̂ = Ŷ/X̂`` with the
    linearised variance of Eq. 28. Reference :data:`UNLABELLED` (-1) marks points that have no
    reference class (e.g. roads in a crop label raster): areas still refer to every mapped
    pixel, accuracies to the labelled ones (the ratio's denominator counts labelled points).
    """
    s = np.asarray(strata)
    m = np.asarray(map_class)
    r = np.asarray(reference)
    if not (len(s) == len(m) == len(r)):
        raise InputDataError("strata, map classes and reference labels differ in length")
    unknown = sorted(set(np.unique(s).tolist()) - set(stratum_pixels))
    if unknown:
        raise InputDataError(f"sample points in strata without a size: {unknown}")
    codes = sorted(stratum_pixels)
    sampled = np.array([np.sum(s == c) for c in codes])
    _refuse_unsampled(codes, np.array([stratum_pixels[c] for c in codes], dtype=float), sampled)
    cls = tuple(classes) if classes is not None else tuple(sorted(set(m) | set(r)))
    k = len(cls)
    total = float(sum(stratum_pixels.values()))
    # (n, k²) indicators of the error-matrix cells; every estimate is a combination of them.
    cell = np.stack([(m == i) & (r == j) for i in cls for j in cls], axis=1).astype(float)
    mo = _StratumMoments.of(s, cell, stratum_pixels, fpc)
    cells = mo.sizes @ mo.means  # Ŷ of every cell
    cov = np.einsum("h,hab->ab", mo.factor, mo.cov)  # Eq. 25 × N², between cells

    def total_of(a: np.ndarray) -> Estimate:
        """Ŷ/N of a combination of cells."""
        v = a.ravel()
        return Estimate(float(v @ cells) / total, math.sqrt(max(float(v @ cov @ v), 0.0)) / total)

    def ratio(num: np.ndarray, den: np.ndarray) -> Estimate:
        """R̂ = Ŷ/X̂ of two combinations of cells (Eqs. 27-28)."""
        a, b = num.ravel(), den.ravel()
        y_hat, x_hat = a @ cells, b @ cells
        if x_hat == 0:
            return Estimate(math.nan, math.nan)
        rr = y_hat / x_hat
        d = a - rr * b
        return Estimate(float(rr), math.sqrt(max(float(d @ cov @ d), 0.0)) / x_hat)

    labelled = np.array([c != UNLABELLED for c in cls], dtype=float)
    eye = np.eye(k) * labelled
    users, producers, area = [], [], []
    for i in range(k):
        row, col = np.zeros((k, k)), np.zeros((k, k))
        row[i, :] = labelled
        col[:, i] = 1
        users.append(ratio(eye * (np.arange(k) == i), row))
        producers.append(ratio(eye * (np.arange(k) == i), col) if labelled[i] else _NAN)
        area.append(total_of(col))
    everything = np.ones((k, k)) * labelled
    overall = ratio(eye, everything) if labelled.sum() < k else total_of(eye)
    return Estimates(
        classes=cls,
        proportions=cells.reshape(k, k) / total,
        overall=overall,
        users=tuple(users),
        producers=tuple(producers),
        area=tuple(area),
        method="stratified, strata differ from the map classes (Stehman 2014)",
    )


def census_estimates(counts: np.ndarray, classes: Sequence[int]) -> Estimates:
    """The true values from the error matrix of every pixel (SE 0); reference
    :data:`UNLABELLED` counts in areas but not in accuracies, as in :func:`stehman_estimates`."""
    n = np.asarray(counts, dtype=float)
    labelled = np.array([c != UNLABELLED for c in classes])
    lab = n[:, labelled]

    def exact(a: float, b: float) -> Estimate:
        return Estimate(a / b if b else math.nan, 0.0 if b else math.nan)

    idx = range(len(classes))
    return Estimates(
        classes=tuple(classes),
        proportions=n / n.sum(),
        overall=exact(float(np.trace(n)), float(lab.sum())),
        users=tuple(exact(n[i, i], lab[i].sum()) for i in idx),
        producers=tuple(exact(n[i, i], n[:, i].sum()) if labelled[i] else _NAN for i in idx),
        area=tuple(Estimate(float(n[:, i].sum() / n.sum()), 0.0) for i in idx),
        method="census of every mapped pixel (true values, SE 0)",
    )


def sample_counts(
    map_class: np.ndarray, reference: np.ndarray, classes: Sequence[int]
) -> np.ndarray:
    """``(k, k)`` error matrix of sample counts (rows: map, columns: reference)."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for mi, ri in zip(map_class.tolist(), reference.tolist(), strict=True):
        out[index[mi], index[ri]] += 1
    return out
