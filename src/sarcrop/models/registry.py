"""Models by name, and the JSON-safe config that rebuilds one (stored in checkpoints)."""

from __future__ import annotations

from typing import Any

from torch import nn

from sarcrop.errors import ConfigError
from sarcrop.models.base import SegmentationModel
from sarcrop.models.convlstm_unet import ConvLSTMUNet
from sarcrop.models.recurrent_unet import RecurrentUNet
from sarcrop.models.tempcnn import TempCNN
from sarcrop.models.unet2d import UNet2D
from sarcrop.models.utae import UTAE

MODELS: dict[str, type[SegmentationModel]] = {
    cls.name: cls for cls in (RecurrentUNet, UTAE, ConvLSTMUNet, UNet2D, TempCNN)
}


def model_options(name: str) -> dict[str, Any]:
    """Constructor options of model ``name`` and their defaults (besides bands and steps)."""
    return _model_class(name).option_defaults()


def _model_class(name: str) -> type[SegmentationModel]:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, in_bands: int, time_steps: int, **options: Any) -> SegmentationModel:
    """Build model ``name`` (a key of :data:`MODELS`); the model checks its options
    (:class:`~sarcrop.models.base.SegmentationModel`)."""
    try:
        return _model_class(name)(in_bands=in_bands, time_steps=time_steps, **options)
    except (TypeError, ValueError, ArithmeticError, RuntimeError) as error:  # PyTorch's too
        raise ConfigError(f"invalid options for model {name!r}: {error}") from None


def _json_safe(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"name", "in_bands", "time_steps", **options}``: ``build_model(**config)`` rebuilds it."""
    if not isinstance(model, SegmentationModel) or model.name not in MODELS:
        raise ConfigError(f"not a sarcrop model: {type(model).__name__}")
    options = {key: _json_safe(value) for key, value in model.options.items()}
    return {
        "name": model.name,
        "in_bands": model.in_bands,
        "time_steps": model.time_steps,
        **options,
    }
