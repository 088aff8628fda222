"""``open_scenes``: any supported Sentinel-1 input → one lazily read :class:`SceneStack`.

The steps are the same for every layout, so a layout only has to describe where pixels are:

1. resolve the source (folder, glob, file list, cube, STAC JSON or API URL) to paths;
2. ask each registered layout in order whether it recognises them; open the first that does;
3. keep the requested orbit direction and check the requested bands exist;
4. read slices that are all stamped on the 1st of a month at midnight as monthly means
   (:func:`monthly_means`), which composites place at their month's middle;
5. choose the grid: ``grid=``, or one derived with ``crs=``/``resolution=``, else the grid of the
   first acquisition, which every other acquisition must share in CRS and resolution;
6. check the units the data states (or the user declares) against a sample of its values,
   and that VH reads below VV in it (swapped bands would be mapped silently otherwise).
"""

from __future__ import annotations

import datetime as dt
import glob
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

import sarcrop.data.layouts  # noqa: F401  (registers the layouts)
from sarcrop.data.grid import Grid
from sarcrop.data.layouts._common import add_months, is_raster, raster_info
from sarcrop.data.scenes import (
    LAYOUTS,
    OTHER_URL,
    Acquisition,
    RasterStack,
    SceneStack,
    Source,
    Units,
    has_scheme,
    is_url,
)
from sarcrop.data.units import detect_units, linear_to_db
from sarcrop.errors import InputDataError

OrbitChoice = Literal["ascending", "descending", "both"]
_SIDECARS = (".aux.xml", ".ovr", ".msk", ".md", ".txt", ".csv")
_SAMPLE = 256
MIN_UNIT_PIXELS = 64  # valid pixels an acquisition's band needs for its own units to be told
MIN_CROSS_POL_GAP_DB = 2.0  # VH below VV by less than this in a sample: bands swapped or copied


def open_scenes(
    source: Source,
    *,
    bands: Sequence[str] | None = None,
    crs: object = None,
    resolution: float | None = None,
    grid: Grid | None = None,
    orbit: OrbitChoice = "both",
    units: Literal["db", "linear", "auto"] = "auto",
    band_map: dict[str, str] | None = None,
    scale: Literal["auto", "dn", "none"] = "auto",
    search: dict[str, object] | None = None,
    checked: Callable[[Acquisition], bool] | None = None,
) -> SceneStack:
    """Open Sentinel-1 backscatter in any supported layout as a lazy ``(time, band, y, x)`` stack.

    ``bands`` restricts (and requires) polarisations; ``grid`` or ``crs``/``resolution`` choose
    the output grid (resampled in linear power); ``units`` declares the input units ("auto":
    as the files state, checked against the values); ``band_map`` maps sarcrop band names to a
    layout's names (asset keys, variables, band descriptions); ``scale`` controls scaled uint16
    cubes; ``search`` holds STAC API query parameters. ``checked`` picks the acquisitions
    whose values the checks of units and polarisations read (default all), and whose
    footprints the grid covers: an early map's, so that no pixel of a later scene is read (one
    still being downloaded, say) and the map's grid stays as later scenes arrive.
    """
    if orbit not in ("ascending", "descending", "both"):
        raise InputDataError(f"orbit is {orbit!r}: expected ascending, descending or both")
    if units not in ("db", "linear", "auto"):
        raise InputDataError(f"units is {units!r}: expected db, linear or auto")
    paths = resolve(source)
    label = _label(source)
    layout = next((lay for lay in LAYOUTS if lay.detect(paths, source, band_map)), None)
    if layout is None:
        raise InputDataError(
            f"found {_describe(paths, source)}; expected one of: "
            + "; ".join(f"{lay.name} ({lay.description})" for lay in LAYOUTS),
            label,
        )
    stack = layout.open(paths, source, band_map=band_map, scale=scale, search=search)
    if band_map:
        stack.attrs["band_map"] = dict(band_map)  # part of what identifies the input
    if stack.skipped():
        warnings.warn(
            f"{stack.description}: {len(stack.attrs['skipped'])} input(s) hold no Sentinel-1 "  # type: ignore[arg-type]
            f"acquisition and are left out: {stack.skipped()}",
            stacklevel=2,
        )
    if orbit != "both":
        stack = _filter_orbit(stack, orbit)
    stack = monthly_means(stack)
    if bands is not None:
        wanted = tuple(b.upper() for b in bands)
        stack.require_bands(wanted)
        stack.bands = wanted
    stack.grid = _choose_grid(stack, grid, crs, resolution, _sources_read(stack, checked))
    if grid is not None and isinstance(stack, RasterStack):
        stack = _drop_outside(stack)
    sampled = stack if checked is None else stack.select(checked)
    if sampled.acquisitions:  # none: the caller says which period has no acquisition
        values, picks = _sample(sampled)
        stack.units = _check_units(sampled, values, picks, None if units == "auto" else units)
        _check_polarisations(sampled, values, picks, stack.units)
    return stack


MIN_MONTHLY_SLICES = 3


def monthly_means(stack: SceneStack) -> SceneStack:
    """``stack`` with each slice spanning its calendar month where every slice is stamped on the
    1st of a month at midnight (at least :data:`MIN_MONTHLY_SLICES`): the stamp of a monthly
    composite (openEO, WorldCereal, xarray's ``resample(time="MS")``), which no acquisition has.
    Read at its stamp, each month's mean would stand for data centred half a month later."""
    times = stack.times
    monthly = len(times) >= MIN_MONTHLY_SLICES and all(
        t.day == 1 and t.time() == dt.time() for t in times
    )
    if not monthly or any(a.until is not None for a in stack.acquisitions):
        return stack
    stack.acquisitions = [
        replace(a, until=dt.datetime.combine(add_months(a.time.date(), 1), dt.time()))
        for a in stack.acquisitions
    ]
    stack.attrs["time_inference"] = "monthly means stamped on the 1st: read at mid-month"
    return stack


def resolve(source: Source) -> list[Path]:
    """The input paths of ``source`` (empty for a STAC API URL)."""
    if is_url(source):
        return []
    if isinstance(source, str | Path):
        items: Sequence[str | Path] = [source]
    else:
        items = list(source)
        if not items:
            raise InputDataError("empty list of input files")
    paths: list[Path] = []
    for item in items:
        text = str(Path(item).expanduser()) if isinstance(item, Path) else str(item)
        if has_scheme(text):
            raise InputDataError(OTHER_URL, text)
        if isinstance(item, str) and any(c in text for c in "*?["):
            matches = sorted(glob.glob(str(Path(text).expanduser())))
            if not matches:
                raise InputDataError("glob matches no files", text)
            paths.extend(Path(m) for m in matches if not m.endswith(_SIDECARS))
            continue
        path = Path(text).expanduser()
        if not path.exists():
            raise InputDataError("no such file or folder", path)
        if path.is_dir() and not _is_store(path):
            children = sorted(
                p
                for p in path.iterdir()
                if not p.name.startswith(".") and not p.name.endswith(_SIDECARS)
            )
            if not children:
                raise InputDataError("folder is empty: expected Sentinel-1 scenes", path)
            paths.extend(children)
        else:
            paths.append(path)
    return paths


def _is_store(path: Path) -> bool:
    return path.suffix == ".zarr" or any(
        (path / n).exists() for n in ("zarr.json", ".zgroup", ".zattrs")
    )


def _label(source: Source) -> str:
    if isinstance(source, str | Path):
        return str(source)
    items = list(source)
    return f"{items[0]} (+{len(items) - 1} more)" if len(items) > 1 else str(items[0])


def _describe(paths: list[Path], source: Source) -> str:
    """What the input holds, for the "no layout recognised it" error."""
    if not paths:
        return "nothing readable"
    kinds = Counter(p.suffix.lower() or ("folder" if p.is_dir() else "no extension") for p in paths)
    parts = [f"{n} {kind} file{'s' if n > 1 else ''}" for kind, n in kinds.most_common()]
    rasters = [raster_info(p) for p in paths if is_raster(p)]
    if rasters:
        counts = sorted({r.count for r in rasters})
        parts[0] += (
            f", {counts[0]} band{'s' if counts[0] > 1 else ''} each"
            if len(counts) == 1
            else f", {counts[0]}-{counts[-1]} bands"
        )
    reasons = [r for r in (lay.rejection(paths, source) for lay in LAYOUTS) if r]
    return ", ".join(parts + reasons[:1])


def _filter_orbit(stack: SceneStack, orbit: str) -> SceneStack:
    unknown = sum(1 for a in stack.acquisitions if a.orbit is None)
    if unknown:
        raise InputDataError(
            f"orbit={orbit!r} requested but the orbit direction of {unknown} of "
            f"{len(stack.acquisitions)} acquisitions is unknown (no tag, STAC property or "
            "ASC/DESC in the name); use --orbit both (orbit='both')",
            stack.description,
        )
    kept = stack.select(lambda a: a.orbit == orbit)
    if not kept.acquisitions:
        found = sorted({str(a.orbit) for a in stack.acquisitions})
        raise InputDataError(
            f"no {orbit} acquisitions: found only {', '.join(found)}", stack.description
        )
    return kept


def _res(grid: Grid) -> str:
    x, y = grid.resolution
    return f"{x:g}" if math.isclose(x, y) else f"{x:g}x{y:g}"


def _crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:40]


def _sources_read(
    stack: SceneStack, checked: Callable[[Acquisition], bool] | None
) -> list[tuple[str, Grid]]:
    """The input rasters (name, grid) of the acquisitions ``checked`` keeps (every input where
    it keeps all or none, or the stack is not of rasters)."""
    if checked is None or not isinstance(stack, RasterStack):
        return stack.sources
    read = {
        ref.path
        for acquisition, refs in zip(stack.acquisitions, stack.refs, strict=True)
        if checked(acquisition)
        for ref in refs.values()
    }
    kept = [(name, g) for name, g in stack.sources if name in read]
    return kept or stack.sources


def _choose_grid(
    stack: SceneStack,
    grid: Grid | None,
    crs: object,
    resolution: float | None,
    sources: list[tuple[str, Grid]],
) -> Grid:
    """The grid the composites are computed on: ``grid`` where given, else one covering every
    scene of ``sources`` (frames along a track, tiles of an area), on the first scene's pixels
    where the scenes share its CRS and pixel size, else in ``crs`` at ``resolution``."""
    sources = sources or [(stack.description, stack.grid)]
    if grid is not None:
        return grid
    first_name, first = sources[0]
    if crs is None and resolution is None:
        shifted = []
        for name, other in sources[1:]:
            if other.crs != first.crs or not np.allclose(other.resolution, first.resolution):
                raise InputDataError(
                    f"grids differ: {first_name} is {_crs_name(first.crs)} at {_res(first)}, "
                    f"{name} is {_crs_name(other.crs)} at {_res(other)}; pass --crs/--resolution "
                    "(crs=, resolution=, or grid=) to choose a common grid",
                    stack.description,
                )
            if (off := first.fractional_shift(other)) > 0.01 * first.resolution[0]:
                shifted.append((name, off))
        _warn_shifted(first_name, first, shifted)
        union = _covered(sources, first.crs, stack.description)
        return _snapped(first, union)
    if resolution is not None and not resolution > 0:
        raise InputDataError(f"resolution is {resolution}: expected a positive pixel size")
    try:
        target_crs = first.crs if crs is None else CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputDataError(f"crs {crs!r} is not a valid CRS: {exc}") from exc
    if resolution is not None:
        _check_pixel_size(first, target_crs, resolution, stack.description)
    covered = _covered(sources, target_crs, stack.description)
    if target_crs == first.crs:
        res = resolution or first.resolution[0]
    else:  # GDAL's grid for the first scene: its pixel size, where none is given
        transform, width, height = calculate_default_transform(
            first.crs, target_crs, first.width, first.height, *first.bounds, resolution=resolution
        )
        if len({tuple(g.bounds) for _, g in sources}) == 1:  # one footprint: GDAL's grid
            return Grid(target_crs, transform, int(width), int(height))
        res = transform.a
    left, bottom, right, top = covered
    width, height = max(1, round((right - left) / res)), max(1, round((top - bottom) / res))
    return Grid(target_crs, Affine(res, 0.0, left, 0.0, -res, top), width, height)


def _covered(
    sources: Sequence[tuple[str, Grid]], crs: CRS, description: str
) -> tuple[float, float, float, float]:
    """The bounds in ``crs`` that cover every scene. The scenes must overlap one another, as
    the frames of a track or the tiles of an area do: scenes apart from most of the others are
    most often ones whose CRS is wrong, and would stretch the map over the ground between."""
    names: dict[tuple[float, ...], list[str]] = {}
    for name, g in sources:
        box = g.bounds if g.crs == crs else transform_bounds(g.crs, crs, *g.bounds, densify_pts=21)
        names.setdefault(tuple(box), []).append(name)
    groups = _overlapping_groups(list(names))
    main = max(groups, key=lambda group: sum(len(names[b]) for b in group))
    apart = [b for group in groups if group is not main for b in group]
    if apart:
        scenes = sum(len(names[b]) for b in main)
        raise InputDataError(
            f"{names[apart[0]][0]} (bounds {_box(apart[0])} in {_crs_name(crs)}) overlaps none "
            f"of the other scenes ({scenes}, e.g. {names[main[0]][0]}, bounds {_box(main[0])}): "
            "is its CRS wrong? give the scenes of one area",
            description or None,
        )
    return (
        min(b[0] for b in main),
        min(b[1] for b in main),
        max(b[2] for b in main),
        max(b[3] for b in main),
    )


def _overlapping_groups(boxes: list[tuple[float, ...]]) -> list[list[tuple[float, ...]]]:
    """``boxes`` (left, bottom, right, top) in groups linked by overlaps."""
    groups: list[list[tuple[float, ...]]] = []
    left = list(boxes)
    while left:
        group, frontier = [left.pop(0)], 0
        while frontier < len(group):
            a = group[frontier]
            linked = [b for b in left if _boxes_overlap(a, b)]
            group += linked
            left = [b for b in left if b not in linked]
            frontier += 1
        groups.append(group)
    return groups


def _boxes_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _snapped(first: Grid, bounds: tuple[float, float, float, float]) -> Grid:
    """The grid of ``first``'s pixels that covers ``bounds`` (``first`` where it does)."""
    left, bottom, right, top = bounds
    a, e = first.transform.a, first.transform.e
    x0, y0 = first.transform.c, first.transform.f
    col0 = math.floor((left - x0) / a + 1e-6)
    col1 = math.ceil((right - x0) / a - 1e-6)
    row0 = math.floor((top - y0) / e + 1e-6)
    row1 = math.ceil((bottom - y0) / e - 1e-6)
    if (col0, row0, col1, row1) == (0, 0, first.width, first.height):
        return first
    transform = Affine(a, 0.0, x0 + col0 * a, 0.0, e, y0 + row0 * e)
    return Grid(first.crs, transform, col1 - col0, row1 - row0)


def _box(box: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in box) + ")"


def _warn_shifted(first_name: str, first: Grid, shifted: Sequence[tuple[str, float]]) -> None:
    """Scenes a fraction of a pixel off the first one's grid are resampled onto it (bilinear),
    which smooths their speckle, and nothing else would say so."""
    if shifted:
        name, off = shifted[0]
        warnings.warn(
            f"{len(shifted)} scene(s) lie a fraction of a pixel off the grid of {first_name} "
            f"({name}: {off:.3g} {_units(first.crs)}): they are resampled onto "
            "it (bilinear), which smooths them; align them, or choose a grid (--crs/--resolution)",
            stacklevel=5,
        )


def _check_pixel_size(first: Grid, crs: CRS, resolution: float, description: str) -> None:
    """A pixel larger than the area is a resolution given in metres to a CRS in degrees (or a
    slip of the unit): refused before a one-pixel grid, or a label grid of billions of pixels,
    is made."""
    left, bottom, right, top = transform_bounds(first.crs, crs, *first.bounds)
    width, height = right - left, top - bottom
    if resolution <= min(width, height):
        return
    units = _units(crs)
    problem = (
        f"a pixel of {resolution:g} {units} is larger than the area ({width:.3g} × {height:.3g} "
        f"{units} in {_crs_name(crs)}): the resolution is in the CRS's units"
    )
    if crs.is_geographic:
        lon_min, lat_min, lon_max, lat_max = transform_bounds(first.crs, "EPSG:4326", *first.bounds)
        zone = int(((lon_min + lon_max) / 2 + 180) // 6) % 60 + 1
        utm = f"EPSG:{(32600 if (lat_min + lat_max) >= 0 else 32700) + zone}"
        problem += f"; --crs {utm} --resolution {resolution:g} (crs=, resolution=) gives metres"
    raise InputDataError(problem, description or None)


def _units(crs: CRS) -> str:
    return "degrees" if crs.is_geographic else (crs.linear_units or "units")


def _bounds(grid: Grid) -> str:
    return _box(grid.bounds)


def _overlaps(source: Grid, target: Grid) -> bool:
    left, bottom, right, top = transform_bounds(
        source.crs, target.crs, *source.bounds, densify_pts=21
    )
    return _boxes_overlap((left, bottom, right, top), target.bounds)


def _drop_outside(stack: RasterStack) -> RasterStack:
    """Keep the acquisitions that overlap the chosen grid (scenes of other frames drop out)."""
    inside = {name for name, g in stack.sources if _overlaps(g, stack.grid)}
    if not inside:
        name, first = stack.sources[0]
        raise InputDataError(
            f"no acquisition overlaps the target grid {_bounds(stack.grid)} "
            f"({_crs_name(stack.grid.crs)}); e.g. {name} covers {_bounds(first)} "
            f"({_crs_name(first.crs)})",
            stack.description,
        )
    keep = [i for i, refs in enumerate(stack.refs) if any(r.path in inside for r in refs.values())]
    ids = {id(stack.acquisitions[i]) for i in keep}
    return stack.select(lambda a: id(a) in ids)


def _sample_window(stack: SceneStack) -> Window:
    """A central window of at most 256² px: what the checks of the values read."""
    g = stack.grid
    h, w = min(g.height, _SAMPLE), min(g.width, _SAMPLE)
    return Window((g.width - w) // 2, (g.height - h) // 2, w, h)


def _sample(stack: SceneStack) -> tuple[np.ndarray, list[int]]:
    """Values of the central window of the first, middle and last acquisitions, and which."""
    n = len(stack.acquisitions)
    picks = sorted({0, n // 2, n - 1})
    return stack.read(picks, list(stack.bands), _sample_window(stack)), picks


def _source_of(stack: SceneStack, index: int, band: str) -> str:
    """The file that holds ``band`` of acquisition ``index``: what a problem with its values
    names (one file per polarisation holds one band of every acquisition)."""
    refs = getattr(stack, "refs", None)
    if refs and band in refs[index]:
        return str(refs[index][band].path)
    return stack.acquisitions[index].source or stack.description


def _sampled(stack: SceneStack, picks: list[int]) -> str:
    """Which pixels the checks of the values read, for a message: the window and the dates."""
    window = _sample_window(stack)
    days = dict.fromkeys(f"{stack.acquisitions[i].time:%Y-%m-%d}" for i in picks)
    return f"the central {window.width}x{window.height} pixels on {', '.join(days)}"


def _is_local(stack: SceneStack, index: int) -> bool:
    refs = getattr(stack, "refs", None)
    paths = [r.path for r in refs[index].values()] if refs else [stack.acquisitions[index].source]
    return all(path and os.path.isfile(path) for path in paths)


def _seen(finite: np.ndarray) -> str:
    p1, p50, p99 = np.percentile(finite, [1, 50, 99])
    return f"median {p50:.3g}, 1-99 % range {p1:.3g}..{p99:.3g}"


def _check_units(
    stack: SceneStack, values: np.ndarray, picks: list[int], declared_by_user: Units | None
) -> Units:
    """The units of the sampled values, band by band: one band in linear power beside one in
    dB (a polarisation exported differently) would be composited as if both were alike."""
    declared = declared_by_user or stack.attrs.get("declared_units")
    found: dict[str, tuple[Units, np.ndarray]] = {}
    for position, band in enumerate(stack.bands):
        finite = values[:, position][np.isfinite(values[:, position])]
        if finite.size == 0:
            continue
        detected = detect_units(finite)
        if detected is None:
            _refuse_mixed_picks(stack, values[:, position], picks, band)
            raise InputDataError(
                f"{band} values fit neither dB backscatter (about -35..+10, negative median) "
                f"nor linear power (0..~2): {_seen(finite)}",
                _source_of(stack, picks[0], band),
            )
        found[band] = (detected, finite)
    if not found:
        if declared is None:
            raise InputDataError(
                f"no valid pixel where the units are checked ({_sampled(stack, picks)}): "
                "every value there is nodata, NaN, Inf or a fill, so whether the scenes hold dB "
                "or linear power cannot be told; state it in the files (a UNITS tag or units "
                "attribute, or dB or linear in the file names), or from Python with "
                "open_scenes(units=...)",
                _source_of(stack, picks[0], stack.bands[0]),
            )
        return declared  # type: ignore[return-value]
    (first, (units, seen)), *others = found.items()
    for band, (detected, finite) in others:
        if detected != units:
            # Named first: the band that differs from the declared units, else the later one.
            odd, other = (band, first) if declared in (None, units) else (first, band)
            looks = {band: (detected, finite), first: (units, seen)}
            odd_file, other_file = (_source_of(stack, picks[0], b) for b in (odd, other))
            elsewhere = f" in {Path(other_file).name}" if other_file != odd_file else ""
            raise InputDataError(
                f"{odd} values look {looks[odd][0]} ({_seen(looks[odd][1])}) but {other} "
                f"values{elsewhere} look {looks[other][0]} ({_seen(looks[other][1])}): export "
                "both polarisations in the same units",
                odd_file,
            )
    if declared is not None and units != declared:
        origin = "units=" if declared_by_user else "the file metadata"
        raise InputDataError(
            f"declared as {declared} by {origin} but the values look {units} ({_seen(seen)})",
            _source_of(stack, picks[0], first),
        )
    for row, index in zip(values, picks, strict=True):  # each sampled one alone
        _check_acquisition(stack, index, row, units, stack.bands)
    _check_each_acquisition(stack, units, picks)
    return units


def _check_polarisations(
    stack: SceneStack, values: np.ndarray, picks: list[int], units: Units
) -> None:
    """Cross-polarised backscatter (VH) lies several dB below co-polarised (VV) over land
    (6.5-7.8 dB in the medians of the shared real samples), so a sample whose VH median is
    not at least 2 dB below its VV median has its bands swapped, or one band's values under
    the other's name, which no later step would see."""
    bands = list(stack.bands)
    if "VH" not in bands or "VV" not in bands:
        return
    medians = {}
    for band in ("VH", "VV"):
        db = values[:, bands.index(band)]
        db = db if units == "db" else linear_to_db(db)
        finite = db[np.isfinite(db)]
        if finite.size == 0:
            return
        medians[band] = float(np.median(finite))
    if medians["VH"] > medians["VV"] - MIN_CROSS_POL_GAP_DB:
        warnings.warn(
            f"{_source_of(stack, picks[0], 'VH')}: VH reads "
            f"{'above' if medians['VH'] > medians['VV'] else 'about as high as'} VV (median "
            f"{medians['VH']:.1f} against {medians['VV']:.1f} dB), where cross-polarised "
            "backscatter lies several dB below co-polarised: are the bands swapped, or one "
            "band's values under the other's name? check the band order, names or --band-map",
            stacklevel=3,
        )


def _refuse_mixed_picks(stack: SceneStack, values: np.ndarray, picks: list[int], band: str) -> None:
    """Where the sampled acquisitions' values of ``band`` together fit no units, one of them
    may be in other units than the rest: named, rather than the first."""
    found = {}
    for row, index in zip(values, picks, strict=True):
        finite = row[np.isfinite(row)]
        if finite.size >= MIN_UNIT_PIXELS and (units := detect_units(finite)) is not None:
            found[index] = units
    kinds = Counter(found.values())
    if len(kinds) < 2:
        return
    tie = len(set(kinds.values())) == 1  # then the earliest acquisition's units are the rule
    usual = next(iter(found.values())) if tie else kinds.most_common(1)[0][0]
    for row, index in zip(values, picks, strict=True):
        _check_acquisition(stack, index, row[None], usual, [band])


def _check_each_acquisition(stack: SceneStack, units: Units, sampled: list[int]) -> None:
    """Every local acquisition's own values, band by band, must fit ``units``: one linear file
    among dB files, or one linear band of a multi-date file, would otherwise be averaged into
    the composites silently (the sampled ones' values are already read)."""
    window = _sample_window(stack)
    for index in range(len(stack.acquisitions)):
        if index in sampled or not _is_local(stack, index):
            continue
        values = stack.read([index], list(stack.bands), window)[0]
        _check_acquisition(stack, index, values, units, stack.bands)


def _check_acquisition(
    stack: SceneStack, index: int, values: np.ndarray, units: Units, bands: Sequence[str]
) -> None:
    """One acquisition's ``(band, y, x)`` values of ``bands`` must fit ``units``."""
    for band, image in zip(bands, values, strict=True):
        finite = image[np.isfinite(image)]
        if finite.size < MIN_UNIT_PIXELS:
            continue
        detected = detect_units(finite)
        if detected is not None and detected != units:
            when = stack.acquisitions[index].time
            raise InputDataError(
                f"{band} of the acquisition of {when:%Y-%m-%d %H:%M}: values look {detected} "
                f"({_seen(finite)}) but the other acquisitions are {units}",
                _source_of(stack, index, band),
            )
