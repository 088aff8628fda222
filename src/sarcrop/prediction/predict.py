"""Map a whole region: streaming, resumable, in-season prediction to a Cloud-Optimized GeoTIFF.

:func:`predict_map` runs the model over the area block by block (see :mod:`.windows`), keeps
each finished block of windows in a work directory ``<out>.partial/`` next to the output
together with a manifest holding a hash of the inputs, model and options, and finally merges the
blocks into the COG. Restarting an interrupted run with the same arguments computes only the
missing blocks; a run with different inputs starts over. The output name only ever holds a complete
map, and ``<out>.lock`` keeps a second run from writing the same map at the same time.

Several checkpoints (seeds or strategies sharing bands, season and normalisation) can be
averaged: each block then holds one sum per model, and the merge writes their mean probability
and their spread. In a single process the next blocks' composites are read by background
threads (``readers``: one beside a CPU model, several beside a GPU) while the model computes
the current one.

A crop-type model (``target_classes`` in its checkpoint) gets softmax probabilities blended the
same way, one sum per class, and a map of the most probable class with one probability band per
class (or the top ``k``), class names and colours (see :mod:`.writer`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import time
import warnings
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rasterio._err import CPLE_BaseError  # GDAL's errors; rasterio.errors lacks their base
from tqdm import tqdm

from sarcrop import __version__, pretrained
from sarcrop.data.composite import warn_empty_periods
from sarcrop.data.grid import Grid
from sarcrop.data.scenes import Acquisition, SceneStack, Source
from sarcrop.data.season import Season
from sarcrop.errors import InputDataError, SarcropError
from sarcrop.options import (
    BLOCK_WINDOWS,
    CPU_BATCH,
    DEFAULT_WINDOW,
    GPU_MAX_BATCH,
    ExecutionOptions,
    MapOptions,
    SceneOptions,
    WindowOptions,
    as_options,
)
from sarcrop.prediction.engine import (
    BlockCompute,
    BlockInput,
    BlockResult,
    ModelSpec,
    batch_for_memory,
    build_onnx_model,
    check_compatible,
    check_device,
    check_engine,
    check_engine_runs,
    compute_block,
    open_stack,
    placed,
    read_block,
    restrict,
    season_until,
    torch_threads,
    window_batch_shape,
    window_memory,
)
from sarcrop.prediction.windows import WindowLayout
from sarcrop.prediction.writer import class_tags, merged_tiles, write_map
from sarcrop.training.checkpoint import warn_season_cut_short
from sarcrop.utils.atomic import atomic_path, output_lock, write_text_atomic
from sarcrop.utils.validation import as_date

MANIFEST = "manifest.json"


def work_dir(out: Path) -> Path:
    """Where finished blocks of ``out`` are kept until the map is complete."""
    return out.with_name(out.name + ".partial")


def block_path(work: Path, index: int) -> Path:
    return work / f"block-{index:06d}.npz"


def load_model(model_or_checkpoint: ModelSpec | str | os.PathLike[str]) -> ModelSpec:
    if isinstance(model_or_checkpoint, ModelSpec):
        return model_or_checkpoint
    path = Path(pretrained.resolve(Path(model_or_checkpoint)))  # a file, or a shipped name
    if path.is_dir():
        raise SarcropError(
            "is a folder, not a checkpoint: give a model's .safetensors file (from train, "
            "finetune or baseline --save) or a shipped model's name",
            path,
        )
    if not path.is_file():
        raise SarcropError("checkpoint not found", path)
    return ModelSpec.from_checkpoint(path)


ModelSource = ModelSpec | str | os.PathLike[str]


def load_models(model: ModelSource | Sequence[ModelSource]) -> list[ModelSpec]:
    """One model or several to average; several must read the same inputs."""
    sources = [model] if isinstance(model, ModelSpec | str | os.PathLike) else list(model)
    if not sources:
        raise SarcropError("no model given")
    specs = [load_model(source) for source in sources]
    check_compatible(specs)
    return specs


MAP_SUFFIXES = (".tif", ".tiff")


def check_map_path(out: Path) -> None:
    """Refuse, before any work, a map path that cannot take the map: a folder, or a name of
    another format (the map is always a Cloud-Optimised GeoTIFF)."""
    if out.is_dir():
        raise SarcropError("is a folder: give the map's file name, e.g. map.tif, inside it", out)
    if out.suffix.lower() not in MAP_SUFFIXES:
        raise SarcropError(
            f"the map is a Cloud-Optimised GeoTIFF: name it {' or '.join(MAP_SUFFIXES)}", out
        )


def warn_other_pixel_size(specs: Sequence[ModelSpec], grid: Grid) -> None:
    """Warn where the images' own pixels are not the size a model learnt from (20 m
    WorldCereal scenes under a model fine-tuned on them read at 10 m, say): the map is then
    made on the images' grid, not the model's."""
    images = grid.metre_pixels

    def unlike(spec: ModelSpec) -> str | None:
        if not (images and spec.pixel_size) or math.isclose(images, spec.pixel_size):
            return None
        return (
            f"learnt from {spec.pixel_size:g} m pixels and the images' are {images:g} m: the "
            f"map is on the images' grid; give --resolution {spec.pixel_size:g} (scenes: "
            "resolution) to map on the model's"
        )

    _warn_first(specs, unlike)


def warn_other_orbit(specs: Sequence[ModelSpec], orbit: str) -> None:
    """Warn where a model learnt from composites of one orbit direction and the map reads
    another (or both): ascending and descending backscatter differ by incidence angle and
    time of day, so its composites are not those it learnt."""

    def unlike(spec: ModelSpec) -> str | None:
        if spec.orbit not in ("ascending", "descending") or orbit == spec.orbit:
            return None
        read = "both orbits" if orbit == "both" else f"{orbit} ones"
        return (
            f"learnt from {spec.orbit} acquisitions only and the map reads {read}; give "
            f"--orbit {spec.orbit} (scenes: orbit) to read as it learnt"
        )

    _warn_first(specs, unlike)


def _warn_first(specs: Sequence[ModelSpec], unlike: Callable[[ModelSpec], str | None]) -> None:
    """One warning, for the first model that ``unlike`` says the map reads its images
    unlike (the others would repeat it)."""
    for spec in specs:
        if said := unlike(spec):
            warnings.warn(f"{pretrained.display_name(spec.checkpoint)} {said}", stacklevel=4)
            return


def check_output(spec: ModelSpec, output: MapOptions) -> None:
    """``top_k`` is for crop-type models, and at most their number of classes."""
    if output.top_k is None:
        return
    if output.positive:
        raise SarcropError(
            "top_k ranks a crop-type map's classes, and positive reads the model for one crop: "
            "give one or the other (--top-k or --positive)"
        )
    if not spec.classes:
        raise SarcropError("top_k needs a crop-type model (target_classes); this one is binary")
    if output.top_k > len(spec.classes):
        raise SarcropError(
            f"top_k {output.top_k} is more than the model's {len(spec.classes)} classes"
        )


def with_model_orbit(scenes: SceneOptions, specs: Sequence[ModelSpec]) -> SceneOptions:
    """The orbit the map reads: the one given, else the one direction the models learnt from,
    so that its composites are those they learnt (both, where they learnt from both)."""
    learnt = {spec.orbit for spec in specs}
    if "orbit" in scenes.model_fields_set or len(learnt) > 1:
        return scenes
    orbit = learnt.pop()
    return scenes.updated(orbit=orbit) if orbit in ("ascending", "descending") else scenes


def with_model_threshold(output: MapOptions, specs: Sequence[ModelSpec]) -> MapOptions:
    """The class threshold of the map: the one given, else the one the models were trained
    and evaluated with, so that the map is the model ``sarcrop evaluate`` scored."""
    if output.threshold is not None:
        return output
    thresholds = sorted({spec.threshold for spec in specs})
    if len(thresholds) > 1:
        raise SarcropError(
            f"the models were trained with thresholds {', '.join(map(str, thresholds))}: "
            "give the map's, --threshold (threshold=)"
        )
    return output.updated(threshold=thresholds[0])


def resolve_timesteps(
    spec: ModelSpec, timesteps: int | None, until: dt.date | None, moved: bool = False
) -> int:
    """Composite periods to use: all, the first ``timesteps`` or those complete by ``until``
    (``moved``: the season was given, ``season_start``, so it is not the model's own)."""
    steps = spec.season.steps
    if timesteps is not None and until is not None:
        raise SarcropError("give either timesteps or until, not both")
    if until is not None:
        season = spec.season
        # Before the season's start, or a year or more after it: a map of another year.
        another_year = not season.start <= until < season.start + dt.timedelta(days=365)
        hint = (
            f"; the season given (--season-start) starts on {season.start}"
            if moved
            else f"; the model's season starts on {season.start}: for another year give "
            "season_start (--season-start)"
        )
        hint = hint if another_year else ""
        timesteps = season.step_until(until)
        if timesteps == 0:
            first_end = season.periods()[0][1] - dt.timedelta(days=1)
            raise SarcropError(
                f"no complete composite period by {until} (the first ends {first_end}){hint}"
            )
        if another_year:
            raise SarcropError(f"{until} is a year or more after the season's start{hint}")
    if timesteps is None:
        return steps
    if not 1 <= timesteps <= steps:
        raise SarcropError(f"timesteps must be between 1 and {steps}, got {timesteps}")
    return int(timesteps)


def stack_fingerprint(stack: SceneStack) -> dict[str, Any]:
    """What identifies the input: grid, bands and every acquisition (file size and mtime)."""
    scenes = []
    local = True  # every scene a file, known by where it is (not by how it was named)
    for acq in stack.acquisitions:
        entry: list[Any] = [acq.time.isoformat(), acq.source]
        if acq.source and os.path.isfile(acq.source):
            st = os.stat(acq.source)
            entry = [acq.time.isoformat(), os.path.abspath(acq.source), st.st_size, st.st_mtime_ns]
        else:
            local = False
        scenes.append(entry)
    named = stack.attrs.get("band_map")
    return {
        "grid": stack.grid.to_dict(),
        "bands": list(stack.bands),
        "units": stack.units,
        # the source as given (--images sc or /abs/sc) where the files alone do not say it
        **({} if local else {"description": stack.description}),
        "scenes": scenes,
        **({"band_map": named} if named else {}),  # maps of older runs keep their hash
    }


def inputs_hash(fingerprint: dict[str, Any]) -> str:
    """A short name of a :func:`stack_fingerprint`: other files, another hash."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_config(
    specs: Sequence[ModelSpec],
    stack: SceneStack,
    layout: WindowLayout,
    timesteps: int,
    batch_size: int,
    execution: ExecutionOptions,
) -> dict[str, Any]:
    """Everything blocks depend on but the thread count (not threshold or output bands: those
    only affect merging).

    The engine, the (resolved) device and the precision are included: their logits differ by
    a rounding step or more, so blocks of different ones are never mixed in one map.
    """
    fingerprints = [spec.fingerprint() for spec in specs]
    return {
        "version": __version__,
        "model": fingerprints[0] if len(fingerprints) == 1 else fingerprints,
        "inputs": stack_fingerprint(stack),
        "window": layout.window,
        "overlap": layout.overlap,
        "block_windows": layout.block_windows,
        "block_rows": layout.block_rows,
        "timesteps": timesteps,
        "batch_size": batch_size,
        "engine": execution.engine,
        "device": execution.resolved_device,
        "precision": execution.precision,
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

    The default (available cores over local workers; with a scheduler, the threads of its
    smallest worker) differs between machines and cluster sizes; taking the resumed run's
    count keeps its finished blocks instead of starting over.
    """
    recorded = earlier.get("threads")
    if (
        execution.threads is None
        and isinstance(recorded, int)
        and recorded >= 1
        and earlier.get("config") == config_hash(config, recorded)
    ):
        return recorded
    if execution.threads is None and execution.scheduler is not None:
        from sarcrop.prediction.distributed import worker_threads

        return worker_threads(execution.scheduler) or execution.torch_threads
    return execution.torch_threads


def _finished(block: Path) -> bool:
    """Whether ``block`` holds a finished block: a file whose archive opens and lists its
    arrays (a truncated one, from a failing disk or a partial copy, is computed again)."""
    if not block.is_file():
        return False
    try:
        with np.load(block) as data:
            complete = {"index", "sums", "windows"} <= set(data.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        complete = False
    if not complete:
        warnings.warn(f"{block}: a damaged finished block, computed again", stacklevel=3)
        block.unlink()
    return complete


def prepare_work_dir(
    work: Path, config: str, layout: WindowLayout, earlier: dict[str, Any], threads: int
) -> set[int]:
    """Reuse ``work`` if ``earlier`` (its manifest) has the same ``config``, else start it
    afresh; return the indices of blocks already finished there."""
    if earlier.get("config") == config:
        return {i for i in range(layout.n_blocks) if _finished(block_path(work, i))}
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
                "block_rows": layout.block_rows,
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
    specs: Sequence[ModelSpec],
    stack: SceneStack,
    timesteps: int,
    windows: WindowOptions,
    output: MapOptions,
    execution: ExecutionOptions,
) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """The map's tags (``windows`` as resolved: the batch and block sizes run) and its
    bands' tags."""
    spec = specs[0]
    used = season_until(spec.season, timesteps)

    def each(value: Callable[[ModelSpec], str]) -> str:
        return ",".join(value(s) for s in specs)

    tags: dict[str, object] = {
        "SARCROP_VERSION": __version__,
        "MODEL_ARCHITECTURE": each(lambda s: s.architecture or type(s.model).__name__),
        "MODEL_CHECKPOINT": each(lambda s: Path(s.checkpoint).name if s.checkpoint else ""),
        "MODEL_REGION": each(lambda s: s.region),
        "MODEL_FINGERPRINT": each(lambda s: s.fingerprint()[:16]),
        "MODELS": len(specs),
        "BANDS": ",".join(spec.bands),
        "SEASON_START": spec.season.start.isoformat(),
        "SEASON_END": spec.season.last_day.isoformat(),
        "SEASON_PERIOD_DAYS": spec.season.days,
        "TIME_STEPS": spec.time_steps,
        "TIME_STEPS_USED": timesteps,
        "DATA_UNTIL": used.last_day.isoformat(),
        "WINDOW": windows.window,
        "OVERLAP": windows.overlap,
        "BATCH_SIZE": windows.batch_size,
        "BLOCK_WINDOWS": windows.block_windows,
        "BLOCK_ROWS": windows.block_rows,
        "ENGINE": execution.engine,
        "DEVICE": execution.resolved_device,
        "PRECISION": execution.precision,
        "THREADS": execution.torch_threads,
        "IMAGES": stack.description,
    }
    if spec.classes:
        return {**tags, **class_tags(spec.classes)}, class_band_tags(spec.classes, output, specs)
    tags["THRESHOLD"] = output.threshold
    band_tags: dict[str, dict[str, object]] = {
        "probability": {"SCALE": 1 / 250, "VALUES": "0-250 = probability x 250, 255 = nodata"},
        "class": {
            "VALUES": "0 = other, 1 = positive, 255 = nodata",
            "POSITIVE": ",".join(spec.positive) if spec.positive else "positive",
        },
        "uncertainty": {
            "SCALE": 1 / 250,
            "VALUES": "0-250 = binary entropy of the probability in bits x 250, 255 = nodata",
        },
        "spread": {
            "SCALE": 1 / 250,
            "VALUES": "0-125 = std of the models' probabilities x 250, 255 = nodata",
            "MODELS": len(specs),
        },
    }
    return tags, band_tags


def class_band_tags(
    classes: Sequence[str], output: MapOptions, specs: Sequence[ModelSpec]
) -> dict[str, dict[str, object]]:
    """Tags of a crop-type map's bands: what the values are, which class a band is about."""
    legend = ", ".join(f"{k} = {name}" for k, name in enumerate(classes)) + ", 255 = nodata"
    tags: dict[str, dict[str, object]] = {
        "uncertainty": {
            "SCALE": 1 / 250,
            "VALUES": "0-250 = entropy of the class probabilities / log(classes) x 250, "
            "255 = nodata",
        },
        "spread": {
            "SCALE": 1 / 250,
            "VALUES": "0-125 = mean over classes of the std of the models' probabilities "
            "x 250, 255 = nodata",
            "MODELS": len(specs),
        },
    }
    if output.classes:
        tags["class"] = {"VALUES": legend, "RANK": 1}
    if output.probability and output.top_k is None:
        for k, name in enumerate(classes):
            tags[f"probability_{name}"] = {
                "SCALE": 1 / 250,
                "VALUES": "0-250 = probability x 250, 255 = nodata",
                "CLASS": name,
                "CLASS_INDEX": k,
            }
    elif output.probability and output.top_k is not None:
        for rank in range(1, output.top_k + 1):
            if rank > 1:
                tags[f"class_top{rank}"] = {"VALUES": legend, "RANK": rank}
            tags[f"probability_top{rank}"] = {
                "SCALE": 1 / 250,
                "VALUES": f"0-250 = probability of the class of rank {rank} x 250, 255 = nodata",
                "RANK": rank,
            }
    return tags


def reads_pixels_alone(spec: ModelSpec) -> bool:
    """Whether the model computes each pixel from that pixel's series only (a forest, the
    per-pixel TempCNN, a forest on its features; the model's own ``reads_neighbours``): its map
    depends on neither the window nor the overlap."""
    return not getattr(spec.model, "reads_neighbours", True)


def trained_patch_size(specs: Sequence[ModelSpec]) -> int | None:
    """The smallest patch size the models that read neighbours were trained on (``None`` if
    none records one)."""
    sizes = [
        spec.patch_size
        for spec in specs
        if spec.patch_size is not None and not reads_pixels_alone(spec)
    ]
    return min(sizes) if sizes else None


def window_sizes(
    windows: WindowOptions, specs: Sequence[ModelSpec], execution: ExecutionOptions
) -> WindowOptions:
    """``windows`` with every size filled in where not given.

    The window and overlap: those of the models' training patch size
    (:meth:`WindowOptions.for_patch_size`); models that read each pixel alone map in 256 px
    windows without overlap. The batch: on a CPU 4
    windows of 256 px, or as many pixels in smaller windows (a small window alone keeps the
    model busy too briefly); on a GPU in one process as many as half its free memory holds
    (measured with one window through the first model), up to ``GPU_MAX_BATCH`` windows of
    256 px or as many pixels. The block: as many window rows as fit in 256 px, and 8 window
    columns or as many as one batch fills in those rows. A batch never spans two blocks.
    """
    if windows.overlap is None and all(reads_pixels_alone(spec) for spec in specs):
        windows = windows.updated(overlap=0)  # no seam to blend
    windows = windows.for_patch_size(trained_patch_size(specs))
    window, overlap = int(windows.window or 0), int(windows.overlap or 0)  # set just above
    per_pixels = max(1, (DEFAULT_WINDOW // window) ** 2)  # windows with a 256 px window's pixels
    batch = windows.batch_size
    if batch is None:
        one_process = execution.workers is None and execution.scheduler is None
        if execution.resolved_device == "cuda" and one_process:
            batch = gpu_batch(specs[0], window, execution, GPU_MAX_BATCH * per_pixels)
        else:
            batch = CPU_BATCH * per_pixels
    rows = windows.block_rows or max(1, (DEFAULT_WINDOW - overlap) // (window - overlap))
    columns = windows.block_windows or max(BLOCK_WINDOWS, batch // rows)
    return windows.updated(batch_size=batch, block_windows=columns, block_rows=rows)


def gpu_batch(spec: ModelSpec, window: int, execution: ExecutionOptions, largest: int) -> int:
    """:func:`batch_for_memory` of the GPU's free memory and one window's peak through
    ``spec``'s model, at most ``largest``."""
    import torch

    with placed([spec], "cuda"):
        per_window = window_memory(spec, window, execution.precision)
        free, _ = torch.cuda.mem_get_info()
    return batch_for_memory(free, per_window, largest)


def prefetched(
    read: Callable[[int], BlockInput], indices: Sequence[int], readers: int = 1
) -> Iterator[BlockInput]:
    """``read(i)`` for each index in order, the next ``readers`` blocks read by as many
    background threads while the caller computes the current one (at most ``readers + 1``
    blocks' composites held).

    Reading a block does not depend on any other block, so the blocks are the same bytes as
    read one after the other.
    """
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sarcrop-read") as pool:
        ahead = deque(pool.submit(read, index) for index in indices[:readers])
        for index in indices[readers:]:
            current = ahead.popleft().result()
            ahead.append(pool.submit(read, index))
            yield current
            del current
        while ahead:
            yield ahead.popleft().result()


def predict_map(
    model: ModelSource | Sequence[ModelSource],
    images: Source | SceneStack,
    out: str | os.PathLike[str],
    *,
    timesteps: int | None = None,
    until: dt.date | None = None,
    season_start: dt.date | None = None,
    windows: WindowOptions = WindowOptions(),
    execution: ExecutionOptions = ExecutionOptions(),
    output: MapOptions = MapOptions(),
    scenes: SceneOptions = SceneOptions(),
    progress: bool = True,
    on_block: Callable[[int], None] | None = None,
) -> Path:
    """Predict a crop map over the whole area of ``images`` and write it as a COG to ``out``.

    ``model`` is a checkpoint path or a :class:`ModelSpec`, or a sequence of them to average
    (mean probability and between-model spread); ``images`` scenes in any layout
    ``open_scenes`` reads, a simulated region folder, or an open :class:`SceneStack`.
    ``timesteps`` (or ``until``) limits the input to the first composite periods for in-season
    maps; later scenes are never read. ``season_start`` maps another season (another year, or a
    calendar shifted to the area's) with the model's composite periods moved to start that day.
    ``windows`` sets the window walk and the blocks (the unit of work, of resuming and of
    memory); left out, the window is the patch size the model was trained on. ``execution``:
    where blocks run (one process, a local Dask cluster of ``workers`` or an existing
    ``scheduler``), with how many torch threads, which engine, device and precision;
    ``output`` the bands of the map (``output.positive`` reads crop-type models for some of
    their classes); ``scenes`` the orbit and the grid. The thread count and the device are
    resolved once here and used by every block wherever it runs, so a map is identical bit
    for bit on one process or on Dask.
    ``on_block`` is called with each block index as it is saved. Returns ``out``.
    """
    out = Path(out)
    check_map_path(out)
    windows = as_options(WindowOptions, windows, "windows")
    execution = as_options(ExecutionOptions, execution, "execution")
    output = as_options(MapOptions, output, "output")
    scenes = as_options(SceneOptions, scenes, "scenes")
    until = None if until is None else as_date(until, "until")
    season_start = None if season_start is None else as_date(season_start, "season_start")
    with output_lock(out, busy="another predict is writing this map", what="a map"):
        # first: a second run on this map stops at once
        check_engine(execution.engine)
        execution = execution.updated(device=execution.resolved_device)
        if execution.scheduler is None:  # a cluster's workers may have a GPU the client lacks
            check_device(execution.device)
        specs = load_models(model)
        check_engine_runs(specs, execution.engine)
        if output.positive:  # crop-type models read for some of their classes
            specs = [spec.one_crop(output.positive) for spec in specs]
        trained_season = specs[0].season
        if season_start is not None:
            specs = [spec.moved_to(season_start) for spec in specs]
        spec = specs[0]
        check_output(spec, output)
        output = with_model_threshold(output, specs)
        scenes = with_model_orbit(scenes, specs)
        steps = resolve_timesteps(spec, timesteps, until, moved=season_start is not None)
        stack = open_stack(images, spec, scenes, steps)
        check_not_an_input(out, stack)
        for each in specs:
            name = pretrained.display_name(each.checkpoint)
            crop_types = bool(each.classes)
            warn_season_cut_short(
                name, each.early_seasons, steps, each.season.steps, crop_types=crop_types
            )
        if scenes.resolution is None:
            warn_other_pixel_size(specs, stack.grid)
        warn_other_orbit(specs, scenes.orbit)
        observed = season_until(spec.season, steps)
        every = stack.acquisitions
        stack = restrict(stack, spec.season, steps)
        if not any(observed.period_of(time) is not None for time in stack.middles):
            raise InputDataError(
                f"no acquisition between {observed.start} and {observed.last_day}"
                + other_season(every, observed),
                stack.description or None,
            )
        options = spec.composite_options()
        warn_empty_periods(
            stack,
            observed,
            "--season-start and --until",
            options.get("gaps", "interpolate"),
            options.get("min_acquisitions", 1),
        )
        grid = stack.grid
        windows = window_sizes(windows, specs, execution)
        batch_size = int(windows.batch_size or 1)
        try:
            layout = WindowLayout(
                grid.height,
                grid.width,
                int(windows.window or 0),
                int(windows.overlap or 0),
                int(windows.block_windows or 1),
                int(windows.block_rows or 1),
            )
        except ValueError as exc:
            raise SarcropError(str(exc)) from exc

        work = work_dir(out)
        config = run_config(specs, stack, layout, steps, batch_size, execution)
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
                with torch_threads(threads), placed(specs, execution.device):
                    runners = None
                    if execution.engine == "onnx" and missing:
                        shape = window_batch_shape(spec, layout, batch_size)
                        runners = [build_onnx_model(s, shape, threads) for s in specs]

                    def read(index: int) -> BlockInput:
                        return read_block(spec, stack, layout, index, timesteps=steps)

                    compute = BlockCompute(steps, batch_size, execution.precision, runners)
                    for block_input in prefetched(read, missing, execution.read_threads):
                        result = compute_block(
                            specs, layout, block_input, compute, on_windows=bar.update
                        )
                        save(result)
                        del block_input
                    del runners, compute  # ONNX Runtime's arena is not needed for the merge
            else:
                from sarcrop.prediction.distributed import run_blocks

                def finished(result: BlockResult) -> None:
                    save(result)
                    bar.update(layout.block(result.index).n)

                run_blocks(
                    specs,
                    stack if isinstance(images, SceneStack) else images,
                    scenes,
                    layout,
                    missing,
                    timesteps=steps,
                    batch_size=batch_size,
                    threads=threads,
                    execution=execution,
                    inputs=inputs_hash(config["inputs"]),  # its scenes, stat-ed once
                    on_result=finished,
                )
        finally:
            bar.close()

        tags, band_tags = map_tags(specs, stack, steps, windows, output, execution)
        if spec.season != trained_season:
            tags["MODEL_SEASON_START"] = trained_season.start.isoformat()
        tiles = merged_tiles(layout, lambda i: BlockResult.load(block_path(work, i)).sums)
        try:
            write_map(
                tiles,
                grid,
                out,
                work=work,
                output=output,
                tags=tags,
                band_tags=band_tags,
                models=len(specs),
                classes=spec.classes,
            )
        except CPLE_BaseError as exc:  # GDAL's own write errors: a full disk, a lost mount
            raise SarcropError(f"could not write output: {_gdal_problem(exc, out)}", out) from None
        shutil.rmtree(work, ignore_errors=True)
        return out


def _gdal_problem(exc: Exception, out: Path) -> str:
    """GDAL's error in one line, with the space left on the map's disk."""
    problem = " ".join(str(exc).split())
    with contextlib.suppress(OSError):
        problem += f" ({shutil.disk_usage(out.parent).free / 1e6:.1f} MB free on its disk)"
    return problem


def check_not_an_input(out: Path, stack: SceneStack) -> None:
    """Refuse a map path that names one of the input scenes: the map would replace it."""
    target = out.resolve()
    if any(Path(name).resolve() == target for name, _ in stack.sources):
        raise SarcropError("the map cannot replace one of its input scenes", out)


def other_season(acquisitions: Sequence[Acquisition], season: Season) -> str:
    """What the scenes hold, and the ``--season-start`` that moves the model's periods onto
    them (the same day of another year, the latest the scenes cover). A monthly mean counts at
    its middle, where the composites read it."""
    if not acquisitions:
        return ""
    first = min(a.time for a in acquisitions)
    last = max(a.time for a in acquisitions)
    said = f" (acquisitions: {first:%Y-%m-%d} to {last:%Y-%m-%d})"
    middles = [a.middle for a in acquisitions]
    for year in range(max(middles).year, first.year - 1, -1):
        with contextlib.suppress(ValueError):  # 29 February
            moved = Season(season.start.replace(year=year), season.steps, season.days)
            if any(moved.period_of(t) is not None for t in middles):
                return (
                    f"{said}; --season-start {moved.start} moves the model's season there (the "
                    "same day of the year: where the crop is sown in another month, as south "
                    "of the equator, start the season at its sowing)"
                )
    return said
