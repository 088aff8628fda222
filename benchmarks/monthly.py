"""Monthly data under 20-day periods: the shipped maize model on real Flanders, gaps empty or
interpolated.

    python benchmarks/monthly.py --data ../shared/data --out runs/monthly

Users often have monthly composites (WorldCereal's and openEO's cubes, CropHarvest exports),
stamped on the first day of each month. Read under a model's 8 × 20-day periods from 21 April,
three of the eight periods hold no date. This benchmark makes such data from the real series of
the two labelled Flanders locations (00002806639B424A, 2018; 000028085BF08E7E, 2019): the mean
in linear power of every acquisition of each calendar month, stamped on the 1st, written as
GeoTIFFs in the same layout. Each location becomes three stores (10 m, 32 × 32 patches, every
patch a test patch, maize against the rest): its full series, and the monthly series with
``gaps`` ``empty`` and ``interpolate``. ``europe-maize`` scores each as it is (no training, no
seed); the interval is the parcel bootstrap of ``evaluate``. The monthly means are read at
mid-month, as ``open_scenes`` reads any slices stamped on the 1st; how far their composites lie
from those of the full series is printed beside the same composites with each mean read at its
stamp (the 1st), as sarcrop read them before 0.13.0. Exits 0 with "skipping" where the data are
absent.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from sarcrop.data.composite import composite, period_indices
from sarcrop.data.prepare import prepare
from sarcrop.data.reader import open_scenes
from sarcrop.data.season import Season
from sarcrop.options import (
    CompositeOptions,
    LabelOptions,
    SceneOptions,
    SplitOptions,
    TilingOptions,
)
from sarcrop.training.api import evaluate

FOLDER = "worldcereal-s1-croptype-patches/geotiff"
LOCATIONS = {2018: "00002806639B424A", 2019: "000028085BF08E7E"}
MAIZE = {1200: "maize"}  # WorldCereal's maize code; every other code is "other"
MODEL = "europe-maize"


def monthly_means(data: Path, location: str, out: Path) -> Path:
    """The location's VH and VV series as monthly means (linear power, stamped on the 1st), in
    ``out`` beside a link to its labels; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for band in ("VH", "VV"):
        name = f"{location}_S1_{band}_sigma0_dB_20m.tif"
        with rasterio.open(data / FOLDER / name) as source:
            series = source.read()
            months: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
            for index, stamp in enumerate(source.descriptions):
                when = dt.datetime.fromisoformat(str(stamp))
                months[(when.year, when.month)].append(index)
            profile = {**source.profile, "count": len(months)}
            with rasterio.open(out / name, "w", **profile) as target:
                for number, ((year, month), indices) in enumerate(sorted(months.items()), 1):
                    with np.errstate(all="ignore"):
                        power = np.nanmean(10 ** (series[indices] / 10), axis=0)
                    target.write((10 * np.log10(power)).astype(np.float32), number)
                    target.set_band_description(number, f"{year:04d}-{month:02d}-01T00:00:00")
                target.update_tags(**source.tags())
    return out


def composite_error(full: str, monthly: str, year: int) -> dict[str, float]:
    """Mean |monthly − full series| of the 20-day composites (dB, VH and VV, gaps interpolated),
    the monthly means read at mid-month and, as before 0.13.0, at their stamp."""
    season = Season(dt.date(year, 4, 21), 8, 20)
    truth = composite(open_scenes(full), season, ["VH", "VV"])
    middle = open_scenes(monthly)
    stamp = middle.select(lambda a: True)
    stamp.acquisitions = [replace(a, until=None) for a in stamp.acquisitions]
    return {
        name: float(np.nanmean(np.abs(composite(stack, season, ["VH", "VV"]) - truth)))
        for name, stack in (("db_error_mid_month", middle), ("db_error_at_stamp", stamp))
    }


def store(images: str, labels: Path, year: int, gaps: str, out: Path) -> Path:
    """A test-only maize store of ``images`` (cached: an existing store is reused)."""
    if out.exists():
        return out
    return prepare(
        images,
        out,
        labels=labels,
        season=Season(dt.date(year, 4, 21), 8, 20),
        positive=["maize"],
        label_options=LabelOptions(code_map=MAIZE),
        scenes=SceneOptions(resolution=10),
        composite=CompositeOptions(gaps=gaps),  # type: ignore[arg-type]
        tiling=TilingOptions(patch_size=32),
        split=SplitOptions(method="test"),
        progress=False,
    )


def score(
    year: int, series: str, gaps: str, images: str, labels: Path, out: Path
) -> dict[str, Any]:
    """``MODEL``'s IoU of maize on one store, with its parcel-bootstrap interval."""
    path = store(images, labels, year, gaps, out / f"flanders{year}-{series}-{gaps}.zarr")
    result = evaluate(MODEL, path, timesteps="all")
    season = Season(dt.date(year, 4, 21), 8, 20)
    stack = open_scenes(images, bands=("VH", "VV"))
    interval = result["early_season_intervals"][8]
    return {
        "location": f"flanders{year}",
        "series": series,
        "gaps": gaps,
        "dates": len(stack.acquisitions),
        "empty_periods": [i + 1 for i, p in enumerate(period_indices(stack, season)) if not p],
        "iou": result["metrics"]["iou"],
        "low": interval["low"],
        "high": interval["high"],
        "parcels": interval["n_parcels"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/monthly"))
    args = parser.parse_args(argv)
    if not (args.data / FOLDER).is_dir():
        print(f"skipping: real data not found at {args.data / FOLDER}")
        return 0
    started = time.perf_counter()
    rows = []
    for year, location in LOCATIONS.items():
        labels = args.data / FOLDER / f"{location}_labels_CT_LC_10m.tif"
        monthly = monthly_means(args.data, location, args.out / "monthly")
        runs = [
            ("full", "interpolate", str(args.data / FOLDER / f"{location}_S1_*")),
            ("monthly", "empty", str(monthly / f"{location}_S1_*")),
            ("monthly", "interpolate", str(monthly / f"{location}_S1_*")),
        ]
        for series, gaps, images in runs:
            rows.append(score(year, series, gaps, images, labels, args.out))
            row = rows[-1]
            print(
                f"{row['location']} {series:7} gaps {gaps:11} dates {row['dates']:3} "
                f"empty periods {row['empty_periods'] or '-'}: IoU {row['iou']:.3f} "
                f"[{row['low']:.3f}, {row['high']:.3f}] ({row['parcels']} parcels)"
            )
        errors = composite_error(runs[0][2], runs[2][2], year)
        rows[-1].update(errors)
        print(
            f"flanders{year} monthly composites against the full series: mean |difference| "
            f"{errors['db_error_mid_month']:.2f} dB read at mid-month, "
            f"{errors['db_error_at_stamp']:.2f} dB read at the stamp"
        )
    (args.out / "monthly.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"{time.perf_counter() - started:.0f} s; {args.out / 'monthly.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
