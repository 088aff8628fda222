"""Faults lose nothing: SIGKILL, a full disk and a read-only output directory.

- ``sarcrop train`` killed with SIGKILL after its first checkpoint, then restarted with the same
  command, resumes from ``last.ckpt`` and ends with the same metrics and weights as a run that
  was never interrupted (seeded, CPU).
- ``simulate``, ``prepare``, ``train`` and ``predict`` killed at random moments of their
  writing leave every final-named output complete and readable, or absent.
- A full disk (a real 1 MiB tmpfs) and a read-only output directory (as root, the command
  runs with its capabilities dropped, since they bypass permissions) give a one-line error,
  exit code 2, and leave a previous good output under the final name intact; a failed store
  write leaves no temporary behind, even with Zarr's concurrent chunk writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import faults_support as fs
from sarcrop.data.store import DatasetStore

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TRAIN = [
    "--epochs",
    "3",
    "--batch-size",
    "2",
    "--accelerator",
    "cpu",
    "--quiet",
    "--seed",
    "0",
    "--num-workers",
    "0",
    "--model-options",
    '{"widths": [4, 8]}',
    "--val-fraction",
    "0.4",
]
# Random draws in every batch, which a resumed run must go on with as the run it resumes.
DRAWS = ["--date-dropout", "0.25", "--level-jitter", "0.5"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    fs.write_scenes(root / "scenes")
    fs.write_label_raster(root / "labels.tif")
    fs.run_ok(fs.prepare_args(root / "scenes", root / "labels.tif", root / "store.zarr"))
    model = fs.tiny_checkpoint(root / "model.safetensors")
    return {
        "root": root,
        "scenes": root / "scenes",
        "labels": root / "labels.tif",
        "store": root / "store.zarr",
        "model": model,
    }


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        fs.kill_group(proc)
        raise
    return proc.returncode, err


# ------------------------------------------------------------------------------ resume


def _tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_a_run_without_validation_interrupted_by_ctrl_c_resumes(inputs, tmp_path):
    """Ctrl-C (SIGINT) in a run without validation (``val_fraction 0``, the few-label recipe):
    one line, exit code 130, a ``last.ckpt`` from its first epoch on, and the same command
    then resumes from it to the result of a run never interrupted."""
    argv = [a if a != "0.4" else "0" for a in [*TRAIN, *DRAWS]]  # no validation
    argv[argv.index("--epochs") + 1] = "30"
    reference = fs.sarcrop_process(["train", inputs["store"], "--out", tmp_path / "ref", *argv])
    run = tmp_path / "run"
    interrupted = fs.sarcrop_process(["train", inputs["store"], "--out", run, *argv])
    try:
        assert fs.wait_for(lambda: (run / "last.ckpt").is_file(), 240, interrupted)
        assert interrupted.poll() is None, "the run finished before it could be interrupted"
        os.killpg(interrupted.pid, signal.SIGINT)
        code, err = _finish(interrupted)
    finally:
        fs.kill_group(interrupted)
    assert (code, err) == (130, "sarcrop train: interrupted\n")
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    code, err = _finish(fs.sarcrop_process(["train", inputs["store"], "--out", run, *argv]))
    assert code == 0, err
    ref_code, ref_err = _finish(reference)
    assert ref_code == 0, ref_err
    resumed = json.loads((run / "run.json").read_text())["result"]
    assert resumed["resumed"] is True and resumed["epochs"] == 30
    ours, theirs = (
        _tensors(run / "model.safetensors"),
        _tensors(tmp_path / "ref" / "model.safetensors"),
    )
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_train_killed_mid_run_resumes_to_the_same_result(inputs, tmp_path):
    """A run with validation killed outright (SIGKILL) after its first checkpoint: the same
    command resumes it to the result of a run never interrupted, random draws included."""
    options = [*TRAIN, *DRAWS]
    reference = fs.sarcrop_process(["train", inputs["store"], "--out", tmp_path / "ref", *options])
    run = tmp_path / "run"
    argv = ["train", inputs["store"], "--out", run, *options]
    killed = fs.sarcrop_process(argv)
    try:
        frozen = fs.freeze_when(lambda: (run / "last.ckpt").is_file(), killed)
    finally:
        fs.kill_group(killed)
    assert frozen, f"the run ended (exit {killed.returncode}) before its first checkpoint"
    assert killed.returncode == -signal.SIGKILL
    assert not (run / "model.safetensors").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    for path in fs.final_names(run):
        fs.check_output(path)

    code, err = _finish(fs.sarcrop_process(argv))
    assert code == 0, err
    ref_code, ref_err = _finish(reference)
    assert ref_code == 0, ref_err

    resumed = json.loads((run / "run.json").read_text())
    plain = json.loads((tmp_path / "ref" / "run.json").read_text())
    assert resumed["status"] == plain["status"] == "complete"
    assert resumed["result"]["resumed"] is True and plain["result"]["resumed"] is False
    for key in ("best_val_iou", "best_epoch", "epochs"):
        assert resumed["result"][key] == pytest.approx(plain["result"][key], abs=1e-6), key
    ours, theirs = (
        _tensors(run / "model.safetensors"),
        _tensors(tmp_path / "ref" / "model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-5, err_msg=name)
    val = [r for r in _csv(run / "metrics.csv") if r.get("val_iou")]
    val_ref = [r for r in _csv(tmp_path / "ref" / "metrics.csv") if r.get("val_iou")]
    assert [r["epoch"] for r in val] == [r["epoch"] for r in val_ref] == ["0", "1", "2"]
    for a, b in zip(val, val_ref, strict=True):  # the loss too: the IoU of so small a model
        for key in ("val_iou", "val_loss"):  # may stay at 0 whatever it draws
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), (key, a["epoch"])


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------ kill anywhere


def _commands(inputs: dict[str, Path], out: Path) -> dict[str, tuple[list[object], Path]]:
    """Each long command and the folder holding its outputs."""
    return {
        "simulate": (
            ["simulate", "spain", "--out", out / "sim", "--size", "48", "48"],
            out / "sim",
        ),
        "prepare": (
            fs.prepare_args(inputs["scenes"], inputs["labels"], out / "o" / "s.zarr"),
            out / "o",
        ),
        "train": (["train", inputs["store"], "--out", out / "run", *TRAIN], out / "run"),
        "predict": (
            [
                "predict",
                inputs["model"],
                "--images",
                inputs["scenes"],
                "--out",
                out / "m" / "map.tif",
                "--window",
                "16",
                "--overlap",
                "4",
                "--quiet",
            ],
            out / "m",
        ),
    }


# At most this many paths of each command's outputs appear before the kill: fewer than each
# writes (59, 160, 11 and 9, temporaries included), so the kill always lands mid-work.
KILL_AFTER_PATHS = {"simulate": 20, "prepare": 60, "train": 5, "predict": 4}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["simulate", "prepare", "train", "predict"])
def test_killed_at_a_random_moment_leaves_complete_outputs(inputs, tmp_path, command):
    """SIGKILL once a seeded random number of output paths has appeared (a moment of the
    command's writing, not of its start-up), check every final name, restart in place."""
    argv, folder = _commands(inputs, tmp_path)[command]
    paths = random.Random(f"kill-{command}").randint(1, KILL_AFTER_PATHS[command])
    proc = fs.sarcrop_process(argv)
    try:
        frozen = fs.freeze_when(fs.paths_appeared(folder, paths), proc)
    finally:
        fs.kill_group(proc)
    assert frozen, f"{command} ended (exit {proc.returncode}) before {paths} paths appeared"
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    if folder.exists():
        for path in fs.final_names(folder):
            fs.check_output(path)
    # The same command run again over what the killed run left completes.
    code, err = _finish(fs.sarcrop_process(argv))
    assert code == 0, err
    finals = fs.final_names(folder)
    assert finals
    for path in finals:
        fs.check_output(path)
    if command in ("prepare", "predict"):  # written under a lock: the rerun clears the rest
        assert not fs.temporaries(folder) and not list(folder.rglob("*.lock"))


# ------------------------------------------------------------------------------ disk full


@contextlib.contextmanager
def tiny_tmpfs(size: str = "1m") -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="sarcrop-full-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
        try:
            yield folder
        finally:
            subprocess.run(["umount", folder], check=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with open(folder / "filler", "wb") as handle, contextlib.suppress(OSError):
        handle.write(b"\0" * max(0, free - leave))


def test_disk_full_gives_a_clear_error_and_keeps_the_old_output(inputs, capsys):
    with tiny_tmpfs() as disk:
        out = disk / "store.zarr"
        argv = fs.prepare_args(inputs["scenes"], inputs["labels"], out)
        code, err = fs.run_cli(argv, capsys)
        assert code == 0, err
        before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        _fill(disk, leave=4096)
        code, err = fs.run_cli(argv, capsys)
        fs.assert_clean_error(code, err, "No space left on device")
        after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert after == before
        fs.check_store(out)
        assert not fs.temporaries(disk)

        # The same for a map and a checkpoint (single files).
        (disk / "filler").unlink()
        map_path = disk / "map.tif"
        predict = [
            "predict",
            inputs["model"],
            "--images",
            inputs["scenes"],
            "--out",
            map_path,
            "--window",
            "16",
            "--overlap",
            "4",
            "--quiet",
        ]
        code, err = fs.run_cli(predict, capsys)
        assert code == 0, err
        good = map_path.read_bytes()
        _fill(disk, leave=2048)
        code, err = fs.run_cli([*predict, "--threshold", "0.3"], capsys)
        fs.assert_clean_error(code, err, "No space left on device")
        assert map_path.read_bytes() == good
        fs.check_map(map_path)


def test_a_failed_store_write_leaves_no_writer_behind(tmp_path, monkeypatch):
    """One chunk fails while others are still being written: none of them outlives the error.

    Zarr writes chunks concurrently in worker threads; the slow writes below would recreate
    the temporary folder after its removal if the store were not drained first. The writes
    count themselves, so the check needs no guess of how long a write takes.
    """
    import errno
    import threading
    import time

    from sarcrop.data import store as store_module
    from sarcrop.errors import SarcropError

    real_write = store_module._write_file
    started: list[str] = []
    running = 0
    count = threading.Lock()

    def write(path: Path, data: bytes) -> None:
        nonlocal running
        key = path.as_posix().split(".tmp-", 1)[1].split("/", 1)[1]  # e.g. images/c/3/0/0/0/0
        if "/c/" not in key:
            real_write(path, data)
            return
        with count:
            started.append(key)
            running += 1
        try:
            if key.startswith("images/c/3/"):
                raise OSError(errno.ENOSPC, "No space left on device")
            time.sleep(0.2)
            real_write(path, data)
        finally:
            with count:
                running -= 1

    monkeypatch.setattr(store_module, "_write_file", write)
    with (
        pytest.raises(SarcropError, match="No space left on device"),
        store_module.create_store(tmp_path / "s.zarr", steps=2, bands=1, patch_size=4) as writer,
    ):
        writer.append(np.zeros((8, 2, 1, 4, 4), np.float32), np.zeros((8, 4, 4), np.int16))
    with count:
        assert running == 0, f"{running} chunk writes still running after the error"
    assert any(key.startswith("images/c/3/") for key in started)
    assert len(started) > 1  # the failed chunk was not the only one under way
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ read-only


def _unprivileged() -> list[str]:
    """A command prefix under which permission bits apply, wherever the repository lives.

    Root passes every permission check through its capabilities, so as root the command runs
    with all of them dropped (``setpriv``): still uid 0, so it reaches the interpreter, the
    virtualenv and the inputs wherever they are (a clone in a 0700 home included), but a 0555
    directory is as read-only to it as to any user. Any other user needs no prefix.
    """
    if os.geteuid() != 0:
        prefix: list[str] = []
    elif (setpriv := shutil.which("setpriv")) is not None:
        prefix = [setpriv, "--inh-caps=-all", "--bounding-set=-all"]
    else:
        pytest.skip("running as root: needs setpriv (util-linux) to drop root's capabilities")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import sarcrop.cli"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot start sarcrop without privileges: {reason}")
    return [*prefix, sys.executable, "-m", "sarcrop"]


def _run_unprivileged(argv: list[object], cwd: Path) -> subprocess.CompletedProcess:
    home = cwd / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*_unprivileged(), *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("command", ["prepare", "predict", "train"])
def test_read_only_output_directory(inputs, tmp_path, command):
    # Copies: the inputs stay intact whatever the command does.
    shutil.copytree(inputs["root"], tmp_path / "in")
    inputs = {k: tmp_path / "in" / v.relative_to(inputs["root"]) for k, v in inputs.items()}
    outdir = tmp_path / "out"
    outdir.mkdir()
    previous = outdir / "keep.txt"
    previous.write_text("a previous good output\n")
    final = {"prepare": outdir / "s.zarr", "predict": outdir / "map.tif", "train": outdir}[command]
    argv = {
        "prepare": fs.prepare_args(inputs["scenes"], inputs["labels"], final),
        "predict": [
            "predict",
            inputs["model"],
            "--images",
            inputs["scenes"],
            "--out",
            final,
            "--window",
            "16",
            "--overlap",
            "4",
            "--quiet",
        ],
        "train": ["train", inputs["store"], "--out", final, *TRAIN],
    }[command]
    os.chmod(outdir, 0o555)
    try:
        proc = _run_unprivileged(argv, tmp_path)
    finally:
        os.chmod(outdir, 0o755)
    line = fs.assert_clean_error(proc.returncode, proc.stderr, outdir)
    assert "output directory is not writable" in line, line
    assert previous.read_text() == "a previous good output\n"
    assert sorted(p.name for p in outdir.iterdir()) == ["keep.txt"]


def test_an_unwritable_output_directory_is_refused_before_anything_is_written(tmp_path):
    """The refusal comes from the check of the directory, not from a failed write: the same
    line for every command, and no temporary file attempted. Run without privileges, since
    root's capabilities pass every permission check."""
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    code = (
        "import sys\n"
        "from sarcrop.errors import SarcropError\n"
        "from sarcrop.utils import atomic\n"
        "def refused(*args, **kwargs):\n"
        "    raise AssertionError('a temporary file was attempted')\n"
        "atomic.tempfile.mkstemp = atomic.tempfile.mkdtemp = refused\n"
        "try:\n"
        "    atomic.write_text_atomic(sys.argv[1], 'x')\n"
        "except SarcropError as exc:\n"
        "    print(exc)\n"
    )
    prefix = _unprivileged()[:-2]  # the interpreter, without "-m sarcrop"
    try:
        done = subprocess.run(
            [*prefix, "-c", code, str(folder / "x.txt")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.chmod(folder, 0o755)
    assert done.returncode == 0, done.stderr
    assert "output directory is not writable" in done.stdout and str(folder) in done.stdout
    assert list(folder.iterdir()) == []


def test_a_store_written_again_clears_what_a_killed_run_left_and_refuses_a_second_writer(
    inputs, tmp_path, capsys
):
    """A store is written under ``<store>.lock``: a second prepare of it stops at once, and the
    next run removes a killed run's temporaries, or puts back the store it had moved aside."""
    from sarcrop.utils.atomic import lock_path, output_lock

    out = tmp_path / "s.zarr"
    argv = fs.prepare_args(inputs["scenes"], inputs["labels"], out)
    with output_lock(out, busy="held by the test", what="a store"):
        code, err = fs.run_cli(argv, capsys)
    fs.assert_clean_error(code, err, "another run is writing this store")
    assert not out.exists()

    # Killed while writing (a temporary) and between the two renames of an overwrite (the
    # previous store moved aside, not yet replaced).
    killed = tmp_path / ".s.zarr.tmp-k9x2"
    shutil.copytree(inputs["store"], killed)
    shutil.copytree(inputs["store"], tmp_path / ".s.zarr.old-4242")
    other = tmp_path / ".other.zarr.tmp-k9x2"  # another store's: not this run's to remove
    other.mkdir()
    with output_lock(out, busy="held by the test", what="a store"):
        fs.check_store(out)  # the store moved aside is back under its name
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            ".other.zarr.tmp-k9x2",
            "s.zarr",
            "s.zarr.lock",
        ]
    killed.mkdir()  # killed again while writing
    code, err = fs.run_cli(argv, capsys)
    assert code == 0, err
    fs.check_store(out)
    assert not lock_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.zarr.tmp-k9x2", "s.zarr"]


def test_store_survives_a_failed_overwrite(inputs, tmp_path, capsys):
    """A prepare that fails on bad input leaves the store of an earlier run intact."""
    out = tmp_path / "s.zarr"
    shutil.copytree(inputs["store"], out)
    before = len(DatasetStore(out))
    code, err = fs.run_cli(
        fs.prepare_args(inputs["scenes"], inputs["labels"], out, "--season-start", "2019-01-01"),
        capsys,
    )
    fs.assert_clean_error(code, err, "no acquisition falls in the season")
    assert len(DatasetStore(out)) == before
    fs.check_store(out)


def test_simulate_restarts_over_temporaries_of_a_killed_run(tmp_path):
    """A killed simulation leaves hidden temporaries; running it again must not trip on them."""
    from sarcrop.data.simulate import simulate_region

    first = simulate_region("spain", tmp_path / "sim", size=(16, 16))
    scene = sorted(first.scenes)[0] if first.scenes else None
    scene = Path(scene) if scene else sorted((tmp_path / "sim" / "scenes").glob("S1*.tif"))[0]
    leftover = scene.with_name(f".{scene.name}.tmp-killed.tif")
    leftover.write_bytes(b"partial")
    again = simulate_region("spain", tmp_path / "sim", size=(16, 16))
    assert len(again.scenes) == len(first.scenes)
    for path in fs.final_names(tmp_path / "sim"):
        fs.check_output(path)


@pytest.mark.slow
def test_a_two_process_training_prints_its_summary_once(inputs, tmp_path):
    """Both processes of a DDP run return from training; only the one that writes speaks."""
    argv = ["train", inputs["store"], "--out", tmp_path / "run", *TRAIN]
    argv += ["--devices", "2", "--distributed", "ddp", "--epochs", "1"]
    proc = fs.sarcrop_process(argv, env={"PYTHONWARNINGS": "ignore"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    said = [line for line in out.splitlines() if line.startswith("model: ")]
    assert said == [f"model: {tmp_path / 'run' / 'model.safetensors'}"], out
