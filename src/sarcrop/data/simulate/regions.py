"""Region presets: the paper's four study areas and the domain shifts between them.

``korea`` is the large, rice-dominated pre-training region (transplanted paddy); ``spain`` grows
water-seeded rice about three weeks earlier; ``france`` (Camargue) grows two rice types of which
only the water-seeded one follows Spain's calendar (the paper's Figure 1); ``netherlands`` has few
spring-barley fields among confusable maize, wheat, potato and grassland. Origins are in the real
areas' UTM zones (Gimje plain, Albufera de València, Camargue, Flevoland).
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field

from sarcrop.data.season import Season
from sarcrop.errors import SarcropError


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
        }


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
    )
}


def get_region(name: str) -> RegionPreset:
    """The preset called ``name`` (case-insensitive)."""
    try:
        return REGIONS[name.lower()]
    except KeyError:
        raise SarcropError(
            f"unknown region {name!r}; choose one of {', '.join(REGIONS)}", "region"
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
