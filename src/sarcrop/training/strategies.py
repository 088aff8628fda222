"""Transfer-learning strategies (paper Eq. 2): which parts of a pre-trained model may learn.

The model ``h`` is an encoder ``h_E`` (phenology feature extraction) followed by a decoder
``h_D``. Everything that is not ``model.encoder`` — the decoder blocks, the 1×1 output head
and any other module — belongs to ``h_D``:

``ri``   architecture only: every weight re-initialised, all trainable (the baseline);
``ft``   pre-trained weights, all trainable;
``fte``  encoder trainable, decoder *and head* frozen (the paper's best strategy);
``ftd``  decoder and head trainable, encoder frozen; with ``last_k`` only the last ``k``
         decoder blocks (closest to the output) and the head train, the rest is frozen.

Frozen means frozen: parameters get ``requires_grad=False`` (so no gradient, no optimizer
state and no weight decay touch them) and every normalisation layer inside a frozen part is
pinned to eval mode by a forward pre-hook, so its running statistics never drift, whoever calls
``model.train()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, cast, get_args

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from sarcrop.errors import ConfigError

Strategy = Literal["ri", "ft", "fte", "ftd"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

_FROZEN_FLAG = "_sarcrop_frozen_norm"


def _pin_eval(module: nn.Module, args: object) -> None:
    """Forward pre-hook: a frozen norm layer always normalises with its stored statistics."""
    module.training = False


def _has_running_stats(module: nn.Module) -> bool:
    return isinstance(module, _BatchNorm | _InstanceNorm) and module.track_running_stats


def _freeze(modules: Iterable[nn.Module]) -> None:
    for part in modules:
        for param in part.parameters():
            param.requires_grad_(False)
        for module in part.modules():
            if _has_running_stats(module) and not getattr(module, _FROZEN_FLAG, False):
                module.register_forward_pre_hook(_pin_eval)
                setattr(module, _FROZEN_FLAG, True)


def reinitialise(model: nn.Module) -> nn.Module:
    """Fresh random weights for every layer, in place (seed torch first to reproduce).

    sarcrop models (``in_bands``, ``time_steps``, ``options``) are rebuilt by their own
    constructor, so custom parameters (e.g. the recurrent carry weights) get their designed
    initial values. Other models use each layer's ``reset_parameters``; a parameter owned by a
    module without one is an error rather than a pre-trained value silently kept in "RI".
    """
    if all(hasattr(model, name) for name in ("in_bands", "time_steps", "options")):
        # Duck-typed sarcrop model: ``options`` is the keyword dict of its constructor.
        options = cast("dict[str, Any]", model.options)
        fresh = type(model)(model.in_bands, model.time_steps, **options)
        model.load_state_dict(fresh.state_dict())
        return model
    for name, module in model.named_modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        elif any(True for _ in module.parameters(recurse=False)):
            raise ConfigError(
                f"cannot re-initialise {name or 'model'} ({type(module).__name__}): "
                "it owns parameters but has no reset_parameters()"
            )
    return model


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    decoder = getattr(model, "decoder", None)
    blocks = getattr(decoder, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ConfigError(f"{type(model).__name__} has no decoder.blocks for last_k fine-tuning")
    return blocks


def apply_strategy(model: nn.Module, strategy: str, last_k: int | None = None) -> nn.Module:
    """Set which parameters of ``model`` train under ``strategy``; returns the same model."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if last_k is not None and strategy != "ftd":
        raise ConfigError(f"last_k applies to the ftd strategy only, not {strategy!r}")
    encoder = getattr(model, "encoder", None)
    if strategy in ("fte", "ftd") and not isinstance(encoder, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no .encoder to freeze or fine-tune")
    for param in model.parameters():
        param.requires_grad_(True)
    if strategy == "ri":
        reinitialise(model)
    elif strategy == "fte":
        _freeze(child for name, child in model.named_children() if name != "encoder")
    elif strategy == "ftd":
        _freeze([encoder])  # type: ignore[list-item]
        if last_k is not None:
            blocks = decoder_blocks(model)
            if not 1 <= last_k <= len(blocks):
                raise ConfigError(f"last_k must be 1..{len(blocks)} (decoder blocks), got {last_k}")
            _freeze(blocks[: len(blocks) - last_k])
            decoder = model.decoder
            _freeze(
                child
                for name, child in decoder.named_children()  # type: ignore[union-attr]
                if name not in ("blocks", "head")
            )
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer may touch (frozen ones are never handed to it)."""
    return [param for param in model.parameters() if param.requires_grad]


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts, for logs and checkpoint metadata."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "frozen": total - trainable}
