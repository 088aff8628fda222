"""Segmentation models for SAR time series: ``(batch, time, bands, H, W)`` → logits.

Every model is a plain :class:`torch.nn.Module` with an ``encoder`` (turns the series into one
feature map per resolution) and a ``decoder`` whose ``blocks`` are ordered from the bottleneck
to the output, followed by ``decoder.head``: the shared U-Net decoder, or for the per-pixel
:class:`TempCNN` a dense layer. :class:`SegmentationModel` checks the options and builds the
decoder; each model class builds its encoder.
"""

from sarcrop.models.adapt import adapt_input_bands, adapted_weights
from sarcrop.models.base import SegmentationModel
from sarcrop.models.blocks import UNetDecoder
from sarcrop.models.convlstm_unet import ConvLSTMUNet
from sarcrop.models.flops import count_flops, count_parameters, time_forward
from sarcrop.models.recurrent_unet import RecurrentUNet
from sarcrop.models.registry import MODELS, build_model, model_config, model_options
from sarcrop.models.tempcnn import TempCNN
from sarcrop.models.unet2d import UNet2D
from sarcrop.models.utae import UTAE

__all__ = [
    "MODELS",
    "UTAE",
    "ConvLSTMUNet",
    "RecurrentUNet",
    "SegmentationModel",
    "TempCNN",
    "UNet2D",
    "UNetDecoder",
    "adapt_input_bands",
    "adapted_weights",
    "build_model",
    "count_flops",
    "count_parameters",
    "model_config",
    "model_options",
    "time_forward",
]
