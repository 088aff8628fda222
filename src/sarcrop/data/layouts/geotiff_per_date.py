"""One GeoTIFF per acquisition (the usual output of SNAP, pyroSAR, GEE exports, the simulator).

Each file holds one acquisition. Its bands are polarisations named in the band descriptions
(``"VH"``, ``"VV"``, ``"Sigma0_VV_db"``…); a single-band file may instead name its polarisation in
the file name (``…_VV_….tif``). The acquisition time comes from the ``ACQUISITION_TIME`` tag, else
from the file name (``YYYYMMDDTHHMMSS`` or ``YYYYMMDD``, the first one found, i.e. the start time
in ESA product names). Files of the same time (one per polarisation) are merged. Orbit direction,
relative orbit and platform come from tags, else from the name (``ASC``/``DESC``, pyroSAR's
``_A_``/``_D_`` before the time, ``S1A``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sarcrop.data.layouts._common import (
    AcquisitionBands,
    RasterInfo,
    add_bands,
    declared_units,
    is_raster,
    orbit_from_name,
    orbit_from_text,
    platform_from,
    polarisation,
    raster_info,
    relative_orbit_from_tags,
    time_from_name,
    time_from_tags,
)
from sarcrop.data.layouts._stack import build_raster_stack
from sarcrop.data.scenes import Acquisition, BandRef, Layout, SceneStack, Source
from sarcrop.errors import InputDataError


def _time_of(info: RasterInfo) -> dt.datetime | None:
    return time_from_tags(info.tags) or time_from_name(Path(info.path).name)


def band_names(info: RasterInfo, band_map: dict[str, str] | None = None) -> dict[str, int]:
    """Polarisation → 1-based band index, from descriptions or (one band) the file name.

    ``band_map``'s names are matched first, over every band: a band it names must win over an
    earlier one whose description merely holds the same polarisation (``VH_raw`` before
    ``VH_filtered``). Polarisation tokens then fill in the bands it leaves unassigned.
    """
    wanted = {v.strip().upper(): k.upper() for k, v in (band_map or {}).items()}
    found: dict[str, int] = {}
    for i, description in enumerate(info.descriptions, start=1):
        name = wanted.get(description.strip().upper())
        if name is not None and name not in found:
            found[name] = i
    taken = set(found.values())
    for i, description in enumerate(info.descriptions, start=1):
        if i in taken or description.strip().upper() in wanted:
            continue
        name = polarisation(description)
        if name is None and info.count == 1:
            name = (
                polarisation(info.band_tags[0].get("POLARISATION"))
                or polarisation(Path(info.path).stem)
                or polarisation(info.tags.get("POLARISATION"))
            )
        if name is not None and name not in found:
            found[name] = i
    return found


class GeoTiffPerDate(Layout, name="geotiff_per_date", order=50):
    """one GeoTIFF per acquisition, polarisations in band descriptions or the file name, time in
    an ACQUISITION_TIME tag or the file name (YYYYMMDD[THHMMSS])"""

    def detect(
        self, paths: list[Path], source: Source, band_map: dict[str, str] | None = None
    ) -> bool:
        rasters = [p for p in paths if is_raster(p)]
        return any(
            _time_of(info) is not None and (band_names(info, band_map) or band_names(info))
            for info in map(raster_info, rasters)
        )

    def rejection(self, paths: list[Path], source: Source) -> str | None:
        rasters = [raster_info(p) for p in paths if is_raster(p)]
        if not rasters:
            return None
        if all(_time_of(info) is None for info in rasters):
            return "no acquisition time in names/tags"
        return "no polarisation (VV/VH/HH/HV) in band descriptions or file names"

    def open(self, paths: list[Path], source: Source, **options: object) -> SceneStack:
        band_map = options.get("band_map")
        by_time: AcquisitionBands = {}
        skipped: list[str] = []
        units: dict[str, str] = {}
        described: set[str] = set()
        for path in (p for p in paths if is_raster(p)):
            info = raster_info(path)
            described.update(d.strip().upper() for d in info.descriptions)
            when, bands = _time_of(info), band_names(info, band_map)  # type: ignore[arg-type]
            if when is None or not bands:
                skipped.append(
                    f"{path.name} ({'no acquisition time' if when is None else 'no VV/VH band'})"
                )
                continue
            acquisition = Acquisition(
                time=when,
                orbit=orbit_from_text(info.tags.get("ORBIT_DIRECTION"))
                or orbit_from_name(path.name),
                relative_orbit=relative_orbit_from_tags(info.tags),
                platform=platform_from(info.tags, path.name),
                source=str(path),
            )
            refs = {b: BandRef(str(path), i, info.grid, info.nodata) for b, i in bands.items()}
            add_bands(by_time, acquisition, refs, "files", path)
            stated = declared_units(info.tags, path.name)
            if stated is not None:
                units[str(path)] = stated
        if not by_time:
            raise InputDataError(
                "no GeoTIFF with an acquisition time and a polarisation", _common_parent(paths)
            )
        _check_band_map(band_map, described, _common_parent(paths))  # type: ignore[arg-type]
        return build_raster_stack(
            [by_time[t] for t in sorted(by_time)],
            description=_common_parent(paths),
            declared=units,
            attrs={"layout": self.name, "skipped": skipped},
        )


def _check_band_map(band_map: dict[str, str] | None, described: set[str], where: str) -> None:
    """A band_map naming a description no file has would be ignored: refused instead."""
    unmatched = [
        f"{k}={v}" for k, v in (band_map or {}).items() if v.strip().upper() not in described
    ]
    if unmatched:
        found = ", ".join(sorted(d for d in described if d)) or "none"
        raise InputDataError(
            f"band_map {', '.join(unmatched)}: no band is described so (descriptions: {found})",
            where,
        )


def _common_parent(paths: list[Path]) -> str:
    """What errors name for ``paths``: the file where there is one, else their folder."""
    if len(paths) == 1:
        return str(paths[0])
    parents = {str(p.parent) for p in paths}
    return parents.pop() if len(parents) == 1 else str(paths[0])
