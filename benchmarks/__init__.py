"""Performance benchmarks of sarcrop: compute ceiling, models, training, data path, accuracy.

Run them all with ``python -m benchmarks.run --out runs/bench [--quick] [--accuracy]``. Each
module exposes ``run(quick: bool, ...) -> dict`` and uses the helpers below, so every number is
a median over repetitions after warm-up, taken with ``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def measure(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Wall times of ``fn()``: median, min and max seconds over ``repeats`` after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
    }


def gflops(flops: float, seconds: float) -> float:
    """Achieved GFLOP/s."""
    return flops / seconds / 1e9 if seconds > 0 else float("nan")


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages (empty where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """CPU feature flags (Linux), used to decide whether bf16 variants are worth running."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def supports_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def machine_info() -> dict[str, Any]:
    """What the numbers were taken on."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16": supports_bf16(),
        "python": platform.python_version(),
        "load_average": load_average(),
    }
