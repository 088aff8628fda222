"""The GPU benchmark runs end to end on the CPU in its tiny mode and writes every section.

Nothing is timed here; the numbers come from ``python -m benchmarks.gpu`` on a GPU.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from benchmarks import gpu


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_cpu_run_measures_every_section(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu.main(["--out", str(tmp_path), "--device", "cpu", "--quick"])
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["mode"] == "quick" and data["device"] == "cpu"
    assert not [
        name for name, entry in data.items() if isinstance(entry, dict) and "error" in entry
    ]
    assert data["ceiling"]["fp32"]["gflops"] > 0 and data["ceiling"]["bf16"]["gflops"] > 0
    inference = data["inference"]
    assert inference["eager_fp32"]["patches_per_s"] > 0
    assert 0.9 <= inference["bf16_autocast"]["sign_agreement"] <= 1
    variants = data["variants"]
    assert variants["bf16_weights_batch_x4"]["batch"] == 4 * inference["batch"]
    assert all(v["patches_per_s"] > 0 for k, v in variants.items() if isinstance(v, dict))
    assert variants["profile"] and 0 < variants["profile"][0]["share"] <= 1
    assert "aten::" in (tmp_path / "gpu-profile.txt").read_text()
    assert data["training"]["bf16_mixed"]["samples_per_s"] > 0
    assert data["lightning_fit"]["precision"] == "bf16-mixed"
    assert data["predict"]["km2_per_min"] > 0 and data["predict"]["raw_read"]["mb_per_s"] > 0
    dask = data["predict"]["dask"]  # the same map from two worker processes on the cpu
    assert dask["workers"] == 2 and dask["km2_per_min"] > 0 and dask["same_map"] is True
    estimate = data["estimate"]
    assert estimate["epochs"] == gpu.PAPER_EPOCHS and estimate["total_min"] > 0
    assert estimate["config_epochs"] == gpu.paper_config_epochs()


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the full run is the check there")
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu.main(["--out", str(tmp_path)])
