"""Building blocks shared by every model: option checks, conv blocks, a spatial encoder and
the U-Net decoder.

Every encoder turns the series into one feature map per resolution (finest first, the last one
is the bottleneck) and the decoder is the same :class:`UNetDecoder` for all of them (built by
:class:`sarcrop.models.base.SegmentationModel`), so transfer strategies and comparisons only
differ where the architectures really differ: how time is handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from sarcrop.errors import ConfigError

NORMS = ("batch", "group", "instance")


def check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    """Validate per-level channel counts; at least two levels (one skip + bottleneck)."""
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ConfigError(f"widths must list at least 2 positive channel counts, got {widths}")
    return widths


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a one-line error naming them."""
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
    return nn.GroupNorm(norm_groups(channels), channels)


def norm_groups(channels: int) -> int:
    """The groups of a group norm of ``channels``: the most, up to 8, that divide them."""
    return max(g for g in range(1, 9) if channels % g == 0)


def constant_on_one_pixel(kind: str, channels: int) -> bool:
    """Whether norm ``kind`` of ``channels`` maps a one-pixel image to a constant: instance
    norm normalises each channel over its pixels (PyTorch refuses a single one), group norm
    with one channel per group likewise; batch norm and wider groups keep the features."""
    return kind == "instance" or (kind == "group" and norm_groups(channels) == channels)


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

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self[6](self.convolve(x)))

    def convolve(self, x: Tensor) -> Tensor:
        """The block without its channel dropout (a caller may fold that into its next pass,
        see :meth:`dropout_scale`). In eval mode, batch norm is folded into the convolutions:
        no pass over the largest maps of the model for it; training runs the layers."""
        conv1, norm1, relu1, conv2, norm2, relu2 = (self[i] for i in range(6))
        if self.training or not (frozen_batch_norm(norm1) and frozen_batch_norm(norm2)):
            return cast(Tensor, relu2(norm2(conv2(relu1(norm1(conv1(x)))))))
        x = conv_relu(x, *fold_batch_norm(conv1, norm1))
        return conv_relu(x, *fold_batch_norm(conv2, norm2))

    def dropout_scale(self, x: Tensor) -> Tensor | None:
        """The channel dropout's factors ``(N, C, 1, 1)`` for the output ``x`` of
        :meth:`convolve` (``x * scale`` is the dropout, drawn as ``nn.Dropout2d`` draws them),
        or ``None`` where the dropout is the identity."""
        dropout = self[6]
        if not (isinstance(dropout, nn.Dropout2d) and dropout.training and dropout.p > 0):
            return None
        keep = 1 - dropout.p
        shape = (x.shape[0], x.shape[1], 1, 1)
        return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep).div_(keep)


def conv_relu(x: Tensor, weight: Tensor, bias: Tensor, padding: tuple[int, int] = (1, 1)) -> Tensor:
    """``relu(conv2d(x, weight, bias, padding=padding))``; on CPU without autograd one oneDNN
    primitive with the ReLU fused, which saves a pass over the output."""
    if _fusable(x):
        stride = dilation = [1, 1]
        return cast(
            Tensor,
            torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, list(padding), stride, dilation, 1, "relu", [None], None
            ),
        )
    return F.relu_(F.conv2d(x, weight, bias, padding=padding))


def _fusable(x: Tensor) -> bool:
    """Whether the oneDNN fused convolution applies: fp32 CPU inference, plain eager."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and not torch.is_autocast_enabled("cpu")
        and eager_inference()
    )


def eager_inference() -> bool:
    """No autograd and plain eager execution: not traced, exported, compiled or observed by
    a dispatch mode such as FlopCounterMode. Only then may a model use in-place updates and
    fused kernels (the others must see the plain operators)."""
    return not (
        torch.is_grad_enabled()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
        or is_in_torch_dispatch_mode()
    )


def frozen_batch_norm(module: nn.Module) -> bool:
    """Batch norm that normalises with its running statistics (eval mode, stats tracked)."""
    return (
        isinstance(module, nn.BatchNorm2d)
        and not module.training
        and module.running_mean is not None
        and module.running_var is not None
    )


def fold_batch_norm(conv: nn.Module, norm: nn.Module) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``norm(conv(x))`` as one convolution (``norm`` in eval mode)."""
    assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
    mean, var = cast(Tensor, norm.running_mean), cast(Tensor, norm.running_var)
    scale = torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return conv.weight * scale.view(-1, 1, 1, 1), shift


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

    def __init__(
        self,
        widths: Sequence[int],
        out_channels: int = 1,
        norm: str = "batch",
        merged_head: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        widths = check_widths(widths)
        deep_to_fine = widths[::-1]
        self.blocks = nn.ModuleList(
            UpBlock(c_in, c_out, c_out, norm) for c_in, c_out in pairwise(deep_to_fine)
        )
        self.head = (
            MergedHead(widths[0], merged_head)
            if merged_head is not None
            else nn.Conv2d(widths[0], out_channels, 1)
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        *skips, x = features
        for block, skip in zip(self.blocks, reversed(skips)):
            x = block(x, skip)
        return self.head(x)


class MergedHead(nn.Conv2d):
    """A 1×1 head over several classes that answers for one crop (or a group of classes).

    It keeps one output per class, as a crop-type model's head has, and returns the log-odds
    of the ``positive`` classes' summed softmax probability, log Σ_pos e^z − log Σ_rest e^z:
    exactly what the crop-type model says about that crop against everything else. A
    crop-type model fine-tuned to map one crop thus starts from its own answer and keeps
    every output it learnt, where a new one-output head would start from nothing.
    """

    def __init__(self, in_channels: int, positive: Sequence[bool]) -> None:
        flags = [bool(flag) for flag in positive]
        if len(flags) < 2 or all(flags) or not any(flags):
            raise ConfigError(
                "merged_head marks which of two or more outputs are the crop; some must be "
                f"and some must not, got {flags}"
            )
        super().__init__(in_channels, len(flags), 1)
        self.positive = [i for i, flag in enumerate(flags) if flag]
        self.rest = [i for i, flag in enumerate(flags) if not flag]

    def forward(self, x: Tensor) -> Tensor:
        scores = super().forward(x)
        crop = torch.logsumexp(scores[:, self.positive], dim=1, keepdim=True)
        return crop - torch.logsumexp(scores[:, self.rest], dim=1, keepdim=True)


def fold_time(x: Tensor) -> Tensor:
    """``(B, T, C, H, W)`` → ``(B*T, C, H, W)`` so shared convolutions run once for all dates."""
    return x.flatten(0, 1)


def unfold_time(x: Tensor, batch: int) -> Tensor:
    """Inverse of :func:`fold_time`."""
    return x.unflatten(0, (batch, -1))
