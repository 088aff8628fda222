"""GPU benchmark: one command that measures sarcrop on one accelerator and writes ``gpu.json``.

    python -m benchmarks.gpu --out runs/gpu                    # CUDA, sized for < 8 min on an H200
    python -m benchmarks.gpu --out /tmp/g --device cpu --quick # tiny sizes: checks the pipeline

Sections, in this order (a failing one is recorded with its error and the others still run;
the JSON is rewritten after each, so a run cut short keeps what it measured):

- ceiling: a 3x3 conv2d in fp32 (TF32 where cuDNN allows it, PyTorch's default) and bf16,
  channels_last, in the same run;
- inference: patches/s of the default recurrent U-Net at 256² × 8 steps × 2 bands, eager fp32,
  bf16 autocast (with its agreement to fp32) and ``torch.compile`` in fp32 and under bf16
  autocast (child processes, time-bound);
- variants: patches/s with bf16 weights, a 4× batch, the contiguous layout and cuDNN's
  benchmark mode, and a profile of the forward's operators (``gpu-profile.txt``);
- training: samples/s of one step (forward, BCE+Dice, backward, AdamW), batch 16, fp32 and
  bf16-mixed, and a real ``sarcrop.training.train`` run (Lightning, precision bf16-mixed,
  channels_last) on a small synthetic store, which proves the CUDA training path end to end;
- predict: ``predict_map`` km²/min on a simulated area (``benchmarks/predict_area.py``) on the
  device, beside the raw read speed of the same scenes, and on a local Dask cluster of two
  workers using the device;
- estimate: the paper-scale pre-training time (12,942 patches of 256² × 50 epochs, and the
  epochs of the shipped ``paper`` config) from the measured training and inference rates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks import gflops, load_average, machine_info, measure
from benchmarks.ceiling import conv2d_flops

# The paper's pre-training set (Korea, 256² patches) and epochs.
PAPER_PATCHES = 12_942
PAPER_EPOCHS = 50
PAPER_VAL_FRACTION = 0.2
STEPS, BANDS, PATCH = 8, 2, 256
TRAIN_BATCH = 16
DASK_WORKERS = 2
COMPILE_TIMEOUT_S = 240


def sizes(quick: bool, device: str) -> dict[str, Any]:
    """Problem sizes: full ones for a GPU, tiny ones (``--quick``) that only check the code."""
    if quick:
        return dict(
            conv=(2, 16, 32),
            patch=32,
            infer_batch=2,
            train_batch=2,
            repeats=1,
            store_patches=4,
            area=256,
            predict_batch=2,
        )
    if device == "cuda":
        return dict(
            conv=(32, 256, 128),
            patch=PATCH,
            infer_batch=32,
            train_batch=TRAIN_BATCH,
            repeats=10,
            store_patches=64,
            area=2048,
            predict_batch=None,  # predict's own choice from the free GPU memory
        )
    return dict(
        conv=(8, 64, 128),
        patch=PATCH,
        infer_batch=4,
        train_batch=4,
        repeats=3,
        store_patches=8,
        area=1024,
        predict_batch=4,
    )


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> dict[str, float]:
    """:func:`benchmarks.measure` with the device synchronised after each call."""
    warmup = 1 if repeats < 3 else 2

    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return measure(call, repeats, warmup=warmup)


def autocast(device: torch.device, bf16: bool) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ------------------------------------------------------------------------------ sections


def ceiling(device: torch.device, size: dict[str, Any]) -> dict[str, Any]:
    """conv2d GFLOP/s in fp32 and bf16 (channels_last), measured back to back."""
    batch, channels, side = size["conv"]
    flops = conv2d_flops(batch, channels, channels, 3, side, side)
    out: dict[str, Any] = {"shape": f"{batch}x{channels}x{side}x{side}, 3x3", "flops": flops}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
        w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype)
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            timing = timed(lambda x=x, w=w: F.conv2d(x, w, padding=1), device, size["repeats"])
        out[name] = {**timing, "gflops": gflops(flops, timing["median_s"])}
    out["tf32"] = bool(device.type == "cuda" and torch.backends.cudnn.allow_tf32)
    return out


def default_model(device: torch.device) -> torch.nn.Module:
    from sarcrop.models import build_model

    torch.manual_seed(0)
    model = build_model("recurrent_unet", in_bands=BANDS, time_steps=STEPS).eval()
    return model.to(device=device, memory_format=torch.channels_last)


def batch_input(batch: int, patch: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, STEPS, BANDS, patch, patch, generator=generator).to(device)


def inference(device: torch.device, size: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Patches/s of the default model: eager fp32, bf16 autocast and torch.compile."""
    batch, patch = size["infer_batch"], size["patch"]
    model = default_model(device)
    x = batch_input(batch, patch, device)
    out: dict[str, Any] = {"batch": batch, "patch": patch, "steps": STEPS, "bands": BANDS}
    logits = {}
    for name, bf16 in (("eager_fp32", False), ("bf16_autocast", True)):

        def forward(bf16: bool = bf16) -> torch.Tensor:
            with torch.inference_mode(), autocast(device, bf16):
                return model(x)

        logits[name] = forward().float()
        timing = timed(forward, device, size["repeats"])
        out[name] = {**timing, "patches_per_s": batch / timing["median_s"]}
    diff = (logits["eager_fp32"] - logits["bf16_autocast"]).abs()
    same = (logits["eager_fp32"] > 0) == (logits["bf16_autocast"] > 0)
    out["bf16_autocast"].update(
        max_abs_logit_diff=float(diff.max()), sign_agreement=float(same.float().mean())
    )
    for name, bf16 in (("torch_compile", False), ("torch_compile_bf16", True)):
        if quick:
            out[name] = {"skipped": "not run in --quick mode"}
            continue
        out[name] = compile_variant(device.type, batch, patch, size["repeats"], bf16)
        if "median_s" in out[name]:
            out[name]["patches_per_s"] = batch / out[name]["median_s"]
    return out


def variants(device: torch.device, size: dict[str, Any], out: Path) -> dict[str, Any]:
    """Patches/s of inference variants of the default model, and where one forward's time goes.

    bf16 weights (the model and input cast, no autocast), a 4× batch, the contiguous layout and
    cuDNN's benchmark mode, each beside the ``inference`` section's eager numbers; the profile of
    bf16 autocast forwards is written to ``out/gpu-profile.txt`` (its top operators in the JSON).
    """
    batch, patch = size["infer_batch"], size["patch"]
    cases = {
        "bf16_weights": (batch, torch.bfloat16, False, torch.channels_last, False),
        "bf16_weights_batch_x4": (4 * batch, torch.bfloat16, False, torch.channels_last, False),
        "bf16_autocast_contiguous": (batch, torch.float32, True, torch.contiguous_format, False),
        "bf16_autocast_cudnn_benchmark": (batch, torch.float32, True, torch.channels_last, True),
    }
    result: dict[str, Any] = {}
    benchmark_mode = torch.backends.cudnn.benchmark
    try:
        for name, (n, dtype, bf16, layout, cudnn_benchmark) in cases.items():
            torch.backends.cudnn.benchmark = cudnn_benchmark
            model = default_model(device).to(dtype=dtype, memory_format=layout)
            x = batch_input(n, patch, device).to(dtype)

            def forward(
                model: torch.nn.Module = model, x: torch.Tensor = x, bf16: bool = bf16
            ) -> None:
                with torch.inference_mode(), autocast(device, bf16):
                    model(x)

            timing = timed(forward, device, size["repeats"])
            result[name] = {**timing, "batch": n, "patches_per_s": n / timing["median_s"]}
    finally:
        torch.backends.cudnn.benchmark = benchmark_mode
    result["profile"] = profile(device, size, out / "gpu-profile.txt")
    return result


def profile(device: torch.device, size: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The operators of three bf16 autocast forwards by device time (CPU time without a GPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    model = default_model(device)
    x = batch_input(size["infer_batch"], size["patch"], device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with torch.inference_mode(), autocast(device, True):
        model(x)
        with profiler(activities=activities) as trace:
            for _ in range(3):
                model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = trace.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=80)
    path.write_text(table + "\n", encoding="utf-8")
    events = sorted(trace.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events) or 1
    return [
        {"name": e.key, "ms_per_forward": getattr(e, key) / 3e3, "share": getattr(e, key) / total}
        for e in events[:10]
    ]


def compile_child(
    device_name: str, batch: int, patch: int, repeats: int, bf16: bool
) -> dict[str, Any]:
    """torch.compile of the default model in this process (under bf16 autocast or not):
    compile time and timing."""
    device = torch.device(device_name)
    model, x = default_model(device), batch_input(batch, patch, device)
    compiled = torch.compile(model)

    def forward() -> None:
        with torch.inference_mode(), autocast(device, bf16):
            compiled(x)

    start = time.perf_counter()
    forward()
    compile_s = time.perf_counter() - start
    return {**timed(forward, device, repeats), "compile_s": compile_s}


def compile_variant(
    device: str, batch: int, patch: int, repeats: int, bf16: bool
) -> dict[str, Any]:
    """:func:`compile_child` in a fresh process bounded by ``COMPILE_TIMEOUT_S``."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu",
        "--compile-child",
        "--device",
        device,
        "--batch",
        str(batch),
        "--patch",
        str(patch),
        "--repeats",
        str(repeats),
        *(["--bf16"] if bf16 else []),
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


def training(device: torch.device, size: dict[str, Any]) -> dict[str, Any]:
    """Samples/s of a training step in fp32 and bf16-mixed (autocast), channels_last."""
    batch, patch = size["train_batch"], size["patch"]
    out: dict[str, Any] = {"batch": batch, "patch": patch, "memory_format": "channels_last"}
    for name, bf16 in (("fp32", False), ("bf16_mixed", True)):
        model = default_model(device).train()
        x = batch_input(batch, patch, device)
        target = (torch.rand(batch, patch, patch, device=device) > 0.8).float()
        valid = torch.ones(batch, patch, patch, dtype=torch.bool, device=device)

        step = train_step(model, x, target, valid, device, bf16)
        timing = timed(step, device, size["repeats"])
        out[name] = {**timing, "samples_per_s": batch / timing["median_s"]}
        if device.type == "cuda":
            out[name]["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
            torch.cuda.reset_peak_memory_stats(device)
    return out


def train_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    device: torch.device,
    bf16: bool,
) -> Callable[[], None]:
    """One optimisation step as SegmentationTask runs it (BCE + Dice, AdamW), autocast or not."""
    from sarcrop.training.losses import SegmentationLoss

    loss_fn = SegmentationLoss("bce+dice")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, bf16):
            logits = model(x)
        loss_fn(logits.float(), target, valid).backward()
        optimizer.step()

    return step


def lightning_fit(device: torch.device, size: dict[str, Any], work: Path) -> dict[str, Any]:
    """One epoch of ``sarcrop.training.train`` on a synthetic store: the CUDA code path."""
    from sarcrop.training import TrainConfig, load_checkpoint, train

    store = synthetic_store(work / "store.zarr", size["store_patches"], size["patch"])
    config = TrainConfig(
        epochs=1,
        batch_size=size["train_batch"],
        accelerator="gpu" if device.type == "cuda" else "cpu",
        precision="bf16-mixed",
        channels_last=True,
        val_fraction=0.25,
        progress_bar=False,
    )
    start = time.perf_counter()
    result = train(store, work / "run", config=config)
    wall = time.perf_counter() - start
    model, _ = load_checkpoint(result.checkpoint)
    return {
        "precision": config.precision,
        "accelerator": config.accelerator,
        "patches": size["store_patches"],
        "wall_s": wall,
        "best_val_iou": result.best_val_iou,
        "exported_parameters": sum(p.numel() for p in model.parameters()),
    }


def synthetic_store(path: Path, patches: int, patch: int) -> Path:
    """A store of random dB patches with a square field of the positive class in each."""
    import datetime as dt

    import numpy as np
    from affine import Affine
    from rasterio.crs import CRS

    from sarcrop.data.grid import Grid
    from sarcrop.data.normalization import Normalization
    from sarcrop.data.season import Season
    from sarcrop.data.store import StoreMetadata, write_store

    rng = np.random.default_rng(0)
    images = rng.normal(-15, 2, (patches, STEPS, BANDS, patch, patch)).astype(np.float32)
    labels = np.ones((patches, patch, patch), np.int16)
    labels[:, patch // 4 : patch // 2, patch // 4 : patch // 2] = 0
    images[:, 2:, :, patch // 4 : patch // 2, patch // 4 : patch // 2] += 6
    meta = StoreMetadata(
        bands=("VH", "VV"),
        season=Season(dt.date(2021, 5, 1), STEPS, 20),
        grid=Grid(CRS.from_epsg(32652), Affine(10, 0, 3e5, 0, -10, 4e6), patch * patches, patch),
        patch_size=patch,
        stride=patch,
        offsets=[(0, patch * i) for i in range(patches)],
        classes=["rice", "other"],
        split=["train"] * patches,
        normalization=Normalization((-30.0, -25.0), (0.0, 5.0), ("VH", "VV")),
        region="korea",
        year=2021,
        positive=["rice"],
    )
    write_store(path, images, labels, meta)
    return path


def predict(device: torch.device, size: dict[str, Any], root: Path, bf16: bool) -> dict[str, Any]:
    """predict_map km²/min on a simulated area on ``device``, and the raw read of its scenes."""
    from benchmarks.data_path import raw_read
    from benchmarks.predict_area import checkpoint, simulate
    from sarcrop.options import ExecutionOptions, WindowOptions
    from sarcrop.prediction import predict_map

    fields = ExecutionOptions.model_fields
    if "device" not in fields or "precision" not in fields:
        return {"skipped": "ExecutionOptions has no device/precision fields in this version"}
    scenes = simulate(root, size["area"])
    paths = sorted(Path(scenes).glob("*.tif"))
    read_bytes = raw_read(paths)
    read = measure(lambda: raw_read(paths), 2, warmup=0)
    ckpt = checkpoint(root, [16, 32, 64, 128])
    execution = ExecutionOptions(
        device=device.type, precision="bf16" if bf16 else "fp32", resume=False
    )
    readers = execution.read_threads
    windows = WindowOptions(batch_size=size["predict_batch"])
    start = time.perf_counter()
    out = predict_map(
        ckpt, scenes, root / "map.tif", windows=windows, execution=execution, progress=False
    )
    wall = time.perf_counter() - start
    import rasterio

    with rasterio.open(out) as src:
        km2 = src.width * src.height * abs(src.res[0] * src.res[1]) / 1e6
        tags = src.tags()
    read_km2_per_min = km2 / read["median_s"] * 60
    predict_km2_per_min = km2 / wall * 60
    run_windows = WindowOptions(
        batch_size=int(tags["BATCH_SIZE"]),
        block_windows=int(tags["BLOCK_WINDOWS"]),
        block_rows=int(tags["BLOCK_ROWS"]),
    )
    # The single run's thread count too: on the CPU the maps are the same only with it.
    on_dask = execution.updated(workers=DASK_WORKERS, threads=int(tags["THREADS"]))
    dask_map, dask = predict_on_dask(ckpt, scenes, root, run_windows, on_dask)
    return {
        "area_px": size["area"],
        "km2": km2,
        "scenes": len(paths),
        "precision": execution.precision,
        "batch_size": int(tags["BATCH_SIZE"]),
        "block_windows": int(tags["BLOCK_WINDOWS"]),
        "block_rows": int(tags["BLOCK_ROWS"]),
        "readers": readers,
        "wall_s": wall,
        "km2_per_min": predict_km2_per_min,
        "raw_read": {
            **read,
            "mb_per_s": read_bytes / read["median_s"] / 1e6,
            "km2_per_min": read_km2_per_min,
        },
        "fraction_of_raw_read": predict_km2_per_min / read_km2_per_min,
        "dask": {
            **dask,
            "km2_per_min": km2 / dask["wall_s"] * 60,
            "same_map": same_map(out, dask_map),
        },
    }


def predict_on_dask(
    ckpt: Path, scenes: Path, root: Path, windows: Any, execution: Any
) -> tuple[Path, dict[str, Any]]:
    """The same map on a local Dask cluster of ``execution.workers`` processes, each using the
    device (the path of GPU workers), with the batch and blocks of the single-process run."""
    from sarcrop.prediction import predict_map

    start = time.perf_counter()
    out = predict_map(
        ckpt, scenes, root / "map-dask.tif", windows=windows, execution=execution, progress=False
    )
    return out, {"workers": execution.workers, "wall_s": time.perf_counter() - start}


def same_map(first: Path, second: Path) -> bool:
    """Whether two maps' bands are equal."""
    import numpy as np
    import rasterio

    with rasterio.open(first) as a, rasterio.open(second) as b:
        return bool(np.array_equal(a.read(), b.read()))


def estimate(data: dict[str, Any]) -> dict[str, Any]:
    """Paper-scale pre-training time from the measured training and inference rates."""
    train = data.get("training", {})
    rates = [train[k]["samples_per_s"] for k in ("fp32", "bf16_mixed") if k in train]
    if not rates:
        return {"skipped": "no training rate measured"}
    infer = data.get("inference", {})
    infer_rates = [infer[k]["patches_per_s"] for k in ("eager_fp32", "bf16_autocast") if k in infer]
    train_rate = max(rates)
    infer_rate = max(infer_rates) if infer_rates else train_rate * 3
    val = round(PAPER_PATCHES * PAPER_VAL_FRACTION)
    epoch_s = (PAPER_PATCHES - val) / train_rate + val / infer_rate
    config_epochs = paper_config_epochs()
    return {
        "patches": PAPER_PATCHES,
        "val_patches": val,
        "train_samples_per_s": train_rate,
        "epoch_s": epoch_s,
        "epochs": PAPER_EPOCHS,
        "total_min": epoch_s * PAPER_EPOCHS / 60,
        "config_epochs": config_epochs,
        "config_total_min": epoch_s * config_epochs / 60,
    }


def paper_config_epochs() -> int:
    """Pre-training epochs of the shipped ``paper`` experiment config."""
    import importlib.resources

    import yaml

    path = importlib.resources.files("sarcrop") / "configs" / "paper.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    return int(config["pretrain"]["train"]["epochs"])


# ------------------------------------------------------------------------------ driver


def run(out: Path, device_name: str = "cuda", quick: bool = False) -> dict[str, Any]:
    """Every section; writes ``out/gpu.json`` after each one and returns the data."""
    from sarcrop.utils.atomic import write_text_atomic

    if device_name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch; use --device cpu (with --quick)")
    device = torch.device(device_name)
    size = sizes(quick, device.type)
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "device": device_name,
        "machine": machine_info(),
        "sizes": size,
    }
    if device.type == "cuda":
        data["machine"]["gpu"] = torch.cuda.get_device_name(device)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sarcrop-gpu-", dir=out))
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("ceiling", lambda: ceiling(device, size)),
        ("inference", lambda: inference(device, size, quick)),
        ("variants", lambda: variants(device, size, out)),
        ("training", lambda: training(device, size)),
        ("lightning_fit", lambda: lightning_fit(device, size, work)),
        ("predict", lambda: predict(device, size, work, bf16=device.type == "cuda")),
        ("estimate", lambda: estimate(data)),
    ]
    for name, section in sections:
        log(f"{name} …")
        begin = time.perf_counter()
        try:
            data[name] = section()
        except Exception as error:  # a broken section is reported, the others still run
            data[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
            traceback.print_exc()
        data[name]["section_s"] = time.perf_counter() - begin
        log(summary(name, data[name]))
        data["total_s"] = time.perf_counter() - started
        data["load_average_end"] = load_average()
        write_text_atomic(out / "gpu.json", json.dumps(data, indent=2, default=str) + "\n")
    return data


def summary(name: str, entry: dict[str, Any]) -> str:
    """One line per section for the terminal."""
    if "error" in entry or "skipped" in entry:
        return f"{name}: {entry.get('error') or entry.get('skipped')}"
    if name == "ceiling":
        return (
            f"conv2d fp32 {entry['fp32']['gflops']:.0f}, bf16 {entry['bf16']['gflops']:.0f} GFLOP/s"
        )
    if name == "inference":
        parts = [
            f"{k} {v['patches_per_s']:.1f}"
            for k, v in entry.items()
            if isinstance(v, dict) and "patches_per_s" in v
        ]
        return "patches/s: " + ", ".join(parts)
    if name == "variants":
        parts = [f"{k} {v['patches_per_s']:.1f}" for k, v in entry.items() if isinstance(v, dict)]
        return "patches/s: " + ", ".join(parts)
    if name == "training":
        parts = [f"{k} {entry[k]['samples_per_s']:.1f}" for k in ("fp32", "bf16_mixed")]
        return "samples/s: " + ", ".join(parts)
    if name == "lightning_fit":
        return f"train() {entry['precision']} on {entry['accelerator']}: {entry['wall_s']:.1f} s"
    if name == "predict":
        return (
            f"predict {entry['km2_per_min']:.0f} km²/min, raw read "
            f"{entry['raw_read']['km2_per_min']:.0f} km²/min "
            f"({entry['fraction_of_raw_read']:.0%})"
        )
    return (
        f"paper-scale pre-training: {entry['epoch_s']:.0f} s/epoch, "
        f"{entry['total_min']:.1f} min for {entry['epochs']} epochs"
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sarcrop GPU benchmark")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"))
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: pipeline check only")
    parser.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=TRAIN_BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--patch", type=int, default=PATCH, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compile_child:
        timing = compile_child(args.device, args.batch, args.patch, args.repeats, args.bf16)
        print(json.dumps(timing))
        return
    data = run(args.out, args.device, args.quick)
    failed = [k for k, v in data.items() if isinstance(v, dict) and "error" in v]
    print(json.dumps({k: v for k, v in data.items() if k not in ("machine", "sizes")}, default=str))
    if failed:
        raise SystemExit(f"sections failed: {', '.join(failed)} (see {args.out / 'gpu.json'})")


if __name__ == "__main__":
    main()
