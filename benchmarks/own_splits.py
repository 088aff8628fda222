"""Own fields split at random several ways: how much of a patch-split result is the split.

    python benchmarks/own_splits.py --data ../shared/data --out runs/own-splits

The real benchmark (``sarcrop experiment real``) fine-tunes and tests on each Flanders location
split once (split seed 0) into 60/40 random 16 x 16 px patches: 6 test patches and 11-12 test
parcels, so one late-harvested field more or less in the test patches moves every method. This
runs the same own-field scenarios with split seeds 0 ... S-1 (``--splits``), with the shipped
config's pre-training, fine-tuning recipe, forest and methods, through ``run_experiment`` (the
run folder is ``OUT/run``, its config ``OUT/run/own-splits.yaml``), and pools the splits: per
location, label fraction and method, the mean over splits and seeds, each split's mean, and the
paired difference to RI and to RF with a 95 % interval that resamples the location's test
fields, each once for every split that tests on it (the splits share their fields;
:class:`sarcrop.experiments.compare.RunComparisons`, as ``sarcrop compare`` does; every split
weighs the same).
``--model NAME`` pre-trains another architecture (at its default size) in place of the shipped
recurrent U-Net, and ``--epochs N`` fine-tunes every method for N epochs instead of the recipe's
20 (e.g. ``--model tempcnn --epochs 100``, docs/results.md).
Extra methods run in the same folder as variants of the config (``variants:``):
``--ri-epochs N`` adds RI with N fine-tuning epochs (the recipe's 20 leave RI short of steps on
these splits) as a method and a baseline, ``ri+eN``; ``--distillation W`` adds the transfer
methods among ``--methods`` with ``distillation: W`` (methods ``<method>+dW``, e.g. ``fte+d1``),
and ``--date-dropout P`` with ``date_dropout: P`` (methods ``<method>+ddP``, e.g.
``ftd+dd0.25``), and ``--variant NAME=JSON`` with several settings at once (methods
``<method>+NAME``). Writes ``splits.csv`` and ``splits.md`` into ``--out`` and prints the table.
Where the data is absent it prints why and exits 0, as ``sarcrop experiment real`` does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sarcrop.evaluation.bootstrap import Difference
from sarcrop.evaluation.tables import method_label
from sarcrop.experiments import run_experiment
from sarcrop.experiments.compare import Arm, RunComparisons
from sarcrop.experiments.config import DataNotFound, parse_method
from sarcrop.experiments.intervals import BASELINES, paired_columns
from sarcrop.experiments.presets import resolve_config
from sarcrop.utils.atomic import write_text_atomic

LOCATIONS = ("flanders2018", "flanders2019")
METHODS = ("rf", "ri", "ft", "fte", "ftd", "rf-features", "zero-shot", "bias")
FINE_TUNED = ("ft", "fte", "ftd")  # strategies that train from the pre-trained start
# Fine-tuning settings the fine-tuned methods are run again with, and the tag of the variant
# (methods <method>+<tag><value>).
FINE_TUNING_VARIANTS = {"distillation": "d", "date_dropout": "dd"}
PRETRAIN = "europe"
SPLIT_TAG = "-split"
CONFIG_FILE = "own-splits.yaml"


@dataclass
class Variants:
    """Extra methods: fine-tuning variants by name, the methods that use them, and those
    among them every method is paired with (as with RI and RF)."""

    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)


def splits_config(
    splits: int,
    seeds: int,
    fractions: Sequence[float],
    methods: Sequence[str],
    variants: Variants | None = None,
) -> dict[str, Any]:
    """The shipped ``real`` config cut to the own-field scenarios of ``LOCATIONS``, each
    location split with seeds ``0 … splits - 1`` (regions ``<location>-split<k>``), with
    ``methods`` (the shipped variants, such as ``ftd+dd``, among them) and the methods of
    ``variants``."""
    variants = variants or Variants()
    shipped = yaml.safe_load(resolve_config("real").read_text(encoding="utf-8"))
    regions: dict[str, Any] = {PRETRAIN: shipped["regions"][PRETRAIN]}
    scenarios = []
    for location in LOCATIONS:
        for seed in range(splits):
            name = f"{location}{SPLIT_TAG}{seed}"
            regions[name] = {
                **shipped["regions"][location],
                "split": {"method": "patch", "seed": seed},
            }
            scenarios.append(
                {"finetune": name, "test": name, "crop": "maize", "bands": ["VH", "VV"]}
            )
    kept = ("data_root", "epoch_budget", "feature_forest", "baseline", "threads")
    return {
        "name": "real-own-splits",
        **{key: shipped[key] for key in kept},
        "finetune": shipped["finetune"],
        "variants": {**shipped.get("variants", {}), **variants.settings},
        "seeds": seeds,
        "fractions": list(fractions),
        "regions": regions,
        "pretrain": shipped["pretrains"][PRETRAIN],
        "scenarios": scenarios,
        "methods": [*methods, *variants.methods],
        "figure_patches": 0,
        "jobs": shipped["jobs"],
    }


def with_network(config: dict[str, Any], model: str | None, epochs: int | None) -> dict[str, Any]:
    """``config`` with ``model`` (at its default size) pre-trained in place of the shipped
    recurrent U-Net, and every method fine-tuned for ``epochs`` instead of the recipe's."""
    config = dict(config)
    if model is not None:
        shipped = config["pretrain"]
        pretrain = {key: value for key, value in shipped.items() if key != "model_options"}
        config["pretrain"] = {**pretrain, "model": model}
    if epochs is not None:
        config["finetune"] = {**config["finetune"], "epochs": epochs}
    return config


class Runs:
    """A finished run of this benchmark: its IoU rows with each scenario's location, and
    paired differences of its methods pooled over a location's splits."""

    def __init__(self, run_dir: Path) -> None:
        self.comparisons = RunComparisons(run_dir)
        record = self.comparisons.record
        self.methods = set(record.methods)
        results = pd.read_csv(run_dir / record.results)
        results = results[(results["run"] == "main") & (results["metric"] == "iou")]
        results = results[results["timestep"] == results["timestep"].max()]
        location = {s.id: s.finetune_region.split(SPLIT_TAG)[0] for s in record.scenarios}
        self.results = results.assign(location=results["scenario"].map(location))

    def difference(
        self, method: str, baseline: str, fraction: float, scenarios: list[str]
    ) -> Difference:
        """``method`` − ``baseline`` pooled over the splits ``scenarios``, with the bootstrap
        of ``intervals.csv`` (:mod:`sarcrop.experiments.compare`)."""
        a, b = Arm(method, fraction, tuple(scenarios)), Arm(baseline, fraction)
        (comparison,) = self.comparisons.compare(a, b)
        return comparison.difference


def pooled_table(runs: Runs, baselines: Sequence[str]) -> pd.DataFrame:
    """Per location × label fraction × method: the mean IoU over splits and seeds, the split
    means, and the paired differences to each of ``baselines`` pooled over the splits."""
    results = runs.results
    rows = []
    keys = ["location", "label_fraction", "method"]
    for (location, fraction, method), group in results.groupby(keys, sort=True):
        per_split = group.groupby("scenario")["value"].mean()
        row: dict[str, Any] = {
            "location": location,
            "label_fraction": fraction,
            "method": method,
            "splits": len(per_split),
            "runs": len(group),
            "mean": group["value"].mean(),
            "split_std": per_split.std(ddof=1) if len(per_split) > 1 else 0.0,
            "split_means": " ".join(f"{v:.2f}" for v in per_split.sort_index(key=split_seed)),
        }
        scenarios = sorted(per_split.index, key=split_key)
        for baseline in baselines:
            if baseline == method or baseline not in runs.methods:
                continue
            row.update(
                paired_columns(baseline, runs.difference(method, baseline, fraction, scenarios))
            )
        rows.append(row)
    return pd.DataFrame(rows)


def split_key(scenario: str) -> int:
    """The split seed in a scenario id of this benchmark."""
    return int(scenario.split(SPLIT_TAG)[1].split("-")[0])


def split_seed(index: pd.Index) -> pd.Index:
    return index.map(split_key)


def markdown(table: pd.DataFrame, baselines: Sequence[str]) -> str:
    """The pooled table: mean over splits and seeds (± std of the split means), the split
    means, and the pooled paired differences [95 % interval] (bold: the interval excludes 0)."""
    shown = [b for b in baselines if f"minus_{b}" in table.columns]
    names = [f"− {method_label(b)}" for b in shown]
    lines = [
        "| location | fraction | method | mean ± split std | split means | "
        + " | ".join(names)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(shown),
    ]
    for _, row in table.iterrows():
        paired = [difference(row, baseline) for baseline in shown]
        lines.append(
            f"| {row['location']} | {row['label_fraction']:.0%} | {row['method']} "
            f"| {row['mean']:.2f} ± {row['split_std']:.2f} | {row['split_means']} "
            f"| {' | '.join(paired)} |"
        )
    return "\n".join(lines) + "\n"


def difference(row: pd.Series, baseline: str) -> str:
    estimate = row.get(f"minus_{baseline}")
    if estimate is None or pd.isna(estimate):
        return ""
    low, high = row[f"minus_{baseline}_low"], row[f"minus_{baseline}_high"]
    text = f"{estimate:+.2f} [{low:.2f}, {high:.2f}]"
    resolved = low > 0 or high < 0
    return f"**{text}**" if resolved else text


def variants(args: argparse.Namespace) -> Variants:
    """The extra methods ``--ri-epochs``, ``--distillation``, ``--date-dropout`` and
    ``--variant`` ask for."""
    extra = Variants()
    if args.ri_epochs is not None:  # RI with more epochs, a baseline of its own
        name = f"e{args.ri_epochs}"
        extra.settings[name] = {"epochs": args.ri_epochs}
        extra.methods.append(f"ri+{name}")
        extra.baselines.append(f"ri+{name}")
    tuned = [m for m in args.methods if parse_method(m)[0] in FINE_TUNED]
    for setting, tag in FINE_TUNING_VARIANTS.items():  # the fine-tuned methods again
        value = getattr(args, setting)
        if value is not None:
            name = f"{tag}{value:g}"
            extra.settings[name] = {setting: value}
            extra.methods.extend(f"{m}+{name}" for m in tuned)
    for name, settings in args.variant:  # several settings at once, named
        extra.settings[name] = settings
        extra.methods.extend(f"{m}+{name}" for m in tuned)
    return extra


def named_settings(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME={"setting": value, ...}``: a variant of the fine-tuning settings, by name."""
    name, _, settings = text.partition("=")
    try:
        parsed = json.loads(settings)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not NAME=JSON ({exc})") from None
    if not re.fullmatch(r"[A-Za-z0-9_.]+", name) or not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME={{...}}, a name of letters, digits, _ or . and a JSON object"
        )
    return name, parsed


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the shared data folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--splits", type=int, default=5, help="split seeds 0 … N-1 (5)")
    parser.add_argument("--seeds", type=int, default=5, help="runs per method and split (5)")
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[0.25, 1.0], help="(0.25 1.0)"
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=" ".join(METHODS))
    parser.add_argument(
        "--model",
        help="pre-train this architecture at its default size instead of the shipped recurrent "
        "U-Net (e.g. tempcnn); every network method starts from it",
    )
    parser.add_argument(
        "--epochs", type=int, help="fine-tuning epochs of every method (the recipe's 20)"
    )
    parser.add_argument(
        "--ri-epochs",
        type=int,
        help="also RI with this many epochs (method ri+eN, a baseline of its own; the "
        "recipe's 20 leave RI short of steps here)",
    )
    parser.add_argument(
        "--distillation",
        type=float,
        help="also the transfer methods with this distillation weight (methods <method>+dW)",
    )
    parser.add_argument(
        "--date-dropout",
        type=float,
        help="also the transfer methods with this date_dropout (methods <method>+ddP)",
    )
    parser.add_argument(
        "--variant",
        type=named_settings,
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="also the transfer methods with these fine-tuning settings, e.g. "
        '\'dd_i5={"date_dropout": 0.25, "interpolation": 0.5}\' (methods <method>+NAME)',
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    extra = variants(args)
    config = splits_config(args.splits, args.seeds, args.fractions, args.methods, extra)
    config = with_network(config, args.model, args.epochs)
    run_dir = args.out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / CONFIG_FILE
    text = yaml.safe_dump({**config, "data_root": str(Path(args.data).resolve())}, sort_keys=False)
    write_text_atomic(config_file, text)
    try:
        run_experiment(config_file, run_dir)
    except DataNotFound as exc:
        print(f"skipping: {exc.problem}")
        return 0
    runs = Runs(run_dir)
    baselines = [*BASELINES, *extra.baselines]
    table = pooled_table(runs, baselines)
    write_text_atomic(args.out / "splits.csv", table.to_csv(index=False))
    text = markdown(table, baselines)
    write_text_atomic(args.out / "splits.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
