"""Building blocks shared by every model: conv blocks, a spatial encoder, the U-Net decoder.

All models follow one contract: ``forward(x)`` takes ``(batch, time, bands, H, W)`` with
``time <= time_steps`` and returns logits ``(batch, out_channels, H, W)``. The encoder turns the
series into one feature map per resolution (finest first, the last one is the bottleneck) and
the decoder is the same :class:`UNetDecoder` for all of them, so transfer strategies and
comparisons only differ where the architectures really differ: how time is handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarcrop.errors import ConfigError, InputDataError

NORMS = ("batch", "group", "instance")


def check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    """Validate per-level channel counts; at least two levels (one skip + bottleneck)."""
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ConfigError(f"widths must list at least 2 positive channel counts, got {widths}")
    return widths


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer by name.

    Group and instance norm are computed per sample (and per date, as time is folded into the
    batch), so unlike batch norm they keep training-time features causal in time.
    """
    check_choice("norm", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    groups = max(g for g in range(1, 9) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ConvBlock(nn.Sequential):
    """conv3x3 → norm → ReLU → conv3x3 → norm → ReLU → channel dropout."""

    def __init__(
        self, in_channels: int, out_channels: int, norm: str = "batch", dropout: float = 0.0
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
        )


class SpatialEncoder(nn.Module):
    """Plain U-Net encoder on 2-D images: a :class:`ConvBlock` per level, 2×2 max-pool between.

    Returns the feature map of every level, finest first.
    """

    def __init__(
        self, in_channels: int, widths: Sequence[int], norm: str = "batch", dropout: float = 0.0
    ) -> None:
        super().__init__()
        channels = (in_channels, *widths)
        self.blocks = nn.ModuleList(
            ConvBlock(c_in, c_out, norm, dropout) for c_in, c_out in zip(channels, widths)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level, block in enumerate(self.blocks):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            features.append(x)
        return features


class UpBlock(nn.Module):
    """Transposed-conv ×2 upsampling, concatenation with the skip, then a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = ConvBlock(out_channels + skip_channels, out_channels, norm)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat((self.up(x), skip), dim=1))


class UNetDecoder(nn.Module):
    """Standard U-Net decoder shared by all models.

    ``blocks`` is ordered from the bottleneck to the output (``blocks[-1]`` is the closest to the
    output), so fine-tuning the last ``k`` blocks is ``blocks[-k:]`` plus ``head``.
    """

    def __init__(self, widths: Sequence[int], out_channels: int = 1, norm: str = "batch") -> None:
        super().__init__()
        widths = check_widths(widths)
        deep_to_fine = widths[::-1]
        self.blocks = nn.ModuleList(
            UpBlock(c_in, c_out, c_out, norm) for c_in, c_out in pairwise(deep_to_fine)
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        *skips, x = features
        for block, skip in zip(self.blocks, reversed(skips)):
            x = block(x, skip)
        return self.head(x)


class SegmentationModel(nn.Module):
    """Base of all models: input checks, zero-padding of time and space, config for rebuilding.

    Shorter series are zero-padded at the end to ``time_steps`` (early-season prediction is
    by definition prediction on a zero-padded season) and images whose sides are not multiples
    of ``2 ** (levels - 1)`` are zero-padded and the logits cropped back.
    """

    name: str = ""
    first_conv_path: str = ""  # dotted path of the first convolution
    encoder: nn.Module
    decoder: UNetDecoder

    def __init__(
        self, in_bands: int, time_steps: int, widths: Sequence[int], norm: str, **options: Any
    ) -> None:
        """Check the arguments every model shares; ``options`` (with ``widths`` and ``norm``)
        is what :func:`sarcrop.models.model_config` records for rebuilding the model."""
        super().__init__()
        if in_bands < 1 or time_steps < 1:
            raise ConfigError(
                f"in_bands and time_steps must be positive, got {in_bands} and {time_steps}"
            )
        check_choice("norm", norm, NORMS)
        self.in_bands = int(in_bands)
        self.time_steps = int(time_steps)
        self.widths = check_widths(widths)
        self.multiple = 2 ** (len(self.widths) - 1)
        self.options: dict[str, Any] = dict(widths=self.widths, norm=norm, **options)

    @property
    def first_conv(self) -> nn.Conv2d:
        """The first convolution, the only layer that sees the input bands."""
        return cast(nn.Conv2d, self.get_submodule(self.first_conv_path))

    def pad_input(self, x: Tensor) -> Tensor:
        """Check ``(batch, time, bands, H, W)`` and zero-pad time to ``time_steps``, space to
        a multiple of the pooling factor."""
        if x.ndim != 5:
            raise InputDataError(
                f"model input must be (batch, time, bands, H, W), got shape {tuple(x.shape)}"
            )
        _, t, b, h, w = x.shape
        if b != self.in_bands:
            raise InputDataError(f"model expects {self.in_bands} bands, got {b}")
        if not 1 <= t <= self.time_steps:
            raise InputDataError(f"model expects 1 to {self.time_steps} time steps, got {t}")
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        pad_t = self.time_steps - t
        if pad_h or pad_w or pad_t:
            x = F.pad(x, (0, pad_w, 0, pad_h, 0, 0, 0, pad_t))
        return x

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        logits = self.decoder(self.encoder(self.pad_input(x)))
        return logits[..., :h, :w]


def fold_time(x: Tensor) -> Tensor:
    """``(B, T, C, H, W)`` → ``(B*T, C, H, W)`` so shared convolutions run once for all dates."""
    return x.flatten(0, 1)


def unfold_time(x: Tensor, batch: int) -> Tensor:
    """Inverse of :func:`fold_time`."""
    return x.unflatten(0, (batch, -1))
