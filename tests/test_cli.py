"""The command line as a whole: what every command's arguments and help have in common."""

from __future__ import annotations

import pytest

from sarcrop.cli import COMMANDS, build_parser, main

ARGUMENTS = {
    "prepare": ["prepare", "--images", "scenes", "--out", "s.zarr"],
    "baseline": ["baseline", "s.zarr"],
    "train": ["train", "s.zarr", "--out", "run"],
    "finetune": ["finetune", "europe-maize", "s.zarr", "--out", "run", "--strategy", "ft"],
}


@pytest.mark.parametrize("command", sorted(ARGUMENTS))
def test_bands_and_classes_take_spaces_or_commas(command, capsys):
    """``--bands VH,VV`` is ``--bands VH VV``, as the comma-separated options read."""
    parse = build_parser().parse_args
    argv = ARGUMENTS[command]
    spaced = parse([*argv, "--bands", "VH", "VV", "--positive", "maize", "sorghum"])
    commas = parse([*argv, "--bands", "VH,VV", "--positive", "maize,sorghum"])
    assert spaced.bands == commas.bands == ["VH", "VV"]
    assert spaced.positive == commas.positive == ["maize", "sorghum"]
    with pytest.raises(SystemExit):
        parse([*argv, "--bands", "VH,,VV"])
    assert "--bands: empty name in 'VH,,VV'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], *[[c.name] for c in COMMANDS]])
def test_every_help_prints(command, capsys):
    """``sarcrop --help`` and each command's: argparse %-formats help text, so a bare "95%"
    in one of them would crash the help instead of printing it."""
    with pytest.raises(SystemExit) as exit_code:
        main([*command, "--help"])
    assert exit_code.value.code == 0
    assert capsys.readouterr().out.startswith("usage: sarcrop")


def test_options_are_taken_by_their_whole_names_only(capsys):
    """An abbreviation (``--epoch`` for ``--epochs``) is refused: in a script it would break,
    or change meaning, once an option starting the same way is added."""
    parse = build_parser().parse_args
    assert parse(ARGUMENTS["train"] + ["--epochs", "3"]).epochs == 3
    with pytest.raises(SystemExit):
        parse(ARGUMENTS["train"] + ["--epoch", "3"])
    assert "unrecognized arguments: --epoch 3" in capsys.readouterr().err
