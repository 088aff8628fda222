"""Fuzz ``prepare``, ``predict`` and ``finetune`` with corrupted inputs, at depth (``make fuzz``).

The same properties as ``tests/test_property_inputs.py``, with many more cases and with
corrupted stores and checkpoints through ``finetune`` too. Hypothesis draws 1–3 corruptions
(``tests/faults_support.py``) of small valid inputs; each command runs in this process through
the CLI. A case passes when the command succeeds or fails with a one-line user error, and its
output folder holds no temporary and nothing under a final name that does not validate (the
result is absent after an error). Every case runs whatever earlier ones found; the summary
lists cases, crashes and partial outputs per command, and the exit code is 1 if any were found.

    python fuzz/run.py --cases 500 [--seed 0] [--only prepare predict finetune]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one core per case
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import faults_support as fs

# Share of the cases each command gets (finetune cases cost the most).
SHARES = {"prepare": 0.4, "predict": 0.35, "finetune": 0.25}
STRATEGIES = ("ri", "ft", "fte", "ftd")


@dataclass
class Target:
    """One command under test: what to corrupt and how to run it on a broken copy."""

    name: str
    kinds: tuple[str, ...]
    extra: st.SearchStrategy  # one more drawn choice, passed to ``argv``
    argv: Callable[[Path, Path, object], list[str]]  # (inputs, outputs, extra) -> arguments
    final: Callable[[Path], Path]  # the command's result under the outputs folder
    check: Callable[[Path], None]


TARGETS = {
    "prepare": Target(
        "prepare",
        fs.SCENE_KINDS + fs.LABEL_KINDS,
        st.sampled_from(["labels.tif", "parcels.gpkg"]),
        lambda root, out, labels: fs.prepare_args(root / "scenes", root / labels, out / "s.zarr"),
        lambda out: out / "s.zarr",
        fs.check_store,
    ),
    "predict": Target(
        "predict",
        fs.SCENE_KINDS + fs.CHECKPOINT_KINDS,
        st.just(None),
        lambda root, out, _: fs.predict_args(
            root / "model.safetensors", root / "scenes", out / "map.tif", "--threads", "1"
        ),
        lambda out: out / "map.tif",
        fs.check_map,
    ),
    "finetune": Target(
        "finetune",
        fs.STORE_KINDS + fs.CHECKPOINT_KINDS,
        st.sampled_from(STRATEGIES),
        lambda root, out, strategy: [
            "finetune",
            str(root / "model.safetensors"),
            str(root / "store.zarr"),
            "--out",
            str(out / "run"),
            "--strategy",
            str(strategy),
            *("--epochs", "1", "--batch-size", "4", "--val-fraction", "0.4", "--seed", "0"),
            *("--accelerator", "cpu", "--num-workers", "0", "--quiet"),
        ],
        lambda out: out / "run" / "model.safetensors",
        fs.check_checkpoint,
    ),
}


@dataclass
class Tally:
    cases: int = 0
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    findings: list[tuple[str, str, list[tuple], object]] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Send what the command prints (Lightning, GDAL, progress) to /dev/null, fd level."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _error_kind(message: str, root: Path) -> str:
    """An error message without its paths and numbers, to count messages by kind."""
    words = message.replace(str(root), "<in>").split()
    return " ".join("#" if any(c.isdigit() for c in w) else w for w in words)[:110]


def run_case(target: Target, base: Path, changes: list[tuple], extra: object, tally: Tally) -> None:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target.name}-") as tmp:
        root, out = Path(tmp) / "in", Path(tmp) / "out"
        shutil.copytree(base, root)
        for change in changes:
            fs.corrupt(root, change)
        out.mkdir()
        with silenced():
            outcome = fs.run_command(target.argv(root, out, extra))
            problem = fs.output_problem(out, target.final(out), outcome, target.check)
        tally.cases += 1
        tally.outcomes[outcome.kind] += 1
        if outcome.kind == "error":
            tally.errors[_error_kind(outcome.message, root)] += 1
        if outcome.kind == "crash":
            tally.findings.append(("crash", outcome.message, changes, extra))
        if problem is not None:
            tally.findings.append(("partial output", problem, changes, extra))


def campaign(target: Target, base: Path, cases: int, seed_value: int) -> Tally:
    tally = Tally()
    start = time.monotonic()

    @seed(seed_value)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(fs.corruption_strategy(target.kinds), min_size=1, max_size=3), target.extra)
    def case(changes: list[tuple], extra: object) -> None:
        run_case(target, base, changes, extra, tally)
        if tally.cases % 25 == 0:
            elapsed = time.monotonic() - start
            print(f"  {target.name}: {tally.cases} cases, {elapsed:.0f} s", flush=True)

    case()
    tally.seconds = time.monotonic() - start
    return tally


def _signature(kind: str, detail: str) -> str:
    """What identifies a finding: its last line and the innermost sarcrop frame."""
    lines = detail.strip().splitlines() or [""]
    frames = re.findall(r'File ".*/sarcrop/([^"]+)", line (\d+), in (\w+)', detail)
    where = " at {}:{} {}".format(*frames[-1]) if frames else ""
    return f"{kind}: {lines[-1].strip()[:120]}{where}"


def report(name: str, tally: Tally) -> None:
    kinds = ", ".join(f"{k} {tally.outcomes[k]}" for k in ("ok", "error", "crash"))
    partial = sum(1 for kind, *_ in tally.findings if kind == "partial output")
    print(
        f"{name}: {tally.cases} cases in {tally.seconds:.0f} s ({kinds}); "
        f"crashes {tally.outcomes['crash']}, partial outputs {partial}"
    )
    for message, count in tally.errors.most_common(8):
        print(f"    {count:4d} × {message}")
    groups: dict[str, list[tuple[list[tuple], object]]] = collections.defaultdict(list)
    for kind, detail, changes, extra in tally.findings:
        groups[_signature(kind, detail)].append((changes, extra))
    for signature, cases in groups.items():
        changes, extra = cases[0]
        print(f"  {len(cases)} × {signature}\n      e.g. {changes} ({extra})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="cases over all commands (500)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (0)")
    parser.add_argument("--only", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    args = parser.parse_args(argv)
    shares = {name: SHARES[name] for name in args.only}
    total_share = sum(shares.values())
    started = time.monotonic()
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory(prefix="fuzz-base-") as tmp:
        with silenced():
            base = fs.write_valid_inputs(Path(tmp))
        for name, share in shares.items():
            cases = max(1, round(args.cases * share / total_share))
            print(f"{name}: {cases} cases (seed {args.seed})", flush=True)
            tallies[name] = campaign(TARGETS[name], base, cases, args.seed)
    print()
    for name, tally in tallies.items():
        report(name, tally)
    cases = sum(t.cases for t in tallies.values())
    bad = sum(len(t.findings) for t in tallies.values())
    print(f"total: {cases} cases in {time.monotonic() - started:.0f} s, {bad} findings")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
