"""The base of every model: option checks, the shared decoder, input padding, rebuild config.

A model class only says what is its own: its ``name``, the path of its first convolution, its
default widths, any options of its own (``specific_options``, with defaults) and
:meth:`SegmentationModel.build_encoder` (and :meth:`SegmentationModel.build_decoder` where it
is not the U-Net's: the per-pixel TempCNN). Everything else (validating the options every model
shares, building the :class:`~sarcrop.models.blocks.UNetDecoder`, padding and checking the
input, cropping the logits) lives here once, so the U-Nets differ only in how they handle time.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import torch.nn.functional as F
from torch import Tensor, nn

from sarcrop.errors import ConfigError, InputDataError
from sarcrop.models.blocks import (
    NORMS,
    UNetDecoder,
    check_choice,
    check_widths,
    constant_on_one_pixel,
)

SHARED_OPTIONS = ("widths", "dropout", "norm", "out_channels")


class SegmentationModel(nn.Module):
    """``(batch, time, bands, H, W)`` → logits ``(batch, out_channels, H, W)``.

    Shorter series are zero-padded at the end to ``time_steps`` (early-season prediction is
    by definition prediction on a zero-padded season) and images whose sides are not multiples
    of ``2 ** (levels - 1)`` are zero-padded and the logits cropped back. ``widths=None`` means
    the model's ``default_widths``; ``specific`` are the options listed in ``specific_options``.
    ``merged_head`` (one flag per class, set where a crop-type model is fine-tuned to map one
    crop) keeps a head over several classes and answers for the flagged ones
    (:class:`~sarcrop.models.blocks.MergedHead`).
    """

    name: ClassVar[str] = ""
    first_conv_path: ClassVar[str] = ""  # dotted path of the first convolution
    default_widths: ClassVar[tuple[int, ...]] = (16, 32, 64, 128)
    specific_options: ClassVar[Mapping[str, Any]] = {}  # this model's own options → defaults
    # False where each output pixel is computed from that pixel's series alone: maps need no
    # overlap between windows and do not depend on the window size.
    reads_neighbours: ClassVar[bool] = True
    encoder: nn.Module
    decoder: nn.Module

    def __init__(
        self,
        in_bands: int,
        time_steps: int = 8,
        widths: Sequence[int] | None = None,
        dropout: float = 0.1,
        norm: str = "batch",
        out_channels: int = 1,
        merged_head: Sequence[bool] | None = None,
        **specific: Any,
    ) -> None:
        super().__init__()
        if in_bands < 1 or time_steps < 1 or out_channels < 1:
            raise ConfigError(
                "in_bands, time_steps and out_channels must be positive, "
                f"got {in_bands}, {time_steps} and {out_channels}"
            )
        if merged_head is not None and out_channels != 1:
            raise ConfigError(f"a merged head gives one output, not out_channels={out_channels}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.in_bands = int(in_bands)
        self.time_steps = int(time_steps)
        self.widths = check_widths(self.default_widths if widths is None else widths)
        self.norm = check_choice("norm", norm, NORMS)
        self.dropout = float(dropout)
        self.specific = self._check_specific(specific)
        self.multiple = self.spatial_multiple()
        # What :func:`sarcrop.models.model_config` records: the constructor rebuilds the model.
        self.options: dict[str, Any] = dict(
            widths=self.widths, dropout=dropout, norm=norm, out_channels=out_channels
        )
        self.options.update(self.specific)
        if merged_head is not None:  # recorded only where there is one
            self.options["merged_head"] = [bool(flag) for flag in merged_head]
        # The encoder first: the same seed gives the same initial weights as always.
        self.encoder = self.build_encoder()
        self.decoder = self.build_decoder(out_channels, merged_head)

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Every option besides ``in_bands`` and ``time_steps``, with this model's default."""
        shared = inspect.signature(SegmentationModel).parameters
        defaults = {key: shared[key].default for key in SHARED_OPTIONS}
        return {**defaults, "widths": cls.default_widths, **cls.specific_options}

    @classmethod
    def _check_specific(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(cls.specific_options))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for model {cls.name!r}; "
                f"valid: {', '.join(cls.option_defaults())}"
            )
        return {**cls.specific_options, **given}

    def build_encoder(self) -> nn.Module:
        """The model's own part: ``(B, T, bands, H, W)`` → one map per level, finest first,
        with ``widths[level]`` channels each (the last one is the bottleneck)."""
        raise NotImplementedError(f"{type(self).__name__} must build its encoder")

    def build_decoder(self, out_channels: int, merged_head: Sequence[bool] | None) -> nn.Module:
        """The decoder: ``blocks`` ordered from the deepest to the output, then the 1×1
        ``head``; the shared :class:`UNetDecoder` unless a model has its own."""
        return UNetDecoder(self.widths, out_channels, self.norm, merged_head)

    def spatial_multiple(self) -> int:
        """What the input's sides are padded to a multiple of: the pooling factor."""
        return 2 ** (len(self.widths) - 1) if self.reads_neighbours else 1

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
        bottleneck = ((h + pad_h) // self.multiple, (w + pad_w) // self.multiple)
        if (
            self.reads_neighbours
            and bottleneck == (1, 1)
            and constant_on_one_pixel(self.norm, self.widths[-1])
        ):
            raise InputDataError(
                f"a {h}×{w} input reaches the bottleneck of {len(self.widths)} levels as one "
                f"pixel, which {self.norm} norm of {self.widths[-1]} channels turns into a "
                f"constant: give inputs of more than {self.multiple} pixels on a side (patches, "
                "predict's --window), fewer widths, or norm batch"
            )
        pad_t = self.time_steps - t
        if pad_h or pad_w or pad_t:
            x = F.pad(x, (0, pad_w, 0, pad_h, 0, 0, 0, pad_t))
        return x

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        logits = self.decoder(self.encoder(self.pad_input(x)))
        return logits[..., :h, :w]
