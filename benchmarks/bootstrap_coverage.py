"""How often the experiments' parcel-bootstrap 95 % intervals cover the truth, by simulation.

    python benchmarks/bootstrap_coverage.py --out runs/bootstrap-coverage --reps 1000

The experiments give each method's IoU of the crop on a test split, and each paired
difference between two methods, a 95 % interval from resampled parcels
(:mod:`sarcrop.evaluation.bootstrap`, with the settings of ``intervals.csv``). A real test
split holds 7-19 fields. This measures what such an interval is worth: it simulates a large
``europe`` region (``--seed``, ``--size`` px at 10 m, thousands of fields), maps it with two
shipped models (A ``europe-maize``, B ``europe-maize-tempcnn``), and takes their IoU of maize
over every field of the region, and its difference, as the truth. Then, ``--reps`` times per
design and size, it draws a test set and computes the package's intervals on it:

- ``fields``: ``k`` fields drawn at random from the whole region;
- ``window``: a random square holding ``k`` fields on average, its parcels the label
  components inside it (a real test split is one such contiguous area).

A test set whose maize lies in fewer than 2 parcels has no bounds in the experiments; such
draws are counted as undefined and left out of the coverage. Writes ``coverage.csv`` (one row
per draw) and ``coverage.md`` (coverage, its binomial std, mean width and the bias of the
estimate, per design and ``k``) into ``--out``, and prints the table. The region and its maps
are cached in ``--out``.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rasterio

from benchmarks.report import frame_markdown
from sarcrop import pretrained
from sarcrop.data.parcels import parcel_ids
from sarcrop.data.simulate import simulate_region
from sarcrop.evaluation.bootstrap import (
    MIN_PARCELS,
    paired_difference,
    parcel_bootstrap,
    parcel_confusions,
)
from sarcrop.experiments.intervals import BOOTSTRAP
from sarcrop.prediction.predict import predict_map
from sarcrop.utils.atomic import write_text_atomic

MODELS = {"a": "europe-maize", "b": "europe-maize-tempcnn"}
CROP = "maize"
PROBABILITY_SCALE = 250.0  # a map's probability band holds p × 250, 255 = nodata
THRESHOLD = 0.5


@dataclass(frozen=True)
class Population:
    """Every field of the region: its labels (-1: no field), parcel ids, maize target, and the
    probability of maize of each map."""

    labels: np.ndarray
    parcels: np.ndarray
    target: np.ndarray
    probability: dict[str, np.ndarray]
    order: np.ndarray  # flat pixel indices sorted by parcel id
    starts: np.ndarray  # where each parcel's pixels start in ``order``

    def pixels_of(self, parcel: int) -> np.ndarray:
        """Flat indices of the pixels of one parcel."""
        return self.order[self.starts[parcel] : self.starts[parcel + 1]]

    def truth(self) -> dict[str, float]:
        """IoU of each map over every field, and A − B."""
        iou = {}
        for name, prob in self.probability.items():
            tp, fp, fn, _ = parcel_confusions(prob, self.target, self.parcels).sum(axis=0)
            iou[name] = tp / (tp + fp + fn)
        return {"a": iou["a"], "b": iou["b"], "difference": iou["a"] - iou["b"]}


def population(out: Path, seed: int, size: int) -> Population:
    """The simulated region and both maps of it (made once), read as the experiments read a
    test split: label nodata and never-observed pixels belong to no parcel."""
    region = out / f"europe-{seed}-{size}"
    if not (region / "region.json").exists():
        simulate_region("europe", region, seed=seed, size=(size, size), year=2019)
    with rasterio.open(region / "labels.tif") as src:
        labels = src.read(1).astype(np.int64)
        names = {
            int(k.removeprefix("CLASS_")): v
            for k, v in src.tags().items()
            if k.startswith("CLASS_")
        }
    crop = next(code for code, name in names.items() if name == CROP)
    labels[labels == 255] = -1
    probability = {}
    for name, model in MODELS.items():
        path = out / f"europe-{seed}-{size}-{model}.tif"
        if not path.exists():
            predict_map(pretrained.resolve(model), region, path, progress=False)
        with rasterio.open(path) as src:
            band = src.read(1)
        labels[band == 255] = -1
        probability[name] = band.astype(np.float32) / PROBABILITY_SCALE
    parcels = parcel_ids(labels)
    flat = parcels.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(int(flat.max()) + 2))
    target = (labels == crop).astype(np.int64)
    return Population(labels, parcels, target, probability, order, starts)


def test_set(pop: Population, design: str, k: int, rng: np.random.Generator) -> tuple[Any, ...]:
    """(probability A, probability B, target, parcel ids) of one drawn test set."""
    if design == "window":
        fields = int(pop.parcels.max()) + 1
        side = round(float(np.sqrt(k * pop.parcels.size / fields)))
        height, width = pop.parcels.shape
        while True:
            row, col = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            window = (slice(row, row + side), slice(col, col + side))
            ids = parcel_ids(pop.labels[window])
            if ids.max() >= 0:
                return (
                    pop.probability["a"][window],
                    pop.probability["b"][window],
                    pop.target[window],
                    ids,
                )
    chosen = rng.choice(int(pop.parcels.max()) + 1, k, replace=False)
    pixels = np.concatenate([pop.pixels_of(parcel) for parcel in chosen])
    flat = {name: prob.ravel()[pixels] for name, prob in pop.probability.items()}
    return flat["a"], flat["b"], pop.target.ravel()[pixels], pop.parcels.ravel()[pixels]


def draws(pop: Population, design: str, k: int, reps: int, seed: int) -> list[dict[str, Any]]:
    """The package's intervals on ``reps`` test sets of ``design``."""
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(reps):
        a, b, target, ids = test_set(pop, design, k, rng)
        crop_parcels = np.unique(ids[(ids >= 0) & (target == 1)]).size
        fields = np.unique(ids[ids >= 0]).size
        row: dict[str, Any] = {"design": design, "k": k, "rep": rep, "fields": fields}
        row["crop_fields"] = crop_parcels
        if crop_parcels >= MIN_PARCELS:
            iou = parcel_bootstrap(a, target, ids, threshold=THRESHOLD, **BOOTSTRAP)
            diff = paired_difference(a, b, target, ids, threshold=THRESHOLD, **BOOTSTRAP)
            row |= {"iou": iou.estimate, "iou_low": iou.low, "iou_high": iou.high}
            row |= {"difference": diff.estimate, "low": diff.low, "high": diff.high}
        rows.append(row)
    return rows


def summary(rows: pd.DataFrame, truth: dict[str, float]) -> pd.DataFrame:
    """Coverage, its binomial std, mean width and the estimate's bias per design and ``k``."""
    out = []
    for (design, k), group in rows.groupby(["design", "k"], sort=False):
        defined = group.dropna(subset=["iou"])
        for what, value, low, high in (
            ("IoU of A", truth["a"], "iou_low", "iou_high"),
            ("A − B", truth["difference"], "low", "high"),
        ):
            estimate = defined["iou" if what == "IoU of A" else "difference"]
            covered = ((defined[low] <= value) & (value <= defined[high])).mean()
            out.append(
                {
                    "design": design,
                    "k": k,
                    "mean fields": group["fields"].mean(),
                    "undefined": 1 - len(defined) / len(group),
                    "interval": what,
                    "truth": value,
                    "coverage": covered,
                    "binomial std": np.sqrt(covered * (1 - covered) / max(len(defined), 1)),
                    "mean width": (defined[high] - defined[low]).mean(),
                    "bias": estimate.mean() - value,
                }
            )
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bootstrap-coverage"))
    parser.add_argument("--reps", type=int, default=1000, help="test sets per design and k")
    parser.add_argument("--seed", type=int, default=11, help="simulated region's seed")
    parser.add_argument("--size", type=int, default=2048, help="region size in pixels")
    parser.add_argument("--fields", type=int, nargs="+", default=[8, 12, 20, 40], help="k")
    parser.add_argument("--designs", nargs="+", default=["fields", "window"])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pop = population(args.out, args.seed, args.size)
    truth = pop.truth()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # draws without maize are undefined, as in the runs
        for design in args.designs:
            for k in args.fields:
                rows += draws(pop, design, k, args.reps, seed=1000 * k)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "coverage.csv", index=False)
    text = (
        f"IoU of maize, simulated europe (seed {args.seed}, {args.size}² px, "
        f"{int(pop.parcels.max()) + 1} fields): A {MODELS['a']} {truth['a']:.3f}, B "
        f"{MODELS['b']} {truth['b']:.3f}, A − B {truth['difference']:+.3f} over every field; "
        f"{args.reps} test sets per design and k; {time.perf_counter() - start:.0f} s\n\n"
        + frame_markdown(summary(frame, truth))
    )
    write_text_atomic(args.out / "coverage.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
