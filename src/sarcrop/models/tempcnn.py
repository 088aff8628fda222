"""A per-pixel temporal CNN (TempCNN, Pelletier et al. 2019, "Temporal Convolutional Neural
Network for the Classification of Satellite Image Time Series", Remote Sensing 11(5)).

Each pixel's series is read alone: 1-D convolutions over time (one layer per entry of
``widths``, as kernels ``(kernel_size, 1)`` over a ``(time, pixels)`` plane), the dates then
folded into channels and a dense layer of ``hidden`` units (a 1×1 convolution). No operation
mixes neighbouring pixels, so a map does not depend on the window it was computed in, and a
few labelled fields cannot be learnt by their shapes: the model learns phenology alone, as the
Random Forest does. The encoder is the temporal convolutions, the decoder the dense layer
(``decoder.blocks``) and the 1×1 output ``decoder.head``, so every transfer strategy applies.

Only batch norm keeps the pixels apart (in eval mode it is an affine map per channel); group
and instance norm average over the window and are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from types import MappingProxyType
from typing import cast

import torch
from torch import Tensor, nn

from sarcrop.errors import ConfigError
from sarcrop.models.base import SegmentationModel
from sarcrop.models.blocks import MergedHead, conv_relu, fold_batch_norm, frozen_batch_norm


class ConvNormReLU(nn.Sequential):
    """conv → batch norm → ReLU → dropout. Where the norm uses its running statistics (eval
    mode), it is folded into the convolution: one pass over the largest tensors of the model
    instead of two, the same function (and gradient)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], dropout: float
    ) -> None:
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )

    def forward(self, x: Tensor) -> Tensor:
        conv, norm, relu, dropout = self
        if not frozen_batch_norm(norm):
            return cast(Tensor, dropout(relu(norm(conv(x)))))
        padding = cast(tuple[int, int], cast(nn.Conv2d, conv).padding)
        return cast(Tensor, dropout(conv_relu(x, *fold_batch_norm(conv, norm), padding)))


class TemporalEncoder(nn.Module):
    """``(B, T, bands, H, W)`` → ``[(B, widths[-1] * T, H, W)]``: each pixel's convolved
    series, its dates folded into channels (channel ``c * T + t``: filter ``c`` at date ``t``)."""

    def __init__(
        self, in_bands: int, widths: Sequence[int], kernel_size: int, dropout: float
    ) -> None:
        super().__init__()
        channels = [in_bands, *widths]
        self.layers = nn.Sequential(
            *(
                ConvNormReLU(c_in, c_out, (kernel_size, 1), dropout)
                for c_in, c_out in pairwise(channels)
            )
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        batch, steps, bands, height, width = x.shape
        plane = x.permute(0, 2, 1, 3, 4).reshape(batch, bands, steps, height * width)
        # Channels last: the (time, pixels) convolutions run about twice as fast on a CPU.
        features = self.layers(plane.contiguous(memory_format=torch.channels_last))
        return [features.reshape(batch, -1, height, width)]


class PixelDecoder(nn.Module):
    """The dense layer (``blocks``, a 1×1 convolution with batch norm, ReLU and dropout) and
    the 1×1 output ``head``."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        dropout: float,
        merged_head: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ConvNormReLU(in_channels, hidden, (1, 1), dropout)])
        self.head = (
            MergedHead(hidden, merged_head)
            if merged_head is not None
            else nn.Conv2d(hidden, out_channels, 1)
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class TempCNN(SegmentationModel):
    """Per-pixel temporal CNN: ``(B, T, bands, H, W)`` → ``(B, out_channels, H, W)``, each
    output pixel computed from that pixel's series only."""

    name = "tempcnn"
    first_conv_path = "encoder.layers.0.0"
    default_widths = (32, 32, 32)
    specific_options = MappingProxyType({"kernel_size": 3, "hidden": 64})
    reads_neighbours = False

    def build_encoder(self) -> TemporalEncoder:
        if self.norm != "batch":
            raise ConfigError(
                f"tempcnn reads each pixel alone, which only norm 'batch' keeps; got {self.norm!r}"
            )
        kernel_size = int(self.specific["kernel_size"])
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be a positive odd number, got {kernel_size}")
        return TemporalEncoder(self.in_bands, self.widths, kernel_size, self.dropout)

    def build_decoder(self, out_channels: int, merged_head: Sequence[bool] | None) -> nn.Module:
        hidden = int(self.specific["hidden"])
        if hidden < 1:
            raise ConfigError(f"hidden must be positive, got {hidden}")
        return PixelDecoder(
            self.widths[-1] * self.time_steps, hidden, out_channels, self.dropout, merged_head
        )
