"""Random Forest baseline on per-pixel SAR time series."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sarcrop.errors import SarcropError
from sarcrop.evaluation.baseline import (
    RandomForestBaseline,
    early_season_baseline,
    evaluate_baseline,
    fit_baseline_from_dataset,
    pixels_from_patches,
    predict_patches,
)

STEPS, SIZE = 8, 16
# VH in dB over eight 20-day steps: paddy rice is flooded (dark) early, then the canopy grows;
# the other crop and grassland stay bright all season.
RICE_VH = np.array([-23.0, -22.0, -19.0, -16.0, -14.0, -13.5, -14.0, -15.0])
OTHER_VH = np.array([-15.0, -14.5, -14.0, -13.5, -13.0, -13.5, -14.0, -14.5])


def _normalise(db):
    return np.clip((db + 25.0) / 20.0, 0.0, 1.0)


def make_patch(rng, *, bands=2, nodata=False):
    """One PatchDataset-like item: rectangular rice fields with speckle-like noise."""
    target = np.zeros((SIZE, SIZE), np.float32)
    for _ in range(3):
        r, c = rng.integers(0, SIZE - 5, size=2)
        h, w = rng.integers(3, 7, size=2)
        target[r : r + h, c : c + w] = 1
    curve = np.where(target[None].astype(bool), RICE_VH[:, None, None], OTHER_VH[:, None, None])
    image = np.stack(
        [curve + rng.normal(0, 1.0, curve.shape) + 6.0 * b for b in range(bands)], axis=1
    )
    image = _normalise(image).astype(np.float32)
    valid = np.ones((SIZE, SIZE), bool)
    valid[:2] = False  # unlabelled strip: target holds garbage there
    target[:2] = -1
    if nodata:
        image[:, :, 5:7, 5:7] = np.nan
    return {
        "image": torch.from_numpy(image),
        "target": torch.from_numpy(target),
        "valid": torch.from_numpy(valid),
        "index": 0,
    }


def make_dataset(seed, n=4, **kwargs):
    rng = np.random.default_rng(seed)
    return [make_patch(rng, **kwargs) for _ in range(n)]


@pytest.fixture(scope="module")
def fitted():
    return fit_baseline_from_dataset(make_dataset(0), early_season=False, n_estimators=30, n_jobs=2)


def test_learns_rice_from_time_series(fitted):
    confusion = evaluate_baseline(fitted, make_dataset(1))
    assert confusion.iou > 0.9
    assert confusion.total == 4 * (SIZE - 2) * SIZE  # the unlabelled strip is ignored
    assert fitted.feature_shape_ == (STEPS, 2)


def test_separable_pixels_with_array_api():
    rng = np.random.default_rng(3)
    y = (rng.random(600) > 0.7).astype(np.int8)
    X = _normalise(np.where(y[:, None] == 1, RICE_VH, OTHER_VH) + rng.normal(0, 1, (600, STEPS)))
    model = RandomForestBaseline(n_estimators=25, n_jobs=2).fit(X[:400], y[:400])
    pred = model.predict(X[400:])
    tp = np.sum((pred == 1) & (y[400:] == 1))
    iou = tp / np.sum((pred == 1) | (y[400:] == 1))
    assert iou > 0.9
    proba = model.predict_proba(X[400:])
    assert proba.shape == (200, 2) and np.allclose(proba.sum(axis=1), 1)
    assert clone(model).get_params()["n_estimators"] == 25


def test_balanced_sampling_caps_each_class():
    rng = np.random.default_rng(4)
    X = rng.random((1050, 4)).astype(np.float32)
    y = np.r_[np.zeros(1000), np.ones(50)].astype(np.int8)
    model = RandomForestBaseline(n_estimators=5, max_samples_per_class=100, n_jobs=1).fit(X, y)
    assert model.n_samples_per_class_ == {0: 100, 1: 50}


def test_dataset_sampling_is_capped_and_seeded():
    data = make_dataset(5)
    kwargs = {"max_samples_per_class": 40, "early_season": False, "n_estimators": 5}
    a = fit_baseline_from_dataset(data, n_jobs=1, **kwargs)
    b = fit_baseline_from_dataset(data, n_jobs=1, **kwargs)
    assert a.n_samples_per_class_ == {0: 40, 1: 40}
    image = make_dataset(6, n=1)[0]["image"]
    assert np.array_equal(predict_patches(a, image), predict_patches(b, image))


def test_pixels_from_patches_drops_invalid_and_nan():
    items = make_dataset(7, n=2, nodata=True)
    images = np.stack([item["image"].numpy() for item in items])
    targets = np.stack([item["target"].numpy() for item in items])
    valid = np.stack([item["valid"].numpy() for item in items])
    X, y = pixels_from_patches(images, targets, valid)
    assert X.shape == (2 * ((SIZE - 2) * SIZE - 4), STEPS * 2)
    assert np.isfinite(X).all() and set(np.unique(y)) == {0, 1}
    # time-major features: column t * B + b
    r, c = 8, 8
    first = images[0, :, :, r, c].reshape(-1)
    assert any(np.array_equal(row, first) for row in X)


def test_predict_patches_marks_nodata_and_checks_bands(fitted):
    item = make_dataset(8, n=1, nodata=True)[0]
    prob = predict_patches(fitted, item["image"])
    assert prob.shape == (SIZE, SIZE)
    assert np.isnan(prob[5:7, 5:7]).all() and np.isfinite(prob[8:]).all()
    one_band = make_dataset(8, n=1, bands=1)[0]["image"]
    with pytest.raises(SarcropError, match="fitted on 8 × 2"):
        predict_patches(fitted, one_band)


def test_early_season_keys_and_padding():
    model = fit_baseline_from_dataset(make_dataset(9), early_season=True, n_estimators=30, n_jobs=2)
    early = early_season_baseline(model, make_dataset(10, n=2))
    assert list(early) == list(range(1, STEPS + 1))
    assert early[STEPS].iou > 0.85
    assert early[STEPS] == evaluate_baseline(model, make_dataset(10, n=2), timesteps=STEPS)


def test_fitting_learns_early_season_copies_by_default_as_the_options_say():
    """The exported functions agree with ``sarcrop baseline`` and ``BaselineOptions``."""
    from sarcrop.evaluation.baseline import fit_forest
    from sarcrop.options import BaselineOptions

    data = make_dataset(11, n=2)
    pixels = 2 * ((SIZE - 2) * SIZE)  # labelled pixels of the two patches
    cap = {"max_samples_per_class": None, "n_estimators": 2, "n_jobs": 1}
    default = fit_baseline_from_dataset(data, **cap)
    assert sum(default.n_samples_per_class_.values()) == STEPS * pixels  # t = 1..T
    off = fit_baseline_from_dataset(data, early_season=False, **cap)
    assert sum(off.n_samples_per_class_.values()) == pixels
    options = BaselineOptions(n_estimators=2, max_samples_per_class=None)
    assert fit_forest(data, options, 1).n_samples_per_class_ == default.n_samples_per_class_
    options = options.updated(early_season=False)
    assert fit_forest(data, options, 1).n_samples_per_class_ == off.n_samples_per_class_


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.zeros((4, 2, 3)), np.array([0, 1, 0, 1]), "must be 2-D"),
        (np.array([[0.1, np.nan], [0.2, 0.3]]), np.array([0, 1]), "NaN"),
        (np.zeros((4, 3)), np.zeros(4), "only class 0"),
        (np.zeros((4, 3)), np.array([0, 1, 2, 1]), "must be 0 or 1"),
        (np.zeros((4, 3)), np.array([0, 1]), "4 values"),
    ],
)
def test_rejects_bad_input(X, y, message):
    with pytest.raises(SarcropError, match=message) as info:
        RandomForestBaseline(n_estimators=2, n_jobs=1).fit(X, y)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_rejects_bad_datasets(fitted):
    with pytest.raises(SarcropError, match="empty"):
        fit_baseline_from_dataset([])
    with pytest.raises(SarcropError, match="dicts with 'image'"):
        fit_baseline_from_dataset([np.zeros((8, 1, 4, 4))])
    with pytest.raises(SarcropError, match=r"images must be \(patches"):
        pixels_from_patches(np.zeros((8, 1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(SarcropError, match="5 columns but the forest was fitted on 16"):
        fitted.predict_proba(np.zeros((3, 5)))


def test_baseline_flags_are_the_experiment_yaml_keys():
    from sarcrop.cli import build_parser
    from sarcrop.experiments.config import ExperimentConfig
    from sarcrop.options import BaselineOptions, from_flags

    argv = ["baseline", "s.zarr", "--n-estimators", "7", "--no-early-season", "--max-depth", "4"]
    from_cli = from_flags(BaselineOptions, build_parser().parse_args(argv))
    section = {"n_estimators": 7, "early_season": False, "max_depth": 4}
    assert ExperimentConfig.model_fields["baseline"].annotation is BaselineOptions
    assert from_cli == BaselineOptions.model_validate(section)
    assert BaselineOptions().early_season  # the forest is scored per time step by default
