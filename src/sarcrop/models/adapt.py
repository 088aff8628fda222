"""Adapting a pre-trained model to other input bands (paper, Eq. 3).

The paper takes a model trained on VH and feeds it VH|VV by giving each input the pre-trained
first-layer weights divided by the number of inputs, so the first activation sees the same
signal scale as in pre-training: ``σ((W·x_VH + W·x_VV) / 2 + b)``.

Generalisation from ``n`` old to ``m`` new bands, so that an image repeated in every band
gives exactly the pre-trained output (``Σ_new W'_j = Σ_old W_b``) whatever is kept, dropped or
added:

1. the weights of old bands that the new ones leave out are shared equally among the kept old
   bands (``W_k + Σ_dropped W / k``), so that dropping VV from VH|VV gives VH ``W_VH + W_VV``
   (doubling ``W_VH`` instead left the shipped VH|VV model calling no pixel maize on VH);
2. every new band starts from the weights of the same band if the model knew it, else from the
   mean of the (kept) bands' weights, and all are multiplied by ``k / m`` (``k``: the kept
   bands, or all ``n`` old ones where none is kept).

Nothing dropped, this is the paper's rule (``n / m``); a pure reordering is exact for any input.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from sarcrop.errors import ConfigError
from sarcrop.models.base import SegmentationModel


def _check_bands(label: str, bands: Sequence[str]) -> list[str]:
    names = [str(b).upper() for b in bands]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"{label} bands must be a non-empty list without repeats, got {bands}")
    return names


def adapted_weights(
    weight: torch.Tensor, new_bands: Sequence[str], old_bands: Sequence[str]
) -> torch.Tensor:
    """First-layer weights ``(out, k*n, kh, kw)`` → ``(out, k*m, kh, kw)``.

    Input channels are ``k`` blocks (dates, for models that stack time into channels) of the
    ``n`` old bands; each block is adapted the same way.
    """
    old, new = _check_bands("old", old_bands), _check_bands("new", new_bands)
    if weight.shape[1] % len(old):
        raise ConfigError(
            f"the first layer has {weight.shape[1]} inputs, which does not fit {len(old)} bands"
        )
    per_band = weight.unflatten(1, (-1, len(old)))  # (out, dates, n, kh, kw)
    kept = [b for b in old if b in new]
    if kept and len(kept) < len(old):  # the dropped bands' weights go to the kept ones
        dropped = per_band[:, :, [old.index(b) for b in old if b not in new]].sum(dim=2)
        per_band = per_band[:, :, [old.index(b) for b in kept]] + (dropped / len(kept))[:, :, None]
        old = kept
    mean = per_band.mean(dim=2)
    columns = [per_band[:, :, old.index(b)] if b in old else mean for b in new]
    return (torch.stack(columns, dim=2) * (len(old) / len(new))).flatten(1, 2)


def _memory_format(weight: torch.Tensor) -> torch.memory_format:
    channels_last = weight.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def adapt_input_bands(
    model: SegmentationModel, new_bands: Sequence[str], old_bands: Sequence[str]
) -> SegmentationModel:
    """Replace ``model.first_conv`` so the model takes ``new_bands`` (in place; returns it)."""
    conv = model.first_conv
    if len(old_bands) != model.in_bands:
        raise ConfigError(f"the model takes {model.in_bands} bands, got old bands {old_bands}")
    weight = adapted_weights(conv.weight.detach(), new_bands, old_bands)
    new_conv = copy.deepcopy(conv)  # same kernel, padding, bias, device and mode
    new_conv.in_channels = weight.shape[1]
    new_conv.weight = nn.Parameter(
        weight.contiguous(memory_format=_memory_format(conv.weight)),
        requires_grad=conv.weight.requires_grad,
    )
    model.set_submodule(model.first_conv_path, new_conv)
    model.in_bands = len(new_bands)
    return model
