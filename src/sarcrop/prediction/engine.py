"""Run a model over one block of overlapping windows, straight from the scenes.

A block (a rectangle of consecutive windows) is the unit of work: it is computed
independently of every other block, in a fixed order of batches and windows, so its result is the
same bytes whichever process computes it. Composites are built per block from the scenes
with the *same* :func:`sarcrop.data.composite.composite` that ``prepare`` uses, normalised with the
checkpoint's statistics, and zero-padded after ``timesteps`` periods for in-season maps.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import importlib
import json
import threading
import weakref
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from torch import nn

from sarcrop import pretrained
from sarcrop.data.labels import class_key
from sarcrop.data.normalization import Normalization, normalize
from sarcrop.data.scenes import Acquisition, SceneStack, Source
from sarcrop.data.season import Season
from sarcrop.errors import CheckpointError, SarcropError
from sarcrop.options import Engine, Precision, SceneOptions
from sarcrop.prediction.onnx_export import OnnxModel
from sarcrop.prediction.windows import WindowLayout
from sarcrop.training.checkpoint import FORESTS
from sarcrop.utils.memory import reusing_freed_memory

ENGINES: tuple[str, ...] = get_args(Engine)
MAX_CLASSES = 255  # class indices 0-254 in a uint8 band, 255 = nodata


@dataclass
class ModelSpec:
    """A model and everything needed to feed it: bands, season window and normalisation.

    ``classes`` names the output channels of a crop-type model (softmax over them); empty for
    a binary model (one logit, sigmoid).
    """

    model: nn.Module
    bands: tuple[str, ...]
    season: Season
    normalization: Normalization
    time_steps: int | None = None  # T the model was trained with (default: season.steps)
    architecture: str = ""
    region: str = ""
    positive: tuple[str, ...] = ()
    checkpoint: str = ""
    composite: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    patch_size: int | None = None  # side of the patches it was trained on, where recorded
    early_seasons: bool | None = None  # trained on seasons cut short (None: not recorded)
    pixel_size: float | None = None  # metres per pixel of the patches it learnt, where recorded
    orbit: str | None = None  # the orbit direction its training scenes kept, where recorded
    threshold: float = 0.5  # class threshold it was trained and evaluated with (binary)

    def __post_init__(self) -> None:
        self.bands = tuple(str(b).upper() for b in self.bands)
        self.classes = tuple(str(c) for c in self.classes)
        if len(self.classes) == 1 or len(self.classes) > MAX_CLASSES:
            raise CheckpointError(
                f"a crop-type model needs 2 to {MAX_CLASSES} classes, got {len(self.classes)}",
                self.checkpoint or None,
            )
        if len(set(self.classes)) != len(self.classes):
            raise CheckpointError(
                f"repeated class names in {list(self.classes)}", self.checkpoint or None
            )
        if isinstance(self.normalization, Mapping):
            self.normalization = Normalization.from_dict(dict(self.normalization))
        if self.normalization.bands is not None:
            self.normalization = self.normalization.select(self.bands)
        if len(self.normalization.min) != len(self.bands):
            raise CheckpointError(
                f"normalization has {len(self.normalization.min)} bands, model has "
                f"{len(self.bands)}",
                self.checkpoint or None,
            )
        if self.time_steps is None:
            self.time_steps = self.season.steps
        self.model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ModelSpec:
        """Load a ``.safetensors`` checkpoint written by :mod:`sarcrop.training.checkpoint`."""
        from sarcrop.training.checkpoint import load_checkpoint

        model, meta = load_checkpoint(path)

        def get(name: str, default: Any = None) -> Any:
            if isinstance(meta, Mapping):
                return meta.get(name, default)
            return getattr(meta, name, default)

        season = get("season")
        if isinstance(season, Mapping):
            season = Season.from_dict(dict(season))
        if not isinstance(season, Season):
            raise CheckpointError("checkpoint metadata has no season", path)
        if get("normalization") is None:
            raise CheckpointError("checkpoint metadata has no normalization statistics", path)
        composite = get("composite") or {}
        if not isinstance(composite, Mapping):
            composite = vars(composite)
        training = get("training") or {}
        patch_size, pixel_size = training.get("patch_size"), training.get("pixel_size")
        if pixel_size is None and pretrained.is_shipped(path):
            pixel_size = pretrained.PIXEL_SIZE
        return cls(
            model=model,
            bands=tuple(get("bands")),
            season=season,
            normalization=get("normalization"),
            time_steps=get("time_steps"),
            architecture=str(get("architecture") or ""),
            region=str(get("region") or ""),
            positive=tuple(get("positive") or ()),
            checkpoint=str(Path(path).resolve()),
            composite=dict(composite),
            classes=tuple(get("target_classes") or ()),
            patch_size=None if patch_size is None else int(patch_size),
            early_seasons=meta.learnt_early_seasons(),
            pixel_size=None if pixel_size is None else float(pixel_size),
            orbit=training.get("orbit"),
            threshold=meta.class_threshold(),
        )

    def one_crop(self, positive: Sequence[str]) -> ModelSpec:
        """This crop-type model read as a map of ``positive`` (some of its classes) against the
        rest: the log-odds of their summed probability, a binary model's output. A binary
        model of those classes comes back as it is."""
        from sarcrop.training.strategies import crop_outputs, merge_head

        wanted = tuple(positive)
        try:
            crop = crop_outputs(self.classes, self.positive, wanted)
        except ValueError as exc:
            raise CheckpointError(str(exc), self.checkpoint or None) from None
        if crop is None:
            return self
        model = copy.deepcopy(self.model)
        merge_head(model, crop)
        return replace(self, model=model, classes=(), positive=wanted)

    def moved_to(self, start: dt.date) -> ModelSpec:
        """This model reading a season that starts on ``start``: its composite periods (count
        and length) moved there, for another year or a calendar shifted to another area's."""
        return replace(self, season=Season(start, self.season.steps, self.season.days))

    def composite_options(self) -> dict[str, Any]:
        keys = ("method", "space", "min_acquisitions", "speckle_filter", "gaps")
        return {k: self.composite[k] for k in keys if k in self.composite}

    def fingerprint(self) -> str:
        """Hash of the weights and of every input convention: same hash, same predictions."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        meta: dict[str, Any] = {
            "bands": self.bands,
            "season": self.season.to_dict(),
            "normalization": self.normalization.to_dict(),
            "time_steps": self.time_steps,
            "composite": self.composite_options(),
            "class": type(self.model).__qualname__,
        }
        if self.classes:  # binary fingerprints stay those of earlier versions
            meta["classes"] = list(self.classes)
        merged = getattr(self.model, "options", {}).get("merged_head")
        if merged is not None:  # a crop-type head read for some of its classes
            meta["merged_head"] = list(merged)
        digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
        return digest.hexdigest()


def check_engine_runs(specs: Sequence[ModelSpec], engine: str) -> None:
    """A forest (``sarcrop baseline --save``) maps with the torch engine."""
    for spec in specs:
        if engine == "onnx" and spec.architecture in FORESTS:
            problem = "the onnx engine runs networks; map a forest with --engine torch"
            raise CheckpointError(problem, spec.checkpoint)


def check_compatible(specs: Sequence[ModelSpec]) -> None:
    """Models averaged into one map are fed one composite: they must read the same inputs."""
    first = specs[0]

    def conventions(spec: ModelSpec) -> dict[str, Any]:
        return {
            "bands": ",".join(spec.bands),
            "season": spec.season.to_dict(),
            "normalisation": spec.normalization.to_dict(),
            "time steps": spec.time_steps,
            "composite options": spec.composite_options(),
            "classes": list(spec.classes),
        }

    expected = conventions(first)
    for number, spec in enumerate(specs[1:], start=2):
        for name, value in conventions(spec).items():
            if value != expected[name]:
                raise CheckpointError(
                    f"{name} {value} here, {expected[name]} in the first model "
                    f"({pretrained.display_name(first.checkpoint or 'model 1')}): models averaged "
                    "into one map must share bands, season, normalisation and classes",
                    spec.checkpoint or f"model {number}",
                )
    _check_same_crop(specs)


def _check_same_crop(specs: Sequence[ModelSpec]) -> None:
    """One-crop models averaged into one map must map one crop: a rice model's probability
    averaged with a maize model's is neither (models that record no crop are not compared)."""
    named = [(spec, sorted(class_key(p) for p in spec.positive)) for spec in specs if spec.positive]
    for spec, crop in named[1:]:
        first, expected = named[0]
        if crop != expected:
            raise CheckpointError(
                f"maps {', '.join(spec.positive)}, and "
                f"{pretrained.display_name(first.checkpoint or 'model 1')} maps "
                f"{', '.join(first.positive)}: models averaged into one map must map one crop",
                spec.checkpoint or "a model",
            )


@dataclass(frozen=True)
class BlockCompute:
    """How the windows of every block of one map are computed.

    ``runners`` (ONNX Runtime models, one per spec, built for :func:`window_batch_shape`)
    replace the PyTorch models; batches are then of the runners' fixed batch size (at most
    ``batch_size``), the last one zero-padded to it.
    """

    timesteps: int
    batch_size: int = 4
    precision: Precision = "fp32"
    runners: Sequence[OnnxModel] | None = None


@dataclass
class BlockInput:
    """The composites of one block, read before (or while) the model computes another."""

    index: int
    data: np.ndarray  # (timesteps, bands, rows, cols) of the block's read window, normalised
    valid: np.ndarray  # (extent height, extent width): pixels with data in some composite


@dataclass
class BlockResult:
    """Weighted probability sums of one block over its extent clipped to the area.

    ``sums`` is ``Σ weight · p`` of the block's windows, NaN where the input has no data:
    ``(rows, cols)`` for one binary model, ``(models, rows, cols)`` for several, and always
    ``(models, classes, rows, cols)`` for crop-type models (one sum per class). The matching weight
    totals are not stored: they follow from the layout alone
    (:meth:`WindowLayout.weight_profile`).
    """

    index: int
    sums: np.ndarray
    windows: int = 0

    def save(self, path: Path) -> None:
        # Not compressed: deflating the float sums saved a third of the disk but, on a GPU,
        # took a quarter of predict's time, in the thread that feeds the model.
        with open(path, "wb") as handle:
            np.savez(handle, index=self.index, windows=self.windows, sums=self.sums)

    @classmethod
    def load(cls, path: Path) -> BlockResult:
        """A finished block; one line naming a damaged one, which is removed so that the next
        run computes it again."""
        try:
            with np.load(path) as data:
                return cls(int(data["index"]), data["sums"], int(data["windows"]))
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            path.unlink(missing_ok=True)
            problem = " ".join(str(exc).split()) or type(exc).__name__
            raise SarcropError(
                f"a damaged finished block ({problem}), removed: run again to compute it", path
            ) from None


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s weights are, or its buffers (a forest's trees); the cpu for a model
    without either."""
    tensor = next(iter(model.parameters()), next(iter(model.buffers()), None))
    return tensor.device if tensor is not None else torch.device("cpu")


def check_device(device: str) -> None:
    """Refuse ``cuda`` in one line when torch sees no GPU here."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SarcropError("device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")


@contextlib.contextmanager
def placed(specs: Sequence[ModelSpec], device: str) -> Iterator[None]:
    """The models' weights on ``device`` for the whole run (moved once), then back."""
    before = [model_device(spec.model) for spec in specs]
    for spec in specs:
        spec.model.to(device)
    try:
        yield
    finally:
        for spec, where in zip(specs, before, strict=True):
            spec.model.to(where)


def window_memory(spec: ModelSpec, window: int, precision: Precision) -> int:
    """Bytes of GPU memory one window takes through ``spec``'s model (placed on a GPU): the
    peak of one forward pass above what was allocated before it."""
    device = model_device(spec.model)
    steps = int(spec.time_steps or spec.season.steps)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.zeros((1, steps, len(spec.bands), window, window), device=device)
    with torch.inference_mode(), arithmetic(device, precision):
        spec.model(x)
    torch.cuda.synchronize(device)
    return max(1, torch.cuda.max_memory_allocated(device) - before)


def batch_for_memory(free: int, per_window: int, largest: int) -> int:
    """The windows per batch that half of ``free`` bytes holds, between 1 and ``largest``
    (the other half is left to the allocator's fragments and to other processes)."""
    return max(1, min(largest, free // 2 // max(1, per_window)))


@contextlib.contextmanager
def arithmetic(device: torch.device, precision: Precision) -> Iterator[None]:
    """``bf16``: bfloat16 autocast (cpu or cuda). ``fp32`` on cuda: true fp32, TF32 off.

    PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) by default; ``fp32`` is meant to
    be the reference the bf16 agreement is measured against, so TF32 is off while it runs.
    """
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with exactly ``threads`` torch threads (CPU results depend on the thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_engine(engine: str) -> None:
    """Refuse an unknown engine, and the ``onnx`` engine without its extra, in one line.

    ONNX Runtime is imported here, when the engine is chosen, never when sarcrop is imported.
    """
    if engine not in ENGINES:
        raise SarcropError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "onnx":
        missing = []
        for module in ("onnxruntime", "onnx"):  # onnx: the exporter writes the graph with it
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise SarcropError(
                f"the onnx engine needs {' and '.join(missing)}: pip install 'sarcrop[onnx]' "
                "(or use the torch engine)"
            )


def window_batch_shape(spec: ModelSpec, layout: WindowLayout, batch_size: int) -> tuple[int, ...]:
    """The one input shape of every batch for the ``onnx`` engine (partial batches are padded).

    The batch is the smallest that still needs as many batches per block as ``batch_size``, so
    the zero padding of the last batch is as small as possible (5 windows per block with
    ``batch_size=4`` run as batches of 3 + 2, padded to 3 + 3, not 4 + 1 padded to 4 + 4).
    """
    steps = int(spec.time_steps or spec.season.steps)
    windows = layout.max_block_windows
    batches = -(-windows // batch_size)
    batch = -(-windows // batches)
    return (batch, steps, len(spec.bands), layout.window, layout.window)


def build_onnx_model(spec: ModelSpec, shape: tuple[int, ...], threads: int) -> OnnxModel:
    """ONNX Runtime model of ``spec.model`` for inputs of ``shape``, with ``threads`` threads."""
    check_engine("onnx")
    return OnnxModel(spec.model, shape, threads=threads)


# ONNX models built in this process, per model object (a Dask worker keeps the scattered model
# for the whole run, so it exports and builds its session once), then per (shape, threads).
_ONNX_MODELS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], OnnxModel]] = (
    weakref.WeakKeyDictionary()
)
_ONNX_LOCK = threading.Lock()


def cached_onnx_model(spec: ModelSpec, shape: tuple[int, ...], threads: int) -> OnnxModel:
    """:func:`build_onnx_model`, built once per process for the same model object."""
    key = (tuple(shape), threads)
    with _ONNX_LOCK:
        models = _ONNX_MODELS.setdefault(spec.model, {})
        if key not in models:
            models[key] = build_onnx_model(spec, shape, threads)
        return models[key]


def open_stack(
    images: Source | SceneStack, spec: ModelSpec, scenes: SceneOptions, timesteps: int
) -> SceneStack:
    """The scenes of ``images`` with the model's bands, on the client and on every worker alike,
    their values checked where a map of the first ``timesteps`` periods reads them (a later
    scene's pixels are never read).

    A simulated region folder (with ``region.json``) stands for its scenes, as in ``prepare``.
    """
    if not isinstance(images, SceneStack):
        from sarcrop.data.prepare import region_scenes
        from sarcrop.data.reader import open_scenes

        if isinstance(images, str | Path) and Path(images).is_dir():
            images = region_scenes(images)
        images = open_scenes(
            images,
            bands=list(spec.bands),
            orbit=scenes.orbit,
            crs=scenes.crs,
            resolution=scenes.resolution,
            band_map=scenes.band_map,
            checked=read_by_map(spec.season, timesteps),
        )
    images.require_bands(spec.bands)
    return images


def season_until(season: Season, timesteps: int) -> Season:
    """The first ``timesteps`` periods of ``season``."""
    return Season(season.start, timesteps, season.days)


def restrict(stack: SceneStack, season: Season, timesteps: int) -> SceneStack:
    """Only the acquisitions the first ``timesteps`` composites of ``season`` read: the whole
    season's reach a period past its end to fill a gap there (:func:`~sarcrop.data.composite.
    reach`), an early map's stop at its last period, so that later scenes are never read (nor
    a monthly mean that runs past it)."""
    return stack.select(read_by_map(season, timesteps))


def read_by_map(season: Season, timesteps: int) -> Callable[[Acquisition], bool]:
    """Whether a map of the first ``timesteps`` periods of ``season`` reads an acquisition
    (:func:`restrict`)."""
    from sarcrop.data.composite import reach

    observed = season_until(season, timesteps)
    start, end = reach(observed)
    if timesteps < season.steps:
        end = dt.datetime.combine(observed.end, dt.time())
        return lambda a: start <= a.middle and (a.time < end if a.until is None else a.until <= end)
    return lambda a: start <= a.middle < end


def _composite(
    stack: SceneStack,
    season: Season,
    bands: tuple[str, ...],
    window: Any,
    options: Mapping[str, Any],
) -> np.ndarray:
    from sarcrop.data.composite import composite

    return composite(stack, season, list(bands), window, **options)


def read_block(
    spec: ModelSpec, stack: SceneStack, layout: WindowLayout, index: int, *, timesteps: int
) -> BlockInput:
    """The composites of block ``index``, normalised as the model's input (the reading half
    of :func:`predict_block`). Normalised once per block, not per window: windows overlap, and
    this half runs beside the model (:func:`sarcrop.prediction.predict.prefetched`)."""
    block = layout.block(index)
    read = layout.read_window(block)
    season = season_until(spec.season, timesteps)
    data = _composite(stack, season, spec.bands, read, spec.composite_options())[:timesteps]
    valid = np.zeros((int(block.extent.height), int(block.extent.width)), dtype=bool)
    valid[: int(read.height), : int(read.width)] = ~np.all(np.isnan(data), axis=(0, 1))
    return BlockInput(index, normalize(data, spec.normalization, out=data), valid)


def probabilities(
    spec: ModelSpec, inputs: np.ndarray, runner: OnnxModel | None, precision: Precision
) -> np.ndarray:
    """Probabilities of a batch, on the model's device or with ``runner``: ``(n, H, W)``
    (sigmoid of one logit) or ``(n, classes, H, W)`` (softmax) for a crop-type model."""
    if runner is not None:
        logits = runner(torch.from_numpy(inputs))
    else:
        device = model_device(spec.model)
        # The model's working memory is kept for the next batch (see sarcrop.utils.memory).
        with arithmetic(device, precision), reusing_freed_memory():
            logits = spec.model(torch.from_numpy(inputs).to(device))
    channels = len(spec.classes) or 1
    if logits.shape[1] != channels:
        raise CheckpointError(
            f"the model gives {logits.shape[1]} output channels, its metadata expects {channels}",
            spec.checkpoint or None,
        )
    if spec.classes:
        return torch.softmax(logits.float(), dim=1).cpu().numpy()
    return torch.sigmoid(logits.float())[:, 0].cpu().numpy()


def as_list(items: Any) -> list[Any]:
    """One item or a sequence of them, as a list."""
    return list(items) if isinstance(items, list | tuple) else [items]


@torch.inference_mode()
def compute_block(
    specs: ModelSpec | Sequence[ModelSpec],
    layout: WindowLayout,
    block_input: BlockInput,
    compute: BlockCompute,
    *,
    on_windows: Callable[[int], None] | None = None,
) -> BlockResult:
    """Run every model over the windows of a read block, adding them up with their weights.

    Each model sees the same inputs in the same batches, so its sums are those of a run with
    that model alone. ``on_windows(n)`` is called after each batch with the number of windows
    it covered (for progress bars).
    """
    specs, engines = as_list(specs), compute.runners
    spec, timesteps, batch_size = specs[0], compute.timesteps, compute.batch_size
    if engines is not None:
        batch_size = engines[0].input_shape[0]
    block = layout.block(block_input.index)
    win = layout.window
    total_steps = int(spec.time_steps or spec.season.steps)
    weights = layout.weights
    data, valid = block_input.data, block_input.valid
    height, width = data.shape[-2:]
    channels = (len(spec.classes),) if spec.classes else ()
    extent = (int(block.extent.height), int(block.extent.width))
    acc = np.zeros((len(specs), *channels, *extent), dtype=np.float32)
    offsets = block.offsets(layout.stride)
    ran = 0

    for first in range(0, block.n, batch_size):
        batch = offsets[first : first + batch_size]
        keep = [(r, c) for r, c in batch if valid[r : r + win, c : c + win].any()]
        if keep:
            n_inputs = len(keep) if engines is None else batch_size
            inputs = np.zeros((n_inputs, total_steps, len(spec.bands), win, win), np.float32)
            for i, (r, c) in enumerate(keep):
                piece = data[:, :, r : r + win, c : c + win]
                inputs[i, :timesteps, :, : piece.shape[2], : piece.shape[3]] = piece
            for m, model in enumerate(specs):
                runner = None if engines is None else engines[m]
                prob = probabilities(model, inputs, runner, compute.precision)
                for i, (r, c) in enumerate(keep):
                    acc[m, ..., r : r + win, c : c + win] += prob[i] * weights
            ran += len(keep)
        if on_windows is not None:
            on_windows(len(batch))

    sums = acc[..., :height, :width]
    sums[..., ~valid[:height, :width]] = np.nan
    single = len(specs) == 1 and not channels  # crop-type sums keep their model axis
    return BlockResult(block.index, np.ascontiguousarray(sums[0] if single else sums), ran)


def predict_block(
    specs: ModelSpec | Sequence[ModelSpec],
    stack: SceneStack,
    layout: WindowLayout,
    index: int,
    compute: BlockCompute,
) -> BlockResult:
    """Predict every window of block ``index`` with one model or several (read, then compute).

    ``stack`` should already be restricted to the first ``compute.timesteps`` periods (see
    :func:`restrict`).
    """
    first = as_list(specs)[0]
    block_input = read_block(first, stack, layout, index, timesteps=compute.timesteps)
    return compute_block(specs, layout, block_input, compute)


def finalize(sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weight-normalised probability (per model if ``sums`` has a leading model axis); NaN where
    no data (NaN sum or zero weight)."""
    out = np.full(sums.shape, np.nan, dtype=np.float32)
    np.divide(sums, weights, out=out, where=weights > 0)
    return out
