"""The machine's compute ceiling: a large fp32 conv2d and a 2048² fp32 matmul.

FLOPs are counted analytically (a multiply-add = 2 FLOPs, as ``count_flops`` does), so the
GFLOP/s of the models can be read as a fraction of what this PyTorch build reaches on the same
cores for the operator that dominates them (3x3 convolutions).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from benchmarks import gflops, measure


def conv2d_flops(batch: int, c_in: int, c_out: int, kernel: int, height: int, width: int) -> int:
    """FLOPs of a stride-1 'same' convolution (no bias)."""
    return 2 * batch * c_out * height * width * c_in * kernel * kernel


def conv2d_ceiling(
    batch: int = 8, channels: int = 64, size: int = 128, repeats: int = 7
) -> dict[str, Any]:
    """GFLOP/s of a 3x3 conv (``channels`` → ``channels``) in both memory formats; best kept."""
    flops = conv2d_flops(batch, channels, channels, 3, size, size)
    weight = torch.randn(channels, channels, 3, 3)
    x = torch.randn(batch, channels, size, size)
    formats: dict[str, Any] = {}
    with torch.inference_mode():
        for name, fmt in (
            ("contiguous", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            xi, wi = x.to(memory_format=fmt), weight.to(memory_format=fmt)
            timing = measure(lambda xi=xi, wi=wi: F.conv2d(xi, wi, padding=1), repeats, warmup=2)
            formats[name] = {**timing, "gflops": gflops(flops, timing["median_s"])}
    best = max(formats, key=lambda k: formats[k]["gflops"])
    return {
        "shape": f"{batch}x{channels}x{size}x{size}, 3x3, {channels}->{channels}",
        "flops": flops,
        "formats": formats,
        "best_format": best,
        "gflops": formats[best]["gflops"],
    }


def matmul_ceiling(n: int = 2048, repeats: int = 7) -> dict[str, Any]:
    """GFLOP/s of an ``n × n`` fp32 matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    flops = 2 * n**3
    with torch.inference_mode():
        timing = measure(lambda: a @ b, repeats, warmup=2)
    return {
        "shape": f"{n}x{n}",
        "flops": flops,
        **timing,
        "gflops": gflops(flops, timing["median_s"]),
    }


def run(quick: bool = False) -> dict[str, Any]:
    if quick:
        conv, matmul = conv2d_ceiling(batch=2, size=64, repeats=3), matmul_ceiling(1024, 3)
    else:
        conv, matmul = conv2d_ceiling(), matmul_ceiling()
    return {"threads": torch.get_num_threads(), "conv2d": conv, "matmul": matmul}
