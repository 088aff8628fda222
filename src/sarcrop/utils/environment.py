"""The software and processor a result was computed with.

Trained weights depend on the floating-point kernels PyTorch picks for the processor (oneDNN
chooses them by instruction set), so the same run trains slightly different networks on
different machines (docs/results.md, "The same run on another CPU"). Records of runs therefore
say which versions and which processor made them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
"""Environment variables that change the kernels PyTorch uses; recorded where set."""


def environment() -> dict[str, str]:
    """Versions of Python, PyTorch, NumPy and scikit-learn, the processor, the CPU kernels and
    threads PyTorch uses (and the GPU where one is used)."""
    import numpy
    import sklearn
    import torch

    record = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "processor": _processor(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "threads": str(torch.get_num_threads()),
    }
    record.update({name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ})
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(0)
    return record


def _processor() -> str:
    """The processor's model name (Linux), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
