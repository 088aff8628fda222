"""Crop-type maps: several classes at once, from dataset to metrics, transfer and the baseline.

A tiny store holds four crops with their own backscatter curves on an "other" background. The
binary path (one positive class) is checked to be what it was: same targets, loss, metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.crs import CRS
from sklearn.metrics import accuracy_score, cohen_kappa_score, jaccard_score

from sarcrop.cli import main
from sarcrop.data.dataset import PatchDataset
from sarcrop.data.grid import Grid
from sarcrop.data.labels import binary_target, class_lookup, class_target
from sarcrop.data.normalization import Normalization
from sarcrop.data.season import Season
from sarcrop.data.store import DatasetStore, StoreMetadata, write_store
from sarcrop.errors import CheckpointError, ConfigError, InputDataError
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.evaluation.metrics import (
    BinaryConfusion,
    EvaluationInputError,
    MulticlassConfusion,
    read_metrics_json,
    write_metrics_json,
)
from sarcrop.models import build_model
from sarcrop.options import BaselineOptions
from sarcrop.training import TrainConfig, apply_strategy, load_checkpoint, read_metadata
from sarcrop.training.api import (
    _training_data,
    evaluate,
    finetune,
    resolved_class_weight,
    train,
)
from sarcrop.training.checkpoint import save_checkpoint
from sarcrop.training.config import AUTO_POS_WEIGHT_CAP, validate_config
from sarcrop.training.losses import (
    SegmentationLoss,
    balanced_class_weights,
    masked_bce,
    soft_dice,
)
from sarcrop.training.ordering import pad_steps
from sarcrop.training.strategies import head_rows, parent_names, replace_head

STEPS, SIZE, N = 4, 16, 8
CLASSES = ["other", "maize", "potato", "grassland", "wheat"]
CROPS = ["maize", "potato", "grassland"]  # wheat is left out of most class lists
OPTIONS = {"widths": [4, 8], "dropout": 0.0, "norm": "batch"}
CURVES = {1: [-12, -4, 4, 2], 2: [2, 6, -3, -8], 3: [5, 5, 5, 5], 4: [-6, 3, 3, -6]}


def make_store(path, seed: int = 0, *, east: float = 600000.0, split=None) -> str:
    """Raw dB patches: one field of each crop (class 1-4) per patch on a class-0 background,
    in a row from ``east`` (metres, UTM 31N); the last two patches test unless ``split``."""
    rng = np.random.default_rng(seed)
    images = rng.normal(-15.0, 1.0, (N, STEPS, 1, SIZE, SIZE)).astype(np.float32)
    labels = np.zeros((N, SIZE, SIZE), np.int16)
    corners = [(0, 0), (0, 8), (8, 0), (8, 8)]
    for i in range(N):
        order = rng.permutation(4)
        for k, (r, c) in zip(order + 1, corners):
            size = int(rng.integers(4, 8))
            labels[i, r : r + size, c : c + size] = k
            images[i, :, 0, r : r + size, c : c + size] += np.array(CURVES[int(k)])[:, None, None]
    labels[:, :, 0] = -1  # an unlabelled column
    meta = StoreMetadata(
        bands=("VH",),
        season=Season(dt.date(2021, 5, 1), STEPS, 20),
        grid=Grid(CRS.from_epsg(32631), Affine(10, 0, east, 0, -10, 5800000), SIZE * N, SIZE),
        patch_size=SIZE,
        stride=SIZE,
        offsets=[(0, SIZE * i) for i in range(N)],
        classes=CLASSES,
        split=list(split or ["train"] * (N - 2) + ["test"] * 2),
        normalization=Normalization((-30.0,), (0.0,), ("VH",)),
        region="netherlands",
        year=2021,
        positive=["maize"],
    )
    write_store(path, images, labels, meta)
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return make_store(tmp_path_factory.mktemp("mc") / "store.zarr")


def quick(**changes) -> TrainConfig:
    base = dict(
        epochs=1,
        batch_size=3,
        lr=3e-2,
        scheduler="none",
        patience=None,
        accelerator="cpu",
        progress_bar=False,
        val_fraction=0.34,
    )
    return TrainConfig(**{**base, **changes})


# ---------------------------------------------------------------------------- targets


def test_class_targets_follow_the_list_order_and_other():
    labels = np.array([[-1, 0, 1], [2, 3, 4]], np.int16)
    target, valid = class_target(labels, CLASSES, ["Potato", "maize", "other"])
    assert valid.tolist() == [[False, True, True], [True, True, True]]
    assert target[valid].tolist() == [2, 1, 0, 2, 2]  # other gathers background, grass, wheat
    target, valid = class_target(labels, CLASSES, ["maize", "potato"])
    assert valid.tolist() == [[False, False, True], [True, False, False]]
    assert target[valid].tolist() == [0, 1] and target.dtype == np.int64
    assert class_lookup(CLASSES, ["maize", "potato"])[-1] == -1  # the label -1 stays unlabelled
    with pytest.raises(InputDataError, match="'rice' is not in the labels"):
        class_lookup(CLASSES, ["maize", "rice"])
    with pytest.raises(InputDataError, match="at least two"):
        class_lookup(CLASSES, ["maize"])
    with pytest.raises(InputDataError, match="twice"):
        class_lookup(CLASSES, ["maize", "Maize"])


def test_classes_a_store_lacks_are_named_with_the_store(store):
    """One line naming the store, as every input error does (a fine-tuning to crop types on a
    store prepared for one crop against the rest fails here)."""
    with pytest.raises(InputDataError) as err:
        PatchDataset(store, "train", classes="maize,rice,barley,other")
    assert err.value.path == str(DatasetStore(store).path)
    assert err.value.problem.startswith("classes 'rice', 'barley' are not in the labels; ")
    with pytest.raises(InputDataError, match="positive class 'rice' is not in") as err:
        PatchDataset(store, "train", "rice")
    assert err.value.path == str(DatasetStore(store).path)


def test_dataset_with_classes_and_binary_default(store):
    binary = PatchDataset(store, "train", "maize")
    multi = PatchDataset(store, "train", classes="maize,potato,grassland,other")
    crops = PatchDataset(store, "train", classes=CROPS)
    for i in range(len(binary)):
        labels = binary.labels(i)
        item = binary[i]
        target, valid = binary_target(labels, CLASSES, "maize")
        assert item["target"].dtype == torch.float32
        assert np.array_equal(item["target"].numpy(), target) and np.array_equal(
            item["valid"].numpy(), valid
        )
        many = multi[i]
        assert many["target"].dtype == torch.int64
        assert np.array_equal(many["valid"].numpy(), labels >= 0)
        assert torch.equal(many["image"], item["image"])
        # Without "other", background and wheat pixels are not valid.
        assert np.array_equal(crops[i]["valid"].numpy(), np.isin(labels, [1, 2, 3]))
    counts = multi.target_counts()
    labels = np.stack([multi.labels(i) for i in range(len(multi))])
    expected = [(labels == k).sum() for k in (1, 2, 3)] + [np.isin(labels, [0, 4]).sum()]
    assert counts.tolist() == expected
    assert binary.target_counts().tolist() == list(binary.class_counts())
    assert "classes=" in repr(multi) and "positive=" in repr(binary)


def test_class_weights_are_capped_inverse_frequencies():
    weights = balanced_class_weights([600, 300, 100, 0], cap=5.0)
    assert weights[0] == pytest.approx(1000 / (4 * 600))
    assert weights[1] == pytest.approx(1000 / (4 * 300))
    assert weights[2] == pytest.approx(2.5) and weights[3] == 5.0
    assert balanced_class_weights([1, 10_000], cap=20.0)[0] == 20.0
    assert balanced_class_weights([50, 50, 50], cap=20.0) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="no"):
        balanced_class_weights([0, 0], cap=20.0)


@pytest.mark.parametrize("pos_weight", ["auto", 1.0])
def test_a_class_without_a_training_pixel_is_warned_of(pos_weight):
    """Winter cereal in a year that grew none: trained without a word before, its output
    learnt from nothing."""
    target = np.array([[0, 0], [2, 2]])  # maize and other; no winter cereal
    patches = [{"target": target, "valid": np.ones_like(target, dtype=bool)}] * 2
    config = quick(classes=["maize", "winter_cereal", "other"], pos_weight=pos_weight)
    with pytest.warns(UserWarning, match="^class winter_cereal has no labelled pixel among"):
        resolved_class_weight(config, patches)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolved_class_weight(
            quick(classes=["maize", "other"], pos_weight=pos_weight),
            [{"target": np.array([[0, 1]]), "valid": np.ones((1, 2), dtype=bool)}],
        )  # type: ignore[arg-type]


def test_few_label_crop_type_data_and_class_weights(store):
    opened = DatasetStore(store)
    stats = opened.normalization.to_dict()
    config = quick(classes=[*CROPS, "other"], label_fraction=0.5, pos_weight="auto", seed=2)
    train_data, _, record = _training_data(opened, [], ["VH"], stats, config)
    assert record["fraction"] == 0.5 and 0 < record["parcels"] < record["total_parcels"]
    assert train_data.dataset.target_classes == [*CROPS, "other"]
    items = [train_data[i] for i in range(len(train_data))]
    kept = sum(int(x["valid"].sum()) for x in items)
    everything = PatchDataset(opened, train_data.dataset.indices, classes=config.classes)
    assert 0 < kept < sum(int(everything[i]["valid"].sum()) for i in train_data.indices)
    # Counted from the labels alone, or item by item (any dataset): the same weights.
    weights = resolved_class_weight(config, train_data)
    assert weights == resolved_class_weight(config, items)  # type: ignore[arg-type]
    counts = np.bincount(
        np.concatenate([x["target"][x["valid"]].numpy() for x in items]), minlength=4
    )
    assert weights == balanced_class_weights(counts, AUTO_POS_WEIGHT_CAP)
    assert resolved_class_weight(quick(classes=CROPS), train_data) is None
    # The smallest subset still holds a parcel of every class (here one of each).
    tiny = quick(classes=[*CROPS, "other"], label_fraction=0.01, seed=2, val_fraction=0)
    few_data, _, few_record = _training_data(opened, [], ["VH"], stats, tiny)
    few_items = [few_data[i] for i in range(len(few_data))]
    present = np.concatenate([x["target"][x["valid"]].numpy() for x in few_items])
    assert few_record["parcels"] == 4 and set(present.tolist()) == {0, 1, 2, 3}
    with pytest.raises(ConfigError, match="pos_weight"):
        resolved_class_weight(quick(classes=CROPS, pos_weight=2.0), train_data)


# ---------------------------------------------------------------------------- loss


def test_multiclass_loss_masks_and_weights_and_binary_loss_is_unchanged():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 5))
    valid = torch.rand(2, 5, 5) > 0.3
    ce = SegmentationLoss("bce")(logits, target, valid)
    reference = F.cross_entropy(logits.movedim(1, -1)[valid], target[valid])
    assert ce.item() == pytest.approx(reference.item())
    weight = [1.0, 2.0, 0.5]
    weighted = SegmentationLoss("bce", class_weight=weight)(logits, target, valid)
    reference = F.cross_entropy(
        logits.movedim(1, -1)[valid], target[valid], weight=torch.tensor(weight)
    )
    assert weighted.item() == pytest.approx(reference.item())
    # Logits and targets of unlabelled pixels change nothing.
    assert (~valid).any()
    noise = 100.0 * torch.randn_like(logits)
    other = torch.where(valid[:, None], logits.detach(), noise)
    shuffled = torch.where(valid, target, (target + 1) % 3)
    loss = SegmentationLoss("bce+dice")
    assert loss(other, shuffled, valid).item() == pytest.approx(loss(logits, target, valid).item())
    total = loss(logits, target, valid)
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    perfect = F.one_hot(target, 3).movedim(-1, 1).float() * 50.0
    assert SegmentationLoss("dice")(perfect, target, valid).item() < 0.01

    binary_logits = torch.randn(2, 1, 5, 5)
    binary_target_ = (torch.rand(2, 5, 5) > 0.5).float()
    expected = masked_bce(binary_logits[:, 0], binary_target_, valid, 3.0) + 0.5 * soft_dice(
        binary_logits[:, 0], binary_target_, valid
    )
    got = SegmentationLoss("bce+dice", pos_weight=3.0, dice_weight=0.5)(
        binary_logits, binary_target_, valid
    )
    assert got.item() == expected.item()


# ---------------------------------------------------------------------------- metrics


def test_confusion_matrix_metrics_match_sklearn(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, (3, 6, 6))
    pred = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(0, 4, truth.shape))
    valid = rng.random(truth.shape) > 0.2
    names = ["a", "b", "c", "d"]
    confusion = MulticlassConfusion(names).update(pred, truth, valid)
    t, p = truth[valid], pred[valid]
    assert confusion.total == valid.sum()
    assert confusion.accuracy == pytest.approx(accuracy_score(t, p))
    assert confusion.kappa == pytest.approx(cohen_kappa_score(t, p))
    iou = jaccard_score(t, p, average=None, labels=range(4))
    assert np.allclose(confusion.iou, iou) and confusion.miou == pytest.approx(iou.mean())
    # Scores (N, K, H, W) as tensors are argmaxed; batches add up like one big update.
    scores = torch.from_numpy(np.eye(4)[pred]).movedim(-1, 1)
    halves = MulticlassConfusion(names).update(scores[:2], truth[:2], valid[:2])
    halves = halves + MulticlassConfusion(names).update(
        scores[2:], torch.from_numpy(truth[2:]), torch.from_numpy(valid[2:])
    )
    assert np.array_equal(halves.counts, confusion.counts)
    # A class never present nor predicted is left out of the mIoU; JSON keeps it as null.
    sparse = MulticlassConfusion(["x", "y", "z"]).update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert np.isnan(sparse.iou[2]) and sparse.miou == pytest.approx((0.5 + 0.5) / 2)
    path = write_metrics_json(tmp_path / "m.json", {"metrics": sparse})
    back = read_metrics_json(path)["metrics"]
    assert np.isnan(back["per_class"]["z"]["iou"]) and back["confusion"] == sparse.counts.tolist()
    assert np.array_equal(MulticlassConfusion.from_dict(back).counts, sparse.counts)
    with pytest.raises(ValueError, match="class indices"):
        MulticlassConfusion(names).update(np.array([5]), np.array([0]))


@pytest.mark.parametrize(
    ("pred", "target"),
    [
        ([0, 1], [0, np.nan]),  # an unlabelled pixel not masked
        ([0.7, 1.2], [0, 1]),  # fractions are no class
        ([0, 1], [0.0, 1.5]),
    ],
)
def test_confusion_refuses_nan_and_fractional_classes(pred, target):
    """A NaN or a fraction on a valid pixel would be counted as some class by the cast."""
    confusion = MulticlassConfusion(["a", "b"])
    with pytest.raises(EvaluationInputError, match=r"class indices 0\.\.1 on valid pixels"):
        confusion.update(np.array(pred), np.array(target))
    with pytest.raises(EvaluationInputError, match="class indices"):
        confusion.update(torch.tensor(pred), torch.tensor(target))
    assert confusion.total == 0


def test_confusion_takes_integral_floats_and_masked_nan():
    """Integral floats are class indices (a label raster read as float); masked NaN is out."""
    target = np.array([0.0, 1.0, np.nan])
    valid = np.array([True, True, False])
    confusion = MulticlassConfusion(["a", "b"]).update(np.array([0, 1, 0]), target, valid)
    assert confusion.counts.tolist() == [[1, 0], [0, 1]]


# ---------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def parents(store, tmp_path_factory) -> dict[str, str]:
    """A binary (maize) and a crop-type (maize, potato, grassland, other) pre-trained model."""
    root = tmp_path_factory.mktemp("parents")
    binary = train(store, root / "bin", positive="maize", config=quick(), model_options=OPTIONS)
    multi = train(
        store,
        root / "multi",
        config=quick(classes=",".join([*CROPS, "other"]), pos_weight="auto"),
        model_options=OPTIONS,
    )
    return {"binary": str(binary.checkpoint), "multi": str(multi.checkpoint)}


def test_train_and_evaluate_a_crop_type_model(parents, store, tmp_path):
    classes = ["maize", "potato", "grassland", "other"]
    checkpoint = parents["multi"]
    meta = read_metadata(checkpoint)
    assert meta.target_classes == classes and meta.options["out_channels"] == 4
    assert meta.training["selection"] == "best val_miou" and len(meta.training["class_weight"]) == 4
    assert 0 <= meta.training["best_val_iou"] <= 1  # the best validation mIoU

    scores = evaluate(checkpoint, store, timesteps="all", out=tmp_path / "m.json")
    assert scores["classes"] == classes and "threshold" not in scores
    assert list(scores["early_season"]) == [1, 2, 3, 4]
    # The metrics are those of the model's argmax over the test split's valid pixels.
    model, _ = load_checkpoint(checkpoint)
    test = PatchDataset(store, "test", classes=classes)
    expected = MulticlassConfusion(classes)
    with torch.inference_mode():
        for i in range(len(test)):
            item = test[i]
            logits = model(pad_steps(item["image"][None], 2))
            expected.update(logits, item["target"][None], item["valid"][None])
    assert scores["early_season"][2]["confusion"] == expected.counts.tolist()
    assert scores["metrics"]["miou"] == pytest.approx(
        MulticlassConfusion.from_dict(scores["metrics"]).miou
    )
    assert json.loads((tmp_path / "m.json").read_text())["classes"] == classes


def test_binary_runs_are_unchanged_by_class_lists(parents, store):
    assert "classes" not in quick().fingerprint()
    checkpoint = parents["binary"]
    meta = read_metadata(checkpoint)
    assert meta.target_classes is None and meta.options["out_channels"] == 1
    assert meta.training["selection"] == "best val_iou" and "pos_weight" in meta.training
    run = json.loads((Path(checkpoint).parent / "run.json").read_text())
    assert "target_classes" not in run["fingerprint"]["metadata"]
    assert "classes" not in run["fingerprint"]["config"]
    scores = evaluate(checkpoint, store, timesteps=3)
    assert scores["positive"] == ["maize"] and "classes" not in scores
    # The positive class's confusion of sigmoid >= threshold, as always.
    model, _ = load_checkpoint(checkpoint)
    test = PatchDataset(store, "test", "maize")
    expected = BinaryConfusion()
    with torch.inference_mode():
        for i in range(len(test)):
            item = test[i]
            prob = torch.sigmoid(model(pad_steps(item["image"][None], 3)))[:, 0]
            expected.update(prob, item["target"][None], item["valid"][None])
    assert scores["metrics"] == expected.as_dict()


def _state(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0].state_dict()


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(a[k], b[k]) for k in keys)


@pytest.mark.parametrize(
    ("strategy", "last_k", "trainable"),
    [
        ("fte", None, ("encoder.", "decoder.head.")),
        ("ftd", 1, ("decoder.blocks.1.", "decoder.head.")),
        ("probe", None, ("decoder.head.",)),
        ("ft", None, ("encoder.", "decoder.")),
    ],
)
def test_a_new_head_trains_under_every_strategy(strategy, last_k, trainable):
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 1, STEPS, widths=[4, 8, 16])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_strategy(model, strategy, last_k, head_channels=5)
    assert (
        model.options["out_channels"] == 5 and model(torch.zeros(1, STEPS, 1, 8, 8)).shape[1] == 5
    )
    for name, param in model.named_parameters():
        assert param.requires_grad == name.startswith(trainable), name
        if not name.startswith("decoder.head."):
            assert torch.equal(param, before[name]), name  # only the head is new
    rebuilt = build_model("recurrent_unet", 1, STEPS, **model.options)
    rebuilt.load_state_dict(model.state_dict())  # the options rebuild the new architecture


@pytest.mark.parametrize(
    ("parent", "classes", "channels"),
    [("binary", CROPS, 3), ("multi", None, 1), ("multi", ["maize", "wheat"], 2)],
)
def test_fte_to_another_class_set_keeps_the_decoder_and_learns_a_new_head(
    parents, store, tmp_path, parent, classes, channels
):
    config = quick(classes=classes)
    crop = "wheat"  # one the crop-type parent does not map (its "other")
    named = crop if classes is None else None  # a crop-type map is not named by a crop
    result = finetune(
        parents[parent], store, tmp_path / "fte", strategy="fte", positive=named, config=config
    )
    meta = read_metadata(result.checkpoint)
    assert meta.options["out_channels"] == channels and "merged_head" not in meta.options
    assert meta.target_classes == (list(classes) if classes else None)
    assert meta.positive == ([] if classes else [crop]) and "new_head" in meta.training
    before, after = _state(parents[parent]), _state(result.checkpoint)
    assert _same(before, after, "decoder.blocks.")  # frozen by fte
    assert not _same(before, after, "encoder.")  # trained
    assert after["decoder.head.weight"].shape[0] == channels
    scores = evaluate(result.checkpoint, store)
    assert ("miou" in scores["metrics"]) == (classes is not None)


def test_same_class_set_keeps_the_pretrained_head(parents, store, tmp_path):
    config = quick(classes=[*CROPS, "other"])
    result = finetune(parents["multi"], store, tmp_path / "fte", strategy="fte", config=config)
    assert "new_head" not in read_metadata(result.checkpoint).training
    assert _same(_state(parents["multi"]), _state(result.checkpoint), "decoder.")
    ft = finetune(
        parents["binary"], store, tmp_path / "ri", strategy="ri", config=quick(classes=CROPS)
    )
    assert read_metadata(ft.checkpoint).options["out_channels"] == 3


# ---------------------------------------------------------------------------- baseline, CLI


def test_random_forest_learns_the_same_classes(store):
    classes = ("maize", "potato", "grassland", "other")
    options = BaselineOptions(n_estimators=8, classes=",".join(classes), early_season=False)
    result = run_baseline(store, options, timesteps="all", jobs=1)
    assert result.classes == list(classes) and not result.confusions
    test = PatchDataset(store, "test", classes=classes)
    valid = sum(int(test[i]["valid"].sum()) for i in range(len(test)))
    assert all(c.total == valid for c in result.class_confusions.values())
    record = result.to_dict()
    assert record["classes"] == list(classes) and set(record["early_season"]) == {1, 2, 3, 4}
    assert record["metrics"]["miou"] > 0.5  # distinct curves: the forest separates the crops
    assert set(record["training_pixels"]) == {0, 1, 2, 3}
    binary = run_baseline(store, BaselineOptions(n_estimators=8, early_season=False), jobs=1)
    assert binary.classes is None and binary.metrics.total == binary.confusions[STEPS].total


def test_cli_train_evaluate_baseline_with_classes(store, tmp_path, capsys):
    out = tmp_path / "cli"
    common = ["--epochs", "1", "--batch-size", "3", "--quiet", "--accelerator", "cpu"]
    args = ["--classes", "maize,potato,other", "--model-options", json.dumps(OPTIONS)]
    assert main(["train", store, "--out", str(out), *args, *common]) == 0
    assert "best val mIoU" in capsys.readouterr().out
    checkpoint = str(out / "model.safetensors")
    assert main(["evaluate", checkpoint, store, "--timesteps", "all"]) == 0
    table = capsys.readouterr().out
    assert "classes: maize, potato, other" in table and "mIoU" in table and "kappa" in table
    assert main(["evaluate", checkpoint, store, "--positive", "potato"]) == 0
    table = capsys.readouterr().out
    assert "positive: potato" in table and "mIoU" not in table
    baseline = ["baseline", store, "--classes", "maize,potato,other", "--n-estimators", "4"]
    assert main([*baseline, "--jobs", "1"]) == 0
    assert "classes maize, potato, other" in capsys.readouterr().out
    assert main(["train", store, "--out", str(tmp_path / "x"), "--classes", "maize"]) == 2
    # Fine-tuned to wheat, other and maize with wheat named as its potato: the head carries on.
    named = ["--classes", "wheat,other,maize", "--parent-classes", "wheat=potato"]
    finetune_args = ["finetune", checkpoint, store, "--strategy", "fte", *named, *common]
    assert main([*finetune_args, "--out", str(tmp_path / "ft")]) == 0
    training = read_metadata(tmp_path / "ft" / "model.safetensors").training
    assert training["carried_classes"] == {"wheat": "potato", "other": "other", "maize": "maize"}
    assert "new_head" not in training
    capsys.readouterr()
    assert main(["train", store, "--out", str(tmp_path / "y"), *args[:2], *named[2:], *common]) == 2
    assert "parent_classes maps our classes" in capsys.readouterr().err
    # The same name in a YAML file, as a list or a comma-separated string.
    yaml = tmp_path / "train.yaml"
    yaml.write_text("train:\n  classes: [maize, potato, other]\n")
    assert TrainConfig.from_yaml(yaml).classes == ("maize", "potato", "other")


# ------------------------------------------------------------- a head carried over by class


def test_a_head_carries_the_outputs_of_the_classes_the_parent_knows():
    torch.manual_seed(0)
    model = build_model("recurrent_unet", 1, STEPS, widths=[4, 8], out_channels=4)
    old = model.decoder.head
    state = torch.random.get_rng_state()
    head = replace_head(model, 2, [3, 1])  # every output carried: no random numbers drawn
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(head.weight, old.weight[[3, 1]]) and torch.equal(head.bias, old.bias[[3, 1]])
    apply_strategy(model, "fte", head_channels=3, carried=[None, 0, None])
    new = model.decoder.head
    assert torch.equal(new.weight[1], head.weight[0]) and torch.equal(new.bias[1], head.bias[0])
    assert not torch.equal(new.weight[0], head.weight[0])  # a class it does not know: fresh
    frozen = [p.requires_grad for p in model.decoder.blocks.parameters()]
    assert new.weight.requires_grad and frozen and not any(frozen)  # fte: the new head learns


def test_head_rows_match_by_name_or_by_the_name_given():
    known = ["maize", "wheat", "potato", "other"]
    assert head_rows(["other", "maize"], known) == [3, 0]
    assert head_rows(["maize", "barley"], known) == [0, None]
    assert head_rows(["winter_cereal", "maize"], known, {"winter_cereal": "wheat"}) == [1, 0]
    # Names match as class names do everywhere: case, spaces, hyphens and underscores aside.
    assert head_rows(["Other", "MAIZE"], known) == [3, 0]
    assert head_rows(["winter cereal", "maize"], known, {"Winter-Cereal": "Wheat"}) == [1, 0]
    assert parent_names(["winter cereal"], known, {"Winter_Cereal": "WHEAT"}) == {
        "winter cereal": "wheat"
    }
    for names, problem in [
        ({"winter_cereal": "barley"}, "barley, not among its"),
        ({"rye": "wheat"}, "rye, not among ours"),
        ({"maize": "wheat", "winter_cereal": "wheat"}, "wheat would continue in two"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            head_rows(["winter_cereal", "maize"], known, names)


def test_classes_spelled_otherwise_keep_the_pretrained_head(parents, store, tmp_path):
    """Our classes match the parent's as class names match everywhere (case, spaces, hyphens
    and underscores aside): Maize and POTATO keep its head, where they trained a new one, and
    one crop called Potato keeps its whole head answering for potato; interpolation 0, which
    needs the pre-trained head, exports the parent as it is."""
    types = quick(classes=["Maize", "POTATO", "grassland", "other"], interpolation=0.0)
    result = finetune(parents["multi"], store, tmp_path / "types", strategy="ft", config=types)
    assert "new_head" not in read_metadata(result.checkpoint).training
    assert _same(_state(parents["multi"]), _state(result.checkpoint), "")
    one = quick(interpolation=0.0)
    crop = finetune(
        parents["multi"], store, tmp_path / "one", strategy="ft", positive="Potato", config=one
    )
    meta = read_metadata(crop.checkpoint)
    assert meta.options["merged_head"] == [False, True, False, False]
    assert meta.training["carried_classes"] == {"Potato": "potato"}


def test_fine_tuning_to_known_classes_keeps_the_pretrained_head(parents, store, tmp_path):
    """The parent maps maize, potato, grassland and other; named as its grassland (a stand-in
    for the same crop under another name), wheat continues that output, so every output carries
    over in the target's order, FTE keeps the head frozen and distillation has a teacher with
    the same outputs."""
    classes = ["wheat", "other", "maize", "potato"]
    config = quick(classes=classes, parent_classes="wheat=grassland", distillation=1.0)
    result = finetune(parents["multi"], store, tmp_path / "fte", strategy="fte", config=config)
    meta = read_metadata(result.checkpoint)
    assert meta.target_classes == classes and "new_head" not in meta.training
    assert meta.training["carried_classes"] == {
        "wheat": "grassland",
        "other": "other",
        "maize": "maize",
        "potato": "potato",
    }
    before, after = _state(parents["multi"]), _state(result.checkpoint)
    for name in ("decoder.head.weight", "decoder.head.bias"):
        assert torch.equal(after[name], before[name][[2, 3, 0, 1]])  # frozen by fte, reordered
    for classes, carried in [
        (["maize", "wheat"], ["maize"]),
        (["other", "maize"], ["other", "maize"]),
    ]:
        # a class it does not know, or fewer classes: a new head, whose known outputs carry over
        out = tmp_path / "-".join(classes)
        partial = finetune(
            parents["multi"], store, out, strategy="ft", config=quick(classes=classes)
        )
        training = read_metadata(partial.checkpoint).training
        assert list(training["carried_classes"]) == carried
        assert "carried_classes' outputs from the parent" in training["new_head"]
    # The probe trains its head afresh: nothing carried, nothing recorded as carried.
    config = quick(classes=["other", "maize"])
    probe = finetune(parents["multi"], store, tmp_path / "probe", strategy="probe", config=config)
    assert "carried_classes" not in read_metadata(probe.checkpoint).training


def test_crop_types_from_a_one_crop_model_start_its_crop_from_it(parents, store, tmp_path):
    """Fine-tuned to crop types, a model of maize starts the new head's maize output from its
    one logit, the others fresh, and records it; a model that learnt no labels carries none."""
    from sarcrop.training.api import head_classes

    meta = read_metadata(parents["binary"])
    assert meta.target_classes is None and head_classes(meta) == ["maize"]
    assert head_classes(meta.model_copy(update={"positive": ["maize", "potato"]})) is None
    reconstruct = {**meta.training, "objective": "reconstruct"}
    assert head_classes(meta.model_copy(update={"training": reconstruct})) is None
    classes = ["potato", "maize", "grassland", "other"]
    run = finetune(
        parents["binary"], store, tmp_path / "types", strategy="ft", config=quick(classes=classes)
    )
    training = read_metadata(run.checkpoint).training
    assert training["carried_classes"] == {"maize": "maize"}
    assert "carried_classes' outputs from the parent" in training["new_head"]


def test_one_crop_from_a_crop_type_model_keeps_its_head(parents, store, tmp_path):
    """Fine-tuned to map potato, the crop-type parent keeps its four outputs and answers with
    the log-odds of its potato probability: interpolation 0 exports the parent's own answer,
    FTE keeps that head frozen with distillation, and later runs rebuild a plain head."""
    classes = ["maize", "potato", "grassland", "other"]
    zero = quick(interpolation=0.0)
    start = finetune(
        parents["multi"], store, tmp_path / "zero", strategy="ft", positive="potato", config=zero
    )
    meta = read_metadata(start.checkpoint)
    assert meta.options["out_channels"] == 1 and meta.options["merged_head"] == [
        False,
        True,
        False,
        False,
    ]
    assert meta.target_classes is None and meta.positive == ["potato"]
    assert "new_head" not in meta.training
    assert meta.training["carried_classes"] == {"potato": "potato"}
    assert "potato against maize, grassland, other" in meta.training["merged_head"]
    parent, merged = load_checkpoint(parents["multi"])[0], load_checkpoint(start.checkpoint)[0]
    images = PatchDataset(store, "test", "potato")[0]["image"][None]
    with torch.inference_mode():
        expected = parent(images).softmax(dim=1)[:, classes.index("potato")]
        assert torch.allclose(torch.sigmoid(merged(images))[:, 0], expected, atol=1e-6)
    scores = evaluate(start.checkpoint, store)
    assert scores["positive"] == ["potato"]
    # evaluate reads the crop-type model the same way, without a fine-tuning
    view = evaluate(parents["multi"], store, positive="potato")
    assert view["metrics"] == scores["metrics"] and "classes" not in view
    spelt = evaluate(parents["multi"], store, positive="Potato")  # a class name, any case
    assert spelt["metrics"] == scores["metrics"]
    for parent, crop, problem in [
        ("multi", "wheat", "no class wheat$"),
        ("multi", "potatoe", "no class potatoe; did you mean 'potato'\\?$"),
        ("binary", "potato", "maps maize, not potato$"),
        ("binary", "maiz", "maps maize, not maiz: did you mean 'maize'\\?$"),
    ]:
        with pytest.raises(CheckpointError, match=problem) as error:
            evaluate(parents[parent], store, positive=crop)
        assert "\n" not in str(error.value)

    taught = quick(distillation=1.0)
    fte = finetune(
        parents["multi"], store, tmp_path / "fte", strategy="fte", positive="potato", config=taught
    )
    before, after = _state(parents["multi"]), _state(fte.checkpoint)
    assert _same(before, after, "decoder.") and not _same(before, after, "encoder.")
    # Onwards: RI and crop types get a plain head; the probe trains a fresh one-output head.
    for strategy, classes_next, channels in [("ri", None, 1), ("ft", CROPS, 3), ("probe", None, 1)]:
        source = start.checkpoint if strategy != "probe" else parents["multi"]
        out = tmp_path / f"next-{strategy}"
        config = quick(classes=classes_next)
        result = finetune(source, store, out, strategy=strategy, positive="potato", config=config)
        options = read_metadata(result.checkpoint).options
        assert options["out_channels"] == channels and "merged_head" not in options


def test_one_crop_continues_a_class_of_another_name(parents, store, tmp_path):
    """Our wheat, which the crop-type parent knows as grassland (``parent_classes``), keeps its
    whole head answering for grassland: interpolation 0 exports the parent's grassland map."""
    config = quick(interpolation=0.0, parent_classes="wheat=grassland")
    result = finetune(
        parents["multi"], store, tmp_path / "run", strategy="ft", positive="wheat", config=config
    )
    meta = read_metadata(result.checkpoint)
    assert meta.options["merged_head"] == [False, False, True, False]
    assert meta.positive == ["wheat"] and meta.training["carried_classes"] == {"wheat": "grassland"}
    parent, merged = load_checkpoint(parents["multi"])[0], load_checkpoint(result.checkpoint)[0]
    images = PatchDataset(store, "test", "wheat")[0]["image"][None]
    with torch.inference_mode():
        expected = parent(images).softmax(dim=1)[:, CROPS.index("grassland")]
        assert torch.allclose(torch.sigmoid(merged(images))[:, 0], expected, atol=1e-6)


@pytest.mark.parametrize("shift", [100.0, -100.0])
def test_distillation_scores_its_start_on_the_labels(parents, store, tmp_path, shift):
    """With ``distillation`` the run scores the start it learns from on its own labelled
    pixels, beside calling the crop everywhere, and warns where the start is below that: a
    start that calls maize everywhere is level with it, one that never does is below."""
    model, meta = load_checkpoint(parents["binary"])
    with torch.no_grad():
        model.decoder.head.bias.add_(shift)
    save_checkpoint(tmp_path / "start.safetensors", model, meta)
    config = quick(distillation=1.0, val_fraction=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = finetune(
            tmp_path / "start.safetensors", store, tmp_path / "run", strategy="ft", config=config
        )
    recorded = read_metadata(result.checkpoint).training["distillation_start"]
    labels = DatasetStore(store)
    pixels = np.concatenate([labels.read_labels(i).ravel() for i in labels.indices("train")])
    share = float((pixels == CLASSES.index("maize")).sum() / (pixels >= 0).sum())
    assert recorded == {
        "metric": "IoU",
        "start": pytest.approx(share if shift > 0 else 0.0, abs=1e-4),
        "one_class_everywhere": pytest.approx(share, abs=1e-4),
    }
    warned = [w for w in caught if "distillation 1: the pre-trained start" in str(w.message)]
    assert len(warned) == (shift < 0) and "\n" not in str(warned[0].message if warned else "")
    if shift > 0:
        return
    # A search's fold runs do not repeat it: one warning, for the run that is kept.
    searched = quick(distillation=1.0, val_fraction=0.0, epoch_search="1,2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = finetune(
            tmp_path / "start.safetensors", store, tmp_path / "s", strategy="ft", config=searched
        )
    assert read_metadata(result.checkpoint).training["search"]["folds"] >= 2
    assert sum("the pre-trained start scores" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("shift", [100.0, -100.0])
def test_a_model_that_did_not_learn_its_training_labels_is_said_to(parents, store, tmp_path, shift):
    """Every trained model is scored on the labelled pixels it learnt from, beside calling the
    crop everywhere; below that (here a start that never calls maize, barely moved by a
    learning rate of 1e-9) the run warns, as no validation split would show it."""
    model, meta = load_checkpoint(parents["binary"])
    with torch.no_grad():
        model.decoder.head.bias.add_(shift)
    save_checkpoint(tmp_path / "start.safetensors", model, meta)
    config = quick(val_fraction=0.0, lr=1e-9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = finetune(
            tmp_path / "start.safetensors", store, tmp_path / "run", strategy="ft", config=config
        )
    labels = DatasetStore(store)
    pixels = np.concatenate([labels.read_labels(i).ravel() for i in labels.indices("train")])
    share = float((pixels == CLASSES.index("maize")).sum() / (pixels >= 0).sum())
    assert read_metadata(result.checkpoint).training["fit_on_train"] == {
        "metric": "IoU",
        "trained": pytest.approx(share if shift > 0 else 0.0, abs=1e-4),
        "one_class_everywhere": pytest.approx(share, abs=1e-4),
    }
    warned = [w for w in caught if "on its own training labels" in str(w.message)]
    assert len(warned) == (shift < 0)
    if warned:
        assert str(warned[0].message).startswith(
            f"the trained model scores IoU 0.00 on its own training labels, below {share:.2f} "
            "for the positive class everywhere: it did not learn them"
        )


def test_distillation_scores_a_merged_start_as_its_parent_class(parents, store, tmp_path):
    """Our wheat read as the crop-type parent's grassland: the recorded start is that output's
    IoU against the wheat labels."""
    config = quick(distillation=1.0, val_fraction=0.0, parent_classes="wheat=grassland")
    result = finetune(
        parents["multi"], store, tmp_path / "run", strategy="ft", positive="wheat", config=config
    )
    recorded = read_metadata(result.checkpoint).training["distillation_start"]
    expected = _start_iou(parents["multi"], store, "wheat", "grassland")
    assert recorded["start"] == pytest.approx(expected, abs=1e-4)


def _start_iou(parent: str, store: str, positive: str, crop: str) -> float:
    """IoU of the parent's ``crop`` output (its softmax argmax) against ``positive`` labels."""
    model, meta = load_checkpoint(parent)
    classes = meta.target_classes
    dataset = PatchDataset(store, "train", positive, meta.bands, normalization=meta.normalization)
    confusion = BinaryConfusion()
    with torch.inference_mode():
        for item in range(len(dataset)):
            sample = dataset[item]
            probability = model.eval()(sample["image"][None]).softmax(dim=1)[0, classes.index(crop)]
            confusion.update(probability[None], sample["target"][None], sample["valid"][None])
    return confusion.iou


def test_fresh_head_carries_no_output_over(parents, store, tmp_path):
    """``fresh_head`` gives classes other than the parent's a new head from random weights, as
    before outputs carried over: for one crop it knows and for a partial class list; the
    parent's own classes, reordered, keep its head."""
    for classes, positive in [(None, "potato"), (["other", "maize"], None)]:
        config = quick(classes=classes, fresh_head=True)
        out = tmp_path / f"fresh-{positive}"
        result = finetune(
            parents["multi"], store, out, strategy="ft", positive=positive, config=config
        )
        meta = read_metadata(result.checkpoint)
        assert "new_head" in meta.training and "carried_classes" not in meta.training
        assert "merged_head" not in meta.options and "merged_head" not in meta.training
        assert "re-initialised" in meta.training["new_head"]
    reordered = quick(classes=["other", "grassland", "potato", "maize"], fresh_head=True)
    kept = finetune(parents["multi"], store, tmp_path / "kept", strategy="fte", config=reordered)
    assert "new_head" not in read_metadata(kept.checkpoint).training
    with pytest.raises(ConfigError, match="fresh_head carries none"):
        validate_config({"fresh_head": True, "parent_classes": {"wheat": "grassland"}})
    assert "fresh_head" not in quick().fingerprint()  # runs from before it keep their keys
    assert quick(fresh_head=True).fingerprint()["fresh_head"] is True


@pytest.mark.parametrize(
    ("parent", "strategy", "classes", "problem"),
    [
        ("multi", "probe", ["wheat", "maize"], "probe trains its head afresh"),
        ("binary", "ft", ["wheat", "maize"], r"grassland, not among its \(maize\)"),
        ("multi", "ft", None, "wheat, not among ours"),
        ("multi", "ri", ["wheat", "maize"], "only fine-tuning"),
        ("multi", "ft", ["wheat", "maize"], "barley, not among its"),
    ],
)
def test_parent_classes_that_cannot_apply_are_refused(
    parents, store, tmp_path, parent, strategy, classes, problem
):
    names = "wheat=barley" if "barley" in problem else "wheat=grassland"
    config = quick(classes=classes, parent_classes=names)
    with pytest.raises(ConfigError, match=problem) as error:
        finetune(parents[parent], store, tmp_path / "run", strategy=strategy, config=config)
    assert "\n" not in str(error.value) and not (tmp_path / "run" / "model.safetensors").exists()


def test_parent_classes_on_the_command_line_and_in_fingerprints():
    assert TrainConfig(parent_classes="a=b, c=d").parent_classes == {"a": "b", "c": "d"}
    named = TrainConfig(parent_classes="permanent grass crops=grassland").parent_classes
    assert named == {"permanent grass crops": "grassland"}  # a legend's name, spaces and all
    assert "parent_classes" not in TrainConfig().fingerprint()
    with pytest.raises(ConfigError, match="ours=theirs"):
        validate_config({"parent_classes": "a=b,c"})
