"""U-TAE (Garnot & Landrieu, 2021): U-Net with lightweight temporal attention.

A shared spatial encoder runs on every date (time folded into the batch). At the lowest
resolution a multi-head lightweight temporal attention encoder (L-TAE) collapses the time axis
per pixel and produces one attention mask per head over the dates. The masks are bilinearly
upsampled to every skip resolution and collapse the skip features: the channels are split into
one group per head and each group is the attention-weighted sum over dates of its features.
Dates carry a sinusoidal positional encoding of their day offset (the time index times
``step_days`` unless day-of-year positions are given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarcrop.errors import ConfigError, InputDataError
from sarcrop.models.base import SegmentationModel
from sarcrop.models.blocks import SpatialEncoder, fold_time, unfold_time


def positional_encoding(positions: Tensor, channels: int, period: float = 1000.0) -> Tensor:
    """Sinusoidal encoding ``(..., channels)`` of (day) positions ``(...)``."""
    half = torch.arange(0, channels, 2, device=positions.device, dtype=torch.float32)
    angles = positions.float().unsqueeze(-1) / period ** (half / channels)
    encoding = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)
    return encoding[..., :channels]


class LTAE(nn.Module):
    """Lightweight temporal attention: one learned master query per head, per-pixel keys.

    ``(B, T, C, h, w)`` → features ``(B, out_channels, h, w)`` and attention masks
    ``(B, heads, T, h, w)`` (softmax over T). Every pixel's sequence is read on its own, its
    group norms included (``in_norm`` over each head's channels and the dates, ``out_norm``
    over each head's output channels, as in Garnot & Chapron's L-TAE): a pixel's output does
    not depend on other pixels, the window's size or the no-data in it.
    """

    def __init__(self, channels: int, out_channels: int, heads: int = 4, key_dim: int = 4) -> None:
        super().__init__()
        if channels % heads or out_channels % heads:
            raise ConfigError(f"L-TAE channels ({channels}) must be divisible by heads ({heads})")
        if out_channels < 2 * heads:
            raise ConfigError(
                f"L-TAE channels ({out_channels}) give each of the {heads} heads one channel, "
                "which its per-pixel group norm makes a constant: give the last width at least "
                "2 channels per head, or fewer heads"
            )
        self.heads, self.key_dim = heads, key_dim
        self.in_norm = nn.GroupNorm(heads, channels)
        self.keys = nn.Linear(channels, heads * key_dim)
        self.query = nn.Parameter(torch.randn(heads, key_dim) * key_dim**-0.5)
        self.mlp = nn.Sequential(nn.Linear(channels, out_channels), nn.ReLU(inplace=True))
        self.out_norm = nn.GroupNorm(heads, out_channels)

    def forward(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        b, t, c, h, w = x.shape
        sequences = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, c, t)  # one per pixel
        values = self.in_norm(sequences).transpose(1, 2)  # (B·h·w, T, C)
        encoding = positional_encoding(positions, c).to(values.dtype)  # (B, T, C)
        values = values + encoding.repeat_interleave(h * w, dim=0)
        keys = self.keys(values).unflatten(-1, (self.heads, self.key_dim))
        scores = torch.einsum("nthd,hd->nht", keys, self.query) / math.sqrt(self.key_dim)
        attention = scores.softmax(dim=-1)
        heads = torch.einsum("nht,nthd->nhd", attention, values.unflatten(-1, (self.heads, -1)))
        out = self.out_norm(self.mlp(heads.flatten(1)))  # (B·h·w, out_channels)
        out = out.view(b, h, w, -1).permute(0, 3, 1, 2)
        return out, attention.view(b, h, w, self.heads, t).permute(0, 3, 4, 1, 2)


def collapse_time(features: Tensor, attention: Tensor) -> Tensor:
    """Attention-weighted sum over dates, one head per channel group.

    ``features`` ``(B, T, C, H, W)``, ``attention`` ``(B, heads, T, h, w)`` → ``(B, C, H, W)``.
    """
    t, c, hh, ww = features.shape[1:]
    heads = attention.shape[1]
    if attention.shape[-2:] != (hh, ww):
        attention = F.interpolate(
            attention.flatten(1, 2), size=(hh, ww), mode="bilinear", align_corners=False
        ).unflatten(1, (heads, t))
    grouped = features.unflatten(2, (heads, c // heads))
    return torch.einsum("bgthw,btgchw->bgchw", attention, grouped).flatten(1, 2)


class UTAEEncoder(nn.Module):
    """Per-date spatial encoder + L-TAE at the lowest resolution + attention-collapsed skips."""

    def __init__(
        self,
        in_bands: int,
        widths: Sequence[int],
        norm: str,
        dropout: float,
        *,
        heads: int,
        key_dim: int,
        step_days: float,
    ) -> None:
        super().__init__()
        if any(w % heads for w in widths):
            raise ConfigError(f"all widths {tuple(widths)} must be divisible by heads ({heads})")
        self.step_days = step_days
        self.spatial = SpatialEncoder(in_bands, widths, norm, dropout)
        self.ltae = LTAE(widths[-1], widths[-1], heads, key_dim)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> list[Tensor]:
        batch, steps = x.shape[:2]
        if positions is None:
            positions = torch.arange(steps, device=x.device) * self.step_days
            positions = positions.expand(batch, steps)
        *skips, deepest = (unfold_time(f, batch) for f in self.spatial(fold_time(x)))
        bottleneck, attention = self.ltae(deepest, positions)
        return [collapse_time(s, attention) for s in skips] + [bottleneck]


class UTAE(SegmentationModel):
    """U-TAE: ``(B, T, bands, H, W)`` (+ optional day positions ``(B, T)``) → logits.

    Own options: ``heads`` and ``key_dim`` of the L-TAE, ``step_days`` between dates.
    """

    name = "utae"
    first_conv_path = "encoder.spatial.blocks.0.0"
    default_widths = (16, 32, 64, 128)
    specific_options = MappingProxyType({"heads": 4, "key_dim": 4, "step_days": 20.0})
    encoder: UTAEEncoder

    def build_encoder(self) -> UTAEEncoder:
        for key in ("heads", "key_dim"):
            value = self.specific[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a whole number of 1 or more, got {value!r}")
        days = self.specific["step_days"]
        if not isinstance(days, int | float) or isinstance(days, bool) or not 0 < days < math.inf:
            raise ConfigError(f"step_days must be a number of days above 0, got {days!r}")
        return UTAEEncoder(self.in_bands, self.widths, self.norm, self.dropout, **self.specific)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """``positions``: day of each given date ``(B, t)``; padded dates continue the series
        every ``step_days``."""
        h, w = x.shape[-2:]
        if positions is not None:
            positions = self.season_positions(positions, x.shape[:2])
        logits = self.decoder(self.encoder(self.pad_input(x), positions))
        return logits[..., :h, :w]

    def season_positions(self, positions: Tensor, batch_steps: tuple[int, ...]) -> Tensor:
        """The given dates' days ``(B, t)`` continued every ``step_days`` to ``time_steps``."""
        if positions.shape != batch_steps:
            raise InputDataError(
                f"positions must be (batch, time) = {tuple(batch_steps)}, "
                f"got {tuple(positions.shape)}"
            )
        positions = positions.float()
        extra = torch.arange(1, self.time_steps - batch_steps[1] + 1, device=positions.device)
        return torch.cat((positions, positions[:, -1:] + extra * self.encoder.step_days), dim=1)
