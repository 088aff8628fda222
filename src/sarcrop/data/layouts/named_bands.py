"""A single raster with many named bands, VV/VH per time step picked by name (CropHarvest).

Bands are described ``VV, VH, B1, …`` for the first time step and ``VV_1, VH_1, …`` for step k
(suffix ``_k``); other bands (optical, weather, terrain) are ignored. ``band_map`` renames, e.g.
``{"VV": "S1_VV"}`` picks ``S1_VV``, ``S1_VV_1``, ….

Times: a band tag ``ACQUISITION_TIME`` wins. Otherwise the time axis is inferred from the file
name, as CropHarvest exports are named ``<id>_<start>_<end>.tif``: step k is the month that
begins at the start date moved by k calendar months (a monthly composite labelled by its first
day, which composites read at the month's middle). This inference is recorded in
``stack.attrs["time_inference"]``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sarcrop.data.layouts._common import (
    POLARISATIONS,
    RasterInfo,
    add_months,
    dates_in_name,
    declared_units,
    is_raster,
    orbit_from_name,
    parse_time,
    raster_info,
)
from sarcrop.data.layouts._stack import build_raster_stack
from sarcrop.data.scenes import Acquisition, BandRef, Layout, SceneStack, Source
from sarcrop.errors import InputDataError


def _steps(info: RasterInfo, band_map: dict[str, str] | None) -> dict[int, dict[str, int]]:
    """Time step → {band: 1-based index} for the polarisation bands of ``info``."""
    names = {b: b for b in POLARISATIONS}
    names.update({k.upper(): v for k, v in (band_map or {}).items()})
    patterns = {b: re.compile(rf"{re.escape(v)}(?:_(\d+))?", re.I) for b, v in names.items()}
    steps: dict[int, dict[str, int]] = {}
    for index, description in enumerate(info.descriptions, start=1):
        for band, pattern in patterns.items():
            match = pattern.fullmatch(description.strip())
            if match:
                steps.setdefault(int(match.group(1) or 0), {})[band] = index
    return steps


def _names(info: RasterInfo, shown: int = 20) -> str:
    """The band names of ``info`` without their step suffix (``VV`` for ``VV``, ``VV_1``…)."""
    names = list(dict.fromkeys(re.sub(r"_\d+$", "", d.strip()) for d in info.descriptions))
    names = [n for n in names if n] or ["none described"]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _single(paths: list[Path]) -> RasterInfo | None:
    rasters = [p for p in paths if is_raster(p)]
    return raster_info(rasters[0]) if len(rasters) == 1 else None


class NamedBands(Layout, name="named_bands", order=30):
    """one raster with named bands per time step (VV, VH, VV_1, VH_1, …), monthly steps from the
    start date in the file name"""

    def detect(
        self, paths: list[Path], source: Source, band_map: dict[str, str] | None = None
    ) -> bool:
        info = _single(paths)
        # With the user's names or the usual ones: a band_map naming no band is refused by open
        return info is not None and any(len(_steps(info, m)) > 1 for m in (band_map, None))

    def open(self, paths: list[Path], source: Source, **options: object) -> SceneStack:
        info = _single(paths)
        assert info is not None
        path = Path(info.path)
        band_map: dict[str, str] = options.get("band_map") or {}  # type: ignore[assignment]
        steps = _steps(info, band_map)
        found = {band for bands in steps.values() for band in bands}
        missing = [f"{k}={v}" for k, v in band_map.items() if k.upper() not in found]
        if missing:
            raise InputDataError(
                f"band_map {', '.join(missing)}: no band of that name (or NAME_k) in the file "
                f"(bands: {_names(info)})",
                path,
            )
        start = next(iter(dates_in_name(path.stem)), None)
        items = []
        for step in sorted(steps):
            indices = steps[step]
            tagged = [
                parse_time(info.band_tags[i - 1].get("ACQUISITION_TIME")) for i in indices.values()
            ]
            when = next((t for t in tagged if t is not None), None)
            until = None
            if when is None:
                if start is None:
                    raise InputDataError(
                        "no acquisition time: expected ACQUISITION_TIME band tags or a start "
                        "date (YYYY-MM-DD) in the file name",
                        path,
                    )
                when, until = (
                    dt.datetime.combine(add_months(start, k), dt.time()) for k in (step, step + 1)
                )
            refs = {b: BandRef(str(path), i, info.grid, info.nodata) for b, i in indices.items()}
            orbit = orbit_from_name(path.name)
            items.append((Acquisition(when, orbit, source=str(path), until=until), refs))
        items.sort(key=lambda item: item[0].time)
        stated = declared_units(info.tags, path.name)
        return build_raster_stack(
            items,
            description=str(path),
            declared={str(path): stated} if stated else {},
            attrs={
                "layout": self.name,
                "time_inference": f"step k = the month from {start} + k months (file name)"
                if start
                else "band tags",
            },
        )
