"""Plain 2-D U-Net baseline: the dates are stacked into channels (``T * bands`` inputs).

Time has no structure here: the first convolution sees every date at once, so the model cannot
share weights across dates. Channels are ordered date-major (``t * bands + b``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from sarcrop.models.blocks import (
    SegmentationModel,
    SpatialEncoder,
    UNetDecoder,
)


class StackedEncoder(SpatialEncoder):
    """:class:`SpatialEncoder` on the series with dates folded into channels."""

    def forward(self, x: Tensor) -> list[Tensor]:
        return super().forward(x.flatten(1, 2))


class UNet2D(SegmentationModel):
    """2-D U-Net on time-stacked input: ``(B, T, bands, H, W)`` → ``(B, out_channels, H, W)``."""

    name = "unet2d"
    first_conv_path = "encoder.blocks.0.0"

    def __init__(
        self,
        in_bands: int,
        time_steps: int = 8,
        widths: Sequence[int] = (18, 36, 72, 144),
        dropout: float = 0.1,
        norm: str = "batch",
        out_channels: int = 1,
    ) -> None:
        super().__init__(
            in_bands, time_steps, widths, norm, dropout=dropout, out_channels=out_channels
        )
        self.encoder = StackedEncoder(in_bands * time_steps, self.widths, norm, dropout)
        self.decoder = UNetDecoder(self.widths, out_channels, norm)
