"""Accuracy beside speed: each model's test IoU on the shipped small simulated experiment.

The shipped ``small`` config is run once per model (``pretrain.model`` swapped, same
``model_options`` so the sizes match), with a bounded set of methods and scenarios:

- ``reduced`` (default): FTE on the first scenario (Spain → Spain, VH), with pre-training and
  fine-tuning epochs halved so that the default suite stays within 15 minutes on 2 cores;
  its IoUs compare the models with each other, not with the shipped experiment;
- ``full`` (``--accuracy``): RI and FTE on every scenario, with the config's epochs.

All runs share one work directory, so the simulated regions and their stores are made once,
and a finished unit is reused by a later run (its recorded time is reported, not re-measured).
"""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from benchmarks.models import MODEL_NAMES
from sarcrop.experiments import load_experiment_config, run_experiment

Mode = Literal["reduced", "full"]


def small_config_path() -> Path:
    return Path(str(importlib.resources.files("sarcrop") / "configs" / "small.yaml"))


def final_iou(results: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{scenario: {method: IoU at the last date}}`` of the main runs."""
    rows = results[(results["run"] == "main") & (results["metric"] == "iou")]
    out: dict[str, dict[str, float]] = {}
    for (scenario, method), group in rows.groupby(["scenario", "method"]):
        last = group[group["timestep"] == group["timestep"].max()]
        out.setdefault(str(scenario), {})[str(method)] = float(last["value"].mean())
    return out


def run(work: Path, mode: Mode = "reduced") -> dict[str, Any]:
    base = load_experiment_config(small_config_path())
    methods = ("fte",) if mode == "reduced" else ("ri", "fte")
    scenarios = base.scenarios[:1] if mode == "reduced" else base.scenarios
    results: dict[str, Any] = {
        "mode": mode,
        "config": "small",
        "methods": list(methods),
        "scenarios": [s.id for s in scenarios],
        "model_options": base.pretrain.model_options,
        "models": {},
    }
    pretrain_train, finetune = base.pretrain.train, base.finetune
    if mode == "reduced":
        pretrain_train = pretrain_train.updated(epochs=max(1, pretrain_train.epochs // 2))
        finetune = finetune.updated(epochs=max(1, finetune.epochs // 2))
    results["epochs"] = {"pretrain": pretrain_train.epochs, "finetune": finetune.epochs}
    for name in MODEL_NAMES:
        pretrain = base.pretrain.model_copy(update={"model": name, "train": pretrain_train})
        config = base.model_copy(
            update={
                "pretrain": pretrain,
                "finetune": finetune,
                "methods": methods,
                "scenarios": scenarios,
                "early_season": None,
                "figure_patches": 0,
            }
        )
        start = time.perf_counter()
        outcome = run_experiment(config, work)
        ious = final_iou(outcome.results)
        fte = [by_method["fte"] for by_method in ious.values() if "fte" in by_method]
        results["models"][name] = {
            "iou": ious,
            "fte_iou_mean": sum(fte) / len(fte) if fte else float("nan"),
            "wall_s": time.perf_counter() - start,
            "timings_s": {k: round(v, 2) for k, v in outcome.timings.items()},
        }
    return results
