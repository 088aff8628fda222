"""What an experiment's cache reuses and what it computes again: a unit's key holds everything
its result depends on (the data on disk, the threshold it is scored at) and nothing that only
changes what a run shows; a unit that fails says which it is."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import rasterio

from sarcrop.errors import SarcropError
from sarcrop.experiments import run_experiment
from sarcrop.experiments.config import experiment_config_from_dict, load_experiment_config
from sarcrop.experiments.runner import ExperimentRunner
from test_experiment import TINY, small, write_config
from test_experiment_classes import TRAIN, config, make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A prepared store of 8 patches (``test_experiment_classes``)."""
    return make_store(tmp_path_factory.mktemp("cache") / "store.zarr")


def test_the_zero_shot_result_follows_the_threshold_it_is_scored_at(tmp_path):
    """The model as it is learns nothing from the target, but its scores depend on the
    threshold: a rerun into the same folder at another threshold scores it again, as a fresh
    folder does (it once kept the earlier threshold's result, cached)."""
    regions = {k: v for k, v in TINY["regions"].items() if k != "korea"}
    data = {
        **TINY,
        "regions": regions,
        "pretrain": {"checkpoint": "europe-maize"},
        "scenarios": [{"finetune": "spain", "test": "france", "crop": "maize"}],
        "methods": ["zero-shot"],
        "seeds": 1,
        "fractions": [1.0],
    }
    for key in ("early_season", "timestep_table", "comparisons"):
        data.pop(key, None)

    def iou(out: Path, threshold: float) -> float:
        config = {**data, "finetune": {**data["finetune"], "threshold": threshold}}
        results = run_experiment(write_config(tmp_path, config), out, progress=False).results
        iou = results[results["metric"] == "iou"]
        return float(iou[iou["timestep"] == iou["timestep"].max()]["value"].iloc[0])

    first = iou(tmp_path / "run", 0.5)
    again = iou(tmp_path / "run", 0.2)
    assert again == iou(tmp_path / "fresh", 0.2) and again != first


def test_data_changed_in_place_makes_a_regions_results_stale(tmp_path):
    """A region read from files is prepared again where one of them changed since (size or
    time), as a fresh folder would prepare it; GDAL's sidecar files do not count."""
    from sarcrop.data.simulate import simulate_region

    made = simulate_region("spain", tmp_path / "spain", size=(128, 128))
    region = {
        "images": str(tmp_path / "spain" / "scenes"),
        "labels": str(made.labels),
        "season_start": made.season.start.isoformat(),
        "tiling": {"patch_size": 32},
    }
    data = {
        "name": "files",
        "regions": {"a": {**region, "split": {"method": "patch", "seed": 1}}},
        "scenarios": [{"finetune": "a", "test": "a", "crop": "rice"}],
        "methods": ["rf"],
        "pretrain": {"checkpoint": "europe-maize"},  # unused by the forest
        "baseline": TINY["baseline"],
        "seeds": 1,
        "fractions": [1.0],
    }
    path = write_config(tmp_path, data)

    def rf(out: Path) -> float:
        result = run_experiment(path, out, progress=False)
        return float(result.results[result.results["metric"] == "iou"]["value"].iloc[-1])

    def units() -> set[Path]:
        return set((tmp_path / "run" / "cache").glob("*/done.json"))

    before = rf(tmp_path / "run")
    cached = units()
    (made.labels.parent / f"{made.labels.name}.aux.xml").write_text("<PAMDataset/>")
    assert rf(tmp_path / "run") == before and units() == cached  # a sidecar: all reused
    rice = made.classes.index("rice")
    with rasterio.open(made.labels, "r+") as labels:
        classes = labels.read(1)
        part = classes[:64, :64]
        part[(part != rice) & (part < len(made.classes))] = rice  # one quarter all rice now
        labels.write(classes, 1)
    after = rf(tmp_path / "run")
    assert units() > cached and after == rf(tmp_path / "fresh") and after != before


def test_display_settings_reuse_the_trained_runs(tmp_path):
    """Progress bars and loader workers change what a run shows, never what it learns: a rerun
    with them changed trains nothing again."""
    data = {**TINY, "methods": ["ri"], "seeds": 1}
    for key in ("early_season", "timestep_table", "comparisons"):
        data.pop(key, None)
    run_experiment(write_config(tmp_path, data), tmp_path / "run", progress=False)
    done = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "cache").glob("*/done.json")}
    shown = {**data, "finetune": {**data["finetune"], "progress_bar": True, "num_workers": 1}}
    run_experiment(write_config(tmp_path, shown), tmp_path / "run", progress=False)
    assert {
        p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "cache").glob("*/done.json")
    } == done


def test_a_units_error_names_the_unit(tmp_path):
    """A unit that cannot run says which one it is: among a run's units, "need at least 2
    training patches" alone left the method, seed and share of labels to guess."""
    data = {**TINY, "methods": ["ri"], "fractions": [0.1, 1.0], "seeds": 2}
    for key in ("early_season", "timestep_table", "comparisons"):
        data.pop(key, None)
    problem = r": ri \(seed \d, 10 % of labels, full\): need at least"
    with pytest.raises(SarcropError, match=problem):
        run_experiment(write_config(tmp_path, data), tmp_path / "run", progress=False)


def test_a_run_resumes_its_trained_units_wherever_its_folder_is_now(tmp_path, monkeypatch):
    """Units that had trained when a run stopped, before they were marked done, were refused
    when the run was named otherwise (absolute, not relative; from another folder; moved):
    their training records held the paths of the store and the pre-trained checkpoint as the
    first run spelt them. They are now taken as they are, trained once."""
    (tmp_path / "a").mkdir()
    path = write_config(tmp_path, small(methods=["ri", "fte"], seeds=1))
    monkeypatch.chdir(tmp_path / "a")
    first = run_experiment(path, "out")  # relative: its records name out/cache/...
    trained = sorted(Path("out/cache").glob("*/run/model.safetensors"))
    assert len(trained) == 3  # the pre-training, RI, FTE
    for unit in trained:  # stopped after training, before the unit was done
        (unit.parent.parent / "done.json").unlink()
    stamps = [unit.stat().st_mtime_ns for unit in trained]
    (tmp_path / "a").rename(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    again = run_experiment(path, tmp_path / "b" / "out")  # moved, and named in full
    moved = [tmp_path / "b" / unit for unit in trained]
    assert [unit.stat().st_mtime_ns for unit in moved] == stamps  # nothing trained again
    assert all((unit.parent.parent / "done.json").is_file() for unit in moved)
    pd.testing.assert_frame_equal(again.results, first.results)


def test_display_settings_of_a_pretraining_reuse_it(store, tmp_path):
    """A pre-training's progress bar, loader workers and log interval changed its cache key,
    so every method run from it trained again."""
    data = config(store, methods=["fte"], seeds=1)
    first = ExperimentRunner(experiment_config_from_dict(data), tmp_path / "run")
    checkpoint, key = first._pretrain("binary")
    shown = {**TRAIN, "progress_bar": True, "num_workers": 0, "log_every_n_steps": 3}
    data["pretrains"]["binary"] = {**data["pretrains"]["binary"], "train": shown}
    again = ExperimentRunner(experiment_config_from_dict(data), tmp_path / "run")
    assert again._pretrain("binary") == (checkpoint, key) and again.computed == 0


def test_the_pretraining_keys_of_the_shipped_configs_are_what_they_were():
    """Their display settings are those a pre-training's key holds: their cached pre-trainings
    stay valid."""
    from sarcrop.experiments.presets import resolve_config, shipped_configs
    from sarcrop.experiments.runner import pretrain_key

    for name in shipped_configs():
        if name.startswith(("real", "crop-types-real")):  # their data is elsewhere
            continue
        for spec in load_experiment_config(resolve_config(name)).pretrainings.values():
            assert pretrain_key(spec) == spec.model_dump(mode="json")


def test_ri_trains_once_whatever_pretraining_its_scenario_names(store, tmp_path):
    """RI takes nothing but the architecture of a pre-training: two scenarios that differ in
    the pre-training they name (of one architecture) trained it twice, and now share its run;
    another architecture is another run."""
    data = config(store, methods=["ri"], seeds=1)
    maize = {"finetune": "nl", "test": "nl", "crop": "maize"}
    widths = {"region": "nl", "crop": "maize", "train": TRAIN, "model_options": {"widths": [4, 4]}}
    data["pretrains"]["narrow"] = widths
    data["scenarios"] = [{**maize, "pretrain": name} for name in ("binary", "types", "narrow")]
    result = run_experiment(experiment_config_from_dict(data), tmp_path / "run")
    assert len(list((tmp_path / "run" / "cache").glob("method-*/done.json"))) == 2
    assert not list((tmp_path / "run" / "cache").glob("pretrain-*"))  # RI pre-trains nothing
    iou = result.results[result.results["metric"] == "iou"].groupby("scenario")["value"]
    same = iou.apply(list)
    assert same["nl-nl-maize-vh-from-binary"] == same["nl-nl-maize-vh-from-types"]
