"""Uncertainty maps and sample-based area estimates of an experiment's test areas.

Beside each method's error map (TP/FP/FN against the label) the report shows its uncertainty:
the binary entropy of the predicted probability, as ``predict --uncertainty`` writes it.

The label of every labelled test pixel is known (the simulator's truth, or a real location's
label raster), so each method's map of the test area goes through the good-practice chain of
``sarcrop sample`` → reference labels read from those labels → ``sarcrop assess``: the
estimated area of the crop with its 95 % CI is set against the true (census) area and the
map's pixel count, which the map's errors bias. Unlabelled pixels count in the areas, not in
the accuracies. Everything is computed from the run's files (probabilities and
stores) with the run's first seed, so ``sarcrop report --redraw`` gives the same numbers
without training. Files go to ``area/<scenario>/``: the truth and class maps (GeoTIFF), each
sample (GeoPackage) and each assessment (JSON and Markdown).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sarcrop.data.grid import Grid
from sarcrop.evaluation.tables import SIMULATED, method_label
from sarcrop.reports.figures import COLORS, TN, UNLABELLED, confusion_map, save_figure
from sarcrop.utils.atomic import atomic_path

SAMPLE_SIZE = 300
"""Reference points per map, shared among the map classes with at least 50 each and the rest
in proportion to their area (Olofsson et al. 2014's recommendation)."""
NODATA = 255
DISPLAY_PIXELS = 1024
"""Longest side of a drawn map; larger test areas are drawn every n-th pixel."""
_CONFUSION_CMAP = ListedColormap(
    [COLORS[k] for k in ("tn", "tp", "fp", "fn", "unlabelled")], name="confusion"
)


@dataclass(frozen=True)
class ScenarioMaps:
    """A scenario's test area at full resolution on its store's grid."""

    grid: Grid
    truth: np.ndarray
    """uint8: 1 crop, 0 other, :data:`NODATA` unlabelled or outside the test patches."""
    probabilities: Mapping[str, np.ndarray]
    """Method → probability of the crop, NaN outside the test patches."""
    thresholds: Mapping[str, float]
    """Method → the probability threshold of its metrics (and of its class map)."""


def truth_patches(targets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Test patches' labels as truth codes: 1 crop, 0 other, :data:`NODATA` unlabelled."""
    return np.where(valid, (targets > 0.5).astype(np.uint8), NODATA).astype(np.uint8)


# --------------------------------------------------------------------------- uncertainty


def entropy(probability: np.ndarray) -> np.ndarray:
    """Binary entropy in bits (NaN stays NaN): the uncertainty band of ``predict``."""
    from sarcrop.prediction.writer import binary_entropy

    return np.where(np.isfinite(probability), binary_entropy(np.nan_to_num(probability)), np.nan)


def uncertainty_summary(area: ScenarioMaps) -> dict[str, dict[str, float | int | None]]:
    """Per method, the mean entropy of its wrong and of its right labelled pixels: an
    uncertainty band is useful when the first is clearly larger."""
    labelled = area.truth != NODATA
    summary: dict[str, dict[str, float | int | None]] = {}
    for method, probability in area.probabilities.items():
        ok = labelled & np.isfinite(probability)
        h = entropy(probability)[ok]
        wrong = (probability[ok] >= area.thresholds[method]) != (area.truth[ok] == 1)
        summary[method] = {
            "entropy_errors": float(h[wrong].mean()) if wrong.any() else None,
            "entropy_correct": float(h[~wrong].mean()) if (~wrong).any() else None,
            "error_pixels": int(wrong.sum()),
            "labelled_pixels": int(ok.sum()),
        }
    return summary


def uncertainty_figure(
    area: ScenarioMaps, summary: Mapping[str, Mapping[str, Any]], title: str, path: Path
) -> Figure:
    """One row per method: its error map and, beside it, its uncertainty (binary entropy);
    grey where there is no label (errors) or no prediction (both)."""
    step = max(1, int(np.ceil(max(area.truth.shape) / DISPLAY_PIXELS)))
    truth = area.truth[::step, ::step]
    labelled = truth != NODATA
    height = float(truth.shape[0]) / max(truth.shape[1], 1)
    methods = list(area.probabilities)
    fig = Figure(figsize=(6.0, 2.6 * height * len(methods) + 0.9), layout="constrained")
    axes = fig.subplots(len(methods), 2, squeeze=False)
    cmap = _viridis_with_grey()
    image = None
    for ax, method in zip(axes, methods):
        probability = area.probabilities[method][::step, ::step]
        codes = confusion_map(probability, truth == 1, labelled, threshold=area.thresholds[method])
        ax[0].imshow(codes, cmap=_CONFUSION_CMAP, vmin=TN, vmax=UNLABELLED, interpolation="nearest")
        image = ax[1].imshow(
            np.ma.masked_invalid(entropy(probability)),
            cmap=cmap,
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        name = method_label(method)
        ax[0].set_title(f"{name}: errors", fontsize=9)
        ax[1].set_title(f"{name}: uncertainty{_entropy_note(summary.get(method, {}))}", fontsize=8)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes[:, 1], shrink=0.8, label="binary entropy (bits)")
    handles = [
        Patch(facecolor=COLORS[k], edgecolor="#888888", label=k.upper())
        for k in ("tp", "fp", "fn", "tn")
    ]
    handles.append(Patch(facecolor=COLORS["unlabelled"], label="unlabelled / no data"))
    fig.legend(handles=handles, loc="outside lower center", ncol=5, frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return fig


def _viridis_with_grey() -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad=COLORS["unlabelled"])


def _entropy_note(stats: Mapping[str, Any]) -> str:
    errors, correct = stats.get("entropy_errors"), stats.get("entropy_correct")
    if errors is None or correct is None:
        return ""
    return f"\nmean entropy: errors {errors:.2f}, correct {correct:.2f}"


# --------------------------------------------------------------------------- area


def write_band(path: Path, values: np.ndarray, grid: Grid, description: str) -> Path:
    """A one-band uint8 GeoTIFF (nodata :data:`NODATA`) on ``grid``, written atomically."""
    import rasterio

    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": NODATA,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(values.astype(np.uint8), 1)
        dst.set_band_description(1, description)
    return path


def class_map(probability: np.ndarray, threshold: float) -> np.ndarray:
    """A probability map as map classes: 1 at or above ``threshold``, :data:`NODATA` on NaN."""
    classes = (np.nan_to_num(probability) >= threshold).astype(np.uint8)
    return np.where(np.isfinite(probability), classes, NODATA).astype(np.uint8)


def area_estimates(
    out: Path,
    scenario: str,
    area: ScenarioMaps,
    *,
    seed: int,
    n: int = SAMPLE_SIZE,
    data: str | None = SIMULATED,
) -> list[dict[str, Any]]:
    """Per method: sample its class map, label the points from the truth, assess; one
    :func:`~sarcrop.evaluation.assessment.area_record` row each (class 1, the crop), with the
    method and the files behind it. ``out`` is the run directory; ``data`` says whether the
    truth is the simulator's or real labels (None: a store of unknown origin)."""
    from sarcrop.evaluation.assessment import (
        area_record,
        assess_census,
        assess_sample,
        write_assessment,
    )
    from sarcrop.evaluation.reference import fill_reference
    from sarcrop.evaluation.sampling import draw_sample, write_sample
    from sarcrop.options import SamplingOptions

    folder = Path("area") / scenario
    truth = write_band(out / folder / "truth.tif", area.truth, area.grid, "truth")
    rows = []
    for method, probability in area.probabilities.items():
        classes = class_map(probability, area.thresholds[method])
        mapped = int(np.sum(classes != NODATA))
        if mapped == 0:
            continue
        name = folder / f"{method}-class.tif"
        map_path = write_band(out / name, classes, area.grid, "class")
        options = SamplingOptions(seed=seed, min_per_stratum=min(50, n // 2))
        sample = fill_reference(draw_sample(map_path, min(n, mapped), options=options), truth)
        write_sample(sample, out / folder / f"{method}-samples.gpkg", overwrite=True)
        origin = "simulator's truth" if data == SIMULATED else "the test split's labels"
        sources = {"map": str(name), "reference": f"{folder / 'truth.tif'} ({origin})"}
        estimate = assess_sample(sample, sources=sources)
        if 1 not in estimate.classes:  # no crop mapped, none among the points
            continue
        write_assessment(
            estimate, out / folder / method, title=f"{scenario}: {method_label(method)}"
        )
        census = assess_census(map_path, truth)
        record = area_record(estimate, 1, scenario=scenario, truth=census, data=data or "unknown")
        rows.append({**record, "method": method, "assessment": str(folder / f"{method}.json")})
    return rows
