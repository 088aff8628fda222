"""Region presets: the paper's four study areas and the domain shifts between them.

``korea`` is the large, rice-dominated pre-training region (transplanted paddy); ``spain`` grows
water-seeded rice about three weeks earlier; ``france`` (Camargue) grows two rice types of which
only the water-seeded one follows Spain's calendar (the paper's Figure 1); ``netherlands`` has few
spring-barley fields among confusable maize, wheat, potato and grassland. Origins are in the real
areas' UTM zones (Gimje plain, Albufera de València, Camargue, Flevoland).

``europe`` is for generic pre-training: many crops (maize positive), curves calibrated on real
Flanders statistics, the realism effects of :mod:`~sarcrop.data.simulate.effects` switched on
(two relative orbits, correlated speckle, mowing, ...) and a region drawn afresh per seed
(:func:`randomised`: calendars, levels, field sizes, revisit).
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from sarcrop.data.season import Season
from sarcrop.data.simulate.effects import OrbitPass, Randomisation, Realism
from sarcrop.errors import SarcropError
from sarcrop.utils.validation import did_you_mean


@dataclass(frozen=True)
class CropChoice:
    """A variety grown in a region, its share among that crop's fields and its mean sowing day."""

    variety: str
    weight: float
    sowing_doy: int


@dataclass(frozen=True)
class RegionPreset:
    """Everything that makes one simulated region look like its real counterpart."""

    name: str
    epsg: int
    origin: tuple[float, float]  # upper-left corner (x, y) in the UTM CRS, metres
    size: tuple[int, int]  # default (height, width) in 10 m pixels
    revisit_days: int
    positive: str
    season_start: tuple[int, int]  # (month, day)
    reference_year: int
    orbit: str  # "ASCENDING" or "DESCENDING"
    relative_orbit: int
    time_utc: tuple[int, int, int]
    landcover: dict[str, float]  # share of road-bounded blocks: fields / forest / urban / water
    crops: dict[str, tuple[CropChoice, ...]] = field(default_factory=dict)
    crop_weights: dict[str, float] = field(default_factory=dict)
    block_px: float = 48.0  # mean road-block side, pixels
    strips: tuple[int, int] = (2, 5)  # fields across a block
    splits: tuple[int, int] = (1, 3)  # fields along a strip
    rotation_deg: float = 0.0  # orientation of the road grid
    clustering: float = 0.5  # chance a field takes its block's dominant crop
    extra_orbits: tuple[OrbitPass, ...] = ()  # further relative orbits (none: one orbit)
    realism: Realism = field(default_factory=Realism)  # effects beyond the base model
    randomisation: Randomisation | None = None  # per-seed draws (None: a fixed region)

    @property
    def code(self) -> int:
        """Stable integer mixed into every random stream of this region."""
        return zlib.crc32(self.name.encode())

    def season(self, year: int) -> Season:
        month, day = self.season_start
        return Season(dt.date(year, month, day), steps=8, days=20)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "epsg": self.epsg,
            "origin": list(self.origin),
            "size": list(self.size),
            "revisit_days": self.revisit_days,
            "positive": self.positive,
            "season_start": list(self.season_start),
            "reference_year": self.reference_year,
            "orbit": self.orbit,
            "relative_orbit": self.relative_orbit,
            "time_utc": list(self.time_utc),
            "landcover": self.landcover,
            "crop_weights": self.crop_weights,
            "crops": {k: [vars(c) for c in v] for k, v in self.crops.items()},
            "block_px": self.block_px,
            "strips": list(self.strips),
            "splits": list(self.splits),
            "rotation_deg": self.rotation_deg,
            "clustering": self.clustering,
            **self._realism_dict(),
        }

    def _realism_dict(self) -> dict[str, object]:
        """Only presets that use them list the realism options (older region.json unchanged)."""
        out: dict[str, object] = {}
        if self.extra_orbits:
            out["extra_orbits"] = [o.to_dict() for o in self.extra_orbits]
        if self.realism.active:
            out["realism"] = self.realism.to_dict()
        if self.randomisation is not None:
            out["randomisation"] = self.randomisation.to_dict()
        return out


def _one(variety: str, sowing_doy: int) -> tuple[CropChoice, ...]:
    return (CropChoice(variety, 1.0, sowing_doy),)


_PERENNIAL = {name: _one(name, 0) for name in ("grassland", "water", "forest", "urban")}
_EUROPE = {
    "maize": _one("maize", 120),
    "wheat": _one("wheat_winter", -60),
    "potato": _one("potato", 105),
    "barley": _one("barley_spring", 85),
}

REGIONS: dict[str, RegionPreset] = {
    p.name: p
    for p in (
        RegionPreset(
            name="korea",
            epsg=32652,
            origin=(310_000.0, 3_965_000.0),
            size=(768, 768),
            revisit_days=12,
            positive="rice",
            season_start=(5, 1),
            reference_year=2019,
            orbit="ASCENDING",
            relative_orbit=127,
            time_utc=(9, 25, 14),
            landcover={"fields": 0.68, "forest": 0.2, "urban": 0.08, "water": 0.04},
            crops={
                "rice": _one("rice_transplanted", 145),
                "maize": _one("maize", 125),
                "potato": _one("potato", 95),
                **_PERENNIAL,
            },
            crop_weights={"rice": 0.78, "grassland": 0.1, "maize": 0.07, "potato": 0.05},
            block_px=44.0,
            rotation_deg=8.0,
            clustering=0.6,
        ),
        RegionPreset(
            name="spain",
            epsg=32630,
            origin=(725_000.0, 4_355_000.0),
            size=(512, 512),
            revisit_days=6,
            positive="rice",
            season_start=(4, 20),
            reference_year=2021,
            orbit="ASCENDING",
            relative_orbit=103,
            time_utc=(18, 2, 41),
            landcover={"fields": 0.8, "forest": 0.04, "urban": 0.08, "water": 0.08},
            crops={"rice": _one("rice_water_seeded", 128), **_EUROPE, **_PERENNIAL},
            crop_weights={
                "rice": 0.6,
                "grassland": 0.15,
                "maize": 0.1,
                "wheat": 0.1,
                "potato": 0.05,
            },
            block_px=48.0,
            rotation_deg=-14.0,
        ),
        RegionPreset(
            name="france",
            epsg=32631,
            origin=(630_000.0, 4_825_000.0),
            size=(512, 512),
            revisit_days=6,
            positive="rice",
            season_start=(4, 20),
            reference_year=2020,
            orbit="ASCENDING",
            relative_orbit=88,
            time_utc=(17, 34, 8),
            landcover={"fields": 0.74, "forest": 0.04, "urban": 0.06, "water": 0.16},
            crops={
                "rice": (
                    CropChoice("rice_water_seeded", 0.55, 128),
                    CropChoice("rice_dry_seeded", 0.45, 115),
                ),
                **_EUROPE,
                **_PERENNIAL,
            },
            crop_weights={
                "rice": 0.45,
                "wheat": 0.2,
                "grassland": 0.2,
                "maize": 0.1,
                "potato": 0.05,
            },
            block_px=52.0,
            rotation_deg=22.0,
        ),
        RegionPreset(
            name="netherlands",
            epsg=32631,
            origin=(676_000.0, 5_820_000.0),
            size=(512, 512),
            revisit_days=12,
            positive="barley",
            season_start=(3, 15),
            reference_year=2018,
            orbit="ASCENDING",
            relative_orbit=88,
            time_utc=(17, 32, 27),
            landcover={"fields": 0.86, "forest": 0.03, "urban": 0.07, "water": 0.04},
            crops={**_EUROPE, **_PERENNIAL},
            crop_weights={
                "barley": 0.06,
                "wheat": 0.22,
                "maize": 0.24,
                "potato": 0.18,
                "grassland": 0.3,
            },
            block_px=60.0,
            strips=(4, 6),
            rotation_deg=-3.0,
            clustering=0.3,
        ),
        RegionPreset(
            name="europe",
            epsg=32631,
            origin=(548_000.0, 5_660_000.0),
            size=(512, 512),
            revisit_days=6,
            positive="maize",
            season_start=(4, 21),
            reference_year=2019,
            orbit="ASCENDING",
            relative_orbit=88,
            time_utc=(17, 32, 36),
            landcover={"fields": 0.86, "forest": 0.04, "urban": 0.07, "water": 0.03},
            crops={
                "maize": _one("maize_silage", 122),
                "wheat": _one("wheat_winter_eu", -60),
                "barley": _one("barley_spring", 85),
                "potato": _one("potato_eu", 105),
                "rice": _one("rice_water_seeded", 128),
                **_PERENNIAL,
                "grassland": _one("grassland_mown", 0),
            },
            crop_weights={
                "maize": 0.25,
                "wheat": 0.2,
                "barley": 0.07,
                "potato": 0.13,
                "grassland": 0.3,
                "rice": 0.05,
            },
            block_px=44.0,
            strips=(2, 5),
            rotation_deg=-8.0,
            clustering=0.35,
            extra_orbits=(OrbitPass(161, (17, 40, 43), 5, level_db=-0.3),),
            realism=Realism(
                speckle_sigma_px=0.55,
                enl=(5.3, 7.5),
                texture_sigma_px=0.7,
                psf_sigma_px=0.9,
                fluctuation_db=1.4,
                fluctuation_days=10.0,
                mowing=(3, 5),
            ),
            randomisation=Randomisation(
                calendar_days=15,
                level_db=0.5,
                block_scale=(0.7, 1.4),
                rotation_deg=45.0,
                revisits=((6, 2), (6, 2), (6, 1), (12, 2), (12, 1)),
            ),
        ),
    )
}


def randomised(preset: RegionPreset, seed: int, year: int) -> RegionPreset:
    """``preset`` as drawn for (seed, year) by its :class:`Randomisation` (itself if none).

    Each sown crop's calendar moves by a whole number of days, each crop gets a dB offset, the
    fields are larger or smaller, the road grid turns, and the revisit and number of orbits
    change; drawn once per (seed, year) so every block of a simulation sees the same region.
    """
    r = preset.randomisation
    if r is None:
        return preset
    rng = np.random.default_rng([seed, preset.code, year, 15])
    crops = {}
    for crop, choices in preset.crops.items():
        shift = int(rng.integers(-r.calendar_days, r.calendar_days + 1))
        crops[crop] = tuple(
            replace(c, sowing_doy=c.sowing_doy + shift) if c.sowing_doy else c for c in choices
        )
    levels = tuple(
        (crop, round(float(rng.normal(0.0, r.level_db)), 2)) for crop in preset.crop_weights
    )
    revisit, orbits = r.revisits[int(rng.integers(len(r.revisits)))] if r.revisits else (0, 0)
    return replace(
        preset,
        crops=crops,
        block_px=preset.block_px * float(rng.uniform(*r.block_scale)),
        rotation_deg=round(float(rng.uniform(-r.rotation_deg, r.rotation_deg)), 1),
        revisit_days=revisit or preset.revisit_days,
        extra_orbits=preset.extra_orbits[: max(orbits - 1, 0)] if orbits else preset.extra_orbits,
        realism=replace(preset.realism, level_db=levels),
    )


def get_region(name: str) -> RegionPreset:
    """The preset called ``name`` (case-insensitive)."""
    try:
        return REGIONS[name.lower()]
    except KeyError:
        hint = did_you_mean(name.lower(), list(REGIONS))
        raise SarcropError(
            f"unknown region {name!r}{'; ' + hint if hint else ''}; choose one of "
            f"{', '.join(REGIONS)}",
            "region",
        ) from None


def year_effects(region: RegionPreset, year: int) -> tuple[int, float]:
    """(calendar shift in days, moisture offset in dB) of ``year`` in ``region``.

    A fixed, documented rule rather than randomness, so a year always means the same thing:
    shifts lie in [-6, 6] days and consecutive years never share one; moisture lies in
    [-0.6, 0.6] dB and scales with each class's soil exposure.
    """
    shift = (year * 7 + region.code) % 13 - 6
    moisture = ((year * 5 + region.code) % 9 - 4) * 0.15
    return int(shift), round(float(moisture), 2)
