"""Crop-type scenarios of an experiment: several classes mapped at once.

A scenario with ``classes`` runs the same methods as a binary one (RF, RI and the transfer
strategies; a pre-trained model of another class set gets a new head), but is scored by one
confusion matrix over the test split per method and seed. Its numbers go to their own long
table, ``class_results.csv`` (per-class IoU, precision, recall, F1 and the overall mIoU,
overall accuracy and kappa), summarised as mean ± std over seeds in ``tables.md`` and the
report, with the summed confusion matrix of the best method (highest mean mIoU) as a figure.
Per class IoU and mIoU also get parcel-bootstrap 95 % intervals of their mean over seeds
(``class_intervals.csv``, :func:`sarcrop.experiments.intervals.class_intervals`), shown as
``mean ± std [low, high]``. The first ``figure_patches`` test patches are drawn as class maps
(label and each method's prediction at seed 0 with every label) in the colours of predicted
crop-type maps, and the early-season scenario gets its mIoU against the observed composites t.
The binary tables, intervals and figures never see these scenarios (:func:`binary_view`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sarcrop.errors import InputDataError
from sarcrop.evaluation.metrics import METRICS, OVERALL_METRICS
from sarcrop.evaluation.tables import method_label, scenario_label
from sarcrop.experiments.config import ExperimentConfig, ScenarioSpec
from sarcrop.experiments.record import load_recorded
from sarcrop.utils.atomic import write_text_atomic

if TYPE_CHECKING:
    from sarcrop.evaluation.baseline import BaselineResult

CLASS_RESULTS = "class_results.csv"
CLASS_COLUMNS = (
    "scenario",
    "finetune_region",
    "test_region",
    "bands",
    "method",
    "seed",
    "label_fraction",
    "timestep",
    "class",
    "metric",
    "value",
)
OVERALL = ""
"""The ``class`` of a whole-map metric (mIoU, overall accuracy, kappa)."""
OVERALL_NAMES = {"miou": "mIoU", "accuracy": "OA", "kappa": "kappa"}


def binary_view(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` without its crop-type scenarios (the early-season index follows its
    scenario; an early-season curve of crop types is drawn by this module, not there), for the
    binary tables, intervals and figures."""
    keep = [i for i, s in enumerate(config.scenarios) if config.classes_of(s) is None]
    if len(keep) == len(config.scenarios):
        return config
    early = config.early_season
    if early is not None:
        moved = keep.index(early.scenario) if early.scenario in keep else None
        early = None if moved is None else early.model_copy(update={"scenario": moved})
    scenarios = tuple(config.scenarios[i] for i in keep)
    return config.model_copy(update={"scenarios": scenarios, "early_season": early})


def class_rows(
    scenario: ScenarioSpec,
    method: str,
    seed: int,
    fraction: float,
    early: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Long rows of one run's per-``t`` confusion dicts (``MulticlassConfusion.as_dict``)."""
    base = {
        "scenario": scenario.id,
        "finetune_region": scenario.finetune,
        "test_region": scenario.test,
        "bands": scenario.band_label,
        "method": method,
        "seed": seed,
        "label_fraction": fraction,
    }
    rows = []
    for t, scores in early.items():
        values = [(OVERALL, m, scores[m]) for m in OVERALL_METRICS]
        values += [
            (name, m, per_class[m])
            for name, per_class in scores["per_class"].items()
            for m in METRICS
        ]
        rows += [
            {**base, "timestep": int(t), "class": c, "metric": m, "value": _number(v)}
            for c, m, v in values
        ]
    return rows


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


# ------------------------------------------------------------------ predictions


def forest_outputs(result: BaselineResult) -> tuple[dict[str, dict[str, Any]], np.ndarray]:
    """Per-``t`` confusion dicts and the class probabilities ``(N, K, H, W)`` of a crop-type
    forest on the test split."""
    early = {str(t): c.as_dict() for t, c in result.class_confusions.items()}
    return early, np.nan_to_num(result.probabilities())


def network_probabilities(
    checkpoint: Path, test_store: Path, crop: str | None = None
) -> np.ndarray:
    """Softmax class probabilities ``(N, K, H, W)`` of a crop-type checkpoint on the test
    split (sigmoid ``(N, H, W)`` for a binary one, or for a crop-type one read as ``crop``)."""
    return _network_maps(checkpoint, test_store, crop, every_timestep=False)[0]


def network_timestep_probabilities(
    checkpoint: Path, test_store: Path, crop: str | None = None
) -> np.ndarray:
    """The maps of :func:`network_probabilities` from the first ``t`` composites (the later
    ones zero-padded, as ``evaluate`` scores them), ``t = 1..T``: ``(T, N, ...)``."""
    return np.stack(_network_maps(checkpoint, test_store, crop, every_timestep=True))


def _network_maps(
    checkpoint: Path, test_store: Path, crop: str | None, *, every_timestep: bool
) -> list[np.ndarray]:
    """The test split's probability maps at the full season, or at every ``t``, as
    ``evaluate`` computes them (:func:`~sarcrop.evaluation.networks.split_probabilities`)."""
    from sarcrop.data.store import DatasetStore
    from sarcrop.evaluation.networks import model_to_score, scored_patches, split_probabilities

    store = DatasetStore(test_store)  # opened once, for the checks and the patches
    model, meta = model_to_score(checkpoint, store, crop)
    patches = scored_patches(store, "test", meta)
    if len(patches) == 0:
        raise InputDataError("no test patches to score", test_store)
    steps = range(1, meta.time_steps + 1) if every_timestep else [meta.time_steps]
    maps: dict[int, list[np.ndarray]] = {t: [] for t in steps}
    for _, probabilities in split_probabilities(model, patches, steps):
        for t, prob in probabilities.items():
            maps[t].append(prob.cpu().numpy())
    return [np.concatenate(maps[t]) for t in steps]


# ------------------------------------------------------------------ tables and figure


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each scenario × fraction × method × class × metric, at the
    full season (the largest time step)."""
    if results.empty:
        return pd.DataFrame(columns=[*CLASS_COLUMNS[:2], "method", "class", "metric"])
    last = results.groupby("scenario")["timestep"].transform("max")
    full = results[results["timestep"] == last]
    keys = ["scenario", "label_fraction", "method", "class", "metric"]
    grouped = full.groupby(keys, sort=False)["value"]
    table = grouped.agg(["mean", "std", "count"]).reset_index()
    return table


def _cell(mean: float, std: float, interval: tuple[float, float] | None = None) -> str:
    if np.isnan(mean):
        return "–"
    text = f"{mean:.3f}" if np.isnan(std) else f"{mean:.3f} ± {std:.3f}"
    if interval is not None and np.isfinite(interval).all():
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text


def _interval_lookup(
    intervals: pd.DataFrame | None, scenario: str, fraction: float
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(method, class, metric) → (low, high) of one scenario and fraction."""
    if intervals is None or intervals.empty:
        return {}
    part = intervals[
        (intervals["scenario"] == scenario) & np.isclose(intervals["label_fraction"], fraction)
    ]
    keys = zip(part["method"].astype(str), part["class"].astype(str), part["metric"].astype(str))
    return dict(zip(keys, zip(part["low"].astype(float), part["high"].astype(float))))


def class_table(
    results: pd.DataFrame,
    scenario: str,
    fraction: float,
    intervals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows: methods; columns: each class's IoU, then mIoU, OA and kappa (mean ± std, with
    the parcel-bootstrap interval ``[low, high]`` where ``intervals`` has one), and each
    method's mIoU minus RI's and RF's, paired on the same parcel draws, where it has those."""
    bounds = _interval_lookup(intervals, scenario, fraction)
    stats = summary(results)
    stats = stats[(stats["scenario"] == scenario) & (stats["label_fraction"] == fraction)]
    columns: dict[str, dict[str, str]] = {}
    classes = [c for c in dict.fromkeys(stats["class"]) if c != OVERALL]
    wanted = [(c, "iou", f"IoU {c}") for c in classes]
    wanted += [(OVERALL, m, name) for m, name in OVERALL_NAMES.items()]
    for c, metric, name in wanted:
        part = stats[(stats["class"] == c) & (stats["metric"] == metric)]
        columns[name] = {
            method_label(r.method): _cell(
                float(r.mean), float(r.std), bounds.get((str(r.method), c, metric))
            )
            for r in part.itertuples()
        }
    columns.update(_paired_columns(intervals, scenario, fraction))
    table = pd.DataFrame(columns).fillna("–")
    table.index.name = "method"
    return table


def _paired_columns(
    intervals: pd.DataFrame | None, scenario: str, fraction: float
) -> dict[str, dict[str, str]]:
    """``mIoU − RI`` and ``mIoU − RF``: each method's difference to the baseline with its
    paired interval (``class_intervals.csv``'s mIoU rows)."""
    from sarcrop.experiments.intervals import BASELINES

    if intervals is None or intervals.empty:
        return {}
    part = intervals[
        (intervals["scenario"] == scenario)
        & np.isclose(intervals["label_fraction"], fraction)
        & (intervals["class"] == "")
    ]
    columns = {}
    for baseline in BASELINES:
        diff = f"minus_{baseline}"
        if diff not in part or part[diff].isna().all():
            continue
        columns[f"mIoU − {baseline.upper()}"] = {
            method_label(r["method"]): f"{r[diff]:+.3f} [{r[diff + '_low']:+.3f}, "
            f"{r[diff + '_high']:+.3f}]"
            for _, r in part.iterrows()
            if np.isfinite(r[diff])
        }
    return columns


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of ``table`` with its index as the first column."""
    header = [str(table.index.name or ""), *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([str(name), *map(str, row)]) + " |")
    return "\n".join(lines)


def best_method(results: pd.DataFrame, scenario: str, fraction: float) -> str | None:
    """The method with the highest mean mIoU over seeds (full season)."""
    stats = summary(results)
    part = stats[
        (stats["scenario"] == scenario)
        & (stats["label_fraction"] == fraction)
        & (stats["class"] == OVERALL)
        & (stats["metric"] == "miou")
    ].dropna(subset=["mean"])
    return None if part.empty else str(part.loc[part["mean"].idxmax(), "method"])


def summed_confusion(
    records: Mapping[tuple[str, str, int, float], Mapping[str, Any]],
    scenario: str,
    method: str,
    fraction: float,
) -> tuple[list[str], np.ndarray]:
    """The full-season confusion matrix of ``method`` summed over its seeds."""
    matrices, classes = [], []
    for (sid, m, _, f), record in records.items():
        if (sid, m, f) != (scenario, method, fraction):
            continue
        early = record["early_season"]
        last = early[max(early, key=int)]
        classes = list(last["classes"])
        matrices.append(np.asarray(last["confusion"], dtype=np.int64))
    return classes, np.sum(matrices, axis=0)


def confusion_figure(classes: Sequence[str], matrix: np.ndarray, title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (share of each true class), pixel counts in the cells."""
    from matplotlib.figure import Figure

    from sarcrop.reports.figures import save_figure

    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = 1.2 + 0.75 * len(classes)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    for (i, j), value in np.ndenumerate(share):
        ax.text(
            j,
            i,
            f"{value:.2f}\n{matrix[i, j]:,}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if value > 0.6 else "black",
        )
    ticks = range(len(classes))
    ax.set_xticks(ticks, list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the reference class")
    return save_figure(fig, path)


def write_class_outputs(
    out: Path,
    results: pd.DataFrame,
    records: Mapping[tuple[str, str, int, float], Mapping[str, Any]],
    titles: Mapping[str, str] | None = None,
    intervals: pd.DataFrame | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Write ``class_results.csv`` and one confusion figure per crop-type scenario.

    Returns the manifest entries (per scenario: its per-class table at every fraction, the
    best method and its figure) and the Markdown section of ``tables.md``; cells show the
    parcel-bootstrap interval of their mean where ``intervals`` has one.
    """
    write_text_atomic(out / CLASS_RESULTS, results.to_csv(index=False))
    if results.empty:
        return [], ""
    entries, parts = [], ["# Crop types: per-class IoU and overall metrics on the test split\n"]
    parts.append(
        "Mean ± std over seeds at the full season; IoU per class, mIoU (mean over classes), "
        "overall accuracy (OA) and Cohen's kappa from one confusion matrix over the split.\n"
    )
    if intervals is not None and not intervals.empty:
        parts.append(
            "[low, high]: 95 % parcel-bootstrap interval of the mean over seeds (IoU and mIoU; "
            "`class_intervals.csv`; none for a class of fewer than 2 test parcels). mIoU − RI "
            "and mIoU − RF: each method's mean mIoU minus the baseline's, in brackets its 95 % "
            "interval from the same parcel draws scored for both (paired; the spread over "
            "seeds is not in it).\n"
        )
    for scenario in dict.fromkeys(results["scenario"]):
        rows = results[results["scenario"] == scenario].iloc[0]
        title = (titles or {}).get(scenario) or scenario_label(
            scenario, rows.finetune_region, rows.test_region, rows.bands
        )
        tables = []
        for fraction in sorted(set(results["label_fraction"]), reverse=True):
            table = class_table(results, scenario, fraction, intervals)
            if table.empty:
                continue
            label = f"{100 * fraction:g} % of labels"
            tables.append({"fraction": fraction, "table": table.reset_index().to_dict("list")})
            parts.append(f"## {title}, {label}\n\n{markdown_table(table)}\n")
        fraction = max(results["label_fraction"])
        best = best_method(results, scenario, fraction)
        figure = None
        if best is not None:
            classes, matrix = summed_confusion(records, scenario, best, fraction)
            seeds = int(results[results["method"] == best]["seed"].nunique())
            caption = f"{title}: {method_label(best)}, summed over {seeds} seed(s)"
            path = out / "figures" / f"confusion-{scenario}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            confusion_figure(classes, matrix, caption, path)
            figure = str(path.relative_to(out))
            parts.append(f"Best method by mean mIoU: {method_label(best)} (`{figure}`).\n")
        entries.append(
            {"scenario": scenario, "title": title, "best": best, "figure": figure, "tables": tables}
        )
    return entries, "\n".join(parts)


# ------------------------------------------------------------------ maps and early season


def _stored(path: str | Path, root: Path) -> str:
    """``path`` relative to the run directory where inside it (a run directory can move)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def class_maps(root: Path, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Draw the class maps of a scenario's first test patches from its recorded ``spec``
    (test store, bands, classes, per-method probabilities of one seed); returns the figure
    and the legend (class → colour) for the manifest. Reads files only."""
    from sarcrop.data.dataset import PatchDataset
    from sarcrop.reports.figures import class_maps_figure, class_palette

    classes = list(spec["classes"])
    dataset = PatchDataset(
        root / spec["store"], "test", bands=tuple(spec["bands"]), classes=classes
    )
    count = min(int(spec["patches"]), len(dataset))
    if count == 0 or not spec["probabilities"]:
        return {}
    items = [dataset[i] for i in range(count)]
    predictions = {
        method_label(method): load_recorded(root / stored, mmap_mode="r")[:count]
        for method, stored in spec["probabilities"].items()
    }
    figure = Path("figures") / f"class-maps-{spec['scenario']}.png"
    class_maps_figure(
        [item["target"].numpy() for item in items],
        predictions,
        classes,
        valid=[item["valid"].numpy() for item in items],
        title=(
            f"{spec.get('title') or spec['scenario']}: {count} test patches, seed "
            f"{spec['seed']}, {100 * float(spec['label_fraction']):g} % of labels"
        ),
        path=root / figure,
    )
    legend = [{"class": c, "color": color} for c, color in class_palette(classes).items()]
    return {"maps_figure": str(figure), "legend": legend}


def early_season_figure(root: Path, results: pd.DataFrame, scenario: str, title: str) -> str:
    """mIoU against the number of observed composites t, one line per method (mean ± std over
    seeds, every label), of one crop-type scenario; returns the figure's path."""
    from sarcrop.reports.figures import early_season_plot

    rows = results[(results["scenario"] == scenario) & (results["metric"] == "miou")]
    rows = rows[rows["label_fraction"] == rows["label_fraction"].max()]
    curves = rows.assign(method=[method_label(m) for m in rows["method"]])
    figure = Path("figures") / f"early-season-{scenario}.png"
    early_season_plot(
        curves[["method", "seed", "timestep", "value"]],
        "miou",
        title=f"Early-season mIoU, {title}",
        path=root / figure,
    )
    return str(figure)


def read_class_results(run_dir: Path) -> pd.DataFrame | None:
    """``class_results.csv`` of a run (whole-map metrics with class ``""``), or None."""
    path = Path(run_dir) / CLASS_RESULTS
    if not path.is_file():
        return None
    results = pd.read_csv(path, keep_default_na=False, na_values=[""])
    results["class"] = results["class"].fillna(OVERALL)
    return results


def redraw_class_figures(root: Path, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``crop_types`` manifest entries of a finished run with their class maps and
    early-season curves drawn again from the recorded files (nothing is trained)."""
    results = read_class_results(root)
    out = []
    for entry in entries:
        entry = dict(entry)
        if entry.get("maps"):
            entry.update(class_maps(root, entry["maps"]))
        if entry.get("early_season_figure") and results is not None:
            title = str(entry.get("title") or entry["scenario"])
            entry["early_season_figure"] = early_season_figure(
                root, results, entry["scenario"], title
            )
        out.append(entry)
    return out


class CropTypeRuns:
    """The crop-type runs of an experiment as they finish: long rows and unit records."""

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.rows: list[dict[str, Any]] = []
        self.records: dict[tuple[str, str, int, float], Mapping[str, Any]] = {}
        self.titles: dict[str, str] = {}
        self.splits: dict[str, tuple[Path, tuple[str, ...]]] = {}

    def add(
        self,
        scenario: ScenarioSpec,
        method: str,
        seed: int,
        fraction: float,
        record: Mapping[str, Any],
        test_store: Path,
    ) -> None:
        self.records[(scenario.id, method, seed, fraction)] = record
        named = f", from {scenario.pretrain}" if scenario.pretrain else ""
        title = f"{scenario.finetune} → {scenario.test} {scenario.band_label}{named}"
        self.titles[scenario.id] = title
        self.splits[scenario.id] = (Path(test_store), tuple(scenario.bands))
        self.rows += class_rows(scenario, method, seed, fraction, record["early_season"])

    def write(self, out: Path) -> tuple[list[dict[str, Any]], str]:
        """``class_results.csv`` and ``class_intervals.csv`` (only where there are crop-type
        runs: an earlier run's are removed, as the summary and report would show them),
        figures, tables."""
        from sarcrop.experiments.intervals import CLASS_INTERVALS

        if not self.rows:
            for stale in (CLASS_RESULTS, CLASS_INTERVALS):
                (out / stale).unlink(missing_ok=True)
            return [], ""
        results = pd.DataFrame(self.rows, columns=list(CLASS_COLUMNS))
        intervals = self._intervals(out, results)
        entries, markdown = write_class_outputs(out, results, self.records, self.titles, intervals)
        for entry in entries:
            scenario = entry["scenario"]
            entry["maps"] = self._maps_spec(out, scenario)
            entry.update(class_maps(out, entry["maps"]))
            if scenario == self._early_scenario():
                entry["early_season_figure"] = early_season_figure(
                    out, results, scenario, self.titles[scenario]
                )
        return entries, markdown

    def _classes(self, scenario: str) -> list[str]:
        record = next(r for (s, *_), r in self.records.items() if s == scenario)
        early = record["early_season"]
        return list(early[max(early, key=int)]["classes"])

    def _intervals(self, out: Path, results: pd.DataFrame) -> pd.DataFrame:
        """Parcel-bootstrap intervals of every scenario, written to ``class_intervals.csv``."""
        from sarcrop.experiments.intervals import (
            CLASS_INTERVAL_COLUMNS,
            CLASS_INTERVALS,
            class_intervals,
            split_parcels,
        )

        frames = [pd.DataFrame(columns=list(CLASS_INTERVAL_COLUMNS))]
        for scenario, (store, bands) in self.splits.items():
            classes = self._classes(scenario)
            units = {
                (m, f, seed): Path(r["probabilities"])
                for (s, m, seed, f), r in self.records.items()
                if s == scenario
            }
            split = split_parcels(store, bands, classes)
            frames.append(class_intervals(scenario, split, classes, units, results))
        intervals = pd.concat([f for f in frames if not f.empty] or frames, ignore_index=True)
        write_text_atomic(out / CLASS_INTERVALS, intervals.to_csv(index=False))
        return intervals

    def _maps_spec(self, out: Path, scenario: str) -> dict[str, Any]:
        """What the class-map figure of ``scenario`` is drawn from: the first seed's runs with
        the most labels, as paths in the run directory (:func:`class_maps`)."""
        runs = [(seed, f) for (s, _, seed, f) in self.records if s == scenario]
        fraction = max(f for _, f in runs)
        seed = min(seed for seed, f in runs if f == fraction)
        store, bands = self.splits[scenario]
        return {
            "scenario": scenario,
            "title": self.titles[scenario],
            "store": _stored(store, out),
            "bands": list(bands),
            "classes": self._classes(scenario),
            "seed": seed,
            "label_fraction": fraction,
            "patches": self.config.figure_patches,
            "probabilities": {
                m: _stored(r["probabilities"], out)
                for (s, m, sd, f), r in self.records.items()
                if (s, sd, f) == (scenario, seed, fraction)
            },
        }

    def _early_scenario(self) -> str | None:
        """The crop-type scenario the config's ``early_season`` names, if any."""
        early = self.config.early_season
        if early is None:
            return None
        scenario = self.config.scenarios[early.scenario]
        return scenario.id if self.config.classes_of(scenario) is not None else None


def class_summary(run_dir: Path) -> list[str]:
    """Console lines of a run's crop-type tables (full labels), none without crop types."""
    from sarcrop.experiments.intervals import read_class_intervals

    results = read_class_results(run_dir)
    if results is None:
        return []
    intervals = read_class_intervals(run_dir)
    fraction = results["label_fraction"].max()
    lines = []
    for scenario in dict.fromkeys(results["scenario"]):
        lines += [f"{scenario} (mean ± std over seeds [95 % parcel-bootstrap CI], full season)", ""]
        lines += [markdown_table(class_table(results, scenario, fraction, intervals)), ""]
    lines.append(f"crop types: {Path(run_dir) / CLASS_RESULTS}")
    return lines
