"""Maps of real test locations in windows of the training patch size and in larger ones.

    sarcrop experiment real --data ../shared/data --out runs/real
    python benchmarks/map_windows.py --run runs/real --out runs/map-windows

The real benchmark scores each network on its 16 x 16 px test patches, the size it was
fine-tuned on. A user maps with ``sarcrop predict``, which walks over the scenes in windows.
This maps each test location from its GeoTIFFs with ``predict_map`` (the code path of
``sarcrop predict``, with ``season_start`` set to the location's season) for every network
checkpoint of the run at the given label fractions, in each of ``--windows`` (``W/O``: window
and overlap in pixels), and scores the class band on the test patches' labelled pixels as the
benchmark does. Writes ``windows.csv`` (one row per checkpoint and window) and ``windows.md``
(mean IoU per scenario, method, fraction and window over the seeds, with the patch scores
beside them) into ``--out`` and prints the table. Where the run folder is absent it says so and
exits 0.
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
from sarcrop.experiments.record import RunRecord
from sarcrop.experiments.runner import trains
from sarcrop.options import SceneOptions, WindowOptions
from sarcrop.prediction import predict_map
from sarcrop.utils.atomic import write_text_atomic

CLASS_BAND = 2  # predict's class band of a binary map: 0 other, 1 positive, 255 nodata


def parse_windows(texts: Sequence[str]) -> list[WindowOptions]:
    """``["16/2", "256/32"]`` → window options of those windows and overlaps."""
    options = []
    for text in texts:
        window, _, overlap = text.partition("/")
        options.append(WindowOptions(window=int(window), overlap=int(overlap or 0)))
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


def measure(
    record: RunRecord, fractions: Sequence[float], windows: Sequence[WindowOptions]
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    regions = record.config["regions"]
    stacks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        for unit in record.units:
            if not trains(unit.method) or unit.checkpoint is None:
                continue
            if unit.label_fraction not in fractions:
                continue
            scenario = next(s for s in record.scenarios if s.id == unit.scenario)
            spec = regions[scenario.test_region]
            if spec.get("images") is None:  # a simulated or merged region: no scenes to map
                continue
            store = DatasetStore(record.path(record.regions[scenario.test_region].store))
            if scenario.test_region not in stacks:
                stacks[scenario.test_region] = scene_stack(spec)
            start = dt.date.fromisoformat(str(spec["season_start"]))
            for option in windows:
                out = Path(work) / f"{len(rows)}.tif"
                predict_map(
                    record.path(unit.checkpoint),
                    stacks[scenario.test_region],
                    out,
                    season_start=start,
                    windows=option,
                    progress=False,
                )
                confusion = test_confusion(out, store, scenario.crop)
                rows.append(
                    {
                        "scenario": scenario.id,
                        "method": unit.method,
                        "label_fraction": unit.label_fraction,
                        "seed": unit.seed,
                        "window": f"{option.window}/{option.overlap}",
                        "iou": confusion.iou,
                    }
                )
                out.unlink()
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


def table(rows: pd.DataFrame, patches: pd.DataFrame) -> pd.DataFrame:
    wide = rows.pivot_table(
        index=["scenario", "method", "label_fraction", "seed"], columns="window", values="iou"
    ).reset_index()
    merged = wide.merge(patches, on=["scenario", "method", "label_fraction", "seed"], how="left")
    columns = ["patches", *[c for c in wide.columns if "/" in str(c)]]
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
    parser.add_argument("--windows", nargs="+", default=["16/2", "32/4", "256/32"])
    args = parser.parse_args(argv)
    if not (args.run / "experiment.json").is_file():
        print(f"skipping: no finished experiment at {args.run}")
        return 0
    record = RunRecord.read(args.run)
    rows = measure(record, args.fractions, parse_windows(args.windows))
    summary = table(rows, patch_scores(record))
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "windows.csv", rows.to_csv(index=False))
    write_text_atomic(args.out / "windows.md", markdown(summary))
    print(summary.to_string())
    print(f"mean over every row:\n{summary.mean().round(3).to_string()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
