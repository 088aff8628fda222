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


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["finetune", "europe-maize", "s.zarr", "--out", "run", "--strategy", "FTD"],
            "argument --strategy: invalid choice: 'FTD'",
        ),
        (
            ["prepare", "--images", "x", "--out", "s.zarr", "--season-start", "21/04/2018"],
            "argument --season-start: '21/04/2018' is not a date YYYY-MM-DD",
        ),
        (
            ["predict", "europe-maize", "--images", "x", "--out", "m.tif", "--until", "30-06-2018"],
            "argument --until: '30-06-2018' is not a date YYYY-MM-DD",
        ),
        (
            ["prepare", "--images", "x", "--out", "s.zarr", "--resoluton", "10"],
            "unrecognized arguments: --resoluton 10; did you mean --resolution?",
        ),
        (
            ["predict", "europe-maize", "--images", "x", "--out", "m.tif", "--thresold=0.3"],
            "unrecognized arguments: --thresold=0.3; did you mean --threshold?",
        ),
        (["evaluate", "m.safetensors", "s.zarr", "--quiet"], "unrecognized arguments: --quiet ("),
    ],
)
def test_a_mistyped_value_or_flag_is_one_line_naming_the_commands_help(argv, expected, capsys):
    """Without the usage; an unknown flag with the flag meant, where one is close."""
    with pytest.raises(SystemExit) as exit_code:
        main(argv)
    assert exit_code.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert err.startswith(f"sarcrop {argv[0]}: error:") and f"(see sarcrop {argv[0]} --help)" in err


def test_a_glob_the_shell_expanded_is_named(tmp_path, capsys):
    """Unquoted, ``--images dir/*_S1_*`` reaches sarcrop as several files."""
    files = [tmp_path / f"x_S1_{band}.tif" for band in ("VH", "VV")]
    for path in files:
        path.touch()
    with pytest.raises(SystemExit):
        main(["predict", "europe-maize", "--images", *map(str, files), "--out", "m.tif"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the shell expanded a glob into these files: quote it" in err
    # Two checkpoints where one goes: models to average, not a glob.
    models = [tmp_path / f"{name}.safetensors" for name in ("a", "b")]
    for path in models:
        path.touch()
    with pytest.raises(SystemExit):
        main(["predict", *map(str, models), "--images", str(files[0]), "--out", "m.tif"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "several models to average go after --models" in err


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """``sarcrop … | head``: output into a pipe nobody reads ends with SIGPIPE's code, not
    with an error, and the command's work is done up to there."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the first line
    sarcrop = [sys.executable, "-c", "import sys; from sarcrop.cli import main; sys.exit(main())"]
    command = [*sarcrop, "simulate", "spain", "--out", str(tmp_path)]
    with os.fdopen(write_end, "w") as stdout:
        done = subprocess.run(
            [*command, "--size", "64", "64", "--quiet"], stdout=stdout, stderr=subprocess.PIPE
        )
    assert (done.returncode, done.stderr) == (141, b"")
    assert (tmp_path / "labels.tif").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "store.zarr", "--out", "run"],
        ["finetune", "europe-maize", "store.zarr", "--out", "run", "--strategy", "fte"],
        ["baseline", "store.zarr"],
    ],
)
def test_a_crop_and_classes_together_are_refused(argv, capsys):
    """``--positive maize --classes maize,potato,other`` made a crop-type model and said
    nothing of the crop: one map or the other, said before any store is read."""
    code = main([*argv, "--positive", "maize", "--classes", "maize,potato,other"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--positive maize names the crop of a one-crop map, and --classes" in err


def test_name_lists_take_spaces_or_commas_as_every_name_list_does() -> None:
    """``predict --positive`` and ``baseline --classes`` read several names like ``evaluate
    --positive``: ``maize potato`` and ``maize,potato`` are one list."""
    import argparse

    from sarcrop.options import BaselineOptions, MapOptions, add_flags, from_flags

    for kind, flag, field in (
        (MapOptions, "--positive", "positive"),
        (BaselineOptions, "--classes", "classes"),
    ):
        parser = argparse.ArgumentParser()
        add_flags(parser, kind)
        for given in (
            ["maize", "potato", "other"],
            ["maize,potato", "other"],
            ["maize,potato,other"],
        ):
            options = from_flags(kind, parser.parse_args([flag, *given]))
            assert getattr(options, field) == ("maize", "potato", "other")


def test_number_lists_take_spaces_or_commas_and_parent_classes_json_or_pairs() -> None:
    """``--epoch-search 5 10 20`` is ``5,10,20`` (it was "unrecognized arguments: 10"), and
    ``--parent-classes`` reads the JSON its metavar shows as well as ``ours=theirs`` pairs."""
    import argparse

    from sarcrop.options import add_flags, from_flags
    from sarcrop.training.config import TrainConfig

    parser = argparse.ArgumentParser()
    add_flags(parser, TrainConfig)
    for given in (["5", "10", "20"], ["5,10", "20"], ["5,10,20"]):
        args = parser.parse_args(["--epoch-search", *given, "--val-fraction", "0"])
        assert from_flags(TrainConfig, args).epoch_search == (5, 10, 20)
    for text in ('{"winter_cereal": "wheat"}', "winter_cereal=wheat"):
        args = parser.parse_args(["--parent-classes", text])
        assert from_flags(TrainConfig, args).parent_classes == {"winter_cereal": "wheat"}


def test_none_sets_a_field_whose_default_is_a_number_to_none(capsys) -> None:
    """``--max-samples-per-class none`` is the API's and the YAML's ``None`` (every pixel): a
    flag left out keeps the default, a flag's ``none`` is not "left out"."""
    import argparse

    from sarcrop.cli.shared import add_training_options, config_from_args
    from sarcrop.options import BaselineOptions, add_flags, from_flags

    parser = argparse.ArgumentParser()
    add_flags(parser, BaselineOptions)
    assert from_flags(BaselineOptions, parser.parse_args([])).max_samples_per_class == 50_000
    args = parser.parse_args(["--max-samples-per-class", "none"])
    assert from_flags(BaselineOptions, args).max_samples_per_class is None

    parser = argparse.ArgumentParser()
    add_training_options(parser)
    config = config_from_args(parser.parse_args(["--gradient-clip", "None", "--patience", "none"]))
    assert (config.gradient_clip, config.patience) == (None, None)
    assert config_from_args(parser.parse_args(["--gradient-clip", "2"])).gradient_clip == 2.0
    assert config_from_args(parser.parse_args([])).gradient_clip == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--gradient-clip", "off"])
    assert "expected a number or 'none', got 'off'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["baseline", "missing.zarr", "--seed", "-1"],
        ["prepare", "--images", "missing", "--out", "missing.zarr", "--seed", "-2"],
    ],
)
def test_a_negative_seed_is_a_one_line_error(argv, capsys, tmp_path, monkeypatch) -> None:
    """NumPy's generators take no negative seed: say so before any work, not in a traceback."""
    from faults_support import assert_clean_error, run_cli

    monkeypatch.chdir(tmp_path)
    code, err = run_cli(argv, capsys)
    assert_clean_error(code, err, "seed", "greater than or equal to 0")


def test_every_seed_option_refuses_a_negative_seed() -> None:
    from sarcrop.errors import ConfigError
    from sarcrop.options import BaselineOptions, SamplingOptions, SplitOptions

    for kind in (BaselineOptions, SamplingOptions, SplitOptions):
        with pytest.raises(ConfigError, match="seed"):
            kind(seed=-1)
        assert kind(seed=0).seed == 0


def test_max_depth_reads_none_as_its_help_says(capsys) -> None:
    """``--max-depth none`` is docs/training.md's ``max_depth: null``: no depth limit."""
    import argparse

    from sarcrop.options import BaselineOptions, add_flags, from_flags

    parser = argparse.ArgumentParser()
    add_flags(parser, BaselineOptions)
    args = parser.parse_args(["--max-depth", "none", "--max-samples-per-class", "7"])
    assert from_flags(BaselineOptions, args).max_depth is None
    assert from_flags(BaselineOptions, parser.parse_args(["--max-depth", "3"])).max_depth == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-depth", "deep"])
    assert "expected a whole number or 'none', got 'deep'" in capsys.readouterr().err


def test_baseline_jobs_is_a_count_or_minus_one(capsys) -> None:
    """``--jobs 0`` was a joblib traceback after the store was read: refused when parsed."""
    parse = build_parser().parse_args
    assert parse(["baseline", "s.zarr"]).jobs == -1  # all cores, as the help says
    assert parse(["baseline", "s.zarr", "--jobs", "-1"]).jobs == -1
    assert parse(["baseline", "s.zarr", "--jobs", "3"]).jobs == 3
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            parse(["baseline", "s.zarr", "--jobs", bad])
        assert f"expected a whole number ≥ 1 or -1, got '{bad}'" in capsys.readouterr().err


def test_a_read_left_running_by_an_interruption_is_cancelled_before_exit() -> None:
    """Ctrl-C in the middle of a store read leaves it running in Zarr's IO thread, and Python
    would print "Task was destroyed but it is pending!" when Zarr closes its loop at exit: the
    command cancels such reads, and waits for them, before it says it was interrupted."""
    import asyncio
    import threading

    import zarr.core.sync

    from sarcrop.utils.signals import settle_pending_reads

    started = threading.Event()

    async def slow_read() -> None:
        started.set()
        await asyncio.sleep(600)

    read = asyncio.run_coroutine_threadsafe(slow_read(), zarr.core.sync._get_loop())
    assert started.wait(30)
    settle_pending_reads()
    assert read.cancelled()


def test_a_command_imports_what_it_needs_alone() -> None:
    """Every command's module was imported to build the parser, torch and Lightning with them:
    ``prepare --help`` took 3.4 s. The chosen command's module alone is imported now."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sarcrop.cli import main\n"
        "try:\n"
        "    main(['prepare', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules, 'lightning' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "False False"
    assert "--images" in done.stdout  # prepare's own help, all of it


def test_prepare_takes_the_label_options_by_their_yaml_names_too():
    """``label_options: {column: crop, variable: CT}`` in a YAML is ``--column crop --variable
    CT`` (or ``--label-column``, ``--label-variable``) on the command line."""
    parse = build_parser().parse_args
    prepare = ARGUMENTS["prepare"]
    short = parse([*prepare, "--column", "crop", "--variable", "CT"])
    long = parse([*prepare, "--label-column", "crop", "--label-variable", "CT"])
    assert (short.label_column, short.label_variable) == (long.label_column, long.label_variable)
    assert (short.label_column, short.label_variable) == ("crop", "CT")


def test_experiment_takes_its_data_folder_by_the_yaml_name_too():
    """``data_root:`` in the config is ``--data-root`` (or ``--data``) on the command line."""
    from pathlib import Path

    parse = build_parser().parse_args
    for flag in ("--data", "--data-root"):
        assert parse(["experiment", "real", "--out", "o", flag, "d"]).data == Path("d")
