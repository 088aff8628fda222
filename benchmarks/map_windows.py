"""Maps of real test locations as ``predict`` makes them, in its default windows and others.

    sarcrop experiment real --data ../shared/data --out runs/real
    python benchmarks/map_windows.py --run runs/real --out runs/map-windows

The real benchmark scores each network on its 16 x 16 px test patches, the size it was
fine-tuned on. A user maps with ``sarcrop predict``, which walks over the scenes in windows.
This maps each test location from its GeoTIFFs with ``predict_map`` (the code path of
``sarcrop predict``, with ``season_start`` set to the location's season) for every network
checkpoint of the run (``--methods``, default all, ``zero-shot`` included) at the given label
fractions, in each of ``--windows``: ``default`` (what ``predict`` chooses: the model's
training patch size, a quarter overlap) or ``W/O`` (window and overlap in pixels). It scores the
class band on the test patches' labelled pixels as the benchmark does. Writes ``windows.csv``
(one row per unit and window, with the windows run) and ``windows.md`` (mean IoU per scenario,
method, fraction and window over the seeds, with the patch scores beside them) into ``--out``
and prints the table. Where the run folder is absent it says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import rasterio

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sarcrop.data.reader import open_scenes
from sarcrop.data.store import DatasetStore
from sarcrop.evaluation.metrics import BinaryConfusion
from sarcrop.experiments.config import is_forest
from sarcrop.experiments.record import RunRecord
from sarcrop.options import SceneOptions, WindowOptions
from sarcrop.prediction import predict_map
from sarcrop.utils.atomic import write_text_atomic

CLASS_BAND = 2  # predict's class band of a binary map: 0 other, 1 positive, 255 nodata


DEFAULT = "default"  # predict's own windows: the model's training patch size, a quarter overlap


def parse_windows(texts: Sequence[str]) -> dict[str, WindowOptions]:
    """``["default", "16/2", "256/32"]`` → window options by name (``default``: left to
    ``predict``)."""
    options = {}
    for text in texts:
        if text == DEFAULT:
            options[text] = WindowOptions()
            continue
        window, _, overlap = text.partition("/")
        options[text] = WindowOptions(window=int(window), overlap=int(overlap or 0))
    return options


def test_confusion(map_path: Path, store: DatasetStore, crop: str) -> BinaryConfusion:
    """The map's class band against ``crop`` on the store's labelled test pixels."""
    with rasterio.open(map_path) as src:
        classes = src.read(CLASS_BAND)
    positive = store.classes.index(crop)
    size = store.patch_size
    confusion = BinaryConfusion()
    for index in store.indices("test"):
        row, col = store.offsets[index]
        labels = store.read_labels(index)
        predicted = classes[row : row + size, col : col + size]
        confusion.update(predicted == 1, labels == positive, labels >= 0)
    return confusion


def scene_stack(spec: dict[str, Any]) -> Any:
    """The scenes of a region spec of the run's config, opened once for every map of it."""
    scenes = SceneOptions(**(spec.get("scenes") or {}))
    return open_scenes(
        spec["images"],
        bands=list(spec.get("bands") or ["VH", "VV"]),
        orbit=scenes.orbit,
        crs=scenes.crs,
        resolution=scenes.resolution,
    )


def mapped(
    checkpoint: Path, stack: Any, season_start: dt.date, windows: WindowOptions, work: Path
) -> tuple[Path, str]:
    """The map of ``stack`` by ``checkpoint`` in ``windows`` and the windows it ran."""
    out = work / "map.tif"
    predict_map(checkpoint, stack, out, season_start=season_start, windows=windows, progress=False)
    with rasterio.open(out) as src:
        tags = src.tags()
    return out, f"{tags['WINDOW']}/{tags['OVERLAP']}"


def measure(
    record: RunRecord,
    fractions: Sequence[float],
    windows: dict[str, WindowOptions],
    methods: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per network unit (of ``methods``, at ``fractions``) and window. A checkpoint
    shared by several units (the pre-trained model of ``zero-shot``, RI in two scenarios
    with one target) is mapped once per test region and window."""
    rows: list[dict[str, Any]] = []
    regions = record.config["regions"]
    stacks: dict[str, Any] = {}
    scored: dict[tuple[str, str, str, str], tuple[float, str]] = {}
    with tempfile.TemporaryDirectory() as work:
        for unit in record.units:
            if is_forest(unit.method) or unit.checkpoint is None:
                continue
            if unit.label_fraction not in fractions or (methods and unit.method not in methods):
                continue
            scenario = next(s for s in record.scenarios if s.id == unit.scenario)
            spec = regions[scenario.test_region]
            if spec.get("images") is None:  # a simulated or merged region: no scenes to map
                continue
            if scenario.test_region not in stacks:
                stacks[scenario.test_region] = scene_stack(spec)
            store = DatasetStore(record.path(record.regions[scenario.test_region].store))
            start = dt.date.fromisoformat(str(spec["season_start"]))
            for name, option in windows.items():
                key = (unit.checkpoint, scenario.test_region, scenario.crop, name)
                if key not in scored:
                    checkpoint = record.path(unit.checkpoint)
                    out, ran = mapped(
                        checkpoint, stacks[scenario.test_region], start, option, Path(work)
                    )
                    scored[key] = (test_confusion(out, store, scenario.crop).iou, ran)
                iou, ran = scored[key]
                rows.append(
                    {
                        "scenario": scenario.id,
                        "method": unit.method,
                        "label_fraction": unit.label_fraction,
                        "seed": unit.seed,
                        "window": name,
                        "ran": ran,
                        "iou": iou,
                    }
                )
    return pd.DataFrame(rows)


def patch_scores(record: RunRecord) -> pd.DataFrame:
    """The benchmark's own scores (on the test patches one at a time), from ``results.csv``."""
    results = pd.read_csv(record.path(record.results))
    full = results[
        (results["metric"] == "iou")
        & (results["run"] == "main")
        & (results["timestep"] == results["timestep"].max())
    ]
    return full.rename(columns={"value": "patches"})[
        ["scenario", "method", "label_fraction", "seed", "patches"]
    ]


def table(rows: pd.DataFrame, patches: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    wide = rows.pivot_table(
        index=["scenario", "method", "label_fraction", "seed"], columns="window", values="iou"
    ).reset_index()
    merged = wide.merge(patches, on=["scenario", "method", "label_fraction", "seed"], how="left")
    columns = ["patches", *names]
    return merged.groupby(["scenario", "method", "label_fraction"])[columns].mean().round(3)


def markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table, one row per scenario, method and fraction."""
    head = [*summary.index.names, *map(str, summary.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for index, values in summary.iterrows():
        cells = [*map(str, index), *(f"{v:.3f}" for v in values)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a `sarcrop experiment` folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--windows", nargs="+", default=[DEFAULT, "256/32"])
    parser.add_argument("--methods", nargs="+", help="network methods to map (default: all)")
    args = parser.parse_args(argv)
    if not (args.run / "experiment.json").is_file():
        print(f"skipping: no finished experiment at {args.run}")
        return 0
    record = RunRecord.read(args.run)
    rows = measure(record, args.fractions, parse_windows(args.windows), args.methods)
    summary = table(rows, patch_scores(record), args.windows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "windows.csv", rows.to_csv(index=False))
    write_text_atomic(args.out / "windows.md", markdown(summary))
    print(summary.to_string())
    print(f"mean over every row:\n{summary.mean().round(3).to_string()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
