"""One pipeline per method: the CLI and the experiment runner give the same numbers.

A tiny simulated region is prepared once by the runner; the Random Forest and RI (the
pre-trained architecture trained from scratch on the target) are then run from a config (the
runner) and from the command line (in-process) with the same seed, and must agree exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sarcrop.cli import main
from sarcrop.experiments.config import experiment_config_from_dict
from sarcrop.experiments.runner import ExperimentRunner
from sarcrop.models import build_model, model_config
from sarcrop.training.checkpoint import CheckpointMetadata, read_metadata, save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ARCHITECTURE = {"widths": [4, 8]}
FINETUNE = {"epochs": 1, "batch_size": 4, "patience": None, "accelerator": "cpu"}
FLAGS = ["--epochs", "1", "--batch-size", "4", "--patience", "0", "--accelerator", "cpu"]
FOREST = {"n_estimators": 5, "max_samples_per_class": 300}


def pretrained(path: Path, steps: int) -> Path:
    """An untrained VH checkpoint of the config's architecture (RI only reads the architecture)."""
    torch.manual_seed(1)
    model = build_model("recurrent_unet", 1, steps, **ARCHITECTURE)
    options = model_config(model)
    for key in ("name", "in_bands", "time_steps"):
        options.pop(key)
    meta = CheckpointMetadata(
        architecture="recurrent_unet",
        options=options,
        bands=["VH"],
        time_steps=steps,
        normalization={"min": [-40.0], "max": [10.0], "bands": ["VH"], "method": "minmax"},
        normalization_source="elsewhere",
    )
    return save_checkpoint(path, model, meta)


def _nan(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def curve(early: dict) -> dict[str, dict]:
    """``{t: metrics}`` with string keys and NaN as None, as the metrics JSON holds it."""
    return {str(t): {k: None if _nan(v) else v for k, v in m.items()} for t, m in early.items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    checkpoint = folder / "pre.safetensors"
    data = {
        "name": "parity",
        "regions": {
            "spain": {
                "simulate": {"preset": "spain", "size": [128, 128]},
                "tiling": {"patch_size": 32},
            }
        },
        "pretrain": {"checkpoint": str(checkpoint), "model_options": ARCHITECTURE},
        "finetune": FINETUNE,
        "scenarios": [
            {"finetune": "spain", "test": "spain", "crop": "rice", "bands": ["VH", "VV"]}
        ],
        "methods": ["rf", "ri"],
        "baseline": FOREST,
    }
    runner = ExperimentRunner(experiment_config_from_dict(data), folder / "out")
    store, _ = runner.region_store("spain")
    from sarcrop.data.store import DatasetStore

    pretrained(checkpoint, DatasetStore(store).steps)
    return runner, store, checkpoint, folder


def test_random_forest_from_cli_and_config_agree(setup):
    runner, store, _, folder = setup
    record = runner.run_method(runner.config.scenarios[0], "rf", seed=0)
    out = folder / "rf.json"
    flags = ["--n-estimators", "5", "--max-samples-per-class", "300", "--seed", "0"]
    argv = ["baseline", str(store), "--bands", "VH", "VV", "--timesteps", "all", *flags]
    assert main([*argv, "--jobs", "1", "--out", str(out)]) == 0
    cli = json.loads(out.read_text())["early_season"]
    assert curve(cli) == curve(record["early_season"])  # every metric at every t, exactly
    assert cli[max(cli, key=int)]["iou"] > 0


def test_ri_from_cli_and_config_agree(setup):
    runner, store, checkpoint, folder = setup
    record = runner.run_method(runner.config.scenarios[0], "ri", seed=0)
    run = folder / "ri"
    argv = ["finetune", str(checkpoint), str(store), "--strategy", "ri", "--bands", "VH", "VV"]
    assert main([*argv, "--out", str(run), "--quiet", *FLAGS]) == 0
    model = run / "model.safetensors"
    meta = read_metadata(model)
    assert meta.strategy == "ri" and meta.positive == ["rice"]  # the store's class
    assert "train split of" in meta.normalization_source  # the target's statistics
    out = folder / "ri.json"
    assert main(["evaluate", str(model), str(store), "--timesteps", "all", "--out", str(out)]) == 0
    cli = json.loads(out.read_text())["early_season"]
    assert curve(cli) == curve(record["early_season"])
    config_meta = read_metadata(record["checkpoint"])
    assert config_meta.normalization == meta.normalization
