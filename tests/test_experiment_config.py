"""What an experiment config refuses as it is read, in one line naming the file and the key:
settings the run would ignore or replace, and values of the wrong kind."""

from __future__ import annotations

import copy

import pytest

from sarcrop.errors import ConfigError
from sarcrop.experiments import load_experiment_config
from sarcrop.experiments.config import PretrainSpec
from test_experiment import TINY, write_config

TYPES = {"finetune": "spain", "test": "france", "classes": ["rice", "other"]}


def refused(tmp_path, data: dict) -> str:
    """The one-line problem a config is refused with."""
    with pytest.raises(ConfigError) as error:
        load_experiment_config(write_config(tmp_path, data))
    assert str(error.value).startswith(f"{tmp_path / 'experiment.yaml'}: ")
    assert "\n" not in str(error.value)
    return error.value.problem


def changed(**sections: dict) -> dict:
    """TINY with keys of its sections changed: ``changed(finetune={"lr": 0.1})``."""
    data = copy.deepcopy(TINY)
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return data


@pytest.mark.parametrize(
    ("data", "key", "points_to"),
    [
        (changed(finetune={"label_fraction": 0.3}), "finetune.label_fraction", "fractions:"),
        (changed(baseline={"label_fraction": 0.3}), "baseline.label_fraction", "fractions:"),
        (changed(finetune={"classes": ["rice", "other"]}), "finetune.classes", "classes:"),
        (changed(baseline={"classes": ["rice", "other"]}), "baseline.classes", "classes:"),
        (
            {**changed(variants={"few": {"label_fraction": 0.5}}), "methods": ["rf", "fte+few"]},
            "variants.few.label_fraction",
            "fractions:",
        ),
    ],
)
def test_a_share_of_labels_or_classes_of_a_runs_settings_is_the_experiments(
    tmp_path, data, key, points_to
):
    """``label_fraction`` and ``classes`` in ``finetune:`` or ``baseline:`` held at a fraction
    of 1 (where the rows said every label) and were replaced at the others; a forest of
    classes on a one-crop scenario ended in a traceback. They are the experiment's."""
    problem = refused(tmp_path, data)
    assert problem.startswith(f"{key}: ") and points_to in problem


def test_a_crop_type_early_season_curve_takes_no_method_or_orderings(tmp_path):
    """A crop-type scenario's curve is its main runs' mIoU at each t: a method and orderings
    named for it were accepted and ignored."""
    types = {**TINY, "methods": ["rf", "ri"], "scenarios": [TYPES]}
    for early, key in (
        ({"scenario": 0, "method": "ftd"}, "method"),
        ({"scenario": 0, "orderings": ["random"]}, "orderings"),
    ):
        problem = refused(tmp_path, {**types, "early_season": early})
        assert problem.startswith(f"early_season.{key}: scenario 0 maps crop types")
    curve = load_experiment_config(write_config(tmp_path, {**types, "early_season": {}}))
    assert curve.early_season is not None and curve.every_method() == ["rf", "ri"]


@pytest.mark.parametrize(
    ("region", "ignored"),
    [
        (
            {"merge": ["spain", "france"], "split": {"method": "test"}, "bands": ["VH"]},
            "a merge takes its members' patches as they were prepared, so bands, split would "
            "not apply; give them to its members (a merge takes percentiles only)",
        ),
        (
            {"merge": ["spain", "france"], "tiling": {"patch_size": 64}, "timesteps": 8},
            "so timesteps, tiling would not apply",
        ),
        ({"store": "prepared.zarr", "percentiles": [2, 98]}, "so percentiles would not apply"),
        (
            {"store": "prepared.zarr", "label_options": {"column": "code"}, "days": 10},
            "a store is read as it was prepared, so label_options, days would not apply; "
            "prepare the store with them (sarcrop prepare)",
        ),
        (
            {"simulate": {"preset": "spain"}, "labels": "fields.gpkg"},
            "a simulated region draws its own labels, so labels would not apply",
        ),
    ],
)
def test_how_to_prepare_a_merge_or_a_store_is_refused(tmp_path, region, ignored):
    """A merge, a prepared store or a simulated region was accepted with a split, bands,
    tiling, timesteps, labels ... and made without them."""
    data = {**TINY, "regions": {**TINY["regions"], "both": region}}
    problem = refused(tmp_path, data)
    assert problem.startswith("regions.both: ") and ignored in problem


def test_a_merge_renormalises_with_its_percentiles(tmp_path):
    merge = {"merge": ["spain", "france"], "percentiles": [1, 99]}
    data = {**TINY, "regions": {**TINY["regions"], "both": merge}}
    assert load_experiment_config(write_config(tmp_path, data)).regions["both"].percentiles


FOLDS = {"finetune": "x", "test": "x", "crop": "rice", "folds": 2}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"pretrains": 5}, "pretrains: Input should be a valid dictionary"),
        ({"pretrains": ["a"]}, "pretrains: Input should be a valid dictionary"),
        (
            {"scenarios": [{**TYPES, "classes": 5}]},
            "scenarios.0.classes: give a list of class names or a comma-separated string, not 5",
        ),
        ({"classes": 5}, "classes: give a list of class names"),
        (
            {"regions": {**TINY["regions"], "x": "oops"}, "scenarios": [FOLDS]},
            "regions.x: Input should be a valid dictionary",
        ),
        (
            {"pretrain": {"checkpoint": "europe-maize", "train": [1]}},
            "pretrain.train: Input should be a valid dictionary",
        ),
        (
            {"pretrain": {"checkpoint": "europe-maize", "model_options": [1]}},
            "pretrain.model_options: Input should be a valid dictionary",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_named_with_its_key(tmp_path, change, problem):
    """Each of these ended in a TypeError or AttributeError traceback, or (``pretrains: [a]``)
    in a line naming no key."""
    data = {**TINY, "early_season": None, **change}
    assert refused(tmp_path, data).startswith(problem)


def test_an_unknown_architecture_or_option_is_named_before_any_work(tmp_path):
    """A misspelt model failed after the regions were simulated and prepared; an option the
    model does not have, as the pre-training built it."""
    model = refused(tmp_path, changed(pretrain={"model": "recurrent_unte"}))
    assert model.startswith("pretrain.model: unknown model 'recurrent_unte'; choose one of ")
    assert "recurrent_unet" in model
    options = refused(tmp_path, changed(pretrain={"model_options": {"width": [4, 8]}}))
    assert options.startswith(
        "pretrain.model_options: unknown option(s) width for model 'recurrent_unet'; valid: "
    )
    named = {**TINY, "pretrain": None, "pretrains": {"a": {**TINY["pretrain"], "model": "unet"}}}
    assert refused(tmp_path, named).startswith("pretrains.a.model: unknown model 'unet'")
    tempcnn = changed(pretrain={"model": "tempcnn", "model_options": {"widths": [4, 8]}})
    assert load_experiment_config(write_config(tmp_path, tempcnn)).pretrain.model == "tempcnn"
    # A checkpoint's options are its own (a head fine-tuned for one crop has merged_head).
    head = {"merged_head": [True, False]}
    assert PretrainSpec(checkpoint="model.safetensors", model_options=head).model_options == head
