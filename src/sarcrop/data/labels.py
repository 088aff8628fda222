"""Crop labels onto the composite grid: class rasters, parcel vectors and binary targets.

Labels are returned as an int16 ``(H, W)`` array of class indices on the given :class:`Grid`,
with ``-1`` meaning "unlabelled" (ignored by the loss and the metrics), plus the list of class
names (index = label value).

- :func:`labels_from_raster` reads a categorical raster (e.g. the simulator's ``labels.tif`` or a
  WorldCereal crop-type map). On another grid it is warped with *nearest* (or *mode* when the
  raster is finer than the grid), never with an interpolating resampler: codes are categories.
- :func:`labels_from_cube` reads one variable of a netCDF/Zarr label cube (WorldCereal publishes
  ``CT``/``LC`` this way), georeferenced by the same detection as scene cubes, then as a raster.
- :func:`labels_from_parcels` burns parcel polygons (GeoPackage, Shapefile, GeoJSON, GeoParquet).
  Pixels outside every parcel get class ``"background"`` (index 0), so "not the positive crop" is
  defined over the whole patch, as in the paper's binary masks.
- :func:`binary_target` turns class labels into the 0/1 target for one or more positive classes.
- :func:`class_target` turns them into the class-index target of a crop-type map (a list of
  classes, ``other`` gathering the unlisted ones).
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.features import rasterize
from rasterio.warp import calculate_default_transform, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from sarcrop.data.grid import Grid
from sarcrop.errors import InputDataError
from sarcrop.options import LabelOptions, OutsideParcels
from sarcrop.utils.validation import did_you_mean

UNLABELLED = -1
UNLABELLED_NAME = "unlabelled"  # a code map's name for codes that label nothing
BACKGROUND = "background"
OTHER = "other"
PARCEL_SUFFIXES = frozenset({".gpkg", ".shp", ".geojson", ".json", ".parquet", ".fgb"})

_CLASS_TAG = re.compile(r"^CLASS_(\d+)$", re.IGNORECASE)


def labels_from_file(
    path: str | Path, grid: Grid, options: LabelOptions = LabelOptions()
) -> tuple[np.ndarray, list[str]]:
    """Labels from a parcel file or a label cube (by suffix), or a label raster (anything else)."""
    from sarcrop.data.layouts.xarray_cube import is_cube

    path = Path(path)
    names, codes = options.class_names, options.code_map
    if path.suffix.lower() in PARCEL_SUFFIXES:
        if names is not None:
            raise InputDataError(
                "class_names name a label raster's codes in order; parcels carry a crop name "
                f"or code in column {options.column!r} (codes are named with --code-map or "
                "--legend)",
                path,
            )
        outside = options.outside_parcels
        labels, classes = labels_from_parcels(
            path, grid, column=options.column, outside_parcels=outside, code_map=codes
        )
        if "outside_parcels" not in options.model_fields_set:
            warn_background_majority(path, labels)
        return labels, classes
    parcel_only = sorted({"column", "outside_parcels"} & options.model_fields_set)
    if parcel_only:
        raise InputDataError(
            f"{' and '.join(parcel_only)} read a parcel file ({', '.join(sorted(PARCEL_SUFFIXES))}"
            "), and these labels are a raster: leave them out",
            path,
        )
    if path.exists() and is_cube(path):
        return labels_from_cube(
            path, grid, variable=options.variable, class_names=names, code_map=codes
        )
    return labels_from_raster(
        path, grid, class_names=names, code_map=codes, variable=options.variable
    )


def warn_background_majority(path: Path, labels: np.ndarray, stacklevel: int = 3) -> None:
    """Warn where most labelled pixels lie outside every parcel: counted as negatives, they
    teach "not the crop" of fields that were never labelled, if the parcels are a few of the
    area's fields. Choosing ``outside_parcels`` either way silences it."""
    labelled = int((labels >= 0).sum())
    background = int((labels == 0).sum())
    if labelled and background > labelled / 2:
        warnings.warn(
            f"{path}: {background / labelled:.0%} of the labelled pixels lie outside every "
            "parcel and count as negatives (background); where the parcels are only some of "
            "the area's fields, pass --outside-parcels unlabelled (outside_parcels: unlabelled), "
            "else --outside-parcels background",
            stacklevel=stacklevel,
        )


# ---------------------------------------------------------------------------------------------
# Rasters


def labels_from_raster(
    path: str | Path,
    grid: Grid,
    *,
    class_names: Sequence[str] | None = None,
    code_map: Mapping[int, str] | None = None,
    variable: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Read a categorical label raster onto ``grid``.

    Class names come from, in order: ``code_map`` (raster code → name; codes not in the map
    become ``"other"``, codes named ``"unlabelled"`` become ``-1``), ``class_names`` (raster
    value = index), or the raster's ``CLASS_<i>=<name>`` tags. The raster's nodata value
    becomes ``-1``. ``variable`` picks the band by its description or the description's first
    word (WorldCereal's ``CT``, ``LC``); default the first band.
    """
    path = Path(path)
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputDataError(f"cannot open label raster: {exc}", path) from exc
    try:
        with src:
            if src.crs is None:
                raise InputDataError("label raster has no CRS", path)
            src_grid = Grid(src.crs, src.transform, src.width, src.height)
            band = _label_band(src, variable, path)
            _require_codes(src, band, path)
            _warn_off_grid(path, src_grid, grid)
            codes, valid = _codes_on_grid(
                src_grid,
                lambda w: src.read(band, window=w, boundless=True, masked=True),
                grid,
                _class_of_code(code_map),
            )
            tags = src.tags()
    except (RasterioError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(f"cannot read label raster: {first}", path) from exc
    return _named(path, codes, valid, tags, class_names, code_map)


def _label_band(src: rasterio.io.DatasetReader, variable: str | None, path: Path) -> int:
    """The band named ``variable`` by its description or the description's first word."""
    if variable is None:
        return 1
    wanted = variable.casefold()
    names = [description or "" for description in src.descriptions]
    for band, name in enumerate(names, start=1):
        if wanted in (name.casefold(), (name.split() or [""])[0].casefold()):
            return band
    listed = ", ".join(repr(name) for name in names if name) or "no described band"
    raise InputDataError(f"no label band {variable!r} (its bands: {listed})", path)


def _require_codes(src: rasterio.io.DatasetReader, band: int, path: Path) -> None:
    """Refuse a band of fractional values (an image given as labels), read from a
    decimated copy of at most 256 × 256 pixels."""
    if not np.issubdtype(np.dtype(src.dtypes[band - 1]), np.floating):
        return
    shape = (min(src.height, 256), min(src.width, 256))
    values = src.read(band, out_shape=shape, masked=True).compressed()
    values = values[np.isfinite(values)]
    if values.size and not np.array_equal(values, np.round(values)):
        raise InputDataError(
            f"band {band} holds non-integer values ({src.dtypes[band - 1]}, e.g. "
            f"{values[values != np.round(values)][0]:g}): expected class codes",
            path,
        )


def _named(
    path: Path,
    codes: np.ndarray,
    valid: np.ndarray,
    tags: Mapping[str, str],
    class_names: Sequence[str] | None,
    code_map: Mapping[int, str] | None,
) -> tuple[np.ndarray, list[str]]:
    """Class indices (-1 where not ``valid``) and class names for ``codes``."""
    lookup, classes = _code_lookup(path, codes[valid], tags, class_names, code_map)
    labels = np.full(codes.shape, UNLABELLED, dtype=np.int16)
    labels[valid] = lookup(codes[valid])
    return labels, classes


WindowReader = Callable[[Window], np.ma.MaskedArray]


CodeClasses = Callable[[np.ndarray], np.ndarray]


def _codes_on_grid(
    src: Grid, given: WindowReader, grid: Grid, same_class: CodeClasses | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Codes of a label source on ``grid`` as int64, with a validity mask.

    ``given(window)`` returns a window of the source's grid ``src`` as a masked array, padded
    (masked) where the window leaves the source. NaN and infinite codes (a float raster
    without a nodata value) are no label, as nodata is. ``same_class(codes)`` gives each code
    a key of its class: a finer source's majority is then taken over classes, not codes, and a
    coarse pixel takes the smallest code of the winning class.
    """

    def read(window: Window) -> np.ma.MaskedArray:
        data = given(window)
        return np.ma.masked_invalid(data) if data.dtype.kind == "f" else data

    if src.same_as(grid):
        data = read(Window(0, 0, src.width, src.height))
        return np.asarray(data.filled(0)).astype(np.int64), ~np.ma.getmaskarray(data)

    # Read only the part of the source that covers the grid (plus a margin), then warp it.
    left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
    margin = 2 * max(src.resolution)
    window = (
        from_bounds(left - margin, bottom - margin, right + margin, top + margin, src.transform)
        .round_offsets()
        .round_lengths()
    )
    data = read(window)
    # Warp class indices rather than codes so that nodata has one unambiguous value.
    codes, inverse = np.unique(data.filled(0), return_inverse=True)
    if same_class is not None:
        # Codes of one class share the index of its first code, so that the majority of a
        # coarse pixel counts classes: two wheat codes outvote one maize code.
        _, first, of_class = np.unique(same_class(codes), return_index=True, return_inverse=True)
        inverse = first[of_class][inverse.reshape(-1)]
    index = np.where(np.ma.getmaskarray(data), -1, inverse.reshape(data.shape)).astype(np.int32)
    out = np.full((grid.height, grid.width), -1, dtype=np.int32)
    reproject(
        index,
        out,
        src_transform=src.window_grid(window).transform,
        src_crs=src.crs,
        src_nodata=-1,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=-1,
        resampling=_categorical_resampling(src, grid),
    )
    valid = out >= 0
    result = np.zeros(out.shape, dtype=np.int64)
    result[valid] = codes[out[valid]]
    return result, valid


def _warn_off_grid(path: Path, src: Grid, grid: Grid) -> None:
    """Labels a fraction of a pixel off the scenes' grid (same CRS and pixel size) are read
    onto it by nearest neighbour, which moves every field edge by up to half a pixel without a
    word; a shift of whole pixels moves only the extent."""
    same = src.crs == grid.crs and np.allclose(src.resolution, grid.resolution)
    if same and (off := grid.fractional_shift(src)) > 0.01 * grid.resolution[0]:
        units = "m" if grid.crs.is_projected else "CRS units"
        warnings.warn(
            f"{path}: the labels lie {off:.3g} {units} off the scenes' grid (a fraction of a "
            "pixel), so every field edge moves by up to half a pixel as they are read onto "
            "it (nearest): align the labels with the scenes",
            stacklevel=4,
        )


def _class_of_code(code_map: Mapping[int, str] | None) -> CodeClasses | None:
    """Each code's class key under ``code_map`` (codes it leaves out are ``other``), or None
    where codes are classes already. Left-out codes of 0 and below keep keys of their own: they
    may be a fill for "no label", which the code map's warning names by its pixels."""
    if code_map is None:
        return None
    named = {int(code): str(name) for code, name in code_map.items()}

    def key(codes: np.ndarray) -> np.ndarray:
        keys = [named.get(int(c), OTHER if c > 0 else f"unlisted {int(c)}") for c in codes.tolist()]
        return np.asarray(keys, dtype=object)

    return key


def _categorical_resampling(src: Grid, grid: Grid) -> Resampling:
    """``mode`` when the source is finer than the grid (majority class), else ``nearest``."""
    transform, _, _ = calculate_default_transform(
        src.crs, grid.crs, src.width, src.height, *src.bounds
    )
    src_res = max(abs(transform.a), abs(transform.e))
    return Resampling.mode if src_res < 0.75 * min(grid.resolution) else Resampling.nearest


# ---------------------------------------------------------------------------------------------
# Cubes

CROP_TYPE_VARIABLE = "CT"


def labels_from_cube(
    path: str | Path,
    grid: Grid,
    *,
    variable: str | None = None,
    class_names: Sequence[str] | None = None,
    code_map: Mapping[int, str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Read one ``(y, x)`` variable of a netCDF/Zarr label cube onto ``grid``.

    The cube is georeferenced exactly as scene cubes are (CF grid mapping or ``epsg``
    attribute, pixel-centre ``x``/``y``). ``variable`` defaults to the only ``(y, x)`` variable,
    else the crop-type one (``CT``). NaN and fill values are unlabelled; codes are named as in
    :func:`labels_from_raster` (variable attributes stand in for the raster's tags).
    """
    from sarcrop.data.layouts.xarray_cube import cube_grid, open_cube

    path = Path(path)
    ds = open_cube(path)
    try:
        array = ds[_label_variable(ds, variable, path)]
        array = array.isel({d: 0 for d in array.dims if d not in ("y", "x")})
        array = array.transpose("y", "x")
        src, flip = cube_grid(ds, array, path)

        def read(window: Window) -> np.ma.MaskedArray:
            return _read_cube_window(array, src, window, flip, path)

        _warn_off_grid(path, src, grid)
        codes, valid = _codes_on_grid(src, read, grid, _class_of_code(code_map))
        tags = {str(k): str(v) for k, v in array.attrs.items()}
    finally:
        ds.close()
    return _named(path, codes, valid, tags, class_names, code_map)


def _label_variable(ds: object, variable: str | None, path: Path) -> str:
    """The label variable: the one asked for, the only ``(y, x)`` one, or ``CT``."""
    data_vars = ds.data_vars  # type: ignore[attr-defined]
    spatial = [
        str(name)
        for name, var in data_vars.items()
        if {"y", "x"} <= set(var.dims)
        and all(var.sizes[d] == 1 for d in var.dims if d not in ("y", "x"))
    ]
    if variable is not None:
        if variable not in spatial:
            raise InputDataError(
                f"no label variable {variable!r} with y/x dims "
                f"(has: {', '.join(spatial) or 'none'})",
                path,
            )
        return variable
    if len(spatial) == 1:
        return spatial[0]
    if CROP_TYPE_VARIABLE in spatial:
        return CROP_TYPE_VARIABLE
    if not spatial:
        raise InputDataError("holds no (y, x) variable to read labels from", path)
    raise InputDataError(
        f"cannot tell the label variable among {', '.join(spatial)}; "
        "name it with the label variable option (--label-variable)",
        path,
    )


def _read_cube_window(
    array: object, src: Grid, window: Window, flip: bool, path: Path
) -> np.ma.MaskedArray:
    """A window of a ``(y, x)`` cube variable, masked outside it and where NaN."""
    row, col = int(window.row_off), int(window.col_off)
    height, width = int(window.height), int(window.width)
    out = np.zeros((height, width), dtype=np.float64)
    mask = np.ones((height, width), dtype=bool)
    r0, r1 = max(row, 0), min(row + height, src.height)
    c0, c1 = max(col, 0), min(col + width, src.width)
    if r0 < r1 and c0 < c1:
        rows = slice(src.height - r1, src.height - r0) if flip else slice(r0, r1)
        values = np.asarray(array.isel(y=rows, x=slice(c0, c1)).values, dtype=np.float64)  # type: ignore[attr-defined]
        if flip:
            values = values[::-1]
        finite = np.isfinite(values)
        if not np.array_equal(values[finite], np.round(values[finite])):
            raise InputDataError(
                "label variable holds non-integer values: expected class codes", path
            )
        out[r0 - row : r1 - row, c0 - col : c1 - col] = np.where(finite, values, 0)
        mask[r0 - row : r1 - row, c0 - col : c1 - col] = ~finite
    return np.ma.MaskedArray(out, mask)


def _code_lookup(
    path: Path,
    present: np.ndarray,
    tags: Mapping[str, str],
    class_names: Sequence[str] | None,
    code_map: Mapping[int, str] | None,
) -> tuple[Callable[[np.ndarray], np.ndarray], list[str]]:
    """A vectorised code → class index function and the class names."""
    if code_map is not None:
        named = {int(code): str(name) for code, name in code_map.items()}
        ignored = {code for code, name in named.items() if class_key(name) == UNLABELLED_NAME}
        classes = list(dict.fromkeys(n for c, n in named.items() if c not in ignored))
        if OTHER not in classes:
            classes.append(OTHER)
        position = {name: i for i, name in enumerate(classes)}
        mapping = {code: position.get(name, UNLABELLED) for code, name in named.items()}
        other = position[OTHER]
        _warn_fill_as_other(path, present, named)

        def mapped(codes: np.ndarray) -> np.ndarray:
            uniq, inverse = np.unique(codes, return_inverse=True)
            table = np.array([mapping.get(int(c), other) for c in uniq], dtype=np.int16)
            return table[inverse]

        return mapped, classes

    if class_names is not None:
        classes = [str(name) for name in class_names]
    else:
        named = class_tags(tags)
        if not named:
            raise InputDataError(
                "label raster has no CLASS_<i>=<name> tags: name its codes with --legend or "
                "--code-map (LabelOptions(legend=...) or code_map=...)",
                path,
            )
        classes = [named.get(i, f"class_{i}") for i in range(max(named) + 1)]
    if present.size and (present.min() < 0 or present.max() >= len(classes)):
        bad = sorted({int(c) for c in np.unique(present) if c < 0 or c >= len(classes)})
        raise InputDataError(
            f"label values {bad[:10]} have no class name (known: {', '.join(classes)})", path
        )

    def identity(codes: np.ndarray) -> np.ndarray:
        return codes.astype(np.int16)

    return identity, classes


def class_tags(tags: Mapping[str, str]) -> dict[int, str]:
    """Label value → class name, as a raster's ``CLASS_<i>=<name>`` tags give them."""
    return {int(m.group(1)): value for key, value in tags.items() if (m := _CLASS_TAG.match(key))}


def _warn_fill_as_other(path: Path, present: np.ndarray, named: Mapping[int, str]) -> None:
    """Codes 0 and below that a code map leaves out become ``other`` like any unlisted crop;
    where they are the raster's fill for "no label" (its nodata unset), undeclared land would
    be taught as a negative without a word."""
    codes, counts = np.unique(present[present <= 0], return_counts=True)
    unlisted = [(int(c), int(n)) for c, n in zip(codes, counts, strict=True) if c not in named]
    if unlisted:
        listed = ", ".join(f"{code} ({n} px)" for code, n in unlisted)
        warnings.warn(
            f"{path}: code(s) {listed} are not in the code map and become {OTHER!r}; if they "
            "mean no label, set the raster's nodata or name them unlabelled in the code map "
            f'(e.g. \'{{"{unlisted[0][0]}": "{UNLABELLED_NAME}", ...}}\')',
            stacklevel=4,
        )


# ---------------------------------------------------------------------------------------------
# Parcels


def labels_from_parcels(
    path: str | Path,
    grid: Grid,
    *,
    column: str = "crop",
    outside_parcels: OutsideParcels = "background",
    all_touched: bool = False,
    code_map: Mapping[int, str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Rasterize parcel polygons onto ``grid`` by their ``column`` value.

    Classes are ``["background", <sorted crop names>...]``; pixels outside every parcel are
    background (0), or unlabelled (-1) with ``outside_parcels="unlabelled"``, and parcels
    with an empty crop value are unlabelled. ``code_map`` names a column of crop codes as it
    names a label raster's (codes it leaves out are ``other``, its "unlabelled" ones label
    nothing). Parcels in another CRS are reprojected; invalid geometries are repaired (or
    dropped if nothing polygonal is left) with a warning. Where parcels overlap, the later one
    in the file wins.
    """
    import geopandas as gpd
    import pyogrio
    import shapely

    path = Path(path)
    if not path.exists():
        raise InputDataError("parcel file does not exist", path)
    parquet = path.suffix.lower() == ".parquet"
    try:
        if parquet:
            frame = gpd.read_parquet(path)
            total = len(frame)
            extent = (frame.total_bounds, frame.crs)
        else:
            # spatial layers only: QGIS keeps its styles in a table of the same file
            layers = [str(name) for name, kind in pyogrio.list_layers(path) if kind]
            if len(layers) > 1:
                raise InputDataError(
                    f"holds {len(layers)} layers ({', '.join(layers[:5])}): give the parcels "
                    "in a file of their own (e.g. ogr2ogr -f GPKG parcels.gpkg "
                    f"{path.name} {layers[-1]})",
                    path,
                )
            layer = layers[0] if layers else None
            info = pyogrio.read_info(path, layer=layer, force_total_bounds=True)
            total = int(info["features"])
            extent = (info["total_bounds"], info.get("crs"))
            bbox = None
            if info.get("crs"):
                bbox = transform_bounds(grid.crs, info["crs"], *grid.bounds, densify_pts=21)
            frame = gpd.read_file(path, bbox=bbox, layer=layer, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, OSError, ValueError) as exc:
        raise InputDataError(f"cannot read parcels: {exc}", path) from exc
    if total == 0:
        raise InputDataError("holds no parcels", path)
    if column not in frame.columns:
        columns = [c for c in frame.columns if c != frame.geometry.name]
        raise InputDataError(
            f"parcels have no column {column!r} (columns: {', '.join(map(str, columns))})", path
        )
    unread = total - len(frame)  # outside the grid's bounds, left unread
    if frame.crs is None:
        warnings.warn(f"{path}: parcels have no CRS; assuming the grid's CRS", stacklevel=2)
        frame = frame.set_crs(grid.crs)
    elif frame.crs != grid.crs:
        frame = frame.to_crs(grid.crs)

    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    invalid = ~frame.geometry.is_valid
    if invalid.any():
        repaired = shapely.make_valid(frame.geometry[invalid].to_numpy())
        polygonal = [_polygonal_part(geom) for geom in repaired]
        frame = frame.copy()
        frame.loc[invalid, frame.geometry.name] = polygonal
        kept = frame.geometry.notna() & ~frame.geometry.is_empty
        dropped = int((~kept).sum())
        warnings.warn(
            f"{path}: repaired {int(invalid.sum()) - dropped} invalid parcel geometries"
            + (f", dropped {dropped} with no polygonal part" if dropped else ""),
            stacklevel=2,
        )
        frame = frame[kept]
    frame = _areal_parcels(frame, path, outside_parcels)

    area = shapely.box(*grid.bounds)
    inside = frame.geometry.intersects(area)
    outside = unread + int((~inside).sum())
    if int(inside.sum()) == 0:
        raise InputDataError(_no_overlap(extent, grid), path)
    if outside:
        warnings.warn(
            f"{path}: {outside} of {total} parcels lie outside the image area", stacklevel=2
        )
    frame = frame[inside]

    names = [_class_name(v) for v in frame[column]]  # Series.map would turn None into NaN
    if code_map is not None:
        names = _named_codes(names, code_map, column, path)
    # "unlabelled" labels nothing, as in a code map (and as the store counts it)
    names = [None if n is not None and class_key(n) == UNLABELLED_NAME else n for n in names]
    names = fold_spellings(names, f"{path}: crops")
    crops = sorted({n for n in names if n is not None and n != BACKGROUND})
    classes = [BACKGROUND, *crops]
    index = {name: i for i, name in enumerate(classes)}
    values = [UNLABELLED if n is None else index[n] for n in names]
    labels = rasterize(
        zip(frame.geometry.to_numpy(), values),
        out_shape=(grid.height, grid.width),
        transform=grid.transform,
        fill=0 if outside_parcels == "background" else UNLABELLED,
        all_touched=all_touched,
        dtype="int16",
    )
    return labels, classes


def _areal_parcels(frame: Any, path: Path, outside_parcels: OutsideParcels) -> Any:
    """``frame`` without lines (field boundaries or roads label no area), refused where it holds
    only points and the ground between them would be taught as background."""
    if frame.empty:
        return frame
    kinds = frame.geometry.geom_type
    lines = kinds.str.contains("Line").to_numpy()
    points = kinds.str.contains("Point").to_numpy()
    if lines.all():
        raise InputDataError(f"holds lines only ({int(lines.sum())}), no parcel polygon", path)
    if lines.any():
        warnings.warn(
            f"{path}: {int(lines.sum())} line geometries are not parcels and label nothing",
            stacklevel=3,
        )
    if points[~lines].all() and outside_parcels == "background":
        raise InputDataError(
            f"holds points only ({int(points.sum())}): every pixel between them would be taught "
            "as background; buffer them into fields, or label their pixels alone with "
            "--outside-parcels unlabelled (LabelOptions(outside_parcels='unlabelled'))",
            path,
        )
    if points.any() and not points[~lines].all():
        warnings.warn(
            f"{path}: {int(points.sum())} point geometries label one pixel each", stacklevel=3
        )
    return frame[~lines]


def _polygonal_part(geom):
    """The (multi)polygon part of a repaired geometry, or None."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon | MultiPolygon)]
    return shapely.union_all(parts) if parts else None


def _no_overlap(extent: tuple[Any, Any], grid: Grid) -> str:
    """The "no parcel overlaps the image area" error, with both extents, each in its file's
    CRS: parcels read in the wrong CRS (a GeoJSON of UTM coordinates without a ``crs`` member
    is read as longitude and latitude) show it at once."""

    def box(bounds: Sequence[float]) -> str:
        return "[" + ", ".join(f"{value:.6g}" for value in bounds) + "]"

    bounds, crs = extent
    return (
        f"no parcel overlaps the image area (parcels {box(bounds)} in {crs or 'no CRS'}, image "
        f"{box(grid.bounds)} in {grid.crs}; check the parcels' CRS)"
    )


def _named_codes(
    codes: Sequence[str | None], code_map: Mapping[int, str], column: str, path: Path
) -> list[str | None]:
    """Parcel crop codes named by ``code_map``: a code it leaves out is ``other``, one it
    names "unlabelled" labels nothing (as in a label raster)."""
    named: list[str | None] = []
    for code in codes:
        if code is None:
            named.append(None)
            continue
        try:
            number = int(code)
        except ValueError:
            raise InputDataError(
                f"column {column!r} holds {code!r}, not a crop code to name with the code map "
                "(--code-map or --legend): leave the map out where the column holds names",
                path,
            ) from None
        name = str(code_map.get(number, OTHER))
        named.append(None if class_key(name) == UNLABELLED_NAME else name)
    return named


def fold_spellings(names: Sequence[str | None], what: str) -> list[str | None]:
    """``names`` with the spellings of one class (:func:`class_key`: "Maize", "maize ") as
    the most frequent of them, said in a warning: positive classes are matched by that key,
    so two spellings kept apart would leave part of a crop among the negatives."""
    from collections import Counter

    counts = Counter(n for n in names if n is not None)
    chosen: dict[str, str] = {}
    for name, _ in counts.most_common():
        chosen.setdefault(class_key(name), name)
    folded = {name: chosen[class_key(name)] for name in counts}
    merged = sorted({n for n in counts if folded[n] != n})
    if merged:
        said = ", ".join(f"{n!r} as {folded[n]!r}" for n in merged)
        warnings.warn(f"{what} spelt differently are one class: {said}", stacklevel=3)
    return [None if n is None else folded[n] for n in names]


def _class_name(value: object) -> str | None:
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


# ---------------------------------------------------------------------------------------------
# Binary target


def binary_target(
    labels: np.ndarray, classes: Sequence[str], positive: Sequence[str] | str
) -> tuple[np.ndarray, np.ndarray]:
    """``(target, valid)``: uint8 1 where the class is one of ``positive``, and labelled pixels.

    Names match case-insensitively. Unknown names raise :class:`InputDataError` listing the
    classes that exist.
    """
    positive_ids = positive_indices(classes, positive)
    target = np.isin(labels, positive_ids).astype(np.uint8)
    valid = labels >= 0
    return target, valid


def class_key(name: object) -> str:
    """A class name as names are matched: case, spaces, hyphens and underscores aside, so that
    a legend's "winter cereal" is the ``winter_cereal`` of a command line."""
    return re.sub(r"[\s_-]+", "_", str(name).strip().casefold())


def positive_indices(
    classes: Sequence[str], positive: Sequence[str] | str, shown: Sequence[str] | None = None
) -> list[int]:
    """Class indices of the ``positive`` names (:func:`class_key`); an error lists ``shown``
    (the classes that hold pixels, where the caller knows them) or every class."""
    if isinstance(positive, str):
        positive = [positive]
    if not positive:
        raise InputDataError("no positive class given")
    folded = {class_key(name): i for i, name in enumerate(classes)}
    missing = [name for name in positive if class_key(name) not in folded]
    if missing:
        message = _not_in_labels(missing, shown or classes, "positive ")
        raise InputDataError(message + _split_name_hint(positive, classes, "--positive"))
    return sorted({folded[class_key(name)] for name in positive})


def labelled_pixels(counts: Mapping[str, int]) -> str:
    """``other 987, maize 1249``: the classes that hold labelled pixels, with their counts."""
    held = [f"{name} {n}" for name, n in counts.items() if n and name != "unlabelled"]
    return ", ".join(held) or "none"


def _not_in_labels(missing: Sequence[str], classes: Sequence[str], kind: str = "") -> str:
    """``positive class 'x' is not in the labels; classes present: …`` (or classes … are),
    with the classes a misspelt name is closest to."""
    many = len(missing) > 1
    guesses = [did_you_mean(str(name), list(classes)) for name in missing]
    guess = " ".join(g for g in guesses if g)
    guess = f" ({guess})" if guess else ""
    return (
        f"{kind}{'classes' if many else 'class'} {', '.join(map(repr, missing))} "
        f"{'are' if many else 'is'} not in the labels{guess}; classes present: "
        f"{', '.join(classes)}"
    )


def _split_name_hint(names: Sequence[str], classes: Sequence[str], flag: str) -> str:
    """``; quote a name with spaces: --positive 'winter cereal'``, where two given names are
    one class's name split at its space by the shell."""
    keys = {class_key(name): name for name in classes}
    joined = [f"{a} {b}" for a, b in itertools.pairwise(names) if class_key(f"{a} {b}") in keys]
    return f"; quote a name with spaces: {flag} {joined[0]!r}" if joined else ""


# ---------------------------------------------------------------------------------------------
# Multi-class target


def parse_classes(classes: Sequence[str] | str) -> list[str]:
    """Target class names from a list or a comma-separated string (``"maize,potato,other"``)."""
    items = classes.split(",") if isinstance(classes, str) else list(classes)
    names = [str(name).strip() for name in items if str(name).strip()]
    folded = [class_key(name) for name in names]
    duplicates = sorted({name for name in names if folded.count(class_key(name)) > 1})
    if duplicates:
        raise InputDataError(f"classes named twice: {', '.join(duplicates)}")
    if len(names) < 2:
        raise InputDataError(
            f"a class list needs at least two classes, got {names}; "
            "for one crop against the rest use the positive class"
        )
    return names


def class_lookup(
    classes: Sequence[str], target: Sequence[str], shown: Sequence[str] | None = None
) -> np.ndarray:
    """Store class index → target class index (``-1``: ignored), with one extra last entry.

    ``target`` lists the classes to learn, in output order; names match by :func:`class_key`.
    The name ``"other"`` collects every store class not listed elsewhere (a store's own
    ``other`` or ``background`` too); without it, pixels of unlisted classes are ignored like
    unlabelled ones. The last entry maps the label ``-1`` (unlabelled), so ``table[labels]``
    translates a whole label array at once. An error lists ``shown`` (as
    :func:`positive_indices`).
    """
    target = parse_classes(target)
    folded = {class_key(name): i for i, name in enumerate(classes)}
    named = [name for name in target if class_key(name) != OTHER]
    missing = [name for name in named if class_key(name) not in folded]
    if missing:
        message = _not_in_labels(missing, shown or classes)
        raise InputDataError(message + _split_name_hint(target, classes, "--classes"))
    table = np.full(len(classes) + 1, UNLABELLED, dtype=np.int64)
    position = {class_key(name): k for k, name in enumerate(target)}
    if OTHER in position:
        table[: len(classes)] = position[OTHER]
    for name in named:
        table[folded[class_key(name)]] = position[class_key(name)]
    return table


def class_target(
    labels: np.ndarray, classes: Sequence[str], target: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(target, valid)``: int64 target class index (0 where not valid) and the valid mask."""
    mapped = class_lookup(classes, target)[np.asarray(labels, dtype=np.int64)]
    valid = mapped >= 0
    return np.where(valid, mapped, 0), valid
