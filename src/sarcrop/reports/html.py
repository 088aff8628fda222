"""The self-contained HTML report of an experiment run directory.

One file that opens offline from the file system and can be mailed or archived on its own:
figures are embedded as base64 PNG data URIs, the style sheet is inline, nothing is fetched
from the network and no JavaScript runs (the metric tabs are CSS only). The map GeoTIFFs are
too large to embed, so they are linked relative to the report.

The tables are rebuilt from ``results.csv`` as :class:`sarcrop.evaluation.tables.Table`
objects and rendered straight to HTML (never parsed back from ``tables.md``), so the report
always shows the numbers of the run directory it is rendered from. Each scenario's ``data`` in
the manifest (simulated or real) labels our numbers beside the paper's, from its real data.
Optional parts of the manifest that are absent, null or point at a missing file are left out;
the report never shows a broken image.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from sarcrop.errors import SarcropError
from sarcrop.evaluation.metrics import EvaluationInputError
from sarcrop.evaluation.paper import CITATION, CITATION_URL, find_scenario
from sarcrop.evaluation.tables import (
    fraction_table,
    has_paper_values,
    method_label,
    paired_table,
    paper_table,
    pretrain_of,
    summary_table,
)
from sarcrop.reports.classes import crop_types_html
from sarcrop.reports.markdown import (
    COMPARISON_NOTE,
    SEARCH_NOTE,
    SEARCHES,
    comparison_rows,
    main_run,
    paired_baselines,
    run_timestep_tables,
    scenario_names,
    search_counts,
)
from sarcrop.utils.atomic import write_text_atomic

MANIFEST = "experiment.json"
RESULTS = "results.csv"
INTERVALS = "intervals.csv"
CLASS_INTERVALS = "class_intervals.csv"
TIMESTEP_INTERVALS = "timestep_intervals.csv"
COMPARISONS = "comparisons.csv"
REPORT = "report.html"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Secondary metrics in the order of the paper's Tables 2-4.
_TAB_METRICS = (("recall", "Recall"), ("precision", "Precision"), ("f1", "F1-score"))
Sources = Mapping[str, str | None]
"""Scenario id → the data our numbers were measured on ("simulated" / "real")."""


class ReportError(SarcropError):
    """A run directory that cannot be turned into a report."""


# --------------------------------------------------------------------------- small helpers


def _e(value: Any) -> str:
    """HTML-escaped text of ``value`` (quotes too: the result may sit in an attribute)."""
    return html.escape(str(value), quote=True)


def _slug(value: Any) -> str:
    """A safe fragment identifier: letters, digits and hyphens only."""
    return re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-") or "item"


def format_duration(seconds: float) -> str:
    """Human-readable duration: ``0.4 s``, ``12.3 s``, ``2 min 03 s``, ``1 h 02 min``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _scenario_title(scenario: Mapping[str, Any]) -> str:
    """``Spain → France · rice · VH|VV`` (the paper's r1-r2-c-s notation, readable)."""
    bands = scenario.get("bands") or []
    bands_text = "|".join(bands) if isinstance(bands, list | tuple) else str(bands)
    parts = [
        f"{_region(scenario.get('finetune_region'))} → {_region(scenario.get('test_region'))}",
        str(scenario.get("crop", "")),
        bands_text,
    ]
    pretrain = pretrain_of(scenario.get("id", ""))
    return " · ".join(part for part in parts if part) + (f", from {pretrain}" if pretrain else "")


def _region(name: Any) -> str:
    text = str(name or "?")
    return "The Netherlands" if text.lower() == "netherlands" else text.title()


def _png_data_uri(path: Path) -> str | None:
    """The PNG at ``path`` as a data URI, or None when it is missing or not a PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_MAGIC):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


class _Context:
    """Paths of one rendering: where files are read from and where links point from."""

    def __init__(self, run_dir: Path, out: Path) -> None:
        self.run_dir = run_dir
        self.out_dir = out.parent

    def resolve(self, relative: Any) -> Path | None:
        if not isinstance(relative, str) or not relative.strip():
            return None
        return self.run_dir / relative

    def figure(self, relative: Any, caption: str, *, css_class: str = "figure") -> str:
        """A ``<figure>`` with the embedded PNG, or ``""`` if there is nothing to show."""
        path = self.resolve(relative)
        uri = None if path is None else _png_data_uri(path)
        if uri is None:
            return ""
        return (
            f'<figure class="{css_class}"><img src="{uri}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )

    def link(self, relative: Any) -> str | None:
        """URL of a run file relative to the report, or None if the file does not exist."""
        path = self.resolve(relative)
        if path is None or not path.is_file():
            return None
        rel = os.path.relpath(path.resolve(), self.out_dir.resolve())
        return quote(Path(rel).as_posix())


# --------------------------------------------------------------------------- tables


def _paper_table_html(results: pd.DataFrame, metric: str, sources: Sources) -> str:
    try:
        table = paper_table(results, metric, reference=True, sources=sources)
    except EvaluationInputError:
        return ""
    return table.to_html(table_id=f"table-{metric}", highlight_max=True)


# --------------------------------------------------------------------------- sections


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError("not an experiment run directory (no experiment.json)", run_dir) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"unreadable experiment manifest: {exc}", path) from None
    if not isinstance(manifest, dict):
        raise ReportError("experiment manifest is not a JSON object", path)
    return manifest


def read_results(run_dir: Path) -> pd.DataFrame | None:
    """A run's ``results.csv``, None where it is absent or holds no row; one line naming
    the file where it cannot be read, lacks a column or holds a value that is not a number."""
    path = run_dir / RESULTS
    if not path.is_file():
        return None
    try:
        results = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"unreadable results table: {exc}", path) from None
    required = {"scenario", "method", "metric", "value"}
    if not required <= set(results.columns):
        missing = ", ".join(sorted(required - set(results.columns)))
        raise ReportError(f"results table lacks column(s) {missing}", path)
    numbers = pd.to_numeric(results["value"], errors="coerce")
    bad = numbers.isna() & results["value"].notna()
    if bad.any():
        row = int(bad.to_numpy().argmax())  # the first
        value = results["value"].iloc[row]
        raise ReportError(f"results table row {row + 2}: value {value!r} is not a number", path)
    return None if results.empty else results.assign(value=numbers)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _sources(manifest: Mapping[str, Any]) -> dict[str, str | None]:
    """What data each scenario's numbers were measured on, as the manifest records it."""
    sources: dict[str, str | None] = {}
    for scenario in _as_list(manifest.get("scenarios")):
        if isinstance(scenario, Mapping) and "id" in scenario:
            data = scenario.get("data")
            sources[str(scenario["id"])] = str(data) if data else None
    return sources


def _summary_line(manifest: Mapping[str, Any]) -> str:
    scenarios = [s for s in _as_list(manifest.get("scenarios")) if isinstance(s, Mapping)]
    scenarios += [s for s in _as_list(manifest.get("crop_types")) if isinstance(s, Mapping)]
    methods = [method_label(m) for m in _as_list(manifest.get("methods"))]
    seeds = [str(s) for s in _as_list(manifest.get("seeds"))]
    parts = [f"{len(scenarios)} scenario{'s' if len(scenarios) != 1 else ''}"]
    if methods:
        parts.append("methods " + ", ".join(methods))
    if seeds:
        parts.append(f"seed{'s' if len(seeds) != 1 else ''} " + ", ".join(seeds))
    steps = manifest.get("time_steps")
    if isinstance(steps, int):
        parts.append(f"T = {steps} time steps")
    total = _total_time(manifest.get("timings"))
    if total is not None:
        parts.append(f"compute time {format_duration(total)}{_this_run(manifest)}")
    return " · ".join(parts)


def _this_run(manifest: Mapping[str, Any]) -> str:
    """`` (this run 15 s)``: the wall time of the invocation that wrote the report, which
    found cached units done and ran the others side by side in workers."""
    timings = manifest.get("timings")
    wall = timings.get("this run") if isinstance(timings, Mapping) else None
    return f" (this run {format_duration(float(wall))})" if isinstance(wall, int | float) else ""


# Summary entries of the runner's timings, shown in the table's footer rather than as stages.
_TIMING_SUMMARIES = ("total", "this run")


def _timings(value: Any) -> list[tuple[str, float]]:
    if not isinstance(value, Mapping):
        return []
    rows = []
    for name, seconds in value.items():
        if name in _TIMING_SUMMARIES:
            continue
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            rows.append((str(name), float(seconds)))
    return rows


def _total_time(value: Any) -> float | None:
    """The recorded total when the runner gives one, else the sum of the stages."""
    if isinstance(value, Mapping) and isinstance(value.get("total"), int | float):
        return float(value["total"])
    rows = _timings(value)
    return sum(seconds for _, seconds in rows) if rows else None


def _section(section_id: str, title: str, body: str) -> str:
    if not body.strip():
        return ""
    return f'<section id="{_e(section_id)}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _measured_on(sources: Sources) -> str:
    kinds = sorted({s for s in sources.values() if s}, key=lambda kind: kind != "simulated")
    if not kinds:
        return "this run's data"
    return " and ".join(f"{kind} data" for kind in kinds)


def _key_finding(
    results: pd.DataFrame | None, manifest: Mapping[str, Any], sources: Sources
) -> str:
    if results is None:
        if crop_types := _crop_type_finding(manifest.get("crop_types")):
            return crop_types
        return '<p class="empty">No results were recorded in this run directory.</p>'
    table = _paper_table_html(results, "iou", sources)
    if not table:
        return '<p class="empty">The results contain no IoU values.</p>'
    steps = manifest.get("time_steps")
    season = f"full season, t = {steps}" if isinstance(steps, int) else "full season"
    fractions = [f for f in _as_list(manifest.get("fractions")) if isinstance(f, int | float)]
    if len(fractions) > 1:  # the table holds the largest; the learning curves the others
        season += f", {100 * max(fractions):g} % of the labelled parcels"
    season = f" ({season})"
    seeds = results["seed"].nunique() if "seed" in results.columns else 1
    spread = "mean ± sample std over seeds; " if seeds > 1 else ""
    paper = (
        " The published value of the paper's Table 1, measured on the paper's real Sentinel-1 "
        "data, is shown muted in brackets beside each matching cell."
        if has_paper_values(results)
        else ""
    )
    return (
        f"<p>IoU of the positive class{_e(season)}, ours measured on "
        f"<strong>{_e(_measured_on(sources))}</strong>: {spread}the best method of each "
        f"scenario is highlighted.{paper}</p>"
        f'<div class="table-wrap">{table}</div>'
    )


def _crop_type_finding(value: Any) -> str:
    """The best mIoU of each crop-type scenario (with the most labels), for a run of crop
    types alone; "" where there are none."""
    items = []
    for entry in _as_list(value):
        if not isinstance(entry, Mapping) or not _as_list(entry.get("tables")):
            continue
        tables = [t for t in entry["tables"] if isinstance(t, Mapping)]
        largest = max(tables, key=lambda t: float(t.get("fraction", 1.0)))
        table = largest.get("table") or {}
        methods, miou = _as_list(table.get("method")), _as_list(table.get("mIoU"))
        best = method_label(str(entry.get("best", "")))
        if best not in methods or len(miou) != len(methods):
            continue
        share = f"{100 * float(largest.get('fraction', 1.0)):g} % of the labels"
        title = str(entry.get("title") or entry.get("scenario", ""))
        items.append(
            f"<li>{_e(title)} ({_e(share)}): {_e(best)}, mIoU "
            f"{_e(str(miou[methods.index(best)]))}</li>"
        )
    if not items:
        return ""
    return (
        "<p>This run maps crop types. The best mIoU (mean ± std over seeds [95 % parcel "
        "interval]) of each scenario, full season; every class and method is under "
        '<a href="#crop-types">Crop types</a>:</p><ul>' + "".join(items) + "</ul>"
    )


def _metric_tabs(results: pd.DataFrame | None, sources: Sources) -> str:
    if results is None:
        return ""
    tabs = [(m, name, _paper_table_html(results, m, sources)) for m, name in _TAB_METRICS]
    tabs = [tab for tab in tabs if tab[2]]
    if not tabs:
        return ""
    out = ['<div class="tabs">']
    for i, (metric, name, _) in enumerate(tabs):
        checked = " checked" if i == 0 else ""
        out.append(
            f'<input type="radio" name="metric-tab" id="tab-{metric}"{checked}>'
            f'<label for="tab-{metric}">{_e(name)}</label>'
        )
    for metric, _, table in tabs:
        out.append(f'<div class="tab-panel" id="panel-{metric}"><div class="table-wrap">')
        out.append(table)
        out.append("</div></div>")
    out.append("</div>")
    return "\n".join(out)


def _scenario_metrics(results: pd.DataFrame | None, scenario_id: str, sources: Sources) -> str:
    if results is None:
        return ""
    part = results[results["scenario"].astype(str) == scenario_id]
    if part.empty:
        return ""
    try:
        table = summary_table(part, sources=sources)
    except EvaluationInputError:
        return ""
    return f'<div class="table-wrap">{table.to_html(css_class="results compact")}</div>'


def _scenario_section(
    ctx: _Context, scenario: Mapping[str, Any], results: pd.DataFrame | None, sources: Sources
) -> str:
    scenario_id = str(scenario.get("id", ""))
    title = _scenario_title(scenario)
    paper = find_scenario(
        str(scenario.get("finetune_region", "")),
        str(scenario.get("test_region", "")),
        str(scenario.get("crop", "")),
        bands if isinstance(bands := scenario.get("bands"), str) else tuple(_as_list(bands)),
    )
    data = sources.get(scenario_id)
    facts = [f"ours measured on {data} data" if data else ""]
    if paper is not None:
        facts.append(f"the paper's experiment {paper.number} (real data)")
    reference = "".join(f" — {fact}" for fact in facts if fact)
    parts = [
        f'<section class="scenario" id="scenario-{_slug(scenario_id)}">',
        f"<h3>{_e(title)}</h3>",
        f'<p class="muted"><code>{_e(scenario_id)}</code>{_e(reference)}</p>',
        _scenario_metrics(results, scenario_id, sources),
        ctx.figure(
            scenario.get("figure"),
            f"{title}: whole test area and patches; columns image, label, then each method "
            "(TP green, FP orange, FN red)",
        ),
        ctx.figure(
            scenario.get("uncertainty_figure"),
            f"{title}: each method's errors and, beside them, its uncertainty (binary entropy "
            "of the predicted probability, in bits)",
        ),
        ctx.figure(
            scenario.get("signature_figure"),
            f"{title}: mean VH time series of true positives, false negatives and the "
            "fine-tuning region's positives",
        ),
    ]
    raw_maps = scenario.get("maps")
    maps = raw_maps if isinstance(raw_maps, Mapping) else {}
    links = []
    for method, relative in maps.items():
        href = ctx.link(relative)
        if href is not None:
            links.append(
                f'<li><a href="{_e(href)}">{_e(method_label(method))}</a> '
                f'<span class="muted">{_e(relative)}</span></li>'
            )
    if links:
        parts.append('<p class="maps-title">Prediction maps (GeoTIFF):</p>')
        parts.append('<ul class="maps">' + "".join(links) + "</ul>")
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _early_season(ctx: _Context, value: Any) -> str:
    if not isinstance(value, Mapping):
        return ""
    scenario = value.get("scenario")
    method = value.get("method")
    detail = ", ".join(
        text
        for text in (
            f"scenario {scenario}" if scenario else "",
            f"method {method_label(method)}" if method else "",
        )
        if text
    )
    caption = "Metric against the number of observed time steps t" + (
        f" ({detail})" if detail else ""
    )
    figure = ctx.figure(value.get("figure"), caption)
    if not figure:
        return ""
    return (
        "<p>Predictions early in the season: the later composites are zero-padded, so t "
        "counts the composites the model has seen.</p>" + figure
    )


_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _legend(value: Any) -> str:
    """Swatches of the class colours of predicted crop-type maps, one per class."""
    items = []
    for item in _as_list(value):
        if not isinstance(item, Mapping):
            continue
        color = str(item.get("color", ""))
        swatch = (
            f'<span class="swatch" style="background:{color}"></span>'
            if _HEX_COLOR.match(color)
            else ""
        )
        items.append(f"<li>{swatch}{_e(item.get('class', ''))}</li>")
    items.append('<li><span class="swatch unlabelled"></span>unlabelled</li>')
    return '<ul class="legend" aria-label="Class colours">' + "".join(items) + "</ul>"


def _class_intervals_note(ctx: _Context, value: Any) -> str:
    """What the ``[low, high]`` of the crop-type tables are, where the run has them."""
    if not _as_list(value) or ctx.link(CLASS_INTERVALS) is None:
        return ""
    return (
        '<p class="table-note">[low, high]: 95 % parcel-bootstrap interval of the mean over '
        "seeds (IoU per class and mIoU; test parcels resampled, every seed scored on the same "
        f"draws), from <code>{CLASS_INTERVALS}</code>; a class with fewer than 2 test parcels "
        "has none.</p>"
    )


def _class_maps(ctx: _Context, value: Any) -> str:
    """Each crop-type scenario's class maps of test patches, with the legend of its classes."""
    parts = []
    for entry in _as_list(value):
        if not isinstance(entry, Mapping):
            continue
        title = str(entry.get("title") or entry.get("scenario", ""))
        figure = ctx.figure(
            entry.get("maps_figure"),
            f"{title}: class maps of test patches; columns label (unlabelled grey), then each "
            "method's predicted class (first seed, the most labels), in the colours of the "
            "predicted GeoTIFF maps",
        )
        if figure:
            parts.append(f"<h3>Class maps: {_e(title)}</h3>{_legend(entry.get('legend'))}{figure}")
    return "\n".join(parts)


def _class_early_season(ctx: _Context, value: Any) -> str:
    """mIoU against t of the crop-type scenario that ``early_season`` names."""
    figures = [
        ctx.figure(
            entry.get("early_season_figure"),
            f"mIoU against the number of observed time steps t, "
            f"{entry.get('title') or entry.get('scenario', '')} (mean ± std over seeds, every "
            "label; t counts the composites each method has seen)",
        )
        for entry in _as_list(value)
        if isinstance(entry, Mapping)
    ]
    return "".join(f for f in figures if f)


def _fractions(
    ctx: _Context, manifest: Mapping[str, Any], results: pd.DataFrame | None, sources: Sources
) -> str:
    """Mean ± std [parcel-bootstrap CI] per label fraction, and the learning curves."""
    path = ctx.run_dir / INTERVALS
    if results is None or not path.is_file():
        return ""
    try:
        intervals = pd.read_csv(path)
        names = scenario_names(results)
        table = fraction_table(intervals, sources=sources, names=names)
        paired = {
            baseline: paired_table(intervals, baseline, sources=sources, names=names)
            for baseline in paired_baselines(intervals)
        }
    except (OSError, ValueError, EvaluationInputError) as exc:
        raise ReportError(f"unreadable intervals table: {exc}", path) from None
    figure = ctx.figure(
        manifest.get("learning_curves"),
        "IoU against the share of labelled parcels used for fine-tuning, one line per "
        "method (mean over seeds), bars: 95 % parcel-bootstrap intervals",
    )
    return (
        f"<p>Ours measured on <strong>{_e(_measured_on(sources))}</strong>. Each method is "
        "fine-tuned (or fitted) with a share of the fine-tuning region's labelled parcels "
        "(whole parcels, chosen by seed) and tested on the test region.</p>"
        f'<div class="table-wrap">{table.to_html(table_id="table-fractions")}</div>{figure}'
        + "".join(
            f'<div class="table-wrap">{t.to_html(table_id=f"table-paired-{b}")}</div>'
            for b, t in paired.items()
        )
    )


def _training_curves(ctx: _Context, value: Any) -> str:
    figures = [
        ctx.figure(item.get("figure"), str(item.get("name") or "training"))
        for item in _as_list(value)
        if isinstance(item, Mapping)
    ]
    return "\n".join(figure for figure in figures if figure)


def _timings_table(value: Any) -> str:
    rows = _timings(value)
    if not rows:
        return ""
    total = _total_time(value) or 0.0
    out = ['<table class="results compact timings"><thead><tr>']
    out.append('<th scope="col">Stage</th><th scope="col">Time</th><th scope="col">Seconds</th>')
    out.append("</tr></thead><tbody>")
    for name, seconds in rows:
        out.append(
            f'<tr><th scope="row">{_e(name)}</th><td>{_e(format_duration(seconds))}</td>'
            f"<td>{seconds:.1f}</td></tr>"
        )
    out.append(
        '</tbody><tfoot><tr><th scope="row" title="cached units count their first run">'
        "compute</th>"
        f"<td>{_e(format_duration(total))}</td><td>{total:.1f}</td></tr>"
    )
    wall = value.get("this run") if isinstance(value, Mapping) else None
    if isinstance(wall, int | float):
        out.append(
            f'<tr><th scope="row">this run</th><td>{_e(format_duration(wall))}'
            f"</td><td>{wall:.1f}</td></tr>"
        )
    out.append("</tfoot></table>")
    return "".join(out)


def _timesteps(
    ctx: _Context, manifest: Mapping[str, Any], results: pd.DataFrame | None, sources: Sources
) -> str:
    """Each method's IoU at every number of observed composites (``timestep_table:``), with
    the parcel intervals of ``timestep_intervals.csv`` where the run wrote one."""
    if not manifest.get("timestep_table") or results is None:
        return ""
    path = ctx.run_dir / TIMESTEP_INTERVALS
    try:
        intervals = pd.read_csv(path) if path.is_file() else None
        tables = run_timestep_tables(results, intervals, sources)
    except (OSError, ValueError, EvaluationInputError) as exc:
        raise ReportError(f"unreadable time-step intervals table: {exc}", path) from None
    ids = ["table-timesteps", *(f"table-timesteps-paired-{i}" for i in range(1, len(tables)))]
    return "".join(
        f'<div class="table-wrap">{table.to_html(table_id=ident)}</div>'
        for ident, table in zip(ids, tables, strict=True)
    )


def _searches(run_dir: Path) -> str:
    """How often each epoch budget and interpolation weight was chosen on held-out parcels
    (``searches.csv``, written where the run's fine-tuning searched)."""
    path = run_dir / SEARCHES
    if not path.is_file():
        return ""
    try:
        searches = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"unreadable search table: {exc}", path) from None
    required = {"scenario", "method", "label_fraction", "folds", "epochs", "interpolation"}
    if not required <= set(searches.columns):
        missing = ", ".join(sorted(required - set(searches.columns)))
        raise ReportError(f"search table lacks column(s) {missing}", path)
    if searches.empty:
        return ""
    counts = search_counts(searches)
    rows = [[_e(value) for value in row] for row in counts.itertuples(index=False)]
    return f"<p>{_e(SEARCH_NOTE.replace('`', ''))}</p>" + _compact_table(counts.columns, rows)


def _compact_table(
    columns: Iterable[Any], rows: Iterable[Iterable[str]], table_id: str | None = None
) -> str:
    """A plain table in the report's compact style; ``rows`` hold HTML, already escaped."""
    head = "".join(f'<th scope="col">{_e(column)}</th>' for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    id_attr = f' id="{_e(table_id)}"' if table_id else ""
    return (
        f'<div class="table-wrap"><table class="results compact"{id_attr}><thead><tr>{head}'
        f"</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _comparisons(run_dir: Path) -> str:
    """The config's paired comparisons pooled over scenarios (``comparisons.csv``)."""
    path = run_dir / COMPARISONS
    if not path.is_file():
        return ""
    try:
        rows = comparison_rows(pd.read_csv(path))
    except (OSError, ValueError, AttributeError) as exc:
        raise ReportError(f"unreadable comparisons table: {exc}", path) from None
    if not rows:
        return ""
    columns = [c for c in rows[0] if c != "resolved"]

    def cell(row: dict[str, str], column: str) -> str:
        bold = column == "A − B [95 %]" and row["resolved"]
        return f"<strong>{_e(row[column])}</strong>" if bold else _e(row[column])

    cells = [[cell(row, c) for c in columns] for row in rows]
    note = COMPARISON_NOTE.replace("**bold**", "bold").replace("`", "")
    return f"<p>{_e(note)}</p>" + _compact_table(columns, cells, "table-comparisons")


def _notes(value: Any) -> str:
    notes = [str(note) for note in _as_list(value) if str(note).strip()]
    if not notes:
        return ""
    return "<ul>" + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>"


def _area_estimates(value: Any) -> str:
    """Estimated area with its 95 % CI beside the map's pixel count and the true area, one row
    per record of ``area_estimates`` (:func:`sarcrop.evaluation.assessment.area_record`)."""
    rows = [r for r in _as_list(value) if isinstance(r, Mapping)]
    if not rows:
        return ""

    def num(v: Any) -> str:
        return f"{v:,.2f}" if isinstance(v, int | float) else "–"

    body = []
    for r in rows:
        low, high, true = r.get("ci95_low"), r.get("ci95_high"), r.get("true")
        covered = "–"
        numbers = [v for v in (low, true, high) if isinstance(v, int | float)]
        if len(numbers) == 3:
            covered = "yes" if numbers[0] <= numbers[1] <= numbers[2] else "no"
        body.append(
            "<tr>"
            + "".join(
                f"<td>{_e(c)}</td>"
                for c in (
                    r.get("scenario", ""),
                    method_label(r.get("method", "")),
                    r.get("crop") or r.get("class", ""),
                    r.get("data", ""),
                    r.get("unit", ""),
                    num(true),
                    num(r.get("pixel_count")),
                    num(r.get("estimate")),
                    f"{num(low)} – {num(high)}",
                    r.get("sample_size", ""),
                    covered,
                )
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "scenario",
            "method",
            "class",
            "data",
            "unit",
            "true area",
            "pixel count",
            "estimated area",
            "95 % CI",
            "sample size",
            "CI covers truth",
        )
    )
    unlabelled = max((float(r.get("unlabelled_share") or 0) for r in rows), default=0.0)
    partial = (
        f"<p>The true area is that of the labelled ground: up to {100 * unlabelled:.0f} % of the "
        "mapped area has no label (ground outside the labelled fields), whose crop neither the "
        "truth nor the sample knows, so both count the labelled crop alone; the pixel count "
        "counts the crop mapped there too.</p>"
        if unlabelled >= 0.01
        else ""
    )
    return (
        "<p>Area of the mapped class estimated from a stratified sample of reference labels "
        "(Olofsson et al. 2014; Stehman 2014), beside the map's pixel count, which its errors "
        "bias, and the true area where the truth is known.</p>"
        f"{partial}"
        f'<div class="table-wrap"><table class="area"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _machine(environment: Mapping[str, str]) -> str | None:
    """PyTorch, the processor and its kernels: trained numbers differ between machines."""
    if not environment:
        return None
    parts = [f"torch {environment.get('torch', '?')}", environment.get("processor", "")]
    kernels = environment.get("cpu_kernels")
    return ", ".join(p for p in parts if p) + (f" ({kernels} kernels)" if kernels else "")


def _footer(ctx: _Context, manifest: Mapping[str, Any]) -> str:
    facts = [
        ("sarcrop", manifest.get("sarcrop_version")),
        ("created", manifest.get("created")),
        ("on", _machine(manifest.get("environment") or {})),
        ("configuration file", manifest.get("config_file")),
    ]
    items = [f"{_e(name)} {_e(value)}" for name, value in facts if value]
    files = [
        f'<a href="{_e(href)}">{_e(name)}</a>'
        for name in (RESULTS, "tables.md", MANIFEST)
        if (href := ctx.link(name)) is not None
    ]
    out = ['<footer><p class="muted">' + " · ".join(items) + "</p>"]
    if files:
        out.append('<p class="muted">Files: ' + ", ".join(files) + "</p>")
    config = manifest.get("config")
    if config:
        text = json.dumps(config, indent=2, sort_keys=False, default=str, ensure_ascii=False)
        out.append(f"<details><summary>Configuration</summary><pre>{_e(text)}</pre></details>")
    out.append("</footer>")
    return "\n".join(out)


def _nav(sections: Iterable[tuple[str, str, str]]) -> str:
    links = [f'<a href="#{_e(sid)}">{_e(title)}</a>' for sid, title, body in sections if body]
    return '<nav aria-label="Sections">' + "".join(links) + "</nav>" if links else ""


# --------------------------------------------------------------------------- page

_CSS = """
:root {
  --text: #1d2430; --muted: #6b7380; --line: #dde1e7; --accent: #1f5fa8;
  --soft: #f4f6f9; --best: #e3f1e4;
}
* { box-sizing: border-box; }
body {
  margin: 0; color: var(--text); background: #fff; line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
}
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
header h1 { margin: 0 0 .25rem; font-size: 1.7rem; }
header .summary { margin: 0; color: var(--muted); }
h2 { margin: 2.2rem 0 .8rem; padding-bottom: .3rem; border-bottom: 2px solid var(--line);
  font-size: 1.3rem; }
h3 { margin: 1.6rem 0 .3rem; font-size: 1.1rem; }
a { color: var(--accent); }
nav { display: flex; flex-wrap: wrap; gap: .4rem 1rem; margin: 1rem 0 0; padding: .6rem .8rem;
  background: var(--soft); border-radius: 6px; font-size: .92rem; }
.muted, .paper { color: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1rem; }
table.results { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
table.results caption { caption-side: top; text-align: left; color: var(--muted);
  font-style: italic; padding: 0 0 .4rem; }
table.results th, table.results td { padding: .35rem .6rem; border-bottom: 1px solid var(--line);
  text-align: right; white-space: nowrap; }
table.results thead th { background: var(--soft); text-align: center; font-weight: 600; }
table.results th[scope=row] { text-align: left; font-weight: 600; }
table.results tbody tr:nth-child(even) { background: #fafbfc; }
table.results td.best { background: var(--best); font-weight: 600; }
table.results .paper { font-size: .8em; margin-left: .25rem; }
.table-note { margin: .3rem 0 0; color: var(--muted); font-size: .85rem; }
header .cite { margin: .2rem 0 0; color: var(--muted); font-size: .88rem; }
table.compact th[scope=col] { text-align: right; }
table.compact th[scope=col]:first-child { text-align: left; }
.tabs { display: flex; flex-wrap: wrap; align-items: flex-end; }
.tabs > input { position: absolute; opacity: 0; pointer-events: none; }
.tabs > label { padding: .4rem .9rem; margin-right: .25rem; border: 1px solid var(--line);
  border-bottom: none; border-radius: 6px 6px 0 0; background: var(--soft); cursor: pointer; }
.tabs > input:checked + label { background: #fff; font-weight: 600;
  box-shadow: inset 0 2px 0 var(--accent); }
.tabs > input:focus-visible + label { outline: 2px solid var(--accent); }
.tab-panel { display: none; order: 1; width: 100%; border-top: 1px solid var(--line);
  padding-top: .2rem; }
.tabs > input:nth-of-type(1):checked ~ .tab-panel:nth-of-type(1),
.tabs > input:nth-of-type(2):checked ~ .tab-panel:nth-of-type(2),
.tabs > input:nth-of-type(3):checked ~ .tab-panel:nth-of-type(3) { display: block; }
figure { margin: 1rem 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 4px; }
figcaption { color: var(--muted); font-size: .88rem; margin-top: .3rem; }
section.scenario { border-top: 1px solid var(--line); }
section.scenario:first-of-type { border-top: none; }
ul.maps { margin: .2rem 0 0; padding-left: 1.2rem; }
ul.legend { display: flex; flex-wrap: wrap; gap: .3rem 1rem; margin: .4rem 0; padding: 0;
  list-style: none; font-size: .9rem; }
ul.legend .swatch { display: inline-block; width: .9em; height: .9em; margin-right: .35rem;
  vertical-align: -.1em; border: 1px solid var(--text); }
ul.legend .swatch.unlabelled { background: #c8c8c8; }
.maps-title { margin: .6rem 0 0; font-weight: 600; }
footer { margin-top: 3rem; padding-top: 1rem; border-top: 2px solid var(--line);
  font-size: .88rem; }
pre { background: var(--soft); padding: .8rem; border-radius: 6px; overflow-x: auto;
  font-size: .82rem; }
@media (max-width: 640px) {
  body { font-size: 14px; }
  main { padding: 1rem .7rem 2rem; }
  header h1 { font-size: 1.35rem; }
}
@media print {
  nav, .tabs > input, .tabs > label { display: none; }
  .tab-panel { display: block; border: none; }
  section.scenario { break-inside: avoid; }
}
"""


def build_report_html(run_dir: str | Path, out: str | Path | None = None) -> str:
    """The report page of ``run_dir`` as a string; links are relative to ``out``'s folder."""
    run_dir = Path(run_dir)
    out = run_dir / REPORT if out is None else Path(out)
    ctx = _Context(run_dir, out)
    manifest = _read_manifest(run_dir)
    every = read_results(run_dir)
    # Early-season reruns (other batch orderings) have their own figure, and runs with fewer
    # labels the learning curves: the tables compare the main run's methods with every label,
    # as tables.md does, and the time-step table keeps each label fraction, as it does there.
    results = None if every is None else main_run(every)
    results = None if results is None or results.empty else results
    name = str(manifest.get("name") or run_dir.name)
    sources = _sources(manifest)

    scenario_html = "\n".join(
        _scenario_section(ctx, scenario, results, sources)
        for scenario in _as_list(manifest.get("scenarios"))
        if isinstance(scenario, Mapping)
    )
    sections = [
        (
            "key-finding",
            "Key finding: mIoU"
            if results is None and manifest.get("crop_types")
            else "Key finding: IoU",
            _key_finding(results, manifest, sources),
        ),
        (
            "fractions",
            "Few labels: IoU by share of labelled parcels"
            if len(_as_list(manifest.get("fractions"))) > 1
            else "IoU with parcel-bootstrap intervals",
            _fractions(ctx, manifest, results, sources),
        ),
        ("searches", "Chosen on held-out parcels", _searches(run_dir)),
        ("comparisons", "Paired comparisons pooled over scenarios", _comparisons(run_dir)),
        ("metrics", "Recall, precision and F1-score", _metric_tabs(results, sources)),
        ("scenarios", "Scenarios", scenario_html),
        (
            "crop-types",
            "Crop types",
            crop_types_html(ctx, manifest.get("crop_types"))
            + _class_intervals_note(ctx, manifest.get("crop_types"))
            + _class_maps(ctx, manifest.get("crop_types")),
        ),
        (
            "early-season",
            "Early-season prediction",
            _early_season(ctx, manifest.get("early_season"))
            + _timesteps(ctx, manifest, every, sources)
            + _class_early_season(ctx, manifest.get("crop_types")),
        ),
        ("training", "Training curves", _training_curves(ctx, manifest.get("training_curves"))),
        (
            "simulator",
            "Simulated backscatter per class",
            ctx.figure(
                manifest.get("class_curves_figure"),
                "Backscatter (dB) per time step of each simulated land-cover class",
            ),
        ),
        (
            "area",
            "Area with 95 % confidence intervals",
            _area_estimates(manifest.get("area_estimates")),
        ),
        ("timings", "Timings", _timings_table(manifest.get("timings"))),
        ("notes", "Notes", _notes(manifest.get("notes"))),
    ]
    body = "\n".join(_section(sid, title, content) for sid, title, content in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>sarcrop report: {_e(name)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>Experiment {_e(name)}</h1>"
        f'<p class="summary">{_e(_summary_line(manifest))}</p>'
        f'<p class="cite">Compared with {_e(CITATION)} '
        f'(<a href="{_e(CITATION_URL)}">{_e(CITATION_URL)}</a>).</p>'
        f"{_nav(sections)}</header>\n"
        f"{body}\n{_footer(ctx, manifest)}\n</main>\n</body>\n</html>\n"
    )


def render_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of an experiment run directory; return its path.

    ``out`` defaults to ``run_dir/report.html``. Raises :class:`ReportError` when ``run_dir``
    has no readable ``experiment.json`` or an unreadable ``results.csv``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError("run directory not found", run_dir)
    out = run_dir / REPORT if out is None else Path(out)
    return write_text_atomic(out, build_report_html(run_dir, out))
