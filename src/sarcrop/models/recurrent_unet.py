"""The 3D recurrent U-Net of the paper (Section 3, Fig. 2).

Each encoder level applies one shared :class:`ConvBlock` to every date (time folded into the
batch) and adds a learned per-channel weighting of the previous date's output:
``h_t = block(x_t) + w * h_{t-1}``. The recurrence is causal: ``h_t`` depends on dates ``<= t``
only. Skip connections max-pool adjacent dates (kernel 2, stride 2 over time), fold the
``ceil(T/2)`` pooled dates into channels and reduce them with a 1x1 conv to the level width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarcrop.models.base import SegmentationModel
from sarcrop.models.blocks import ConvBlock, eager_inference, fold_time, unfold_time


class CarryScan(torch.autograd.Function):
    """``h_t = s ⊙ f_t + w ⊙ h_{t-1}`` over dim 1 of ``(B, T, C, H, W)``, with its own backward.

    ``s`` is the conv block's channel dropout (``(B, T, C, 1, 1)``, or ``None`` for none),
    applied in the scan's first pass instead of a pass of its own. Autograd through a Python
    loop of slices allocates a zero tensor of the whole series for every slice's gradient and
    keeps a product per date; this scan makes one pass forward and one reverse pass backward
    (``a_t = g_t + w ⊙ a_{t+1}``), the cost of the inference path.
    """

    @staticmethod
    def forward(ctx: Any, features: Tensor, carry: Tensor, scale: Tensor | None = None) -> Tensor:
        weight = carry.view(1, -1, 1, 1)
        if scale is None:  # each date written once, straight from the features
            states = torch.empty_like(features)
            states[:, 0] = features[:, 0]
            for t in range(1, states.shape[1]):
                torch.addcmul(features[:, t], weight, states[:, t - 1], out=states[:, t])
        else:
            states = features * scale
            for t in range(1, states.shape[1]):
                states[:, t].addcmul_(weight, states[:, t - 1])
        ctx.save_for_backward(states, carry, scale)
        return states

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        states, carry, scale = ctx.saved_tensors
        weight = carry.view(1, -1, 1, 1)
        total = torch.empty_like(grad)  # d loss / d h_t through every later date
        total[:, -1] = grad[:, -1]
        for t in range(total.shape[1] - 2, -1, -1):
            torch.addcmul(grad[:, t], weight, total[:, t + 1], out=total[:, t])
        accumulate = torch.promote_types(grad.dtype, torch.float32)  # bf16 sums lose too much
        grad_carry = (total[:, 1:] * states[:, :-1]).sum(dim=(0, 1, 3, 4), dtype=accumulate)
        if scale is not None:
            total.mul_(scale)
        return total, grad_carry.to(carry.dtype), None


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
        batch = x.shape[0]
        folded = self.block.convolve(fold_time(x))
        scale = self.block.dropout_scale(folded)
        features = unfold_time(folded, batch)
        if scale is not None:
            scale = unfold_time(scale, batch)
        carry = self.carry.view(1, -1, 1, 1)
        if not (torch.is_grad_enabled() and (features.requires_grad or carry.requires_grad)):
            # Without autograd the states are accumulated in place: no extra copies of the
            # largest tensors of the model (which dominate CPU time at full resolution).
            if scale is not None:
                features.mul_(scale)
            for t in range(1, features.shape[1]):
                features[:, t].addcmul_(carry, features[:, t - 1])
            return features
        if not _traced():
            return cast(Tensor, CarryScan.apply(features, self.carry, scale))
        if scale is not None:
            features = features * scale
        state = features[:, 0]  # tracers and compilers see the recurrence as plain operators
        states = [state]
        for t in range(1, features.shape[1]):
            state = features[:, t] + carry * state
            states.append(state)
        return torch.stack(states, dim=1)


def _traced() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def pool_time(states: Tensor) -> Tensor:
    """Max-pool adjacent dates (kernel 2, stride 2; an odd last date is kept as is)."""
    if states.shape[1] % 2:
        states = torch.cat((states, states[:, -1:]), dim=1)
    return states.unflatten(1, (-1, 2)).amax(dim=2)


def pool_time_folded(states: Tensor) -> Tensor:
    """:func:`pool_time` with the pooled dates folded into channels: ``(B, ceil(T/2)*C, H, W)``.

    The maxima are written straight into a map laid out like the states (channels_last or
    not), so the 1x1 convolution reads it without another copy; in training
    :class:`TimePool` routes the gradient back in one pass instead of ``amax``'s several.
    """
    if _traced() or torch.jit.is_scripting():
        return pool_time(states).flatten(1, 2)
    return cast(Tensor, TimePool.apply(states))


def _pool_into(states: Tensor) -> Tensor:
    """The folded pairwise maxima of ``states`` in a new map laid out like them."""
    batch, steps, channels, height, width = states.shape
    pairs = steps // 2
    out = torch.empty(
        (batch, (steps + 1) // 2 * channels, height, width),
        dtype=states.dtype,
        device=states.device,
        memory_format=_layout(states),
    )
    pooled = out.unflatten(1, (-1, channels))
    torch.maximum(states[:, 0 : 2 * pairs : 2], states[:, 1 : 2 * pairs : 2], out=pooled[:, :pairs])
    if steps % 2:
        pooled[:, -1] = states[:, -1]
    return out


def _layout(states: Tensor) -> torch.memory_format:
    """channels_last where the channels of ``(B, T, C, H, W)`` are innermost."""
    channels_last = states.stride(2) == 1 < states.shape[2]
    return torch.channels_last if channels_last else torch.contiguous_format


_HALF = torch.tensor(0.5)


class TimePool(torch.autograd.Function):
    """:func:`pool_time_folded` with its own backward.

    Like ``amax``, a tie splits the gradient equally between the two dates (``relu`` makes
    ties common: a date and its predecessor both zero); ``amax``'s backward builds that from
    several passes over the whole series (masks, counts, a division, a zero fill).
    """

    @staticmethod
    def forward(ctx: Any, states: Tensor) -> Tensor:
        ctx.save_for_backward(states)
        return _pool_into(states)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (states,) = ctx.saved_tensors
        steps, channels = states.shape[1], states.shape[2]
        pairs = steps // 2
        grad = grad.unflatten(1, (-1, channels))
        even, odd = states[:, 0 : 2 * pairs : 2], states[:, 1 : 2 * pairs : 2]
        out = torch.empty_like(states)
        to_even, to_odd = out[:, 0 : 2 * pairs : 2], out[:, 1 : 2 * pairs : 2]
        share = torch.sub(even, odd, out=to_odd).heaviside_(_HALF.to(states))  # 1, 0.5 or 0
        torch.mul(grad[:, :pairs], share, out=to_even)
        torch.sub(grad[:, :pairs], to_even, out=to_odd)
        if steps % 2:
            out[:, -1] = grad[:, -1]
        return out


def pool_space(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)``. Without autograd as the maximum of the four strided quarters:
    ``max_pool2d`` on CPU also writes int64 indices, twice the bytes of its output, and this
    pooling of the time-folded states is the largest of the model."""
    if not eager_inference():
        return F.max_pool2d(x, 2)
    rows, cols = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    out = torch.maximum(x[..., 0:rows:2, 0:cols:2], x[..., 0:rows:2, 1:cols:2])
    torch.maximum(out, x[..., 1:rows:2, 0:cols:2], out=out)
    return torch.maximum(out, x[..., 1:rows:2, 1:cols:2], out=out)


class TemporalSkip(nn.Module):
    """Time max-pooling, pooled dates folded into channels, 1x1 conv back to the level width."""

    def __init__(self, channels: int, time_steps: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels * ((time_steps + 1) // 2), channels, 1)

    def forward(self, states: Tensor) -> Tensor:
        return self.reduce(pool_time_folded(states))


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
                x = unfold_time(pool_space(fold_time(x)), x.shape[0])
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
