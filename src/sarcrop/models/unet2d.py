"""Plain 2-D U-Net baseline: the dates are stacked into channels (``T * bands`` inputs).

Time has no structure here: the first convolution sees every date at once, so the model cannot
share weights across dates. Channels are ordered date-major (``t * bands + b``).
"""

from __future__ import annotations

from torch import Tensor

from sarcrop.models.base import SegmentationModel
from sarcrop.models.blocks import SpatialEncoder


class StackedEncoder(SpatialEncoder):
    """:class:`SpatialEncoder` on the series with dates folded into channels."""

    def forward(self, x: Tensor) -> list[Tensor]:
        return super().forward(x.flatten(1, 2))


class UNet2D(SegmentationModel):
    """2-D U-Net on time-stacked input: ``(B, T, bands, H, W)`` → ``(B, out_channels, H, W)``."""

    name = "unet2d"
    first_conv_path = "encoder.blocks.0.0"
    default_widths = (18, 36, 72, 144)  # about the recurrent U-Net's parameter count

    def build_encoder(self) -> StackedEncoder:
        return StackedEncoder(self.in_bands * self.time_steps, self.widths, self.norm, self.dropout)
