"""Model cost: parameter count and FLOPs of one forward pass."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on a zero input of ``input_shape``.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode`, which counts a multiply-add
    as 2 FLOPs and only counts matmul/convolution-like operators (not norms or activations).
    """
    parameter = next(model.parameters())
    x = torch.zeros(tuple(input_shape), device=parameter.device, dtype=parameter.dtype)
    counter = FlopCounterMode(display=False)
    training = model.training
    model.eval()  # no running-statistics updates from the zero input
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(training)
    return int(counter.get_total_flops())


def time_forward(model: nn.Module, input_shape: Sequence[int], repeats: int = 3) -> float:
    """Best wall time in seconds of an inference forward pass (after one warm-up).

    The minimum over repeats is the least disturbed by other processes on a shared machine.
    """
    parameter = next(model.parameters())
    x = torch.rand(tuple(input_shape), device=parameter.device, dtype=parameter.dtype)
    training = model.training
    model.eval()
    best = math.inf
    try:
        with torch.inference_mode():
            model(x)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                best = min(best, time.perf_counter() - start)
    finally:
        model.train(training)
    return best
