"""Point time series (tabular input) and legends: point tables (Parquet, CSV) read into dB arrays
with units decided per column, and on the WorldCereal extractions the per-pixel Random Forest on
maize vs rest (real-data tests skip without ../shared/data)."""

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


# Synthetic point tables in WorldCereal's layout, written as real files in tmp_path.

STEPS = 12


def _db_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Backscatter in dB with WorldCereal's column names (VH darker than VV), no missing cell."""
    rng = np.random.default_rng(seed)
    columns = {}
    for band, centre in (("VH", -18.0), ("VV", -11.0)):
        for t in range(STEPS):
            columns[f"SAR-{band}-ts{t}-20m"] = rng.normal(centre, 3.0, n).clip(-35, 0)
    frame = pd.DataFrame(columns)
    frame["label_full"] = rng.choice(["maize", "unspecified_sorghum"], n)
    frame["start_date"] = "2016-12-01"
    return frame


def _to_dn(frame: pd.DataFrame) -> pd.DataFrame:
    """The same table as WorldCereal's scaled uint16 (dB = 20·log10(DN) − 83)."""
    dn = frame.copy()
    for column in _sar(frame):
        dn[column] = np.round(10 ** ((frame[column] + 83) / 20)).astype(np.uint16)
    return dn


def _sar(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("SAR-")]


def _expected_db(dn: pd.DataFrame) -> np.ndarray:
    """X (n, T, 2) by hand from DN, with 0 and 65535 (and empty cells) as NaN."""
    out = np.empty((len(dn), STEPS, 2))
    for b, band in enumerate(("VH", "VV")):
        for t in range(STEPS):
            v = dn[f"SAR-{band}-ts{t}-20m"].to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(v) | (v == 0) | (v == 65535)
            out[:, t, b] = np.where(bad, np.nan, 20 * np.log10(np.where(bad, 1, v)) - 83)
    return out


def test_point_table_units_are_read_per_column(tmp_path: Path) -> None:
    dn = _to_dn(_db_frame())
    dn.loc[3, "SAR-VH-ts4-20m"] = 65535
    dn.to_parquet(tmp_path / "dn.parquet")
    expected = _expected_db(dn)
    X = read_point_timeseries(tmp_path / "dn.parquet").X
    np.testing.assert_allclose(X, expected, atol=1e-4)
    assert np.isnan(X[3, 4, 0]) and np.isnan(X).sum() == 1

    # One empty cell makes its column float (as a CSV round trip or a merge does): still DN,
    # not read as "1897 dB" beside a neighbour at -20 dB.
    holed = dn.astype({"SAR-VH-ts5-20m": "float64"})
    holed.loc[7, "SAR-VH-ts5-20m"] = np.nan
    holed.to_parquet(tmp_path / "holed.parquet")
    holed.to_csv(tmp_path / "holed.csv", index=False)
    assert pd.read_parquet(tmp_path / "holed.parquet")["SAR-VH-ts5-20m"].dtype == np.float64
    for name in ("holed.parquet", "holed.csv"):
        X = read_point_timeseries(tmp_path / name).X
        np.testing.assert_allclose(X, _expected_db(holed), atol=1e-4)
        assert np.isnan(X[7, 5, 0]) and np.nanmax(X) < 5

    # Every column float (all with a hole), dB columns, linear columns: the same dB.
    floats = dn.astype({c: "float64" for c in _sar(dn)})
    floats.loc[0, _sar(dn)] = np.nan
    floats.to_csv(tmp_path / "floats.csv", index=False)
    np.testing.assert_allclose(
        read_point_timeseries(tmp_path / "floats.csv").X, _expected_db(floats), atol=1e-4
    )
    db = dn.copy()
    linear = dn.copy()
    for b, band in enumerate(("VH", "VV")):
        for t in range(STEPS):
            db[f"SAR-{band}-ts{t}-20m"] = expected[:, t, b]
            linear[f"SAR-{band}-ts{t}-20m"] = 10 ** (expected[:, t, b] / 10)
    db.to_parquet(tmp_path / "db.parquet")
    linear.to_parquet(tmp_path / "linear.parquet")
    np.testing.assert_allclose(
        read_point_timeseries(tmp_path / "db.parquet").X, expected, atol=1e-4
    )
    np.testing.assert_allclose(
        read_point_timeseries(tmp_path / "linear.parquet").X, expected, atol=1e-4
    )

    # A column with no data at all is NaN, whatever else its band holds.
    empty = dn.copy()
    empty["SAR-VV-ts2-20m"] = 65535
    empty.to_parquet(tmp_path / "empty.parquet")
    X = read_point_timeseries(tmp_path / "empty.parquet").X
    assert np.isnan(X[:, 2, 1]).all() and np.isfinite(X[:, 3, 1]).all()


def test_point_table_refuses_columns_of_unknown_units(tmp_path: Path) -> None:
    dn = _to_dn(_db_frame())
    scaled = dn.copy()
    scaled["SAR-VV-ts6-20m"] = dn["SAR-VV-ts6-20m"] / 7.3  # DN rescaled: fits no units
    scaled.to_csv(tmp_path / "scaled.csv", index=False)
    median = np.median(dn["SAR-VV-ts6-20m"] / 7.3)
    with pytest.raises(
        InputDataError,
        match=rf"scaled\.csv: column SAR-VV-ts6-20m fits neither scaled DN, dB nor linear "
        rf"power: median {median:.4g}, 1-99 % range ",
    ):
        read_point_timeseries(tmp_path / "scaled.csv")
    # A band half in DN and half in dB was assembled wrongly: refused, not guessed.
    mixed = dn.copy()
    mixed["SAR-VH-ts9-20m"] = _db_frame()["SAR-VH-ts9-20m"]
    mixed.to_parquet(tmp_path / "mixed.parquet")
    with pytest.raises(
        InputDataError,
        match=r"mixed\.parquet: band VH mixes units: SAR-VH-ts0-20m is scaled DN, "
        r"SAR-VH-ts9-20m is dB",
    ):
        read_point_timeseries(tmp_path / "mixed.parquet")
    text = dn.copy()
    text["SAR-VH-ts1-20m"] = "n/a"
    text.to_parquet(tmp_path / "text.parquet")
    with pytest.raises(InputDataError, match=r"column SAR-VH-ts1-20m is not numeric \(e.g. 'n/a'"):
        read_point_timeseries(tmp_path / "text.parquet")


def test_point_table_missing_step_names_the_column(tmp_path: Path) -> None:
    dn = _to_dn(_db_frame())
    cases = {
        ("SAR-VH-ts5-20m",): "missing column SAR-VH-ts5-20m: every band needs steps 0..11 "
        "(found for VV)",
        ("SAR-VH-ts11-20m",): "missing column SAR-VH-ts11-20m: every band needs steps 0..11 "
        "(found for VV)",
        ("SAR-VH-ts5-20m", "SAR-VV-ts5-20m"): "missing columns SAR-VH-ts5-20m, "
        "SAR-VV-ts5-20m: every band needs steps 0..11 (ts11 is present)",
    }
    for dropped, message in cases.items():
        dn.drop(columns=list(dropped)).to_parquet(tmp_path / "gap.parquet")
        with pytest.raises(InputDataError) as info:
            read_point_timeseries(tmp_path / "gap.parquet")
        assert str(info.value) == f"{tmp_path / 'gap.parquet'}: {message}"
    # Both bands ending at ts10 is a shorter series, not an error.
    short = dn.drop(columns=["SAR-VH-ts11-20m", "SAR-VV-ts11-20m"])
    short.to_parquet(tmp_path / "short.parquet")
    X, _, times = read_point_timeseries(tmp_path / "short.parquet")
    assert X.shape == (40, 11, 2) and times[-1] == dt.date(2017, 10, 1)
    # One step twice (two resolutions): refused, not one silently taken over the other.
    dn.assign(**{"SAR-VH-ts3-10m": dn["SAR-VH-ts3-20m"]}).to_parquet(tmp_path / "twice.parquet")
    with pytest.raises(InputDataError, match="two columns for VH step 3: SAR-VH-ts3-20m and SAR"):
        read_point_timeseries(tmp_path / "twice.parquet")


def test_point_table_formats(tmp_path: Path) -> None:
    dn = _to_dn(_db_frame())
    dn.to_parquet(tmp_path / "points.parquet")
    dn.to_csv(tmp_path / "points.csv", index=False)
    dn.to_csv(tmp_path / "points.CSV.GZ", index=False)
    dn.to_csv(tmp_path / "semicolons.csv", index=False, sep=";")  # a European spreadsheet's
    X, labels, times = read_point_timeseries(tmp_path / "points.parquet")
    for name in ("points.csv", "points.CSV.GZ", "semicolons.csv"):
        other = read_point_timeseries(tmp_path / name)
        np.testing.assert_array_equal(other.X, X)
        assert list(other.labels) == list(labels) and other.times == times
    (tmp_path / "points.xlsx").write_bytes(b"PK")
    with pytest.raises(
        InputDataError, match=r"points\.xlsx: point table must be \.parquet, \.csv or \.csv\.gz$"
    ):
        read_point_timeseries(tmp_path / "points.xlsx")
    (tmp_path / "csv.parquet").write_bytes((tmp_path / "points.csv").read_bytes())
    with pytest.raises(InputDataError, match=r"csv\.parquet: cannot read point table: .*magic"):
        read_point_timeseries(tmp_path / "csv.parquet")
    with pytest.raises(InputDataError, match=r"none\.csv: point table not found"):
        read_point_timeseries(tmp_path / "none.csv")


@pytest.mark.realdata
def test_point_table_parquet_and_csv_round_trip_agree(shared_data: Path, tmp_path: Path) -> None:
    table = pd.read_parquet(_table(shared_data))
    X = read_point_timeseries(_table(shared_data)).X
    table.to_csv(tmp_path / "points.csv", index=False)
    # As exported by tools that write no data as an empty cell: every SAR column becomes float.
    sar = _sar(table)
    holed = table.astype({c: "float64" for c in sar})
    holed[sar] = holed[sar].replace(65535.0, np.nan)
    holed.to_csv(tmp_path / "holed.csv.gz", index=False)
    assert pd.read_csv(tmp_path / "holed.csv.gz")[sar].dtypes.eq(np.float64).all()
    for name in ("points.csv", "holed.csv.gz"):
        other = read_point_timeseries(tmp_path / name)
        np.testing.assert_array_equal(np.isnan(other.X), np.isnan(X))
        np.testing.assert_allclose(other.X, X, atol=1e-4)
        assert list(other.labels) == list(read_point_timeseries(_table(shared_data)).labels)
