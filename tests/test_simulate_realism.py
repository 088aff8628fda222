"""Realism options of the simulator and the ``europe`` pre-training preset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from sarcrop.cli import main
from sarcrop.data.simulate import effects, get_region, simulate_region
from sarcrop.data.simulate.effects import Realism
from sarcrop.data.simulate.regions import REGIONS, randomised
from sarcrop.errors import SarcropError
from sarcrop.evaluation.realism import load_scene, measure

CROPS = ("maize", "wheat", "potato", "grassland")


@pytest.fixture(scope="module")
def europe(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("europe")
    return simulate_region("europe", out, seed=0, size=(160, 160))


def _read(result) -> np.ndarray:
    arrays = [rasterio.open(p).read().astype(np.float32) for p in [*result.scenes, result.labels]]
    return np.concatenate(arrays)


def test_options_explicitly_off_reproduce_the_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"seed": 4, "size": (120, 300), "revisit_days": 40, "block_size": 256}
    before = simulate_region("netherlands", tmp_path / "a", **kw)
    off = Realism(
        speckle_sigma_px=0.0,
        enl=None,
        texture_sigma_px=0.0,
        psf_sigma_px=0.0,
        fluctuation_db=0.0,
        mowing=(0, 0),
        level_db=(),
    )
    preset = dataclasses.replace(
        get_region("netherlands"), realism=off, extra_orbits=(), randomisation=None
    )
    monkeypatch.setitem(REGIONS, "netherlands", preset)
    after = simulate_region("netherlands", tmp_path / "b", **kw)
    np.testing.assert_array_equal(_read(before), _read(after))
    meta = json.loads(after.metadata.read_text())
    assert not {"realism", "extra_orbits", "randomisation"} & set(meta["preset"])


def test_gamma_speckle_keeps_the_looks_and_correlation_shows() -> None:
    rng = np.random.default_rng(0)
    normal = effects.smooth(rng.standard_normal((400, 400)).astype(np.float32), 0.6)
    assert abs(normal.std() - 1.0) < 0.03  # variance restored after smoothing
    speckle = effects.gamma_speckle(normal, 5.0)
    assert abs(speckle.mean() - 1.0) < 0.02 and abs(speckle.var() - 1 / 5.0) < 0.01
    lag1 = np.corrcoef(speckle[:, :-1].ravel(), speckle[:, 1:].ravel())[0, 1]
    assert 0.35 < lag1 < 0.7
    white = effects.gamma_speckle(rng.standard_normal((400, 400)), 5.0)
    assert abs(np.corrcoef(white[:, :-1].ravel(), white[:, 1:].ravel())[0, 1]) < 0.03


@pytest.mark.parametrize("factor", [2, 3])
def test_coarse_product_is_rasterio_bilinear_of_cell_means_and_block_independent(
    factor: int,
) -> None:
    rng = np.random.default_rng(factor)
    area = (37, 50)  # not multiples of the cell: partial cells at the far edges
    power = rng.uniform(0.5, 2.0, (2, *area)).astype(np.float32)
    speckle = rng.uniform(0.5, 1.5, (2, *area)).astype(np.float32)
    out = effects.coarse_product(power, speckle, factor, (0, 0), area)
    # The product: mean power of each full cell times the speckle at its first pixel ...
    h, w = area[0] // factor, area[1] // factor
    blocks = power[:, : h * factor, : w * factor].reshape(2, h, factor, w, factor)
    cells = blocks.mean(axis=(2, 4)) * speckle[:, : h * factor : factor, : w * factor : factor]
    # ... read onto the fine grid by rasterio's bilinear resampling, away from the edges.
    fine = np.zeros((2, h * factor, w * factor))
    for band in range(2):
        reproject(
            cells[band].astype(np.float64),
            fine[band],
            src_transform=from_origin(500_000, 5_000_000, 10.0 * factor, 10.0 * factor),
            dst_transform=from_origin(500_000, 5_000_000, 10.0, 10.0),
            src_crs="EPSG:32631",
            dst_crs="EPSG:32631",
            resampling=Resampling.bilinear,
        )
    inner = (slice(None), slice(factor, -factor), slice(factor, -factor))
    np.testing.assert_allclose(out[:, : h * factor, : w * factor][inner], fine[inner], rtol=1e-5)
    # A block computed with its halo gives the same pixels, edge blocks included.
    halo = 2 * factor
    for row, col, height, width in ((9, 13, 15, 20), (area[0] - 10, area[1] - 9, 10, 9)):
        r0, c0 = max(row - halo, 0), max(col - halo, 0)
        window = (slice(None), slice(r0, row + height + halo), slice(c0, col + width + halo))
        block = effects.coarse_product(power[window], speckle[window], factor, (r0, c0), area)
        kept = block[:, row - r0 : row - r0 + height, col - c0 : col - c0 + width]
        np.testing.assert_array_equal(kept, out[:, row : row + height, col : col + width])


def test_mowing_cuts_then_regrows() -> None:
    days = np.arange(100.0, 300.0)
    cuts = effects.cut_days(np.random.default_rng(1), (3, 5))
    assert 3 <= len(cuts) <= 5 and 128 <= cuts[0] <= 165 and np.all(np.diff(cuts) >= 28)
    change = effects.mowing_db(days, cuts, (3.0, 1.5), 25.0)
    first = int(np.ceil(cuts[0])) - 100
    assert change[:first].max() == 0.0  # untouched before the first cut
    assert change[first, 0] < -2.5 and change[first, 1] < -1.2  # sharp drop at the cut
    assert change[first + 26, 0] > change[first, 0]  # regrowth


def test_europe_matches_real_speckle_texture_and_mowing(europe, tmp_path: Path) -> None:
    meta = json.loads(europe.metadata.read_text())
    assert meta["positive"] == "maize" and meta["preset"]["realism"]["mowing"] == [3, 5]
    assert {a["relative_orbit"] for a in meta["acquisitions"]} == {88, 161}  # two orbits
    scene = load_scene(europe.root / "scenes", europe.labels, europe.season)
    stats = measure(scene, CROPS)
    base = simulate_region("netherlands", tmp_path, seed=0, size=(160, 160), revisit_days=6)
    plain = measure(load_scene(base.root / "scenes", base.labels, base.season), CROPS)
    for crop in ("maize", "grassland"):
        for band in ("VH", "VV"):
            # Real Flanders: speckle 0.30-0.62, texture 0.37-0.87 (benchmarks/realism.py).
            assert 0.3 < stats[(f"{band} speckle spatial AC", crop)].estimate() < 0.62
            assert 0.45 < stats[(f"{band} texture spatial AC", crop)].estimate() < 0.87
            assert abs(plain[(f"{band} speckle spatial AC", crop)].estimate()) < 0.05
    mown = stats[("VH sharp changes per season", "grassland")].estimate()
    assert mown > 2.5 > plain[("VH sharp changes per season", "grassland")].estimate()
    vh_vv = stats[("VH-VV temporal correlation", "grassland")].estimate()
    assert vh_vv > plain[("VH-VV temporal correlation", "grassland")].estimate() + 0.1


def test_europe_is_block_size_independent_and_varies_per_seed(tmp_path: Path) -> None:
    kw = {"size": (300, 530), "revisit_days": 40}
    a = simulate_region("europe", tmp_path / "a", seed=2, block_size=256, **kw)
    b = simulate_region("europe", tmp_path / "b", seed=2, block_size=512, **kw)
    np.testing.assert_array_equal(_read(a), _read(b))
    preset = get_region("europe")
    drawn = [randomised(preset, seed, 2019) for seed in range(4)]
    assert randomised(preset, 1, 2019) == drawn[1]  # a pure function of (seed, year)
    assert len({d.crops["maize"][0].sowing_doy for d in drawn}) > 1
    assert len({d.block_px for d in drawn}) == 4
    for d in drawn:
        assert abs(d.crops["maize"][0].sowing_doy - 122) <= 15
        assert d.crops["grassland"] == preset.crops["grassland"]  # perennials keep 1 January


def test_without_randomisation_a_preset_is_simulated_at_its_centre(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"seed": 2, "size": (64, 96), "revisit_days": 40}
    drawn = simulate_region("europe", tmp_path / "drawn", **kw)
    centre = simulate_region("europe", tmp_path / "centre", randomise=False, **kw)
    meta = json.loads(centre.metadata.read_text())["preset"]
    assert "randomisation" not in meta and meta["block_px"] == get_region("europe").block_px
    assert "randomisation" in json.loads(drawn.metadata.read_text())["preset"]
    assert not np.array_equal(_read(drawn), _read(centre))
    # The centre is the preset as written, without a draw; presets without draws are unmoved.
    plain = dataclasses.replace(get_region("europe"), randomisation=None)
    monkeypatch.setitem(REGIONS, "europe", plain)
    np.testing.assert_array_equal(
        _read(centre), _read(simulate_region("europe", tmp_path / "plain", **kw))
    )
    a = simulate_region("netherlands", tmp_path / "a", **kw)
    b = simulate_region("netherlands", tmp_path / "b", randomise=False, **kw)
    np.testing.assert_array_equal(_read(a), _read(b))


def test_a_coarser_product_is_block_independent_smooth_and_recorded(tmp_path: Path) -> None:
    kw = {"seed": 3, "size": (150, 300), "revisit_days": 30, "product_resolution": 20.0}
    a = simulate_region("europe", tmp_path / "a", block_size=256, **kw)
    b = simulate_region("europe", tmp_path / "b", block_size=512, **kw)
    np.testing.assert_array_equal(_read(a), _read(b))
    assert json.loads(a.metadata.read_text())["preset"]["realism"]["product_px"] == 2
    native = simulate_region("europe", tmp_path / "c", **{**kw, "product_resolution": None})
    product = measure(load_scene(a.root / "scenes", a.labels, a.season), CROPS)
    plain = measure(load_scene(native.root / "scenes", native.labels, native.season), CROPS)
    for band in ("VH", "VV"):
        # Real Flanders read onto 10 m (bilinear): speckle 0.82-0.92 (benchmarks/realism.py).
        speckle = product[(f"{band} speckle spatial AC", "maize")].estimate()
        assert speckle > 0.8
        assert speckle > plain[(f"{band} speckle spatial AC", "maize")].estimate()
        std = product[(f"{band} speckle std dB", "maize")].estimate()
        assert std < plain[(f"{band} speckle std dB", "maize")].estimate()
    with pytest.raises(SarcropError, match="multiple of 10 m, got 15"):
        simulate_region("europe", tmp_path / "d", size=(8, 8), product_resolution=15.0)


def test_europe_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eu"
    args = ["simulate", "europe", "--out", str(out), "--size", "48", "64", "--quiet"]
    assert main([*args, "--revisit-days", "30"]) == 0
    assert "positive class 'maize'" in capsys.readouterr().out
    meta = json.loads((out / "region.json").read_text())
    assert meta["region"] == "europe" and len(meta["acquisitions"]) >= 8
    coarse = tmp_path / "coarse"
    args = ["simulate", "europe", "--out", str(coarse), "--size", "48", "64", "--quiet"]
    assert main([*args, "--revisit-days", "30", "--product-resolution", "20"]) == 0
    assert json.loads((coarse / "region.json").read_text())["preset"]["realism"]["product_px"] == 2
    centre = tmp_path / "centre"
    args = ["simulate", "europe", "--out", str(centre), "--size", "48", "64", "--quiet"]
    assert main([*args, "--revisit-days", "30", "--no-randomise"]) == 0
    assert "randomisation" not in json.loads((centre / "region.json").read_text())["preset"]
