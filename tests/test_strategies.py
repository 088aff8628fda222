"""Transfer strategies: frozen parts stay fully frozen (eval mode, dropout off) and re-applying a
strategy replaces the previous freezing instead of adding to it."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from sarcrop.errors import ConfigError
from sarcrop.models import build_model
from sarcrop.training.strategies import apply_strategy, frozen_parts, pinned_modules

STEPS = 4


def dropout_model() -> nn.Module:
    """A recurrent U-Net with dropout in every encoder level, batch norm everywhere."""
    torch.manual_seed(0)
    return build_model("recurrent_unet", 1, STEPS, widths=[4, 8, 16], dropout=0.5)


class Toy(nn.Module):
    """Any module with an encoder and a decoder; here the decoder has dropout too."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout2d(0.5))
        self.decoder = nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout2d(0.5), nn.Conv2d(4, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def series(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, STEPS, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def frozen_names(model: nn.Module, prefixes: tuple[str, ...]) -> set[str]:
    return {name for name, _ in model.named_modules() if name.startswith(prefixes)}


@pytest.mark.parametrize(
    ("strategy", "last_k", "prefixes"),
    [
        ("fte", None, ("decoder",)),
        ("ftd", None, ("encoder",)),
        ("ftd", 1, ("encoder", "decoder.blocks.0")),
    ],
)
def test_train_mode_leaves_every_frozen_module_in_eval(strategy, last_k, prefixes):
    model = apply_strategy(dropout_model(), strategy, last_k).train()
    frozen = frozen_names(model, prefixes)
    assert set(pinned_modules(model)) == frozen
    for name, module in model.named_modules():
        assert module.training == (name not in frozen), name
    model.eval().train()  # the pin holds through any sequence of mode switches
    assert {name for name, module in model.named_modules() if not module.training} == frozen


def test_frozen_encoder_is_deterministic_in_train_mode():
    """FTD: the frozen encoder's dropout (p=0.5 at every level) is off and its norms use the
    stored statistics, so two train-mode passes agree with each other and with eval mode."""
    model = apply_strategy(dropout_model(), "ftd").train()
    x = series()
    with torch.no_grad():
        first, second = model.encoder(x), model.encoder(x)
        model.eval()
        reference = model.encoder(x)
    for a, b, c in zip(first, second, reference):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_frozen_decoder_is_deterministic_in_train_mode():
    """FTE: the frozen decoder normalises with its stored statistics in train mode."""
    model = apply_strategy(dropout_model(), "fte")
    x = series()
    with torch.no_grad():
        features = model.eval().encoder(x)
        reference = model.decoder(features)
        model.train()
        first, second = model.decoder(features), model.decoder(features)
    assert torch.equal(first, second) and torch.equal(first, reference)
    assert model.encoder.training  # the trainable part follows model.train() as usual


def test_fte_on_any_module_turns_off_the_frozen_dropout():
    model = apply_strategy(Toy(), "fte").train()
    assert not any(module.training for module in model.decoder.modules())
    assert all(module.training for module in model.encoder.modules())
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        features = model.encoder(x)
        assert not torch.equal(features, model.encoder(x))  # trainable dropout still draws
        assert torch.equal(model.decoder(features), model.decoder(features))


@pytest.mark.parametrize("first", ["ft", "fte", "ftd"])
def test_reapplying_replaces_the_previous_pinning(first):
    model = apply_strategy(dropout_model(), first)
    apply_strategy(model, "fte")
    apply_strategy(model, "fte")
    decoder = frozen_names(model, ("decoder",))
    pinned = pinned_modules(model)
    assert set(pinned) == decoder and len(pinned) == len(decoder)  # one pin per frozen module
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    model.train()
    assert all(m.training for m in model.encoder.modules())


def test_ft_after_fte_unfreezes_everything():
    model = apply_strategy(dropout_model(), "fte").train()
    apply_strategy(model, "ft")
    assert pinned_modules(model) == []
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())  # back in the model's (train) mode
    model.eval().train()
    assert all(m.training for m in model.modules())


def test_bad_last_k_changes_nothing():
    model = apply_strategy(dropout_model(), "fte")
    before = pinned_modules(model)
    with pytest.raises(ConfigError, match=r"last_k must be 1\.\.2"):
        apply_strategy(model, "ftd", last_k=5)
    assert pinned_modules(model) == before
    assert frozen_parts(model, "fte") == [model.decoder]


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copies_keep_their_own_pinning(clone):
    original = apply_strategy(dropout_model(), "ftd").eval()
    twin = clone(original).train()
    assert not any(m.training for m in twin.encoder.modules())
    assert all(m.training for m in twin.decoder.modules())
    assert not any(m.training for m in original.modules())  # the original is untouched
    assert set(pinned_modules(twin)) == set(pinned_modules(original))
