"""The benchmark suite runs end to end in its tiny mode and writes both outputs.

Nothing is timed here: the suite's numbers are only meaningful from ``python -m benchmarks.run``
on a quiet machine.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from benchmarks import report
from benchmarks.run import main


@pytest.mark.timeout(120)
def test_quick_run_writes_json_and_markdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ONNX / compile variants are exercised by the full run; keep the smoke test small.
    from benchmarks import models, training

    monkeypatch.setattr(models, "onnx_variant", lambda *a, **k: {"skipped": "smoke test"})
    for module in (models, training):
        monkeypatch.setattr(module, "MODEL_NAMES", ("recurrent_unet", "utae"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["--out", str(tmp_path), "--quick", "--sections", "ceiling,models,training"])
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert data["mode"] == "quick"
    assert data["machine"]["threads"] == torch.get_num_threads()
    assert len(data["machine"]["load_average"]) in (0, 3)
    assert data["ceiling"]["conv2d"]["gflops"] > 0
    ours = data["models"]["models"]["recurrent_unet"]
    assert ours["flops_per_patch"] > 0
    assert ours["best"]["fraction_of_ceiling"] > 0
    assert set(ours["variants"]) == {"bf16_autocast", "onnxruntime", "torch_compile"}
    assert data["training"]["models"]["utae"]["best"]["samples_per_s"] > 0
    text = (tmp_path / "benchmark.md").read_text()
    assert "| **recurrent_unet** |" in text
    assert "Compute ceiling" in text
    assert not list(tmp_path.glob("*.tmp*"))


def test_markdown_marks_targets() -> None:
    entry = {
        "best": {"patches_per_s": 2.0, "fraction_of_ceiling": 0.6},
        "best_format": "channels_last",
        "flops_per_patch": 1e9,
        "formats": {},
        "batch_sizes": {},
    }
    data = {
        "models": {
            "models": {"recurrent_unet": entry, "utae": {**entry, "best": {"patches_per_s": 1.0}}}
        }
    }
    text = report._targets(data)
    assert "60%, reached" in text
    assert "2.00× U-TAE" in text


def test_onnx_model_reproduces_logits() -> None:
    from sarcrop.models import build_model
    from sarcrop.prediction.onnx_export import OnnxModel

    torch.manual_seed(0)
    model = build_model("recurrent_unet", in_bands=2, time_steps=8, widths=(8, 16)).eval()
    x = torch.rand(1, 8, 2, 32, 32)
    with torch.inference_mode():
        expected = model(x)
    got = OnnxModel(model, x.shape, threads=1)(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_tiled_scenes_repeat_each_scene_with_its_metadata(tmp_path: Path) -> None:
    import numpy as np
    import rasterio
    from benchmarks.predict_area import tiled
    from rasterio.transform import from_origin

    scenes = tmp_path / "region" / "scenes"
    scenes.mkdir(parents=True)
    data = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    profile = {
        "driver": "GTiff", "width": 7, "height": 5, "count": 2, "dtype": "float32",
        "crs": "EPSG:32652", "transform": from_origin(300000, 4000000, 10, 10), "nodata": -9999,
    }  # fmt: skip
    with rasterio.open(scenes / "S1A_20190509.tif", "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("VH", "VV")
        dst.update_tags(ACQUISITION_TIME="2019-05-09T09:25:19")
    (vrt,) = tiled(scenes, 3).glob("*.vrt")
    with rasterio.open(vrt) as src:
        assert (src.width, src.height) == (21, 15)
        assert src.descriptions == ("VH", "VV")
        assert src.tags()["ACQUISITION_TIME"] == "2019-05-09T09:25:19"
        assert src.transform == profile["transform"] and src.crs.to_epsg() == 32652
        assert src.nodata == -9999
        np.testing.assert_array_equal(src.read(), np.tile(data, (1, 3, 3)))


@pytest.mark.timeout(300)
def test_coverage_benchmarks_write_their_tables(tmp_path: Path) -> None:
    """The two coverage studies run end to end on a small region (a few draws: their numbers
    are docs/area.md's and docs/results.md's only at full size)."""
    from benchmarks import area_coverage, bootstrap_coverage

    assert area_coverage.main(["--out", str(tmp_path / "a"), "--draws", "2", "--size", "256"]) == 0
    table = pd.read_csv(tmp_path / "a" / "coverage.csv")
    assert len(table) == 4 * len(area_coverage.DESIGNS)
    assert table["coverage"].between(0, 1).all() and table["truth"].between(0, 1).all()
    argv = ["--out", str(tmp_path / "b"), "--size", "256", "--reps", "3", "--fields", "8"]
    assert bootstrap_coverage.main(argv) == 0
    draws = pd.read_csv(tmp_path / "b" / "coverage.csv")
    assert set(draws["design"]) == {"fields", "window"} and len(draws) == 6
    assert "| design | k |" in (tmp_path / "b" / "coverage.md").read_text()


def test_band_drop_benchmark_scores_the_shipped_model_on_vh_alone(tmp_path: Path, capsys) -> None:
    """benchmarks/band_drop.py on a small simulated europe store: the model as shipped, adapted
    to VH alone, and the rule up to 0.13.0 (which called nothing maize)."""
    from benchmarks.band_drop import main as band_drop

    from sarcrop.cli import main as cli

    region, store = tmp_path / "eu", tmp_path / "eu.zarr"
    assert cli(["simulate", "europe", "--seed", "3", "--size", "96", "96", "--out", str(region),
                "--quiet"]) == 0  # fmt: skip
    assert cli(["prepare", "--images", str(region), "--out", str(store), "--patch-size", "32",
                "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert band_drop([str(store)]) == 0
    shipped, adapted, doubled = capsys.readouterr().out.strip().splitlines()
    assert shipped.startswith("europe-maize on VH|VV as shipped: IoU ")
    assert adapted.startswith("on VH alone, adapted (W_VH + W_VV): IoU ")
    assert doubled.startswith("on VH alone, 2·W_VH (up to 0.13.0): IoU ")
    called = [int(line.split(", ")[-1].split()[0]) for line in (shipped, adapted)]
    assert min(called) > 0  # both map some maize
