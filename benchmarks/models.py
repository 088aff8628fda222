"""Inference speed of the recurrent U-Net and its peers, and of execution variants.

For every model (default options) and a batch of ``patch × patch × steps × bands`` patches under
``torch.inference_mode``: patches/s, Mpixel·step/s, FLOPs per patch (``count_flops``), achieved
GFLOP/s. Variants: contiguous vs channels_last, batch size, and for the recurrent U-Net also
``torch.compile`` (in a child process with a time limit), ONNX Runtime and bf16 autocast (only
where the CPU has native bf16).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from benchmarks import gflops, measure, supports_bf16
from sarcrop.models import build_model, count_flops, count_parameters
from sarcrop.utils.memory import reuse_freed_memory

MODEL_NAMES = ("recurrent_unet", "utae", "convlstm_unet", "unet2d")
OURS = "recurrent_unet"
STEPS = 8
BANDS = 2
COMPILE_TIMEOUT_S = 300


def make_model(
    name: str, memory_format: torch.memory_format = torch.contiguous_format
) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, in_bands=BANDS, time_steps=STEPS).eval()
    return model.to(memory_format=memory_format)


def make_input(batch: int, patch: int) -> torch.Tensor:
    return torch.rand(batch, STEPS, BANDS, patch, patch, generator=torch.Generator().manual_seed(0))


def throughput(
    seconds: float, batch: int, patch: int, flops_per_patch: int, ceiling: float | None
) -> dict[str, float]:
    """Rates of a forward pass of ``batch`` patches that took ``seconds``."""
    rate = gflops(flops_per_patch * batch, seconds)
    out = {
        "patches_per_s": batch / seconds,
        "mpixel_steps_per_s": batch * patch * patch * STEPS / seconds / 1e6,
        "gflops": rate,
    }
    if ceiling:
        out["fraction_of_ceiling"] = rate / ceiling
    return out


def time_eager(
    model: nn.Module,
    batch: int,
    patch: int,
    repeats: int,
    *,
    bf16: bool = False,
) -> dict[str, float]:
    """Eager forward timing. The 5-D input keeps the data pipeline's layout: a channels_last
    model converts it at its first convolution."""
    x = make_input(batch, patch)

    def step() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    return measure(step, repeats, warmup=1)


def bf16_agreement(model: nn.Module, patch: int) -> dict[str, float]:
    """How far bf16 autocast logits are from fp32 ones (max abs diff, sign agreement)."""
    x = make_input(1, patch)
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
    return {
        "max_abs_logit_diff": float((ref - low).abs().max()),
        "sign_agreement": float(((ref > 0) == (low > 0)).float().mean()),
    }


def onnx_variant(model: nn.Module, batch: int, patch: int, repeats: int) -> dict[str, Any]:
    """Export to ONNX for a fixed shape and time ONNX Runtime (all cores, full graph opts)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"skipped": "onnxruntime is not installed"}
    x = make_input(batch, patch)
    buffer = io.BytesIO()
    start = time.perf_counter()
    model = model.to(memory_format=torch.contiguous_format)
    torch.onnx.export(model, (x,), buffer, input_names=["x"], output_names=["logits"], dynamo=False)
    export_s = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    with torch.inference_mode():
        ref = model(x).numpy()
    got = session.run(None, feed)[0]
    timing = measure(lambda: session.run(None, feed), repeats, warmup=1)
    return {**timing, "export_s": export_s, "max_abs_logit_diff": float(abs(ref - got).max())}


def compile_child(batch: int, patch: int, repeats: int, memory_format: str) -> dict[str, Any]:
    """``torch.compile`` (inductor) in this process: compile time and timing."""
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    model = make_model(OURS, fmt)
    x = make_input(batch, patch)
    compiled = torch.compile(model)
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    compile_s = time.perf_counter() - start

    def step() -> None:
        with torch.inference_mode():
            compiled(x)

    return {**measure(step, repeats, warmup=1), "compile_s": compile_s}


def compile_variant(batch: int, patch: int, repeats: int, memory_format: str) -> dict[str, Any]:
    """Run :func:`compile_child` in a fresh process, bounded by ``COMPILE_TIMEOUT_S``."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.models",
        "--compile-child",
        f"--batch={batch}",
        f"--patch={patch}",
        f"--repeats={repeats}",
        f"--memory-format={memory_format}",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"compilation did not finish within {COMPILE_TIMEOUT_S} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        return {"skipped": f"torch.compile failed: {last[:300]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(
    quick: bool = False,
    ceiling: float | None = None,
    names: Sequence[str] | None = None,
    compile: bool = True,
) -> dict[str, Any]:
    """All inference numbers; ``ceiling`` (conv2d GFLOP/s) turns GFLOP/s into fractions.

    ``names``: the models (default all); ``compile``: whether to time ``torch.compile``.
    """
    patch = 32 if quick else 256
    batch = 2 if quick else 4
    batches = (1, 2) if quick else (1, 4, 8)
    repeats = 2 if quick else 5
    results: dict[str, Any] = {
        "patch": patch,
        "steps": STEPS,
        "bands": BANDS,
        "batch": batch,
        "models": {},
    }
    for name in names or MODEL_NAMES:
        model = make_model(name)
        flops = count_flops(model, (1, STEPS, BANDS, patch, patch))
        entry: dict[str, Any] = {
            "parameters": count_parameters(model),
            "flops_per_patch": flops,
            "formats": {},
        }
        for label, fmt in (
            ("contiguous", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            model = model.to(memory_format=fmt)
            timing = time_eager(model, batch, patch, repeats)
            entry["formats"][label] = {
                **timing,
                **throughput(timing["median_s"], batch, patch, flops, ceiling),
            }
        best = max(entry["formats"], key=lambda k: entry["formats"][k]["patches_per_s"])
        entry["best_format"] = best
        entry["best"] = entry["formats"][best]
        fmt = torch.channels_last if best == "channels_last" else torch.contiguous_format
        model = model.to(memory_format=fmt)
        entry["batch_sizes"] = {}
        for size in batches:
            timing = (
                entry["best"]
                if size == batch
                else time_eager(model, size, patch, max(2, repeats - 2))
            )
            entry["batch_sizes"][str(size)] = {
                "median_s": timing["median_s"],
                **throughput(timing["median_s"], size, patch, flops, ceiling),
            }
        if name == OURS:
            entry["variants"] = variants(
                model, best, batch, patch, repeats, flops, ceiling, quick, compile
            )
        results["models"][name] = entry
    return results


def variants(
    model: nn.Module,
    best_format: str,
    batch: int,
    patch: int,
    repeats: int,
    flops: int,
    ceiling: float | None,
    quick: bool,
    compile: bool = True,
) -> dict[str, Any]:
    """bf16 autocast, ONNX Runtime and torch.compile against the eager fp32 baseline."""
    out: dict[str, Any] = {}
    fmt = torch.channels_last if best_format == "channels_last" else torch.contiguous_format
    if supports_bf16():
        timing = time_eager(model, batch, patch, repeats, bf16=True)
        out["bf16_autocast"] = {
            **timing,
            **throughput(timing["median_s"], batch, patch, flops, ceiling),
            **bf16_agreement(model, patch),
        }
    else:
        out["bf16_autocast"] = {"skipped": "no native bf16 on this CPU (avx512_bf16 / amx)"}
    try:
        onnx = onnx_variant(model, batch, patch, repeats)
    except Exception as error:  # export problems are reported, never fatal
        onnx = {"skipped": f"ONNX export/run failed: {type(error).__name__}: {error}"[:300]}
    if "median_s" in onnx:
        onnx.update(throughput(onnx["median_s"], batch, patch, flops, ceiling))
    out["onnxruntime"] = onnx
    model.to(memory_format=fmt)
    if quick or not compile:
        out["torch_compile"] = {"skipped": "not run (--quick or --no-compile)"}
    else:
        compiled = compile_variant(batch, patch, repeats, best_format)
        if "median_s" in compiled:
            compiled.update(throughput(compiled["median_s"], batch, patch, flops, ceiling))
        out["torch_compile"] = compiled
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="torch.compile child of the model benchmark")
    parser.add_argument("--compile-child", action="store_true", required=True)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-format", default="contiguous")
    args = parser.parse_args()
    reuse_freed_memory()  # as in the parent (benchmarks.run)
    result = compile_child(args.batch, args.patch, args.repeats, args.memory_format)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
