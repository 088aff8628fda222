"""Random corruptions of a small valid input: a clean one-line error or a valid output, only.

Hypothesis breaks a copy of a tiny valid input (8 GeoTIFF scenes, a label raster, parcels, a
checkpoint) in one or more random ways — truncating a file at a random byte, flipping bytes,
setting a random region to NaN/Inf/nodata, dropping a band, changing the CRS of one file,
shifting its transform, removing the label file, writing garbage parcels, tampering with the
checkpoint's header — then runs ``sarcrop prepare`` and ``sarcrop predict`` in this process.
Each run must either fail with a one-line user error naming a path, or write an output that
opens and validates. No other exception, never a partial output under the final name and no
temporary left behind. The corruptions live in ``faults_support``; ``make fuzz`` runs the same
properties (and ``finetune`` on corrupted stores) at depth.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faults_support as fs

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return fs.write_valid_inputs(tmp_path_factory.mktemp("valid"))


def _broken_copy(base: Path, tmp_path: Path, changes: list[tuple]) -> Path:
    root = tmp_path / "in"
    shutil.rmtree(tmp_path, ignore_errors=True)
    shutil.copytree(base, root)
    for change in changes:
        fs.corrupt(root, change)
    return root


def _check(argv: list[str], folder: Path, final: Path, check) -> None:
    outcome = fs.run_command(argv)
    assert outcome.kind != "crash", outcome.message
    if outcome.kind == "error":
        assert "/" in outcome.message, f"no path named: {outcome.message}"
    problem = fs.output_problem(folder, final, outcome, check)
    assert problem is None, problem


@SETTINGS
@given(
    st.lists(fs.corruption_strategy(fs.SCENE_KINDS + fs.LABEL_KINDS), min_size=1, max_size=3),
    st.sampled_from(["labels.tif", "parcels.gpkg"]),
)
def test_prepare_on_corrupted_input(base, tmp_path, changes, labels_name):
    root = _broken_copy(base, tmp_path / "case", changes)
    out = tmp_path / "case" / "out" / "s.zarr"
    argv = fs.prepare_args(root / "scenes", root / labels_name, out)
    _check(argv, out.parent, out, fs.check_store)


@settings(SETTINGS, max_examples=20)
@given(
    st.lists(fs.corruption_strategy(fs.SCENE_KINDS + fs.CHECKPOINT_KINDS), min_size=1, max_size=3)
)
def test_predict_on_corrupted_input(base, tmp_path, changes):
    root = _broken_copy(base, tmp_path / "case", changes)
    out = tmp_path / "case" / "out" / "map.tif"
    argv = fs.predict_args(root / "model.safetensors", root / "scenes", out, "--threads", "1")
    _check(argv, out.parent, out, fs.check_map)


@pytest.mark.parametrize(
    "damage",
    [
        ("store_garbage", 3, 1, 40),  # a train chunk of random bytes: blosc cannot decode it
        ("store_array", 4, 1, 0),  # labels/zarr.json: chunk_shape null
        ("store_array", 9, 2, 1),  # images/zarr.json: node_type "x"
        ("store_flip", 9, 35, 40),  # a flipped byte in images/zarr.json
    ],
)
def test_damaged_store_is_a_clean_error(base, tmp_path, damage):
    """Found by ``make fuzz``: damaged array metadata or chunks crashed ``finetune``."""
    root = _broken_copy(base, tmp_path / "case", [damage])
    store, out = root / "store.zarr", tmp_path / "case" / "out" / "run"
    argv = ["finetune", str(root / "model.safetensors"), str(store), "--out", str(out)]
    argv += ["--strategy", "ft", "--epochs", "1", "--accelerator", "cpu", "--quiet"]
    outcome = fs.run_command(argv)
    assert outcome.kind == "error", outcome.message
    assert str(store) in outcome.message
    assert not (out / "model.safetensors").exists()
