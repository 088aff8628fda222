"""The Sentinel-1 simulator: file contract, physical plausibility, determinism, streaming."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio import features

from sarcrop.cli import main
from sarcrop.data.simulate import (
    CLASSES,
    class_signatures,
    get_region,
    plot_signatures,
    simulate_region,
    year_effects,
)
from sarcrop.errors import SarcropError

NAME = re.compile(r"^S1[AB]_IW_GRDH_(\d{8}T\d{6})_(ASC|DSC)_(\w+)\.tif$")


@pytest.fixture(scope="module")
def spain(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("spain")
    return simulate_region("spain", out, seed=3, size=(200, 300), revisit_days=12)


def _scene_stack(result, band: int) -> np.ndarray:
    return np.stack(
        [rasterio.open(p).read(band, masked=True).filled(np.nan) for p in result.scenes]
    )


def test_scenes_follow_the_documented_contract(spain) -> None:
    meta = json.loads(spain.metadata.read_text())
    files = sorted((spain.root / "scenes").iterdir())
    assert [f.name for f in files] == sorted(p.name for p in spain.scenes)
    assert len(files) == len(meta["acquisitions"]) >= 10
    season = spain.season
    times = []
    for path in files:
        match = NAME.match(path.name)
        assert match and match.group(3) == "spain" and match.group(2) == "ASC"
        with rasterio.open(path) as ds:
            assert ds.count == 2 and ds.dtypes == ("float32", "float32")
            assert ds.descriptions == ("VH", "VV")
            assert ds.crs.to_epsg() == 32630 and ds.res == (10.0, 10.0)
            assert (ds.height, ds.width) == (200, 300)
            assert ds.nodata == -9999.0
            assert ds.block_shapes[0] == (256, 256) and ds.compression is not None
            tags = ds.tags()
            when = dt.datetime.fromisoformat(tags["ACQUISITION_TIME"])
            assert when.strftime("%Y%m%dT%H%M%S") == match.group(1)
            assert tags["ORBIT_DIRECTION"] == "ASCENDING" and tags["UNITS"] == "dB"
            assert tags["POLARISATIONS"] == "VH,VV" and int(tags["RELATIVE_ORBIT"]) > 0
            assert tags["PLATFORM"].startswith("SENTINEL-1")
            data = ds.read(masked=True)
            assert 0 < data.mask.mean() < 0.1  # a slanted swath edge, not more
            assert data.min() > -45 and data.max() < 15
        times.append(when)
        assert season.start <= when.date() < season.end
    gaps = {round((b - a).total_seconds() / 86400) for a, b in itertools.pairwise(times)}
    assert gaps <= {12, 24, 36}  # revisit, or a missed acquisition
    assert meta["season"] == {"start": "2021-04-20", "steps": 8, "days": 20}
    assert meta["positive"] == "rice" and meta["classes"] == list(CLASSES)
    assert meta["seed"] == 3 and meta["year"] == 2021


def test_labels_and_parcels_agree(spain) -> None:
    with rasterio.open(spain.labels) as ds:
        labels = ds.read(1)
        tags = ds.tags()
        assert ds.nodata == 255 and ds.crs.to_epsg() == 32630
        transform, shape = ds.transform, ds.shape
    assert json.loads(tags["CLASSES"]) == list(CLASSES)
    assert tags["CLASS_0"] == "rice" and tags["CLASS_8"] == "urban"
    parcels = gpd.read_file(spain.parcels)
    assert parcels.crs.to_epsg() == 32630
    assert {"parcel_id", "crop", "geometry"} <= set(parcels.columns)
    assert parcels["parcel_id"].is_unique and len(parcels) == spain.n_parcels
    ha = parcels.area / 1e4
    fields = parcels[parcels["crop"].isin(["rice", "maize", "wheat", "potato", "barley"])]
    assert 0.8 < np.median(fields.area / 1e4) < 10 and ha.max() < 40
    index = {name: i for i, name in enumerate(CLASSES)}
    burned = features.rasterize(
        zip(parcels.geometry, parcels["crop"].map(index), strict=True),
        out_shape=shape,
        transform=transform,
        fill=255,
        dtype="uint8",
    )
    # Parcels never overlap and roads are gaps, so burn order cannot matter: exact equality.
    np.testing.assert_array_equal(burned, labels)
    assert 0.8 < (labels != 255).mean() < 0.99  # roads are unlabelled
    assert (labels == index["rice"]).mean() > 0.3


def test_physically_plausible_levels(spain) -> None:
    labels = rasterio.open(spain.labels).read(1)
    vh, vv = _scene_stack(spain, 1), _scene_stack(spain, 2)
    index = {name: i for i, name in enumerate(CLASSES)}
    rice = labels == index["rice"]
    # Flooded paddies right after water seeding: the darkest VH of the season.
    rice_vh = np.nanmedian(vh[:, rice], axis=1)
    assert rice_vh.min() < -21.5 and rice_vh.max() > -16
    assert np.argmin(rice_vh) < np.argmax(rice_vh)
    # Time-averaged VV ordering for the static covers, where present in the area.
    level = {
        name: np.nanmedian(vv[:, labels == i])
        for name, i in index.items()
        if (labels == i).sum() > 150
    }
    order = [n for n in ("urban", "forest", "grassland", "water") if n in level]
    assert len(order) >= 3
    assert [level[n] for n in order] == sorted((level[n] for n in order), reverse=True)
    _, curves = class_signatures("netherlands", 2018)
    vv_mean = {k: float(v[1].mean()) for k, v in curves.items()}
    assert vv_mean["urban"] > vv_mean["forest"] > vv_mean["grassland"] > vv_mean["water"]
    assert min(curves["water"][0]) < -24


def test_speckle_has_the_looks_of_a_grd_product(spain) -> None:
    """ENL from the ratio of two dates (texture cancels): about 4.4 looks per acquisition."""
    labels = rasterio.open(spain.labels).read(1)
    vv = _scene_stack(spain, 2)
    lin = 10 ** (vv / 10)
    ratio = lin[1] / lin[2]
    ok = (labels == CLASSES.index("forest")) | (labels == CLASSES.index("water"))
    ok &= np.isfinite(ratio)
    if ok.sum() < 200:
        ok = (labels != 255) & np.isfinite(ratio)
    r = ratio[ok] / np.median(ratio[ok])
    # Var(a/b) for independent Gamma(L) a, b: L²/((L-1)²(L-2)) + ... ; solve numerically.
    var = np.var(r) / np.mean(r) ** 2
    looks = np.linspace(2.5, 12, 400)
    theory = (looks / (looks - 1)) ** 2 * ((looks + 1) / looks * (looks - 1) / (looks - 2) - 1)
    enl = looks[np.argmin(np.abs(theory - var))]
    assert 3.0 < enl < 6.5


def test_same_seed_same_pixels_labels_and_parcels_whatever_block_size(tmp_path: Path) -> None:
    size = (300, 530)  # several 256-blocks with ragged edges
    a = simulate_region(
        "netherlands", tmp_path / "a", seed=7, size=size, revisit_days=48, block_size=256
    )
    b = simulate_region(
        "netherlands", tmp_path / "b", seed=7, size=size, revisit_days=48, block_size=1024
    )
    c = simulate_region("netherlands", tmp_path / "c", seed=8, size=size, revisit_days=48)
    assert [p.name for p in a.scenes] == [p.name for p in b.scenes]
    for pa, pb in zip([*a.scenes, a.labels], [*b.scenes, b.labels], strict=True):
        np.testing.assert_array_equal(rasterio.open(pa).read(), rasterio.open(pb).read())
    pa = gpd.read_file(a.parcels).sort_values("parcel_id").reset_index(drop=True)
    pb = gpd.read_file(b.parcels).sort_values("parcel_id").reset_index(drop=True)
    assert len(pa) == len(pb) and (pa["crop"] == pb["crop"]).all()
    # Every attribute too; the files' bytes may differ (tile order, the GeoPackage's timestamp).
    assert pa.drop(columns="geometry").equals(pb.drop(columns="geometry"))
    assert pa.geometry.geom_equals_exact(pb.geometry, tolerance=0).all()
    assert not np.array_equal(rasterio.open(a.labels).read(), rasterio.open(c.labels).read())
    assert not np.array_equal(rasterio.open(a.scenes[0]).read(), rasterio.open(c.scenes[0]).read())


def test_netherlands_barley_is_rare_among_confusable_crops(tmp_path: Path) -> None:
    result = simulate_region("netherlands", tmp_path, seed=1, size=(512, 512), revisit_days=80)
    labels = rasterio.open(result.labels).read(1)
    share = {n: float((labels == i).mean()) for i, n in enumerate(CLASSES)}
    assert result.positive == "barley"
    assert 0.002 < share["barley"] < 0.12
    for crop in ("maize", "wheat", "potato", "grassland"):
        assert share[crop] > share["barley"]
    assert share["rice"] == 0
    # Confusable: barley's VH curve stays within a few dB of wheat and maize all season.
    _, curves = class_signatures("netherlands")
    for other in ("wheat", "maize"):
        assert np.abs(curves["barley"][0] - curves[other][0]).mean() < 2.5


def test_year_shifts_the_rice_calendar() -> None:
    korea = get_region("korea")
    (s19, m19), (s20, m20) = year_effects(korea, 2019), year_effects(korea, 2020)
    assert s19 != s20
    days = np.arange(100, 220, dtype=float)
    _, c19 = class_signatures("korea", 2019, days=days)
    _, c20 = class_signatures("korea", 2020, days=days)
    flood19 = days[np.argmin(c19["rice"][0])]
    flood20 = days[np.argmin(c20["rice"][0])]
    assert flood20 - flood19 == s20 - s19
    assert c19["rice"][0].min() < -23  # flooded paddy, VH
    assert -15.5 < c19["rice"][0].max() < -13  # biomass peak
    assert (
        abs((c20["forest"][0].mean() - c19["forest"][0].mean()) - 0.15 * (m20 - m19)) < 0.05
    )  # moisture barely reaches forest


def test_france_has_two_rice_calendars_one_like_spain(tmp_path: Path) -> None:
    days = np.arange(90, 300, dtype=float)
    _, fr = class_signatures("france", 2020, days=days)
    _, es = class_signatures("spain", 2020, days=days)
    assert "rice:water_seeded" in fr and "rice:dry_seeded" in fr and "rice" not in fr
    water, dry = fr["rice:water_seeded"][0], fr["rice:dry_seeded"][0]
    shift_fr = year_effects(get_region("france"), 2020)[0]
    shift_es = year_effects(get_region("spain"), 2020)[0]
    spain_flood = days[np.argmin(es["rice"][0])] - shift_es
    assert days[np.argmin(water)] - shift_fr == spain_flood  # same calendar as Spain
    assert days[np.argmin(dry)] - days[np.argmin(water)] > 15  # the other one is later
    assert dry.min() > water.min() + 2  # and never as dark
    result = simulate_region("france", tmp_path, seed=2, size=(320, 320), revisit_days=60)
    rice = gpd.read_file(result.parcels).query("crop == 'rice'")
    assert set(rice["variety"]) == {"rice_water_seeded", "rice_dry_seeded"}


def test_plot_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = plot_signatures("france", tmp_path / "sig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "nl"
    code = main(
        [
            "simulate",
            "netherlands",
            "--out",
            str(out),
            "--size",
            "64",
            "96",
            "--revisit-days",
            "40",
            "--seed",
            "5",
            "--year",
            "2019",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "netherlands 2019 (seed 5)" in printed and str(out / "labels.tif") in printed
    meta = json.loads((out / "region.json").read_text())
    assert meta["grid"]["width"] == 96 and meta["revisit_days"] == 40
    assert len(list((out / "scenes").glob("*.tif"))) == len(meta["acquisitions"])
    assert not [p for p in out.rglob(".*tmp*")]  # no temporary files left behind
    assert main(["simulate", "spain", "--out", str(tmp_path / "x"), "--size", "0", "5"]) == 2
    assert "size must be positive" in capsys.readouterr().err
    again = ["simulate", "netherlands", "--out", str(out), "--size", "64", "96", "--seed", "5"]
    assert main([*again, "--revisit-days", "40", "--year", "2019"]) == 0  # same plan: overwrite
    assert main([*again, "--revisit-days", "30"]) == 2  # would mix two simulations
    assert "another simulation" in capsys.readouterr().err
    with pytest.raises(SarcropError, match="unknown region"):
        simulate_region("mars", tmp_path / "m")


def _shared_data() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("SARCROP_SHARED_DATA", default))


@pytest.mark.realdata
def test_levels_match_real_flanders_parcels() -> None:
    """Summer medians of grassland and maize within 1.5 dB of real Sentinel-1 (Flanders)."""
    folder = _shared_data() / "worldcereal-s1-croptype-patches" / "geotiff"
    if not folder.is_dir():
        pytest.skip(f"real data not found: {folder}")
    pid = "000028085BF08E7E"
    labels = rasterio.open(folder / f"{pid}_labels_CT_LC_10m.tif").read(1)[::2, ::2]
    _days, curves = class_signatures("netherlands", 2019, days=np.arange(152, 244.0))
    for code, crop in ((9120, "grassland"), (1200, "maize")):
        for b, band in enumerate(("VH", "VV")):
            with rasterio.open(folder / f"{pid}_S1_{band}_sigma0_dB_20m.tif") as ds:
                when = [dt.datetime.fromisoformat(d[:19]) for d in ds.descriptions]
                keep = [i + 1 for i, w in enumerate(when) if w.year == 2019 and 6 <= w.month <= 8]
                real = np.median(ds.read(keep)[:, labels == code])
            assert abs(real - np.median(curves[crop][b])) < 1.5, (crop, band)
