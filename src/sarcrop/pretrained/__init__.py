"""Pre-trained checkpoints shipped inside the package, addressed by name.

A user with a few labelled fields fine-tunes one of these (``sarcrop finetune europe-maize
STORE ...``) instead of running a pre-training first. Each ``NAME.safetensors`` here has a model
card ``NAME.md`` next to it: what it was trained on, its inputs and its measured transfer results.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sarcrop.errors import CheckpointError
from sarcrop.utils.validation import did_you_mean

SUFFIX = ".safetensors"


def available() -> list[str]:
    """Names of the shipped checkpoints, sorted."""
    entries = resources.files(__name__).iterdir()
    return sorted(e.name.removesuffix(SUFFIX) for e in entries if e.name.endswith(SUFFIX))


def path(name: str) -> Path:
    """The file of the shipped checkpoint ``name``; a one-line error lists the names if absent."""
    names = available()
    if name not in names:
        meant = did_you_mean(name, names)
        raise CheckpointError(
            f"no pre-trained model named {name!r}; {meant}{' ' if meant else ''}shipped: "
            f"{', '.join(names) or 'none'}"
        )
    return Path(str(resources.files(__name__) / f"{name}{SUFFIX}"))


def is_name(checkpoint: str | Path) -> bool:
    """Whether ``checkpoint`` reads as a shipped model's name rather than a file: no folder, no
    suffix, and no file of that name in the working directory (a local file wins). A folder
    of a shipped model's name (a run's output, say) is no checkpoint, so the name is the
    shipped model's; a folder of another name stays a path (and is refused as one)."""
    text = str(checkpoint)
    plain = Path(text)
    if plain.name != text or plain.suffix:
        return False
    return not plain.exists() or (plain.is_dir() and text in available())


def resolve(checkpoint: str | Path) -> str | Path:
    """``checkpoint`` itself when it is a file path, else the shipped checkpoint of that name."""
    return path(str(checkpoint)) if is_name(checkpoint) else checkpoint


# Every shipped model learnt from the simulator's 10 m pixels (their cards), recorded before
# checkpoints recorded a pixel size.
PIXEL_SIZE = 10.0


def is_shipped(checkpoint: str | Path) -> bool:
    """Whether ``checkpoint`` is the file of a shipped model."""
    file = Path(checkpoint)
    folder = Path(str(resources.files(__name__))).resolve()
    return file.suffix == SUFFIX and file.resolve().parent == folder


def display_name(checkpoint: str | Path) -> str:
    """How messages name a model: a shipped one by its name, a file by its path as given (every
    run's file is called ``model.safetensors``, so its folder tells runs apart)."""
    if is_shipped(checkpoint):
        return Path(checkpoint).name.removesuffix(SUFFIX)
    return str(checkpoint) or "the model"
