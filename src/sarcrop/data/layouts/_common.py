"""What the layouts share: cached raster headers and Sentinel-1 naming conventions."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sarcrop.data.grid import Grid
from sarcrop.data.scenes import Acquisition, BandRef, Orbit, Units, open_raster
from sarcrop.data.units import units_from_text
from sarcrop.errors import InputDataError

POLARISATIONS = ("VV", "VH", "HH", "HV")
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img"}

_DATETIME = re.compile(r"(?<!\d)(\d{8})T(\d{6})(?!\d)")
_DATE = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_ISO_DATE = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)")
_PLATFORM = re.compile(r"^S1[A-D]$")


@dataclass(frozen=True)
class RasterInfo:
    """The header of a raster file: everything detection needs, without pixels."""

    path: str
    count: int
    dtype: str
    descriptions: tuple[str, ...]
    tags: dict[str, str]
    band_tags: tuple[dict[str, str], ...]
    grid: Grid
    nodata: float | None


def raster_info(path: str | Path) -> RasterInfo:
    """Header of ``path`` (cached per file version, so detection and opening read it once)."""
    text = str(path)
    if "://" in text or text.startswith("/vsi"):
        return _raster_info(text, 0, 0)
    try:
        stat = os.stat(text)
    except OSError as exc:
        raise InputDataError(f"cannot read raster: {exc.strerror}", text) from exc
    return _raster_info(text, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _raster_info(path: str, _mtime: int, _size: int) -> RasterInfo:
    with open_raster(path) as src:
        if src.crs is None:
            raise InputDataError("raster has no CRS: expected a georeferenced raster", path)
        return RasterInfo(
            path=path,
            count=src.count,
            dtype=src.dtypes[0],
            descriptions=tuple(d or "" for d in src.descriptions),
            tags={k.upper(): v for k, v in src.tags().items()},
            band_tags=tuple(
                {k.upper(): v for k, v in src.tags(i).items()} for i in range(1, src.count + 1)
            ),
            grid=Grid(src.crs, src.transform, src.width, src.height),
            nodata=src.nodata,
        )


def is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def tokens(text: str) -> list[str]:
    """Upper-case name tokens split on anything not alphanumeric (``S1A__IW___A_…`` too)."""
    return [t for t in re.split(r"[^0-9A-Za-z]+", text.upper()) if t]


def parse_time(text: str | None) -> dt.datetime | None:
    """An ISO date/time (any offset converted to naive UTC), or None if ``text`` is not one."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def time_from_name(name: str) -> dt.datetime | None:
    """Acquisition (start) time in a Sentinel-1 style name: ``YYYYMMDDTHHMMSS`` or ``YYYYMMDD``."""
    match = _DATETIME.search(name)
    if match:
        with contextlib.suppress(ValueError):
            return dt.datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S")
    for match in _DATE.finditer(name):
        with contextlib.suppress(ValueError):
            value = dt.datetime.strptime(match.group(1), "%Y%m%d")
            if 1990 <= value.year <= 2100:
                return value
    return None


def dates_in_name(name: str) -> list[dt.date]:
    """All ``YYYY-MM-DD`` or ``YYYYMMDD`` dates in a name, in order."""
    found: list[dt.date] = []
    for match in _ISO_DATE.finditer(name):
        with contextlib.suppress(ValueError):
            found.append(dt.date.fromisoformat(match.group(1)))
    if not found:
        for match in _DATE.finditer(name):
            with contextlib.suppress(ValueError):
                found.append(dt.datetime.strptime(match.group(1), "%Y%m%d").date())
    return found


def time_from_tags(tags: dict[str, str]) -> dt.datetime | None:
    for key in (
        "ACQUISITION_TIME",
        "ACQUISITION_START_TIME",
        "DATETIME_ACQUISITION",
        "TIME",
        "DATETIME",
        "DATE",
    ):
        value = parse_time(tags.get(key))
        if value is not None:
            return value
    return None


def orbit_from_text(value: str | None) -> Orbit | None:
    """``ascending``/``descending`` from a tag or STAC value (``ASC``, ``A``, ``Descending``…)."""
    if not value:
        return None
    upper = value.strip().upper()
    if upper in {"A", "ASC", "ASCENDING"}:
        return "ascending"
    if upper in {"D", "DES", "DSC", "DESC", "DESCENDING"}:
        return "descending"
    return None


def orbit_from_name(name: str) -> Orbit | None:
    """Orbit direction in a file name: ``ASC``/``DESC`` tokens, or pyroSAR's ``_A_<time>``."""
    parts = tokens(name)
    for i, token in enumerate(parts):
        if token in {"A", "D"}:
            following = parts[i + 1] if i + 1 < len(parts) else ""
            if not _DATETIME.fullmatch(following):
                continue
        orbit = orbit_from_text(token)
        if orbit is not None:
            return orbit
    return None


def relative_orbit_from_tags(tags: dict[str, str]) -> int | None:
    for key in ("RELATIVE_ORBIT", "RELATIVE_ORBIT_NUMBER", "SAT:RELATIVE_ORBIT", "TRACK"):
        value = tags.get(key)
        if value is not None:
            try:
                return int(float(value))
            except ValueError:
                return None
    return None


def platform_from(tags: dict[str, str], name: str) -> str | None:
    value = tags.get("PLATFORM") or tags.get("MISSION")
    if value:
        return value.strip().upper().replace("SENTINEL-", "S")
    return next((t for t in tokens(name) if _PLATFORM.match(t)), None)


def polarisation(text: str | None) -> str | None:
    """The polarisation a band description or file name names, if exactly one."""
    if not text:
        return None
    found = {t for t in tokens(text) if t in POLARISATIONS}
    return found.pop() if len(found) == 1 else None


def declared_units(tags: dict[str, str], name: str) -> Units | None:
    """Units stated by a file: ``UNITS`` tag, else a ``dB``/``linear`` token in its name."""
    return units_from_text(tags.get("UNITS")) or units_from_text(name)


def to_naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def add_months(start: dt.date, months: int) -> dt.date:
    """``start`` moved by whole calendar months (day clamped to the month's length)."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    for day in range(start.day, 27, -1):
        try:
            return dt.date(year, month, day)
        except ValueError:
            continue
    return dt.date(year, month, min(start.day, 28))


AcquisitionBands = dict[dt.datetime, tuple[Acquisition, dict[str, BandRef]]]


def add_bands(
    by_time: AcquisitionBands,
    acquisition: Acquisition,
    refs: dict[str, BandRef],
    kind: str,
    where: str | Path,
) -> None:
    """Add the bands of one input (a STAC item, a file) to its acquisition: inputs of one time
    holding other bands (one per polarisation) are merged; two holding the same band would
    count one acquisition twice (or are tiles of it, which are not mosaicked), so ``kind``
    ("items", "files") and both are named."""
    if acquisition.time not in by_time:
        by_time[acquisition.time] = (acquisition, refs)
        return
    previous, merged = by_time[acquisition.time]
    clash = sorted(set(merged) & set(refs))
    if clash:
        raise InputDataError(
            f"two {kind} for the same acquisition {acquisition.time.isoformat()} and band "
            f"{clash[0]}: {Path(previous.source).name} and {Path(acquisition.source).name}",
            where,
        )
    merged.update(refs)
