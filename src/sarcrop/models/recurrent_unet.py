"""The 3D recurrent U-Net of the paper (Section 3, Fig. 2).

Each encoder level applies one shared :class:`ConvBlock` to every date (time folded into the
batch) and adds a learned per-channel weighting of the previous date's output:
``h_t = block(x_t) + w * h_{t-1}``. The recurrence is causal: ``h_t`` depends on dates ``<= t``
only. Skip connections max-pool adjacent dates (kernel 2, stride 2 over time), fold the
``ceil(T/2)`` pooled dates into channels and reduce them with a 1x1 conv to the level width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarcrop.models.base import SegmentationModel
from sarcrop.models.blocks import ConvBlock, fold_time, unfold_time


class RecurrentLevel(nn.Module):
    """One recurrent module: shared conv block per date + weighted previous state."""

    def __init__(
        self, in_channels: int, out_channels: int, norm: str, dropout: float, carry: float = 0.5
    ) -> None:
        super().__init__()
        self.block = ConvBlock(in_channels, out_channels, norm, dropout)
        # Per-channel weight of the previous date's state; 0.5 keeps the sum bounded (≤ 2×).
        self.carry = nn.Parameter(torch.full((out_channels,), carry))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C_in, H, W)`` → states ``(B, T, C_out, H, W)``."""
        features = unfold_time(self.block(fold_time(x)), x.shape[0])
        carry = self.carry.view(1, -1, 1, 1)
        if not (torch.is_grad_enabled() and (features.requires_grad or carry.requires_grad)):
            # Without autograd the states are accumulated in place: no extra copies of the
            # largest tensors of the model (which dominate CPU time at full resolution).
            for t in range(1, features.shape[1]):
                features[:, t].addcmul_(carry, features[:, t - 1])
            return features
        state = features[:, 0]
        states = [state]
        for t in range(1, features.shape[1]):
            state = features[:, t] + carry * state
            states.append(state)
        return torch.stack(states, dim=1)


def pool_time(states: Tensor) -> Tensor:
    """Max-pool adjacent dates (kernel 2, stride 2; an odd last date is kept as is)."""
    if states.shape[1] % 2:
        states = torch.cat((states, states[:, -1:]), dim=1)
    return states.unflatten(1, (-1, 2)).amax(dim=2)


class TemporalSkip(nn.Module):
    """Time max-pooling, pooled dates folded into channels, 1x1 conv back to the level width."""

    def __init__(self, channels: int, time_steps: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels * ((time_steps + 1) // 2), channels, 1)

    def forward(self, states: Tensor) -> Tensor:
        return self.reduce(pool_time(states).flatten(1, 2))


class RecurrentEncoder(nn.Module):
    """Recurrent levels with 2×2 spatial max-pooling (per date) between them.

    The last level's time-pooled states form the bottleneck, so every level yields one
    ``(B, width, H_l, W_l)`` map for the decoder.
    """

    def __init__(
        self, in_bands: int, time_steps: int, widths: Sequence[int], norm: str, dropout: float
    ) -> None:
        super().__init__()
        channels = (in_bands, *widths)
        self.levels = nn.ModuleList(
            RecurrentLevel(c_in, c_out, norm, dropout) for c_in, c_out in zip(channels, widths)
        )
        self.skips = nn.ModuleList(TemporalSkip(c, time_steps) for c in widths)

    def states(self, x: Tensor) -> list[Tensor]:
        """The recurrent states ``(B, T, C_l, H_l, W_l)`` of every level."""
        out = []
        for index, level in enumerate(self.levels):
            if index:
                x = unfold_time(F.max_pool2d(fold_time(x), 2), x.shape[0])
            x = level(x)
            out.append(x)
        return out

    def forward(self, x: Tensor) -> list[Tensor]:
        return [skip(s) for skip, s in zip(self.skips, self.states(x))]


class RecurrentUNet(SegmentationModel):
    """3D recurrent U-Net: ``(B, T, bands, H, W)`` → logits ``(B, out_channels, H, W)``."""

    name = "recurrent_unet"
    first_conv_path = "encoder.levels.0.block.0"
    default_widths = (16, 32, 64, 128)

    def build_encoder(self) -> RecurrentEncoder:
        return RecurrentEncoder(
            self.in_bands, self.time_steps, self.widths, self.norm, self.dropout
        )
