"""Noise-free C-band backscatter phenology per land-cover class and crop variety.

Each variety is a piecewise-linear curve of (days after sowing, VH dB, VV dB) keypoints; before the
first and after the last keypoint the curve holds its end values (bare soil, stubble). Levels are
typical Sentinel-1 IW sigma0 values from the literature and were checked against real Flanders
parcels (WorldCereal patches: grassland VH ≈ -17 / VV ≈ -10 dB, maize VH rising from -19 dB in May
to -15.5 dB in August, potato peaking at VH -13.5 / VV -6.5 dB in July, winter cereal VV dipping
to -12 dB at heading). Paddy rice is flooded before transplanting or seeding (specular water: VH
about -25 dB), then rises with biomass to about -14 dB. Barley, wheat and maize are deliberately
close to each other, as in the paper's Netherlands case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Label index = position in this tuple (same in every region, so labels transfer).
CLASSES: tuple[str, ...] = (
    "rice",
    "barley",
    "maize",
    "wheat",
    "potato",
    "grassland",
    "water",
    "forest",
    "urban",
)
BANDS: tuple[str, ...] = ("VH", "VV")


@dataclass(frozen=True)
class Variety:
    """A backscatter trajectory of one class, aligned on its sowing (or transplanting) day.

    ``keypoints`` rows are (days after sowing, VH dB, VV dB). ``texture_db`` is the per-pixel,
    time-constant standard deviation (within-field heterogeneity, point targets in towns);
    ``field_offset_db`` the per-field one (soil roughness, row direction, density);
    ``moisture`` how much of a soil-moisture or wind change reaches the signal (0 to 1);
    ``sowing_sd`` the per-field spread of the sowing date in days.
    """

    name: str
    crop: str
    keypoints: tuple[tuple[float, float, float], ...]
    texture_db: float = 0.6
    field_offset_db: float = 0.5
    moisture: float = 0.8
    sowing_sd: float = 6.0
    wind: bool = False

    def curve(self, days_after_sowing: np.ndarray, band: str) -> np.ndarray:
        """dB value(s) of ``band`` at the given days after sowing (float64)."""
        table = np.asarray(self.keypoints, dtype=np.float64)
        column = 1 + BANDS.index(band)
        return np.interp(days_after_sowing, table[:, 0], table[:, column])

    def mean_db(self, band: str) -> float:
        """Time-average of the keypoints, the centre around which field amplitude scales."""
        table = np.asarray(self.keypoints, dtype=np.float64)
        return float(table[:, 1 + BANDS.index(band)].mean())


def _v(name: str, crop: str, points: Sequence[tuple[float, float, float]], **kw: float) -> Variety:
    return Variety(name, crop, tuple(points), **kw)  # type: ignore[arg-type]


VARIETIES: dict[str, Variety] = {
    v.name: v
    for v in (
        # Puddled and transplanted paddy (Korea): flooded ~1 week before transplanting.
        _v(
            "rice_transplanted",
            "rice",
            [
                (-60, -18.5, -11.0),
                (-15, -18.0, -10.5),
                (-8, -25.0, -20.0),
                (0, -24.5, -18.5),
                (15, -23.0, -15.0),
                (30, -20.0, -11.0),
                (50, -16.5, -8.0),
                (75, -14.0, -7.0),
                (100, -14.5, -8.5),
                (120, -15.5, -10.0),
                (132, -18.0, -11.0),
                (180, -19.0, -11.5),
            ],
            sowing_sd=5.0,
        ),
        # Water-seeded paddy (Spain, part of France): seeded into the flood, long flooded phase.
        _v(
            "rice_water_seeded",
            "rice",
            [
                (-50, -18.5, -11.0),
                (-10, -18.0, -10.5),
                (-3, -25.5, -21.0),
                (0, -25.5, -21.0),
                (25, -24.0, -17.0),
                (45, -20.0, -11.5),
                (65, -16.0, -8.5),
                (90, -14.0, -8.0),
                (115, -14.8, -9.5),
                (135, -16.0, -10.5),
                (145, -18.5, -11.5),
                (190, -19.0, -11.5),
            ],
            sowing_sd=5.0,
        ),
        # Dry-seeded paddy (other French type): sown on bare soil, flooded after emergence,
        # shallower flood and later peak: the signature Spain-trained models miss.
        _v(
            "rice_dry_seeded",
            "rice",
            [
                (-40, -18.5, -11.0),
                (0, -19.5, -12.0),
                (25, -19.0, -11.5),
                (32, -22.5, -16.0),
                (45, -21.0, -13.0),
                (65, -18.0, -10.0),
                (90, -15.0, -8.5),
                (120, -14.5, -9.0),
                (145, -15.5, -10.0),
                (160, -18.5, -11.5),
                (200, -19.0, -11.5),
            ],
            sowing_sd=6.0,
        ),
        # Spring (summer) barley: bare seedbed in April, VV dips at stem elongation and heading.
        _v(
            "barley_spring",
            "barley",
            [
                (-40, -18.0, -10.0),
                (-5, -19.5, -11.5),
                (20, -19.0, -11.0),
                (45, -17.0, -10.0),
                (65, -15.5, -11.0),
                (85, -15.5, -12.0),
                (105, -16.5, -10.5),
                (120, -17.5, -9.5),
                (125, -18.5, -10.0),
                (200, -18.0, -10.0),
            ],
            sowing_sd=8.0,
        ),
        # Winter wheat sown in autumn (negative sowing day of year).
        _v(
            "wheat_winter",
            "wheat",
            [
                (0, -19.0, -11.0),
                (30, -17.5, -9.0),
                (120, -16.5, -8.5),
                (150, -16.0, -9.0),
                (175, -16.0, -10.5),
                (200, -17.0, -12.0),
                (230, -17.0, -10.5),
                (255, -17.5, -9.5),
                (265, -18.5, -10.0),
                (320, -18.0, -10.0),
            ],
            sowing_sd=8.0,
        ),
        _v(
            "maize",
            "maize",
            [
                (-60, -18.0, -10.0),
                (-5, -19.5, -11.5),
                (30, -19.2, -11.2),
                (55, -18.3, -10.8),
                (75, -17.0, -10.1),
                (95, -15.9, -9.4),
                (115, -15.3, -8.9),
                (140, -15.6, -8.5),
                (155, -16.0, -8.5),
                (160, -18.0, -9.5),
                (220, -18.0, -10.0),
            ],
            sowing_sd=8.0,
        ),
        # Potato: ridges raise VV early; dense canopy gives the highest VH of the arable crops.
        _v(
            "potato",
            "potato",
            [
                (-50, -18.0, -10.0),
                (-3, -18.0, -8.5),
                (25, -18.5, -9.0),
                (50, -16.0, -8.0),
                (70, -13.5, -6.5),
                (100, -13.8, -7.0),
                (120, -16.5, -9.0),
                (140, -18.5, -10.5),
                (200, -17.5, -10.0),
            ],
            sowing_sd=7.0,
        ),
        # Calibrated on real Sentinel-1 statistics of Flanders parcels (per 20-day period
        # from 21 April, benchmarks/realism.py), for the realism presets. Silage maize: dark
        # seedbed in May, harvested in September (back to stubble).
        _v(
            "maize_silage",
            "maize",
            [
                (-60, -17.5, -10.6),
                (-8, -17.8, -10.8),
                (0, -20.0, -11.8),
                (22, -20.3, -12.0),
                (38, -18.6, -10.8),
                (60, -17.6, -10.8),
                (80, -16.6, -10.1),
                (100, -16.0, -9.5),
                (120, -16.1, -9.6),
                (134, -16.4, -9.8),
                (142, -19.0, -10.8),
                (200, -18.8, -10.6),
            ],
            sowing_sd=8.0,
        ),
        # Winter wheat: VV dips at stem elongation and heading (May), harvest in July.
        _v(
            "wheat_winter_eu",
            "wheat",
            [
                (0, -19.0, -11.0),
                (30, -17.5, -9.8),
                (120, -17.0, -10.0),
                (168, -17.3, -11.3),
                (192, -19.2, -13.6),
                (215, -18.6, -12.8),
                (243, -18.5, -12.9),
                (252, -17.0, -11.0),
                (262, -16.4, -10.3),
                (268, -19.2, -10.9),
                (300, -19.0, -11.6),
                (325, -17.3, -10.2),
                (366, -17.5, -10.5),
            ],
            texture_db=0.8,
            field_offset_db=0.8,
            sowing_sd=12.0,
        ),
        # Potato: ridges keep VV high early; the canopy closes about eight weeks after
        # planting; haulm killing and harvest drop both bands in August.
        _v(
            "potato_eu",
            "potato",
            [
                (-50, -18.5, -10.5),
                (-3, -19.2, -8.6),
                (30, -18.8, -9.2),
                (46, -15.5, -7.2),
                (58, -14.0, -6.6),
                (100, -13.8, -7.2),
                (118, -15.3, -7.9),
                (130, -19.0, -11.0),
                (200, -19.5, -10.8),
            ],
            sowing_sd=7.0,
        ),
        # Grassland that is cut (the cuts come from the preset's realism options).
        _v(
            "grassland_mown",
            "grassland",
            [
                (0, -17.5, -11.0),
                (100, -18.2, -11.8),
                (150, -15.8, -10.6),
                (200, -16.3, -10.8),
                (255, -16.9, -10.9),
                (300, -17.6, -11.1),
                (366, -17.5, -11.0),
            ],
            texture_db=0.7,
            moisture=0.8,
            sowing_sd=0.0,
        ),
        # Perennial covers: "sowing" is 1 January, keypoints span the year.
        _v(
            "grassland",
            "grassland",
            [
                (0, -16.8, -9.5),
                (90, -17.5, -10.5),
                (115, -18.0, -11.3),
                (150, -16.8, -10.5),
                (200, -17.2, -11.0),
                (260, -17.5, -10.5),
                (330, -16.8, -9.8),
                (366, -16.8, -9.5),
            ],
            texture_db=0.7,
            moisture=0.5,
            sowing_sd=0.0,
        ),
        _v(
            "water",
            "water",
            [(0, -26.0, -21.0), (366, -26.0, -21.0)],
            texture_db=0.5,
            field_offset_db=0.8,
            moisture=0.0,
            sowing_sd=0.0,
            wind=True,
        ),
        _v(
            "forest",
            "forest",
            [
                (0, -13.2, -7.8),
                (120, -12.9, -7.4),
                (200, -12.6, -7.2),
                (300, -13.0, -7.6),
                (366, -13.2, -7.8),
            ],
            texture_db=1.2,
            field_offset_db=0.4,
            moisture=0.15,
            sowing_sd=0.0,
        ),
        _v(
            "urban",
            "urban",
            [(0, -11.0, -4.0), (366, -11.0, -4.0)],
            texture_db=3.5,
            field_offset_db=1.5,
            moisture=0.1,
            sowing_sd=0.0,
        ),
        # Roads and field margins between parcels: not labelled, but they have a signal.
        _v(
            "road",
            "road",
            [(0, -21.0, -13.0), (366, -21.0, -13.0)],
            texture_db=1.0,
            field_offset_db=0.0,
            moisture=0.3,
            sowing_sd=0.0,
        ),
    )
}

#: Speckle: equivalent number of looks of one Sentinel-1 IW GRDH acquisition.
ENL_GRDH_IW = 4.4
