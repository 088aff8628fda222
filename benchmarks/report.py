"""Write ``benchmark.json`` and ``benchmark.md`` (ours vs peers vs the ceiling) atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sarcrop.utils.atomic import write_text_atomic

OURS = "recurrent_unet"
INFERENCE_TARGET = 0.60  # fraction of the conv2d ceiling
TRAINING_TARGET = 0.40
COMPOSITE_TARGET = 0.50  # composite() MB/s over the raw read's


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def frame_markdown(frame: Any) -> str:
    """A pandas frame as a Markdown table, numbers to 3 decimals."""
    header = [str(c) for c in frame.columns]
    rows = [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        for row in frame.itertuples(index=False)
    ]
    return _table(header, rows) + "\n"


def _machine(data: dict[str, Any]) -> str:
    m = data["machine"]
    return (
        f"CPU {m['cpu']} ({m['cores']} cores, {m['threads']} torch threads, "
        f"{m['cpu_capability']}, native bf16: {m['bf16']}), torch {m['torch']}, "
        f"Python {m['python']}. Load average (1, 5, 15 min) at start {m['load_average']}, "
        f"at end {data.get('load_average_end', [])}; mode: {data['mode']}, "
        f"total {data.get('total_s', 0):.0f} s."
    )


def _ceiling(data: dict[str, Any]) -> str:
    c = data["ceiling"]
    conv = c["conv2d"]
    rows = [
        [f"conv2d {conv['shape']} ({name})", _num(f["median_s"], 3), _num(f["gflops"], 1)]
        for name, f in conv["formats"].items()
    ]
    mm = c["matmul"]
    rows.append([f"matmul {mm['shape']}", _num(mm["median_s"], 3), _num(mm["gflops"], 1)])
    return _table(["operation (fp32)", "median s", "GFLOP/s"], rows)


def _inference(data: dict[str, Any]) -> str:
    inf = data["models"]
    models = inf["models"]
    accuracy = (data.get("accuracy") or {}).get("models", {})
    ours = models[OURS]["best"]["patches_per_s"]
    rows = []
    for name, e in models.items():
        best = e["best"]
        acc = accuracy.get(name, {}).get("fte_iou_mean")
        rows.append(
            [
                f"**{name}**" if name == OURS else name,
                _num(e["flops_per_patch"] / 1e9),
                e["best_format"],
                _num(best["patches_per_s"], 3),
                _num(best["mpixel_steps_per_s"]),
                _num(best["gflops"], 1),
                _pct(best.get("fraction_of_ceiling")),
                _num(best["patches_per_s"] / ours),
                _num(acc, 3),
            ]
        )
    header = [
        "model",
        "GFLOP/patch",
        "format",
        "patches/s",
        "Mpixel·step/s",
        "GFLOP/s",
        "of conv ceiling",
        "speed vs ours",
        "IoU (FTE)",
    ]
    title = (
        f"batch {inf['batch']} × {inf['patch']}² px × {inf['steps']} steps × {inf['bands']} "
        "bands, fp32, eager, `torch.inference_mode`"
    )
    return title + "\n\n" + _table(header, rows)


def _layouts(data: dict[str, Any]) -> str:
    models = data["models"]["models"]
    sizes = list(next(iter(models.values()))["batch_sizes"])
    header = ["model", "contiguous", "channels_last", *[f"batch {s}" for s in sizes]]
    rows = []
    for name, e in models.items():
        rows.append(
            [name]
            + [_num(e["formats"][k]["patches_per_s"], 3) for k in ("contiguous", "channels_last")]
            + [_num(e["batch_sizes"][s]["patches_per_s"], 3) for s in sizes]
        )
    return "patches/s (batch sizes in each model's faster format)\n\n" + _table(header, rows)


def _variants(data: dict[str, Any]) -> str:
    ours = data["models"]["models"][OURS]
    base = ours["best"]["patches_per_s"]
    rows = [[f"eager fp32 ({ours['best_format']})", _num(base, 3), "1.00", ""]]
    for name, v in ours.get("variants", {}).items():
        if "skipped" in v:
            rows.append([name, "–", "–", v["skipped"]])
            continue
        notes = []
        if "max_abs_logit_diff" in v:
            notes.append(f"max abs Δlogit {v['max_abs_logit_diff']:.1e}")
        if "sign_agreement" in v:
            notes.append(f"same class {100 * v['sign_agreement']:.2f} %")
        if "compile_s" in v:
            notes.append(f"compile {v['compile_s']:.0f} s")
        if "export_s" in v:
            notes.append(f"export {v['export_s']:.0f} s")
        rows.append(
            [name, _num(v["patches_per_s"], 3), _num(v["patches_per_s"] / base), "; ".join(notes)]
        )
    return _table(["variant (recurrent_unet)", "patches/s", "speed-up", "notes"], rows)


def _training(data: dict[str, Any]) -> str:
    tr = data["training"]
    rows = []
    for name, e in tr["models"].items():
        best, spain = e["best"], e["spain_finetune"]
        rows.append(
            [
                f"**{name}**" if name == OURS else name,
                e["best_format"],
                _num(best["samples_per_s"], 3),
                _num(best["flops_per_step"] / 1e9, 1),
                _num(best["gflops"], 1),
                _pct(best.get("fraction_of_ceiling")),
                _num(spain["epoch_s"], 1),
                _num(spain.get("time_to_convergence_s", 0) / 60, 1),
            ]
        )
    header = [
        "model",
        "format",
        "samples/s",
        "GFLOP/step",
        "GFLOP/s",
        "of conv ceiling",
        "Spain epoch s",
        "Spain fine-tune min",
    ]
    first = next(iter(tr["models"].values()))["spain_finetune"]
    title = (
        f"forward + backward + AdamW, batch {tr['batch']} × {tr['patch']}² px; Spain epoch = "
        f"{first['steps_per_epoch']} steps on {first['train_patches']} patches + validation on "
        f"{first['val_patches']}; fine-tune = {first.get('epochs', '–')} epochs"
    )
    return title + "\n\n" + _table(header, rows)


def _data_path(data: dict[str, Any]) -> str:
    d = data["data_path"]
    rows = [
        [
            "raw rasterio read (I/O bound)",
            _num(d["raw_read"]["median_s"]),
            _num(d["raw_read"]["mb_per_s"], 1),
            "",
        ],
        [
            "composite() whole area",
            _num(d["composite"]["median_s"]),
            _num(d["composite"]["mb_per_s"], 1),
            f"{d['composite']['composites_per_s']:.1f} composites/s, "
            f"{d['composite']['mb_per_s'] / d['raw_read']['mb_per_s']:.2f} × raw read",
        ],
        [
            "prepare() to a store",
            _num(d["prepare"]["median_s"]),
            _num(d["prepare"]["mb_per_s"], 1),
            f"{d['prepare']['km2_per_min']:.0f} km²/min",
        ],
    ]
    title = (
        f"{d['size']}² px simulated Korea region, {d['scenes']} scenes "
        f"({d['scenes_in_season']} in season), {d['file_mb']:.0f} MB of GeoTIFF"
    )
    return title + "\n\n" + _table(["stage", "median s", "MB/s", "notes"], rows)


def _area(data: dict[str, Any]) -> str:
    a = data.get("area")
    if not a:
        return "not run"
    if "skipped" in a:
        return a["skipped"]
    return _table(
        ["area", "km²", "wall s", "km²/min", "peak RSS MB", "threads"],
        [
            [
                f"{a['width']}×{a['height']} px",
                _num(a["km2"], 1),
                _num(a["wall_s"], 1),
                _num(a["km2_per_min"], 2),
                _num(a.get("peak_rss_mb")),
                _num(a.get("threads")),
            ]
        ],
    )


def _accuracy(data: dict[str, Any]) -> str:
    acc = data.get("accuracy")
    if not acc:
        return "not run"
    inference = data["models"]["models"]
    scenarios = acc["scenarios"]
    methods = acc["methods"]
    header = ["model", *[f"{s} {m}" for s in scenarios for m in methods], "patches/s", "wall s"]
    rows = []
    for name, e in acc["models"].items():
        rows.append(
            [name]
            + [_num(e["iou"].get(s, {}).get(m), 3) for s in scenarios for m in methods]
            + [_num(inference.get(name, {}).get("best", {}).get("patches_per_s"), 3)]
            + [_num(e["wall_s"], 0)]
        )
    title = (
        f"test IoU at the last date, shipped `small` config ({acc['mode']}: methods "
        f"{', '.join(methods)}; epochs {acc.get('epochs')}; model_options "
        f"{acc['model_options']} for every model)"
    )
    return title + "\n\n" + _table(header, rows)


def _targets(data: dict[str, Any]) -> str:
    lines = []
    ours_inf = data["models"]["models"][OURS]["best"].get("fraction_of_ceiling")
    if ours_inf is not None:
        ok = "reached" if ours_inf >= INFERENCE_TARGET else "NOT reached"
        lines.append(
            f"- inference ≥ {INFERENCE_TARGET:.0%} of the conv2d ceiling: {ours_inf:.0%}, {ok}"
        )
    if "training" in data:
        ours_tr = data["training"]["models"][OURS]["best"].get("fraction_of_ceiling")
        if ours_tr is not None:
            ok = "reached" if ours_tr >= TRAINING_TARGET else "NOT reached"
            lines.append(
                f"- training ≥ {TRAINING_TARGET:.0%} of the conv2d ceiling: {ours_tr:.0%}, {ok}"
            )
    models = data["models"]["models"]
    if "utae" in models:
        ratio = models[OURS]["best"]["patches_per_s"] / models["utae"]["best"]["patches_per_s"]
        acc = (data.get("accuracy") or {}).get("models", {})
        iou = ""
        if OURS in acc and "utae" in acc:
            a, b = acc[OURS]["fte_iou_mean"], acc["utae"]["fte_iou_mean"]
            iou = f"; IoU {a:.3f} vs {b:.3f} ({'≥' if a >= b else '<'})"
        ok = "reached" if ratio >= 1 else "NOT reached"
        lines.append(f"- recurrent U-Net at least as fast as U-TAE: {ratio:.2f}× U-TAE{iou}, {ok}")
    trained = (data.get("training") or {}).get("models", {})
    if OURS in trained and "utae" in trained:
        ratio = trained[OURS]["best"]["samples_per_s"] / trained["utae"]["best"]["samples_per_s"]
        ok = "reached" if ratio >= 1 else "NOT reached"
        lines.append(f"- training at least as fast as U-TAE: {ratio:.2f}× U-TAE, {ok}")
    path = data.get("data_path")
    if path:
        ratio = path["composite"]["mb_per_s"] / path["raw_read"]["mb_per_s"]
        ok = "reached" if ratio >= COMPOSITE_TARGET else "NOT reached"
        lines.append(f"- composites ≥ {COMPOSITE_TARGET:.0%} of the raw read: {ratio:.0%}, {ok}")
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    sections = [
        ("sarcrop benchmark", _machine(data)),
        ("Targets", _targets(data)),
        ("Compute ceiling", _ceiling(data)),
        ("Inference: ours vs peers vs ceiling", _inference(data)),
        ("Inference: memory format and batch size", _layouts(data)),
        ("Inference variants", _variants(data)),
    ]
    if "training" in data:
        sections.append(("Training", _training(data)))
    if "data_path" in data:
        sections.append(("Data path", _data_path(data)))
    sections.append(("Whole-area prediction", _area(data)))
    sections.append(("Accuracy beside speed", _accuracy(data)))
    parts = [f"# {sections[0][0]}\n\n{sections[0][1]}\n"]
    parts += [f"## {title}\n\n{body}\n" for title, body in sections[1:]]
    return "\n".join(parts)


def write(out: Path, data: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``benchmark.json`` and ``benchmark.md`` under ``out``; both atomically."""
    json_path = write_text_atomic(
        out / "benchmark.json", json.dumps(data, indent=2, default=str) + "\n"
    )
    md_path = write_text_atomic(out / "benchmark.md", markdown(data))
    return json_path, md_path
