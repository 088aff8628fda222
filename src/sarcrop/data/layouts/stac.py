"""STAC: a local catalog / collection / item collection / item JSON, or a STAC API search.

Each item is one acquisition (items of one time holding other bands are merged; two holding
the same band are refused): ``datetime`` (or ``start_datetime``) gives its time,
``sat:orbit_state`` and ``sat:relative_orbit`` its orbit, ``platform`` its platform. Bands are
assets whose key is the polarisation (``vv``, ``vh``; case-insensitive); ``band_map`` maps other
keys (``{"VV": "sigma0_vv"}``). Items without such assets may carry one multi-band GeoTIFF asset
whose band descriptions name the polarisations (a 2-band VH/VV file). Asset hrefs may be local
paths (a relative one is relative to the JSON file's folder) or URLs (read by GDAL, e.g.
``/vsicurl``). A STAC API is searched with ``search={...}`` (``collections``, ``bbox``,
``datetime``…, passed to ``pystac_client``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac

from sarcrop.data.layouts._common import (
    POLARISATIONS,
    AcquisitionBands,
    RasterInfo,
    add_bands,
    orbit_from_text,
    raster_info,
    to_naive_utc,
)
from sarcrop.data.layouts._stack import build_raster_stack
from sarcrop.data.layouts.geotiff_per_date import band_names
from sarcrop.data.scenes import (
    Acquisition,
    BandRef,
    Layout,
    SceneStack,
    Source,
    has_scheme,
    is_url,
)
from sarcrop.data.units import units_from_text
from sarcrop.errors import InputDataError

_STAC_TYPES = {"Catalog", "Collection", "Feature", "FeatureCollection"}
_RASTER_TYPES = ("image/tiff", "image/vnd.stac.geotiff", "application/x-geotiff")


def _read_json(path: Path) -> dict[str, object] | None:
    if path.suffix.lower() not in {".json", ".geojson"}:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"cannot read JSON: {exc}", path) from exc
    return data if isinstance(data, dict) else None


def _load_items(
    paths: list[Path], source: Source, search: dict[str, object] | None
) -> list[pystac.Item]:
    if is_url(source) and not str(source).endswith(".json"):
        import pystac_client

        try:
            client = pystac_client.Client.open(str(source))
            return list(client.search(**(search or {})).items())  # type: ignore[arg-type]
        except Exception as exc:  # network and API errors come in many types
            raise InputDataError(f"STAC search failed: {exc}", str(source)) from exc
    target = str(source) if is_url(source) else str(paths[0])
    try:
        stac = pystac.read_file(target)
        if isinstance(stac, pystac.Item):
            return [stac]
        if isinstance(stac, pystac.Catalog):
            return list(stac.get_items(recursive=True))
    except pystac.STACTypeError:
        pass
    except Exception as exc:
        raise InputDataError(f"cannot read STAC: {exc}", target) from exc
    try:
        return list(pystac.ItemCollection.from_file(target))
    except Exception as exc:
        raise InputDataError(f"cannot read STAC item collection: {exc}", target) from exc


def _band_of(info: RasterInfo, band: str, asset_key: str) -> int:
    """The band of ``band``'s asset in its file: the only one, or the one its description
    names (assets ``vv`` and ``vh`` may point at one file of both)."""
    if info.count == 1:
        return 1
    named = band_names(info)
    if band not in named:
        shown = ", ".join(d or "(none)" for d in info.descriptions)
        raise InputDataError(
            f"asset {asset_key!r} points at a file of {info.count} bands, none described as "
            f"{band} (descriptions: {shown}): name its bands, or give one band per asset",
            info.path,
        )
    return named[band]


def _href(asset: pystac.Asset, folder: Path | None) -> str:
    """Where an asset's file is. An item collection JSON has no self link to resolve relative
    hrefs against, so they are relative to its own folder (not the working directory)."""
    href = asset.get_absolute_href()
    if href:
        return href
    local = not (has_scheme(asset.href) or asset.href.startswith("/vsi"))
    if folder is None or not local or Path(asset.href).is_absolute():
        return asset.href
    return str(folder / asset.href)


def _refs(
    item: pystac.Item, band_map: dict[str, str] | None, folder: Path | None = None
) -> tuple[dict[str, BandRef], str | None]:
    """Band refs of an item, and the units its assets state (``raster:bands`` unit or tag)."""
    keys = {k.lower(): k for k in item.assets}
    wanted = (
        {k.upper(): v for k, v in band_map.items()} if band_map else {p: p for p in POLARISATIONS}
    )
    refs: dict[str, BandRef] = {}
    units: str | None = None
    for band, key in wanted.items():
        asset_key = keys.get(key.lower())
        if asset_key is None:
            continue
        asset = item.assets[asset_key]
        info = raster_info(_href(asset, folder))
        refs[band] = BandRef(info.path, _band_of(info, band, asset_key), info.grid, info.nodata)
        units = units or _asset_units(asset) or units_from_text(info.tags.get("UNITS"))
    if refs or band_map:
        return refs, units
    for asset in item.assets.values():
        if asset.media_type and not asset.media_type.startswith(_RASTER_TYPES):
            continue
        href = _href(asset, folder)
        if not href.lower().endswith((".tif", ".tiff")) and not asset.media_type:
            continue
        info = raster_info(href)
        for band, index in band_names(info).items():
            refs.setdefault(band, BandRef(info.path, index, info.grid, info.nodata))
        units = units or _asset_units(asset) or units_from_text(info.tags.get("UNITS"))
    return refs, units


def _check_band_map(items: list[pystac.Item], band_map: dict[str, str] | None, where: str) -> None:
    """A band_map naming an asset key no item has would be ignored: refused instead."""
    if not items or not band_map:
        return
    keys = {key for item in items for key in item.assets}
    lowered = {key.lower() for key in keys}
    unmatched = [f"{k}={v}" for k, v in band_map.items() if v.lower() not in lowered]
    if unmatched:
        raise InputDataError(
            f"band_map {', '.join(unmatched)}: no item has an asset of that key "
            f"(assets: {', '.join(sorted(keys)) or 'none'})",
            where,
        )


def _asset_units(asset: pystac.Asset) -> str | None:
    bands = asset.extra_fields.get("raster:bands") or []
    unit = bands[0].get("unit") if bands and isinstance(bands[0], dict) else None
    return units_from_text(unit)


def _time(item: pystac.Item) -> dt.datetime | None:
    when = item.datetime
    if when is None and item.properties.get("start_datetime"):
        when = pystac.utils.str_to_datetime(str(item.properties["start_datetime"]))
    return to_naive_utc(when) if when else None


def _acquisition(item: pystac.Item, when: dt.datetime) -> Acquisition:
    relative = item.properties.get("sat:relative_orbit")
    return Acquisition(
        time=when,
        orbit=orbit_from_text(item.properties.get("sat:orbit_state")),
        relative_orbit=int(relative) if relative is not None else None,
        platform=item.properties.get("platform"),
        source=item.id,
    )


class Stac(Layout, name="stac", order=10):
    """a STAC catalog/collection/item collection JSON (or API URL) with vv/vh GeoTIFF assets"""

    def detect(
        self, paths: list[Path], source: Source, band_map: dict[str, str] | None = None
    ) -> bool:
        if is_url(source):
            return True
        if len(paths) != 1:
            return False
        data = _read_json(paths[0])
        return (
            data is not None
            and data.get("type") in _STAC_TYPES
            and ("stac_version" in data or data.get("type") == "FeatureCollection")
        )

    def open(self, paths: list[Path], source: Source, **options: object) -> SceneStack:
        where = str(source) if is_url(source) else str(paths[0])
        folder = None if is_url(source) else paths[0].parent
        items = _load_items(paths, source, options.get("search"))  # type: ignore[arg-type]
        _check_band_map(items, options.get("band_map"), where)  # type: ignore[arg-type]
        by_time: AcquisitionBands = {}
        units: dict[str, str] = {}
        skipped: list[str] = []
        for item in items:
            refs, stated = _refs(item, options.get("band_map"), folder)  # type: ignore[arg-type]
            when = _time(item)
            if not refs or when is None:
                skipped.append(item.id)
                continue
            add_bands(by_time, _acquisition(item, when), refs, "items", where)
            if stated:
                units[item.id] = stated
        if not by_time:
            raise InputDataError(
                f"{len(items)} STAC items, none with a datetime and vv/vh GeoTIFF assets "
                "(use band_map, --band-map, to name other asset keys)",
                where,
            )
        return build_raster_stack(
            [by_time[t] for t in sorted(by_time)],
            description=where,
            declared=units,
            attrs={"layout": self.name, "skipped": skipped},
        )
