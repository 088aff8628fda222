"""The HTML report of an experiment run: content, robustness, and rendering in real Chromium."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from matplotlib.figure import Figure
from PIL import Image

import browser_support
from sarcrop.cli import main as cli_main
from sarcrop.errors import SarcropError
from sarcrop.evaluation.tables import Cell, Row, Table, format_cell
from sarcrop.reports.figures import (
    PanelRow,
    early_season_plot,
    save_figure,
    scenario_figure,
    signature_plot,
    training_curves,
)
from sarcrop.reports.html import ReportError, format_duration, render_report

chromium = browser_support.chromium

METHODS = ("rf", "ri", "ft", "fte")
SEEDS = (0, 1)
STEPS = 4
# (id, fine-tuning region, test region, crop, bands); the last one is not in the paper.
SCENARIOS = (
    ("spain-spain-rice-vh", "spain", "spain", "rice", "VH"),
    ("spain-france-rice-vh", "spain", "france", "rice", "VH"),
    ("netherlands-netherlands-barley-vhvv", "netherlands", "netherlands", "barley", "VH|VV"),
    ("korea-korea-rice-vh", "korea", "korea", "rice", "VH"),
)


def _results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for number, (sid, finetune, test, crop, bands) in enumerate(SCENARIOS):
        for m, method in enumerate(METHODS):
            for metric in ("iou", "precision", "recall", "f1"):
                for t in range(1, STEPS + 1):
                    for seed in SEEDS:
                        value = 0.3 + 0.1 * m + 0.05 * t - 0.05 * number + rng.normal(0, 0.01)
                        rows.append(
                            dict(
                                scenario=sid,
                                finetune_region=finetune,
                                test_region=test,
                                crop=crop,
                                bands=bands,
                                method=method,
                                metric=metric,
                                timestep=t,
                                seed=seed,
                                value=round(value, 4),
                                run="main",
                                ordering="n/a" if method == "rf" else "chronological",
                            )
                        )
    # An early-season rerun with another batch ordering: must not enter the tables.
    rows.append(
        {
            **rows[-1],
            "run": "early-season",
            "ordering": "random",
            "value": 0.0,
            "metric": "iou",
        }
    )
    return pd.DataFrame(rows)


def _geotiff(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype="float32",
        crs="EPSG:32630",
        transform=Affine(10, 0, 500_000, 0, -10, 4_400_000),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(np.float32), 1)


def _build_run(run: Path) -> dict:
    """A small but real run directory, figures drawn with the package's figure functions."""
    rng = np.random.default_rng(1)
    (run / "figures").mkdir(parents=True)
    results = _results()
    results.to_csv(run / "results.csv", index=False)
    (run / "tables.md").write_text("# tables\n", encoding="utf-8")

    label = np.zeros((12, 12), np.float32)
    label[2:7, 3:9] = 1
    image = rng.normal(-15, 1, (STEPS, 12, 12)).astype(np.float32)
    image[:2, label.astype(bool)] -= 8
    scenarios = []
    for sid, finetune, test, crop, bands in SCENARIOS:
        prob = np.clip(label + rng.normal(0, 0.4, label.shape), 0, 1).astype(np.float32)
        predictions = {m.upper(): prob for m in METHODS}
        figure = f"figures/{sid}.png"
        scenario_figure(
            PanelRow(image, label, predictions),
            [
                PanelRow(
                    image[:, :6, :6], label[:6, :6], {k: v[:6, :6] for k, v in predictions.items()}
                )
            ],
            title=sid,
            path=run / figure,
        )
        maps = {}
        for method in ("rf", "fte"):
            maps[method] = f"maps/{sid}/{method}.tif"
            _geotiff(run / maps[method], prob)
        signature = None
        if sid == "spain-france-rice-vh":
            signature = f"figures/{sid}-signature.png"
            signature_plot(
                None,
                rng.normal(-20, 1, (30, STEPS)),
                rng.normal(-14, 1, (20, STEPS)),
                rng.normal(-20, 1, (50, STEPS)),
                path=run / signature,
            )
        scenarios.append(
            {
                "id": sid,
                "finetune_region": finetune,
                "test_region": test,
                "crop": crop,
                "bands": bands.split("|"),
                "figure": figure,
                "signature_figure": signature,
                "maps": maps,
            }
        )

    early = results[(results["scenario"] == SCENARIOS[0][0]) & (results["metric"] == "iou")]
    early_season_plot(
        early.assign(method=early["method"].str.upper()),
        "iou",
        path=run / "figures/early-season.png",
    )
    log = pd.DataFrame(
        {
            "epoch": np.repeat(np.arange(5), 2),
            "step": np.arange(10),
            "train_loss": np.linspace(1, 0.2, 10),
            "val_iou": np.linspace(0.2, 0.8, 10),
        }
    )
    curves = []
    for name in ("pre-training on korea", "FTE on spain-spain-rice-vh"):
        figure = f"figures/training-{len(curves)}.png"
        training_curves(log, title=name, path=run / figure)
        curves.append({"name": name, "figure": figure})
    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    for cls, offset in (("rice", -8), ("other", 0)):
        ax.plot(np.arange(1, STEPS + 1), -15 + offset * np.exp(-np.arange(STEPS)), label=cls)
    ax.legend()
    save_figure(fig, run / "figures/class-curves.png")

    manifest = {
        "name": "small",
        "created": "2025-01-01T00:00:00+00:00",
        "sarcrop_version": "0.1.0",
        "config_file": "configs/small.yaml",
        "config": {"name": "small", "seeds": list(SEEDS)},
        "seeds": list(SEEDS),
        "time_steps": STEPS,
        "scenarios": scenarios,
        "methods": list(METHODS),
        "early_season": {
            "figure": "figures/early-season.png",
            "scenario": SCENARIOS[0][0],
            "method": "fte",
        },
        "training_curves": curves,
        "class_curves_figure": "figures/class-curves.png",
        "timings": {
            "simulate": 12.3,
            "prepare": 4.5,
            "pretrain": 120.0,
            "total": 136.8,
            "this run": 15.0,
        },
        "notes": ["Regions come from the simulator."],
    }
    (run / "experiment.json").write_text(json.dumps(manifest), encoding="utf-8")
    return manifest


EXPECTED_IMAGES = len(SCENARIOS) + 1 + 1 + 2 + 1  # panels, signature, early, training, classes


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "small"
    _build_run(run)
    return run


@pytest.fixture(scope="module")
def report(run_dir) -> Path:
    return render_report(run_dir)


def _decode_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :], validate=True)))
    image.load()
    assert image.format == "PNG"
    return image


# --------------------------------------------------------------------------- in Chromium


def test_report_renders_in_chromium(chromium, report, run_dir, tmp_path):
    assert report == run_dir / "report.html"

    shot = tmp_path / "report.png"
    messages = browser_support.screenshot(chromium, report, shot)
    assert messages == []
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20, "screenshot is (nearly) blank"
    assert (pixels < 128).mean() > 0.01, "hardly any dark (text, table, figure) pixels"

    markup, messages = browser_support.dump_dom(chromium, report)
    assert messages == []
    dom = browser_support.read_dom(markup)

    iou = dom.table("table-iou")
    assert len(iou.rows["thead"]) == 3  # Fine-tuning / Test / Feature, as in the paper
    assert [row[0] for row in iou.rows["tbody"]] == ["RF", "RI", "FT", "FTE"]
    assert all(len(row) == 1 + len(SCENARIOS) for row in iou.rows["tbody"])
    assert iou.rows["thead"][1][0] == "Test"
    # Two seeds: mean ± std; paper values beside the cells of the scenarios it reports.
    fte = iou.rows["tbody"][-1]
    assert "±" in fte[1] and "paper 0.90" in fte[1]  # Spain-Spain-rice-VH, Table 1
    assert "paper" not in fte[-1]  # korea-korea is not one of the paper's scenarios
    for metric in ("recall", "precision", "f1"):
        assert len(dom.table(f"table-{metric}").rows["tbody"]) == len(METHODS)
    # The early-season rerun row (IoU 0 in the last cell) is left out of the mean.
    main = _results().query("run == 'main' and metric == 'iou' and method == 'fte'")
    last = main[(main.scenario == SCENARIOS[-1][0]) & (main.timestep == STEPS)]
    assert fte[-1] == format_cell(last["value"].tolist(), 2)

    assert len(dom.images) == EXPECTED_IMAGES
    for image in dom.images:
        decoded = _decode_png(image["src"])
        assert decoded.width > 100 and decoded.height > 50
        assert image.get("alt")
    maps = [link for link in dom.links if link.endswith(".tif")]
    assert len(maps) == 2 * len(SCENARIOS)
    for link in maps:
        assert not link.startswith(("/", "file:")), link
        with rasterio.open(run_dir / link) as src:
            assert src.crs.to_epsg() == 32630
    for text in ("Timings", "2 min 17 s", "Regions come from the simulator.", "sarcrop 0.1.0"):
        assert text in dom.text
    # The units' compute, cached ones at their first run, and the wall time of this run.
    assert "compute time 2 min 17 s (this run 15.0 s)" in dom.text
    assert "total time" not in dom.text


@pytest.mark.parametrize("width", [1280, 500])  # 500: the narrowest headless Chromium window
def test_report_layout_in_chromium(chromium, report, width):
    """Every image decodes in the browser and fits the window; no sideways page scrolling."""
    measured = browser_support.probe(chromium, report, window=(width, 1600))
    assert measured["viewport"] == width
    assert len(measured["images"]) == EXPECTED_IMAGES
    for image in measured["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0
        assert 0 < image["shown"] <= measured["viewport"]
    assert measured["scroll_width"] <= measured["viewport"]
    visible = measured["visible"]
    assert visible["table-iou"]
    # CSS-only tabs: the first metric tab is shown, the others wait for a click.
    assert visible["panel-recall"] and not visible["panel-precision"]
    assert not visible["panel-f1"]


# --------------------------------------------------------------------------- without a browser


def test_missing_optional_items_are_omitted(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "broken.png").write_bytes(b"not a png at all")
    _results().to_csv(run / "results.csv", index=False)
    manifest = {
        "name": "bare",
        "scenarios": [
            {
                "id": "spain-spain-rice-vh",
                "finetune_region": "spain",
                "test_region": "spain",
                "crop": "rice",
                "bands": ["VH"],
                "figure": "figures/missing.png",
                "signature_figure": None,
                "maps": {"fte": "maps/absent.tif"},
            },
            {"id": "spain-france-rice-vh", "figure": "figures/broken.png"},
        ],
        "early_season": None,
        "training_curves": [{"name": "gone", "figure": "figures/gone.png"}],
        "class_curves_figure": None,
    }
    (run / "experiment.json").write_text(json.dumps(manifest), encoding="utf-8")
    out = render_report(run)
    text = out.read_text(encoding="utf-8")
    dom = browser_support.read_dom(text)
    assert dom.images == []
    assert not [link for link in dom.links if link.endswith(".tif")]
    for section in ("early-season", "training", "simulator", "timings", "notes"):
        assert section not in dom.ids
    assert "table-iou" in dom.ids and "scenario-spain-france-rice-vh" in dom.ids
    assert not list(run.glob(".*tmp*"))


def test_run_without_results_still_renders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text(json.dumps({"name": "empty"}), encoding="utf-8")
    text = render_report(run).read_text(encoding="utf-8")
    assert "No results were recorded" in text
    assert "<table" not in text


def test_paper_values_are_promised_only_where_a_scenario_has_them(run_dir, tmp_path):
    """A user's own regions match none of the paper's scenarios: the key finding did not show
    a paper value and still said it showed them "beside each matching cell"."""
    promise = "shown muted in brackets beside each matching cell"
    assert promise in render_report(run_dir, tmp_path / "paper.html").read_text()
    run = tmp_path / "own"
    run.mkdir()
    results = pd.read_csv(run_dir / "results.csv")
    results[["finetune_region", "test_region"]] = "my-fields"  # none of the paper's regions
    results["scenario"] = "own-" + results["scenario"].astype(str)
    results.to_csv(run / "results.csv", index=False)
    (run / "experiment.json").write_text(json.dumps({"name": "own"}), encoding="utf-8")
    assert promise not in render_report(run).read_text(encoding="utf-8")


def test_names_are_escaped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    evil = '<script>alert("x")</script>'
    results = _results()
    results["method"] = results["method"].replace("rf", "<b>rf</b>")
    results.to_csv(run / "results.csv", index=False)
    manifest = {
        "name": evil,
        "scenarios": [{"id": 'a"><img src=x onerror=alert(1)>', "crop": "<i>rice</i>"}],
        "notes": ["<img src=x onerror=alert(2)>", "a & b"],
        "config": {"comment": "</pre><script>alert(3)</script>"},
        "timings": {"<stage>": 1.0},
    }
    (run / "experiment.json").write_text(json.dumps(manifest), encoding="utf-8")
    text = render_report(run).read_text(encoding="utf-8")
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;" in text and "a &amp; b" in text and "&lt;stage&gt;" in text
    dom = browser_support.read_dom(text)
    assert dom.images == []
    assert "&lt;B&gt;RF&lt;/B&gt;" in text  # method codes shown in capitals, still escaped


def test_links_are_relative_to_the_output(run_dir, tmp_path):
    out = render_report(run_dir, tmp_path / "elsewhere" / "page.html")
    dom = browser_support.read_dom(out.read_text(encoding="utf-8"))
    maps = [link for link in dom.links if link.endswith(".tif")]
    assert maps
    for link in maps:
        assert (out.parent / link).resolve().is_file()


def test_table_model_renders_html_with_groups_escaping_and_labels():
    header = (
        ("Fine-tuning", "Spain", "Spain", "France"),
        ("Test", "Spain", "France", "France"),
        ("Feature", "VH", "VH", "VH|VV"),
    )
    rows = (
        Row(("RF",), (Cell(0.5, None, 0.87, "simulated", 2), Cell(0.7, digits=2), Cell(None))),
        Row(
            ("<b>FTE</b>",),
            (Cell(0.6, 0.01, 0.9, "simulated", 2), Cell(0.4, digits=2), Cell(0.3, digits=2)),
        ),
    )
    table = Table("IoU & co", header, rows, ("ours (simulated) [paper, real data]",))
    markup = table.to_html(table_id="t", highlight_max=True)
    assert "<caption>IoU &amp; co</caption>" in markup
    assert '<th scope="col" colspan="2">Spain</th>' in markup  # grouped fine-tuning region
    assert markup.count('colspan="2"') == 1  # Test row: Spain|France differ within the group
    assert '<th scope="col">VH|VV</th>' in markup
    assert "&lt;b&gt;FTE&lt;/b&gt;" in markup and "<b>" not in markup
    assert 'title="ours: simulated data; paper: its real data"' in markup
    assert '<p class="table-note">ours (simulated) [paper, real data]</p>' in markup
    dom = browser_support.read_dom(markup)
    assert dom.table("t").rows["tbody"] == [
        ["RF", "0.50 (paper 0.87)", "0.70", "–"],
        ["<b>FTE</b>", "0.60 ± 0.01 (paper 0.90)", "0.40", "0.30"],
    ]
    assert len(dom.table("t").rows["thead"]) == 3
    assert markup.count('class="best"') == 2  # columns with values in at least two rows


def test_report_labels_simulated_numbers_and_cites_the_paper(run_dir, tmp_path):
    manifest = json.loads((run_dir / "experiment.json").read_text(encoding="utf-8"))
    for scenario in manifest["scenarios"]:
        scenario["data"] = "real" if scenario["id"].startswith("netherlands") else "simulated"
    run = tmp_path / "labelled"
    run.mkdir()
    (run / "experiment.json").write_text(json.dumps(manifest), encoding="utf-8")
    (run / "results.csv").write_bytes((run_dir / "results.csv").read_bytes())
    text = render_report(run).read_text(encoding="utf-8")
    dom = browser_support.read_dom(text)
    assert "Towards Global Crop Maps with Transfer Learning" in dom.text
    assert "arXiv:2211.04755" in dom.text
    assert "measured on simulated data and real data" in dom.text
    # The legend under Table 1 says which columns are simulated and which real.
    assert "simulated data (Spain → Spain VH, Spain → France VH, Korea → Korea VH)" in dom.text
    assert "real data (The Netherlands → The Netherlands VH|VV)" in dom.text
    assert "in brackets (paper …): the value published in Table 1 of Jo et al." in dom.text
    assert 'title="ours: simulated data; paper: its real data"' in text
    assert "ours measured on simulated data — the paper's experiment 1 (real data)" in dom.text


def test_format_duration():
    assert format_duration(0.42) == "0.4 s"
    assert format_duration(136.8) == "2 min 17 s"
    assert format_duration(3725) == "1 h 02 min"
    assert format_duration(float("nan")) == "–"


def test_cli_prints_the_report_path(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.html"
    assert cli_main(["report", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    assert cli_main(["report", str(tmp_path / "nothing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    with pytest.raises(SarcropError):
        render_report(tmp_path)  # a folder without experiment.json
    (tmp_path / "experiment.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match="unreadable experiment manifest"):
        render_report(tmp_path)


def test_a_results_table_with_a_value_that_is_not_a_number_is_refused_in_one_line(
    run_dir, tmp_path
):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    results = pd.read_csv(copy / "results.csv")
    results["value"] = results["value"].astype(object)
    results.loc[3, "value"] = "abc"
    results.to_csv(copy / "results.csv", index=False)
    with pytest.raises(ReportError, match=r"results\.csv: results table row 5: value 'abc' is"):
        render_report(copy)


def test_a_search_table_without_its_columns_is_refused_in_one_line(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "searches.csv").write_text("scenario,method\nx,ft\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r"searches\.csv: search table lacks column\(s\) epochs"):
        render_report(copy)
    plain = render_report(run_dir, tmp_path / "plain.html")  # no search: no section
    assert "Chosen on held-out parcels" not in plain.read_text(encoding="utf-8")


def test_wide_search_and_area_tables_scroll_inside_the_page(chromium, run_dir, tmp_path):
    """Long scenario ids (a held-out scenario of a real run) in the search and area tables
    scroll inside their box: the page itself never scrolls sideways, even at 500 px."""
    import shutil

    copy = tmp_path / "wide"
    shutil.copytree(run_dir, copy)
    scenario = "flanders2019-flanders2019-test-maize-vhvv-from-europe-folds3"
    searches = pd.DataFrame(
        {
            "scenario": [scenario] * 3,
            "method": ["ft", "fte", "ftd-last-1"],
            "seed": [0, 0, 0],
            "label_fraction": [1.0] * 3,
            "fold": [1, 1, 1],
            "epochs": [20] * 3,
            "interpolation": [0.0, 0.25, 0.75],
            "held_out_iou": [0.6, 0.5, 0.4],
            "folds": [3] * 3,
            "parcels": [11] * 3,
            "reason": [""] * 3,
        }
    )
    searches.to_csv(copy / "searches.csv", index=False)
    manifest = json.loads((copy / "experiment.json").read_text(encoding="utf-8"))
    manifest["area_estimates"] = [
        {
            "scenario": scenario,
            "method": "fte",
            "class": "maize",
            "data": "real",
            "unit": "ha",
            "true": 12.31,
            "pixel_count": 11.02,
            "estimate": 12.05,
            "ci95_low": 10.25,
            "ci95_high": 14.38,
            "sample_size": 300,
        }
    ]
    (copy / "experiment.json").write_text(json.dumps(manifest), encoding="utf-8")
    page = render_report(copy)
    text = page.read_text(encoding="utf-8")
    assert "<td>FTD-last-1</td><td>100 %</td><td>1</td><td>20 ×1</td><td>0.75 ×1</td>" in text
    for width in (1280, 500):
        measured = browser_support.probe(chromium, page, window=(width, 1600))
        assert measured["scroll_width"] <= measured["viewport"] == width
        assert measured["visible"]["searches"] and measured["visible"]["area"]


def test_the_time_step_table_keeps_every_label_fraction(tmp_path):
    """With fewer labels as well as every label, the report's time-step table has a row per
    fraction, as tables.md has; the full-season tables keep every label only."""
    run = tmp_path / "run"
    run.mkdir()
    every = _results()
    fewer = every.assign(label_fraction=0.5, value=every["value"] / 2)
    pd.concat([every.assign(label_fraction=1.0), fewer]).to_csv(run / "results.csv", index=False)
    manifest = {"name": "fractions", "timestep_table": True, "scenarios": []}
    (run / "experiment.json").write_text(json.dumps(manifest), encoding="utf-8")
    text = render_report(run).read_text(encoding="utf-8")

    def body(ident: str) -> str:
        start = text.index(f'id="{ident}"')
        return text[text.index("<tbody>", start) : text.index("</tbody>", start)]

    rows = body("table-timesteps").count("<tr")
    assert rows == 2 * len(SCENARIOS) * len(METHODS)
    assert "50 %" in body("table-timesteps") and "50 %" not in body("table-iou")


def test_a_held_out_scenario_is_named_so():
    """A ``folds`` scenario read "My-Fields-All → My-Fields-Scored": nothing said that its
    scores are of fields no run learnt from."""
    from sarcrop.evaluation.tables import scenario_label

    held = "flanders2019-all-flanders2019-scored-maize-vhvv-from-europe-folds3"
    assert scenario_label(held, "flanders2019-all", "flanders2019-scored", "VH|VV") == (
        "flanders2019-all → flanders2019-scored VH|VV, from europe, fields held out (3 folds)"
    )
    plain = "flanders2019-flanders2018-test-maize-vhvv-from-europe"
    assert scenario_label(plain, "a", "b", "VH") == "a → b VH, from europe"
