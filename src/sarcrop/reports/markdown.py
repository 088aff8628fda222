"""``tables.md``: the paper-shaped tables of a run as Markdown, built from the table model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from sarcrop.evaluation.metrics import EvaluationInputError
from sarcrop.evaluation.paper import CITATION, CITATION_URL
from sarcrop.evaluation.tables import (
    Table,
    fraction_table,
    has_paper_values,
    method_label,
    paired_table,
    paired_timestep_table,
    paper_table,
    scenario_label,
    timestep_table,
)

PAIRED_BASELINES = ("ri", "rf")
"""Baselines of the paired tables (columns ``minus_ri`` ... of ``intervals.csv``)."""
TITLES = {
    "iou": "IoU (paper Table 1)",
    "recall": "Recall (paper Table 2)",
    "precision": "Precision (paper Table 3)",
    "f1": "F1 (paper Table 4)",
}


def main_run(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of the main run with every label: early-season reruns (other batch orders)
    have their figure, runs with fewer labels the learning curves."""
    if "run" in results.columns:
        results = results[results["run"].astype(str) == "main"]
    if "label_fraction" in results.columns and len(results):
        fractions = pd.to_numeric(results["label_fraction"], errors="coerce").fillna(1.0)
        results = results[fractions == fractions.max()]
    return results


def scenario_names(results: pd.DataFrame) -> dict[str, str]:
    """Scenario id → ``"flanders2018 → flanders2019 VH|VV"`` (as the tables name them)."""
    rows = results.drop_duplicates("scenario")
    return {
        str(r.scenario): scenario_label(r.scenario, r.finetune_region, r.test_region, r.bands)
        for r in rows.itertuples()
    }


def fractions_markdown(
    results: pd.DataFrame,
    intervals: pd.DataFrame | None,
    sources: Mapping[str, str | None] | None = None,
) -> str:
    """The mean ± std [bootstrap CI] table per label fraction and, where ``intervals`` has
    them, the paired differences to RI and RF; "" without intervals."""
    if intervals is None or intervals.empty:
        return ""
    names = scenario_names(results)
    table = fraction_table(intervals, sources=sources, names=names)
    title = "IoU by share of labelled parcels, with parcel-bootstrap intervals"
    parts = [f"## {title}\n\n{table.to_markdown()}"]
    for baseline in paired_baselines(intervals):
        paired = paired_table(intervals, baseline, sources=sources, names=names)
        parts.append(f"## IoU minus {baseline.upper()}, paired\n\n{paired.to_markdown()}")
    return "\n".join(parts)


def run_timestep_tables(
    results: pd.DataFrame,
    intervals: pd.DataFrame | None = None,
    sources: Mapping[str, str | None] | None = None,
) -> list[Table]:
    """Each method's IoU at every number of observed composites t (``timestep_table:``), its
    scenarios named as the other tables name them, and, where ``intervals`` (the run's
    ``timestep_intervals.csv``) has them, its parcel intervals and the differences to RI and
    RF at the same t. Empty where the run has no IoU of one crop (a crop-type run has its own
    early-season figure)."""
    names = scenario_names(results)
    try:
        tables = [timestep_table(results, intervals=intervals, sources=sources, names=names)]
    except EvaluationInputError:
        return []
    if intervals is not None and not intervals.empty:
        tables += [
            paired_timestep_table(intervals, baseline, sources=sources, names=names)
            for baseline in paired_baselines(intervals)
        ]
    return tables


def timesteps_markdown(
    results: pd.DataFrame,
    intervals: pd.DataFrame | None = None,
    sources: Mapping[str, str | None] | None = None,
) -> str:
    """:func:`run_timestep_tables` as ``tables.md`` sections; "" where there are none."""
    tables = run_timestep_tables(results, intervals, sources)
    return "\n".join(f"## {table.title}\n\n{table.to_markdown()}" for table in tables)


def paired_baselines(intervals: pd.DataFrame) -> list[str]:
    """The baselines that ``intervals`` holds paired differences to (runs without RI have
    none to RI)."""
    return [
        b
        for b in PAIRED_BASELINES
        if f"minus_{b}" in intervals and intervals[f"minus_{b}"].notna().any()
    ]


def tables_markdown(
    name: str,
    results: pd.DataFrame,
    sources: Mapping[str, str | None] | None = None,
    *,
    intervals: pd.DataFrame | None = None,
) -> str:
    """Tables 1-4 of the paper with ours beside the published values, as one Markdown text.

    ``sources`` maps a scenario id to the data ours was measured on (simulated or real);
    ``intervals`` (the run's ``intervals.csv``) adds the table per label fraction.
    """
    main = main_run(results)
    if main.empty:  # crop types alone: their own section says what they are
        return f"# {name}\n"
    parts = [f"# {name}: positive-class metrics on the test split\n"]
    paper = has_paper_values(main)
    if paper:
        parts.append(
            f"Paper values (in brackets) from {CITATION} (<{CITATION_URL}>), measured on the "
            "paper's real Sentinel-1 data; ours as the legend under each table says.\n"
        )
    preamble = len(parts)
    for metric, title in TITLES.items():
        try:
            table = paper_table(main, metric, reference=True, sources=sources)
        except EvaluationInputError:
            continue
        heading = title if paper else title.partition(" (paper")[0]
        parts.append(f"## {heading}\n\n{table.to_markdown()}")
    fractions = fractions_markdown(results, intervals, sources)
    if fractions:
        parts.insert(preamble, fractions)
    return "\n".join(parts)


SEARCHES = "searches.csv"
"""What each network run chose on held-out parcels (written by the experiment runner)."""
SEARCH_NOTE = (
    "Counts over seeds (and folds of a held-out scenario): `value ×runs`. A run with fewer than "
    "2 parcels of each class cannot search (not searched) and keeps the configured `epochs` and "
    "`interpolation`; `searches.csv` holds every run's choice and its held-out IoU (the mIoU of "
    "a crop-type run)."
)


def search_counts(searches: pd.DataFrame) -> pd.DataFrame:
    """How often each budget and weight was chosen (``searches.csv``), per scenario, label
    share and method, in the run's order of scenarios and methods, fewer labels first."""
    order = searches.assign(
        scenario_order=pd.factorize(searches["scenario"])[0],
        method_order=pd.factorize(searches["method"])[0],
    ).sort_values(["scenario_order", "label_fraction", "method_order"], kind="stable")
    rows = []
    keys = ["scenario", "label_fraction", "method"]
    for (scenario, fraction, method), group in order.groupby(keys, sort=False):
        searched = group[group["folds"] > 0]
        rows.append(
            {
                "Scenario": scenario,
                "Method": method_label(method),
                "Labels": f"{float(fraction) * 100:g} %",
                "Runs": len(group),
                "Epochs chosen": _counts(searched["epochs"]),
                "Interpolation chosen": _counts(searched["interpolation"]),
                "Not searched": len(group) - len(searched),
            }
        )
    return pd.DataFrame(rows)


def search_markdown(searches: pd.DataFrame) -> str:
    """The ``tables.md`` section of :func:`search_counts` (empty without searches)."""
    if searches.empty:
        return ""
    counts = search_counts(searches)
    rows = [[str(v) for v in row] for row in counts.itertuples(False)]
    table = _pipe_table(list(counts.columns), rows)
    return "\n".join(["## Chosen on held-out parcels", "", *table, "", SEARCH_NOTE, ""])


def _pipe_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown pipe table of text cells (written as they are)."""
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _counts(values: pd.Series) -> str:
    counts = sorted(Counter(values.tolist()).items())
    return ", ".join(f"{value:g} ×{count}" for value, count in counts) or "–"


def metric_name(metric: str) -> str:
    """How a metric is written in tables: IoU, F1, mIoU; others as they are named."""
    return {"iou": "IoU", "f1": "F1", "miou": "mIoU"}.get(metric, metric)


COMPARISON_NOTE = (
    "Mean metric (of the crop, or mIoU of crop-type maps) of method A at its share of the "
    "labels minus B's, both scored on the same draws "
    "of the scenarios' test fields (1000 draws; a field that several scenarios test on is drawn "
    "once for all of them), each scenario weighing the same; in brackets "
    "the 95 % interval, **bold** where it excludes 0, and the share of draws in which A scores "
    "above B. Scenarios: how many, and the patterns of their ids that chose them (B: where B "
    "runs in others scored on the same test splits, e.g. from another pre-training); "
    "`comparisons.csv` names each pair, and `sarcrop compare` computes others from the run "
    "folder."
)


def comparison_rows(comparisons: pd.DataFrame) -> list[dict[str, str]]:
    """The config's comparisons (``comparisons.csv``) as display cells; ``resolved`` is "1"
    where the interval excludes 0."""
    rows = []
    for row in comparisons.itertuples(index=False):
        low, high = float(row.low), float(row.high)
        rows.append(
            {
                "A − B": f"{_arm(str(row.a))} − {_arm(str(row.b))}",
                "Metric": metric_name(str(getattr(row, "metric", "iou"))),  # older runs: IoU
                "t": str(row.timestep),
                "Scenarios": _scenarios(row),
                "Parcels": str(row.n_parcels),
                "A": f"{row.mean_a:.2f}",
                "B": f"{row.mean_b:.2f}",
                "A − B [95 %]": f"{row.difference:+.2f} [{low:.2f}, {high:.2f}]",
                "A > B": f"{100 * float(row.p_above):.0f} %",
                "resolved": "1" if low > 0 or high < 0 else "",
            }
        )
    return rows


def comparisons_markdown(comparisons: pd.DataFrame) -> str:
    """The ``tables.md`` section of a config's comparisons (empty without any)."""
    rows = comparison_rows(comparisons)
    if not rows:
        return ""
    columns = [c for c in rows[0] if c != "resolved"]
    cells = []
    for row in rows:
        row = {**row, "Scenarios": row["Scenarios"].replace("*", "\\*")}  # not emphasis
        if row["resolved"]:
            row = {**row, "A − B [95 %]": f"**{row['A − B [95 %]']}**"}
        cells.append([row[c] for c in columns])
    table = _pipe_table(columns, cells)
    title = "## Paired comparisons pooled over scenarios"
    return "\n".join([title, "", *table, "", COMPARISON_NOTE, ""])


def _scenarios(row: Any) -> str:
    """How many scenarios a comparison pools, and the patterns that chose them (B's where
    they are not A's)."""
    ours, theirs = (_text(row.a_scenarios) or "all", _text(row.b_scenarios))
    return f"{row.scenarios}: {ours}" + (f" (B: {theirs})" if theirs else "")


def _text(value: Any) -> str:
    """A CSV cell as text ('' for an empty one, which pandas reads as NaN)."""
    return "" if pd.isna(value) else str(value)


def _arm(text: str) -> str:
    """``bias@0.25`` as ``bias 25 %``; ``zero-shot``, which learns from no label, alone."""
    method, _, fraction = text.rpartition("@")
    if method == "zero-shot":
        return method_label(method)
    return f"{method_label(method)} {100 * float(fraction):g} %"
