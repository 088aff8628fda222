"""Run a model over one block of overlapping windows, straight from the scenes.

A block (a few consecutive windows of one window row) is the unit of work: it is computed
independently of every other block, in a fixed order of batches and windows, so its result is the
same bytes whichever process computes it. Composites are built per block from the scenes
with the *same* :func:`sarcrop.data.composite.composite` that ``prepare`` uses, normalised with the
checkpoint's statistics, and zero-padded after ``timesteps`` periods for in-season maps.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from torch import nn

from sarcrop.data.normalization import Normalization, normalize
from sarcrop.data.scenes import SceneStack, Source
from sarcrop.data.season import Season
from sarcrop.errors import CheckpointError, SarcropError
from sarcrop.options import Engine, SceneOptions
from sarcrop.prediction.onnx_export import OnnxModel
from sarcrop.prediction.windows import WindowLayout

ENGINES: tuple[str, ...] = get_args(Engine)


@dataclass
class ModelSpec:
    """A model and everything needed to feed it: bands, season window and normalisation."""

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

    def __post_init__(self) -> None:
        self.bands = tuple(str(b).upper() for b in self.bands)
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
        composite = get("composite") or {}
        if not isinstance(composite, Mapping):
            composite = vars(composite)
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
        )

    def composite_options(self) -> dict[str, Any]:
        keys = ("method", "space", "min_acquisitions", "speckle_filter")
        return {k: self.composite[k] for k in keys if k in self.composite}

    def fingerprint(self) -> str:
        """Hash of the weights and of every input convention: same hash, same predictions."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        meta = {
            "bands": self.bands,
            "season": self.season.to_dict(),
            "normalization": self.normalization.to_dict(),
            "time_steps": self.time_steps,
            "composite": self.composite_options(),
            "class": type(self.model).__qualname__,
        }
        digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
        return digest.hexdigest()


@dataclass
class BlockResult:
    """Weighted probability sum of one block over its extent clipped to the area.

    ``sums`` is ``Σ weight · p`` of the block's windows, NaN where the input has no data. The
    matching weight totals are not stored: they follow from the layout alone
    (:meth:`WindowLayout.weight_profile`).
    """

    index: int
    sums: np.ndarray
    windows: int = 0

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez_compressed(handle, index=self.index, windows=self.windows, sums=self.sums)

    @classmethod
    def load(cls, path: Path) -> BlockResult:
        with np.load(path) as data:
            return cls(int(data["index"]), data["sums"], int(data["windows"]))


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


def open_stack(images: Source | SceneStack, spec: ModelSpec, scenes: SceneOptions) -> SceneStack:
    """The scenes of ``images`` with the model's bands, on the client and on every worker alike.

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
        )
    images.require_bands(spec.bands)
    return images


def season_until(season: Season, timesteps: int) -> Season:
    """The first ``timesteps`` periods of ``season``."""
    return Season(season.start, timesteps, season.days)


def restrict(stack: SceneStack, season: Season) -> SceneStack:
    """Only the acquisitions inside ``season``: later scenes are never read."""
    return stack.select(lambda a: season.period_of(a.time) is not None)


def _composite(
    stack: SceneStack,
    season: Season,
    bands: tuple[str, ...],
    window: Any,
    options: Mapping[str, Any],
) -> np.ndarray:
    from sarcrop.data.composite import composite

    return composite(stack, season, list(bands), window, **options)


@torch.inference_mode()
def predict_block(
    spec: ModelSpec,
    stack: SceneStack,
    layout: WindowLayout,
    index: int,
    *,
    timesteps: int,
    batch_size: int = 4,
    on_windows: Callable[[int], None] | None = None,
    runner: OnnxModel | None = None,
) -> BlockResult:
    """Predict every window of block ``index`` and add them up with their blending weights.

    ``stack`` should already be restricted to the first ``timesteps`` periods (see
    :func:`restrict`). ``on_windows(n)`` is called after each batch with the number of windows
    it covered (for progress bars). ``runner`` (an ONNX Runtime model of ``spec.model`` for
    :func:`window_batch_shape`) replaces the PyTorch model; batches are then of the runner's
    fixed batch size (at most ``batch_size``), the last one zero-padded to it.
    """
    if runner is not None:
        batch_size = runner.input_shape[0]
    block = layout.block(index)
    win, stride = layout.window, layout.stride
    total_steps = int(spec.time_steps or spec.season.steps)
    season = season_until(spec.season, timesteps)
    weights = layout.weights
    options = spec.composite_options()
    read = layout.read_window(block)
    height, width = int(read.height), int(read.width)
    acc = np.zeros((win, int(block.extent.width)), dtype=np.float32)
    data = _composite(stack, season, spec.bands, read, options)[:timesteps]
    valid = np.zeros(acc.shape, dtype=bool)
    valid[:height, :width] = ~np.all(np.isnan(data), axis=(0, 1))
    param = next(iter(spec.model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    ran = 0

    for first in range(0, block.n, batch_size):
        n = min(batch_size, block.n - first)
        keep = [k for k in range(first, first + n) if valid[:, k * stride : k * stride + win].any()]
        if keep:
            n_inputs = len(keep) if runner is None else batch_size
            inputs = np.zeros((n_inputs, total_steps, len(spec.bands), win, win), np.float32)
            for i, k in enumerate(keep):
                c = k * stride
                piece = data[:, :, :, c : c + win]
                inputs[i, :timesteps, :, : piece.shape[2], : piece.shape[3]] = normalize(
                    piece, spec.normalization
                )
            if runner is None:
                logits = spec.model(torch.from_numpy(inputs).to(device))
            else:
                logits = runner(torch.from_numpy(inputs))[: len(keep)]
            prob = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
            for i, k in enumerate(keep):
                c = k * stride
                acc[:, c : c + win] += prob[i] * weights
            ran += len(keep)
        if on_windows is not None:
            on_windows(n)

    sums = acc[:height, :width]
    sums[~valid[:height, :width]] = np.nan
    return BlockResult(index, np.ascontiguousarray(sums), ran)


def finalize(sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weight-normalised probability; NaN where no data (NaN sum or zero weight)."""
    out = np.full(sums.shape, np.nan, dtype=np.float32)
    np.divide(sums, weights, out=out, where=weights > 0)
    return out
