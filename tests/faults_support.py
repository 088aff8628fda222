"""Test support for bad inputs and faults: tiny valid inputs, ways to corrupt them, and checks.

Everything here writes real files: GeoTIFF scenes in the simulator's convention (one file per
acquisition, ``S1A_IW_GRDH_<YYYYMMDDTHHMMSS>_ASC_<region>.tif``, float32 "VH"/"VV" bands, nodata
-9999, ``ACQUISITION_TIME`` and ``UNITS=dB`` tags), label rasters, parcel files, checkpoints,
and the corruptions of them the reliability tests feed to sarcrop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
from affine import Affine

from realdata_support import NODATA, write_scene

REPO = Path(__file__).resolve().parents[1]
SARCROP = str(Path(sys.executable).with_name("sarcrop"))
CRS = "EPSG:32631"
TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
SEASON_START = dt.date(2021, 5, 1)
STEPS, DAYS = 4, 10
SIZE = 24  # scene height and width in pixels
PATCH = 8
CLASSES = ("background", "rice", "maize")


def scene_times(n: int = 8) -> list[dt.datetime]:
    """Two acquisitions per composite period of the test season."""
    start = dt.datetime.combine(SEASON_START, dt.time(6, 0, 0))
    return [start + dt.timedelta(days=1 + 5 * i) for i in range(n)]


def label_array(size: int = SIZE) -> np.ndarray:
    """Class indices: background everywhere, a rice block and a maize block."""
    labels = np.zeros((size, size), np.uint8)
    labels[2:10, 2:12] = 1
    labels[12:22, 8:20] = 2
    return labels


def scene_values(k: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """(2, size, size) float32 dB: VH around -17, VV 6 dB above, rice darker early."""
    rng = np.random.default_rng(seed + k)
    vh = -17.0 + rng.normal(0, 1.0, (size, size))
    labels = label_array(size)
    vh[labels == 1] += -4.0 if k < 4 else 3.0
    return np.stack([vh, vh + 6.0]).astype(np.float32)


def write_scenes(folder: Path, n: int = 8, *, size: int = SIZE, **options: object) -> list[Path]:
    """``n`` valid acquisitions (see :func:`scene_times`) under ``folder``."""
    return [
        write_scene(folder, when, scene_values(k, size), region="test", **options)  # type: ignore[arg-type]
        for k, when in enumerate(scene_times(n))
    ]


def write_label_raster(
    path: Path,
    labels: np.ndarray | None = None,
    *,
    crs: str = CRS,
    transform: Affine = TRANSFORM,
    classes: Sequence[str] = CLASSES,
) -> Path:
    """A uint8 class raster with ``CLASS_<i>`` tags (nodata 255)."""
    labels = label_array() if labels is None else labels
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=labels.shape[1],
        height=labels.shape[0],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=255,
    ) as dst:
        dst.write(labels.astype(np.uint8), 1)
        dst.update_tags(**{f"CLASS_{i}": name for i, name in enumerate(classes)})
    return path


def write_parcels(path: Path, geometries: list[object], crops: list[str], crs: str = CRS) -> Path:
    """A parcel file (GeoPackage/GeoJSON by suffix) with a ``crop`` column."""
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"crop": crops}, geometry=geometries, crs=crs)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(path)
    return path


def grid_box(row0: int, col0: int, row1: int, col1: int):
    """A shapely box covering pixel rows/cols [row0, row1) × [col0, col1) of the test grid."""
    import shapely

    x0, y0 = TRANSFORM @ (col0, row0)
    x1, y1 = TRANSFORM @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def valid_parcels(path: Path, crs: str = CRS) -> Path:
    """Parcels matching :func:`label_array` (rice and maize), in ``crs``."""
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        {"crop": ["rice", "maize"]},
        geometry=[grid_box(2, 2, 10, 12), grid_box(12, 8, 22, 20)],
        crs=CRS,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_crs(crs).to_file(path)
    return path


def prepare_args(scenes: Path, labels: Path, out: Path, *extra: str) -> list[str]:
    """``sarcrop prepare`` arguments for the tiny test inputs."""
    return [
        "prepare",
        "--images",
        str(scenes),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--season-start",
        SEASON_START.isoformat(),
        "--timesteps",
        str(STEPS),
        "--days",
        str(DAYS),
        "--patch-size",
        str(PATCH),
        "--positive",
        "rice",
        "--quiet",
        *extra,
    ]


# ------------------------------------------------------------------------------ corruptions


def truncate(path: Path, keep: int | float) -> None:
    """Cut ``path`` to ``keep`` bytes (an int) or to that share of its size (a float)."""
    size = path.stat().st_size
    n = int(size * keep) if isinstance(keep, float) else int(keep)
    with open(path, "r+b") as handle:
        handle.truncate(max(0, min(n, size)))


def flip_bytes(path: Path, offsets: Sequence[int]) -> None:
    """Invert the bytes at ``offsets`` (taken modulo the file size)."""
    data = bytearray(path.read_bytes())
    if not data:
        return
    for offset in offsets:
        data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_scene(path: Path, **changes: object) -> Path:
    """Rewrite a scene with some of its properties changed.

    ``values`` (a function of the (bands, h, w) array), ``bands`` (descriptions), ``keep``
    (1-based band indices to keep), ``crs``, ``transform``, ``tags`` (added),
    ``drop_tags`` (removed), ``nodata``.
    """
    with rasterio.open(path) as src:
        data = src.read()
        profile = src.profile
        descriptions = list(src.descriptions)
        tags = src.tags()
    if "values" in changes:
        data = np.asarray(changes["values"](data), dtype=np.float32)  # type: ignore[operator]
    if "keep" in changes:
        keep = list(changes["keep"])  # type: ignore[call-overload]
        data = data[[i - 1 for i in keep]]
        descriptions = [descriptions[i - 1] for i in keep]
    if "bands" in changes:
        descriptions = list(changes["bands"])  # type: ignore[call-overload]
    for key in ("crs", "transform", "nodata"):
        if key in changes:
            profile[key] = changes[key]
    tags.update(changes.get("tags", {}))  # type: ignore[call-overload]
    for key in changes.get("drop_tags", ()):  # type: ignore[attr-defined]
        tags.pop(key, None)
    profile.update(count=data.shape[0])
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(descriptions)
        dst.update_tags(**tags)
    return path


# ------------------------------------------------------------------------------ running the CLI


def run_cli(argv: Sequence[str], capsys) -> tuple[int, str]:
    """Run ``sarcrop`` in this process; (exit code, stderr)."""
    from sarcrop.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def run_ok(argv: Sequence[object]) -> None:
    """Run ``sarcrop`` in this process and require success (to set up inputs)."""
    from sarcrop.cli import main

    code = main([str(a) for a in argv])
    assert code == 0, f"sarcrop {' '.join(map(str, argv))} exited with {code}"


def assert_clean_error(code: int, stderr: str, *names: object) -> str:
    """Exit code 2 and one line of stderr (ignoring warnings) naming each of ``names``."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error: " in ln]
    assert code == 2, f"exit code {code}, stderr:\n{stderr}"
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    line = errors[0]
    for name in names:
        assert str(name) in line, f"{name!s} not in {line!r}"
    return line


TERMINAL_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
"""The first line of a ``python -c`` program that a test interrupts with SIGINT: Ctrl-C as a
terminal gives it, also where the suite itself runs in the background (a non-interactive
shell's ``&`` starts it with SIGINT ignored, which every child then inherits)."""

_EXEC_WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def sarcrop_process(
    argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, **kw
) -> subprocess.Popen:
    """Start ``sarcrop`` in a new session (so a kill takes its workers too), with SIGINT's
    default action (see :data:`TERMINAL_SIGINT`; an ignored signal stays ignored across exec)."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-c", _EXEC_WITH_SIGINT, SARCROP, *map(str, argv)],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and everything in its process group, then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``predicate`` until true, ``timeout`` or the process ending."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(predicate())
        time.sleep(0.05)
    return False


def freeze_when(predicate, proc: subprocess.Popen, timeout: float = 240) -> bool:
    """Stop ``proc``'s process group (SIGSTOP) as soon as ``predicate`` holds, so that a kill
    that follows lands at that moment of its work, however fast the machine is. False if
    the process ended first (or ``timeout`` passed)."""
    if not wait_for(predicate, timeout, proc) or proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGSTOP)
    return proc.poll() is None


def paths_appeared(folder: Path, n: int):
    """A predicate: ``n`` paths (files or folders, temporaries included) have appeared under
    ``folder`` since it was made, counting those already removed again."""
    seen: set[str] = set()

    def appeared() -> bool:
        for parent, folders, files in os.walk(folder):  # a folder removed meanwhile is skipped
            seen.update(os.path.join(parent, name) for name in folders + files)
        return len(seen) >= n

    return appeared


# ------------------------------------------------------------------------------ validation


def final_names(folder: Path) -> list[Path]:
    """Every path under ``folder`` that is not a temporary sibling (``.<name>.tmp-…``) nor the
    map's intermediate in its work folder (``<map>.partial/assembled.tif``), which every run
    writes again from the saved blocks."""

    def temporary(path: Path) -> bool:
        parts = path.relative_to(folder).parts
        if path.name == "assembled.tif" and path.parent.name.endswith(".partial"):
            return True
        return any(part.startswith(".") and ".tmp-" in part for part in parts)

    return sorted(p for p in folder.rglob("*") if not temporary(p))


def temporaries(folder: Path) -> list[Path]:
    """Temporary siblings left behind under ``folder`` (by a killed process)."""
    return sorted(p for p in folder.rglob(".*.tmp-*"))


def check_store(path: Path) -> None:
    """Open a dataset store and read every patch: it must be complete and consistent."""
    from sarcrop.data.store import DatasetStore

    store = DatasetStore(path)
    n = len(store)
    assert n == len(store.offsets) == len(store.split) > 0
    for i in range(n):
        image, labels = store.read_patch(i)
        assert image.shape == (store.steps, len(store.bands), store.patch_size, store.patch_size)
        assert labels.shape == (store.patch_size, store.patch_size)
    assert len(store.normalization.min) == len(store.bands)


def check_map(path: Path) -> None:
    """Open a predicted map and read it fully: a complete uint8 GeoTIFF."""
    with rasterio.open(path) as src:
        assert src.count >= 1 and src.dtypes[0] == "uint8" and src.crs is not None
        data = src.read()
        assert data.shape[1:] == (src.height, src.width)


def check_geotiff(path: Path) -> None:
    """A scene, label raster or other GeoTIFF that opens and reads fully."""
    with rasterio.open(path) as src:
        src.read()


def check_checkpoint(path: Path) -> None:
    from sarcrop.training.checkpoint import load_checkpoint

    load_checkpoint(path)


def check_json(path: Path) -> None:
    json.loads(path.read_text(encoding="utf-8"))


def check_output(path: Path) -> None:
    """Validate any final-named file sarcrop writes, by kind."""
    name = path.name
    if path.is_dir():
        if name.endswith(".zarr"):
            check_store(path)
        return
    if name.endswith(".safetensors"):
        check_checkpoint(path)
    elif name.endswith((".tif", ".tiff")):
        check_geotiff(path)
    elif name.endswith(".json"):
        check_json(path)
    elif name.endswith(".ckpt"):
        import torch

        torch.load(path, map_location="cpu", weights_only=True)
    elif name.endswith(".gpkg"):
        import pyogrio

        pyogrio.read_info(path)
    elif name.endswith(".npz"):
        with np.load(path) as data:
            for key in data.files:
                data[key]


# ------------------------------------------------------------------------------ checkpoints


def tiny_checkpoint(
    path: Path, *, bands: Sequence[str] = ("VH", "VV"), steps: int = STEPS, days: int = DAYS
) -> Path:
    """A small untrained recurrent U-Net checkpoint for the test season."""
    import torch

    from sarcrop.models import build_model
    from sarcrop.training.checkpoint import CheckpointMetadata, save_checkpoint

    torch.manual_seed(0)
    model = build_model("recurrent_unet", len(bands), steps, widths=[4, 8], dropout=0.0)
    from sarcrop.models import model_config

    config = model_config(model)
    for key in ("name", "in_bands", "time_steps"):
        config.pop(key, None)
    meta = CheckpointMetadata(
        architecture="recurrent_unet",
        options=config,
        bands=list(bands),
        time_steps=steps,
        season={"start": SEASON_START.isoformat(), "steps": steps, "days": days},
        normalization={
            "min": [-30.0] * len(bands),
            "max": [0.0] * len(bands),
            "bands": list(bands),
        },
        positive=["rice"],
    )
    return save_checkpoint(path, model, meta)


def pickle_bomb(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file whose unpickling would create ``marker``."""
    import torch

    torch.save({"state_dict": _Bomb(str(marker))}, path)
    return path


class _Bomb:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plain_pickle_bomb(path: Path, marker: Path) -> Path:
    """A bare pickle (not a zip) whose unpickling would create ``marker``."""
    import pickle

    path.write_bytes(pickle.dumps(_Bomb(str(marker)), protocol=2))
    return path


def safetensors_with_header(path: Path, header: bytes, body: bytes = b"") -> Path:
    """A file with a safetensors length prefix and an arbitrary header."""
    import struct

    path.write_bytes(struct.pack("<Q", len(header)) + header + body)
    return path


def tampered_header(checkpoint: Path, out: Path, edit) -> Path:
    """A copy of ``checkpoint`` whose JSON header went through ``edit(dict) -> dict``."""
    import struct

    raw = checkpoint.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    new = json.dumps(edit(header)).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    out.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + length :])
    return out


def nan_region(values: np.ndarray, fill: float, box: tuple[int, int, int, int]) -> np.ndarray:
    """``values`` with ``values[:, r0:r1, c0:c1] = fill``."""
    r0, r1, c0, c1 = box
    out = values.copy()
    out[:, r0:r1, c0:c1] = fill
    return out


def describe_stderr(text: str) -> str:
    """The error line of a captured stderr (for reports)."""
    for line in io.StringIO(text):
        if ": error: " in line:
            return line.strip()
    return text.strip().splitlines()[-1] if text.strip() else ""


# ------------------------------------------------------------------------------ random corruptions
#
# A corruption is a tuple ``(kind, index, a, b)`` of small integers (drawn by hypothesis, see
# :func:`corruption_strategy`): ``index`` picks the file, ``a`` and ``b`` shape the damage. They
# apply to the valid inputs :func:`write_valid_inputs` lays out under one folder.

SCENE_KINDS = (
    "truncate",
    "flip",
    "nan",
    "inf",
    "-inf",
    "nodata",
    "drop_band",
    "crs",
    "shift",
    "remove_scene",
    "flip_metadata",
)
LABEL_KINDS = ("remove_labels", "garbage_parcels")
STORE_KINDS = (
    "store_truncate",
    "store_flip",
    "store_remove",
    "store_garbage",
    "store_attribute",
    "store_array",
)
CHECKPOINT_KINDS = (
    "checkpoint_truncate",
    "checkpoint_flip",
    "checkpoint_metadata",
    "checkpoint_tensor",
)

# Values a tampered JSON field takes: wrong types, out of range, empty, plausible but wrong.
BAD_VALUES: tuple[object, ...] = (
    None,
    "x",
    -1,
    0,
    3,
    10**6,
    1.5,
    True,
    [],
    {},
    ["VH"],
    [[0, 0]],
    {"a": 1},
    "2021-13-45",
)
STORE_FIELDS: tuple[tuple[object, ...], ...] = (
    ("format",),
    ("format_version",),
    ("bands",),
    ("season",),
    ("season", "start"),
    ("season", "steps"),
    ("season", "days"),
    ("grid",),
    ("grid", "crs"),
    ("grid", "transform"),
    ("grid", "width"),
    ("patch_size",),
    ("stride",),
    ("offsets",),
    ("offsets", 0),
    ("classes",),
    ("split",),
    ("split", 0),
    ("normalization",),
    ("normalization", "min"),
    ("normalization", "max"),
    ("positive",),
    ("statistics",),
)
ARRAY_FIELDS: tuple[tuple[object, ...], ...] = (
    ("shape",),
    ("shape", 0),
    ("shape", 1),
    ("data_type",),
    ("chunk_grid", "configuration", "chunk_shape"),
    ("fill_value",),
    ("codecs",),
    ("codecs", 1, "name"),
    ("zarr_format",),
    ("node_type",),
)
CHECKPOINT_FIELDS: tuple[tuple[object, ...], ...] = (
    ("format",),
    ("architecture",),
    ("options",),
    ("options", "widths"),
    ("bands",),
    ("time_steps",),
    ("season",),
    ("season", "steps"),
    ("normalization",),
    ("normalization", "min"),
    ("positive",),
    ("classes",),
    ("strategy",),
)


def corruption_strategy(kinds: Sequence[str]):
    """Hypothesis strategy for one corruption of the given kinds."""
    from hypothesis import strategies as st

    return st.tuples(
        st.sampled_from(list(kinds)),
        st.integers(0, 50),
        st.integers(0, 1000),
        st.integers(0, 1000),
    )


def write_valid_inputs(root: Path) -> Path:
    """Small valid inputs of every kind under ``root``: ``scenes/``, ``labels.tif``,
    ``parcels.gpkg``, ``store.zarr`` (prepared by the CLI) and ``model.safetensors``."""
    write_scenes(root / "scenes")
    write_label_raster(root / "labels.tif")
    valid_parcels(root / "parcels.gpkg")
    tiny_checkpoint(root / "model.safetensors")
    run_ok(prepare_args(root / "scenes", root / "labels.tif", root / "store.zarr"))
    return root


def corrupt(root: Path, corruption: tuple) -> None:
    """Apply one corruption to the inputs under ``root``.

    A corruption that needs to read a file an earlier one already broke or removed is skipped.
    """
    kind = corruption[0]
    if kind.startswith("store_"):
        apply_change, broken = _corrupt_store, (FileNotFoundError, IndexError, ValueError)
    elif kind.startswith("checkpoint_"):
        apply_change, broken = _corrupt_checkpoint, (FileNotFoundError, ValueError, KeyError)
    else:
        from rasterio.errors import RasterioError

        apply_change, broken = _corrupt_input, (RasterioError, FileNotFoundError, IndexError)
    with contextlib.suppress(*broken):
        apply_change(root, corruption)


def _scene_files(root: Path) -> list[Path]:
    return sorted((root / "scenes").glob("*.tif"))


def _pick(paths: Sequence[Path], index: int) -> Path:
    return paths[index % len(paths)]


def _corrupt_input(root: Path, corruption: tuple) -> None:
    kind, index, a, b = corruption
    scenes = _scene_files(root)
    if kind == "truncate":
        truncate(_pick([*scenes, root / "labels.tif", root / "parcels.gpkg"], index), a / 1000)
    elif kind == "flip":
        target = _pick([*scenes, root / "labels.tif", root / "parcels.gpkg"], index)
        flip_bytes(target, [a * 37 + i * b for i in range(1 + b % 16)])
    elif kind in ("nan", "inf", "-inf", "nodata"):
        fill = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "nodata": NODATA}[kind]
        r0, c0 = a % SIZE, b % SIZE
        box = (r0, r0 + 1 + (a * 7) % SIZE, c0, c0 + 1 + (b * 5) % SIZE)
        for path in scenes if index % 5 == 0 else [_pick(scenes, index)]:
            rewrite_scene(path, values=lambda v, box=box: nan_region(v, fill, box))
    elif kind == "drop_band":
        for path in scenes if index % 4 == 0 else [_pick(scenes, index)]:
            rewrite_scene(path, keep=[1 + a % 2])
    elif kind == "crs":
        rewrite_scene(_pick(scenes, index), crs=("EPSG:32632", "EPSG:4326", "EPSG:3857")[a % 3])
    elif kind == "shift":
        dx, dy = (a % 61 - 30) * 10.0, (b % 61 - 30) * 10.0
        rewrite_scene(
            _pick(scenes, index), transform=Affine(10, 0, 500000 + dx, 0, -10, 5600000 + dy)
        )
    elif kind == "remove_labels":
        (root / ("labels.tif" if index % 2 else "parcels.gpkg")).unlink(missing_ok=True)
    elif kind == "garbage_parcels":
        (root / "parcels.gpkg").write_bytes(np.random.default_rng(a).bytes(1 + b * 13))
    elif kind == "flip_metadata":
        target = _pick([*scenes, root / "labels.tif"], index)
        data = bytearray(target.read_bytes())
        key = (b"VH", b"ACQUISITION_TIME", b"UNITS", b"CLASS_1", b"EPSG")[a % 5]
        at = data.find(key)
        if at >= 0:
            data[at + b % len(key)] = 0x80 + b % 0x80  # not valid UTF-8 on its own
            target.write_bytes(bytes(data))
    elif kind == "remove_scene":
        _pick(scenes, index).unlink()
    else:
        raise AssertionError(kind)


def _edit_json(value: object, field: tuple[object, ...], new: object, delete: bool) -> None:
    """Set (or delete) ``value[field[0]][field[1]]…`` in place; ints index lists."""
    *parents, last = field
    for key in parents:
        value = value[key]  # type: ignore[index]
    if delete and isinstance(value, dict):
        value.pop(last, None)  # type: ignore[call-overload]
    else:
        value[last] = new  # type: ignore[index]


def _corrupt_store(root: Path, corruption: tuple) -> None:
    kind, index, a, b = corruption
    store = root / "store.zarr"
    files = sorted(p for p in store.rglob("*") if p.is_file())
    target = _pick(files, index)
    if kind == "store_truncate":
        truncate(target, a / 1000)
    elif kind == "store_flip":
        flip_bytes(target, [a * 31 + i * b for i in range(1 + b % 8)])
    elif kind == "store_remove":
        target.unlink()
    elif kind == "store_garbage":
        chunks = [p for p in files if p.name != "zarr.json"]
        _pick(chunks, index).write_bytes(np.random.default_rng(a).bytes(b))
    elif kind in ("store_attribute", "store_array"):
        name = "zarr.json" if kind == "store_attribute" else ("images", "labels")[a % 2]
        path = store / name if kind == "store_attribute" else store / name / "zarr.json"
        document = json.loads(path.read_text(encoding="utf-8"))
        fields = STORE_FIELDS if kind == "store_attribute" else ARRAY_FIELDS
        field = _pick(fields, index)  # type: ignore[arg-type]
        edited = document["attributes"]["sarcrop"] if kind == "store_attribute" else document
        _edit_json(edited, field, BAD_VALUES[b % len(BAD_VALUES)], delete=a % 5 == 0)
        path.write_text(json.dumps(document), encoding="utf-8")
    else:
        raise AssertionError(kind)


def _corrupt_checkpoint(root: Path, corruption: tuple) -> None:
    kind, index, a, b = corruption
    path = root / "model.safetensors"
    if kind == "checkpoint_truncate":
        truncate(path, a / 1000)
    elif kind == "checkpoint_flip":
        flip_bytes(path, [a * 17 + i * b for i in range(1 + b % 8)])
    elif kind == "checkpoint_metadata":
        field = _pick(CHECKPOINT_FIELDS, index)  # type: ignore[arg-type]
        new = BAD_VALUES[b % len(BAD_VALUES)]

        def edit(header: dict) -> dict:
            meta = json.loads(header["__metadata__"]["sarcrop"])
            _edit_json(meta, field, new, delete=a % 5 == 0)
            header["__metadata__"]["sarcrop"] = json.dumps(meta)
            return header

        tampered_header(path, path, edit)
    elif kind == "checkpoint_tensor":

        def edit(header: dict) -> dict:
            name = _pick(sorted(k for k in header if k != "__metadata__"), index)  # type: ignore[arg-type]
            entry = header[name]
            if a % 3 == 0:
                entry["shape"] = [*entry["shape"][:-1], b % 7] if entry["shape"] else [b % 7]
            elif a % 3 == 1:
                entry["dtype"] = ("F16", "I64", "BOOL", "U8", "XX")[b % 5]
            else:
                start, end = entry["data_offsets"]
                entry["data_offsets"] = [start, max(start, end + b % 9 - 4)]
            return header

        tampered_header(path, path, edit)
    else:
        raise AssertionError(kind)


# ------------------------------------------------------------------------------ outcomes


class Outcome(NamedTuple):
    """How one sarcrop command ended: ``ok``, a user ``error`` (one line) or a ``crash``."""

    kind: str
    message: str


def run_command(argv: Sequence[object]) -> Outcome:
    """Run ``sarcrop --debug <argv>`` in this process and classify how it ended.

    A :class:`SarcropError` with a one-line message, or an ``OSError`` (the CLI prints both as
    one line with exit code 2), is a user error; any other exception is a crash.
    """
    import traceback
    import warnings

    from sarcrop.cli import main
    from sarcrop.errors import SarcropError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(["--debug", *map(str, argv)])
        except (SarcropError, OSError) as exc:
            text = str(exc)
            if "\n" in text.strip() or not text.strip():
                return Outcome("crash", f"{type(exc).__name__} not on one line: {text!r}")
            return Outcome("error", f"{type(exc).__name__}: {text}")
        except Exception:  # anything else is what the fuzzing looks for
            return Outcome("crash", traceback.format_exc())
    if code != 0:
        return Outcome("crash", f"exit code {code} without an exception")
    return Outcome("ok", "")


def output_problem(folder: Path, final: Path, outcome: Outcome, check=check_output) -> str | None:
    """Why the outputs under ``folder`` are not what a user may trust, or None when they are.

    ``final`` (the command's result) must be absent after an error and validate with ``check``
    after success; every other final-named file under ``folder`` must validate too, and no
    temporary sibling may be left.
    """
    leftovers = temporaries(folder)
    if leftovers:
        return f"temporaries left: {[str(p.relative_to(folder)) for p in leftovers]}"
    if final.exists() != (outcome.kind == "ok"):
        return f"{final.name} {'exists after an error' if final.exists() else 'missing'}"
    checks = [(final, check)] if final.exists() else []
    checks += [(path, check_output) for path in final_names(folder) if path != final]
    for path, validate in checks:
        try:
            validate(path)
        except Exception as exc:  # any failure to read it back is the finding
            return f"{path.relative_to(folder)} does not validate: {type(exc).__name__}: {exc}"
    return None


def predict_args(model: Path, scenes: Path, out: Path, *extra: str) -> list[str]:
    """``sarcrop predict`` arguments for the tiny test inputs (16 px windows)."""
    return [
        "predict",
        str(model),
        "--images",
        str(scenes),
        "--out",
        str(out),
        "--window",
        "16",
        "--overlap",
        "4",
        "--quiet",
        *extra,
    ]


__all__ = [name for name in dir() if not name.startswith("_")] + ["NODATA", "math"]
