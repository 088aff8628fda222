"""One multi-band GeoTIFF per polarisation, one band per acquisition (WorldCereal exports).

A file belongs to this layout when every band's description (or ``ACQUISITION_TIME`` band tag)
is an ISO date/time and its polarisation is known from a ``POLARISATION`` tag or the file name
(``<id>_S1_VV_sigma0_dB_20m.tif``). Files differing only in the polarisation token form one
location; several locations in one input are refused, because mixing patches from different
places into one time series is never intended: the error names them and suggests a glob.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sarcrop.data.layouts._common import (
    POLARISATIONS,
    RasterInfo,
    declared_units,
    is_raster,
    orbit_from_name,
    orbit_from_text,
    parse_time,
    platform_from,
    polarisation,
    raster_info,
    relative_orbit_from_tags,
)
from sarcrop.data.layouts._stack import build_raster_stack
from sarcrop.data.scenes import Acquisition, BandRef, Layout, SceneStack, Source
from sarcrop.errors import InputDataError

_POL_TOKEN = re.compile(rf"(?<![A-Za-z0-9])({'|'.join(POLARISATIONS)})(?![A-Za-z0-9])", re.I)


def band_times(info: RasterInfo) -> list[dt.datetime] | None:
    """The acquisition time of every band, or None unless all bands have one."""
    times = [
        parse_time(tags.get("ACQUISITION_TIME")) or parse_time(description)
        for description, tags in zip(info.descriptions, info.band_tags)
    ]
    return None if any(t is None for t in times) else times  # type: ignore[return-value]


def _pol_of(info: RasterInfo) -> str | None:
    return polarisation(info.tags.get("POLARISATION")) or polarisation(Path(info.path).stem)


def _candidates(paths: list[Path]) -> list[RasterInfo]:
    infos = (raster_info(p) for p in paths if is_raster(p))
    return [i for i in infos if band_times(i) is not None and _pol_of(i) is not None]


def _skipped(paths: list[Path], used: list[RasterInfo]) -> list[str]:
    """The rasters of the input that are not part of the stack, and why: a polarisation's
    file whose band descriptions were lost (a truncated copy) would otherwise read as a
    missing band."""
    kept = {info.path for info in used}
    infos = [raster_info(p) for p in paths if is_raster(p) and str(p) not in kept]
    why = {True: "no polarisation", False: "no acquisition time per band"}
    return [f"{Path(i.path).name} ({why[band_times(i) is not None]})" for i in infos]


class MultiDatePerPolarisation(Layout, name="multidate_per_pol", order=40):
    """one multi-band GeoTIFF per polarisation (VV/VH in the file name), the acquisition time in
    each band's description"""

    def detect(
        self, paths: list[Path], source: Source, band_map: dict[str, str] | None = None
    ) -> bool:
        return bool(_candidates(paths))

    def open(self, paths: list[Path], source: Source, **options: object) -> SceneStack:
        candidates = _candidates(paths)
        if options.get("band_map"):
            raise InputDataError(
                "band_map names bands, but these files hold one polarisation each, read from "
                "the file name (…_VV_…, …_VH_…), and one date per band: leave band_map out",
                Path(candidates[0].path).parent,
            )
        groups: dict[str, list[RasterInfo]] = {}
        for info in candidates:
            name = Path(info.path).name
            groups.setdefault(_POL_TOKEN.sub("*", name, count=1), []).append(info)
        if len(groups) > 1:
            folder = Path(next(iter(groups.values()))[0].path).parent
            patterns = sorted(groups)
            example = folder / (patterns[0].split("*")[0] + "*")
            raise InputDataError(
                f"{len(groups)} locations in one input ({', '.join(patterns)}); choose one, "
                f"e.g. with the glob '{example}'",
                folder,
            )
        pattern, infos = next(iter(groups.items()))
        by_time: dict[dt.datetime, dict[str, BandRef]] = {}
        owner: dict[str, str] = {}
        units: dict[str, str] = {}
        for info in infos:
            pol = _pol_of(info)
            assert pol is not None
            if pol in owner:
                raise InputDataError(
                    f"two files for polarisation {pol}: also {owner[pol]}", info.path
                )
            owner[pol] = info.path
            for index, when in enumerate(band_times(info) or [], start=1):
                refs = by_time.setdefault(when, {})
                if pol in refs:
                    raise InputDataError(
                        f"bands {refs[pol].index} and {index} are both the acquisition of "
                        f"{when.isoformat()}: each band must be one acquisition",
                        info.path,
                    )
                refs[pol] = BandRef(info.path, index, info.grid, info.nodata)
            stated = declared_units(info.tags, Path(info.path).name)
            if stated is not None:
                units[info.path] = stated
        first = infos[0]
        where = str(Path(first.path).parent / pattern)
        orbit = orbit_from_text(first.tags.get("ORBIT_DIRECTION")) or orbit_from_name(pattern)
        relative_orbit = relative_orbit_from_tags(first.tags)
        platform = platform_from(first.tags, "")
        items = [
            (Acquisition(t, orbit, relative_orbit, platform, where), by_time[t])
            for t in sorted(by_time)
        ]
        return build_raster_stack(
            items,
            description=where,
            declared=units,
            attrs={"layout": self.name, "skipped": _skipped(paths, infos)},
        )
