"""Physically plausible Sentinel-1 SAR simulator: parcels, phenology, speckle, region presets.

Every test, benchmark and first-time user gets data from here; see :func:`simulate_region`.
"""

from sarcrop.data.simulate.fields import Parcel, ParcelLayout
from sarcrop.data.simulate.phenology import BANDS, CLASSES, ENL_GRDH_IW, VARIETIES, Variety
from sarcrop.data.simulate.regions import REGIONS, RegionPreset, get_region, year_effects
from sarcrop.data.simulate.simulator import (
    LABEL_NODATA,
    NODATA,
    SimulatedRegion,
    acquisition_plan,
    class_signatures,
    plot_signatures,
    scene_name,
    simulate_region,
)

__all__ = [
    "BANDS",
    "CLASSES",
    "ENL_GRDH_IW",
    "LABEL_NODATA",
    "NODATA",
    "REGIONS",
    "VARIETIES",
    "Parcel",
    "ParcelLayout",
    "RegionPreset",
    "SimulatedRegion",
    "Variety",
    "acquisition_plan",
    "class_signatures",
    "get_region",
    "plot_signatures",
    "scene_name",
    "simulate_region",
    "year_effects",
]
