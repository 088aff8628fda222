"""Experiment configs shipped with sarcrop (the YAML files of ``sarcrop/configs``), addressable
by name."""

from __future__ import annotations

from pathlib import Path

from sarcrop.utils.validation import shipped_yaml


def shipped_configs() -> dict[str, Path]:
    """Name → path of the YAML configs that ship inside the package."""
    return shipped_yaml("configs")


def resolve_config(name_or_path: str | Path) -> Path:
    """A path as given, or the shipped config of that name (``paper``, ``barley``, ``real`` …)."""
    path = Path(name_or_path)
    if path.is_file() or path.suffix in {".yaml", ".yml"}:  # a run folder does not shadow a name
        return path
    return shipped_configs().get(str(name_or_path), path)
