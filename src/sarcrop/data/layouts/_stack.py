"""Assemble a :class:`RasterStack` from what a raster layout found."""

from __future__ import annotations

from sarcrop.data.layouts._common import POLARISATIONS
from sarcrop.data.scenes import Acquisition, BandRef, RasterStack
from sarcrop.errors import InputDataError


def build_raster_stack(
    items: list[tuple[Acquisition, dict[str, BandRef]]],
    *,
    description: str,
    declared: dict[str, str],
    attrs: dict[str, object],
) -> RasterStack:
    """A stack of ``items`` (time-sorted), with units stated by the files (must agree)."""
    stated = sorted(set(declared.values()))
    if len(stated) > 1:
        by_units = {u: p for p, u in declared.items()}
        raise InputDataError(
            f"files state different units: {by_units[stated[0]]} says {stated[0]}, "
            f"{by_units[stated[1]]} says {stated[1]}",
            description,
        )
    found = {b for _, refs in items for b in refs}
    if not found:
        raise InputDataError("no VV or VH band found", description)
    bands = [b for b in POLARISATIONS if b in found] + sorted(found - set(POLARISATIONS))
    first = next(iter(items[0][1].values()))
    return RasterStack(
        grid=first.grid,
        acquisitions=[a for a, _ in items],
        bands=tuple(bands),
        units=stated[0] if stated else "db",  # type: ignore[arg-type]
        description=description,
        attrs={
            **attrs,
            "declared_units": stated[0] if stated else None,
            "units_source": next(iter(declared), None),
        },
        refs=[refs for _, refs in items],
    )
