"""Map a whole region: streaming, resumable, in-season prediction to a Cloud-Optimized GeoTIFF.

:func:`predict_map` runs the model over the area block by block (see :mod:`.windows`), keeps
each finished block of windows in a work directory ``<out>.partial/`` next to the output
together with a manifest holding a hash of the inputs, model and options, and finally merges the
blocks into the COG. Restarting an interrupted run with the same arguments computes only the
missing blocks; a run with different inputs starts over. The output name only ever holds a complete
map, and ``<out>.lock`` keeps a second run from writing the same map at the same time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sarcrop import __version__
from sarcrop.data.scenes import SceneStack, Source
from sarcrop.errors import InputDataError, SarcropError
from sarcrop.options import ExecutionOptions, MapOptions, SceneOptions, WindowOptions
from sarcrop.prediction.engine import (
    BlockResult,
    ModelSpec,
    build_onnx_model,
    check_engine,
    open_stack,
    predict_block,
    restrict,
    season_until,
    torch_threads,
    window_batch_shape,
)
from sarcrop.prediction.windows import WindowLayout
from sarcrop.prediction.writer import merged_tiles, write_map
from sarcrop.utils.atomic import atomic_path, write_text_atomic

MANIFEST = "manifest.json"


def work_dir(out: Path) -> Path:
    """Where finished blocks of ``out`` are kept until the map is complete."""
    return out.with_name(out.name + ".partial")


def lock_path(out: Path) -> Path:
    """The file a run holds locked while it writes ``out``."""
    return out.with_name(out.name + ".lock")


def block_path(work: Path, index: int) -> Path:
    return work / f"block-{index:06d}.npz"


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``<out>.lock`` exclusively while writing ``out``: a second run fails at once.

    The kernel releases a ``flock`` when its process dies, so a crashed run leaves at most an
    unlocked empty file that the next run takes over; a finished run removes it.
    """
    path = lock_path(out)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SarcropError(f"cannot create the lock file: {exc.strerror}", path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise SarcropError("another predict is writing this map", out) from None
            raise SarcropError(f"cannot lock: {exc.strerror}", path) from exc
        # A run that just finished may have removed the file we opened: lock the one on disk.
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def load_model(model_or_checkpoint: ModelSpec | str | os.PathLike[str]) -> ModelSpec:
    if isinstance(model_or_checkpoint, ModelSpec):
        return model_or_checkpoint
    path = Path(model_or_checkpoint)
    if not path.is_file():
        raise SarcropError("checkpoint not found", path)
    return ModelSpec.from_checkpoint(path)


def resolve_timesteps(spec: ModelSpec, timesteps: int | None, until: dt.date | None) -> int:
    """Composite periods to use: all, the first ``timesteps`` or those complete by ``until``."""
    steps = spec.season.steps
    if timesteps is not None and until is not None:
        raise SarcropError("give either timesteps or until, not both")
    if until is not None:
        timesteps = spec.season.step_until(until)
        if timesteps == 0:
            first_end = spec.season.periods()[0][1] - dt.timedelta(days=1)
            raise SarcropError(
                f"no complete composite period by {until} (the first ends {first_end})"
            )
    if timesteps is None:
        return steps
    if not 1 <= timesteps <= steps:
        raise SarcropError(f"timesteps must be between 1 and {steps}, got {timesteps}")
    return int(timesteps)


def stack_fingerprint(stack: SceneStack) -> dict[str, Any]:
    """What identifies the input: grid, bands and every acquisition (file size and mtime)."""
    scenes = []
    for acq in stack.acquisitions:
        entry: list[Any] = [acq.time.isoformat(), acq.source]
        if acq.source and os.path.isfile(acq.source):
            st = os.stat(acq.source)
            entry += [st.st_size, st.st_mtime_ns]
        scenes.append(entry)
    return {
        "grid": stack.grid.to_dict(),
        "bands": list(stack.bands),
        "units": stack.units,
        "description": stack.description,
        "scenes": scenes,
    }


def run_config(
    spec: ModelSpec,
    stack: SceneStack,
    layout: WindowLayout,
    timesteps: int,
    batch_size: int,
    engine: str,
) -> dict[str, Any]:
    """Everything blocks depend on but the thread count (not threshold or output bands: those
    only affect merging).

    The engine is included: ONNX Runtime and PyTorch logits differ by ~1e-7, which can change a
    rounded probability level, so blocks of the two engines are never mixed in one map.
    """
    return {
        "version": __version__,
        "model": spec.fingerprint(),
        "inputs": stack_fingerprint(stack),
        "window": layout.window,
        "overlap": layout.overlap,
        "block_windows": layout.block_windows,
        "timesteps": timesteps,
        "batch_size": batch_size,
        "engine": engine,
    }


def config_hash(config: dict[str, Any], threads: int) -> str:
    """Hash of ``config`` and the thread count: CPU convolutions round differently with
    different thread counts, so blocks of different counts are never mixed in one map."""
    payload = json.dumps({**config, "threads": threads}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def read_manifest(work: Path) -> dict[str, Any]:
    """The manifest of an earlier run in ``work`` (empty if there is none or it is unreadable)."""
    try:
        data = json.loads((work / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_threads(
    execution: ExecutionOptions, earlier: dict[str, Any], config: dict[str, Any]
) -> int:
    """Threads for this run: as given, else those of the run it resumes, else the default.

    The default (available cores over local workers) differs between machines and cluster
    sizes; taking the resumed run's count keeps its finished blocks instead of starting over.
    """
    recorded = earlier.get("threads")
    if (
        execution.threads is None
        and isinstance(recorded, int)
        and recorded >= 1
        and earlier.get("config") == config_hash(config, recorded)
    ):
        return recorded
    return execution.torch_threads


def prepare_work_dir(
    work: Path, config: str, layout: WindowLayout, earlier: dict[str, Any], threads: int
) -> set[int]:
    """Reuse ``work`` if ``earlier`` (its manifest) has the same ``config``, else start it
    afresh; return the indices of blocks already finished there."""
    if earlier.get("config") == config:
        return {i for i in range(layout.n_blocks) if block_path(work, i).is_file()}
    if work.exists():
        shutil.rmtree(work)
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise SarcropError(f"cannot create work directory: {exc.strerror}", work) from exc
    write_text_atomic(
        work / MANIFEST,
        json.dumps(
            {
                "config": config,
                "threads": threads,
                "blocks": layout.n_blocks,
                "window": layout.window,
                "overlap": layout.overlap,
                "block_windows": layout.block_windows,
                "height": layout.height,
                "width": layout.width,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
            indent=2,
        ),
    )
    return set()


class Progress:
    """tqdm bar over windows with km²/min in the postfix."""

    def __init__(self, layout: WindowLayout, area_km2: float, done: int, enabled: bool) -> None:
        self.km2_per_window = area_km2 / layout.n_windows
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=layout.n_windows,
            initial=done,
            unit="win",
            disable=not enabled,
            desc="predict",
            dynamic_ncols=True,
        )
        self.new = 0

    def update(self, windows: int) -> None:
        self.new += windows
        minutes = (time.perf_counter() - self.start) / 60
        self.bar.update(windows)
        if minutes > 0:
            self.bar.set_postfix_str(f"{self.new * self.km2_per_window / minutes:.2f} km²/min")

    def close(self) -> None:
        self.bar.close()


def map_tags(
    spec: ModelSpec,
    stack: SceneStack,
    timesteps: int,
    layout: WindowLayout,
    output: MapOptions,
    execution: ExecutionOptions,
) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    used = season_until(spec.season, timesteps)
    tags: dict[str, object] = {
        "SARCROP_VERSION": __version__,
        "MODEL_ARCHITECTURE": spec.architecture or type(spec.model).__name__,
        "MODEL_CHECKPOINT": Path(spec.checkpoint).name if spec.checkpoint else "",
        "MODEL_REGION": spec.region,
        "MODEL_FINGERPRINT": spec.fingerprint()[:16],
        "BANDS": ",".join(spec.bands),
        "SEASON_START": spec.season.start.isoformat(),
        "SEASON_END": spec.season.end.isoformat(),
        "SEASON_PERIOD_DAYS": spec.season.days,
        "TIME_STEPS": spec.time_steps,
        "TIME_STEPS_USED": timesteps,
        "DATA_UNTIL": (used.end - dt.timedelta(days=1)).isoformat(),
        "THRESHOLD": output.threshold,
        "WINDOW": layout.window,
        "OVERLAP": layout.overlap,
        "ENGINE": execution.engine,
        "THREADS": execution.torch_threads,
        "IMAGES": stack.description,
    }
    band_tags: dict[str, dict[str, object]] = {
        "probability": {"SCALE": 1 / 250, "VALUES": "0-250 = probability x 250, 255 = nodata"},
        "class": {
            "VALUES": "0 = other, 1 = positive, 255 = nodata",
            "POSITIVE": ",".join(spec.positive) if spec.positive else "positive",
        },
    }
    return tags, band_tags


def predict_map(
    model: ModelSpec | str | os.PathLike[str],
    images: Source | SceneStack,
    out: str | os.PathLike[str],
    *,
    timesteps: int | None = None,
    until: dt.date | None = None,
    windows: WindowOptions = WindowOptions(),
    execution: ExecutionOptions = ExecutionOptions(),
    output: MapOptions = MapOptions(),
    scenes: SceneOptions = SceneOptions(),
    progress: bool = True,
    on_block: Callable[[int], None] | None = None,
) -> Path:
    """Predict a crop map over the whole area of ``images`` and write it as a COG to ``out``.

    ``model`` is a checkpoint path or a :class:`ModelSpec`; ``images`` scenes in any layout
    ``open_scenes`` reads, a simulated region folder, or an open :class:`SceneStack`.
    ``timesteps`` (or ``until``) limits the input to the first composite periods for in-season
    maps; later scenes are never read. ``windows`` sets the window walk and the blocks (the unit
    of work, of resuming and of memory); ``execution`` where blocks run (one process, a local
    Dask cluster of ``workers`` or an existing ``scheduler``), with how many torch threads and
    which engine; ``output`` the bands of the map; ``scenes`` the orbit and the grid. The thread
    count is resolved once here and used by every block wherever it runs, so a map is identical
    bit for bit on one process or on Dask. ``on_block`` is called with each block index as it
    is saved. Returns ``out``.
    """
    out = Path(out)
    check_engine(execution.engine)
    spec = load_model(model)
    stack = open_stack(images, spec, scenes)
    steps = resolve_timesteps(spec, timesteps, until)
    stack = restrict(stack, season_until(spec.season, steps))
    if not stack.acquisitions:
        raise InputDataError(
            f"no acquisition between {spec.season.start} and "
            f"{season_until(spec.season, steps).end}",
            stack.description or None,
        )
    grid = stack.grid
    try:
        layout = WindowLayout(
            grid.height, grid.width, windows.window, windows.overlap, windows.block_windows
        )
    except ValueError as exc:
        raise SarcropError(str(exc)) from exc

    work = work_dir(out)
    config = run_config(spec, stack, layout, steps, windows.batch_size, execution.engine)
    with output_lock(out):
        earlier = read_manifest(work) if execution.resume else {}
        execution = execution.updated(threads=resolve_threads(execution, earlier, config))
        threads = execution.torch_threads
        done = prepare_work_dir(work, config_hash(config, threads), layout, earlier, threads)
        missing = [i for i in range(layout.n_blocks) if i not in done]
        xres, yres = grid.resolution
        area_km2 = grid.width * grid.height * xres * yres / 1e6
        bar = Progress(layout, area_km2, sum(layout.block(i).n for i in done), progress)

        def save(result: BlockResult) -> None:
            with atomic_path(block_path(work, result.index)) as tmp:
                result.save(tmp)
            if on_block is not None:
                on_block(result.index)

        try:
            if execution.scheduler is None and execution.workers is None:
                with torch_threads(threads):
                    runner = None
                    if execution.engine == "onnx" and missing:
                        shape = window_batch_shape(spec, layout, windows.batch_size)
                        runner = build_onnx_model(spec, shape, threads)
                    for index in missing:
                        block = predict_block(
                            spec,
                            stack,
                            layout,
                            index,
                            timesteps=steps,
                            batch_size=windows.batch_size,
                            on_windows=bar.update,
                            runner=runner,
                        )
                        save(block)
                    del runner  # ONNX Runtime's arena is not needed for the merge
            else:
                from sarcrop.prediction.distributed import run_blocks

                def finished(result: BlockResult) -> None:
                    save(result)
                    bar.update(layout.block(result.index).n)

                run_blocks(
                    spec,
                    stack if isinstance(images, SceneStack) else images,
                    scenes,
                    layout,
                    missing,
                    timesteps=steps,
                    batch_size=windows.batch_size,
                    threads=threads,
                    execution=execution,
                    on_result=finished,
                )
        finally:
            bar.close()

        tags, band_tags = map_tags(spec, stack, steps, layout, output, execution)
        tiles = merged_tiles(layout, lambda i: BlockResult.load(block_path(work, i)).sums)
        write_map(tiles, grid, out, work=work, output=output, tags=tags, band_tags=band_tags)
        shutil.rmtree(work, ignore_errors=True)
    return out
