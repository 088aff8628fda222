"""Suite-wide rules.

- Every test that reads the real data (the ``shared_data`` fixture, directly or through another
  fixture) is marked ``realdata``, so ``-m "not realdata"`` leaves out all of them.
- Every test starts from the same global random state (Python's, NumPy's, PyTorch's), so its
  draws do not depend on which tests ran before it in the same worker.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(autouse=True)
def _same_random_state() -> None:
    random.seed(0)
    np.random.seed(0)  # the legacy global state, which unseeded code draws from
    torch.manual_seed(0)
