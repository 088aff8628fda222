"""Map a whole region: streaming, resumable, in-season prediction to a Cloud-Optimized GeoTIFF.

:func:`predict_map` runs the model over the area block by block (see :mod:`.windows`), keeps
each finished block of windows in a work directory ``<out>.partial/`` next to the output
together with a manifest holding a hash of the inputs, model and options, and finally merges the
blocks into the COG. Restarting an interrupted run with the same arguments computes only the
missing blocks; a run with different inputs starts over. The output name only ever holds a complete
map.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from sarcrop import __version__
from sarcrop.data.scenes import SceneStack, Source
from sarcrop.errors import InputDataError, SarcropError
from sarcrop.prediction.engine import (
    BlockResult,
    ModelSpec,
    build_onnx_model,
    check_engine,
    predict_block,
    restrict,
    season_until,
    torch_threads,
    window_batch_shape,
)
from sarcrop.prediction.windows import WindowLayout
from sarcrop.prediction.writer import OutputBands, merged_tiles, write_map
from sarcrop.utils.atomic import atomic_path, write_text_atomic

MANIFEST = "manifest.json"


def work_dir(out: Path) -> Path:
    """Where finished blocks of ``out`` are kept until the map is complete."""
    return out.with_name(out.name + ".partial")


def block_path(work: Path, index: int) -> Path:
    return work / f"block-{index:06d}.npz"


def load_model(model_or_checkpoint: ModelSpec | str | os.PathLike[str]) -> ModelSpec:
    if isinstance(model_or_checkpoint, ModelSpec):
        return model_or_checkpoint
    path = Path(model_or_checkpoint)
    if not path.is_file():
        raise SarcropError("checkpoint not found", path)
    return ModelSpec.from_checkpoint(path)


def open_images(images: Source | SceneStack, spec: ModelSpec, **options: Any) -> SceneStack:
    if isinstance(images, SceneStack):
        stack = images
    else:
        from sarcrop.data.reader import open_scenes

        stack = open_scenes(images, bands=list(spec.bands), **options)
    stack.require_bands(spec.bands)
    return stack


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


def config_hash(
    spec: ModelSpec,
    stack: SceneStack,
    layout: WindowLayout,
    timesteps: int,
    batch_size: int,
    engine: str = "torch",
) -> str:
    """Everything blocks depend on (not threshold or output bands: those only affect merging).

    The engine is included: ONNX Runtime and PyTorch logits differ by ~1e-7, which can change a
    rounded probability level, so blocks of the two engines are never mixed in one map.
    """
    config = {
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
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def prepare_work_dir(work: Path, config: str, layout: WindowLayout, resume: bool) -> set[int]:
    """Create or reuse ``work``; return the indices of blocks already finished there."""
    manifest = work / MANIFEST
    if work.exists():
        try:
            same = resume and json.loads(manifest.read_text())["config"] == config
        except (OSError, ValueError, KeyError):
            same = False
        if same:
            return {i for i in range(layout.n_blocks) if block_path(work, i).is_file()}
        shutil.rmtree(work)
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise SarcropError(f"cannot create work directory: {exc.strerror}", work) from exc
    write_text_atomic(
        manifest,
        json.dumps(
            {
                "config": config,
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
    bands: OutputBands,
    engine: str = "torch",
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
        "THRESHOLD": bands.threshold,
        "WINDOW": layout.window,
        "OVERLAP": layout.overlap,
        "ENGINE": engine,
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
    model_or_checkpoint: ModelSpec | str | os.PathLike[str],
    images: Source | SceneStack,
    out: str | os.PathLike[str],
    *,
    timesteps: int | None = None,
    until: dt.date | None = None,
    window: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    probability: bool = True,
    classes: bool = True,
    threshold: float = 0.5,
    scheduler: str | None = None,
    workers: int | None = None,
    block_windows: int = 8,
    resume: bool = True,
    progress: bool = True,
    threads: int = 1,
    engine: Literal["torch", "onnx"] = "torch",
    open_options: Mapping[str, Any] | None = None,
    on_block: Callable[[int], None] | None = None,
) -> Path:
    """Predict a crop map over the whole area of ``images`` and write it as a COG to ``out``.

    ``model_or_checkpoint`` is a checkpoint path or a :class:`ModelSpec`. ``timesteps`` (or
    ``until``) limits the input to the first composite periods for in-season maps; later scenes
    are never read. Windows are computed in blocks of ``block_windows`` along a window row: the
    unit of work, of resuming and of memory. ``scheduler`` (a Dask address) or ``workers`` (a
    local cluster of that many processes) spread blocks over processes; the map is identical bit
    for bit because every block is computed with exactly ``threads`` torch threads wherever it
    runs. ``engine``
    ``"onnx"`` runs the model with ONNX Runtime (CPU, needs ``onnxruntime``; ``threads``
    intra-op threads) instead of PyTorch; its maps may differ from PyTorch's by one probability
    level here and there. ``on_block`` is called with each block index as it is saved. Returns
    ``out``.
    """
    out = Path(out)
    try:
        bands = OutputBands(probability, classes, threshold)
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
    except ValueError as exc:
        raise SarcropError(str(exc)) from exc
    if scheduler is not None and workers is not None:
        raise SarcropError("give either scheduler or workers, not both")
    check_engine(engine)
    spec = load_model(model_or_checkpoint)
    stack = open_images(images, spec, **dict(open_options or {}))
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
        layout = WindowLayout(grid.height, grid.width, window, overlap, block_windows)
    except ValueError as exc:
        raise SarcropError(str(exc)) from exc

    work = work_dir(out)
    config = config_hash(spec, stack, layout, steps, batch_size, engine)
    done = prepare_work_dir(work, config, layout, resume)
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
        if scheduler is None and workers is None:
            with torch_threads(threads):
                runner = None
                if engine == "onnx" and missing:
                    shape = window_batch_shape(spec, layout, batch_size)
                    runner = build_onnx_model(spec, shape, threads)
                for index in missing:
                    block = predict_block(
                        spec,
                        stack,
                        layout,
                        index,
                        timesteps=steps,
                        batch_size=batch_size,
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

            source = stack if isinstance(images, SceneStack) else images
            run_blocks(
                spec,
                source,
                dict(open_options or {}),
                layout,
                missing,
                timesteps=steps,
                batch_size=batch_size,
                threads=threads,
                engine=engine,
                scheduler=scheduler,
                workers=workers,
                on_result=finished,
            )
    finally:
        bar.close()

    tags, band_tags = map_tags(spec, stack, steps, layout, bands, engine)
    tiles = merged_tiles(layout, lambda i: BlockResult.load(block_path(work, i)).sums)
    write_map(tiles, grid, out, work=work, bands=bands, tags=tags, band_tags=band_tags)
    shutil.rmtree(work, ignore_errors=True)
    return out
