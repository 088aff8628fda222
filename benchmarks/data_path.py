"""Data path speed: GeoTIFF scenes → composites → dataset store, against the raw read speed.

A Korea-like region is simulated once (cached under ``cache``). The I/O bound is a full
rasterio read of every scene file; ``composite()`` over the whole area and ``prepare()`` to a
Zarr store are timed on the same files. MB/s counts decoded float32 scene pixels.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import measure
from sarcrop.data.composite import composite, period_indices
from sarcrop.data.prepare import prepare_region
from sarcrop.data.reader import open_scenes
from sarcrop.data.simulate import simulate_region
from sarcrop.options import TilingOptions

BANDS = ("VH", "VV")


def simulated_region(cache: Path, size: int) -> Path:
    """A simulated Korea region of ``size²`` px (made once, reused from ``cache``)."""
    folder = cache / f"korea-{size}"
    if not (folder / "region.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        simulate_region("korea", folder, size=(size, size), seed=0)
    return folder


def raw_read(paths: list[Path]) -> int:
    """Read every band of every file in full; returns the decoded bytes."""
    import rasterio

    total = 0
    for path in paths:
        with rasterio.open(path) as src:
            total += src.read(out_dtype="float32").nbytes
    return total


def run(quick: bool = False, cache: Path | None = None) -> dict[str, Any]:
    size = 256 if quick else 1024
    repeats = 1 if quick else 3
    cache = Path(cache or tempfile.gettempdir()) / "sarcrop-bench"
    start = time.perf_counter()
    folder = simulated_region(cache, size)
    simulate_s = time.perf_counter() - start
    paths = sorted((folder / "scenes").glob("*.tif"))
    file_mb = sum(p.stat().st_size for p in paths) / 1e6

    raw_bytes = raw_read(paths)
    raw = measure(lambda: raw_read(paths), repeats, warmup=0)

    stack = open_scenes(folder / "scenes", bands=BANDS)
    from sarcrop.data.prepare import read_region
    from sarcrop.data.season import Season

    season = Season.from_dict(read_region(folder)["season"])  # type: ignore[arg-type]
    used = sum(len(indices) for indices in period_indices(stack, season))
    used_bytes = used * len(BANDS) * size * size * 4
    result: np.ndarray | None = None

    def make_composite() -> None:
        nonlocal result
        result = composite(stack, season, BANDS)

    comp = measure(make_composite, repeats, warmup=0)
    assert result is not None
    n_composites = result.shape[0] * result.shape[1]

    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        store = Path(tmp) / "store.zarr"

        def make_store() -> None:
            shutil.rmtree(store, ignore_errors=True)
            prepare_region(
                folder, store, bands=BANDS, tiling=TilingOptions(patch_size=256), progress=False
            )

        prep = measure(make_store, 1 if quick else 2, warmup=0)

    mpixel = size * size / 1e6
    return {
        "size": size,
        "scenes": len(paths),
        "scenes_in_season": used,
        "file_mb": file_mb,
        "simulate_s": simulate_s,
        "raw_read": {
            **raw,
            "decoded_mb": raw_bytes / 1e6,
            "mb_per_s": raw_bytes / 1e6 / raw["median_s"],
        },
        "composite": {
            **comp,
            "composites": n_composites,
            "composites_per_s": n_composites / comp["median_s"],
            "mpixel_per_s": mpixel * n_composites / comp["median_s"],
            "input_mb": used_bytes / 1e6,
            "mb_per_s": used_bytes / 1e6 / comp["median_s"],
        },
        "prepare": {
            **prep,
            "mb_per_s": used_bytes / 1e6 / prep["median_s"],
            "km2_per_min": size * size * 1e-4 / prep["median_s"] * 60,
        },
    }
