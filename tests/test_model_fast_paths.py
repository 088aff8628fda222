"""The models' fast paths (batch norm folded into the convolutions, fused ReLU, the recurrence
with its own backward, time pooling into a folded map) compute what the plain layers compute.

The reference below is the recurrent U-Net written with the plain layers, one date at a time;
the shipped checkpoint must give the same logits through both within 1e-5.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from sarcrop import pretrained
from sarcrop.models import build_model, count_flops
from sarcrop.models.recurrent_unet import CarryScan, RecurrentUNet, pool_time, pool_time_folded
from sarcrop.training import load_checkpoint


def plain(block: nn.Sequential, x: Tensor) -> Tensor:
    return nn.Sequential.forward(block, x)


def reference_logits(model: RecurrentUNet, x: Tensor) -> Tensor:
    """The recurrent U-Net with plain layers: h_t = block(x_t) + w * h_{t-1}, amax pooling."""
    h, w = x.shape[-2:]
    x = model.pad_input(x)
    batch, skips = x.shape[0], []
    for index, (level, skip) in enumerate(zip(model.encoder.levels, model.encoder.skips)):
        if index:
            x = F.max_pool2d(x.flatten(0, 1), 2).unflatten(0, (batch, -1))
        features = plain(level.block, x.flatten(0, 1)).unflatten(0, (batch, -1))
        states = [features[:, 0]]
        for t in range(1, features.shape[1]):
            states.append(features[:, t] + level.carry.view(1, -1, 1, 1) * states[-1])
        x = torch.stack(states, dim=1)
        pooled = x if x.shape[1] % 2 == 0 else torch.cat((x, x[:, -1:]), dim=1)
        pooled = pooled.unflatten(1, (-1, 2)).amax(dim=2).flatten(1, 2)
        skips.append(skip.reduce(pooled))
    *skips, y = skips
    for block, skip in zip(model.decoder.blocks, reversed(skips)):
        y = plain(block.conv, torch.cat((block.up(y), skip), dim=1))
    return model.decoder.head(y)[..., :h, :w]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_shipped_checkpoint_gives_the_reference_logits(memory_format):
    model, meta = load_checkpoint(pretrained.resolve("europe-maize"))
    model = model.eval().to(memory_format=memory_format)
    x = torch.rand(
        2, meta.time_steps, len(meta.bands), 40, 48, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        fast = model(x)
        slow = reference_logits(model, x)
    assert slow.abs().max() > 0.1  # a model that says something
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


def test_training_forward_and_gradients_match_the_reference():
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, 5, widths=(4, 8), dropout=0.0).double()
    x = torch.rand(2, 5, 2, 16, 16, dtype=torch.float64)
    model.train()
    fast = model(x)
    grads = torch.autograd.grad(fast.square().sum(), list(model.parameters()))
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, 5, widths=(4, 8), dropout=0.0).double().train()
    slow = reference_logits(model, x)
    expected = torch.autograd.grad(slow.square().sum(), list(model.parameters()))
    torch.testing.assert_close(fast, slow)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_carry_scan_gradient():
    features = torch.randn(2, 4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    carry = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(CarryScan.apply, (features, carry))


@pytest.mark.parametrize("steps", [4, 5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_time_pooling_into_a_folded_map(steps, memory_format):
    folded = torch.randn(2 * steps, 3, 6, 7).to(memory_format=memory_format)
    states = folded.unflatten(0, (2, steps))
    with torch.inference_mode():
        got = pool_time_folded(states)
    assert torch.equal(got, pool_time(states).flatten(1, 2))
    assert got.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("name", ["recurrent_unet", "utae", "unet2d"])
def test_flops_are_counted_through_the_fused_layers(name):
    model = build_model(name, 2, 4, widths=(4, 8))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.train()(torch.zeros(1, 4, 2, 16, 16))  # the plain layers
    assert count_flops(model, (1, 4, 2, 16, 16)) == counter.get_total_flops() > 0


def test_eval_mode_with_autograd_gives_gradients_through_the_folded_norm():
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 2, 4, widths=(4, 8)).eval()
    x = torch.rand(1, 4, 2, 16, 16)
    model(x).sum().backward()
    conv = model.encoder.levels[0].block[0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
