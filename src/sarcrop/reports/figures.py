"""Report figures as functions over arrays, in the style of the paper's figures.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no
global state, no GUI backend, nothing leaks between calls, safe in worker processes. Every
function returns the Figure and, given ``path``, also saves it atomically.

Colours are fixed across figures (paper, Figure 1): true positives green, false negatives red,
false positives orange, the reference (fine-tuning region positives, ground truth) blue.
"""

from __future__ import annotations

import base64
import io
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from sarcrop.errors import InputDataError
from sarcrop.evaluation.tables import method_label
from sarcrop.utils.atomic import atomic_path

COLORS = {
    "tp": "#2ca02c",
    "fn": "#d62728",
    "fp": "#ff7f0e",
    "tn": "#ffffff",
    "reference": "#1f77b4",
    "unlabelled": "#c8c8c8",
}
METHOD_COLORS = {
    "RF": "#7f7f7f",
    "RI": "#9467bd",
    "FT": "#8c564b",
    "FTE": "#1f77b4",
    "FTD": "#17becf",
}
_EXTRA_COLORS = ("#e377c2", "#bcbd22", "#2ca02c", "#ff7f0e", "#d62728")

# Codes of confusion_map(), in colour-map order.
TN, TP, FP, FN, UNLABELLED = range(5)
_CONFUSION_CMAP = ListedColormap(
    [COLORS["tn"], COLORS["tp"], COLORS["fp"], COLORS["fn"], COLORS["unlabelled"]]
)
_LABEL_CMAP = ListedColormap([COLORS["tn"], COLORS["reference"], COLORS["unlabelled"]])


class FigureInputError(InputDataError, ValueError):
    """Arrays or tables that cannot be drawn (also a ``ValueError``)."""


# --------------------------------------------------------------------------- output


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 150) -> Path:
    """Save ``fig`` atomically; the format follows the suffix (``.png``, ``.svg``, ``.pdf``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    return path


def figure_to_base64_png(fig: Figure, *, dpi: int = 100) -> str:
    """PNG bytes of ``fig`` as base64 text, for ``<img src="data:image/png;base64,...">``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _array(value: Any, name: str, ndim: int) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != ndim:
        raise FigureInputError(f"{name} must be {ndim}-D, got shape {array.shape}")
    return array


# --------------------------------------------------------------------------- maps


def rgb_composite(
    image_vh: Any, steps: Sequence[int] = (0, 1, 2), percentiles: tuple[float, float] = (2, 98)
) -> np.ndarray:
    """``(H, W, 3)`` in [0, 1]: VH of three steps as R, G, B, each percentile-stretched.

    The paper's "Image" panels: the first three 20-day composites, so flooded paddies (dark
    early) stand out. Fewer than three steps repeat the last one; NaN is drawn black.
    """
    image = _array(image_vh, "image_vh (time, height, width)", 3).astype(np.float64)
    picks = [min(step, image.shape[0] - 1) for step in steps]
    channels = []
    for step in picks:
        band = image[step]
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            channels.append(np.zeros_like(band))
            continue
        low, high = np.percentile(finite, percentiles)
        scaled = (band - low) / (high - low) if high > low else np.zeros_like(band)
        channels.append(np.nan_to_num(np.clip(scaled, 0, 1), nan=0.0))
    return np.stack(channels, axis=-1)


def _label_valid(label: Any, valid: Any, shape: tuple[int, ...] | None = None) -> tuple:
    label = _array(label, "label (height, width)", 2).astype(np.float64)
    if shape is not None and label.shape != shape:
        raise FigureInputError(f"label shape {label.shape} does not match image {shape}")
    ok = np.isin(label, (0, 1))
    if valid is not None:
        valid = _array(valid, "valid (height, width)", 2)
        if valid.shape != label.shape:
            raise FigureInputError(f"valid shape {valid.shape} does not match label {label.shape}")
        ok &= valid.astype(bool)
    return label == 1, ok


def confusion_map(
    prediction: Any, label: Any, valid: Any = None, *, threshold: float = 0.5
) -> np.ndarray:
    """Per-pixel codes TN, TP, FP, FN, UNLABELLED (0-4) of a prediction against the label.

    ``prediction`` is boolean or a probability (thresholded); NaN counts as unlabelled.
    """
    positive, ok = _label_valid(label, valid)
    pred = _array(prediction, "prediction (height, width)", 2)
    if pred.shape != positive.shape:
        raise FigureInputError(
            f"prediction shape {pred.shape} does not match label {positive.shape}"
        )
    if pred.dtype.kind == "f":
        ok = ok & np.isfinite(pred)
        pred = np.nan_to_num(pred) >= threshold
    pred = pred.astype(bool)
    codes = np.full(positive.shape, TN, np.uint8)
    codes[pred & positive] = TP
    codes[pred & ~positive] = FP
    codes[~pred & positive] = FN
    codes[~ok] = UNLABELLED
    return codes


@dataclass
class PanelRow:
    """One row of a prediction figure: image, label and each method's prediction."""

    image_vh: Any
    label: Any
    predictions: Mapping[str, Any] = field(default_factory=dict)
    valid: Any = None
    name: str | None = None


def _as_row(row: PanelRow | Mapping[str, Any] | Sequence[Any]) -> PanelRow:
    if isinstance(row, PanelRow):
        return row
    if isinstance(row, Mapping):
        return PanelRow(**row)
    return PanelRow(*row)


def _draw_row(
    axes: Sequence[Any], row: PanelRow, methods: Sequence[str], threshold: float, titles: bool
) -> None:
    image = _array(row.image_vh, "image_vh (time, height, width)", 3)
    positive, ok = _label_valid(row.label, row.valid, image.shape[1:])
    label_codes = np.where(ok, positive.astype(np.uint8), 2)
    panels: list[tuple[str, np.ndarray | None, dict[str, Any]]] = [
        ("Image", rgb_composite(image), {}),
        ("Label", label_codes, {"cmap": _LABEL_CMAP, "vmin": 0, "vmax": 2}),
    ]
    for method in methods:
        if method in row.predictions:
            codes = confusion_map(
                row.predictions[method], row.label, row.valid, threshold=threshold
            )
            panels.append((method, codes, {"cmap": _CONFUSION_CMAP, "vmin": 0, "vmax": 4}))
        else:
            panels.append((method, None, {}))
    for i, (ax, (name, data, style)) in enumerate(zip(axes, panels)):
        if data is not None:
            ax.imshow(data, interpolation="nearest", **style)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(f"({chr(ord('a') + i)}) {name}", fontsize=10)
    if row.name:
        axes[0].set_ylabel(row.name, fontsize=9)


def _legend(fig: Figure) -> None:
    handles = [
        Patch(facecolor=COLORS["tp"], label="TP"),
        Patch(facecolor=COLORS["fp"], label="FP"),
        Patch(facecolor=COLORS["fn"], label="FN"),
        Patch(facecolor=COLORS["tn"], edgecolor="#888888", label="TN"),
        Patch(facecolor=COLORS["reference"], label="label: positive"),
        Patch(facecolor=COLORS["unlabelled"], label="unlabelled / no data"),
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=8
    )


def scenario_figure(
    whole_area_row: PanelRow | Mapping[str, Any] | None,
    patch_rows: Sequence[PanelRow | Mapping[str, Any]] = (),
    title: str | None = None,
    *,
    threshold: float = 0.5,
    path: str | Path | None = None,
) -> Figure:
    """The paper's Figures 4-13: the whole test area on top, selected patches below.

    Columns: (a) Image (first three VH steps as RGB), (b) Label, then one column per method
    showing TP/FP/FN against the label. Methods follow the first row's order.
    """
    rows = [_as_row(r) for r in ([whole_area_row] if whole_area_row is not None else [])]
    rows += [_as_row(r) for r in patch_rows]
    if not rows:
        raise FigureInputError("nothing to draw: no whole-area row and no patch rows")
    methods = list(dict.fromkeys(m for row in rows for m in row.predictions))
    ncols = 2 + len(methods)
    # Row heights follow each row's aspect so a wide test area does not leave empty bands.
    heights = [float(np.shape(row.label)[0]) / max(np.shape(row.label)[1], 1) for row in rows]
    fig = Figure(figsize=(2.0 * ncols, 2.0 * sum(heights) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False, gridspec_kw={"height_ratios": heights})
    for i, row in enumerate(rows):
        _draw_row(axes[i], row, methods, threshold, titles=i == 0)
    _legend(fig)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def prediction_panels(
    image_vh: Any,
    label: Any,
    predictions: Mapping[str, Any],
    title: str | None = None,
    *,
    valid: Any = None,
    threshold: float = 0.5,
    path: str | Path | None = None,
) -> Figure:
    """One row: (a) VH RGB composite, (b) label, then each method's TP/FP/FN map."""
    row = PanelRow(image_vh, label, predictions, valid)
    return scenario_figure(row, (), title, threshold=threshold, path=path)


# --------------------------------------------------------------------------- curves


def class_palette(classes: Sequence[str]) -> dict[str, str]:
    """Class name → ``#rrggbb``: the colours of predicted crop-type maps (the GeoTIFF's colour
    table, :func:`sarcrop.prediction.writer.class_colors`), so report and map agree."""
    from sarcrop.prediction.writer import class_colors

    return {
        name: "#{:02x}{:02x}{:02x}".format(*rgb)
        for name, rgb in zip(classes, class_colors(len(classes)))
    }


def class_rgb(class_map: Any, count: int, valid: Any = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 of class indices in the map palette; pixels where ``valid`` is
    False (unlabelled) or the index is out of range are drawn in the unlabelled grey."""
    from sarcrop.prediction.writer import class_colors

    index = _array(class_map, "class map (height, width)", 2).astype(np.int64)
    table = np.array([*class_colors(count), _hex_rgb(COLORS["unlabelled"])], dtype=np.uint8)
    ok = (index >= 0) & (index < count)
    if valid is not None:
        ok &= _array(valid, "valid (height, width)", 2).astype(bool)
    return table[np.where(ok, index, count)]


def _hex_rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return int(value[:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def class_maps_figure(
    labels: Sequence[Any],
    predictions: Mapping[str, Sequence[Any] | np.ndarray],
    classes: Sequence[str],
    *,
    valid: Sequence[Any] | None = None,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """One row per patch: the label (unlabelled grey), then each method's predicted classes,
    in the colours of predicted crop-type maps, with one legend of the classes.

    ``labels`` are class-index patches ``(H, W)``; ``predictions`` maps a method to its class
    indices (or scores ``(K, H, W)``, argmax taken) of the same patches.
    """
    if not len(labels):
        raise FigureInputError("no patches to draw")
    methods = list(predictions)
    columns = 1 + len(methods)
    fig = Figure(figsize=(1.9 * columns, 1.9 * len(labels) + 0.9), layout="constrained")
    grid = np.atleast_2d(np.asarray(fig.subplots(len(labels), columns, squeeze=False)))
    count = len(classes)
    for r, label in enumerate(labels):
        mask = None if valid is None else valid[r]
        panels = [("Label", class_rgb(label, count, mask))]
        for method in methods:
            predicted = np.asarray(predictions[method][r])
            if predicted.ndim == 3:
                predicted = np.nan_to_num(predicted.astype(np.float32), nan=-1.0).argmax(axis=0)
            panels.append((method, class_rgb(predicted, count)))
        for ax, (name, rgb) in zip(grid[r], panels):
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
    colors = class_palette(classes)
    handles = [Patch(facecolor=colors[c], edgecolor="black", label=c) for c in classes]
    handles.append(Patch(facecolor=COLORS["unlabelled"], edgecolor="black", label="unlabelled"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def _spread(series: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN
        if kind == "std":
            center, std = np.nanmean(series, axis=0), np.nanstd(series, axis=0)
            return center, center - std, center + std
        low, median, high = np.nanpercentile(series, (25, 50, 75), axis=0)
        return median, low, high


def signature_plot(
    steps_dates: Sequence[Any] | None,
    tp_series: Any,
    fn_series: Any,
    reference_series: Any,
    band: str = "VH",
    *,
    spread: str = "std",
    units: str = "dB",
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """The paper's Figure 1: mean backscatter per step of TP, FN and reference positives.

    Each ``*_series`` is ``(pixels, T)``. ``spread="std"`` shades mean ± 1 std, ``"iqr"``
    the interquartile range around the median. ``steps_dates`` labels the x axis (composite
    dates) or is None for step numbers 1..T.
    """
    if spread not in ("std", "iqr"):
        raise FigureInputError(f"spread must be 'std' or 'iqr', got {spread!r}")
    names = {
        "tp": "TP (test region)",
        "fn": "FN (test region)",
        "reference": "positives (fine-tuning region)",
        **(labels or {}),
    }
    groups = {"tp": tp_series, "fn": fn_series, "reference": reference_series}
    arrays = {
        key: _array(value, f"{key}_series (pixels, time)", 2).astype(np.float64)
        for key, value in groups.items()
    }
    steps = {a.shape[1] for a in arrays.values()}
    if len(steps) != 1:
        raise FigureInputError(f"series have different numbers of time steps: {sorted(steps)}")
    (n_steps,) = steps
    if steps_dates is not None and len(steps_dates) != n_steps:
        raise FigureInputError(f"{len(steps_dates)} dates given for {n_steps} time steps")
    x = np.arange(1, n_steps + 1)

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for key in ("reference", "tp", "fn"):
        data = arrays[key]
        if data.shape[0] == 0:
            continue
        center, low, high = _spread(data, spread)
        color = COLORS[key]
        ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
        ax.plot(x, center, "o-", color=color, label=f"{names[key]} (n={data.shape[0]})")
    ax.set_xticks(x)
    if steps_dates is not None:
        ax.set_xticklabels([str(d)[:10] for d in steps_dates], rotation=45, ha="right")
        ax.set_xlabel("composite start")
    else:
        ax.set_xlabel("time step")
    ax.set_ylabel(f"{band} ({units})" if units else band)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Mean {band} time series")
    return _finish(fig, path)


def _method_color(method: str, seen: dict[str, str]) -> str:
    key = method.upper()
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return seen.setdefault(key, _EXTRA_COLORS[len(seen) % len(_EXTRA_COLORS)])


def early_season_plot(
    results: pd.DataFrame | Mapping[str, Mapping[int, float] | Sequence[float]],
    metric: str = "iou",
    *,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Metric against the number of observed steps t = 1..T, one line per method/ordering.

    ``results`` is the long results table (columns method, timestep, value; optional metric,
    ordering, seed - seeds are averaged, ±1 std shaded) or ``{line name: {t: value}}``.
    Lines of the "random" batch ordering are dashed, chronological ones solid.
    """
    lines: dict[tuple[str, str], pd.DataFrame] = {}
    if isinstance(results, pd.DataFrame):
        missing = {"method", "timestep", "value"} - set(results.columns)
        if missing:
            raise FigureInputError(f"results lack column(s) {', '.join(sorted(missing))}")
        data = results
        if "metric" in data.columns:
            data = data[data["metric"].astype(str).str.lower() == metric.lower()]
        if data.empty:
            raise FigureInputError(f"no {metric!r} results to plot")
        group_keys = ["method", "ordering"] if "ordering" in data.columns else ["method"]
        for key, part in data.groupby(group_keys, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            lines[(str(key[0]), str(key[1]) if len(key) > 1 else "")] = part
    else:
        for name, values in results.items():
            pairs = values.items() if isinstance(values, Mapping) else enumerate(values, start=1)
            ordering = "random" if "random" in str(name).lower() else ""
            frame = pd.DataFrame(list(pairs), columns=["timestep", "value"])
            lines[(str(name), ordering)] = frame
        if not lines:
            raise FigureInputError("no results to plot")

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    extra: dict[str, str] = {}
    for (method, ordering), part in lines.items():
        stats = part.groupby("timestep")["value"].agg(["mean", "std", "count"]).sort_index()
        x = stats.index.to_numpy(dtype=float)
        color = _method_color(method.split(" ")[0], extra)
        style = "--" if ordering.lower() == "random" else "-"
        label = f"{method} ({ordering})" if ordering and ordering not in method else method
        ax.plot(x, stats["mean"], style, marker="o", color=color, label=label)
        if (stats["count"] > 1).any():
            std = stats["std"].fillna(0).to_numpy()
            ax.fill_between(
                x, stats["mean"] - std, stats["mean"] + std, color=color, alpha=0.12, linewidth=0
            )
    ax.set_xlabel("observed time steps t")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # t counts composites
    name = {"iou": "IoU", "f1": "F1-score", "miou": "mIoU"}.get(metric.lower(), metric)
    ax.set_ylabel(name)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Early-season {name}")
    return _finish(fig, path)


def learning_curves(
    intervals: pd.DataFrame,
    *,
    titles: Mapping[str, str] | None = None,
    metric: str = "IoU",
    path: str | Path | None = None,
) -> Figure:
    """Mean metric against the label fraction, one line per method and one panel per scenario.

    ``intervals`` has columns scenario, method, label_fraction, mean, low, high (the
    experiment's ``intervals.csv``). The bootstrap interval of each mean is a vertical bar,
    methods nudged sideways so that overlapping intervals stay readable; the fraction axis
    is logarithmic (10, 25, 50, 100 % are evenly spread). ``titles`` maps scenario ids to
    panel titles. Panels fill rows of at most three.
    """
    missing = {"scenario", "method", "label_fraction", "mean", "low", "high"} - set(intervals)
    if missing:
        raise FigureInputError(f"intervals lack column(s) {', '.join(sorted(missing))}")
    if intervals.empty:
        raise FigureInputError("no intervals to plot")
    scenarios = list(dict.fromkeys(intervals["scenario"]))
    fractions = sorted(float(f) for f in intervals["label_fraction"].unique())
    columns = min(len(scenarios), 3)
    rows = -(-len(scenarios) // columns)
    fig = Figure(figsize=(4.4 * columns, 3.9 * rows), layout="constrained")
    grid = fig.subplots(rows, columns, sharey=True, squeeze=False)
    for unused in grid.flat[len(scenarios) :]:
        unused.set_visible(False)
    axes = grid.flat[: len(scenarios)]
    extra: dict[str, str] = {}
    for ax, scenario in zip(axes, scenarios):
        part = intervals[intervals["scenario"] == scenario]
        methods = list(dict.fromkeys(part["method"]))
        for i, method in enumerate(methods):
            line = part[part["method"] == method].sort_values("label_fraction")
            nudge = 1.035 ** (i - (len(methods) - 1) / 2)
            x = 100 * line["label_fraction"].to_numpy(dtype=float) * nudge
            mean = line["mean"].to_numpy(dtype=float)
            below = np.clip(mean - line["low"].to_numpy(dtype=float), 0, None)
            above = np.clip(line["high"].to_numpy(dtype=float) - mean, 0, None)
            color = _method_color(str(method), extra)
            ax.errorbar(
                x,
                mean,
                yerr=np.nan_to_num(np.vstack([below, above])),
                marker="o",
                markersize=4,
                capsize=2,
                elinewidth=0.8,
                color=color,
                label=method_label(method),
            )
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}" for f in fractions])
        ax.minorticks_off()
        title = (titles or {}).get(str(scenario), str(scenario))
        ax.set_title(textwrap.fill(title, 56), fontsize=9)
        ax.set_xlabel("labelled parcels used (%)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for row in grid:
        row[0].set_ylabel(f"{metric}: mean over seeds, 95 % CI")
    axes[-1].legend(fontsize=7, ncols=2)
    return _finish(fig, path)


def method_training_curves(
    logs: Mapping[str, str | Path | pd.DataFrame],
    *,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """The training loss (left) and the validation IoU (right) per epoch of several runs, one
    line per run (``logs`` maps its name to its Lightning CSVLogger file): where one method's
    validation IoU peaks and sinks while its loss still falls, it learnt the few training
    fields by heart. A run without validation (``val_fraction 0``) has its loss only."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    for name, log in logs.items():
        per_epoch = _per_epoch(_read_metrics_csv(log))
        loss = next((c for c in per_epoch.columns if "loss" in c and "train" in c), None)
        for ax, column in ((loss_ax, loss), (score_ax, "val_iou")):
            if column in per_epoch.columns:
                series = per_epoch[column].dropna()
                ax.plot(series.index, series.to_numpy(), "o-", markersize=2, label=name)
    for ax, ylabel in ((loss_ax, "training loss"), (score_ax, "validation IoU")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {ylabel}", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def _per_epoch(frame: pd.DataFrame) -> pd.DataFrame:
    """Each logged column averaged per epoch. Lightning writes sparse rows (step rows with
    train losses, epoch rows with val metrics); ``*_epoch`` columns win over their ``*_step``
    twins."""
    if "epoch" not in frame.columns:
        raise FigureInputError("training metrics have no 'epoch' column (Lightning CSVLogger?)")
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    columns = [
        c for c in numeric.columns if c not in ("epoch", "step") and numeric[c].notna().any()
    ]
    columns = [c for c in columns if not (c.endswith("_step") and f"{c[:-5]}_epoch" in columns)]
    return numeric.groupby("epoch")[columns].mean()


def _read_metrics_csv(metrics: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(metrics, pd.DataFrame):
        return metrics
    path = Path(metrics)
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise FigureInputError("training metrics file not found", path) from None
    except (OSError, ValueError) as exc:
        raise FigureInputError(f"not a readable metrics CSV: {exc}", path) from None


def training_curves(
    metrics: str | Path | pd.DataFrame,
    *,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Loss (left) and validation metrics (right) per epoch from a Lightning CSVLogger file,
    each column averaged per epoch (:func:`_per_epoch`)."""
    per_epoch = _per_epoch(_read_metrics_csv(metrics))
    losses = [c for c in per_epoch.columns if "loss" in c.lower()]
    scores = [
        c
        for c in per_epoch.columns
        if c not in losses and not c.lower().startswith(("lr", "learning"))
    ]
    if not losses and not scores:
        raise FigureInputError("training metrics contain no loss or metric columns")

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    for ax, names, ylabel in ((loss_ax, losses, "loss"), (score_ax, scores, "metric")):
        for name in names:
            series = per_epoch[name].dropna()
            ax.plot(series.index, series.to_numpy(), "o-", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if names:
            ax.legend(fontsize=8)
        else:
            ax.text(
                0.5, 0.5, f"no {ylabel} logged", ha="center", va="center", transform=ax.transAxes
            )
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
