"""The Random Forest saved as a checkpoint: it maps with ``predict`` and is scored by ``evaluate``
as the forest of ``sarcrop baseline`` scores, tree for tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sarcrop.cli import main
from sarcrop.data.prepare import prepare_region
from sarcrop.data.simulate import simulate_region
from sarcrop.data.store import DatasetStore
from sarcrop.errors import CheckpointError, SarcropError
from sarcrop.evaluation.baseline import (
    RandomForestBaseline,
    predict_proba_patches,
    run_baseline,
)
from sarcrop.evaluation.feature_forest import run_feature_forest
from sarcrop.models.forest import TreeEnsemble, float32_at_most
from sarcrop.options import (
    BaselineOptions,
    ExecutionOptions,
    MapOptions,
    SplitOptions,
    TilingOptions,
    WindowOptions,
)
from sarcrop.prediction import predict_map
from sarcrop.training import evaluate, finetune
from sarcrop.training.checkpoint import load_checkpoint, read_metadata

STEPS, BANDS = 8, 2
OPTIONS = BaselineOptions(n_estimators=20, max_samples_per_class=3000)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated region and its store of 16 px patches, split 60/40."""
    root = tmp_path_factory.mktemp("forest")
    simulate_region("spain", root / "spain", seed=5, size=(64, 80))
    store = prepare_region(
        root / "spain", root / "spain.zarr", tiling=TilingOptions(patch_size=16), progress=False
    )
    return root / "spain", Path(store)


@pytest.fixture(scope="module")
def saved(region: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    result = run_baseline(region[1], OPTIONS, jobs=2)
    path = result.save(tmp_path_factory.mktemp("model") / "forest.safetensors")
    return result, path


@pytest.fixture(scope="module")
def saved_on_features(region: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    result = run_feature_forest("europe-maize", region[1], OPTIONS, jobs=2)
    return result, result.save(tmp_path_factory.mktemp("features") / "forest.safetensors")


def random_forest(classes: int, seed: int = 0) -> RandomForestBaseline:
    rng = np.random.default_rng(seed)
    X = rng.random((3000, STEPS * BANDS)).astype(np.float32)
    score = X[:, 3] + 0.5 * X[:, 9] + rng.normal(0, 0.2, len(X))
    y = np.digitize(score, np.linspace(0.5, 1.2, classes - 1))
    return RandomForestBaseline(25, n_jobs=2, n_classes=classes).fit(
        X, y, feature_shape=(STEPS, BANDS)
    )


@pytest.mark.parametrize("classes", [2, 4])
def test_the_trees_give_the_forests_probabilities(classes: int) -> None:
    forest = random_forest(classes)
    trees = TreeEnsemble.from_forest(forest.estimator_, BANDS, STEPS, classes)
    images = np.random.default_rng(1).random((3, STEPS, BANDS, 24, 20)).astype(np.float32)
    with torch.inference_mode():
        for t in (STEPS, 3, 1):  # the full season, and seasons cut short (zero-padded)
            logits = trees(torch.from_numpy(images[:, :t]))
            expected = predict_proba_patches(forest, images, timesteps=t)
            if classes == 2:
                got = torch.sigmoid(logits)[:, 0].numpy()
                expected = expected[:, 1]
            else:
                got = torch.softmax(logits, dim=1).numpy()
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=1e-6)
            assert np.array_equal(got >= 0.5, expected >= 0.5)


def test_thresholds_in_float32_split_float32_features_as_float64_ones_do() -> None:
    thresholds = np.array([0.1, 0.5, 1 / 3, 0.7 + 1e-12, -2.5e-8])
    stored = float32_at_most(thresholds)
    assert stored.dtype == np.float32 and (stored.astype(np.float64) <= thresholds).all()
    for value, threshold in zip(stored, thresholds, strict=True):
        around = np.nextafter(value, np.float32([-np.inf, np.inf]))
        for x in (*around, value):
            assert (x <= value) == (np.float64(x) <= threshold)


def test_the_threads_change_no_digit() -> None:
    trees = TreeEnsemble.from_forest(random_forest(2).estimator_, BANDS, STEPS, 2)
    pixels = np.random.default_rng(2).random((20000, STEPS * BANDS)).astype(np.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = trees.threaded(pixels)
        torch.set_num_threads(3)
        three = trees.threaded(pixels)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, three)


def test_a_saved_forest_scores_as_the_baseline_did(saved) -> None:
    result, path = saved
    meta = read_metadata(path)
    assert meta.architecture == "random_forest" and meta.bands == result.bands
    assert meta.learnt_early_seasons() is True  # the default forest learns zero-padded copies
    assert meta.training["ground"]  # evaluate refuses it on the ground it learnt
    assert meta.training["pixel_size"] == DatasetStore(result.store).pixel_size == 10.0
    assert meta.training["orbit"] == DatasetStore(result.store).orbit == "both"
    scored = evaluate(path, result.store)
    assert scored["metrics"]["iou"] == pytest.approx(result.metrics.iou, abs=1e-9)
    assert scored["metrics"]["tp"] == result.metrics.tp
    early = evaluate(path, result.store, timesteps=4)
    assert early["metrics"]["iou"] == pytest.approx(
        run_baseline(result.store, OPTIONS, timesteps=4, jobs=2).metrics.iou, abs=1e-9
    )


def test_predict_maps_the_area_with_the_forest(region, saved, tmp_path: Path) -> None:
    scenes, store_path = region
    result, path = saved
    out = predict_map(path, scenes, tmp_path / "map.tif", progress=False)
    with rasterio.open(out) as image:
        probability = image.read(1)
        assert (image.tags()["WINDOW"], image.tags()["OVERLAP"]) == ("256", "0")  # per pixel
    store = DatasetStore(store_path)
    expected = result.probabilities()
    for k, index in enumerate(store.indices("test")):
        row, col = store.metadata.offsets[index]
        mapped = probability[row : row + 16, col : col + 16]
        nodata = mapped == 255  # where no composite of the season has data
        assert np.array_equal(nodata, np.isnan(store.read_image(index)).all(axis=(0, 1)))
        difference = np.abs(mapped / 250 - expected[k])[~nodata]
        assert difference.max() <= 0.5 / 250 + 1e-6  # the band's rounding
    workers = ExecutionOptions(workers=2)
    on_dask = predict_map(path, scenes, tmp_path / "dask.tif", execution=workers, progress=False)
    with rasterio.open(out) as one, rasterio.open(on_dask) as two:
        assert np.array_equal(one.read(), two.read())  # the trees travel to the workers whole


def test_the_cli_saves_a_forest_that_predict_and_evaluate_take(region, tmp_path, capsys) -> None:
    scenes, store = region
    model = tmp_path / "rf.safetensors"
    flags = ["--n-estimators", "10", "--max-samples-per-class", "2000"]
    assert main(["baseline", str(store), *flags, "--save", str(model)]) == 0
    assert f"forest: {model}" in capsys.readouterr().out
    assert main(["evaluate", str(model), str(store)]) == 0
    assert main(["predict", str(model), "--images", str(scenes), "--out", str(tmp_path / "m.tif"),
                 "--quiet"]) == 0  # fmt: skip
    assert (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("kind", ["series", "features"])
def test_where_a_network_is_needed_a_forest_is_refused_in_one_line(
    region, saved, saved_on_features, kind, tmp_path
) -> None:
    scenes, store = region
    _, path = saved if kind == "series" else saved_on_features
    with pytest.raises(CheckpointError, match="has no network layers to fine-tune") as error:
        finetune(path, store, tmp_path / "ft", strategy="ft")
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="has no network layers to take features from"):
        run_feature_forest(path, store, OPTIONS, jobs=2)
    with pytest.raises(CheckpointError, match="onnx engine runs networks"):
        predict_map(
            path,
            scenes,
            tmp_path / "m.tif",
            execution=ExecutionOptions(engine="onnx"),
            progress=False,
        )


def test_a_forest_on_a_networks_features_maps_as_it_scored(
    region, saved_on_features, tmp_path: Path
) -> None:
    """The frozen network (adapted to the store's bands by Eq. 3, as it was fitted) travels
    with the trees; maps in windows of the store's patches give its test-split probabilities."""
    scenes, store_path = region
    result, path = saved_on_features
    meta = read_metadata(path)
    assert meta.architecture == "feature_forest" and meta.training["method"] == "feature_forest"
    assert meta.learnt_early_seasons() is False  # it learnt the features of full seasons
    assert evaluate(path, store_path)["metrics"]["iou"] == pytest.approx(
        result.metrics.iou, abs=1e-9
    )
    windows = WindowOptions(window=16, overlap=0)  # the patches' own windows
    out = predict_map(path, scenes, tmp_path / "map.tif", windows=windows, progress=False)
    with rasterio.open(out) as image:
        probability = image.read(1)
    store = DatasetStore(store_path)
    expected = result.probabilities()
    for k, index in enumerate(store.indices("test")):
        row, col = store.metadata.offsets[index]
        mapped = probability[row : row + 16, col : col + 16]
        seen = mapped != 255
        assert np.abs(mapped / 250 - expected[k])[seen].max() <= 0.5 / 250 + 1e-5
    default = predict_map(path, scenes, tmp_path / "default.tif", progress=False)
    with rasterio.open(default) as image:  # the network's patch size and its overlap
        assert (image.tags()["WINDOW"], image.tags()["OVERLAP"]) == ("16", "4")


def test_a_forest_file_pointing_outside_its_trees_is_refused(saved, tmp_path: Path) -> None:
    _, path = saved
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as opened:  # the metadata kept: only a tensor changes
        metadata = opened.metadata()
    bad = tmp_path / "bad.safetensors"
    second = int(tensors["roots"][1])
    for name, index, value, problem in [
        ("left", 0, len(tensors["left"]) + 5, "left holds node indices outside their own tree"),
        ("right", 0, second + 1, "right holds node indices outside their own tree"),
        ("roots", 1, 0, "roots are not increasing"),
        ("feature", 0, STEPS * BANDS, "feature holds indices outside 0..15"),
        ("left", 1, 0, "a child does not come after its node"),  # a walk in circles
        ("value", 0, float("nan"), "value holds class shares that are negative or not finite"),
    ]:
        changed = {key: tensor.clone() for key, tensor in tensors.items()}
        changed[name][index] = value
        save_file(changed, str(bad), metadata=metadata)
        with pytest.raises(CheckpointError, match=problem):
            load_checkpoint(bad)
    deeper = json.loads(metadata["sarcrop"])
    deeper["options"]["depth"] = 10**9  # a walk that would never end
    save_file(tensors, str(bad), metadata={**metadata, "sarcrop": json.dumps(deeper)})
    with pytest.raises(CheckpointError, match="deeper than any tree's node count"):
        load_checkpoint(bad)
    with pytest.raises(SarcropError):
        evaluate(bad, Path(read_metadata(path).training["ground"][0]["store"]))


def test_a_store_of_train_patches_gives_a_forest_of_every_field(region, tmp_path, capsys) -> None:
    """Every labelled patch learnt (``prepare --split train``): nothing to score, a map to make;
    without --save the command says where to score instead."""
    scenes, _ = region
    store = prepare_region(
        scenes,
        tmp_path / "all.zarr",
        tiling=TilingOptions(patch_size=16),
        split=SplitOptions(method="train"),
        progress=False,
    )
    assert main(["baseline", str(store), "--n-estimators", "10"]) == 2
    assert "has no test patches: score on --test-store, or --save" in capsys.readouterr().err
    result = run_baseline(store, OPTIONS, jobs=2)
    assert not result.scored and result.test_patches == 0
    with pytest.raises(ValueError, match="fitted, not scored"):
        _ = result.metrics
    model = tmp_path / "rf.safetensors"
    assert main(["baseline", str(store), "--n-estimators", "10", "--save", str(model)]) == 0
    assert "not scored" in capsys.readouterr().out
    out = predict_map(model, scenes, tmp_path / "map.tif", progress=False)
    with rasterio.open(out) as image:
        assert (image.read(2) == 1).any() and (image.read(2) == 0).any()


def test_a_crop_type_forest_maps_its_classes_or_one_of_them(region, tmp_path: Path) -> None:
    scenes, store = region
    options = OPTIONS.updated(classes=("rice", "grassland", "other"))
    result = run_baseline(store, options, jobs=2)
    path = result.save(tmp_path / "types.safetensors")
    scored = evaluate(path, store)
    assert scored["classes"] == ["rice", "grassland", "other"]
    assert scored["metrics"]["miou"] == pytest.approx(result.class_metrics.miou, abs=1e-9)
    rice = evaluate(path, store, positive="rice")  # the summed probability of the classes read
    probabilities = result.probabilities()  # (N, K, H, W)
    dataset = result.test_set()
    hits = union = 0
    for i in range(len(dataset)):
        item = dataset[i]
        seen = item["valid"].numpy() & np.isfinite(probabilities[i]).all(axis=0)
        mapped, truth = probabilities[i, 0] >= 0.5, item["target"].numpy() == 0
        hits += int((mapped & truth & seen).sum())
        union += int(((mapped | truth) & seen).sum())
    assert rice["metrics"]["iou"] == pytest.approx(hits / union, abs=1e-9)
    types = predict_map(path, scenes, tmp_path / "types.tif", progress=False)
    one = predict_map(
        path, scenes, tmp_path / "rice.tif", output=MapOptions(positive=("rice",)), progress=False
    )
    with rasterio.open(types) as every, rasterio.open(one) as read:
        assert read.count == 2 and every.count == 4  # probability and class; class and one each
        rice_band, probability = every.read(2).astype(int), read.read(1).astype(int)
        assert np.abs(rice_band - probability).max() <= 1  # the same probability, rounded
