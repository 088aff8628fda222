"""Point time series (tabular input) and legends: the WorldCereal extractions parquet read into
dB arrays, and the per-pixel Random Forest on maize vs rest (skipped without ../shared/data)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import realdata_support
from sarcrop.data.legends import (
    binary_code_map,
    is_subclass,
    read_worldcereal_legend,
    worldcereal_code_map,
)
from sarcrop.data.points import point_features, point_normalization, read_point_timeseries
from sarcrop.errors import InputDataError
from sarcrop.evaluation.baseline import RandomForestBaseline
from sarcrop.evaluation.metrics import BinaryConfusion

shared_data = realdata_support.shared_data  # the fixture (skips where the data is absent)


def _table(root: Path) -> Path:
    return root / "worldcereal-s1-point-timeseries" / "test_public_extractions.parquet"


def _legend(root: Path) -> Path:
    return root / "worldcereal-s1-croptype-patches" / "legend" / "wc2eurocrops_map.csv"


@pytest.mark.realdata
def test_point_table_reads_as_db(shared_data: Path) -> None:
    X, labels, times = read_point_timeseries(_table(shared_data), bands=("VH", "VV"))
    assert X.shape == (500, 12, 2) and X.dtype == np.float32
    assert times[0] == dt.date(2016, 12, 1) and times[-1] == dt.date(2017, 11, 1)
    assert sum(labels == "maize") == 97 and sum(labels == "unspecified_sorghum") == 305
    assert np.isnan(X).mean() == pytest.approx(0.036, abs=0.002)
    vh = np.nanpercentile(X[:, :, 0], [5, 50, 95])
    vv = np.nanpercentile(X[:, :, 1], [5, 50, 95])
    np.testing.assert_allclose(vh, [-25.9, -17.7, -13.2], atol=0.5)
    np.testing.assert_allclose(vv, [-17.1, -11.2, -7.5], atol=0.5)
    # Same values as the documented conversion done by hand on the raw column.
    raw = pd.read_parquet(_table(shared_data), columns=["SAR-VV-ts5-20m"])["SAR-VV-ts5-20m"]
    dn = raw.to_numpy().astype(np.float64)
    expected = np.where((dn == 0) | (dn == 65535), np.nan, 20 * np.log10(np.maximum(dn, 1)) - 83)
    np.testing.assert_allclose(X[:, 5, 1], expected, atol=1e-4)


@pytest.mark.realdata
def test_point_table_errors_name_the_file(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"test_public_extractions\.parquet: missing band HH"):
        read_point_timeseries(_table(shared_data), bands=("HH", "VV"))
    with pytest.raises(InputDataError, match="no label column 'crop'"):
        read_point_timeseries(_table(shared_data), label_column="crop")
    with pytest.raises(InputDataError, match=r"missing\.parquet: point table not found"):
        read_point_timeseries(tmp_path / "missing.parquet")


@pytest.mark.realdata
def test_random_forest_on_points_maize_vs_rest(shared_data: Path) -> None:
    X, labels, _ = read_point_timeseries(_table(shared_data))
    y = (labels == "maize").astype(np.int8)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:300], order[300:]
    stats = point_normalization(X[train], ("VH", "VV"))
    features = point_features(X, stats)
    assert features.shape == (500, 24) and np.isfinite(features).all()
    assert features.min() >= 0.0 and features.max() <= 1.0
    # Time-major layout: column t*B + b is step t, band b (as for image pixels).
    k = int(np.flatnonzero(np.isfinite(X[:, 3, 1]))[0])
    scaled = (X[k, 3, 1] - stats.min[1]) / (stats.max[1] - stats.min[1])
    assert features[k, 3 * 2 + 1] == pytest.approx(np.clip(scaled, 0, 1), abs=1e-6)
    model = RandomForestBaseline(
        n_estimators=100, class_weight="balanced", n_jobs=2, random_state=0
    ).fit(features[train], y[train], feature_shape=(12, 2))
    confusion = BinaryConfusion()
    confusion.update(model.predict_proba(features[test])[:, 1], y[test])
    assert confusion.tp + confusion.fn == int(y[test].sum()) > 20
    assert math.isfinite(confusion.iou) and 0.0 <= confusion.iou <= 1.0
    print(f"points RF maize vs rest: IoU {confusion.iou:.3f} F1 {confusion.f1:.3f}")


@pytest.mark.realdata
def test_worldcereal_legend_maps(shared_data: Path) -> None:
    legend = read_worldcereal_legend(_legend(shared_data))
    assert legend[1200] == "maize" and legend[9120].startswith("permanent")
    maize = worldcereal_code_map(_legend(shared_data), positive=["Maize"])
    assert {c for c, n in maize.items() if n == "maize"} == {1200}
    assert maize[1110] == "other" and maize[9120] == "other" and len(maize) == len(legend)
    wheat = worldcereal_code_map(_legend(shared_data), positive=[1100])
    assert {c for c, n in wheat.items() if n == "wheat"} == {1100, 1110, 1120}
    with pytest.raises(InputDataError, match="'maiz' is not in the legend; did you mean 'maize'"):
        worldcereal_code_map(_legend(shared_data), positive=["maiz"])
    # Names match as class names do elsewhere; a name the shell split at its space is named.
    for name in ("Winter_Cereal", "winter cereal"):
        cereal = worldcereal_code_map(_legend(shared_data), positive=[name])
        assert {c for c, n in cereal.items() if n not in ("other", "unlabelled")} == {1910}
    # "Unknown" (no crop declared) labels nothing, in a binary map or the full legend.
    unknown = {0, 991, 9700}
    assert {c for c, n in cereal.items() if n == "unlabelled"} == unknown
    assert {
        c for c, n in worldcereal_code_map(_legend(shared_data)).items() if n == "unlabelled"
    } == unknown
    with pytest.raises(
        InputDataError, match="quote a name with spaces: --positive 'winter cereal'"
    ):
        worldcereal_code_map(_legend(shared_data), positive=["winter", "cereal"])


def test_legend_errors_and_generic_binary_map(tmp_path: Path) -> None:
    bad = tmp_path / "legend.csv"
    bad.write_text("label,code\nMaize,1200\n")
    with pytest.raises(
        InputDataError, match=r"legend\.csv: legend lacks column\(s\) name, croptype"
    ):
        read_worldcereal_legend(bad)
    with pytest.raises(InputDataError, match="legend file not found"):
        read_worldcereal_legend(tmp_path / "none.csv")
    assert binary_code_map([1, 2, 3], [2], positive="rice") == {1: "other", 2: "rice", 3: "other"}
    with pytest.raises(InputDataError, match="both named"):
        binary_code_map([1], [1], positive="other")
    assert is_subclass(1110, 1100) and is_subclass(1110, 1000) and not is_subclass(1200, 1100)
    assert not is_subclass(1100, 11) and is_subclass(13, 13)
