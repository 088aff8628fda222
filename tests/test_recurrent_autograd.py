"""The recurrent U-Net's training-time operators with their own backward (time pooling, the
recurrence with the channel dropout folded in) and its inference spatial pooling compute what
the plain operators compute, gradients included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sarcrop.models.recurrent_unet import (
    CarryScan,
    RecurrentLevel,
    TimePool,
    pool_space,
    pool_time,
)


def test_time_pool_gradient():
    states = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(TimePool.apply, (states,))


@pytest.mark.parametrize("steps", [4, 5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_time_pool_splits_ties_like_amax(steps, memory_format):
    # relu makes equal dates common (both zero); amax gives each half of the gradient
    folded = torch.randn(2 * steps, 3, 6, 7).relu().to(memory_format=memory_format)
    states = folded.unflatten(0, (2, steps)).requires_grad_()
    grad = torch.randn(2, (steps + 1) // 2 * 3, 6, 7)
    got = TimePool.apply(states)
    (got_grad,) = torch.autograd.grad(got, states, grad)
    want = pool_time(states).flatten(1, 2)
    (want_grad,) = torch.autograd.grad(want, states, grad)
    assert torch.equal(got, want)
    assert (states[:, 0] == states[:, 1]).any()  # ties present
    assert torch.equal(got_grad, want_grad)
    assert got.is_contiguous(memory_format=memory_format)


def test_carry_scan_gradient_with_dropout_scale():
    features = torch.randn(2, 4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    carry = torch.rand(3, dtype=torch.float64, requires_grad=True)
    scale = (torch.rand(2, 4, 3, 1, 1) < 0.7).double() / 0.7

    def scan(f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return CarryScan.apply(f, w, scale)

    assert torch.autograd.gradcheck(scan, (features, carry))


def test_recurrent_level_draws_the_channel_dropout_of_dropout2d():
    torch.manual_seed(0)
    level = RecurrentLevel(2, 4, "batch", dropout=0.5).train()
    x = torch.rand(2, 3, 2, 8, 8)
    torch.manual_seed(1)
    got = level(x)
    torch.manual_seed(1)
    features = nn.Sequential.forward(level.block, x.flatten(0, 1)).unflatten(0, (2, 3))
    states = [features[:, 0]]
    for t in range(1, 3):
        states.append(features[:, t] + level.carry.view(1, -1, 1, 1) * states[-1])
    want = torch.stack(states, dim=1)
    assert (features == 0).flatten(3).all(-1).any()  # some channels dropped
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_spatial_pooling_without_autograd_is_max_pool2d(size, memory_format):
    x = torch.randn(3, 4, *size).to(memory_format=memory_format)
    with torch.inference_mode():
        got = pool_space(x)
    assert torch.equal(got, F.max_pool2d(x, 2))
    assert got.is_contiguous(memory_format=memory_format)
