"""Packaging: ranges in pyproject.toml, the tested set in constraints.txt, and what the wheel ships.

The wheel is built offline with the environment's own setuptools (no build isolation, no
index), from a copy of the sources so that nothing is written into the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]


def requirements() -> list[Requirement]:
    """Every requirement of the package and its extras, less the extras' references to itself."""
    meta = project()
    listed = [
        *meta["dependencies"],
        *(r for group in meta["optional-dependencies"].values() for r in group),
    ]
    return [Requirement(r) for r in listed if Requirement(r).name != meta["name"]]


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            found[canonical(name)] = Version(version)
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_declares_ranges_not_pins() -> None:
    exact = [
        str(r) for r in requirements() if any(s.operator in {"==", "==="} for s in r.specifier)
    ]
    assert exact == []
    assert all(r.specifier for r in requirements()), "every dependency has a lower bound"


def test_constraints_pin_every_requirement_inside_its_range() -> None:
    pinned = pins()
    for requirement in requirements():
        version = pinned.get(canonical(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"constraints.txt pins {requirement.name}=={version} outside {requirement}"
        )


def test_make_installs_the_tested_torch_first_with_the_constraints() -> None:
    assert pins()["torch"] == Version("2.13.0")
    install = [line.strip() for line in (ROOT / "Makefile").read_text().splitlines()]
    pip = [line for line in install if line.startswith("$(BIN)/pip install")]
    assert pip[0] == "$(BIN)/pip install -c constraints.txt torch==2.13.0"
    assert all("-c constraints.txt" in line for line in pip)
    assert Requirement(
        next(r for r in project()["dependencies"] if r.startswith("torch"))
    ).specifier.contains("2.13.0")


def test_onnx_is_an_optional_extra() -> None:
    meta = project()
    core = {Requirement(r).name for r in meta["dependencies"]}
    assert not core & {"onnx", "onnxruntime"}
    assert {Requirement(r).name for r in meta["optional-dependencies"]["onnx"]} == {
        "onnx",
        "onnxruntime",
    }


@pytest.mark.timeout(300)
def test_wheel_ships_configs_and_type_marker(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    out = tmp_path / "dist"
    out.mkdir()
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("sarcrop-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata_name).decode()
        entry_points = archive.read(metadata_name.replace("METADATA", "entry_points.txt")).decode()
    package = ROOT / "src" / "sarcrop"
    shipped = {
        f"sarcrop/{p.relative_to(package).as_posix()}" for p in package.glob("configs/**/*.yaml")
    }
    assert "sarcrop/configs/recipes/few-labels.yaml" in shipped and shipped <= names
    assert "sarcrop/py.typed" in names
    models = {
        f"sarcrop/pretrained/{p.name}"
        for p in (ROOT / "src/sarcrop/pretrained").iterdir()
        if p.suffix in {".safetensors", ".md"}
    }
    assert "sarcrop/pretrained/europe-maize.safetensors" in models and models <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert "Requires-Python: >=3.11" in metadata
    assert "Provides-Extra: onnx" in metadata
    assert "sarcrop = sarcrop.cli:main" in entry_points
