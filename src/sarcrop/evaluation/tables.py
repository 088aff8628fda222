"""Result tables: paper-shaped Markdown (Tables 1-4), method × metric summaries, console text.

All functions read the same *long* results format, one row per number::

    scenario, finetune_region, test_region, crop, bands, method, metric, timestep, seed, value

``bands`` is ``"VH"`` or ``"VH|VV"``; ``timestep`` is t of an early-season prediction (T for the
full season); ``seed`` distinguishes repeated runs, which are shown as mean ± sample std.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from sarcrop.evaluation.metrics import METRICS, EvaluationInputError
from sarcrop.evaluation.paper import PAPER_TABLE_NUMBER, find_scenario, paper_value

RESULT_COLUMNS = (
    "scenario",
    "finetune_region",
    "test_region",
    "crop",
    "bands",
    "method",
    "metric",
    "timestep",
    "seed",
    "value",
)
METHOD_ORDER = ("RF", "RI", "FT", "FTE", "FTD")
"""Canonical row order; other methods follow alphabetically."""

_DEFAULT_DIGITS = {"iou": 2}  # the paper's Table 1 has two decimals, Tables 2-4 three
_MISSING = "–"
_METRIC_NAMES = {"iou": "IoU", "precision": "Precision", "recall": "Recall", "f1": "F1-score"}


def metric_records(metrics: Mapping[str, Any], **fields: Any) -> list[dict[str, Any]]:
    """Long-format rows for the metrics in ``metrics`` (e.g. ``BinaryConfusion.as_dict()``).

    ``fields`` gives the other columns (scenario, method, seed, timestep, ...).
    """
    return [
        {**fields, "metric": name, "value": float(metrics[name])}
        for name in METRICS
        if name in metrics
    ]


def _check_results(results: pd.DataFrame, required: Iterable[str]) -> None:
    if not isinstance(results, pd.DataFrame):
        raise EvaluationInputError(
            f"results must be a pandas DataFrame, got {type(results).__name__}"
        )
    missing = [column for column in required if column not in results.columns]
    if missing:
        raise EvaluationInputError(
            f"results lack column(s) {', '.join(missing)}; expected {', '.join(RESULT_COLUMNS)}"
        )
    if results.empty:
        raise EvaluationInputError("results are empty")


def _select_metric(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    names = results["metric"].astype(str).str.lower()
    selected = results[names == metric.lower()]
    if selected.empty:
        available = ", ".join(sorted(names.unique()))
        raise EvaluationInputError(f"no results for metric {metric!r}; available: {available}")
    return selected


def _full_season(results: pd.DataFrame, timestep: int | None, by: str | None) -> pd.DataFrame:
    """Rows at ``timestep``, or at the last timestep of each ``by`` group (the full season)."""
    if "timestep" not in results.columns:
        return results
    steps = pd.to_numeric(results["timestep"], errors="coerce")
    if timestep is not None:
        return results[steps == timestep]
    if by is None:
        return results[steps == steps.max()] if steps.notna().any() else results
    last = steps.groupby(results[by]).transform("max")
    return results[(steps == last) | last.isna()]


def method_order(methods: Iterable[str]) -> list[str]:
    """Methods in the canonical order RF, RI, FT, FTE, FTD, then the rest alphabetically."""
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    unique = list(dict.fromkeys(str(method) for method in methods))
    return sorted(unique, key=lambda m: (rank.get(m.upper(), len(rank)), m.upper()))


def format_cell(values: Sequence[float], digits: int) -> str:
    """``"0.87"`` for one value, ``"0.87 ± 0.02"`` (sample std) for several, ``"–"`` for none."""
    finite = [float(v) for v in values if v is not None and not pd.isna(v)]
    if not finite:
        return _MISSING
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _display(name: Any) -> str:
    text = str(name)
    if text.lower() == "netherlands":
        return "The Netherlands"  # as the paper names it
    return text.title() if text.islower() else text


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_md_escape(cell) for cell in cells) + " |"


def paper_table(
    results: pd.DataFrame,
    metric: str,
    reference: bool = False,
    *,
    timestep: int | None = None,
    digits: int | None = None,
) -> str:
    """Markdown table shaped like the paper's Tables 1-4 for one ``metric``.

    Three header rows (Fine-tuning / Test / Feature) over one column per scenario, in the
    paper's order where scenarios match it; one row per method. With ``reference=True`` each
    cell that the paper also reports shows it beside ours: ``0.87 (paper 0.90)``.
    ``timestep=None`` uses the full season (each scenario's last timestep).
    """
    required = (
        "scenario",
        "finetune_region",
        "test_region",
        "crop",
        "bands",
        "method",
        "metric",
        "value",
    )
    _check_results(results, required)
    data = _full_season(_select_metric(results, metric), timestep, "scenario")
    if data.empty:
        raise EvaluationInputError(f"no {metric!r} results at timestep {timestep}")
    digits = _DEFAULT_DIGITS.get(metric.lower(), 3) if digits is None else digits

    columns = data.drop_duplicates("scenario")[
        ["scenario", "finetune_region", "test_region", "crop", "bands"]
    ]
    papers = {
        row.scenario: find_scenario(row.finetune_region, row.test_region, row.crop, row.bands)
        for row in columns.itertuples()
    }
    order = [
        found.number if (found := papers[s]) is not None else 100 + i
        for i, s in enumerate(columns.scenario)
    ]
    columns = columns.assign(_order=order).sort_values("_order", kind="stable")

    header = ["Fine-tuning", *(_display(v) for v in columns.finetune_region)]
    test = ["**Test**", *(_display(v) for v in columns.test_region)]
    feature = ["**Feature**", *(str(v) for v in columns.bands)]
    if columns.crop.nunique() > 1:
        feature = [*feature[:1], *(f"{b} ({c})" for b, c in zip(columns.bands, columns.crop))]
    lines = [_md_row(header), _md_row(["---"] * len(header)), _md_row(test), _md_row(feature)]

    groups = data.groupby(["method", "scenario"])["value"].apply(list)
    for method in method_order(data["method"]):
        cells = [f"**{method}**"]
        for scenario in columns.scenario:
            cell = format_cell(groups.get((method, scenario), []), digits)
            found = papers[scenario]
            published = None if found is None else paper_value(found, method, metric)
            if reference and published is not None:
                cell = f"{cell} (paper {published:.{digits}f})"
            cells.append(cell)
        lines.append(_md_row(cells))

    number = PAPER_TABLE_NUMBER.get(metric.lower())
    caption = f"{_METRIC_NAMES.get(metric.lower(), metric)} of the positive class"
    if reference and number:
        caption += f"; paper values from Table {number}"
    return f"*{caption}*\n\n" + "\n".join(lines) + "\n"


def summary_table(
    results: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    timestep: int | None = None,
    digits: int = 3,
) -> pd.DataFrame:
    """Method × metric table of display strings (mean ± std over seeds), full season.

    Rows are methods in canonical order; with several scenarios, rows are (scenario, method).
    """
    _check_results(results, ("method", "metric", "value"))
    data = _full_season(results, timestep, "scenario" if "scenario" in results else None)
    names = data["metric"].astype(str).str.lower()
    if metrics is None:
        present = set(names)
        metrics = [m for m in (*METRICS, "accuracy") if m in present] or sorted(present)
    keys = ["method"]
    if "scenario" in data.columns and data["scenario"].nunique() > 1:
        keys = ["scenario", "method"]
    order = {method: i for i, method in enumerate(method_order(data["method"]))}
    index = sorted(
        data[keys].drop_duplicates().itertuples(index=False, name=None),
        key=lambda key: (*key[:-1], order[str(key[-1])]),
    )
    table = pd.DataFrame(
        index=pd.MultiIndex.from_tuples(index, names=keys)
        if len(keys) > 1
        else pd.Index([key[0] for key in index], name="method"),
        columns=list(metrics),
        dtype=object,
    )
    grouped = data.assign(_metric=names).groupby([*keys, "_metric"])["value"].apply(list)
    for key in index:
        for metric in metrics:
            values = grouped.get((*key, metric.lower()), [])
            table.loc[key if len(keys) > 1 else key[0], metric] = format_cell(values, digits)
    return table


def format_console_table(
    table: pd.DataFrame | Sequence[Sequence[Any]], headers: Sequence[str] | None = None
) -> str:
    """Plain-text table with aligned columns: first column left-aligned, the rest right-aligned."""
    if isinstance(table, pd.DataFrame):
        frame = (
            table.reset_index() if any(name is not None for name in table.index.names) else table
        )
        headers = [str(c) for c in frame.columns] if headers is None else list(headers)
        rows = [[_text(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    else:
        rows = [[_text(v) for v in row] for row in table]
        headers = [] if headers is None else list(headers)
    width = max([len(headers), *(len(row) for row in rows)], default=0)
    grid = [list(headers) + [""] * (width - len(headers))] if headers else []
    grid += [row + [""] * (width - len(row)) for row in rows]
    sizes = [max(len(row[i]) for row in grid) for i in range(width)]

    def line(row: Sequence[str]) -> str:
        cells = [c.ljust(s) if i == 0 else c.rjust(s) for i, (c, s) in enumerate(zip(row, sizes))]
        return "  ".join(cells).rstrip()

    out = [line(row) for row in grid]
    if headers:
        out.insert(1, "  ".join("-" * s for s in sizes))
    return "\n".join(out) + "\n"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return _MISSING if math.isnan(value) else f"{value:.3f}"
    return str(value)
