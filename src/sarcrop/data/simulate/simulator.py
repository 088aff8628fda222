"""Simulate a Sentinel-1 GRD time series over a region and write it the way real users have it.

The physical model per pixel and acquisition, in dB unless said otherwise::

    field curve(doy - sowing)  scaled by the field's amplitude, plus its offset
    + acquisition calibration offset + (year moisture + rain event) × class soil exposure
    + wind roughening on open water + time-constant pixel texture
    → linear power × Gamma(ENL, 1/ENL) speckle → dB

Presets with realism options (:mod:`~sarcrop.data.simulate.effects`) add mowing and a
per-field wetness term to the field curve, smooth the texture, blur the linear power with a
point-spread function and draw spatially correlated speckle with an effective ENL per band.

Random numbers come from streams keyed by (seed, region, year, 256×256 tile, acquisition), so
for a seed the pixel values of every scene, the labels and the parcels (attributes and
geometry) are identical whatever the block size used to write them, and big areas are generated
and written block by block in bounded memory. The files' bytes need not be: the GeoPackage
records when it was written, and the order of the tiles inside each GeoTIFF follows the blocks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry import Polygon, box

from sarcrop.data.grid import Grid
from sarcrop.data.scenes import Acquisition, Orbit
from sarcrop.data.season import Season
from sarcrop.data.simulate import effects
from sarcrop.data.simulate.fields import Parcel, ParcelLayout
from sarcrop.data.simulate.phenology import BANDS, CLASSES, ENL_GRDH_IW, VARIETIES, Variety
from sarcrop.data.simulate.regions import RegionPreset, get_region, randomised, year_effects
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.utils.atomic import atomic_path, write_text_atomic

TILE = 256
NODATA = -9999.0
LABEL_NODATA = 255
RESOLUTION = 10.0
YEARS = (1, 9999)  # the calendar's range: a season in any year it can name
MISSING_RATE = 0.05  # share of planned acquisitions that never arrive
_ROAD = "road"


@dataclass(frozen=True)
class Conditions:
    """Scene-wide effects of one acquisition (dB), drawn once per (seed, region, year)."""

    calibration_db: float
    rain_db: float
    wind_db: float
    edge_jitter_px: float


@dataclass
class SimulatedRegion:
    """What :func:`simulate_region` wrote, and how to interpret it."""

    region: str
    year: int
    seed: int
    root: Path
    scenes: list[Path]
    labels: Path
    parcels: Path
    metadata: Path
    grid: Grid
    season: Season
    classes: tuple[str, ...]
    positive: str
    acquisitions: list[Acquisition] = field(default_factory=list)
    n_parcels: int = 0


# -- time ----------------------------------------------------------------------------------
def acquisition_plan(
    preset: RegionPreset, year: int, seed: int, revisit_days: int
) -> tuple[list[Acquisition], list[dt.datetime]]:
    """(acquired, missing) over the season: a fixed revisit per orbit, a few acquisitions
    dropped; further relative orbits (``preset.extra_orbits``) follow the first at their offset.
    """
    season = preset.season(year)
    rng = np.random.default_rng([seed, preset.code, year, 11])
    h, m, s = preset.time_utc
    offset = int(rng.integers(0, revisit_days))
    if offset >= season.steps * season.days:  # the first pass falls after the season's end
        return [], []  # (further orbits start after it: none in the season either)
    first = dt.datetime.combine(season.start, dt.time(h, m, s)) + dt.timedelta(days=offset)
    acquired, missing = _orbit_plan(preset, season, rng, first, preset.relative_orbit, revisit_days)
    for k, extra in enumerate(preset.extra_orbits, start=1):
        start = dt.datetime.combine(first.date(), dt.time(*extra.time_utc))
        start += dt.timedelta(days=extra.day_offset % revisit_days)
        rng = np.random.default_rng([seed, preset.code, year, 11, k])
        more, gone = _orbit_plan(preset, season, rng, start, extra.relative_orbit, revisit_days)
        acquired += more
        missing += gone
    if preset.extra_orbits:
        acquired.sort(key=lambda a: a.time)
        missing.sort()
    return acquired, missing


def _orbit_plan(
    preset: RegionPreset,
    season: Season,
    rng: np.random.Generator,
    first: dt.datetime,
    relative_orbit: int,
    revisit_days: int,
) -> tuple[list[Acquisition], list[dt.datetime]]:
    acquired: list[Acquisition] = []
    missing: list[dt.datetime] = []
    when, k = first, 0
    end = dt.datetime.combine(season.end, dt.time(0))
    orbit: Orbit = "ascending" if preset.orbit == "ASCENDING" else "descending"
    while when < end:
        stamp = when + dt.timedelta(seconds=int(rng.integers(-6, 7)))
        dropped = rng.random() < MISSING_RATE and k > 0
        platform = "S1B" if revisit_days < 12 and k % 2 else "S1A"
        if dropped:
            missing.append(stamp)
        else:
            acquired.append(Acquisition(stamp, orbit, relative_orbit, platform))
        when += dt.timedelta(days=revisit_days)
        k += 1
    return acquired, missing


def _conditions(preset: RegionPreset, year: int, seed: int, n: int) -> list[Conditions]:
    rng = np.random.default_rng([seed, preset.code, year, 12])
    out = []
    for _ in range(n):
        calibration = float(rng.normal(0.0, 0.25))
        rain = float(rng.uniform(0.5, 2.0)) if rng.random() < 0.2 else 0.0
        wind = float(rng.uniform(2.0, 6.0)) if rng.random() < 0.25 else 0.0
        out.append(Conditions(calibration, rain, wind, float(rng.uniform(-3.0, 3.0))))
    return out


def _doy(when: dt.datetime) -> float:
    start = dt.datetime(when.year, 1, 1)
    return (when - start).total_seconds() / 86400.0 + 1.0


def scene_name(acq: Acquisition, region: str) -> str:
    """``S1A_IW_GRDH_20210503T180241_ASC_spain.tif``."""
    direction = "ASC" if acq.orbit == "ascending" else "DSC"
    return f"{acq.platform}_IW_GRDH_{acq.time:%Y%m%dT%H%M%S}_{direction}_{region}.tif"


# -- signatures ----------------------------------------------------------------------------
def _signal_table(
    parcels: Sequence[Parcel], when: dt.datetime, cond: Conditions, moisture_year: float
) -> np.ndarray:
    """Per-parcel dB before texture and speckle, float32 (n+1, bands); row 0 is the road."""
    doy = _doy(when)
    specs = [VARIETIES[_ROAD]] + [VARIETIES[p.variety] for p in parcels]
    sowing = np.asarray([0] + [p.sowing_doy for p in parcels], dtype=np.float64)
    amplitude = np.asarray([1.0] + [p.amplitude for p in parcels])
    offset = np.asarray([0.0] + [p.offset_db for p in parcels])
    table = np.empty((len(specs), len(BANDS)), dtype=np.float64)
    by_variety: dict[str, list[int]] = {}
    for k, spec in enumerate(specs):
        by_variety.setdefault(spec.name, []).append(k)
    for name, rows in by_variety.items():
        spec = VARIETIES[name]
        idx = np.asarray(rows)
        for b, band in enumerate(BANDS):
            raw = spec.curve(doy - sowing[idx], band)
            centre = spec.mean_db(band)
            table[idx, b] = centre + amplitude[idx] * (raw - centre)
    exposure = np.asarray([s.moisture for s in specs])
    wind = np.asarray([cond.wind_db if s.wind else 0.0 for s in specs])
    table += (offset + cond.calibration_db + exposure * (moisture_year + cond.rain_db) + wind)[
        :, None
    ]
    return table.astype(np.float32)


def class_signatures(
    region: str,
    year: int | None = None,
    bands: Sequence[str] = BANDS,
    days: np.ndarray | None = None,
    *,
    seed: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Noise-free mean dB curves per class on a day-of-year grid.

    Returns ``(days, curves)``: ``curves[name]`` is float32 ``(len(bands), len(days))``. Classes
    grown as several varieties (France's rice) appear once per variety as ``"rice:<variety>"``.
    The year's calendar shift and moisture offset are applied; speckle, texture and per-field
    variation are not. ``days`` defaults to the region's season, daily. A domain-randomised
    preset (``europe``) gives its centre's curves, or with ``seed`` those of the region that
    seed draws (each crop's calendar shift and level offset, as :func:`simulate_region` with
    ``randomise=True``); ``seed`` changes nothing for the other presets.
    """
    preset = get_region(region)
    year = preset.reference_year if year is None else year
    if seed is not None:
        if seed < 0:
            raise SarcropError(f"seed must be >= 0, got {seed}", "seed")
        preset = randomised(preset, seed, year)
    shift, moisture = year_effects(preset, year)
    if days is None:
        season = preset.season(year)
        first = season.start.timetuple().tm_yday
        days = np.arange(first, first + season.steps * season.days, dtype=np.float64)
    days = np.asarray(days, dtype=np.float64)
    curves: dict[str, np.ndarray] = {}
    for crop in CLASSES:
        choices = preset.crops.get(crop, ())
        for choice in choices:
            spec: Variety = VARIETIES[choice.variety]
            sowing = choice.sowing_doy + (shift if spec.sowing_sd > 0 else 0)
            curve = np.stack(
                [spec.curve(days - sowing, b) + spec.moisture * moisture for b in bands]
            )
            level = preset.realism.level(crop)  # a seed's draw; none at a preset's centre
            curve = (curve + level if level else curve).astype(np.float32)
            key = crop if len(choices) == 1 else f"{crop}:{choice.variety.removeprefix(crop + '_')}"
            curves[key] = curve
    return days, curves


def plot_signatures(
    region: str,
    out: str | Path,
    year: int | None = None,
    bands: Sequence[str] = BANDS,
    *,
    seed: int | None = None,
) -> Path:
    """PNG of the noise-free class curves (one panel per band), the season periods shaded.

    For a domain-randomised preset (``europe``) the curves are those ``seed`` draws, or without
    it the preset's centre; each panel's title says which (see :func:`class_signatures`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    preset = get_region(region)
    year = preset.reference_year if year is None else year
    season = preset.season(year)
    days, curves = class_signatures(region, year, bands, seed=seed)
    draw = ""
    if preset.randomisation is not None:
        draw = " (preset centre)" if seed is None else f" (seed {seed})"
    fig, axes = plt.subplots(1, len(bands), figsize=(6 * len(bands), 4.2), squeeze=False)
    first = season.start.timetuple().tm_yday
    for b, (ax, band) in enumerate(zip(axes[0], bands, strict=True)):
        for k in range(0, season.steps, 2):
            ax.axvspan(first + k * season.days, first + (k + 1) * season.days, color="0.93")
        for name, curve in curves.items():
            bold = name.split(":")[0] == preset.positive
            ax.plot(days, curve[b], lw=2.4 if bold else 1.2, label=name)
        ax.set_title(f"{region} {year}{draw}: {band}")
        ax.set_xlabel("day of year")
        ax.set_ylabel("backscatter (dB)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right", ncol=2)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


# -- rasters -------------------------------------------------------------------------------
def _tile_noise(
    seed: int, preset: RegionPreset, year: int, window: Window, stream: int, draw: str
) -> np.ndarray:
    """(bands, h, w) float32 noise for ``window``, assembled from per-256-tile streams."""
    h, w = int(window.height), int(window.width)
    out = np.empty((len(BANDS), h, w), dtype=np.float32)
    r0, c0 = int(window.row_off), int(window.col_off)
    for tr in range(r0 // TILE, (r0 + h - 1) // TILE + 1):
        for tc in range(c0 // TILE, (c0 + w - 1) // TILE + 1):
            rng = np.random.default_rng([seed, preset.code, year, stream, tr, tc])
            shape = (len(BANDS), TILE, TILE)
            if draw == "gamma":
                tile = rng.standard_gamma(ENL_GRDH_IW, shape, dtype=np.float32)
                tile /= np.float32(ENL_GRDH_IW)
            else:
                tile = rng.standard_normal(shape, dtype=np.float32)
            ys, xs = max(r0, tr * TILE), max(c0, tc * TILE)
            ye, xe = min(r0 + h, (tr + 1) * TILE), min(c0 + w, (tc + 1) * TILE)
            out[:, ys - r0 : ye - r0, xs - c0 : xe - c0] = tile[
                :, ys - tr * TILE : ye - tr * TILE, xs - tc * TILE : xe - tc * TILE
            ]
    return out


def _swath_mask(window: Window, grid: Grid, jitter: float) -> np.ndarray:
    """True where the slanted swath edge leaves no data: a thin lower-left triangle.

    The edge is tilted like Sentinel-1's ground track (~10° off north) and reaches 6 % of the
    width at the bottom row, moving by a few pixels between acquisitions.
    """
    rows = np.arange(window.row_off, window.row_off + window.height)[:, None]
    cols = np.arange(window.col_off, window.col_off + window.width)[None, :]
    edge = 0.06 * grid.width - 0.18 * (grid.height - 1 - rows) + jitter
    return cols < edge


def _geotiff_profile(
    grid: Grid, dtype: str, count: int, nodata: float, compress: str
) -> dict[str, object]:
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
        "compress": compress,
        "predictor": 3 if dtype == "float32" else 2,
        "BIGTIFF": "IF_SAFER",
    }
    if compress == "zstd":
        profile["zstd_level"] = 1  # speckle is incompressible: higher levels only cost time
    return profile


def simulate_region(
    region: str,
    out: str | Path,
    *,
    year: int | None = None,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    revisit_days: int | None = None,
    block_size: int = 512,
    compress: str = "zstd",
    swath_edge: bool = True,
    product_resolution: float | None = None,
    randomise: bool = True,
    progress: bool = False,
) -> SimulatedRegion:
    """Simulate ``region`` and write scenes, labels, parcels and ``region.json`` under ``out``.

    ``size`` is (height, width) in 10 m pixels; ``revisit_days`` overrides the preset's 6 or 12;
    ``block_size`` (a multiple of 256) bounds memory and never changes the pixel values,
    labels or parcels (only the order of the tiles inside the GeoTIFFs).
    ``product_resolution`` (a multiple of 10 m, e.g. 20 for WorldCereal's σ⁰) simulates a
    coarser product as a reader takes it onto the 10 m grid: one speckle sample per product
    pixel, interpolated bilinearly (see :func:`~sarcrop.data.simulate.effects.coarse_product`).
    ``randomise=False`` simulates a domain-randomised preset (``europe``) at its centre: the
    calibrated calendars, levels, field sizes and revisit, without the seed's draw of them
    (``region.json`` then lists no ``randomisation``); other presets are unaffected.
    ``region.json`` is written last: its presence means the simulation is complete. Arguments
    that cannot be simulated, among them a revisit that leaves no acquisition in the season,
    are refused before anything is written.
    """
    preset = get_region(region)
    year = preset.reference_year if year is None else int(year)
    out = Path(out)
    if not YEARS[0] <= year <= YEARS[1]:
        raise ConfigError(f"year must be between {YEARS[0]} and {YEARS[1]}, got {year}", out)
    if seed < 0:  # before the seed's draw of a randomised region
        raise SarcropError(f"seed must be >= 0, got {seed}", out)
    preset = randomised(preset, seed, year) if randomise else replace(preset, randomisation=None)
    height, width = preset.size if size is None else (int(size[0]), int(size[1]))
    revisit = preset.revisit_days if revisit_days is None else int(revisit_days)
    if height < 1 or width < 1:
        raise SarcropError(f"size must be positive, got {height}×{width}", out)
    if revisit < 1:
        raise SarcropError(f"revisit days must be >= 1, got {revisit}", out)
    if block_size < TILE or block_size % TILE:
        raise SarcropError(f"block size must be a multiple of {TILE}, got {block_size}", out)
    if compress not in ("zstd", "deflate", "lzw"):
        raise SarcropError(f"unknown compression {compress!r}: use zstd, deflate or lzw", out)
    if product_resolution is not None:
        preset = _with_product(preset, product_resolution, out)

    x0, y0 = preset.origin
    transform = Affine(RESOLUTION, 0.0, x0, 0.0, -RESOLUTION, y0)
    grid = Grid(CRS.from_epsg(preset.epsg), transform, width, height)
    season = preset.season(year)
    _, moisture_year = year_effects(preset, year)
    acquisitions, missing = _planned(preset, year, seed, revisit, out)
    conditions = _conditions(preset, year, seed, len(acquisitions))
    layout = ParcelLayout(preset, year, seed)
    class_index = {name: i for i, name in enumerate(CLASSES)}
    scenes_dir = out / "scenes"
    scene_paths = [scenes_dir / scene_name(a, preset.name) for a in acquisitions]
    # Hidden names are temporaries of an interrupted run (atomic writes), not scenes.
    existing = {p for p in scenes_dir.glob("*.tif") if not p.name.startswith(".")}
    stale = sorted(existing - set(scene_paths)) if scenes_dir.is_dir() else []
    if stale:
        raise SarcropError(
            f"holds {len(stale)} scene(s) of another simulation (e.g. {stale[0].name}); "
            "use an empty output folder",
            scenes_dir,
        )
    acquisitions = [
        Acquisition(a.time, a.orbit, a.relative_orbit, a.platform, str(p))
        for a, p in zip(acquisitions, scene_paths, strict=True)
    ]
    blocks = [
        Window(c, r, min(block_size, width - c), min(block_size, height - r))
        for r in range(0, height, block_size)
        for c in range(0, width, block_size)
    ]

    n_parcels = 0
    with contextlib.ExitStack() as stack:
        scene_ds = []
        for acq, path in zip(acquisitions, scene_paths, strict=True):
            tmp = stack.enter_context(atomic_path(path))
            ds = stack.enter_context(
                rasterio.open(tmp, "w", **_geotiff_profile(grid, "float32", 2, NODATA, compress))
            )
            ds.descriptions = BANDS
            assert acq.platform is not None  # acquisition_plan names every platform
            ds.update_tags(
                ACQUISITION_TIME=acq.time.isoformat(),
                ORBIT_DIRECTION=preset.orbit,
                RELATIVE_ORBIT=str(preset.relative_orbit),
                PLATFORM=acq.platform.replace("S1", "SENTINEL-1"),
                UNITS="dB",
                POLARISATIONS=",".join(BANDS),
                PRODUCT_TYPE="GRD",
                MODE="IW",
                SIMULATED="sarcrop",
                REGION=preset.name,
            )
            scene_ds.append(ds)
        labels_path = out / "labels.tif"
        tmp = stack.enter_context(atomic_path(labels_path))
        labels_ds = stack.enter_context(
            rasterio.open(tmp, "w", **_geotiff_profile(grid, "uint8", 1, LABEL_NODATA, compress))
        )
        labels_ds.descriptions = ("class",)
        labels_ds.update_tags(
            CLASSES=json.dumps(list(CLASSES)),
            POSITIVE=preset.positive,
            **{f"CLASS_{i}": name for i, name in enumerate(CLASSES)},
        )
        parcels_path = out / "parcels.gpkg"
        parcels_tmp = stack.enter_context(atomic_path(parcels_path))
        parcels_tmp.unlink()

        iterator = blocks
        if progress:
            from tqdm import tqdm

            iterator = tqdm(blocks, desc=f"simulate {preset.name}", unit="block")
        for window in iterator:
            parcels = layout.parcels(window)
            ids = _rasterize_ids(parcels, window)
            class_of = np.asarray(
                [LABEL_NODATA] + [class_index[p.crop] for p in parcels], dtype=np.uint8
            )
            labels_ds.write(class_of[ids], 1, window=window)
            n_parcels += _append_parcels(parcels_tmp, parcels, window, grid, block_size)
            scenes = _block_scenes(
                preset, layout, window, grid, seed, (acquisitions, conditions), moisture_year
            )
            for db, cond, ds in zip(scenes, conditions, scene_ds, strict=True):
                if swath_edge:
                    db[:, _swath_mask(window, grid, cond.edge_jitter_px)] = NODATA
                ds.write(db, window=window)
        if n_parcels == 0:
            _write_empty_parcels(parcels_tmp, grid)

    metadata = out / "region.json"
    result = SimulatedRegion(
        region=preset.name,
        year=year,
        seed=seed,
        root=out,
        scenes=scene_paths,
        labels=labels_path,
        parcels=parcels_path,
        metadata=metadata,
        grid=grid,
        season=season,
        classes=CLASSES,
        positive=preset.positive,
        acquisitions=acquisitions,
        n_parcels=n_parcels,
    )
    write_text_atomic(
        metadata,
        json.dumps(_metadata(result, preset, revisit, missing, swath_edge), indent=2) + "\n",
    )
    return result


def _planned(
    preset: RegionPreset, year: int, seed: int, revisit: int, out: Path
) -> tuple[list[Acquisition], list[dt.datetime]]:
    """:func:`acquisition_plan`, refused when no acquisition falls in the season.

    A revisit up to the season's length always gives one; a longer one at most one per orbit,
    where the seed's first pass happens to fall before the season's end.
    """
    season = preset.season(year)
    length = season.steps * season.days
    plan: tuple[list[Acquisition], list[dt.datetime]] = ([], [])
    if revisit <= np.iinfo(np.int64).max:  # beyond it, no draw of the first pass can be made
        plan = acquisition_plan(preset, year, seed, revisit)
    if not plan[0]:
        raise ConfigError(
            f"a revisit of {revisit} days leaves no acquisition in the {length}-day season "
            f"({season.start} to {season.last_day}) for seed {seed}: set the revisit days to at "
            f"most {length}",
            out,
        )
    return plan


def _with_product(preset: RegionPreset, resolution: float, out: Path) -> RegionPreset:
    factor = round(resolution / RESOLUTION) if math.isfinite(resolution) else 0
    if factor < 1 or abs(factor * RESOLUTION - resolution) > 1e-6:
        raise SarcropError(
            f"product resolution must be a multiple of {RESOLUTION:g} m, got {resolution:g}", out
        )
    return replace(preset, realism=replace(preset.realism, product_px=factor))


def _block_scenes(
    preset: RegionPreset,
    layout: ParcelLayout,
    window: Window,
    grid: Grid,
    seed: int,
    plan: tuple[Sequence[Acquisition], Sequence[Conditions]],
    moisture_year: float,
) -> Iterator[np.ndarray]:
    """(bands, h, w) dB of ``window`` per acquisition.

    With spatial realism effects the block is computed with a halo of neighbouring pixels
    (clipped to the area), so filters see the same neighbours whatever the block size.
    """
    realism, year = preset.realism, layout.year
    outer = _with_halo(window, realism.halo_px, grid)
    parcels = layout.parcels(outer)
    ids = _rasterize_ids(parcels, outer)
    rows = slice(window.row_off - outer.row_off, window.row_off - outer.row_off + window.height)
    cols = slice(window.col_off - outer.col_off, window.col_off - outer.col_off + window.width)
    specs = [VARIETIES[_ROAD]] + [VARIETIES[p.variety] for p in parcels]
    sigma = np.asarray([spec.texture_db for spec in specs], np.float32)
    noise = _tile_noise(seed, preset, year, outer, 0, "normal")[0]
    texture = sigma[ids] * effects.smooth(noise, realism.texture_sigma_px)
    acquisitions, conditions = plan
    dynamics = None
    if realism.dynamic:
        exposure = np.asarray([spec.moisture for spec in specs])
        times = [a.time for a in acquisitions]
        keys = (seed, preset.code, year)
        dynamics = effects.field_dynamics(parcels, times, realism, exposure, keys)
    orbit_level = {o.relative_orbit: o.level_db for o in preset.extra_orbits}
    for t, (acq, cond) in enumerate(zip(acquisitions, conditions, strict=True)):
        table = _signal_table(parcels, acq.time, cond, moisture_year)
        if dynamics is not None:
            table += dynamics[:, t].astype(np.float32)
        level = orbit_level.get(acq.relative_orbit or 0, 0.0)
        if level:
            table += np.float32(level)
        db = table.T[:, ids] + texture[None]
        power = np.power(np.float32(10.0), db / np.float32(10.0))
        power = effects.blur(power, realism.psf_sigma_px)
        speckle = _speckle(seed, preset, year, outer, t)
        if realism.product_px > 1:
            origin = (int(outer.row_off), int(outer.col_off))
            power = effects.coarse_product(
                power, speckle, realism.product_px, origin, (grid.height, grid.width)
            )
        else:
            power *= speckle
        yield (np.float32(10.0) * np.log10(power[:, rows, cols])).astype(np.float32)


def _with_halo(window: Window, halo: int, grid: Grid) -> Window:
    if halo == 0:
        return window
    r0, c0 = max(int(window.row_off) - halo, 0), max(int(window.col_off) - halo, 0)
    r1 = min(int(window.row_off + window.height) + halo, grid.height)
    c1 = min(int(window.col_off + window.width) + halo, grid.width)
    return Window(c0, r0, c1 - c0, r1 - r0)


def _speckle(seed: int, preset: RegionPreset, year: int, window: Window, t: int) -> np.ndarray:
    """Multiplicative speckle of acquisition ``t``: independent Gamma(ENL) per pixel, or, with
    the realism options, spatially correlated with an effective ENL per band."""
    realism = preset.realism
    if realism.speckle_sigma_px <= 0 and realism.enl is None:
        return _tile_noise(seed, preset, year, window, 1 + t, "gamma")
    normal = effects.smooth(
        _tile_noise(seed, preset, year, window, 1 + t, "normal"),
        realism.speckle_sigma_px * realism.product_px,  # correlated over product pixels
    )
    looks = realism.enl or (ENL_GRDH_IW,) * len(BANDS)
    return np.stack([effects.gamma_speckle(normal[b], looks[b]) for b in range(len(BANDS))])


def _rasterize_ids(parcels: Sequence[Parcel], window: Window) -> np.ndarray:
    """(h, w) int32 index into ``[road] + parcels`` (0 = road / unlabelled)."""
    shape = (int(window.height), int(window.width))
    if not parcels:
        return np.zeros(shape, dtype=np.int32)
    shift = Affine.translation(window.col_off, window.row_off)
    return features.rasterize(
        ((p.pixels, k + 1) for k, p in enumerate(parcels)),
        out_shape=shape,
        transform=shift,
        fill=0,
        dtype="int32",
    )


def _owner(clipped: Polygon, block_size: int) -> tuple[int, int]:
    """The block that writes a parcel to the GeoPackage: the one holding a point inside it.

    The point lies inside the parcel's part of the area, so that block also generated it.
    """
    point = clipped.representative_point()
    return int(point.y // block_size) * block_size, int(point.x // block_size) * block_size


def _append_parcels(
    path: Path, parcels: Sequence[Parcel], window: Window, grid: Grid, block_size: int
) -> int:
    """Append the parcels owned by ``window`` (clipped to the area) to the GeoPackage."""
    import geopandas as gpd

    area = box(0, 0, grid.width, grid.height)
    here = (int(window.row_off), int(window.col_off))
    rows = []
    for p in parcels:
        clipped = p.pixels.intersection(area)
        if clipped.geom_type != "Polygon" or clipped.area <= 0:
            continue
        if _owner(clipped, block_size) != here:
            continue
        shape = Parcel(
            p.parcel_id, p.crop, p.variety, p.sowing_doy, p.amplitude, p.offset_db, clipped, p.cell
        )
        rows.append(
            {
                "parcel_id": p.parcel_id,
                "crop": p.crop,
                "variety": p.variety,
                "sowing_doy": p.sowing_doy,
                "area_ha": round(clipped.area / 100.0, 3),
                "geometry": shape.geometry(grid.transform),
            }
        )
    if not rows:
        return 0
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=grid.crs)
    frame.to_file(
        path, driver="GPKG", layer="parcels", mode="a" if path.exists() else "w", engine="pyogrio"
    )
    return len(rows)


def _write_empty_parcels(path: Path, grid: Grid) -> None:
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        {
            "parcel_id": np.empty(0, np.int64),
            "crop": np.empty(0, str),
            "variety": np.empty(0, str),
            "sowing_doy": np.empty(0, np.int64),
            "area_ha": np.empty(0, np.float64),
        },
        geometry=gpd.GeoSeries([], crs=grid.crs),
        crs=grid.crs,
    )
    frame.to_file(path, driver="GPKG", layer="parcels", engine="pyogrio")


def _metadata(
    result: SimulatedRegion,
    preset: RegionPreset,
    revisit: int,
    missing: Sequence[dt.datetime],
    swath_edge: bool,
) -> dict[str, object]:
    shift, moisture = year_effects(preset, result.year)
    from sarcrop import __version__

    return {
        "simulator": f"sarcrop {__version__}",
        "region": result.region,
        "year": result.year,
        "seed": result.seed,
        "positive": result.positive,
        "classes": list(result.classes),
        "label_nodata": LABEL_NODATA,
        "scene_nodata": NODATA,
        "units": "dB",
        "bands": list(BANDS),
        "enl": ENL_GRDH_IW,
        "revisit_days": revisit,
        "swath_edge": swath_edge,
        "season": result.season.to_dict(),
        "grid": result.grid.to_dict(),
        "calendar_shift_days": shift,
        "moisture_offset_db": moisture,
        "n_parcels": result.n_parcels,
        "acquisitions": [
            {
                "time": a.time.isoformat(),
                "file": f"scenes/{Path(a.source).name}",
                "platform": a.platform,
                "orbit": a.orbit,
                "relative_orbit": a.relative_orbit,
            }
            for a in result.acquisitions
        ],
        "missing_acquisitions": [m.isoformat() for m in missing],
        "preset": preset.to_dict(),
        "files": {"scenes": "scenes", "labels": "labels.tif", "parcels": "parcels.gpkg"},
        "pixel_size_m": RESOLUTION,
        "area_km2": round(result.grid.width * result.grid.height * RESOLUTION**2 / 1e6, 3),
        "crs_epsg": preset.epsg,
        "note": "simulated Sentinel-1 IW GRDH sigma0; not real data",
        "block_tile": TILE,
    }
