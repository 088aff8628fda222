"""netCDF / Zarr cubes with a time dimension (openEO, WorldCereal, xarray exports).

Recognised: a ``.nc``/``.nc4``/``.h5`` file or a Zarr store with a time dimension named ``time``,
``t`` or ``timestamp`` and spatial dimensions ``y``/``x``. Bands are variables named ``VV``/``VH``
or containing the polarisation as a token (``S1-SIGMA0-VV``, ``sigma0_vh``); ``band_map`` names
them explicitly. The CRS comes from the CF grid-mapping variable (``crs_wkt``/``spatial_ref``
attribute of the variable named by ``grid_mapping``, ``spatial_ref`` or ``crs``), else from an
``epsg`` attribute; the grid from the pixel-centre ``x``/``y`` coordinates.

Scaled integers: WorldCereal/openEO store sigma0 as uint16 with ``dB = 20*log10(DN) - 83`` and 0,
65535 as no data. With ``scale="auto"`` a variable is read that way when it is stored as uint16
(with a ``_FillValue`` or not) and its name starts with ``S1-SIGMA0`` or ``SAR-`` (the
WorldCereal names); ``scale="dn"`` forces it and ``scale="none"`` turns it off.

Pixels are read lazily: the dataset is opened without loading and each read selects only the
requested times and window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.data.layouts._common import (
    POLARISATIONS,
    orbit_from_name,
    orbit_from_text,
    to_naive_utc,
    tokens,
)
from sarcrop.data.scenes import (
    Acquisition,
    Layout,
    SceneStack,
    Source,
    _first_line,
    read_onto,
)
from sarcrop.data.units import dn_to_db, mask_fills, units_from_text
from sarcrop.errors import InputDataError

TIME_DIMS = ("time", "t", "timestamp")
CUBE_SUFFIXES = {".nc", ".nc4", ".netcdf", ".h5", ".hdf5", ".zarr"}
SCALED_PREFIXES = ("S1-SIGMA0", "SAR-")


def is_cube(path: Path) -> bool:
    """A netCDF/HDF5 file or a Zarr store (by suffix or group metadata)."""
    if path.is_dir():
        return path.suffix == ".zarr" or any(
            (path / name).exists() for name in ("zarr.json", ".zgroup", ".zattrs")
        )
    return path.suffix.lower() in CUBE_SUFFIXES


def open_cube(path: Path) -> xr.Dataset:
    """The dataset opened lazily (nothing is loaded)."""
    try:
        if path.is_dir():
            return xr.open_zarr(path, chunks=None)
        return xr.open_dataset(path, chunks=None)
    except Exception as exc:  # netCDF/HDF5/zarr raise many unrelated types
        raise InputDataError(f"cannot open as a netCDF/Zarr cube: {exc}", path) from exc


def _crs(ds: xr.Dataset, variable: xr.DataArray, path: Path) -> CRS:
    names = [variable.attrs.get("grid_mapping"), "spatial_ref", "crs"]
    for name in (n for n in names if n and n in ds.variables):
        attrs = ds[name].attrs
        for key in ("crs_wkt", "spatial_ref"):
            if attrs.get(key):
                try:
                    return CRS.from_user_input(attrs[key])
                except CRSError:
                    continue
    epsg = ds.attrs.get("epsg") or variable.attrs.get("epsg")
    if epsg is not None:
        return CRS.from_epsg(int(epsg))
    raise InputDataError(
        "no CRS: expected a CF grid-mapping variable (crs_wkt) or an 'epsg' attribute", path
    )


def _axis(values: np.ndarray, name: str, path: Path, fallback: float | None) -> float:
    if values.size < 2:
        if fallback is None:
            raise InputDataError(f"cannot infer the pixel size from one {name} coordinate", path)
        return fallback
    steps = np.diff(values)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9 * abs(values).max()):
        raise InputDataError(f"irregular {name} coordinates: expected a regular grid", path)
    return float(steps[0])


def cube_grid(ds: xr.Dataset, variable: xr.DataArray, path: Path) -> tuple[Grid, bool]:
    """The north-up grid of ``variable`` and whether its ``y`` coordinates ascend (flipped).

    Shared by scenes and label cubes so both land on the same grid for the same source.
    """
    x, y = ds["x"].values.astype(float), ds["y"].values.astype(float)
    resolution = ds.attrs.get("resolution")
    fallback = float(resolution) if resolution is not None else None
    dx = _axis(x, "x", path, fallback)
    dy = _axis(y, "y", path, -fallback if fallback else None)
    flip = dy > 0
    top = (y.max() if flip else y[0]) + abs(dy) / 2
    grid = Grid(
        _crs(ds, variable, path),
        Affine(dx, 0.0, x[0] - dx / 2, 0.0, -abs(dy), top),
        x.size,
        y.size,
    )
    return grid, flip


@dataclass
class CubeStack(SceneStack):
    """A stack over an opened xarray dataset; ``variables[band]`` is the variable read."""

    dataset: xr.Dataset | None = None
    variables: dict[str, str] = field(default_factory=dict)
    scaled: dict[str, bool] = field(default_factory=dict)
    time_dim: str = "time"
    order: list[int] = field(default_factory=list)  # stack index → dataset time index
    flip_y: bool = False

    def read(
        self, time_indices: Sequence[int], bands: Sequence[str], window: Window | None = None
    ) -> np.ndarray:
        assert self.dataset is not None
        target = self.target(window)
        native = self.sources[0][1]
        wanted = [self.order[i] for i in time_indices]
        unique = sorted(set(wanted))
        pick = [unique.index(i) for i in wanted]
        out = np.full(
            (len(wanted), len(bands), target.height, target.width), np.nan, dtype=np.float32
        )
        for b, band in enumerate(bands):
            if band not in self.variables or not wanted:
                continue
            array = self.dataset[self.variables[band]]

            def read_native(
                win: Window, array: xr.DataArray = array, band: str = band
            ) -> np.ndarray:
                rows = slice(win.row_off, win.row_off + win.height)
                if self.flip_y:
                    height = native.height
                    rows = slice(height - win.row_off - win.height, height - win.row_off)
                part = array.isel(
                    {
                        self.time_dim: unique,
                        "y": rows,
                        "x": slice(win.col_off, win.col_off + win.width),
                    }
                )
                raw = self._values(part, band)
                if self.flip_y:
                    raw = raw[:, ::-1, :]
                return mask_fills(dn_to_db(raw) if self.scaled[band] else raw.astype(np.float32))

            out[:, b] = read_onto(native, target, read_native, self.units, len(unique))[pick]
        return out

    def _values(self, part: xr.DataArray, band: str) -> np.ndarray:
        """The pixels of ``part``, loaded: a damaged chunk or HDF5 block fails here, deep in
        the codecs, in one line naming the cube rather than a page of traceback."""
        try:
            return part.transpose(self.time_dim, "y", "x").values
        except MemoryError:
            raise
        except Exception as exc:  # zarr codecs and netCDF/HDF5 raise many unrelated types
            raise InputDataError(
                f"cannot read variable {self.variables[band]}: {_first_line(exc)}",
                self.description,
            ) from exc


def _find_variables(
    ds: xr.Dataset, time_dim: str, band_map: dict[str, str] | None, path: Path
) -> dict[str, str]:
    cube_vars = [str(n) for n, v in ds.data_vars.items() if set(v.dims) == {time_dim, "y", "x"}]
    if band_map:
        missing = [v for v in band_map.values() if v not in ds.data_vars]
        if missing:
            raise InputDataError(f"no variable {missing[0]}: found {', '.join(cube_vars)}", path)
        return {k.upper(): v for k, v in band_map.items()}
    found: dict[str, str] = {}
    for pol in POLARISATIONS:
        exact = [n for n in cube_vars if str(n).upper() == pol]
        named = exact or [n for n in cube_vars if pol in tokens(str(n))]
        if len(named) > 1:
            raise InputDataError(
                f"several variables for {pol} ({', '.join(map(str, named))}); "
                "choose one with band_map (--band-map)",
                path,
            )
        if named:
            found[pol] = str(named[0])
    return found


def _stored_as_uint16(variable: xr.DataArray) -> bool:
    """Whether the file stores ``variable`` as uint16 numbers: xarray decodes one with a
    ``_FillValue`` to float (the fill as NaN), so its stored type is in ``encoding``. One
    packed with ``scale_factor``/``add_offset`` is decoded to values already."""
    encoding = variable.encoding
    if "scale_factor" in encoding or "add_offset" in encoding:
        return False
    return variable.dtype == np.uint16 or encoding.get("dtype") == np.uint16


class XarrayCube(Layout, name="xarray_cube", order=20):
    """a netCDF/Zarr cube with dims (time|t|timestamp, y, x) and VV/VH variables (names
    containing VV/VH), CRS from CF grid mapping or 'epsg'"""

    def detect(
        self, paths: list[Path], source: Source, band_map: dict[str, str] | None = None
    ) -> bool:
        return len(paths) == 1 and is_cube(paths[0])

    def open(self, paths: list[Path], source: Source, **options: object) -> SceneStack:
        path = paths[0]
        ds = open_cube(path)
        time_dim = next((d for d in TIME_DIMS if d in ds.dims), None)
        if time_dim is None or "x" not in ds.dims or "y" not in ds.dims:
            raise InputDataError(
                f"cube dims are ({', '.join(map(str, ds.dims))}): expected a time dim "
                f"({'/'.join(TIME_DIMS)}) plus y and x",
                path,
            )
        variables = _find_variables(ds, time_dim, options.get("band_map"), path)  # type: ignore[arg-type]
        if not variables:
            raise InputDataError(
                f"no VV/VH variable among {', '.join(map(str, ds.data_vars))}: expected names "
                "containing VV or VH, or band_map (--band-map)",
                path,
            )
        first = ds[next(iter(variables.values()))]
        scale = options.get("scale") or "auto"
        scaled = {
            band: scale == "dn"
            or (
                scale == "auto"
                and _stored_as_uint16(ds[name])
                and str(name).upper().startswith(SCALED_PREFIXES)
            )
            for band, name in variables.items()
        }
        grid, flip = cube_grid(ds, first, path)
        times = [
            to_naive_utc(dt.datetime.fromisoformat(str(np.datetime_as_string(t, "s"))))
            for t in ds[time_dim].values.astype("datetime64[s]")
        ]
        order = sorted(range(len(times)), key=times.__getitem__)
        twice = [times[i] for i, j in pairwise(order) if times[i] == times[j]]
        if twice:
            raise InputDataError(
                f"{len(twice)} acquisition time(s) twice along {time_dim!r}, first "
                f"{twice[0].isoformat()}: each time must be one acquisition",
                path,
            )
        orbit = orbit_from_text(str(ds.attrs.get("orbit_direction", ""))) or orbit_from_name(
            path.name
        )
        stated = {
            units_from_text(str(ds[v].attrs.get("units", "")))
            for b, v in variables.items()
            if not scaled[b]
        } - {None}
        declared = "db" if any(scaled.values()) else (stated.pop() if len(stated) == 1 else None)
        return CubeStack(
            grid=grid,
            acquisitions=[Acquisition(time=times[i], orbit=orbit, source=str(path)) for i in order],
            bands=tuple(variables),
            units=declared or "db",
            description=str(path),
            attrs={
                "layout": self.name,
                "declared_units": declared,
                "units_source": str(path),
                "variables": dict(variables),
                "scaled": [b for b, s in scaled.items() if s],
            },
            sources=[(str(path), grid)],
            dataset=ds,
            variables=variables,
            scaled=scaled,
            time_dim=time_dim,
            order=order,
            flip_y=flip,
        )
