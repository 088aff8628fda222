"""Compositing's in-place helpers give bit for bit the values of the plain formulas."""

from __future__ import annotations

import numpy as np
import pytest

from sarcrop.data.composite import _db_to_linear, _linear_to_db, _nanmean
from sarcrop.data.units import db_to_linear, linear_to_db


@pytest.fixture
def db() -> np.ndarray:
    rng = np.random.default_rng(0)
    values = rng.normal(-15, 6, (3, 2, 67, 53)).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = np.nan
    values[:, :, 0, 0] = np.nan  # a pixel without any value
    return values


@pytest.mark.parametrize("owned", [True, False])
def test_db_to_linear_is_bit_identical(db, owned):
    expected = db_to_linear(db)
    given = db.copy()
    got = _db_to_linear(given, owned)
    assert np.array_equal(got, expected, equal_nan=True)
    assert owned or np.array_equal(given, db, equal_nan=True)  # not owned: left alone


def test_linear_to_db_is_bit_identical(db):
    power = db_to_linear(db)
    power[0, 0, 1, :5] = 0  # no valid dB value
    power[0, 0, 2, :5] = -1e-3  # noise-removal undershoot
    assert np.array_equal(_linear_to_db(power), linear_to_db(power), equal_nan=True)


@pytest.mark.parametrize("owned", [True, False])
def test_nanmean_is_the_float64_sum_over_the_count(db, owned):
    power = db_to_linear(db)
    valid = np.isfinite(power)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(valid, power, 0).sum(axis=0, dtype=np.float64)
        expected = (total / valid.sum(axis=0)).astype(np.float32)
    mean, count = _nanmean(power.copy(), owned)
    assert np.array_equal(mean, expected, equal_nan=True)
    assert np.array_equal(count, valid.sum(axis=0)) and np.isnan(mean[:, 0, 0]).all()
