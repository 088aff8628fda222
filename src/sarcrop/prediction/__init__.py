"""Streaming, resumable, in-season prediction of whole regions to Cloud-Optimized GeoTIFFs."""

from sarcrop.prediction.engine import ModelSpec, StripResult, predict_strip
from sarcrop.prediction.predict import predict_map
from sarcrop.prediction.windows import WindowLayout, blend_weights
from sarcrop.prediction.writer import NODATA, PROBABILITY_SCALE, OutputBands

__all__ = [
    "NODATA",
    "PROBABILITY_SCALE",
    "ModelSpec",
    "OutputBands",
    "StripResult",
    "WindowLayout",
    "blend_weights",
    "predict_map",
    "predict_strip",
]
