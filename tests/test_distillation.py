"""Fine-tuning with ``distillation``: the unlabelled pixels learn the pre-trained start's
predictions, so a few labels correct the start where they lie and leave the rest in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sarcrop import pretrained
from sarcrop.data.dataset import PatchDataset
from sarcrop.data.parcels import label_subset
from sarcrop.errors import ConfigError
from sarcrop.training import TrainConfig, finetune, load_checkpoint, read_metadata
from sarcrop.training.config import validate_config
from sarcrop.training.losses import distillation_loss
from test_pretrained import NAME, europe_store


def few_labels(**changes: object) -> TrainConfig:
    settings = {"recipe": "few-labels", "epochs": 6, "label_fraction": 0.25}
    settings |= {"accelerator": "cpu", "progress_bar": False, **changes}
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return europe_store(tmp_path_factory.mktemp("distillation"))


@pytest.mark.parametrize("outputs", [1, 3])
def test_the_loss_is_least_at_the_teachers_answer_and_reads_only_the_masked_pixels(outputs):
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, outputs, 4, 4, generator=generator)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    student = torch.randn(2, outputs, 4, 4, generator=generator, requires_grad=True)
    loss = distillation_loss(student, teacher, mask)
    loss.backward()
    assert student.grad is not None
    assert student.grad[:, :, 2:].abs().max() == 0  # pixels outside the mask do not count
    assert student.grad[:, :, :2].abs().max() > 0
    at_teacher = teacher.clone().requires_grad_(True)
    least = distillation_loss(at_teacher, teacher, mask)
    least.backward()
    assert at_teacher.grad is not None
    torch.testing.assert_close(at_teacher.grad, torch.zeros_like(teacher), atol=1e-7, rtol=0)
    assert least.item() < loss.item()
    moved = student.detach().clone()
    moved[:, :, 2:] += 5.0
    assert distillation_loss(moved, teacher, mask).item() == pytest.approx(loss.item())
    nothing = distillation_loss(student, teacher, torch.zeros_like(mask))
    assert nothing.item() == 0 and nothing.requires_grad


def test_the_fine_tuned_model_stays_closer_to_the_start_off_the_labels(store: str, tmp_path):
    """With a quarter of the parcels labelled, the pixels left unlabelled are predicted more
    as the pre-trained start predicts them with distillation than without."""
    plain = finetune(NAME, store, tmp_path / "plain", strategy="ft", config=few_labels())
    taught = finetune(
        NAME, store, tmp_path / "taught", strategy="ft", config=few_labels(distillation=5.0)
    )
    meta = read_metadata(taught.checkpoint)
    assert meta.training["config"]["distillation"] == 5.0
    assert "distillation" not in read_metadata(plain.checkpoint).training["config"]
    dataset = PatchDataset(
        store, "train", meta.positive, meta.bands, normalization=meta.normalization
    )
    items = [dataset[i] for i in range(len(dataset))]
    kept = label_subset(store, 0.25, 0, positive=meta.positive).keep[dataset.indices]
    unlabelled = ~(np.stack([item["valid"].numpy() for item in items]) & kept)
    assert unlabelled.mean() > 0.5
    image = torch.stack([item["image"] for item in items])

    def probabilities(checkpoint: Path | str) -> np.ndarray:
        model = load_checkpoint(checkpoint)[0].eval()
        with torch.inference_mode():
            return torch.sigmoid(model(image)).squeeze(1).numpy()

    start = probabilities(pretrained.path(NAME))
    plain_gap = np.abs(probabilities(plain.checkpoint) - start)[unlabelled].mean()
    taught_gap = np.abs(probabilities(taught.checkpoint) - start)[unlabelled].mean()
    assert plain_gap > 0.02  # fine-tuning moved the unlabelled pixels
    assert taught_gap < 0.75 * plain_gap  # measured: about half


def test_only_fine_tuning_has_a_start_to_learn_from(store: str, tmp_path):
    from sarcrop.training import train

    taught = few_labels(distillation=1.0, epochs=1)
    runs = {
        "ri": lambda: finetune(NAME, store, tmp_path / "ri", strategy="ri", config=taught),
        "probe": lambda: finetune(NAME, store, tmp_path / "probe", strategy="probe", config=taught),
        "scratch": lambda: train(store, tmp_path / "scratch", config=taught),
    }
    for name, run in runs.items():
        with pytest.raises(ConfigError) as error:
            run()
        assert "distillation" in str(error.value) and "\n" not in str(error.value)
        assert not (tmp_path / name / "model.safetensors").exists()


def test_the_setting_is_validated_and_left_out_of_old_fingerprints():
    assert "distillation" not in TrainConfig().fingerprint()
    assert TrainConfig(distillation=0.5).fingerprint()["distillation"] == 0.5
    with pytest.raises(ConfigError, match="distillation"):
        validate_config({"distillation": -1})


def test_an_experiment_whose_fine_tuning_trains_a_new_head_is_refused_up_front():
    """A crop-type scenario from a binary pre-training has no teacher with its outputs."""
    from sarcrop.experiments.config import experiment_config_from_dict
    from test_experiment import TINY

    scenario = {"finetune": "spain", "test": "france", "classes": ["rice", "other"]}
    data = {**TINY, "scenarios": [scenario], "methods": ["ri", "ft"], "early_season": None}
    data["finetune"] = {**TINY["finetune"], "distillation": 1.0}
    with pytest.raises(ConfigError, match=r"scenarios\[0\] maps rice, other.*distillation needs"):
        experiment_config_from_dict(data)
    data["finetune"]["distillation"] = 0.0
    assert experiment_config_from_dict(data).finetune.distillation == 0
