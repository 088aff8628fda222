"""An evaluation seen parcel by parcel: intervals over the test fields, and the fields behind
the errors, for networks and forests alike."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sarcrop.cli import main
from sarcrop.data.dataset import PatchDataset
from sarcrop.data.parcels import store_labels, store_parcels
from sarcrop.data.store import DatasetStore, write_store
from sarcrop.errors import InputDataError
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.evaluation.metrics import METRICS
from sarcrop.evaluation.parcel_scores import evaluation_by_parcel
from sarcrop.options import BaselineOptions
from sarcrop.training import load_checkpoint
from sarcrop.training.api import evaluate, train
from test_multiclass import CLASSES, CROPS, OPTIONS, make_store, quick

FOREST = BaselineOptions(n_estimators=8, early_season=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("parcels") / "store.zarr", seed=3)


@pytest.fixture(scope="module")
def checkpoints(store, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    binary = train(store, root / "bin", positive="maize", config=quick(), model_options=OPTIONS)
    classes = ",".join([*CROPS, "other"])
    multi = train(store, root / "multi", config=quick(classes=classes), model_options=OPTIONS)
    return {"binary": str(binary.checkpoint), "multi": str(multi.checkpoint)}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def _parcels_of(store: str, split: str = "test") -> tuple[list[int], np.ndarray, np.ndarray]:
    opened = DatasetStore(store)
    patches = opened.indices(split)
    labels = np.stack([opened.read_labels(i) for i in patches])
    return patches, store_parcels(opened)[patches], labels


def _check_parcels(result: dict, store: str, predicted: np.ndarray, target: np.ndarray) -> None:
    """Every parcel's pixels, share correct, crop and patches, recounted here."""
    patches, ids, labels = _parcels_of(store)
    found = {p["parcel"]: p for p in result["parcels"]}
    assert set(found) == set(np.unique(ids[ids >= 0]).tolist())
    for parcel, score in found.items():
        inside = ids == parcel
        assert score["pixels"] == int(inside.sum())
        assert score["correct"] == pytest.approx(np.mean(predicted[inside] == target[inside]))
        assert score["crop"] == CLASSES[int(labels[inside][0])]
        assert score["patches"] == [patches[i] for i in np.flatnonzero(inside.any(axis=(1, 2)))]


def test_a_binary_evaluation_has_intervals_over_parcels_and_a_score_per_parcel(store, checkpoints):
    result = evaluate(checkpoints["binary"], store)
    n_parcels = len(np.unique(_parcels_of(store)[1]))
    assert result["interval_level"] == 0.95 and set(result["intervals"]) == set(METRICS)
    for metric, interval in result["intervals"].items():
        assert _same(interval["estimate"], result["metrics"][metric])
        assert interval["n_parcels"] == n_parcels - 1  # -1: the unlabelled pixels
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    model, _ = load_checkpoint(checkpoints["binary"])
    test = PatchDataset(store, "test", "maize")
    with torch.inference_mode():
        prob = torch.sigmoid(model(torch.stack([test[i]["image"] for i in range(2)])))[:, 0]
    predicted = (prob >= 0.5).numpy().astype(int)
    target = np.stack([test[i]["target"].numpy() for i in range(2)]).astype(int)
    _check_parcels(result, store, predicted, target)
    counted = sum(p["pixels"] for p in result["parcels"])
    right = sum(p["correct"] * p["pixels"] for p in result["parcels"])
    metrics = result["metrics"]
    assert counted == metrics["tp"] + metrics["fp"] + metrics["fn"] + metrics["tn"]
    assert right == pytest.approx(metrics["tp"] + metrics["tn"])
    for score in result["parcels"]:
        assert score["predicted"] in ("maize", "other")


def test_every_observed_composite_gets_its_iou_interval_over_parcels(store, checkpoints, capsys):
    """``timesteps="all"``: the IoU at each t with its parcel interval, the full season's
    that of the headline, an early one scored on the maps cut to t."""
    result = evaluate(checkpoints["binary"], store, timesteps="all")
    intervals = result["early_season_intervals"]
    steps = sorted(result["early_season"])
    assert sorted(intervals) == steps and len(steps) > 1
    for t in steps:
        assert _same(intervals[t]["estimate"], result["early_season"][t]["iou"])
        assert intervals[t]["low"] <= intervals[t]["estimate"] <= intervals[t]["high"]
    assert intervals[steps[-1]] == result["intervals"]["iou"]
    with pytest.warns(UserWarning, match="trained on full seasons only"):
        early = evaluate(checkpoints["binary"], store, timesteps=steps[0])
    assert intervals[steps[0]] == early["intervals"]["iou"]
    assert "early_season_intervals" not in evaluate(checkpoints["multi"], store, timesteps="all")
    assert main(["evaluate", checkpoints["binary"], store, "--timesteps", "all"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[-4:] == ["IoU", "95", "%", "CI"]
    low, high = intervals[steps[0]]["low"], intervals[steps[0]]["high"]
    assert rows[2].endswith(f"[{low:.3f}, {high:.3f}]")
    assert rows[2 + len(steps)].startswith("CI: from a bootstrap over the split's parcels")


def test_a_crop_type_evaluation_has_intervals_per_class_and_for_the_miou(store, checkpoints):
    result = evaluate(checkpoints["multi"], store)
    classes = [*CROPS, "other"]
    assert list(result["intervals"]) == [*classes, "miou"]
    for name in classes:
        per_class = result["metrics"]["per_class"][name]["iou"]
        assert _same(result["intervals"][name]["estimate"], per_class)
    assert _same(result["intervals"]["miou"]["estimate"], result["metrics"]["miou"])
    model, _ = load_checkpoint(checkpoints["multi"])
    test = PatchDataset(store, "test", classes=classes)
    with torch.inference_mode():
        logits = model(torch.stack([test[i]["image"] for i in range(2)]))
    predicted = logits.argmax(dim=1).numpy()
    target = np.stack([test[i]["target"].numpy() for i in range(2)])
    _check_parcels(result, store, predicted, target)
    assert {p["predicted"] for p in result["parcels"]} <= set(classes)


def test_a_forest_reports_the_same_view_at_its_headline_step(store):
    full = run_baseline(store, FOREST, positive="maize", jobs=1)
    early = run_baseline(store, FOREST, positive="maize", timesteps=2, jobs=1)
    for result in (full, early):
        record = result.by_parcel()
        for metric in METRICS:
            assert _same(record["intervals"][metric]["estimate"], getattr(result.metrics, metric))
    assert early.headline_timesteps == 2 and full.headline_timesteps == 4


def test_pixels_without_data_are_left_out_as_in_the_metrics(store, tmp_path):
    opened = DatasetStore(store)
    images = np.stack([opened.read_image(i) for i in range(len(opened))])
    labels = np.stack([opened.read_labels(i) for i in range(len(opened))])
    test = opened.indices("test")
    images[test[0], :, :, 2:7, 2:7] = np.nan  # no data on part of a test patch's fields
    holes = str(write_store(tmp_path / "holes.zarr", images, labels, opened.metadata))
    result = run_baseline(holes, FOREST, positive="maize", jobs=1)
    record = result.by_parcel()
    assert record["intervals"]["iou"]["estimate"] == pytest.approx(result.metrics.iou)
    counted = sum(p["pixels"] for p in record["parcels"])
    assert counted == result.metrics.total
    # Without labelled test pixels there is nothing to resample.
    labels[test] = -1
    bare = write_store(tmp_path / "bare.zarr", images, labels, opened.metadata)
    empty = evaluation_by_parcel(PatchDataset(bare, "test", "maize"), np.zeros((2, 16, 16)))
    assert empty["intervals"] == {} and empty["parcels"] == []


def test_cli_prints_the_intervals_and_lists_the_parcels_worst_first(
    store, checkpoints, tmp_path, capsys
):
    out = tmp_path / "scores.json"
    assert main(["evaluate", checkpoints["binary"], store, "--parcels", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["parcels"] == evaluate(checkpoints["binary"], store)["parcels"]
    n = written["intervals"]["iou"]["n_parcels"]
    assert f"95 % intervals, bootstrap over {n} parcels: IoU [" in printed
    table = printed.split("patches\n", 1)[1].split("metrics: ")[0]
    rows = table.strip().splitlines()
    assert len(rows) == len(written["parcels"])
    shares = [float(row.split()[3]) for row in rows]
    assert shares == sorted(shares)
    forest = ["baseline", store, "--positive", "maize", "--n-estimators", "4", "--jobs", "1"]
    assert main([*forest, "--out", str(tmp_path / "rf.json")]) == 0
    printed = capsys.readouterr().out
    assert "bootstrap over" in printed and "patches\n" not in printed
    record = json.loads((tmp_path / "rf.json").read_text())
    assert record["method"] == "random_forest" and record["parcels"]


def test_labels_read_at_once_still_name_a_damaged_patch(store, tmp_path):
    opened = DatasetStore(store)
    images = np.stack([opened.read_image(i) for i in range(len(opened))])
    labels = np.stack([opened.read_labels(i) for i in range(len(opened))])
    copy = write_store(tmp_path / "copy.zarr", images, labels, opened.metadata)
    assert np.array_equal(store_labels(DatasetStore(copy)), labels)
    chunk = sorted((copy / "labels").rglob("c/5/*/*"))
    assert len(chunk) == 1
    chunk[0].write_bytes(b"not a chunk")
    with pytest.raises(InputDataError, match="labels of patch 5 unreadable") as info:
        store_labels(DatasetStore(copy))
    assert str(copy) in str(info.value)


def test_an_interval_over_one_parcel_of_its_class_is_undefined(store, tmp_path):
    """A class in one test parcel: the draws without it are undefined and dropped, those with
    it repeat one value, and the interval printed as [0.309, 0.309] looked exact."""
    from sarcrop.cli.evaluate import format_table
    from sarcrop.cli.shared import format_intervals

    opened = DatasetStore(store)
    images = np.stack([opened.read_image(i) for i in range(len(opened))])
    labels = np.stack([opened.read_labels(i) for i in range(len(opened))])
    test = opened.indices("test")
    potato = CLASSES.index("potato")
    labels[test[0]][labels[test[0]] == potato] = 0  # potato left in one test parcel
    one = write_store(tmp_path / "one.zarr", images, labels, opened.metadata)
    classes = [*CROPS, "other"]
    dataset = PatchDataset(one, "test", classes=classes)
    target = np.stack([dataset.target(i)[0] for i in range(len(dataset))])
    record = evaluation_by_parcel(dataset, target)  # a perfect map
    for name in ("maize", "grassland", "miou"):
        assert record["intervals"][name]["low"] == record["intervals"][name]["high"] == 1.0
    undefined = record["intervals"]["potato"]
    assert undefined["estimate"] == 1.0 and undefined["low"] is None is undefined["high"]
    assert undefined["class_parcels"] == 1
    assert undefined["undefined"].startswith("potato lies in 1 test parcel")
    json.dumps(record, allow_nan=False)  # bounds are null in the JSON, not NaN
    printed = format_intervals(record)
    assert "potato n/a (1 parcel)" in printed and "maize [1.000, 1.000]" in printed
    # One crop: its metrics rest on its parcels; so does the early-season IoU column.
    binary = PatchDataset(one, "test", "potato")
    target = np.stack([binary.target(i)[0] for i in range(len(binary))])
    record = evaluation_by_parcel(binary, target, early={2: target})
    assert all(i["low"] is None and i["class_parcels"] == 1 for i in record["intervals"].values())
    assert "IoU n/a (1 parcel)" in format_intervals(record)
    metrics = dict.fromkeys(METRICS, 1.0)
    result = {
        "checkpoint": "m",
        "store": "s",
        "split": "test",
        "patches": 2,
        "positive": ["potato"],
        "timesteps": 2,
        "metrics": metrics,
        "early_season": {2: metrics},
        **record,
    }
    assert format_table(result).splitlines()[2].endswith("n/a (1 parcel)")
