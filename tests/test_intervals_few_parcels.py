"""An experiment's intervals where the test split holds its crop in one parcel."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from sarcrop.experiments.intervals import PAIRED_COLUMNS, scenario_intervals


def _run(tmp_path, target):
    """``intervals.csv`` rows of RI and FT (two seeds each) on one 8 × 8 test patch of four
    parcels (quadrants), ``target`` their classes."""
    parcels = np.zeros((1, 8, 8), dtype=np.int64)
    parcels[:, :4, 4:], parcels[:, 4:, :4], parcels[:, 4:, 4:] = 1, 2, 3
    truth = np.asarray(target)[parcels]
    rng = np.random.default_rng(0)
    units, rows = {}, []
    for method in ("ri", "ft"):
        for seed in (0, 1):
            pred = np.clip(truth + rng.normal(0, 0.4, truth.shape), 0, 1).astype(np.float32)
            path = tmp_path / f"{method}{seed}.npy"
            np.save(path, pred)
            units[(method, 1.0, seed)] = path
            rows.append(
                {
                    "scenario": "s",
                    "run": "main",
                    "metric": "iou",
                    "timestep": 8,
                    "method": method,
                    "label_fraction": 1.0,
                    "seed": seed,
                    "value": 0.5,
                }
            )
    scenario = SimpleNamespace(id="s")
    return scenario_intervals(scenario, (truth, parcels), units, pd.DataFrame(rows), {})


def test_one_crop_parcel_leaves_the_bounds_empty_and_two_give_them(tmp_path):
    """Every draw holds the one maize field or none: a width from it means nothing, so the
    bounds are empty (as ``evaluate`` gives ``n/a (1 parcel)``); the means stay."""
    one = _run(tmp_path, [0, 1, 0, 0])
    assert one[["low", "high"]].isna().all().all()
    ft = one[one["method"] == "ft"].iloc[0]
    assert np.isfinite(ft["mean"]) and np.isfinite(ft["minus_ri"])
    assert all(pd.isna(ft[c]) for c in PAIRED_COLUMNS if c.endswith(("_low", "_high")))
    two = _run(tmp_path, [0, 1, 1, 0])
    assert two[["low", "high"]].notna().all().all()
    assert (two["low"] <= two["high"]).all()


def test_tables_of_intervals_without_bounds_show_the_means_alone(tmp_path):
    from sarcrop.evaluation.tables import fraction_table, paired_table

    one = _run(tmp_path, [0, 1, 0, 0])
    for table in (fraction_table(one), paired_table(one)):
        text = table.to_markdown()
        rows = [line for line in text.splitlines() if "**FT**" in line]
        assert rows and "nan" not in text.lower() and "[" not in rows[0]
    assert "one test parcel" in fraction_table(one).to_markdown()
