"""Report figures: produced from small arrays, saved atomically, embeddable."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sarcrop.errors import SarcropError
from sarcrop.reports.figures import (
    FN,
    FP,
    TN,
    TP,
    UNLABELLED,
    PanelRow,
    confusion_map,
    early_season_plot,
    figure_to_base64_png,
    learning_curves,
    method_training_curves,
    prediction_panels,
    rgb_composite,
    scenario_figure,
    signature_plot,
    training_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scene(rng, size=12, steps=8):
    label = np.zeros((size, size), np.float32)
    label[2:7, 3:9] = 1
    image = rng.normal(-15, 1, (steps, size, size)).astype(np.float32)
    image[:3, label.astype(bool)] -= 8  # flooded paddies are dark early in the season
    label[0, 0] = -1
    return image, label


def _predictions(rng, label):
    prob = np.clip(label + rng.normal(0, 0.4, label.shape), 0, 1).astype(np.float32)
    return {"RF": prob, "RI": prob > 0.7, "FT": prob, "FTE": label == 1}


def _check_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > min_bytes
    assert not list(path.parent.glob(".*tmp*"))


def test_confusion_map_codes():
    label = np.array([[1, 1, 0, 0, -1]])
    pred = np.array([[0.9, 0.1, 0.8, np.nan, 1.0]])
    codes = confusion_map(pred, label)
    assert codes.tolist() == [[TP, FN, FP, UNLABELLED, UNLABELLED]]
    valid = np.array([[1, 1, 1, 1, 1]], bool)
    valid[0, 0] = False
    assert confusion_map(pred > 0.5, label, valid).tolist() == [[UNLABELLED, FN, FP, TN, 4]]


def test_rgb_composite_stretches_first_three_steps():
    rng = np.random.default_rng(0)
    image, label = _scene(rng)
    image[1, 0, 0] = np.nan
    rgb = rgb_composite(image)
    assert rgb.shape == (12, 12, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0, 0, 1] == 0  # NaN drawn black
    assert rgb[label == 1, 0].mean() < rgb[label == 0, 0].mean()  # dark flooded paddies
    assert rgb_composite(image[:1]).shape == (12, 12, 3)


def test_prediction_panels(tmp_path):
    rng = np.random.default_rng(1)
    image, label = _scene(rng)
    path = tmp_path / "figs" / "panels.png"
    fig = prediction_panels(image, label, _predictions(rng, label), "Spain → France", path=path)
    assert len(fig.axes) == 2 + 4
    assert [ax.get_title() for ax in fig.axes[:3]] == ["(a) Image", "(b) Label", "(c) RF"]
    _check_png(path)


def test_scenario_figure_whole_area_and_three_patches(tmp_path):
    rng = np.random.default_rng(2)
    big_image, big_label = _scene(rng, size=24)
    whole = PanelRow(big_image, big_label, _predictions(rng, big_label), name="test area")
    patches = []
    for _ in range(3):
        image, label = _scene(rng)
        patches.append({"image_vh": image, "label": label, "predictions": _predictions(rng, label)})
    path = tmp_path / "scenario.png"
    fig = scenario_figure(whole, patches, "Scenario 3", path=path)
    assert len(fig.axes) == 4 * 6
    _check_png(path, min_bytes=20_000)
    with pytest.raises(SarcropError, match="does not match image"):
        prediction_panels(big_image, np.zeros((5, 5)), {})


def test_signature_plot(tmp_path):
    rng = np.random.default_rng(3)
    rice = np.array([-23, -22, -19, -16, -14, -13.5, -14, -15.0])
    late = np.array([-15, -16, -22, -21, -17, -14, -13, -14.0])
    tp = rice + rng.normal(0, 1, (40, 8))
    fn = late + rng.normal(0, 1, (25, 8))
    ref = rice + rng.normal(0, 1, (60, 8))
    dates = pd.date_range("2021-04-01", periods=8, freq="20D").date
    path = tmp_path / "signature.png"
    fig = signature_plot(dates, tp, fn, ref, path=path)
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    colors = {line.get_color() for line in ax.lines}
    assert colors == {"#2ca02c", "#d62728", "#1f77b4"}
    assert ax.get_xticklabels()[0].get_text() == "2021-04-01"
    _check_png(path)
    fig = signature_plot(None, tp, fn, ref, spread="iqr", band="VV")
    assert fig.axes[0].get_ylabel() == "VV (dB)"
    with pytest.raises(SarcropError, match="different numbers of time steps"):
        signature_plot(None, tp, fn[:, :5], ref)


def test_early_season_plot_from_frame_and_mapping(tmp_path):
    rows = [
        {
            "method": m,
            "ordering": o,
            "timestep": t,
            "seed": s,
            "metric": "iou",
            "value": t / 8 * (0.9 if o == "chronological" else 0.6) + 0.01 * s,
        }
        for m in ("FT", "FTE")
        for o in ("chronological", "random")
        for t in range(1, 9)
        for s in (0, 1)
    ]
    path = tmp_path / "early.png"
    fig = early_season_plot(pd.DataFrame(rows), path=path)
    ax = fig.axes[0]
    assert len(ax.lines) == 4
    assert sorted(line.get_linestyle() for line in ax.lines) == ["-", "-", "--", "--"]
    assert np.allclose(ax.lines[0].get_xdata(), np.arange(1, 9))
    _check_png(path)
    fig = early_season_plot({"RF": [0.1, 0.3, 0.5], "FTE (random)": {1: 0.2, 2: 0.4, 3: 0.6}})
    assert [line.get_linestyle() for line in fig.axes[0].lines] == ["-", "--"]


def test_training_curves_from_lightning_csv(tmp_path):
    rows = []
    for epoch in range(4):
        for step in range(3):
            rows.append(
                {
                    "epoch": epoch,
                    "step": epoch * 3 + step,
                    "train_loss_step": 1.0 / (epoch + 1),
                    "val_loss": None,
                    "val_iou": None,
                }
            )
        rows.append(
            {
                "epoch": epoch,
                "step": epoch * 3 + 2,
                "train_loss_epoch": 0.9 / (epoch + 1),
                "val_loss": 1.1 / (epoch + 1),
                "val_iou": 0.2 * epoch,
            }
        )
    csv = tmp_path / "metrics.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    fig = training_curves(csv, path=tmp_path / "curves.png")
    loss_ax, score_ax = fig.axes
    assert {line.get_label() for line in loss_ax.lines} == {"train_loss_epoch", "val_loss"}
    assert [line.get_label() for line in score_ax.lines] == ["val_iou"]
    assert np.allclose(score_ax.lines[0].get_ydata(), [0, 0.2, 0.4, 0.6])
    _check_png(tmp_path / "curves.png")
    with pytest.raises(SarcropError, match="not found"):
        training_curves(tmp_path / "missing.csv")


def test_method_training_curves_overlay_each_runs_loss_and_validation_iou(tmp_path):
    """One line per run: its training loss, and its validation IoU where it validated."""

    def log(scale: float, validated: bool) -> pd.DataFrame:
        rows = []
        for epoch in range(3):
            rows.append({"epoch": epoch, "step": epoch, "train_loss_step": 2 * scale / (epoch + 1)})
            row = {"epoch": epoch, "step": epoch, "train_loss_epoch": scale / (epoch + 1)}
            rows.append(row | ({"val_iou": 0.1 * epoch + scale} if validated else {}))
        return pd.DataFrame(rows)

    logs = {"RI": log(1.0, True), "FTE": log(0.5, False)}
    fig = method_training_curves(logs, title="fine-tuning", path=tmp_path / "methods.png")
    loss_ax, score_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["RI", "FTE"]
    assert np.allclose(loss_ax.lines[1].get_ydata(), [0.5, 0.25, 0.5 / 3])  # epoch, not step
    assert [line.get_label() for line in score_ax.lines] == ["RI"]
    assert np.allclose(score_ax.lines[0].get_ydata(), [1.0, 1.1, 1.2])
    _check_png(tmp_path / "methods.png")


def test_figure_to_base64_png():
    fig = early_season_plot({"FTE": [0.2, 0.5, 0.8]})
    text = figure_to_base64_png(fig)
    assert isinstance(text, str)
    assert base64.b64decode(text).startswith(PNG_MAGIC)


# --------------------------------------------------------------------------- from a run's record

TILE = {"tiling": {"patch_size": 32}}
RF_ONLY = {
    "name": "rf-only",
    "regions": {
        "korea": {"simulate": {"preset": "korea", "size": [64, 64]}, **TILE},
        "spain": {"simulate": {"preset": "spain", "size": [96, 96]}, **TILE},
        "france": {"simulate": {"preset": "france", "size": [96, 96]}, **TILE},
    },
    "pretrain": {"region": "korea", "bands": ["VH"], "model_options": {"widths": [4, 8]}},
    "scenarios": [{"finetune": "spain", "test": "france", "crop": "rice", "bands": ["VH"]}],
    "methods": ["rf"],
    "baseline": {"n_estimators": 5, "max_samples_per_class": 200},
    "figure_patches": 1,
}


def _files(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_figures_are_drawn_from_the_runs_record_alone(tmp_path, monkeypatch):
    """Figures read a record of the run's files; drawing them trains or prepares nothing."""
    from sarcrop.cli import main as cli_main
    from sarcrop.experiments import run_experiment
    from sarcrop.experiments.record import RunRecord

    config = tmp_path / "rf.yaml"
    config.write_text(yaml.safe_dump(RF_ONLY), encoding="utf-8")
    out = tmp_path / "out"
    run_experiment(config, out)
    # Nothing asked for the pre-trained model, so drawing the figures did not pre-train one
    # (nor simulate or prepare its region) just to plot a training curve.
    assert not list((out / "cache").glob("pretrain-*"))
    assert len(list((out / "cache").glob("region-*"))) == 2

    record = RunRecord.read(out)
    assert record.pretrain is None and record.sources == {"spain-france-rice-vh": "simulated"}
    assert [(u.scenario, u.method, u.seed) for u in record.units] == [
        ("spain-france-rice-vh", "rf", 0)
    ]
    assert not Path(record.regions["france"].store).is_absolute()  # the run folder can move
    manifest = json.loads((out / "experiment.json").read_text(encoding="utf-8"))

    def forbidden(*args, **kwargs):
        raise AssertionError("drawing figures must not simulate, prepare or train")

    for target in (
        "sarcrop.training.api.train",
        "sarcrop.training.api.finetune",
        "sarcrop.data.prepare.prepare",
        "sarcrop.data.prepare.prepare_region",
        "sarcrop.data.simulate.simulate_region",
    ):
        monkeypatch.setattr(target, forbidden)
    cache = _files(out / "cache")
    figure = out / manifest["scenarios"][0]["figure"]
    figure.unlink()
    moved = tmp_path / "moved"
    out.rename(moved)  # only the record says where things are

    assert cli_main(["report", str(moved), "--redraw"]) == 0
    assert _files(moved / "cache") == {moved / p.relative_to(out): t for p, t in cache.items()}
    _check_png(moved / figure.relative_to(out), min_bytes=10_000)
    again = json.loads((moved / "experiment.json").read_text(encoding="utf-8"))
    assert again["artefacts"] == manifest["artefacts"]
    assert again["timings"] == manifest["timings"]
    assert again["scenarios"][0]["data"] == "simulated"
    assert "measured on simulated data" in (moved / "report.html").read_text(encoding="utf-8")


def test_learning_curves_wrap_into_rows_of_three(tmp_path):
    rows = [
        {
            "scenario": f"s{k}",
            "method": m,
            "label_fraction": f,
            "mean": 0.5,
            "low": 0.4,
            "high": 0.6,
        }
        for k in range(5)
        for m in ("rf", "ft")
        for f in (0.25, 1.0)
    ]
    long_title = "a scenario title much longer than one panel is wide, from europe, maize"
    fig = learning_curves(
        pd.DataFrame(rows), titles={"s0": long_title}, path=tmp_path / "curves.png"
    )
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 6 and len(shown) == 5  # 2 rows x 3, the sixth panel hidden
    assert [ax.get_subplotspec().rowspan.start for ax in shown] == [0, 0, 0, 1, 1]
    assert "\n" in shown[0].get_title() and shown[1].get_title() == "s1"
    assert [ax.get_ylabel() != "" for ax in shown] == [True, False, False, True, False]
    assert (tmp_path / "curves.png").stat().st_size > 0
