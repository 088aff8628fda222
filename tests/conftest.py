"""Suite-wide rules.

- Every test that reads the real data (the ``shared_data`` fixture, directly or through another
  fixture) is marked ``realdata``, so ``-m "not realdata"`` leaves out all of them.
- Every test starts from the same global random state (Python's, NumPy's, PyTorch's), so its
  draws do not depend on which tests ran before it in the same worker.
- Parallel test workers share the cores: each one's PyTorch (and the processes it starts) gets
  its share of threads, not all of them, since threads that outnumber the cores wait on each
  other far longer than they compute.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(autouse=True)
def _same_random_state() -> None:
    random.seed(0)
    np.random.seed(0)  # the legacy global state, which unseeded code draws from
    torch.manual_seed(0)
