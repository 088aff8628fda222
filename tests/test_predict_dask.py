"""Prediction on a real Dask cluster gives the single-process map bit for bit."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
from distributed import LocalCluster

from faults_support import TERMINAL_SIGINT
from sarcrop.options import ExecutionOptions, WindowOptions
from sarcrop.prediction import WindowLayout, predict_map
from sarcrop.prediction.predict import work_dir
from test_predict import _with_descending_passes, read_map, save_tiny_checkpoint, write_scenes

# 4 × 4 windows in blocks of 2: block borders cross the area in both directions.
WINDOWS = WindowOptions(window=64, overlap=16, batch_size=3, block_windows=2, block_rows=2)
OPTIONS = {"windows": WINDOWS, "progress": False}


def two_worker_cluster() -> LocalCluster:
    """A real local Dask cluster of two single-threaded worker processes."""
    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("dask")
    scenes = write_scenes(root / "scenes", 200, 180, seed=7)
    ckpt = save_tiny_checkpoint(root / "tiny.safetensors")
    single = predict_map(ckpt, scenes, root / "single.tif", **OPTIONS)
    return scenes, ckpt, single


@pytest.fixture(scope="module")
def one_thread(inputs: tuple[Path, Path, Path]) -> Path:
    """The single-process map with one thread: the count a cluster of one-thread workers
    computes with by default (CPU convolutions may round otherwise with another count)."""
    scenes, ckpt, single = inputs
    execution = ExecutionOptions(threads=1)
    return predict_map(ckpt, scenes, single.with_name("one.tif"), execution=execution, **OPTIONS)


def test_existing_cluster_matches_single_process(
    inputs: tuple[Path, Path, Path], one_thread: Path, tmp_path: Path
) -> None:
    scenes, ckpt, _ = inputs
    later = dt.date(2022, 5, 1)  # the same backscatter a year later
    next_year = write_scenes(tmp_path / "2022", 200, 180, seed=7, first=later)
    with two_worker_cluster() as cluster:
        execution = ExecutionOptions(scheduler=cluster.scheduler_address)
        out = predict_map(ckpt, scenes, tmp_path / "dask.tif", execution=execution, **OPTIONS)
        # the workers read the model's periods moved to the next year
        moved = tmp_path / "moved.tif"
        predict_map(ckpt, next_year, moved, season_start=later, execution=execution, **OPTIONS)
    expected, got = read_map(one_thread), read_map(out)
    assert got.dtype == np.uint8 and got.shape == (2, 200, 180)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(read_map(moved), expected)
    assert not work_dir(out).exists()


def _responsive(ckpt: Path, out: Path) -> Path:
    """The tiny model with its weights tripled: its map follows the input (the tiny model's
    is one level nearly everywhere)."""
    import torch

    from sarcrop.training import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(ckpt)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.ndim > 1):
            weight.mul_(3.0)
    return save_checkpoint(out, model, meta)


def test_a_long_lived_cluster_maps_the_scenes_added_since_its_last_map(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Workers keep the scenes they opened for a map; the next map of the folder, with scenes
    added since, is the one a single process makes of it (the workers used the old list)."""
    scenes, ckpt, _ = inputs
    ckpt = _responsive(ckpt, tmp_path / "responsive.safetensors")
    folder = tmp_path / "scenes"
    shutil.copytree(scenes, folder)
    single = ExecutionOptions(threads=1)
    with two_worker_cluster() as cluster:
        execution = ExecutionOptions(scheduler=cluster.scheduler_address)
        predict_map(ckpt, folder, tmp_path / "before.tif", execution=execution, **OPTIONS)
        two_orbits = _with_descending_passes(scenes, tmp_path / "two-orbits")
        for added in two_orbits.glob("*_DESC_*.tif"):  # passes 3 dB brighter
            shutil.copy2(added, folder / added.name)
        after = predict_map(ckpt, folder, tmp_path / "after.tif", execution=execution, **OPTIONS)
    expected = predict_map(ckpt, folder, tmp_path / "one.tif", execution=single, **OPTIONS)
    np.testing.assert_array_equal(read_map(after), read_map(expected))
    assert not np.array_equal(read_map(after), read_map(tmp_path / "before.tif"))


def test_workers_started_elsewhere_read_a_relative_images_path(
    inputs: tuple[Path, Path, Path],
    one_thread: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cluster's workers run in their own folder: ``--images scenes`` is theirs too once the
    client makes it absolute (it failed on them with "scenes: no such file or folder")."""
    scenes, ckpt, _ = inputs
    monkeypatch.chdir("/")
    with two_worker_cluster() as cluster:
        monkeypatch.chdir(scenes.parent)
        execution = ExecutionOptions(scheduler=cluster.scheduler_address)
        out = predict_map(ckpt, scenes.name, tmp_path / "dask.tif", execution=execution, **OPTIONS)
    np.testing.assert_array_equal(read_map(out), read_map(one_thread))
    with rasterio.open(out) as src:  # the workers' one thread each, not the client's cores
        assert src.tags()["THREADS"] == "1"


def test_local_workers_resume_a_single_process_run(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    scenes, ckpt, single = inputs
    out = tmp_path / "mixed.tif"

    def interrupt(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_map(ckpt, scenes, out, on_block=interrupt, **OPTIONS)
    done: list[int] = []
    # The default thread count of two workers differs from one process's; the resumed run
    # keeps the count its finished blocks were computed with.
    workers = ExecutionOptions(workers=2)
    predict_map(ckpt, scenes, out, execution=workers, on_block=done.append, **OPTIONS)
    assert sorted(done) == list(range(2, WindowLayout(200, 180, 64, 16, 2, 2).n_blocks))
    np.testing.assert_array_equal(read_map(out), read_map(single))


HELD_AT_A_BLOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sarcrop.cli import main
    from sarcrop.prediction import predict

    ready = Path(sys.argv[1])
    atomic_path = predict.atomic_path

    def held(path, **kwargs):  # a block's result back from a worker, being saved
        ready.touch()
        time.sleep(600)
        return atomic_path(path, **kwargs)

    predict.atomic_path = held
    sys.exit(main(sys.argv[2:]))
""")


def test_ctrl_c_stops_local_workers_with_one_line(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during a run on local
    workers: the workers leave it to the run, which stops them and says so in one line."""
    scenes, ckpt, _ = inputs
    ready = tmp_path / "ready"
    argv = ["predict", str(ckpt), "--images", str(scenes), "--out", str(tmp_path / "m.tif")]
    argv += ["--workers", "2", "--window", "64", "--overlap", "16", "--quiet"]
    port = socket.socket()  # Dask's default HTTP port held, as by another cluster running
    with contextlib.suppress(OSError):
        port.bind(("", 8787))
        port.listen()
    run = psutil.Popen(
        [sys.executable, "-c", TERMINAL_SIGINT + HELD_AT_A_BLOCK, str(ready), *argv],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "no block came back from the workers"
            time.sleep(0.1)
        workers = run.children(recursive=True)
        os.killpg(run.pid, signal.SIGINT)
        _, err = run.communicate(timeout=120)
        _, alive = psutil.wait_procs(workers, timeout=60)
    finally:
        port.close()
        for process in [run, *workers]:
            with contextlib.suppress(psutil.Error):
                process.kill()
    assert (run.returncode, err) == (130, "sarcrop predict: interrupted\n")
    assert workers and alive == []
