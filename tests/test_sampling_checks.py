"""`sample` and `assess` refuse what would give wrong numbers or lose labels, in one line.

Each test here stands for a way the commands once went wrong without a word: a design read as
another, labels joined to the points of another draw, hectares of a CRS whose pixels are not of
equal area, a labelled file replaced, options silently ignored.
"""

from __future__ import annotations

import numpy as np
import pytest

from sarcrop.errors import InputDataError
from sarcrop.evaluation import olofsson_estimates, stehman_estimates


def test_the_estimators_refuse_a_stratum_of_pixels_without_a_point() -> None:
    """Its pixels were in no estimate: the areas summed to 0.9 of the map."""
    with pytest.raises(InputDataError, match=r"strata 1 \(100 px\) have no sample point"):
        olofsson_estimates(np.array([[8, 2], [0, 0]]), [900, 100])
    with pytest.raises(InputDataError, match=r"strata 1 \(100 px\) have no sample point"):
        stehman_estimates([0] * 10, [0] * 10, [0] * 8 + [1] * 2, {0: 900, 1: 100})
    # A reference class that no pixel is mapped as is no stratum: it needs no point.
    e = olofsson_estimates(np.array([[8, 2], [0, 0]]), [900, 0])
    assert sum(a.value for a in e.area) == pytest.approx(1)
