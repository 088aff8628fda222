"""Figures, maps and the manifest of an experiment run, drawn from the run's record.

:class:`ExperimentFigures` gets a :class:`~sarcrop.experiments.record.RunRecord` (paths of
stores, test-split probabilities, training logs) and reads files only: drawing never simulates,
prepares or trains anything, so :func:`redraw` works on any finished run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sarcrop import __version__
from sarcrop.evaluation.paper import CITATION_SHORT
from sarcrop.evaluation.tables import REAL, SIMULATED, method_label, scenario_label
from sarcrop.experiments.record import MANIFEST, RunRecord, ScenarioRecord, load_recorded
from sarcrop.utils.atomic import write_text_atomic

if TYPE_CHECKING:
    from sarcrop.data.store import DatasetStore

SIGNATURE_PIXELS = 5000
SIGNATURE_METHODS = ("fte", "ft", "ftd", "ri", "rf")
MAX_DISPLAY_PIXELS = 2048


@dataclass(frozen=True)
class _TestSplit:
    """A scenario's test patches as drawn: VH series, labels, each method's probabilities and
    the threshold its metrics were computed with."""

    store: DatasetStore
    indices: list[int]
    images: np.ndarray
    targets: np.ndarray
    valid: np.ndarray
    probabilities: dict[str, np.ndarray]
    thresholds: dict[str, float]

    def called(self, method: str) -> np.ndarray:
        """Where ``method`` calls the crop, at its own threshold, as its scores count it."""
        return np.nan_to_num(self.probabilities[method]) >= self.thresholds[method]

    def mosaic(self, patches: np.ndarray, fill: float) -> np.ndarray:
        """``patches`` (one per index) put back in place on the store's area grid."""
        grid, size = self.store.grid, self.store.patch_size
        canvas = np.full((*patches.shape[1:-2], grid.height, grid.width), fill, dtype=patches.dtype)
        for patch, index in zip(patches, self.indices):
            row, col = self.store.offsets[index]
            h = min(size, grid.height - row)
            w = min(size, grid.width - col)
            canvas[..., row : row + h, col : col + w] = patch[..., :h, :w]
        return canvas


class ExperimentFigures:
    """Draws the per-scenario figures and writes the georeferenced maps."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.out = record.root
        self.seed = record.seeds[0]
        (self.out / "figures").mkdir(parents=True, exist_ok=True)

    def write(self, results: pd.DataFrame) -> dict[str, Any]:
        """Draw every figure and write the maps; return the report's manifest."""
        record = self.record
        scenarios = [self._scenario(s) for s in record.scenarios]
        areas = [row for s in scenarios for row in s.pop("area_estimates", [])]
        steps = int(results["timestep"].max()) if len(results) else None
        return {
            "name": record.name,
            "created": record.created,
            "sarcrop_version": record.sarcrop_version,
            "environment": record.environment,
            "config_file": record.config_file,
            "config": record.config,
            "seeds": list(record.seeds),
            "time_steps": steps,
            "scenarios": scenarios,
            "methods": list(record.methods),
            "early_season": self._early_season(results),
            "fractions": list(record.fractions),
            "learning_curves": self._learning_curves(),
            "training_curves": self._training_curves(),
            "class_curves_figure": self._class_curves(),
            "notes": self._notes(),
            "area_estimates": areas,
            "artefacts": record.artefacts(),
        }

    # ------------------------------------------------------------------ per scenario

    def _store(self, region: str) -> Path:
        return self.record.path(self.record.regions[region].store)

    def _scenario(self, scenario: ScenarioRecord) -> dict[str, Any]:
        from sarcrop.data.dataset import PatchDataset
        from sarcrop.data.store import DatasetStore
        from sarcrop.reports.figures import PanelRow, scenario_figure

        store = DatasetStore(self._store(scenario.test_region))
        dataset = PatchDataset(store, "test", (scenario.crop,), scenario.bands)
        items = [dataset[i] for i in range(len(dataset))]  # one read per patch
        targets = np.stack([item["target"].numpy() for item in items])
        valid = np.stack([item["valid"].numpy() for item in items])
        vh = store.bands.index("VH") if "VH" in store.bands else 0
        images = np.stack([store.read_image(i)[:, vh] for i in dataset.indices])
        probabilities = {
            unit.method: load_recorded(self.record.path(unit.probabilities)).astype(np.float32)
            for method in self.record.methods
            if (unit := self.record.unit(scenario.id, method, self.seed)) is not None
        }
        recorded = self.record.thresholds
        thresholds = {method: recorded[method] for method in probabilities}
        test = _TestSplit(store, dataset.indices, images, targets, valid, probabilities, thresholds)
        maps = self._write_maps(scenario, test)
        called = {method_label(method): test.called(method) for method in probabilities}
        area = self._mosaic_row(test, called)
        rng = np.random.default_rng(self.seed)
        count = min(self.record.figure_patches, len(dataset))
        chosen = sorted(rng.choice(len(dataset), size=count, replace=False).tolist())
        rows = [
            PanelRow(images[i], targets[i], {m: c[i] for m, c in called.items()}, valid[i])
            for i in chosen
        ]
        figure = Path("figures") / f"{scenario.id}.png"
        title = (
            f"fine-tune {scenario.finetune_region}, test {scenario.test_region}, "
            f"{scenario.crop}, {'|'.join(scenario.bands)}: whole test split (top) and "
            f"{count} test patches"
        )
        scenario_figure(area, rows, title, path=self.out / figure)
        signature = self._signature(scenario, test)
        extras = self._uncertainty_and_area(scenario, test)
        return {
            "id": scenario.id,
            "finetune_region": scenario.finetune_region,
            "test_region": scenario.test_region,
            "crop": scenario.crop,
            "bands": list(scenario.bands),
            "data": scenario.data,
            "figure": str(figure),
            "signature_figure": signature,
            "maps": maps,
            **extras,
        }

    def _uncertainty_and_area(self, scenario: ScenarioRecord, test: _TestSplit) -> dict[str, Any]:
        """Each method's uncertainty beside its errors and its sample-based area estimate
        against the test split's labels (:mod:`sarcrop.experiments.area`)."""
        from sarcrop.experiments import area as extras

        truth = test.mosaic(extras.truth_patches(test.targets, test.valid), extras.NODATA)
        maps = {m: test.mosaic(p, np.nan) for m, p in test.probabilities.items()}
        full = extras.ScenarioMaps(test.store.grid, truth, maps, test.thresholds)
        summary = extras.uncertainty_summary(full)
        figure = Path("figures") / f"{scenario.id}-uncertainty.png"
        title = f"{scenario.id}: errors and uncertainty over the whole test split"
        extras.uncertainty_figure(full, summary, title, self.out / figure)
        data = self.record.regions[scenario.test_region].data
        estimates = [
            {**estimate, "crop": scenario.crop}  # the map's class 1
            for estimate in extras.area_estimates(
                self.out, scenario.id, full, seed=self.seed, data=data
            )
        ]
        return {
            "uncertainty_figure": str(figure),
            "uncertainty": summary,
            "area_estimates": estimates,
        }

    def _mosaic_row(self, test: _TestSplit, called: dict[str, np.ndarray]) -> Any:
        from sarcrop.reports.figures import PanelRow

        grid = test.store.grid
        step = max(1, int(np.ceil(max(grid.height, grid.width) / MAX_DISPLAY_PIXELS)))
        cut = (..., slice(None, None, step), slice(None, None, step))
        image = test.mosaic(test.images, np.nan)[cut]
        label = test.mosaic(test.targets, 0.0)[cut]
        mask = test.mosaic(test.valid, False)[cut]
        predictions = {m: test.mosaic(c, False)[cut] for m, c in called.items()}
        return PanelRow(image, label, predictions, mask)

    def _write_maps(self, scenario: ScenarioRecord, test: _TestSplit) -> dict[str, str]:
        import rasterio

        from sarcrop.utils.atomic import atomic_path

        folder = Path("maps") / scenario.id
        maps = {}
        grid = test.store.grid
        for method, probability in test.probabilities.items():
            mosaic = test.mosaic(probability, np.nan).astype(np.float32)
            path = folder / f"{method}.tif"
            with atomic_path(self.out / path) as tmp:
                profile = {
                    "driver": "GTiff",
                    "width": grid.width,
                    "height": grid.height,
                    "count": 1,
                    "dtype": "float32",
                    "crs": grid.crs,
                    "transform": grid.transform,
                    "nodata": float("nan"),
                    "compress": "deflate",
                    "tiled": True,
                    "blockxsize": 256,
                    "blockysize": 256,
                }
                with rasterio.open(tmp, "w", **profile) as dst:
                    dst.write(mosaic, 1)
                    dst.set_band_description(1, f"probability of {scenario.crop}")
                    dst.update_tags(
                        METHOD=method,
                        SCENARIO=scenario.id,
                        CONTENT="test-split patches only; nodata elsewhere",
                        SARCROP_VERSION=__version__,
                    )
            maps[method] = str(path)
        return maps

    def _signature(self, scenario: ScenarioRecord, test: _TestSplit) -> str | None:
        """The paper's Figure 1: VH of TP and FN in the test region vs the training positives."""
        from sarcrop.data.dataset import PatchDataset
        from sarcrop.data.store import DatasetStore
        from sarcrop.reports.figures import signature_plot

        method = next((m for m in SIGNATURE_METHODS if m in test.probabilities), None)
        if method is None:
            return None
        predicted = test.called(method)
        positive = (test.targets > 0.5) & test.valid
        series = np.moveaxis(test.images, 1, -1)  # (n, H, W, T)
        rng = np.random.default_rng(self.seed)
        tp = _sample(series[positive & predicted], rng)
        fn = _sample(series[positive & ~predicted], rng)
        ft_store = DatasetStore(self._store(scenario.finetune_region))
        reference_set = PatchDataset(ft_store, "train", (scenario.crop,), scenario.bands)
        vh = ft_store.bands.index("VH") if "VH" in ft_store.bands else 0
        reference = []
        for i, index in enumerate(reference_set.indices):
            target = reference_set[i]["target"].numpy() > 0.5
            reference.append(np.moveaxis(ft_store.read_image(index)[:, vh], 0, -1)[target])
        empty = np.empty((0, test.store.steps))
        ref = _sample(np.concatenate(reference) if reference else empty, rng)
        if len(tp) + len(fn) == 0 or len(ref) == 0:
            return None
        path = Path("figures") / f"{scenario.id}-signature.png"
        signature_plot(
            test.store.metadata.dates,
            tp,
            fn,
            ref,
            band="VH",
            labels={
                "tp": f"TP in {scenario.test_region} ({method_label(method)})",
                "fn": f"FN in {scenario.test_region} ({method_label(method)})",
                "reference": f"{scenario.crop} in {scenario.finetune_region} (training)",
            },
            title=(
                f"VH signature: fine-tuned in {scenario.finetune_region}, "
                f"tested in {scenario.test_region}"
            ),
            path=self.out / path,
        )
        return str(path)

    # ------------------------------------------------------------------ run-level figures

    def _early_season(self, results: pd.DataFrame) -> dict[str, Any] | None:
        from sarcrop.reports.figures import early_season_plot

        spec = self.record.early_season
        if spec is None:
            return None
        scenario = spec["scenario"]
        curves, title = early_season_curves(results, scenario)
        path = Path("figures") / "early-season.png"
        early_season_plot(curves, "iou", title=title, path=self.out / path)
        return {"figure": str(path), "scenario": scenario, "method": spec["method"]}

    def _training_curves(self) -> list[dict[str, str]]:
        """Each pre-training's loss and metrics, then one figure per scenario with every
        method's training loss and validation IoU (seed ``self.seed``, the most labels)."""
        from sarcrop.reports.figures import method_training_curves, training_curves

        for stale in (self.out / "figures").glob("training-*.png"):  # all drawn again below
            stale.unlink()
        curves = []
        pretrains = self.record.pretrains or (
            {"default": self.record.pretrain} if self.record.pretrain else {}
        )
        for pretrain in pretrains.values():
            log = self._log(pretrain.training_log)
            if log is not None:
                name = f"pre-training on {pretrain.region}"
                path = Path("figures") / f"training-{_slug(name)}.png"
                training_curves(log, title=name, path=self.out / path)
                curves.append({"name": name, "figure": str(path)})
        for scenario in self.record.scenarios:  # none: crop types only
            logs = {}
            for method in self.record.methods:
                unit = self.record.unit(scenario.id, method, self.seed)
                log = None if unit is None else self._log(unit.training_log)
                if log is not None:
                    logs[method_label(method)] = log
            if logs:
                name = f"fine-tuning on {scenario.id}, seed {self.seed}"
                path = Path("figures") / f"training-{scenario.id}.png"
                method_training_curves(logs, title=name, path=self.out / path)
                curves.append({"name": name, "figure": str(path)})
        return curves

    def _log(self, stored: str | None) -> Path | None:
        """A unit's training log, where the run still has it."""
        if stored is None:
            return None
        path = self.record.path(stored)
        return path if path.is_file() else None

    def _learning_curves(self) -> str | None:
        """IoU against the label fraction per method and scenario, with bootstrap bands."""
        from sarcrop.experiments.intervals import read_intervals
        from sarcrop.reports.figures import learning_curves

        intervals = read_intervals(self.out)
        if intervals is None or intervals["label_fraction"].nunique() < 2:
            return None
        titles = {
            s.id: scenario_label(s.id, s.finetune_region, s.test_region, "|".join(s.bands))
            + f", {s.crop} ({s.data or 'unknown'} data)"
            for s in self.record.scenarios
        }
        path = Path("figures") / "learning-curves.png"
        learning_curves(intervals, titles=titles, path=self.out / path)
        return str(path)

    def _class_curves(self) -> str | None:
        from sarcrop.data.simulate import plot_signatures

        for name in dict.fromkeys(s.finetune_region for s in self.record.scenarios):
            region = self.record.regions[name]
            if region.preset is not None:
                path = Path("figures") / f"class-curves-{name}.png"
                plot_signatures(region.preset, self.out / path, year=region.year)
                return str(path)
        return None

    def _notes(self) -> list[str]:
        notes = []
        simulated = [n for n, r in self.record.regions.items() if r.data == SIMULATED]
        if simulated:
            notes.append(
                f"Regions {', '.join(simulated)} come from the sarcrop Sentinel-1 "
                "simulator, not from real acquisitions: our numbers for them are measured "
                f"on simulated data, the paper's ({CITATION_SHORT}) on its real data, so "
                "they are shown for reference only."
            )
        if self.record.scenarios:
            notes.append(
                "Metrics are of the positive class, accumulated over every labelled "
                "pixel of the test region's test split (one confusion matrix)."
            )
        if self.record.class_scenarios:
            notes.append(
                "Crop-type metrics (IoU per class, mIoU, overall accuracy, kappa) come from one "
                "confusion matrix of the classes over every labelled pixel of the test split; "
                "a class with fewer than 2 test parcels has no interval."
            )
        notes.append("Maps cover the test-split patches only; other pixels are nodata.")
        real = [n for n, r in self.record.regions.items() if r.data == REAL]
        if real:
            notes.append(
                f"Regions {', '.join(real)} are real Sentinel-1 acquisitions with real labels."
            )
        if len(self.record.fractions) > 1:
            notes.append(
                "Label fractions: each method is fine-tuned (or fitted) with that share of "
                "the fine-tuning region's labelled train parcels (whole parcels, chosen by "
                f"seed); figures and maps show the runs with the most labels "
                f"({100 * max(self.record.fractions):g} %). Intervals are 95 % "
                "parcel-bootstrap intervals of the mean over seeds (intervals.csv)."
            )
        if len(self.record.seeds) > 1:
            notes.append(
                f"Cells show mean ± sample std over {len(self.record.seeds)} seeds "
                "(fine-tuning and forest seeds; one shared pre-training)."
            )
        return notes


def _sample(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pixels = pixels[np.isfinite(pixels).all(axis=-1)] if pixels.size else pixels
    if len(pixels) > SIGNATURE_PIXELS:
        pixels = pixels[rng.choice(len(pixels), SIGNATURE_PIXELS, replace=False)]
    return pixels


def redraw(run_dir: str | Path) -> Path:
    """Redraw the figures and maps of a finished run directory from its record alone.

    Reads ``experiment.json`` and the results table, keeps the recorded timings and rewrites
    ``experiment.json``; returns its path.
    """
    from sarcrop.reports.html import ReportError, read_results

    record = RunRecord.read(run_dir)
    previous = json.loads((record.root / MANIFEST).read_text(encoding="utf-8"))
    path = record.path(record.results)
    if not path.is_file():
        raise ReportError("no results table to redraw from", path)
    results = read_results(record.root)  # checked; None: no row (a run of crop types only)
    manifest = ExperimentFigures(record).write(pd.read_csv(path) if results is None else results)
    manifest["timings"] = previous.get("timings") or {}
    if "timestep_table" in previous:  # the runner's setting, not the figures'
        manifest["timestep_table"] = previous["timestep_table"]
    if "crop_types" in previous:  # sarcrop.experiments.classes: tables kept, maps redrawn
        from sarcrop.experiments.classes import redraw_class_figures

        manifest["crop_types"] = redraw_class_figures(record.root, previous["crop_types"])
    text = json.dumps(manifest, indent=2, default=str)
    return write_text_atomic(record.root / MANIFEST, text)


def early_season_curves(results: pd.DataFrame, scenario: str) -> tuple[pd.DataFrame, str]:
    """The IoU rows of the early-season figure of ``scenario`` and its title: the reruns in
    each batch order, and the forest given the same share of the labels (not every share the
    run has at once)."""
    rows = results[(results["scenario"] == scenario) & (results["metric"] == "iou")]
    reruns = rows[rows["run"] == "early-season"]
    forest = rows[(rows["run"] == "main") & (rows["method"] == "rf")]
    title = f"Early-season IoU, {scenario}"
    if "label_fraction" in rows:
        shares = reruns["label_fraction"].unique()
        forest = forest[forest["label_fraction"].isin(shares)]
        if len(shares) == 1 and shares[0] < 1:
            title += f", {shares[0] * 100:g} % of the labels"
    curves = pd.concat([reruns, forest])
    curves = curves.assign(
        method=[
            method_label(m) if o == "n/a" else f"{method_label(m)} ({o})"
            for m, o in zip(curves["method"], curves["ordering"])
        ]
    )
    return curves, title


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
