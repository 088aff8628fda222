"""Train and test patches of two stores must not show the same labelled ground and season.

Two stores prepared from one location with other splits (a whole-location ``train`` store and
a ``test`` store of the same place) would score a model on the labels it learnt from. The
forest, ``sarcrop baseline``, the experiments and ``evaluate`` (from the ground a checkpoint
records) refuse such pairs, whatever file labels the real ground; other seasons, other
simulated draws on the same grid and one store's own split pass.
"""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest
import rasterio
import yaml
import zarr
from affine import Affine
from rasterio.crs import CRS

from sarcrop.cli import main
from sarcrop.data.merge import merge_stores
from sarcrop.data.prepare import prepare
from sarcrop.data.season import Season
from sarcrop.data.split import check_disjoint, label_sources, shared_ground
from sarcrop.data.store import DatasetStore
from sarcrop.errors import ConfigError, InputDataError
from sarcrop.evaluation.baseline import run_baseline
from sarcrop.experiments.runner import run_experiment
from sarcrop.options import BaselineOptions, SplitOptions, TilingOptions
from sarcrop.training import TrainConfig, evaluate, finetune, train

P = 8
H = W = 32  # 16 patches of 8 x 8
TRANSFORM = Affine(10, 0, 600000, 0, -10, 4800000)
APRIL = Season(dt.date(2021, 4, 1), steps=3, days=10)
MAY = Season(dt.date(2021, 5, 1), steps=3, days=10)


def write_raster(path, data, nodata, **tags):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=W,
        height=H,
        count=data.shape[0],
        dtype=data.dtype,
        crs=CRS.from_epsg(32631),
        transform=TRANSFORM,
        nodata=nodata,
    ) as ds:
        ds.write(data)
        ds.update_tags(**tags)


@pytest.fixture(scope="module")
def location(tmp_path_factory):
    """Two months of scenes and a maize / other label raster over one 320 m square."""
    root = tmp_path_factory.mktemp("location")
    scenes = root / "scenes"
    scenes.mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        when = dt.datetime(2021, 4, 3, 6) + dt.timedelta(days=10 * k)
        data = rng.uniform(-22, -8, size=(2, H, W)).astype(np.float32)
        name = f"S1A_IW_GRDH_{when:%Y%m%dT%H%M%S}_ASC_test.tif"
        write_raster(scenes / name, data, -9999.0, ACQUISITION_TIME=when.isoformat())
        with rasterio.open(scenes / name, "r+") as ds:
            ds.descriptions = ("VH", "VV")
    labels = np.zeros((1, H, W), dtype=np.uint8)
    labels[0, :, 10:22] = 1
    write_raster(root / "labels.tif", labels, 255, CLASS_0="other", CLASS_1="maize")
    shutil.copy(root / "labels.tif", root / "other-labels.tif")
    return root


def store(location, name, split, *, season=APRIL, labels="labels.tif"):
    out = location / f"{name}.zarr"
    if not out.exists():
        prepare(
            location / "scenes",
            out,
            labels=location / labels,
            season=season,
            positive=["maize"],
            tiling=TilingOptions(patch_size=P),
            split=split,
            progress=False,
        )
    return DatasetStore(out)


WHOLE_TRAIN = SplitOptions(method="train")
WHOLE_TEST = SplitOptions(method="test")


def test_whole_location_train_and_test_stores_share_every_patch(location):
    train = store(location, "train", WHOLE_TRAIN)
    test = store(location, "test", WHOLE_TEST)
    assert shared_ground(train, test) == [(i, i) for i in range(16)]
    with pytest.raises(InputDataError) as error:
        check_disjoint(train, test)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(test.path))
    assert "16 test patches overlap train patches of" in message and str(train.path) in message


def test_two_random_splits_of_one_location_pair_where_they_cross(location):
    a = store(location, "split0", SplitOptions(seed=0))
    b = store(location, "split1", SplitOptions(seed=1))
    assert shared_ground(a, a) == []  # one store's own split is the split's business
    crossed = [(i, i) for i in range(16) if a.split[i] == "train" and b.split[i] == "test"]
    assert crossed and shared_ground(a, b) == crossed


def test_other_season_never_pairs(location):
    train = store(location, "train", WHOLE_TRAIN)
    assert shared_ground(train, store(location, "may-test", WHOLE_TEST, season=MAY)) == []


def test_real_ground_is_the_same_whatever_file_labels_it(location, tmp_path):
    """The GeoTIFF, the netCDF or a parcel file of the same fields: one ground."""
    train = store(location, "train", WHOLE_TRAIN)
    other = store(location, "other-file-test", WHOLE_TEST, labels="other-labels.tif")
    assert not train.metadata.source["simulated"] and not other.metadata.source["simulated"]
    assert shared_ground(train, other) == [(i, i) for i in range(16)]
    with pytest.raises(InputDataError, match="16 test patches overlap train patches"):
        check_disjoint(train, other)
    model = trained(location, tmp_path, "april", train)
    with pytest.raises(InputDataError, match="16 test patches show labelled ground this model"):
        evaluate(model, other.path)
    # Fields held back in a file of their own: the user says so, and they are scored; the
    # model's own label file never is.
    with pytest.raises(InputDataError, match=r"--other-fields \(other_fields=True\) scores"):
        evaluate(model, other.path)
    assert evaluate(model, other.path, other_fields=True)["patches"] == 16
    same_file = store(location, "test", WHOLE_TEST)
    with pytest.raises(InputDataError, match="16 test patches show labelled ground") as error:
        evaluate(model, same_file.path, other_fields=True)
    assert "--other-fields" not in str(error.value)


def test_simulated_draws_on_one_grid_are_other_ground(location):
    """Every draw of a preset has the same coordinates and dates, not the same fields: the
    ``region.json`` of the simulator beside the labels makes the label file part of the
    ground."""
    stores = []
    for draw in ("draw0", "draw1"):
        folder = location / draw
        folder.mkdir(exist_ok=True)
        shutil.copy(location / "labels.tif", folder / "labels.tif")
        (folder / "region.json").write_text('{"simulator": "sarcrop"}')
        split = WHOLE_TRAIN if draw == "draw0" else WHOLE_TEST
        stores.append(store(location, draw, split, labels=f"{draw}/labels.tif"))
    train, test = stores
    assert train.metadata.source["simulated"] and test.metadata.source["simulated"]
    assert shared_ground(train, test) == []
    check_disjoint(train, test)
    again = store(location, "draw0-test", WHOLE_TEST, labels="draw0/labels.tif")
    assert shared_ground(train, again) == [(i, i) for i in range(16)]  # the same draw


def test_a_merged_store_keeps_each_patch_label_file(location, tmp_path):
    merged = tmp_path / "merged.zarr"
    parts = [store(location, "train", WHOLE_TRAIN), store(location, "may", WHOLE_TRAIN, season=MAY)]
    merge_stores([part.path for part in parts], merged, progress=False)
    test = store(location, "test", WHOLE_TEST)
    assert shared_ground(DatasetStore(merged), test) == [(i, i) for i in range(16)]


def test_a_store_merged_twice_keeps_each_patch_label_file(location, tmp_path):
    """A merged store merged again records one source per location (its members', not its own
    merged record), so the ground of each of its patches is still known."""
    draws = {}
    for draw in ("d0", "d1", "d2", "d1-test"):
        folder = location / draw.removesuffix("-test")
        folder.mkdir(exist_ok=True)
        shutil.copy(location / "labels.tif", folder / "labels.tif")
        (folder / "region.json").write_text('{"simulator": "sarcrop"}')
        split = WHOLE_TEST if draw.endswith("-test") else WHOLE_TRAIN
        draws[draw] = store(location, f"draw-{draw}", split, labels=f"{folder.name}/labels.tif")
    once = tmp_path / "once.zarr"
    merge_stores([draws["d0"].path, draws["d1"].path], once, progress=False)
    twice = tmp_path / "twice.zarr"
    merge_stores([once, draws["d2"].path], twice, progress=False)
    merged = DatasetStore(twice)
    assert len(merged.metadata.locations) == 3
    assert label_sources(merged) == [
        str((location / draw / "labels.tif").resolve()) for draw in ("d0", "d1", "d2")
    ]
    d1_patches = [i for i, where in enumerate(merged.metadata.location) if where == 1]
    pairs = shared_ground(merged, draws["d1-test"])
    assert pairs == [(i, i - d1_patches[0]) for i in d1_patches]
    with pytest.raises(InputDataError, match="16 test patches overlap train patches"):
        check_disjoint(merged, draws["d1-test"])


def test_a_store_records_its_label_file_whatever_folder_it_was_prepared_from(
    location, tmp_path, monkeypatch
):
    """The ground checks read the label file a store records: a relative path, read from
    another folder, would name another file (or none), and learnt ground would pass."""
    monkeypatch.chdir(location)
    options = {"season": APRIL, "positive": ["maize"], "progress": False}
    options.update(tiling=TilingOptions(patch_size=P), split=WHOLE_TEST)
    relative = prepare("scenes", tmp_path / "relative.zarr", labels="labels.tif", **options)
    test = DatasetStore(relative)
    assert test.metadata.source["labels"] == str((location / "labels.tif").resolve())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputDataError, match="16 test patches overlap train patches"):
        check_disjoint(store(location, "train", WHOLE_TRAIN), test)


def test_spellings_of_one_class_in_merged_stores_are_one_class(location, tmp_path):
    """A store whose labels say "Maize" merged with one that says "maize": one class, so a
    positive class takes the pixels of both."""
    april = store(location, "train", WHOLE_TRAIN)
    may = store(location, "may", WHOLE_TRAIN, season=MAY)
    capitalised = tmp_path / "may-Maize.zarr"
    shutil.copytree(may.path, capitalised)
    group = zarr.open_group(str(capitalised), mode="r+")
    metadata = dict(group.attrs["sarcrop"])
    assert metadata["classes"] == may.classes
    metadata["classes"] = [name.capitalize() if name == "maize" else name for name in may.classes]
    group.attrs["sarcrop"] = metadata
    out = tmp_path / "merged.zarr"
    with pytest.warns(UserWarning, match=r"classes of the stores spelt differently are one "):
        merge_stores([april.path, capitalised], out, progress=False)
    merged = DatasetStore(out)
    assert merged.classes == april.classes
    maize = merged.classes.index("maize")
    pixels = merged.metadata.statistics["class_pixels"]["train"]["maize"]
    expected = sum(s.metadata.statistics["class_pixels"]["train"]["maize"] for s in (april, may))
    assert pixels == expected and maize >= 0


def test_forest_and_cli_refuse_a_test_store_of_the_training_ground(location, capsys):
    train = store(location, "train", WHOLE_TRAIN)
    test = store(location, "test", WHOLE_TEST)
    with pytest.raises(InputDataError, match="16 test patches overlap train patches"):
        run_baseline(train.path, BaselineOptions(n_estimators=5), test_store=test.path)
    argv = ["baseline", str(train.path), "--test-store", str(test.path), "--n-estimators", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the score would measure what was learnt" in err
    # The same location split once is fine, and so is another season.
    split = store(location, "split0", SplitOptions(seed=0))
    assert run_baseline(split.path, BaselineOptions(n_estimators=5)).metrics.total > 0
    may = store(location, "may-test", WHOLE_TEST, season=MAY)
    run_baseline(train.path, BaselineOptions(n_estimators=5), test_store=may.path)


def experiment(location, tmp_path, scenario, pretrain_region="a"):
    regions = {
        "a": {"store": str(store(location, "train", WHOLE_TRAIN).path)},
        "a-test": {"store": str(store(location, "test", WHOLE_TEST).path)},
        "a-split": {"store": str(store(location, "split0", SplitOptions(seed=0)).path)},
        "may": {"store": str(store(location, "may", WHOLE_TRAIN, season=MAY).path)},
    }
    config = {
        "name": "ground",
        "seeds": 1,
        "regions": regions,
        "pretrains": {
            "p": {
                "region": pretrain_region,
                "crop": "maize",
                "model_options": {"widths": [4, 8]},
                "train": {"epochs": 1, "val_fraction": 0, "progress_bar": False},
            }
        },
        "finetune": {"epochs": 1, "val_fraction": 0, "progress_bar": False},
        "methods": ["rf", "ft"],
        "baseline": {"n_estimators": 5, "early_season": False},
        "scenarios": [{"crop": "maize", **scenario}],
    }
    path = tmp_path / "ground.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_experiment_refuses_a_crop_its_regions_lack_before_any_training(location, tmp_path):
    """A crop the stores do not hold, or hold only outside the split that needs it, would
    train every unit and fail at scoring: refused first, naming the scenario and region."""
    config = experiment(location, tmp_path, {"finetune": "a-split", "test": "a-split"}, "may")
    data = yaml.safe_load(config.read_text())
    data["scenarios"][0]["crop"] = "wheat"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as error:
        run_experiment(config, tmp_path / "out")
    message = str(error.value)
    assert message.startswith("scenario a-split-a-split-wheat-vh: fine-tuning region a-split:")
    assert "positive class 'wheat' is not in the labels" in message and "\n" not in message
    data["scenarios"][0].update(crop="maize", finetune="a-test")  # all of it in the test split
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="fine-tuning region a-test: holds no maize pixel"):
        run_experiment(config, tmp_path / "out")
    assert not any((tmp_path / "out" / "cache").glob("method-*"))  # nothing trained


def test_experiment_refuses_a_pre_training_crop_its_region_lacks_before_any_training(
    location, tmp_path
):
    """A pre-training learns ``crop`` (rice where the config leaves it out) against the rest:
    on a region that holds none of it in its train split it would learn to call nothing
    positive, and every transfer method would start from that. Refused first; so is
    ``sarcrop train`` on such a store."""
    scenario = {"finetune": "a-split", "test": "a-split"}
    config = experiment(location, tmp_path, scenario, "a-test")  # a-test: no train split
    with pytest.raises(ConfigError) as error:
        run_experiment(config, tmp_path / "out")
    assert str(error.value).endswith(
        "pretrains.p: region a-test: holds no maize pixel in its train split (labelled: "
        "none); name the crop to pre-train on with pretrains.p.crop"
    )
    data = yaml.safe_load(config.read_text())
    data["pretrains"]["p"].update(region="may")  # another season of the same ground
    del data["pretrains"]["p"]["crop"]  # the default, rice
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"pretrains.p: region may: positive class 'rice' is "):
        run_experiment(config, tmp_path / "out")
    assert not any((tmp_path / "out" / "cache").glob("pretrain-*"))  # nothing trained
    data["methods"] = ["rf"]  # no method starts from it: nothing to refuse
    config.write_text(yaml.safe_dump(data))
    assert set(run_experiment(config, tmp_path / "out").results["method"]) == {"rf"}
    test_split = data["regions"]["a-test"]["store"]
    with pytest.raises(InputDataError, match="holds no maize pixel in its train split"):
        train(test_split, tmp_path / "run", positive="maize", config=TrainConfig(epochs=1))
    assert not (tmp_path / "run").exists()


def test_experiment_refuses_scenarios_tested_on_learnt_ground(location, tmp_path):
    leaky = experiment(location, tmp_path, {"finetune": "a", "test": "a-test"}, "may")
    with pytest.raises(ConfigError) as error:
        run_experiment(leaky, tmp_path / "out")
    assert str(error.value) == (
        "scenario a -> a-test: 16 test patches show labelled ground that fine-tuning region a"
        " trains on, in the same season; fine-tune and test on"
        " one region split in two (split: {method: patch})"
    )
    assert not (tmp_path / "out" / "cache").exists() or not any(
        (tmp_path / "out" / "cache").glob("method-*")
    )  # refused before any training
    pretrained_on_test = experiment(location, tmp_path, {"finetune": "a-split", "test": "a-split"})
    with pytest.raises(ConfigError, match="that pre-training region a trains on"):
        run_experiment(pretrained_on_test, tmp_path / "out")


def test_experiment_runs_a_split_region_pretrained_on_another_season(location, tmp_path):
    config = experiment(location, tmp_path, {"finetune": "a-split", "test": "a-split"}, "may")
    result = run_experiment(config, tmp_path / "out")
    assert set(result.results["method"]) == {"rf", "ft"}


QUICK = TrainConfig(epochs=1, batch_size=4, val_fraction=0, progress_bar=False)
TINY_NET = {"widths": [4, 8]}


def trained(location, tmp_path, name, source, *, parent=None, config=QUICK):
    if parent is None:
        run = train(source.path, tmp_path / name, model_options=TINY_NET, config=config)
    else:
        run = finetune(parent, source.path, tmp_path / name, strategy="ft", config=config)
    return run.checkpoint


def test_evaluate_refuses_the_ground_a_model_or_its_pre_training_learnt(location, tmp_path):
    whole, test = store(location, "train", WHOLE_TRAIN), store(location, "test", WHOLE_TEST)
    may_train = store(location, "may", WHOLE_TRAIN, season=MAY)
    april = trained(location, tmp_path, "april", whole)
    with pytest.raises(InputDataError) as error:
        evaluate(april, test.path)
    message = str(error.value)
    assert message.startswith(f"{test.path}: 16 test patches show labelled ground")
    assert str(whole.path.resolve()) in message and "\n" not in message
    assert main(["evaluate", str(april), str(test.path)]) == 2
    # Another season of the same ground is new to it; so is its own store's test split.
    assert evaluate(april, store(location, "may-test", WHOLE_TEST, season=MAY).path)["patches"]
    split = store(location, "split0", SplitOptions(seed=0))
    own = trained(location, tmp_path, "own", split)
    assert evaluate(own, split.path)["patches"] == len(split.indices("test"))
    # Fine-tuned in May from the April model: April's labels still count.
    may = trained(location, tmp_path, "may", may_train, parent=april)
    with pytest.raises(InputDataError, match=r"learnt from in .*train\.zarr"):
        evaluate(may, test.path)


def test_a_self_supervised_start_learnt_no_labels(location, tmp_path):
    whole, test = store(location, "train", WHOLE_TRAIN), store(location, "test", WHOLE_TEST)
    may_train = store(location, "may", WHOLE_TRAIN, season=MAY)
    ssl = trained(location, tmp_path, "ssl", whole, config=QUICK.updated(objective="reconstruct"))
    may = trained(location, tmp_path, "may", may_train, parent=ssl)
    assert evaluate(may, test.path)["patches"] == 16


def test_experiment_refuses_a_pretrained_checkpoint_that_learnt_the_test_ground(location, tmp_path):
    april = trained(location, tmp_path, "april", store(location, "train", WHOLE_TRAIN))
    may = trained(location, tmp_path, "may", store(location, "may", WHOLE_TRAIN, season=MAY))
    config = experiment(location, tmp_path, {"finetune": "a-split", "test": "a-split"})
    data = yaml.safe_load(config.read_text())

    def run(checkpoint, out):
        data["pretrains"] = {"p": {"checkpoint": str(checkpoint)}}
        config.write_text(yaml.safe_dump(data))
        return run_experiment(config, tmp_path / out)

    with pytest.raises(ConfigError) as error:
        run(april, "out")
    message = str(error.value)
    assert message.startswith(f"scenario a-split -> a-split: pre-training checkpoint {april}: ")
    assert "test patches show labelled ground this model learnt from" in message
    assert "\n" not in message
    assert not list((tmp_path / "out" / "cache").glob("method-*"))  # before any training
    # Another season of the same ground is new to it.
    assert set(run(may, "may-out").results["method"]) == {"rf", "ft"}
