"""The shipped pre-trained checkpoint: found by name, described by its card, loaded without pickle,
fine-tuned by the API and the CLI."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path

import pytest
import torch

from sarcrop import pretrained
from sarcrop.cli import main
from sarcrop.errors import CheckpointError, ConfigError
from sarcrop.options import TilingOptions
from sarcrop.training import TrainConfig, finetune, load_checkpoint, read_metadata

ROOT = Path(__file__).resolve().parents[1]
NAME = "europe-maize"
TYPES = "europe-crop-types"
EARLY = "europe-maize-early"
PIXELS = "europe-maize-tempcnn"


def one_epoch() -> TrainConfig:
    return TrainConfig(
        epochs=1,
        batch_size=4,
        val_fraction=0,
        patience=None,
        accelerator="cpu",
        progress_bar=False,
    )


def europe_store(folder: Path) -> str:
    """A tiny simulated maize store with the checkpoint's season: 8 × 20 days, VH|VV."""
    from sarcrop.data.prepare import prepare_region
    from sarcrop.data.simulate import simulate_region

    simulate_region("europe", folder / "region", seed=1, size=(64, 64))
    out = folder / "store.zarr"
    prepare_region(folder / "region", out, tiling=TilingOptions(patch_size=16), progress=False)
    return str(out)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return europe_store(tmp_path_factory.mktemp("pretrained"))


@pytest.mark.parametrize("name", [NAME, TYPES, EARLY, PIXELS])
def test_the_shipped_model_is_listed_and_found(name: str) -> None:
    assert pretrained.available() == sorted([NAME, TYPES, EARLY, PIXELS])
    path = pretrained.path(name)
    assert path.is_file() and path.name == f"{name}.safetensors"
    assert path.with_suffix(".md").is_file(), "every shipped checkpoint has a model card"


def test_names_and_paths_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file of a shipped model's name here, wherever tests run
    assert pretrained.resolve(NAME) == pretrained.path(NAME)
    for path in ("model.safetensors", "runs/europe-maize", str(tmp_path / NAME)):
        assert pretrained.resolve(path) == path
    # A folder of that name (a run written with --out europe-maize) is no checkpoint: the name
    # is still the shipped model's (evaluate said "is a directory"); other folders stay paths.
    (tmp_path / NAME).mkdir()
    (tmp_path / "runs").mkdir()
    assert pretrained.resolve(NAME) == pretrained.path(NAME)
    assert pretrained.resolve("runs") == "runs"
    (tmp_path / NAME).rmdir()
    (tmp_path / NAME).write_bytes(b"")  # a local file of that name wins over the shipped model
    assert pretrained.resolve(NAME) == NAME


def test_unknown_names_give_one_line_listing_the_shipped_ones(tmp_path: Path, store: str) -> None:
    with pytest.raises(CheckpointError) as error:
        finetune("korea-rice", store, tmp_path / "run", strategy="ft", config=one_epoch())
    message = str(error.value)
    assert "\n" not in message and "korea-rice" in message and NAME in message
    assert not (tmp_path / "run").exists()


def test_cli_reports_unknown_names(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["finetune", "korea-rice", store, "--out", str(tmp_path / "run"), "--strategy", "ft"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"shipped: {TYPES}, {NAME}, {EARLY}" in error and "did you mean" not in error
    args[1] = NAME[:-1]  # a letter short
    assert main(args) == 2
    said = f"no pre-trained model named {NAME[:-1]!r}; did you mean {NAME!r}? shipped: "
    assert said in capsys.readouterr().err


def test_metadata_of_the_shipped_model() -> None:
    meta = read_metadata(pretrained.path(NAME))
    assert meta.architecture == "recurrent_unet"
    assert meta.options["widths"] == [8, 16, 32]
    assert meta.bands == ["VH", "VV"]
    assert meta.time_steps == 8
    assert meta.season is not None and meta.season["days"] == 20
    assert meta.positive == ["maize"]
    assert meta.strategy == "scratch" and meta.parent is None
    assert meta.region == "europe"
    assert meta.normalization is not None
    assert meta.normalization["method"] == "fixed"
    assert meta.normalization["bands"] == ["VH", "VV"]
    assert meta.normalization["min"] == [-30.0, -23.0]
    assert meta.normalization["max"] == [-5.0, 2.0]


def test_metadata_of_the_shipped_crop_type_model() -> None:
    meta = read_metadata(pretrained.path(TYPES))
    assert meta.target_classes == ["maize", "wheat", "potato", "grassland", "other"]
    assert meta.options["out_channels"] == 5 and meta.options["widths"] == [8, 16, 32]
    assert meta.bands == ["VH", "VV"] and meta.time_steps == 8 and meta.region == "europe"
    assert meta.strategy == "scratch" and meta.parent is None and meta.positive == []
    assert meta.normalization is not None and meta.normalization["method"] == "fixed"


def test_the_early_season_model_is_the_maize_model_trained_on_ordered_batches() -> None:
    """The same data, recipe and seed as ``europe-maize``, with chronologically ordered batches:
    only the training order differs in its recorded configuration."""
    early, full = read_metadata(pretrained.path(EARLY)), read_metadata(pretrained.path(NAME))
    for field in ("architecture", "options", "bands", "time_steps", "season", "positive"):
        assert getattr(early, field) == getattr(full, field), field
    assert early.normalization == full.normalization and early.region == "europe"
    assert early.strategy == "scratch" and early.parent is None
    differs = {
        key
        for key, value in early.training["config"].items()
        if full.training["config"].get(key) != value
    }
    assert differs == {"ordering"} and early.training["config"]["ordering"] == "chronological"


def test_the_early_season_model_maps_a_season_cut_short(store: str) -> None:
    """With only the first four of eight composites observed (the rest zero-padded), the
    model trained on ordered batches maps the simulated maize; the full-season one does not."""
    from sarcrop.training import evaluate

    early = evaluate(EARLY, store, timesteps=4)["metrics"]["iou"]
    with pytest.warns(UserWarning, match="first 4 of 8.*such as the shipped europe-maize-early"):
        full = evaluate(NAME, store, timesteps=4)["metrics"]["iou"]
    assert early > 0.5 and full < 0.1
    # A crop-type model is pointed to a chronological fine-tuning of its own, not to a crop.
    with pytest.warns(
        UserWarning,
        match="first 4 of 8.*; for in-season maps fine-tune it on chronological batches",
    ):
        evaluate("europe-crop-types", store, timesteps=4)
    assert evaluate(EARLY, store)["metrics"]["iou"] > 0.5  # and still the full season


def test_which_models_learnt_early_seasons_is_told_down_the_fine_tuning_line(
    tmp_path: Path, store: str
) -> None:
    """A model learnt seasons cut short if it, or a model it was fine-tuned from, trained on
    them; ``bias`` keeps its parent's weights, RI none of them. Date dropout zeroes
    composites at random, not a season's tail: its model is warned about as one of full
    seasons."""
    assert read_metadata(pretrained.path(EARLY)).learnt_early_seasons() is True
    assert read_metadata(pretrained.path(NAME)).learnt_early_seasons() is False
    runs = {
        "bias": finetune(EARLY, store, tmp_path / "bias", strategy="bias", config=one_epoch()),
        "ri": finetune(EARLY, store, tmp_path / "ri", strategy="ri", config=one_epoch()),
        "ft": finetune(NAME, store, tmp_path / "ft", strategy="ft", config=one_epoch()),
        "ft+dd": finetune(
            NAME,
            store,
            tmp_path / "dd",
            strategy="ft",
            config=one_epoch().updated(date_dropout=0.25),
        ),
    }
    learnt = {
        name: read_metadata(run.checkpoint).learnt_early_seasons() for name, run in runs.items()
    }
    assert learnt == {"bias": True, "ri": False, "ft": False, "ft+dd": False}
    parent = read_metadata(runs["bias"].checkpoint).parent or {}
    assert parent["early_seasons"] is True
    # Each records the pixel size it learnt from, which predict compares with the images'.
    assert read_metadata(runs["ft"].checkpoint).training["pixel_size"] == 10.0
    # ... and the orbit of its scenes, which predict compares with the orbit it reads
    assert read_metadata(runs["ft"].checkpoint).training["orbit"] == "both"
    # A parent recorded before the field existed: not known, so no warning either way.
    meta = read_metadata(runs["ft"].checkpoint)
    meta.parent = {
        key: value for key, value in (meta.parent or {}).items() if key != "early_seasons"
    }
    assert meta.learnt_early_seasons() is None


def test_an_early_map_from_a_full_season_model_warns_once_per_model(
    store: str, tmp_path: Path
) -> None:
    """predict and evaluate say so where a model trained on full seasons alone is asked for a
    map from the first composites; not for the full season, an early-season model or the curve
    over every t."""
    import warnings

    from sarcrop.prediction import predict_map
    from sarcrop.training import evaluate

    scenes = Path(store).parent / "region"
    with pytest.warns(UserWarning, match="^europe-maize was trained on full seasons"):  # by name
        predict_map(NAME, scenes, tmp_path / "early.tif", timesteps=3, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_map(EARLY, scenes, tmp_path / "ordered.tif", timesteps=3, progress=False)
        predict_map(NAME, scenes, tmp_path / "full.tif", progress=False)
        evaluate(NAME, store, timesteps="all")
        evaluate(NAME, store, timesteps=8)


@pytest.mark.parametrize(
    ("name", "page"), [(NAME, "pretrained.md"), (TYPES, None), (EARLY, None), (PIXELS, None)]
)
def test_the_card_describes_this_file(name: str, page: str | None) -> None:
    """The card's hash, size and parameter count are those of the shipped file; the docs page
    of the first model is its card itself, and names the other."""
    path = pretrained.path(name)
    card = path.with_suffix(".md").read_text(encoding="utf-8")
    assert hashlib.sha256(path.read_bytes()).hexdigest() in card
    assert f"{path.stat().st_size:,}-byte file" in card
    trainable = read_metadata(path).training["parameters"]["trainable"]
    assert f"{trainable:,} parameters" in card
    assert "simulated data only" in card
    if page is not None:
        assert (ROOT / "docs" / page).read_text(encoding="utf-8") == card
        assert TYPES in card and EARLY in card and PIXELS in card


def test_the_crop_type_model_fine_tunes_to_one_crop_or_to_crop_types(
    tmp_path: Path, store: str
) -> None:
    """Maize by name keeps the whole head (read for maize against the rest), as ``evaluate
    --positive maize`` scores it as it is; crop types with winter cereal new carry the rest."""
    from sarcrop.training import evaluate

    maize = finetune(TYPES, store, tmp_path / "maize", strategy="fte", config=one_epoch())
    meta = read_metadata(maize.checkpoint)
    assert meta.positive == ["maize"] and meta.options["merged_head"][0] is True
    assert "new_head" not in meta.training
    as_it_is = evaluate(TYPES, store, positive="maize")
    assert as_it_is["positive"] == ["maize"] and 0 <= as_it_is["metrics"]["iou"] <= 1
    classes = ["maize", "barley", "potato", "grassland", "other"]
    types = finetune(
        TYPES, store, tmp_path / "types", strategy="ft", config=one_epoch().updated(classes=classes)
    )
    training = read_metadata(types.checkpoint).training
    assert list(training["carried_classes"]) == ["maize", "potato", "grassland", "other"]


def test_it_loads_without_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    path = pretrained.path(NAME)
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])  # a safetensors header, not a zip
    header = json.loads(path.read_bytes()[8 : 8 + length])
    assert "sarcrop" in header["__metadata__"]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model, meta = load_checkpoint(path)
    with torch.inference_mode():
        logits = model(torch.rand(1, meta.time_steps, len(meta.bands), 16, 16))
    assert logits.shape == (1, 1, 16, 16) and torch.isfinite(logits).all()


def test_finetune_by_name(tmp_path: Path, store: str) -> None:
    result = finetune(NAME, store, tmp_path / "run", strategy="fte", config=one_epoch())
    meta = read_metadata(result.checkpoint)
    assert meta.strategy == "fte" and meta.positive == ["maize"]
    assert meta.parent is not None
    assert meta.parent["sha256"] == hashlib.sha256(pretrained.path(NAME).read_bytes()).hexdigest()
    assert meta.normalization is not None and meta.normalization["method"] == "fixed"
    # Trained on 32 px patches, fine-tuned on 16 px ones: maps in windows of the latter.
    assert read_metadata(pretrained.path(NAME)).training["patch_size"] == 32
    assert meta.training["patch_size"] == 16


def test_cli_finetunes_by_name(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["finetune", NAME, store, "--out", str(out), "--strategy", "ftd", "--last-k", "1"]
    flags = ["--epochs", "1", "--batch-size", "4", "--val-fraction", "0", "--quiet"]
    assert main([*args, *flags, "--accelerator", "cpu"]) == 0
    meta = read_metadata(out / "model.safetensors")
    assert meta.strategy == "ftd" and meta.last_k == 1
    assert meta.parent is not None and meta.parent["region"] == "europe"


def test_evaluate_and_predict_take_the_name(tmp_path: Path, store: str) -> None:
    """The shipped model scored and loaded as it is (no fine-tuning), by name as by path."""
    from sarcrop.prediction.predict import load_model
    from sarcrop.training import evaluate

    by_name = evaluate(NAME, store)
    by_path = evaluate(pretrained.path(NAME), store)
    assert by_name["checkpoint"] == str(pretrained.path(NAME))
    assert by_name["metrics"] == by_path["metrics"]
    assert by_name["positive"] == ["maize"] and by_name["bands"] == ["VH", "VV"]
    assert main(["evaluate", NAME, store, "--out", str(tmp_path / "m.json")]) == 0
    written = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert written["metrics"]["iou"] == pytest.approx(by_name["metrics"]["iou"])
    assert load_model(NAME).bands == ("VH", "VV")
    with pytest.raises(CheckpointError, match="korea-rice"):
        evaluate("korea-rice", store)


def test_interpolation_exports_a_mix_of_the_start_and_the_fine_tuned_weights(
    tmp_path: Path, store: str
) -> None:
    """``interpolation: a`` exports (1 - a) * pre-trained + a * fine-tuned, tensor by tensor
    (buffers included); the same run at 1 is the fine-tuned end point."""
    trained = finetune(NAME, store, tmp_path / "a1", strategy="ft", config=one_epoch())
    mixed = finetune(
        NAME, store, tmp_path / "a3", strategy="ft", config=one_epoch().updated(interpolation=0.3)
    )
    start = load_checkpoint(pretrained.path(NAME))[0].state_dict()
    end = load_checkpoint(trained.checkpoint)[0].state_dict()
    model, meta = load_checkpoint(mixed.checkpoint)
    assert meta.training["config"]["interpolation"] == 0.3
    changed = 0
    for name, value in model.state_dict().items():
        if not value.is_floating_point():
            assert torch.equal(value, end[name])
            continue
        torch.testing.assert_close(value, 0.7 * start[name] + 0.3 * end[name])
        changed += not torch.equal(start[name], end[name])
    assert changed > 10  # fine-tuning moved the weights, so the mix is not the start


def test_the_per_pixel_model_fine_tunes_by_name_as_its_card_says(
    tmp_path: Path, store: str
) -> None:
    """The card's command: FT from the shipped TempCNN with the middle weight; the result maps
    each pixel alone, in windows of 256 px without overlap whatever patches it learnt on."""
    import rasterio

    from sarcrop.prediction import predict_map

    config = one_epoch().updated(recipe="few-labels", epochs=1, interpolation=0.5)
    result = finetune(PIXELS, store, tmp_path / "ft", strategy="ft", config=config)
    meta = read_metadata(result.checkpoint)
    assert meta.architecture == "tempcnn" and meta.positive == ["maize"]
    assert meta.parent is not None and meta.parent["region"] == "europe"
    assert meta.training["config"]["interpolation"] == 0.5
    scenes = Path(store).parent / "region"
    path = predict_map(result.checkpoint, scenes, tmp_path / "maize.tif", progress=False)
    with rasterio.open(path) as written:
        assert (written.tags()["WINDOW"], written.tags()["OVERLAP"]) == ("256", "0")


def test_interpolation_needs_a_pretrained_start(tmp_path: Path, store: str) -> None:
    from sarcrop.training import train

    half = one_epoch().updated(interpolation=0.5)
    for run in (
        lambda: finetune(NAME, store, tmp_path / "ri", strategy="ri", config=half),
        lambda: finetune(NAME, store, tmp_path / "probe", strategy="probe", config=half),
        lambda: train(store, tmp_path / "scratch", config=half),
    ):
        with pytest.raises(ConfigError) as error:
            run()
        assert "interpolation" in str(error.value) and "\n" not in str(error.value)
    names = ("ri", "probe", "scratch")
    assert not any((tmp_path / name / "model.safetensors").exists() for name in names)


def test_help_names_the_shipped_models(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    shown = capsys.readouterr().out
    assert NAME in shown and TYPES in shown  # names are not broken at their hyphens
