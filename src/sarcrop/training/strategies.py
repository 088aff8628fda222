"""Transfer-learning strategies (paper Eq. 2): which parts of a pre-trained model may learn.

The model ``h`` is an encoder ``h_E`` (phenology feature extraction) followed by a decoder
``h_D``. Everything that is not ``model.encoder`` — the decoder blocks, the 1×1 output head
and any other module — belongs to ``h_D``:

``ri``   architecture only: every weight re-initialised, all trainable (the baseline);
``ft``   pre-trained weights, all trainable;
``fte``  encoder trainable, decoder *and head* frozen (the paper's best strategy);
``ftd``  decoder and head trainable, encoder frozen; with ``last_k`` only the last ``k``
         decoder blocks (closest to the output) and the head train, the rest is frozen;
``bias``  everything frozen: the pre-trained model as it is, its output bias shifted so that
         0.5 cuts where the labelled pixels' IoU is best (:mod:`sarcrop.training.calibration`;
         a search over thresholds, no gradient step);
``probe`` linear probe: everything frozen but the 1×1 output convolution ``decoder.head``,
         which is re-initialised and trained: a per-pixel linear classifier on the pre-trained
         features, the few-label head of foundation-model practice (a few hundred labelled
         pixels can fit its ``width + 1`` weights, not a network).

When the target's classes differ from the pre-trained model's (a crop-type model fine-tuned
to one crop, or the reverse, or another class list, or a self-supervised model whose head
restored its input, one output per time step and band), ``head_channels`` replaces
``decoder.head`` with a new one for the target's classes, trainable under every strategy (a
frozen random head could not learn anything); everything else keeps its pre-trained weights.
Outputs of classes the pre-trained model knows (:func:`head_rows`: by name, case, spaces,
hyphens and underscores aside, or under the name given for it) start as its outputs, the
others fresh. When the target has the pre-trained
model's classes and no others, its head carries on, the outputs put in the target's order, and
the strategy treats it as the pre-trained head it is. So does a crop-type model's head when the
target is one crop it knows (:func:`merge_head`): it keeps every output and answers for that
crop against the rest.

Frozen means frozen: parameters get ``requires_grad=False`` (so no gradient, no optimizer
state and no weight decay touch them) and every module of a frozen part is pinned to eval mode,
whoever calls ``model.train()``: its norm layers keep their running statistics and its dropout
is off, so the frozen part computes the same function it was pre-trained to compute. Applying a
strategy replaces whatever an earlier one froze and pinned on the same model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast, get_args

import torch
from torch import nn

from sarcrop.errors import ConfigError
from sarcrop.models.blocks import MergedHead
from sarcrop.models.forest import FeatureTreeEnsemble, TreeEnsemble

Strategy = Literal["ri", "ft", "fte", "ftd", "probe", "bias"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class EvalPin:
    """Stands in for ``train`` of one frozen module: whatever mode is asked, it stays in eval.

    ``nn.Module.train`` reaches every submodule through its ``train`` attribute, so pinning each
    module of a frozen part holds whether ``train()`` is called on the model, on a wrapper
    (Lightning) or on the part itself. A plain class keeps the model picklable and copyable.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, mode: bool = True) -> nn.Module:
        return nn.Module.train(self.module, False)


def pinned_modules(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` pinned to eval mode by a strategy."""
    return [name for name, module in model.named_modules() if _pin(module) is not None]


def _pin(module: nn.Module) -> EvalPin | None:
    pin = vars(module).get("train")
    return pin if isinstance(pin, EvalPin) else None


def _unfreeze(model: nn.Module) -> None:
    """Undo any earlier strategy: everything trainable, unpinned, in the model's mode."""
    model.requires_grad_(True)
    for module in model.modules():
        if _pin(module) is not None:
            del vars(module)["train"]
            module.training = model.training


def _freeze(parts: Iterable[nn.Module]) -> None:
    for part in parts:
        part.requires_grad_(False)
        for module in part.modules():
            vars(module)["train"] = EvalPin(module)
        part.eval()


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


def apply_strategy(
    model: nn.Module,
    strategy: str,
    last_k: int | None = None,
    head_channels: int | None = None,
    carried: Sequence[int | None] = (),
) -> nn.Module:
    """Set which parameters of ``model`` train under ``strategy``; returns the same model.

    Whatever an earlier call froze and pinned is undone first, so strategies never stack.
    ``head_channels`` replaces the head by a new, trainable one with that many outputs, which
    keep the old head's outputs ``carried`` (:func:`replace_head`).
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if last_k is not None and strategy != "ftd":
        raise ConfigError(f"last_k applies to the ftd strategy only, not {strategy!r}")
    frozen = frozen_parts(model, strategy, last_k)
    _unfreeze(model)
    if head_channels is not None:
        replace_head(model, head_channels, carried)
        if strategy == "fte":  # the decoder stays frozen, the new head learns
            encoder = model.get_submodule("encoder")
            frozen = [p for p in _leaves_around(model, _head(model)) if p is not encoder]
    if strategy == "ri":
        reinitialise(model)
    elif strategy == "probe":
        _head(model).reset_parameters()
    _freeze(frozen)
    return model


def replace_head(model: nn.Module, channels: int, carried: Sequence[int | None] = ()) -> nn.Conv2d:
    """A new ``decoder.head`` with ``channels`` outputs; output ``i`` continues the old head's
    output ``carried[i]`` where that is given, the others start fresh (seed torch first to
    reproduce; a head that carries every output draws no random numbers). A sarcrop model's
    options record the new count, so checkpoints rebuild it."""
    old = _head(model)
    rows = list(carried) + [None] * (channels - len(carried))
    shape = (old.in_channels, channels, 1)
    fresh = None in rows
    head = nn.Conv2d(*shape) if fresh else nn.utils.skip_init(nn.Conv2d, *shape)
    head = head.to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        for output, row in enumerate(rows):
            if row is not None:
                head.weight[output] = old.weight[row]
                cast(torch.Tensor, head.bias)[output] = cast(torch.Tensor, old.bias)[row]
    model.get_submodule("decoder").head = head
    options = getattr(model, "options", None)
    if isinstance(options, dict) and "out_channels" in options:
        options["out_channels"] = channels
        options.pop("merged_head", None)
    return head


def merge_head(model: nn.Module, positive: Sequence[bool]) -> None:
    """``decoder.head``'s outputs, one per class, answering for the ``positive`` ones against
    the rest (:class:`~sarcrop.models.blocks.MergedHead`), its weights as they were (a forest:
    :meth:`~sarcrop.models.forest.TreeEnsemble.merge`). A sarcrop model's options record it,
    so checkpoints rebuild it."""
    if isinstance(model, TreeEnsemble | FeatureTreeEnsemble):
        model.merge(positive)
        return
    old = _head(model)
    head = MergedHead(old.in_channels, positive).to(old.weight.device, old.weight.dtype)
    head.load_state_dict(old.state_dict())
    model.get_submodule("decoder").head = head
    options = getattr(model, "options", None)
    if isinstance(options, dict) and "out_channels" in options:
        options.update(out_channels=1, merged_head=[bool(flag) for flag in positive])


def crop_outputs(
    classes: Sequence[str], mapped: Sequence[str], wanted: Sequence[str]
) -> list[bool] | None:
    """Which outputs of a head over ``classes`` answer for ``wanted`` (some of them) against
    the rest (:func:`merge_head`); None for a one-crop model (no ``classes``) that maps
    ``wanted`` already (``mapped``, its positive classes). A ValueError says what does not fit."""
    from sarcrop.data.labels import class_key
    from sarcrop.utils.validation import did_you_mean

    keys = {class_key(name) for name in wanted}
    if not classes:
        if keys != {class_key(name) for name in mapped}:
            hint = " ".join(filter(None, (did_you_mean(name, mapped) for name in wanted)))
            raise ValueError(
                f"maps {', '.join(mapped) or 'nothing'}, not {', '.join(wanted)}"
                + (f": {hint}" if hint else "")
            )
        return None
    crop = [class_key(name) in keys for name in classes]
    known = {class_key(name) for name in classes}
    unknown = sorted(name for name in wanted if class_key(name) not in known)
    if unknown or all(crop):
        hint = " ".join(filter(None, (did_you_mean(name, classes) for name in unknown)))
        problem = f"no class {', '.join(unknown)}" if unknown else "nothing left against them"
        raise ValueError(f"maps {', '.join(classes)}: {problem}" + (f"; {hint}" if hint else ""))
    return crop


def parent_names(
    ours: Sequence[str], known: Sequence[str], names: Mapping[str, str] | None
) -> dict[str, str]:
    """``parent_classes`` (our name: the parent's), checked: each of ours among ``ours``, each
    of the parent's among ``known``, names compared as :func:`~sarcrop.data.labels.class_key`
    (``Rice`` is ``rice``); spelled as ``ours`` and ``known`` spell them."""
    from sarcrop.data.labels import class_key

    names = dict(names or {})
    spelled: list[dict[str, str]] = []
    for side, listed, which in ((names, ours, "ours"), (names.values(), known, "its")):
        keys = {class_key(name): name for name in reversed(listed)}  # the first of a key
        if unknown := sorted({name for name in side if class_key(name) not in keys}):
            raise ConfigError(
                f"parent_classes names {', '.join(unknown)}, not among {which} "
                f"({', '.join(listed)})"
            )
        spelled.append(keys)
    ours_of, theirs_of = spelled
    return {ours_of[class_key(o)]: theirs_of[class_key(t)] for o, t in names.items()}


def parent_class(ours: str, known: Sequence[str], names: Mapping[str, str]) -> str | None:
    """The class among ``known`` that our class ``ours`` continues: the one :func:`parent_names`
    gives it, else its own name (compared as :func:`~sarcrop.data.labels.class_key`), spelled
    as ``known`` spells it; None where ``known`` lacks it."""
    from sarcrop.data.labels import class_key

    wanted = class_key(names.get(ours, ours))
    return next((name for name in known if class_key(name) == wanted), None)


def head_rows(
    classes: Sequence[str], known: Sequence[str], names: Mapping[str, str] | None = None
) -> list[int | None]:
    """For each of ``classes``, the output of a head over ``known`` classes that maps it: the
    one of its name, or of the name ``names`` gives it (``winter_cereal: wheat``), else None;
    names compared as :func:`~sarcrop.data.labels.class_key`."""
    names = parent_names(classes, known, names)
    found = [parent_class(name, known, names) for name in classes]
    rows = [None if name is None else list(known).index(name) for name in found]
    taken = [row for row in rows if row is not None]
    if len(taken) != len(set(taken)):
        twice = sorted({known[row] for row in taken if taken.count(row) > 1})
        raise ConfigError(
            f"parent_classes: {', '.join(twice)} would continue in two of our classes; "
            "map each pre-trained class to one at most"
        )
    return rows


def keeps_head(rows: Sequence[int | None], outputs: int) -> bool:
    """Whether :func:`head_rows` over a head of ``outputs`` outputs maps every one of them
    and nothing new: the same classes, perhaps in another order or under other names."""
    return None not in rows and len(rows) == outputs


def _head(model: nn.Module) -> nn.Conv2d:
    head = getattr(getattr(model, "decoder", None), "head", None)
    if not isinstance(head, nn.Conv2d):
        raise ConfigError(f"{type(model).__name__} has no decoder.head convolution to probe")
    return head


def frozen_parts(model: nn.Module, strategy: str, last_k: int | None = None) -> list[nn.Module]:
    """The submodules that ``strategy`` freezes (checked before anything changes)."""
    if strategy == "probe":
        return _leaves_around(model, _head(model))
    if strategy == "bias":
        return [model]
    if strategy not in ("fte", "ftd"):
        return []
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no .encoder to freeze or fine-tune")
    if strategy == "fte":
        return [child for name, child in model.named_children() if name != "encoder"]
    if last_k is None:
        return [encoder]
    blocks = decoder_blocks(model)
    if not 1 <= last_k <= len(blocks):
        raise ConfigError(f"last_k must be 1..{len(blocks)} (decoder blocks), got {last_k}")
    decoder = model.get_submodule("decoder")
    others = [child for name, child in decoder.named_children() if name not in ("blocks", "head")]
    return [encoder, *blocks[: len(blocks) - last_k], *others]


def _leaves_around(model: nn.Module, keep: nn.Module) -> list[nn.Module]:
    """The largest submodules of ``model`` that do not contain ``keep`` (nor are it)."""
    if model is keep:
        return []
    if not any(module is keep for module in model.modules()):
        return [model]
    parts = [part for child in model.children() for part in _leaves_around(child, keep)]
    if any(True for _ in model.parameters(recurse=False)):
        raise ConfigError(f"{type(model).__name__} owns parameters beside its head; cannot probe")
    return parts


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer may touch (frozen ones are never handed to it)."""
    return [param for param in model.parameters() if param.requires_grad]


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts, for logs and checkpoint metadata."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "frozen": total - trainable}
