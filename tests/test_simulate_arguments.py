"""`sarcrop simulate` and `simulate_region` refuse arguments they cannot simulate, in one line,
before writing anything; `--plot` draws the region simulated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import faults_support as fs
import sarcrop.data.simulate as simulate
from sarcrop.cli import main
from sarcrop.data.simulate import VARIETIES, class_signatures, get_region, simulate_region
from sarcrop.errors import ConfigError, SarcropError
from sarcrop.experiments.config import SimulationSpec

SMALL = ["--size", "16", "16", "--quiet"]


def test_a_revisit_leaving_no_acquisition_in_the_season_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "z0"
    argv = ["simulate", "spain", "--out", out, "--revisit-days", "400", "--seed", "1", *SMALL]
    code, err = fs.run_cli(argv, capsys)
    line = fs.assert_clean_error(code, err, out, "revisit of 400 days", "no acquisition")
    assert "at most 160" in line  # the setting to change, and to what
    assert not out.exists()
    for revisit in (10**30, 2**63 - 1):  # beyond any draw of the first pass, or at its edge
        with pytest.raises(ConfigError, match="no acquisition in the 160-day season"):
            simulate_region("spain", tmp_path / "z1", size=(8, 8), revisit_days=revisit, seed=1)
    assert not (tmp_path / "z1").exists()
    # A revisit longer than the season whose first pass falls in it still simulates that pass.
    one = simulate_region("spain", tmp_path / "one", size=(8, 8), revisit_days=400, seed=0)
    assert len(one.scenes) == 1 and one.scenes[0].exists()
    full = simulate_region("spain", tmp_path / "full", size=(8, 8), revisit_days=160, seed=1)
    assert len(full.scenes) == 1  # a revisit of the season's length always gives one


@pytest.mark.parametrize(
    ("region", "option", "value", "named"),
    [
        ("europe", "--seed", "-1", "seed must be >= 0, got -1"),
        ("spain", "--seed", "-3", "seed must be >= 0, got -3"),
        ("europe", "--product-resolution", "nan", "got nan"),
        ("europe", "--product-resolution", "inf", "got inf"),
        ("spain", "--year", "0", "year must be between 1 and 9999, got 0"),
        ("spain", "--year", "99999", "got 99999"),
        ("europe", "--year", "-5", "got -5"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    region: str,
    option: str,
    value: str,
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    code, err = fs.run_cli(["simulate", region, "--out", out, option, value, *SMALL], capsys)
    fs.assert_clean_error(code, err, out, named)
    assert not out.exists()


def test_the_api_refuses_the_same_arguments(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = [
        ({"seed": -1}, "seed must be >= 0"),
        ({"product_resolution": float("nan")}, "multiple of 10 m, got nan"),
        ({"product_resolution": float("inf")}, "multiple of 10 m, got inf"),
        ({"product_resolution": float("-inf")}, "multiple of 10 m, got -inf"),
        ({"year": 0}, "between 1 and 9999"),
        ({"year": 10_000}, "between 1 and 9999"),
    ]
    for kwargs, message in bad:
        with pytest.raises(SarcropError, match=message):
            simulate_region("europe", out, size=(8, 8), **kwargs)  # type: ignore[arg-type]
    assert not out.exists()
    # The calendar's first and last years simulate.
    for year in (1, 9999):
        assert simulate_region("spain", tmp_path / str(year), size=(8, 8), year=year).scenes


def test_a_config_refuses_what_the_simulator_refuses() -> None:
    for bad in ({"seed": -1}, {"year": 0}, {"year": 10_000}, {"product_resolution": "inf"}):
        with pytest.raises(ValidationError):
            SimulationSpec(preset="europe", **bad)  # type: ignore[arg-type]
    spec = SimulationSpec(preset="europe", seed=0, year=9999, product_resolution=20)
    assert spec.seed == 0 and spec.year == 9999


def test_signatures_of_a_seed_are_the_draw_simulated(tmp_path: Path) -> None:
    result = simulate_region("europe", tmp_path / "eu", seed=3, size=(8, 8), revisit_days=40)
    drawn = json.loads(result.metadata.read_text())["preset"]
    (maize,) = drawn["crops"]["maize"]
    level = drawn["realism"]["level_db"]["maize"]
    days, curves = class_signatures("europe", result.year, seed=3)
    _, centre = class_signatures("europe", result.year)
    spec = VARIETIES[maize["variety"]]
    shift, moisture = (
        json.loads(result.metadata.read_text())[k]
        for k in ("calendar_shift_days", "moisture_offset_db")
    )
    expected = np.stack(
        [
            spec.curve(days - (maize["sowing_doy"] + shift), band)
            + spec.moisture * moisture
            + level
            for band in ("VH", "VV")
        ]
    ).astype(np.float32)
    np.testing.assert_allclose(curves["maize"], expected, atol=1e-5)
    assert maize["sowing_doy"] != get_region("europe").crops["maize"][0].sowing_doy
    assert not np.allclose(curves["maize"], centre["maize"])
    # Presets without a draw are unmoved by a seed.
    _, spain = class_signatures("spain", seed=3)
    _, spain_centre = class_signatures("spain")
    for name, curve in spain.items():
        np.testing.assert_array_equal(curve, spain_centre[name])
    with pytest.raises(SarcropError, match="seed must be >= 0"):
        class_signatures("europe", seed=-1)


def test_plot_draws_the_seed_simulated_or_the_centre(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int | None] = []

    def plot(region, out, year=None, bands=simulate.BANDS, *, seed=None):
        seen.append(seed)
        return Path(out)

    monkeypatch.setattr(simulate, "plot_signatures", plot)
    args = ["simulate", "europe", "--size", "8", "8", "--revisit-days", "40", "--quiet"]
    args += ["--seed", "3", "--plot"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--no-randomise"]) == 0
    assert seen == [3, None]


def test_plot_of_a_seed_is_written(tmp_path: Path) -> None:
    png = simulate.plot_signatures("europe", tmp_path / "sig.png", 2019, seed=3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
