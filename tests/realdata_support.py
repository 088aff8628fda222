"""Test support: the real data folder, and small scenes written in the simulator's convention.

Real data is read in place from ``<repo>/../shared/data`` (override with ``SARCROP_SHARED_DATA``);
tests that need it use the ``shared_data`` fixture, which skips with a reason where it is absent::

    import realdata_support

    shared_data = realdata_support.shared_data  # makes the fixture available in the module
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from sarcrop.data.season import Season

REPO = Path(__file__).resolve().parents[1]
NODATA = -9999.0


def shared_data_dir() -> Path:
    """Where the real data is expected (it may be absent)."""
    override = os.environ.get("SARCROP_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; skips the test when it is not available."""
    folder = shared_data_dir()
    if not (folder / "README.md").is_file():
        pytest.skip(f"real data not found at {folder} (set SARCROP_SHARED_DATA)")
    return folder


def write_scene(
    folder: Path,
    when: dt.datetime,
    values: np.ndarray,
    *,
    orbit: str = "ASC",
    region: str = "test",
    crs: str = "EPSG:32631",
    transform: Affine | None = None,
    bands: Sequence[str] = ("VH", "VV"),
    units: str | None = "dB",
    tags: dict[str, str] | None = None,
    nodata: float | None = NODATA,
    name: str | None = None,
) -> Path:
    """One GeoTIFF per acquisition as the simulator writes it (float32, NaN → nodata)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = values[None]
    count, height, width = values.shape
    transform = transform or Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5600000.0)
    name = name or f"S1A_IW_GRDH_{when:%Y%m%dT%H%M%S}_{orbit}_{region}.tif"
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    data = values.copy()
    if nodata is not None:
        data[~np.isfinite(data)] = nodata
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": "float32",
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(bands)
        all_tags = {
            "ACQUISITION_TIME": when.isoformat(),
            "ORBIT_DIRECTION": {"ASC": "ascending", "DESC": "descending"}.get(orbit, orbit),
            "RELATIVE_ORBIT": "88",
            "PLATFORM": "SENTINEL-1A",
        }
        if units:
            all_tags["UNITS"] = units
        all_tags.update(tags or {})
        dst.update_tags(**{k: v for k, v in all_tags.items() if v is not None})
    return path


def db_mean(values_db: np.ndarray, axis: int = 0) -> np.ndarray:
    """Hand computation of a linear-power mean of dB values, ignoring NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return 10 * np.log10(np.nanmean(10 ** (values_db.astype(np.float64) / 10), axis=axis))


def band_vrt(path: Path, source: Path, band: int, grid: object) -> Path:
    """A one-band VRT pointing at band ``band`` of the real file (read in place)."""
    a, _, c, _, e, f = list(grid.transform)[:6]  # type: ignore[attr-defined]
    path.write_text(
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">'  # type: ignore[attr-defined]
        f"<SRS>{grid.crs.to_wkt()}</SRS>"  # type: ignore[attr-defined]
        f"<GeoTransform>{c}, {a}, 0, {f}, 0, {e}</GeoTransform>"
        '<VRTRasterBand dataType="Float32" band="1"><NoDataValue>nan</NoDataValue>'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        f"<SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    return path


def stac_catalog(folder: Path, location: str, season: Season, out: Path) -> Path:
    """A local STAC catalog of the real multi-date files ``<location>_S1_{VV,VH}_*`` in ``folder``.

    One item per acquisition inside ``season``, its ``vv``/``vh`` assets one-band VRTs of the
    real files (read in place). Returns the path of ``catalog.json`` under ``out``.
    """
    import pystac

    from sarcrop.data.reader import open_scenes

    reference = open_scenes(str(folder / f"{location}_S1_*"))
    catalog = pystac.Catalog(id="flanders", description="real WorldCereal S1 bands")
    for k, when in enumerate(reference.times):
        if season.period_of(when) is None:
            continue
        item = pystac.Item(
            id=f"{location}_{k}",
            geometry=None,
            bbox=None,
            datetime=when,
            properties={"sat:orbit_state": "ascending"},
        )
        for pol in ("VV", "VH"):
            source = folder / f"{location}_S1_{pol}_sigma0_dB_20m.tif"
            vrt = band_vrt(out / f"{k}_{pol}.vrt", source, k + 1, reference.grid)
            item.add_asset(pol.lower(), pystac.Asset(href=str(vrt)))
        catalog.add_item(item)
    catalog.normalize_hrefs(str(out / "stac"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out / "stac" / "catalog.json"
