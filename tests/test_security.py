"""Untrusted files run no code: checkpoints are never unpickled, configs are data only.

A crafted pickle whose unpickling would create a marker file is handed to every command and
function that loads a checkpoint; the marker must never appear. Config values that would run
a command in a shell are kept as literal text, and relative paths in configs resolve against
the config file's folder, not the current directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

import faults_support as fs
from sarcrop.errors import CheckpointError, ConfigError, SarcropError
from sarcrop.experiments import config as experiments_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from sarcrop.data.prepare import prepare
    from sarcrop.data.season import Season
    from sarcrop.options import TilingOptions

    root = tmp_path_factory.mktemp("inputs")
    fs.write_scenes(root / "scenes")
    fs.write_label_raster(root / "labels.tif")
    store = prepare(
        root / "scenes",
        root / "store.zarr",
        labels=root / "labels.tif",
        tiling=TilingOptions(patch_size=fs.PATCH),
        season=Season(fs.SEASON_START, fs.STEPS, fs.DAYS),
        progress=False,
    )
    good = fs.tiny_checkpoint(root / "good.safetensors")
    return {"scenes": root / "scenes", "store": store, "good": good}


def _bombs(folder: Path, marker: Path) -> dict[str, Path]:
    return {
        "torch.save zip": fs.pickle_bomb(folder / "model.safetensors", marker),
        "torch.save as .ckpt": fs.pickle_bomb(folder / "last.ckpt", marker),
        "torch.save as .pt": fs.pickle_bomb(folder / "model.pt", marker),
        "bare pickle": fs.plain_pickle_bomb(folder / "bare.safetensors", marker),
    }


def test_the_bomb_works_when_unpickled(tmp_path):
    """The crafted files really would run code if anything unpickled them."""
    import pickle

    import torch

    marker = tmp_path / "marker"
    bomb = fs.pickle_bomb(tmp_path / "x.pt", marker)
    torch.load(bomb, weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(fs.plain_pickle_bomb(tmp_path / "y.pkl", marker).read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    "kind", ["torch.save zip", "torch.save as .ckpt", "torch.save as .pt", "bare pickle"]
)
@pytest.mark.parametrize("command", ["evaluate", "predict", "finetune"])
def test_cli_refuses_pickle_checkpoints_without_running_them(
    tmp_path, inputs, capsys, kind, command
):
    marker = tmp_path / "marker"
    bomb = _bombs(tmp_path, marker)[kind]
    argv = {
        "evaluate": ["evaluate", bomb, inputs["store"]],
        "predict": [
            "predict",
            bomb,
            "--images",
            inputs["scenes"],
            "--out",
            tmp_path / "m.tif",
            "--quiet",
        ],
        "finetune": [
            "finetune",
            bomb,
            inputs["store"],
            "--out",
            tmp_path / "run",
            "--strategy",
            "ft",
        ],
    }[command]
    code, err = fs.run_cli(argv, capsys)
    expected = "never unpickles" if kind != "bare pickle" else "safetensors"
    fs.assert_clean_error(code, err, bomb, expected)
    assert not marker.exists()
    assert not (tmp_path / "m.tif").exists() and not (tmp_path / "run").exists()


def test_api_refuses_pickle_checkpoints(tmp_path, inputs):
    from sarcrop.prediction import predict_map
    from sarcrop.training.api import evaluate, finetune
    from sarcrop.training.checkpoint import load_checkpoint, read_metadata

    marker = tmp_path / "marker"
    for bomb in _bombs(tmp_path, marker).values():
        for call in (
            lambda b: load_checkpoint(b),
            lambda b: read_metadata(b),
            lambda b: evaluate(b, inputs["store"]),
            lambda b: finetune(b, inputs["store"], tmp_path / "run", strategy="ft"),
            lambda b: predict_map(b, inputs["scenes"], tmp_path / "m.tif", progress=False),
        ):
            with pytest.raises(CheckpointError) as info:
                call(bomb)
            assert str(bomb) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def _tamper_cases(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    meta_key = "__metadata__"

    def drop_metadata(header: dict) -> dict:
        header.pop(meta_key, None)
        return header

    def bad_json_metadata(header: dict) -> dict:
        header[meta_key]["sarcrop"] = "{not json"
        return header

    def extra_field(header: dict) -> dict:
        import json

        meta = json.loads(header[meta_key]["sarcrop"])
        meta["exec"] = "__import__('os').system('touch marker')"
        header[meta_key]["sarcrop"] = json.dumps(meta)
        return header

    def wrong_offsets(header: dict) -> dict:
        name = next(k for k in header if k != meta_key)
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [begin, end + 10_000_000]
        return header

    def wrong_shape(header: dict) -> dict:
        name = next(k for k in header if k != meta_key and len(header[k]["shape"]) > 1)
        header[name]["shape"] = [1] * len(header[name]["shape"])
        return header

    def more_steps(header: dict) -> dict:
        import json

        meta = json.loads(header[meta_key]["sarcrop"])
        meta["time_steps"] = 99
        header[meta_key]["sarcrop"] = json.dumps(meta)
        return header

    def edited(change):
        def edit(header: dict) -> dict:
            import json

            meta = json.loads(header[meta_key]["sarcrop"])
            change(meta)
            header[meta_key]["sarcrop"] = json.dumps(meta)
            return header

        return edit

    def other_normalisation_bands(meta: dict) -> None:
        meta["normalization"]["bands"] = ["VH"]

    def threshold_text(meta: dict) -> None:
        meta["training"].setdefault("config", {})["threshold"] = "abc"

    def threshold_above_one(meta: dict) -> None:
        meta["training"].setdefault("config", {})["threshold"] = 1.5

    def config_a_list(meta: dict) -> None:
        meta["training"]["config"] = [1, 2]

    def patch_size_text(meta: dict) -> None:
        meta["training"]["patch_size"] = "x"

    def patch_size_list(meta: dict) -> None:
        meta["training"]["patch_size"] = [32]

    def pixel_size_zero(meta: dict) -> None:
        meta["training"]["pixel_size"] = 0

    def pixel_size_text(meta: dict) -> None:
        meta["training"]["pixel_size"] = "ten"

    edits = {
        "threshold above 1": (threshold_above_one, "threshold is 1.5, not a probability"),
        "training settings a list": (config_a_list, "training.config is [1, 2], not a mapping"),
        "patch size text": (patch_size_text, "training.patch_size is 'x', not a side"),
        "patch size a list": (patch_size_list, "training.patch_size is [32], not a side"),
        "pixel size 0": (pixel_size_zero, "training.pixel_size is 0, not a size"),
        "pixel size text": (pixel_size_text, "training.pixel_size is 'ten', not a size"),
    }
    damaged = {
        name: (fs.tampered_header(good, folder / f"t{i}.safetensors", edited(change)), expected)
        for i, (name, (change, expected)) in enumerate(edits.items())
    }
    nested = b"[" * 100_000 + b"]" * 100_000  # deeper than Python's JSON parser recurses
    return damaged | {
        "header nested deeper than Python recurses": (
            fs.safetensors_with_header(folder / "n.safetensors", nested, b""),
            "not a safetensors checkpoint",
        ),
        "normalisation of other bands": (
            fs.tampered_header(good, folder / "h.safetensors", edited(other_normalisation_bands)),
            "normalization.bands ['VH'] are not the bands",
        ),
        "threshold not a number": (
            fs.tampered_header(good, folder / "i.safetensors", edited(threshold_text)),
            "training.config.threshold is 'abc', not a probability",
        ),
        "no sarcrop metadata": (
            fs.tampered_header(good, folder / "a.safetensors", drop_metadata),
            "without sarcrop",
        ),
        "metadata not JSON": (
            fs.tampered_header(good, folder / "b.safetensors", bad_json_metadata),
            "invalid sarcrop metadata",
        ),
        "unknown metadata field": (
            fs.tampered_header(good, folder / "c.safetensors", extra_field),
            "exec",
        ),
        "offsets past the end": (
            fs.tampered_header(good, folder / "d.safetensors", wrong_offsets),
            "unreadable",
        ),
        "shapes changed": (fs.tampered_header(good, folder / "e.safetensors", wrong_shape), ""),
        "time steps changed": (
            fs.tampered_header(good, folder / "f.safetensors", more_steps),
            "time_steps",
        ),
        "header length lies": (
            fs.safetensors_with_header(folder / "g.safetensors", b'{"a": 1', b"x" * 10),
            "safetensors",
        ),
    }


def test_tampered_safetensors_headers_are_refused(tmp_path, inputs, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, (path, expected) in _tamper_cases(inputs["good"], tmp_path).items():
        from sarcrop.training.checkpoint import load_checkpoint

        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value) and expected in str(info.value), name
        code, err = fs.run_cli(["evaluate", path, inputs["store"]], capsys)
        fs.assert_clean_error(code, err, path, expected)
    assert not (tmp_path / "marker").exists()


# ------------------------------------------------------------------------------ configs

SHELL_VALUES = ["$(touch {m})", "`touch {m}`", "; touch {m}", "| touch {m}", "&& touch {m} &&"]


@pytest.mark.parametrize("template", SHELL_VALUES)
def test_training_config_values_are_never_executed(tmp_path, monkeypatch, template):
    from sarcrop.training.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    value = template.format(m=marker)
    config = tmp_path / "train.yaml"
    for key in ("accelerator", "distributed", "precision", "devices", "max_time"):
        config.write_text(yaml.safe_dump({key: value}))
        with pytest.raises(ConfigError, match=key):  # refused as a value, never run
            TrainConfig.from_yaml(config)
    config.write_text(f"epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        TrainConfig.from_yaml(config)
    assert not marker.exists()


def test_shell_syntax_in_cli_paths_is_a_literal_name(tmp_path, inputs, capsys, monkeypatch):
    """A store or output path with shell syntax is used as a file name, never run."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    weird = tmp_path / f"$(touch {marker})"
    code, err = fs.run_cli(["evaluate", inputs["good"], weird], capsys)
    fs.assert_clean_error(code, err, weird, "dataset store does not exist")
    out = tmp_path / "`touch marker`.tif"
    code, err = fs.run_cli(
        [
            "predict",
            inputs["good"],
            "--images",
            inputs["scenes"],
            "--out",
            out,
            "--window",
            "16",
            "--overlap",
            "4",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    fs.check_map(out)
    assert not marker.exists()


def test_training_config_has_no_path_values():
    """Nothing in TrainConfig is a path, so it cannot point a run at another file."""
    from sarcrop.training.config import TrainConfig

    for name, field in TrainConfig.model_fields.items():
        assert "Path" not in str(field.annotation), name


def _experiment(folder: Path, **region: object) -> Path:
    config = {
        "name": "t",
        "regions": {"a": {"store": "data/store.zarr", **region}},
        "pretrain": {"checkpoint": "models/pre.safetensors"},
        "scenarios": [{"finetune": "a", "test": "a", "crop": "rice"}],
    }
    path = folder / "configs" / "exp.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_experiment_paths_resolve_relative_to_the_config_file(tmp_path, inputs, monkeypatch):
    _experiment(tmp_path)
    (tmp_path / "configs" / "data").mkdir()
    shutil.copytree(inputs["store"], tmp_path / "configs" / "data" / "store.zarr")
    (tmp_path / "configs" / "models").mkdir()
    shutil.copy(inputs["good"], tmp_path / "configs" / "models" / "pre.safetensors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = experiments_config.load_experiment_config(Path("..") / "configs" / "exp.yaml")
    assert Path(config.regions["a"].store) == tmp_path / "configs" / "data" / "store.zarr"
    assert Path(config.pretrain.checkpoint) == tmp_path / "configs" / "models" / "pre.safetensors"


def test_experiment_missing_file_is_named_with_the_config(tmp_path, monkeypatch):
    path = _experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        experiments_config.load_experiment_config(path)
    text = str(info.value)
    assert text.startswith(str(path)) and "file not found" in text and "\n" not in text


@pytest.mark.parametrize("template", SHELL_VALUES)
def test_experiment_values_are_never_executed(tmp_path, monkeypatch, template):
    marker = tmp_path / "marker"
    monkeypatch.chdir(tmp_path)
    value = template.format(m=marker)
    path = _experiment(tmp_path, label_options={"column": value})
    with pytest.raises(SarcropError):  # a store takes no label_options; the value is inert
        experiments_config.load_experiment_config(path)
    data = yaml.safe_load(path.read_text())
    data["name"] = value
    data["regions"]["a"] = {"simulate": {"preset": value}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SarcropError):
        experiments_config.load_experiment_config(path)
    data["pretrain"] = {"region": "a"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="unknown region"):  # named as a preset, never run
        experiments_config.load_experiment_config(path)
    data["regions"]["a"] = {"simulate": {"preset": "korea"}}
    path.write_text(yaml.safe_dump(data))
    assert experiments_config.load_experiment_config(path).name == value
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not a readable YAML"):
        experiments_config.load_experiment_config(path)
    assert not marker.exists()
    assert not any(p.name == "marker" for p in Path(os.getcwd()).rglob("marker"))
