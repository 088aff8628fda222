"""U-Net with a convolutional LSTM over time at the bottleneck.

A shared spatial encoder runs on every date (time folded into the batch). At the lowest
resolution a ConvLSTM reads the dates in order and its last hidden state is the bottleneck;
the skip features of the finer levels are max-pooled over all dates (cheap, order-free: the
temporal reasoning happens where the receptive field is largest).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sarcrop.models.base import SegmentationModel
from sarcrop.models.blocks import SpatialEncoder, fold_time, unfold_time


class ConvLSTM(nn.Module):
    """Single-layer ConvLSTM; returns the last hidden state ``(B, hidden, H, W)``.

    The input-to-gates convolution runs once on all dates (time folded into the batch); only
    the hidden-to-gates convolution is inside the loop over time.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.input_gates = nn.Conv2d(in_channels, 4 * hidden, kernel_size, padding="same")
        self.hidden_gates = nn.Conv2d(hidden, 4 * hidden, kernel_size, padding="same", bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, steps = x.shape[:2]
        gates_x = unfold_time(self.input_gates(fold_time(x)), batch)
        i, _, g, o = gates_x[:, 0].chunk(4, dim=1)  # zero initial state: no forget term
        c = torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        for t in range(1, steps):
            i, f, g, o = (gates_x[:, t] + self.hidden_gates(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return h


class ConvLSTMEncoder(nn.Module):
    """Per-date spatial encoder, temporal max for the skips, ConvLSTM for the bottleneck."""

    def __init__(self, in_bands: int, widths: Sequence[int], norm: str, dropout: float) -> None:
        super().__init__()
        self.spatial = SpatialEncoder(in_bands, widths, norm, dropout)
        self.lstm = ConvLSTM(widths[-1], widths[-1])

    def forward(self, x: Tensor) -> list[Tensor]:
        batch = x.shape[0]
        *skips, deepest = (unfold_time(f, batch) for f in self.spatial(fold_time(x)))
        return [s.amax(dim=1) for s in skips] + [self.lstm(deepest)]


class ConvLSTMUNet(SegmentationModel):
    """Spatial U-Net encoder per date + ConvLSTM bottleneck + U-Net decoder."""

    name = "convlstm_unet"
    first_conv_path = "encoder.spatial.blocks.0.0"
    default_widths = (16, 32, 64, 64)

    def build_encoder(self) -> ConvLSTMEncoder:
        return ConvLSTMEncoder(self.in_bands, self.widths, self.norm, self.dropout)
