"""Run the benchmark suite and write ``benchmark.json`` + ``benchmark.md``.

    python -m benchmarks.run --out runs/bench              # everything, reduced accuracy
    python -m benchmarks.run --out runs/bench --accuracy   # accuracy on RI + FTE, all scenarios
    python -m benchmarks.run --out runs/bench --quick      # tiny sizes: checks the pipeline only

Sections: ceiling, models (inference), training, data (data path), area (whole-area
prediction, skipped with --quick), accuracy (skipped with --quick or --no-accuracy).
Numbers are medians over repetitions after warm-up with ``torch.get_num_threads()`` threads;
take them on a quiet machine (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks import load_average, machine_info
from sarcrop.utils.memory import reuse_freed_memory

SECTIONS = ("ceiling", "models", "training", "data", "area", "accuracy")
AREA_SIZE = 2048


def finetune_epochs() -> dict[str, int]:
    """Fine-tuning epochs of the shipped experiment configs (small and paper)."""
    import importlib.resources

    epochs = {}
    for name in ("small", "paper"):
        path = importlib.resources.files("sarcrop") / "configs" / f"{name}.yaml"
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        epochs[name] = int(config.get("finetune", {}).get("epochs", 50))
    return epochs


def area_prediction(cache: Path, size: int) -> dict[str, Any]:
    """``benchmarks/predict_area.py`` on a simulated ``size²`` area, in a child process."""
    script = Path(__file__).with_name("predict_area.py")
    if not script.exists():
        return {"skipped": "benchmarks/predict_area.py is not available"}
    command = [
        sys.executable,
        str(script),
        "--size",
        str(size),
        "--root",
        str(cache / "area"),
        "--threads",
        str(torch.get_num_threads()),
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        return {"skipped": f"predict_area.py failed: {last[:300]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(
    out: Path,
    *,
    quick: bool = False,
    sections: tuple[str, ...] = SECTIONS,
    accuracy: str | None = "reduced",
    cache: Path | None = None,
    models: tuple[str, ...] | None = None,
    compile: bool = True,
) -> dict[str, Any]:
    from benchmarks import accuracy as accuracy_bench
    from benchmarks import ceiling, data_path, report, training
    from benchmarks import models as model_bench

    cache = cache or out / "cache"
    started = time.perf_counter()
    # As sarcrop's training and prediction run (see sarcrop.utils.memory); recorded.
    reused = reuse_freed_memory()
    data: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": machine_info()}
    data["machine"]["reuse_freed_memory"] = reused
    log(f"load average {data['machine']['load_average']}; ceiling")
    data["ceiling"] = ceiling.run(quick)
    limit = data["ceiling"]["conv2d"]["gflops"]
    log(f"conv2d ceiling {limit:.1f} GFLOP/s; models")
    data["models"] = model_bench.run(quick, limit, models, compile)
    if "training" in sections:
        log("training")
        # Same batch and patch size as the training step: the validation part of an epoch.
        forward = {name: e["best"]["median_s"] for name, e in data["models"]["models"].items()}
        data["training"] = training.run(quick, limit, forward, finetune_epochs()["paper"], models)
    if "data" in sections:
        log("data path")
        data["data_path"] = data_path.run(quick, cache)
    if "area" in sections and not quick:
        log(f"whole-area prediction {AREA_SIZE}²")
        data["area"] = area_prediction(cache, AREA_SIZE)
    if "accuracy" in sections and accuracy and not quick:
        log(f"accuracy ({accuracy})")
        data["accuracy"] = accuracy_bench.run(cache / "accuracy", accuracy)  # type: ignore[arg-type]
    data["load_average_end"] = load_average()
    data["total_s"] = time.perf_counter() - started
    json_path, md_path = report.write(out, data)
    log(f"wrote {json_path} and {md_path} in {data['total_s']:.0f} s")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sarcrop benchmark suite")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: pipeline check only")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (ceiling and models always run)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--accuracy", action="store_true", help="full accuracy: RI + FTE on every scenario"
    )
    group.add_argument("--no-accuracy", action="store_true", help="skip the accuracy runs")
    parser.add_argument("--cache", type=Path, help="simulated data cache (default OUT/cache)")
    parser.add_argument("--models", help="comma-separated models (default: all four)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    mode = None if args.no_accuracy else ("full" if args.accuracy else "reduced")
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    models = tuple(m.strip() for m in args.models.split(",")) if args.models else None
    run(
        args.out,
        quick=args.quick,
        sections=sections,
        accuracy=mode,
        cache=args.cache,
        models=models,
        compile=not args.no_compile,
    )


if __name__ == "__main__":
    main()
