"""How often the 95 % intervals of ``sarcrop assess`` cover the truth, over repeated samples.

    python benchmarks/area_coverage.py --out runs/area-coverage --draws 600

Simulates the ``europe`` preset (``--seed``, ``--size`` px at 10 m), maps it with the shipped
``europe-maize`` model, and takes the census of that map against the simulator's labels as the
truth. Then, for each design, draws ``--draws`` samples (seeds 1000, 1001, ...), fills their
reference from the labels and assesses them, and counts how often each 95 % interval covers the
census value: the maize area proportion, overall accuracy, and the user's and producer's
accuracy of maize. The estimators are unbiased whatever the sample; the intervals are normal
approximations (estimate ± 1.96 SE), which under-cover where an accuracy is close to 1 and the
strata hold few of its errors. Writes ``coverage.csv`` and ``coverage.md`` into ``--out`` and
prints the table. The simulated region and its map are cached in ``--out``.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import frame_markdown
from sarcrop.data.simulate import simulate_region
from sarcrop.evaluation import draw_sample, fill_reference
from sarcrop.evaluation.assessment import assess, assess_sample
from sarcrop.options import SamplingOptions
from sarcrop.prediction.predict import predict_map
from sarcrop.pretrained import resolve
from sarcrop.utils.atomic import write_text_atomic

CROP = 1  # maize, the class of a one-crop map
PROBABILITY_EDGES = (63.0, 188.0)  # probability × 250: p < 0.252, 0.252-0.752, >= 0.752


@dataclass(frozen=True)
class Design:
    """One sampling design: its size, and its strata (the map's classes by default)."""

    name: str
    n: int
    options: dict[str, Any] = field(default_factory=dict)
    by_probability: bool = False


DESIGNS = (
    Design("map classes, n = 100", 100),
    Design("map classes, n = 400", 400),
    Design(
        "probability × map class, equal, n = 400",
        400,
        {"strata_band": "probability", "strata_edges": PROBABILITY_EDGES, "allocation": "equal"},
        by_probability=True,
    ),
)


def mapped_region(out: Path, seed: int, size: int) -> tuple[Path, Path]:
    """The simulated region's labels and the ``europe-maize`` map of it (made once)."""
    region, map_path = out / f"europe-{seed}-{size}", out / f"europe-{seed}-{size}-maize.tif"
    if not (region / "region.json").exists():
        simulate_region("europe", region, seed=seed, size=(size, size))
    if not map_path.exists():
        predict_map(resolve("europe-maize"), region, map_path, progress=False)
    return region / "labels.tif", map_path


def quantities(result: Any) -> dict[str, Any]:
    """The estimates whose coverage is counted, by name."""
    e, index = result.estimates, list(result.classes).index(CROP)
    return {
        "maize area proportion": e.area[index],
        "overall accuracy": e.overall,
        "user's accuracy (maize)": e.users[index],
        "producer's accuracy (maize)": e.producers[index],
    }


def draws(design: Design, map_path: Path, labels: Path, count: int) -> Iterator[Any]:
    """The assessments of ``count`` samples of ``design``."""
    strata = map_path if design.by_probability else None
    for seed in range(1000, 1000 + count):
        options = SamplingOptions(seed=seed, **design.options)
        sample = fill_reference(
            draw_sample(map_path, design.n, strata=strata, options=options), labels
        )
        yield assess_sample(sample)


def coverage(design: Design, map_path: Path, labels: Path, count: int) -> list[dict[str, Any]]:
    truth = {name: e.value for name, e in quantities(assess(map_path, labels)).items()}
    covered = {name: 0 for name in truth}
    values: dict[str, list[float]] = {name: [] for name in truth}
    for result in draws(design, map_path, labels, count):
        for name, estimate in quantities(result).items():
            low, high = estimate.ci95
            covered[name] += int(low <= truth[name] <= high)
            values[name].append(estimate.value)
    return [
        {
            "design": design.name,
            "quantity": name,
            "truth": truth[name],
            "mean estimate": float(np.mean(values[name])),
            "std of estimates": float(np.std(values[name])),
            "coverage": covered[name] / count,
        }
        for name in truth
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/area-coverage"))
    parser.add_argument("--draws", type=int, default=600, help="samples per design")
    parser.add_argument("--seed", type=int, default=8, help="simulated region's seed")
    parser.add_argument("--size", type=int, default=512, help="region size in pixels")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    labels, map_path = mapped_region(args.out, args.seed, args.size)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # points on unlabelled ground, thin strata: counted
        for design in DESIGNS:
            rows += coverage(design, map_path, labels, args.draws)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "coverage.csv", index=False)
    binomial = np.sqrt(0.95 * 0.05 / args.draws)
    text = (
        f"{args.draws} samples per design of the europe-maize map of simulated europe (seed "
        f"{args.seed}, {args.size}² px); a coverage's binomial std at 0.95: {binomial:.3f}; "
        f"{time.perf_counter() - start:.0f} s\n\n" + frame_markdown(table)
    )
    write_text_atomic(args.out / "coverage.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
