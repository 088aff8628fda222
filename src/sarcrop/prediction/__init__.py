"""Streaming, resumable, in-season prediction of whole regions to Cloud-Optimized GeoTIFFs."""

from sarcrop.prediction.engine import BlockCompute, BlockResult, ModelSpec, predict_block
from sarcrop.prediction.predict import predict_map
from sarcrop.prediction.windows import WindowLayout, blend_weights
from sarcrop.prediction.writer import NODATA, PROBABILITY_SCALE

__all__ = [
    "NODATA",
    "PROBABILITY_SCALE",
    "BlockCompute",
    "BlockResult",
    "ModelSpec",
    "WindowLayout",
    "blend_weights",
    "predict_block",
    "predict_map",
]
