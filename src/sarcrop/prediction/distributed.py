"""Spread blocks over a Dask cluster: an existing one (``scheduler``) or a local one (``workers``).

The model is scattered to every worker once (broadcast), so each worker process deserialises it a
single time and reuses it for all its blocks; the checkpoint file does not need to be visible to
the workers. The scenes are opened on each worker from the same source (cached per worker process),
so the scene files must be readable at the same path on every worker. Block results (a few MB each,
whatever the area) travel back to the client, which alone writes the work directory: the workers
need no shared output disk. Each block is computed exactly as in a single process (same batches,
same torch thread count; for the ``onnx`` engine the same fixed batch shape and intra-op thread
count, the ONNX Runtime session built once per worker process), so the map is identical bit for
bit. A worker moves the models' weights to the run's device on its first block and keeps them
there (``cuda`` needs a GPU on every worker).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sarcrop.data.scenes import SceneStack, Source, has_scheme
from sarcrop.errors import SarcropError
from sarcrop.options import Device, Engine, ExecutionOptions, Precision, SceneOptions
from sarcrop.prediction.engine import (
    BlockCompute,
    BlockResult,
    ModelSpec,
    cached_onnx_model,
    check_device,
    open_stack,
    predict_block,
    restrict,
    torch_threads,
    window_batch_shape,
)
from sarcrop.prediction.windows import WindowLayout
from sarcrop.utils.signals import ctrl_c_ignored

# Scene stacks opened in this worker process, by source, options and the client's inputs.
_STACKS: dict[str, SceneStack] = {}


def _worker_stack(
    images: Source | SceneStack, scenes: SceneOptions, spec: ModelSpec, settings: _WorkerSettings
) -> SceneStack:
    """The scenes as this worker reads them, opened once per map: a long-lived cluster's
    worker opens them again when the client finds other files (a scene added since)."""
    if isinstance(images, SceneStack):
        return images
    key = json.dumps(
        [
            str(images) if not isinstance(images, list | tuple) else [str(i) for i in images],
            scenes.model_dump(),
            spec.bands,
            spec.season.to_dict(),
            settings.timesteps,
            settings.inputs,
        ],
        sort_keys=True,
        default=str,
    )
    if key not in _STACKS:
        _STACKS[key] = open_stack(images, spec, scenes, settings.timesteps)
    return _STACKS[key]


@dataclass(frozen=True)
class _WorkerSettings:
    """How every worker computes its blocks, resolved once by the client."""

    timesteps: int
    batch_size: int
    threads: int
    engine: Engine
    device: Device
    precision: Precision
    inputs: str  # the client's fingerprint of the scenes (files, sizes, times)


def worker_threads(scheduler: str) -> int | None:
    """The threads of the cluster's smallest worker (None without a worker): the count a
    block computes with by default, which more would oversubscribe."""
    from dask.distributed import Client

    try:
        with Client(scheduler, timeout="30s") as client:
            workers = client.scheduler_info().get("workers", {})
    except OSError as exc:
        raise SarcropError(f"cannot reach the Dask scheduler: {exc}", scheduler) from exc
    counts = [int(w.get("nthreads", 0)) for w in workers.values()]
    return max(1, min(counts)) if counts else None


def _absolute(images: Source) -> Source:
    """Local paths (and glob patterns) as absolute ones; URLs as they are."""
    if isinstance(images, list | tuple):
        return [str(_absolute(str(i))) for i in images]
    text = str(images)
    return text if has_scheme(text) else str(Path(text).absolute())


def _block_task(
    specs: list[ModelSpec],
    images: Source | SceneStack,
    scenes: SceneOptions,
    layout: WindowLayout,
    index: int,
    settings: _WorkerSettings,
) -> BlockResult:
    spec = specs[0]
    opened = _worker_stack(images, scenes, spec, settings)
    stack = restrict(opened, spec.season, settings.timesteps)
    check_device(settings.device)
    for model in specs:  # the worker keeps the scattered models: moved on the first block only
        model.model.to(settings.device)
    with torch_threads(settings.threads):
        runners = None
        if settings.engine == "onnx":
            shape = window_batch_shape(spec, layout, settings.batch_size)
            runners = [cached_onnx_model(s, shape, settings.threads) for s in specs]
        compute = BlockCompute(settings.timesteps, settings.batch_size, settings.precision, runners)
        return predict_block(specs, stack, layout, index, compute)


def run_blocks(
    specs: Sequence[ModelSpec],
    images: Source | SceneStack,
    scenes: SceneOptions,
    layout: WindowLayout,
    indices: list[int],
    *,
    timesteps: int,
    batch_size: int,
    threads: int,
    execution: ExecutionOptions,
    inputs: str,
    on_result: Callable[[BlockResult], None],
) -> None:
    """Compute blocks ``indices`` on a cluster; ``on_result`` runs in the caller as each ends.
    ``inputs`` identifies the scenes the client found (:func:`~sarcrop.prediction.predict.
    stack_fingerprint`): a worker keeps a stack it opened for a map of the same inputs only.

    ``threads`` is the count resolved once by the client: every worker computes with it, as it
    uses the client's resolved ``execution.device`` and ``execution.precision``.
    """
    scheduler, workers = execution.scheduler, execution.workers
    if not indices:
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler is not None:
            client = Client(scheduler, timeout="30s")
        else:
            if workers is None or workers < 1:
                raise SarcropError(f"workers must be >= 1, got {workers}")
            with ctrl_c_ignored():  # the workers leave Ctrl-C to this process, which stops them
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # No dashboard; its HTTP server on a free port, so that two runs at once
                    # (or a notebook's cluster on 8787) do not warn about the port.
                    scheduler_kwargs={"dashboard_address": ":0"},
                    silence_logs=logging.ERROR,
                )
            client = Client(cluster)
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise SarcropError(f"cannot reach the Dask scheduler: {exc}", scheduler) from exc

    try:
        models = client.scatter(list(specs), broadcast=True, hash=False)
        source = (
            client.scatter(images, broadcast=True, hash=False)
            if isinstance(images, SceneStack)
            else _absolute(images)  # a cluster's workers may run in another folder
        )
        settings = _WorkerSettings(
            timesteps,
            batch_size,
            threads,
            execution.engine,
            execution.device,
            execution.precision,
            inputs,
        )
        token = uuid.uuid4().hex[:8]
        futures = [
            client.submit(
                _block_task,
                models,
                source,
                scenes,
                layout,
                i,
                settings,
                key=f"sarcrop-block-{i}-{token}",
                pure=False,
            )
            for i in indices
        ]
        for future in as_completed(futures):
            result = future.result()
            future.release()
            on_result(result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
