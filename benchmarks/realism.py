"""The simulator's realism gap: per-crop statistics of real Flanders patches beside a simulation.

    python benchmarks/realism.py --data ../shared/data --out runs/realism.json

Reads the two labelled Flanders locations of ``worldcereal-s1-croptype-patches`` (20 m, VV+VH,
labels from the Flemish LPIS) and simulates a small region of a preset growing the same crops
(``netherlands``: maize, winter wheat, potato, grassland), then prints, per statistic and crop,
each real location's value, the real interval (union of the locations' field-bootstrap 90 %
intervals), the simulated value and whether it lies inside. Writes the rows as JSON.

Seasons: real Flanders composites start on 21 April of the label year (8 × 20 days, the maize
season); the simulated region uses its preset's own season (``netherlands``: 15 March). Per-period
statistics are compared by period index, i.e. as a model sees its input, not by calendar date.
Each scene is measured at its own resolution (real 20 m; simulated 10 m) unless
``--real-resolution`` / ``--sim-resolution`` read it onto another pixel size:
``--real-resolution 10`` measures the real scenes on the 10 m grid the real benchmark
(``sarcrop experiment real``) reads them onto, i.e. as a model sees them beside the simulation.
A domain-randomised preset (``europe``) is simulated as the seed draws it (calendars, levels,
field sizes, revisit); ``--no-randomise`` measures its calibrated centre instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sarcrop.data.season import Season
from sarcrop.data.simulate import simulate_region
from sarcrop.errors import InputDataError
from sarcrop.evaluation.realism import (
    WORLDCEREAL_CROPS,
    SceneData,
    compare,
    crop_code_map,
    format_table,
    load_scene,
    measure,
)
from sarcrop.options import LabelOptions, SceneOptions
from sarcrop.utils.atomic import write_text_atomic

DATASET = "worldcereal-s1-croptype-patches"
#: Labelled Flanders locations and their label year.
FLANDERS = {"00002806639B424A": 2018, "000028085BF08E7E": 2019}
FLANDERS_SEASON_START = (4, 21)
CROPS = tuple(WORLDCEREAL_CROPS)
#: A real interval from fewer fields says little about a spread (one field: a point).
MIN_FIELDS = 3


def real_scene(data: Path, location: str, resolution: float | None = None) -> SceneData:
    """One Flanders location, its labels named by crop, over its maize season."""
    folder = data / DATASET
    if not (folder / "geotiff").is_dir():
        raise InputDataError(f"no {DATASET}/geotiff folder", data)
    month, day = FLANDERS_SEASON_START
    return load_scene(
        str(folder / "geotiff" / f"{location}_S1_*"),
        folder / "geotiff" / f"{location}_labels_CT_LC_10m.tif",
        Season(dt.date(FLANDERS[location], month, day)),
        label_options=LabelOptions(
            code_map=crop_code_map(folder / "legend" / "wc2eurocrops_map.csv")
        ),
        scenes=SceneOptions(resolution=resolution),
    )


def simulated_scene(
    work: Path,
    preset: str,
    *,
    size: int,
    seed: int,
    resolution: float | None = None,
    product_resolution: float | None = None,
    randomise: bool = True,
) -> SceneData:
    """A ``size``² (10 m pixels) simulation of ``preset`` over its own season."""
    region = simulate_region(
        preset,
        work / f"{preset}-{size}-{seed}",
        size=(size, size),
        seed=seed,
        product_resolution=product_resolution,
        randomise=randomise,
    )
    return load_scene(
        region.root / "scenes",
        region.root / "labels.tif",
        region.season,
        scenes=SceneOptions(resolution=resolution),
    )


def run(
    data: Path,
    *,
    preset: str = "netherlands",
    size: int = 256,
    seed: int = 0,
    draws: int = 200,
    locations: Sequence[str] = tuple(FLANDERS),
    sim_resolution: float | None = None,
    real_resolution: float | None = None,
    product_resolution: float | None = None,
    randomise: bool = True,
    work: Path | None = None,
) -> dict[str, Any]:
    """Measure the real locations and a simulation of ``preset``; return rows and settings."""
    start = time.perf_counter()
    reals = {location: real_scene(data, location, real_resolution) for location in locations}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        sim = simulated_scene(
            Path(tmp),
            preset,
            size=size,
            seed=seed,
            resolution=sim_resolution,
            product_resolution=product_resolution,
            randomise=randomise,
        )
    rows = compare(
        {location: measure(scene, CROPS) for location, scene in reals.items()},
        measure(sim, CROPS),
        draws=draws,
        seed=seed,
    )
    outside = [row for row in rows if row.inside is False]
    spread = [row for row in rows if row.fields >= MIN_FIELDS]
    return {
        "real": {location: scene.describe() for location, scene in reals.items()},
        "simulated": {
            "preset": preset,
            "size": size,
            "seed": seed,
            "product_resolution_m": product_resolution,
            "randomised": randomise,
            **sim.describe(),
        },
        "alignment": (
            "per-period statistics compared by period index, each scene over its own season"
        ),
        "interval": f"union of the real locations' field-bootstrap 90 % intervals ({draws} draws)",
        "rows": [row.to_dict() for row in rows],
        "summary": {
            "statistics": len(rows),
            "inside": sum(row.inside is True for row in rows),
            "outside": len(outside),
            "not_comparable": sum(row.inside is None for row in rows),
            f"statistics_from_{MIN_FIELDS}_fields": len(spread),
            f"inside_from_{MIN_FIELDS}_fields": sum(row.inside is True for row in spread),
        },
        "seconds": round(time.perf_counter() - start, 1),
        "_rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="real data folder"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/realism.json"), help="JSON output")
    parser.add_argument("--preset", default="netherlands", help="simulator preset (netherlands)")
    parser.add_argument("--size", type=int, default=256, help="simulated size, 10 m pixels (256)")
    parser.add_argument("--seed", type=int, default=0, help="simulation and bootstrap seed (0)")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws over fields (200)")
    parser.add_argument(
        "--sim-resolution",
        type=float,
        default=None,
        help="read the simulation at this resolution (native)",
    )
    parser.add_argument(
        "--real-resolution",
        type=float,
        default=None,
        help="read the real scenes at this resolution (native; 10: the real benchmark's grid)",
    )
    parser.add_argument(
        "--product-resolution",
        type=float,
        default=None,
        help="simulate a coarser product read onto the 10 m grid (e.g. 20; none)",
    )
    parser.add_argument(
        "--no-randomise",
        action="store_true",
        help="simulate a domain-randomised preset (europe) at its centre, not the seed's draw",
    )
    args = parser.parse_args(argv)
    result = run(
        args.data,
        preset=args.preset,
        size=args.size,
        seed=args.seed,
        draws=args.draws,
        sim_resolution=args.sim_resolution,
        real_resolution=args.real_resolution,
        product_resolution=args.product_resolution,
        randomise=not args.no_randomise,
    )
    rows = result.pop("_rows")
    print(format_table(rows))
    summary = result["summary"]
    print(
        f"\n{summary['inside']} of {summary['statistics']} statistics inside the real interval, "
        f"{summary['outside']} outside, {summary['not_comparable']} not comparable "
        f"({result['seconds']} s). {result['alignment']}.\n"
        f"Statistics whose real interval rests on >= {MIN_FIELDS} fields: "
        f"{summary[f'inside_from_{MIN_FIELDS}_fields']} of "
        f"{summary[f'statistics_from_{MIN_FIELDS}_fields']} inside."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2, allow_nan=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
