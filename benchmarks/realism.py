"""The simulator's realism gap: per-crop statistics of real Flanders patches beside a simulation.

    python benchmarks/realism.py --data ../shared/data --out runs/realism.json

Reads the two labelled Flanders locations of ``worldcereal-s1-croptype-patches`` (20 m, VV+VH,
labels from the Flemish LPIS) and simulates a small region of a preset growing the same crops
(``netherlands``: maize, winter wheat, potato, grassland), then prints, per statistic and crop,
each real location's value, the real interval (the union of the locations' field-bootstrap 90 %
intervals, printed in pieces where they do not overlap), the fields per location, the simulated
value and whether it lies inside at least one location's interval. A location's interval counts
only when it rests on at least two fields of at least 16 pixels (``MIN_FIELDS``, ``MIN_PIXELS``
of :mod:`sarcrop.evaluation.realism`); a statistic without one is not comparable. Writes the
rows as JSON.

Seasons: real Flanders composites start on 21 April of the label year (8 × 20 days, the maize
season); the simulated region uses its preset's own season (``netherlands``: 15 March). Per-period
statistics are compared by period index, i.e. as a model sees its input, not by calendar date.
Each scene is measured at its own resolution (real 20 m; simulated 10 m) unless
``--real-resolution`` / ``--sim-resolution`` read it onto another pixel size:
``--real-resolution 10`` measures the real scenes on the 10 m grid the real benchmark
(``sarcrop experiment real``) reads them onto, i.e. as a model sees them beside the simulation.
A domain-randomised preset (``europe``) is simulated as the seed draws it (calendars, levels,
field sizes, revisit); ``--no-randomise`` measures its calibrated centre instead.
``--simulations N`` simulates seeds ``--seed`` ... ``--seed + N - 1`` and asks, per statistic,
whether the range of the N values meets the real interval (coverage: what a pre-training on
all N draws has seen), holding every simulation against the same real intervals.
The bootstrap is seeded by ``--bootstrap-seed`` (0), not by ``--seed``: runs of different
simulation seeds meet the same real intervals, so a single run with ``--seed S`` counts what the
S-th simulation of a ``--simulations`` run counts.
Below the table, each real location is held against the other's intervals alone, and every
simulation against the same intervals (``real_against_real``): how many statistics one real
Flanders place and year has inside another's is the yardstick for a simulation's count.
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
    MIN_FIELDS,
    MIN_PIXELS,
    WORLDCEREAL_CROPS,
    Row,
    SceneData,
    coverage,
    crop_code_map,
    format_coverage,
    format_real_against_real,
    format_table,
    hold,
    load_scene,
    measure,
    real_against_real,
    real_intervals,
)
from sarcrop.options import LabelOptions, SceneOptions
from sarcrop.utils.atomic import write_text_atomic

DATASET = "worldcereal-s1-croptype-patches"
#: Labelled Flanders locations and their label year.
FLANDERS = {"00002806639B424A": 2018, "000028085BF08E7E": 2019}
FLANDERS_SEASON_START = (4, 21)
CROPS = tuple(WORLDCEREAL_CROPS)


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
    simulations: int = 1,
    draws: int = 200,
    bootstrap_seed: int = 0,
    locations: Sequence[str] = tuple(FLANDERS),
    sim_resolution: float | None = None,
    real_resolution: float | None = None,
    product_resolution: float | None = None,
    randomise: bool = True,
    work: Path | None = None,
) -> dict[str, Any]:
    """Measure the real locations and ``simulations`` simulations of ``preset`` (seeds ``seed``,
    ``seed + 1``, ...); return rows and settings: per statistic, whether the simulation lies
    inside the real interval (one simulation) or whether their range covers it (several).
    The real intervals are bootstrapped with ``bootstrap_seed`` whatever the simulation seed."""
    if simulations < 1:
        raise ValueError(f"simulations must be >= 1, got {simulations}")
    start = time.perf_counter()
    reals = {location: real_scene(data, location, real_resolution) for location in locations}
    real = {location: measure(scene, CROPS) for location, scene in reals.items()}
    # Bootstrapped once: every simulation meets the same real intervals.
    intervals = real_intervals(real, draws=draws, seed=bootstrap_seed)
    described, comparisons, measured = [], [], []
    for sim_seed in range(seed, seed + simulations):
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            sim = simulated_scene(
                Path(tmp),
                preset,
                size=size,
                seed=sim_seed,
                resolution=sim_resolution,
                product_resolution=product_resolution,
                randomise=randomise,
            )
        measured.append(measure(sim, CROPS))
        comparisons.append(hold(intervals, measured[-1]))
        described.append(
            {
                "preset": preset,
                "size": size,
                "seed": sim_seed,
                "product_resolution_m": product_resolution,
                "randomised": randomise,
                **sim.describe(),
            }
        )
    result: dict[str, Any] = {
        "real": {location: scene.describe() for location, scene in reals.items()},
        "simulated": described[0] if simulations == 1 else described,
        "alignment": (
            "per-period statistics compared by period index, each scene over its own season"
        ),
        "interval": (
            f"union of the real locations' field-bootstrap 90 % intervals ({draws} draws,"
            f" seed {bootstrap_seed}; a location needs {MIN_FIELDS} fields of >= {MIN_PIXELS} px)"
        ),
    }
    if simulations == 1:
        result.update(_single(comparisons[0]))
    else:
        result.update(_coverage(comparisons))
    checks = real_against_real(real, measured, draws=draws, seed=bootstrap_seed)
    result["real_against_real"] = [check.to_dict() for check in checks]
    result["_checks"] = checks
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _single(rows: list[Row]) -> dict[str, Any]:
    summary = _counts([row.inside for row in rows], "inside", "outside")
    return {"rows": [row.to_dict() for row in rows], "summary": summary, "_rows": rows}


def _coverage(comparisons: list[list[Row]]) -> dict[str, Any]:
    items = coverage(comparisons)
    summary = _counts([item.covered for item in items], "covered", "not_covered")
    summary["inside_per_simulation"] = [
        sum(row.inside is True for row in rows) for rows in comparisons
    ]
    return {"rows": [item.to_dict() for item in items], "summary": summary, "_rows": items}


def _counts(verdicts: list[bool | None], passed: str, failed: str) -> dict[str, Any]:
    """How many statistics passed, failed or could not be compared (no real location with an
    interval, or the simulation lacks the crop)."""
    return {
        "statistics": len(verdicts),
        "comparable": sum(verdict is not None for verdict in verdicts),
        passed: sum(verdict is True for verdict in verdicts),
        failed: sum(verdict is False for verdict in verdicts),
        "not_comparable": sum(verdict is None for verdict in verdicts),
    }


def report(result: dict[str, Any]) -> str:
    """The table, its summary lines and the real-against-real yardstick, as printed."""
    text = _table_report(result)
    if result["_checks"]:
        text += (
            "\n\nReal against real: each real location's values held against another location's"
            " intervals alone, and each simulation against the same intervals, on the statistics"
            f" both locations measure, leaving out intervals from fewer than {MIN_FIELDS} fields."
            f"\n{format_real_against_real(result['_checks'])}"
        )
    return text


def _table_report(result: dict[str, Any]) -> str:
    rows = result["_rows"]
    summary = result["summary"]
    if "covered" not in summary:
        return (
            f"{format_table(rows)}\n\n{summary['inside']} of {summary['comparable']} comparable"
            f" statistics inside the real interval, {summary['outside']} outside"
            f" ({summary['statistics']} measured, {summary['not_comparable']} not comparable;"
            f" {result['seconds']} s). {result['alignment']}."
        )
    inside = summary["inside_per_simulation"]
    return (
        f"{format_coverage(rows)}\n\n{summary['covered']} of {summary['comparable']} comparable"
        f" real intervals within the range of the {len(inside)} simulations,"
        f" {summary['not_covered']} not ({summary['statistics']} measured,"
        f" {summary['not_comparable']} not comparable; {result['seconds']} s)."
        f" {result['alignment']}.\n"
        f"Inside the real interval, per simulation: {', '.join(map(str, inside))}"
        f" (mean {sum(inside) / len(inside):.1f})."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="real data folder"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/realism.json"), help="JSON output")
    parser.add_argument("--preset", default="netherlands", help="simulator preset (netherlands)")
    parser.add_argument("--size", type=int, default=256, help="simulated size, 10 m pixels (256)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (0)")
    parser.add_argument(
        "--simulations",
        type=int,
        default=1,
        help="simulate seeds --seed ... --seed + N - 1 and report their coverage (1)",
    )
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws over fields (200)")
    parser.add_argument(
        "--bootstrap-seed",
        type=int,
        default=0,
        help="seed of the bootstrap over real fields, the same for every --seed (0)",
    )
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
        simulations=args.simulations,
        draws=args.draws,
        bootstrap_seed=args.bootstrap_seed,
        sim_resolution=args.sim_resolution,
        real_resolution=args.real_resolution,
        product_resolution=args.product_resolution,
        randomise=not args.no_randomise,
    )
    print(report(result))
    result.pop("_rows")
    result.pop("_checks")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2, allow_nan=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
