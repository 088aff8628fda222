"""The docs against the code: command lines that parse, settings blocks that are the defaults.

A renamed or removed option otherwise lives on in the docs until a user types it. Every
``sarcrop`` command line in the README, the docs and the model cards must parse with the CLI,
every name their Python examples import from sarcrop must exist and take the keywords they pass,
and the settings blocks of docs/training.md must list every field at its default. The
command
lines are read from the fenced code blocks, as a user copies them: backslash continuations
joined, trailing comments dropped, shell variables (``$s``, ``"$D/geotiff/..."``) standing for
any value. An option in brackets (``[--timesteps 4]``) is optional: the line must parse without
it and with it.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from sarcrop.cli import build_parser
from sarcrop.options import BaselineOptions
from sarcrop.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "src" / "sarcrop" / "pretrained").glob("*.md")),
]
FENCED = re.compile(r"^```[\w-]*\n(.*?)^```", re.S | re.M)
OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
OUTPUT = re.compile(r"^sarcrop \w+:")  # a message the CLI printed, not a command


def command_lines(document: Path) -> list[str]:
    """The ``sarcrop …`` lines of the document's fenced code blocks, continuations joined."""
    lines = []
    for block in FENCED.findall(document.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("sarcrop ") and not OUTPUT.match(line):
                lines.append(re.split(r"\s#", line)[0].strip())
    return lines


def variants(line: str) -> list[str]:
    """The line without its optional options, and with them."""
    without = OPTIONAL.sub("", line)
    with_options = OPTIONAL.sub(lambda m: m[1] if m[1].lstrip().startswith("-") else "", line)
    return [without, with_options]


def arguments(line: str) -> list[str]:
    """The line's arguments after ``sarcrop``, with each shell variable read as ``0``."""
    line = re.sub(r"\$\{?\w+\}?", "0", line)
    return shlex.split(line)[1:]


def parse_error(argv: list[str]) -> str | None:
    """argparse's message for ``argv``, or None where it parses."""
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as stop:
        if stop.code:
            return messages.getvalue().strip().splitlines()[-1]
    return None


DOCUMENTED = [
    pytest.param(line, id=f"{document.name}:{number}")
    for document in DOCUMENTS
    for number, line in enumerate(command_lines(document))
]


def test_the_docs_show_commands_of_every_kind() -> None:
    """The reader finds the command lines (a broken reader would make the next test vacuous)."""
    commands = {arguments(variants(line)[0])[0] for line in (p.values[0] for p in DOCUMENTED)}
    assert len(DOCUMENTED) > 100
    assert {"prepare", "finetune", "evaluate", "baseline", "predict", "assess"} <= commands


@pytest.mark.parametrize("line", DOCUMENTED)
def test_a_documented_command_parses(line: str) -> None:
    for variant in variants(line):
        error = parse_error(arguments(variant))
        assert error is None, f"{variant}: {error}"


def test_a_stale_option_is_caught() -> None:
    assert parse_error(arguments("sarcrop train store.zarr --out run --epochs 3")) is None
    for stale in ("--epoch", "--epochz"):
        message = parse_error(arguments(f"sarcrop train store.zarr --out run {stale} 3"))
        assert f"unrecognized arguments: {stale}" in str(message)
    assert variants("sarcrop predict m --images d --out o.tif [--timesteps 4] [x]") == [
        "sarcrop predict m --images d --out o.tif  ",
        "sarcrop predict m --images d --out o.tif --timesteps 4 ",
    ]
    assert arguments('sarcrop simulate europe --out "$D/europe${s}" --seed $s') == [
        "simulate",
        "europe",
        "--out",
        "0/europe0",
        "--seed",
        "0",
    ]


def yaml_blocks(document: Path) -> list[dict]:
    """The mappings of the document's fenced YAML blocks."""
    text = document.read_text(encoding="utf-8")
    return [
        yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
    ]


def settings_block(*keys: str) -> dict:
    """docs/training.md's one YAML block that sets all of ``keys``."""
    found = [b for b in yaml_blocks(ROOT / "docs" / "training.md") if set(keys) <= set(b)]
    assert len(found) == 1, f"{len(found)} blocks of docs/training.md set {keys}"
    return found[0]


def test_the_documented_training_settings_are_every_field_at_its_default() -> None:
    block = settings_block("epochs", "batch_size", "lr")
    assert set(block) == set(TrainConfig.model_fields)
    assert TrainConfig(**block) == TrainConfig()


def test_the_documented_forest_settings_are_every_option_at_its_default() -> None:
    block = settings_block("n_estimators", "max_samples_per_class")
    assert set(block) == set(BaselineOptions.model_fields)
    assert BaselineOptions(**block) == BaselineOptions()


# Keywords a config takes besides its fields: expanded by a validator before the fields are read.
EXPANDED = {"TrainConfig": {"recipe"}}


def python_blocks() -> list[pytest.param]:
    return [
        pytest.param(block, id=f"{document.name}:{number}")
        for document in DOCUMENTS
        for number, block in enumerate(
            re.findall(r"^```python\n(.*?)^```", document.read_text(encoding="utf-8"), re.S | re.M)
        )
    ]


def imported(tree: ast.AST) -> dict[str, object]:
    """Name → object of everything the code imports from sarcrop (an AttributeError where a
    name is gone)."""
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sarcrop"):
            module = importlib.import_module(str(node.module))
            for alias in node.names:
                names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def unknown_keywords(tree: ast.AST) -> list[str]:
    """``name(keyword=…)`` calls of imported sarcrop callables whose keyword it does not take."""
    names = imported(tree)
    unknown = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        target = names.get(node.func.id)
        if target is None or not callable(target):
            continue
        parameters = inspect.signature(target).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        taken = set(parameters) | EXPANDED.get(node.func.id, set())
        unknown += [f"{node.func.id}({k.arg}=)" for k in node.keywords if k.arg not in taken]
    return unknown


def test_the_docs_show_python_examples() -> None:
    blocks = [ast.parse(p.values[0]) for p in python_blocks()]
    assert len(blocks) > 10
    assert sum(len(imported(tree)) for tree in blocks) > 30


@pytest.mark.parametrize("block", python_blocks())
def test_a_documented_python_example_imports_and_calls_what_exists(block: str) -> None:
    assert unknown_keywords(ast.parse(block)) == []


# A Python signature quoted in prose: `finetune(checkpoint, store, *, strategy) -> TrainResult`.
SIGNATURE = re.compile(r"`((?:sarcrop\.[\w.]+\.)?(\w+))\(([^`]*?)\)(?: -> [^`]+)?`")


def documented_parameters(text: str) -> list[tuple[str, list[str]]]:
    """Each signature quoted in ``text`` whose callable sarcrop.training (or its dotted
    module) has, with the parameter names it lists."""
    found = []
    for dotted, name, listed in SIGNATURE.findall(text):
        module = dotted.rpartition(".")[0] or "sarcrop.training"
        if not callable(target := getattr(importlib.import_module(module), name, None)):
            continue
        names = [part.split("=")[0].strip() for part in listed.split(",")]
        taken = inspect.signature(target).parameters
        found.append((name, [n for n in names if n not in ("", "*", "...") and n not in taken]))
    return found


def test_the_documented_signatures_take_the_parameters_they_list() -> None:
    """docs/training.md's table of the Python API lists the parameters of each function:
    finetune's ``statistics`` was listed as ``normalization``, a keyword it does not take."""
    found = documented_parameters((ROOT / "docs" / "training.md").read_text(encoding="utf-8"))
    assert {name for name, _ in found} >= {"train", "finetune", "train_ri", "evaluate", "fit"}
    assert [(name, unknown) for name, unknown in found if unknown] == []
    assert documented_parameters("`finetune(checkpoint, normalization)`") == [
        ("finetune", ["normalization"])
    ]


def test_a_renamed_keyword_or_name_is_caught() -> None:
    code = "from sarcrop.training import evaluate\nevaluate('m', 's', splt='test')"
    assert unknown_keywords(ast.parse(code)) == ["evaluate(splt=)"]
    with pytest.raises(AttributeError):
        imported(ast.parse("from sarcrop.training import evaluat"))
