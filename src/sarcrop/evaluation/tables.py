"""Result tables: one model (:class:`Table`) rendered to Markdown, HTML and console text.

The builders read the *long* results format, one row per number::

    scenario, finetune_region, test_region, crop, bands, method, metric, timestep, seed, value

``bands`` is ``"VH"`` or ``"VH|VV"``; ``timestep`` is t of an early-season prediction (T for the
full season); ``seed`` distinguishes repeated runs, which are shown as mean ± sample std.

Our numbers and the paper's sit side by side but were measured on different data: each
:class:`Cell` carries the provenance of ours (``"simulated"`` or ``"real"``), and every table
that shows the paper's values says so in a legend line.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from sarcrop.evaluation.metrics import METRICS, EvaluationInputError
from sarcrop.evaluation.paper import (
    CITATION_SHORT,
    PAPER_TABLE_NUMBER,
    find_scenario,
    paper_value,
)

# What a scenario is: the columns of a paper table (fine-tuning and test region, crop, bands).
SCENARIO_COLUMNS = ("scenario", "finetune_region", "test_region", "crop", "bands")


def pretrain_of(scenario_id: object) -> str | None:
    """The pre-training a scenario names (its id has ``-from-<name>``), else None."""
    _, named, pretrain = _without_folds(scenario_id).rpartition("-from-")
    return pretrain if named else None


def folds_of(scenario_id: object) -> int | None:
    """The folds of fields a scenario holds out in turn (its id ends ``-folds<k>``), else None."""
    found = re.search(r"-folds(\d+)$", str(scenario_id))
    return int(found.group(1)) if found else None


def _without_folds(scenario_id: object) -> str:
    return re.sub(r"-folds\d+$", "", str(scenario_id))


def scenario_label(scenario_id: object, finetune: object, test: object, bands: object) -> str:
    """``"flanders2018 → flanders2019 VH|VV"``, with ``", from europe"`` where the scenario
    names its pre-training, so that the same regions transferred from two pre-trainings stay
    apart, and ``", fields held out (3 folds)"`` where its scores are of fields no run learnt
    from."""
    pretrain, folds = pretrain_of(scenario_id), folds_of(scenario_id)
    label = f"{finetune} → {test} {bands}"
    label = f"{label}, from {pretrain}" if pretrain else label
    return f"{label}, fields held out ({folds} folds)" if folds else label


RESULT_COLUMNS = (*SCENARIO_COLUMNS, "method", "metric", "timestep", "seed", "value")
METHOD_ORDER = ("RF", "RI", "FT", "FTE", "FTD")
"""Canonical row order; other methods follow alphabetically."""

_METHOD_LABELS = {
    "rf-features": "RF on features",
    "probe": "probe",
    "bias": "bias",
    "zero-shot": "zero-shot",
}


def method_label(method: object) -> str:
    """How tables, figures and the report name a method id (``fte``): the paper's RF, RI, FT,
    FTE and FTD in capitals, ``FTD-last-k``, the rest as the docs write them, and a variant
    as its config names it (``ftd+dd`` → ``FTD+dd``)."""
    name, plus, variant = str(method).partition("+")
    key = name.lower()
    if key.startswith("ftd-last-"):
        label = "FTD-last-" + key.removeprefix("ftd-last-")
    else:
        label = _METHOD_LABELS.get(key, name.upper())
    return f"{label}+{variant}" if plus else label


SIMULATED = "simulated"
REAL = "real"
"""Provenance of our numbers: measured on simulated or on real data."""

_DEFAULT_DIGITS = {"iou": 2}  # the paper's Table 1 has two decimals, Tables 2-4 three
_MISSING = "–"
_METRIC_NAMES = {"iou": "IoU", "precision": "Precision", "recall": "Recall", "f1": "F1-score"}


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Cell:
    """Our mean over seeds (and its sample std) beside the paper's value for the same cell.

    ``source`` is the data ours was measured on (:data:`SIMULATED`, :data:`REAL`, or None when
    unknown); the paper's ``reference`` values were all measured on its real Sentinel-1 data.
    ``interval`` is a confidence interval of our mean (e.g. a parcel bootstrap).
    """

    value: float | None
    spread: float | None = None
    reference: float | None = None
    source: str | None = None
    digits: int = 3
    interval: tuple[float, float] | None = None
    undefined: tuple[int, int] | None = None  # (undefined, all) seeds, where some were

    @classmethod
    def of(
        cls,
        values: Iterable[float | None],
        *,
        digits: int = 3,
        reference: float | None = None,
        source: str | None = None,
    ) -> Cell:
        """Mean and sample std (None for a single value) of the finite ``values``. Seeds whose
        metric is undefined (a precision without a positive prediction) are left out, and the
        cell says how many of them went in."""
        values = list(values)
        finite = [float(v) for v in values if v is not None and not pd.isna(v)]
        if not finite:
            return cls(None, None, reference, source, digits)
        mean = sum(finite) / len(finite)
        spread = None
        if len(finite) > 1:
            spread = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        left_out = len(values) - len(finite)
        undefined = (left_out, len(values)) if left_out else None
        return cls(mean, spread, reference, source, digits, undefined=undefined)

    @property
    def ours(self) -> str:
        """``"0.87"``, ``"0.87 ± 0.02"``, ``"0.87 ± 0.02 [0.80, 0.93]"`` or ``"–"``, with
        ``" (2 of 3 seeds)"`` where some seeds' metric was undefined; an interval with empty
        (NaN) bounds, from too few parcels, is left out."""
        if self.value is None or math.isnan(self.value):
            return _MISSING
        d = self.digits
        text = f"{self.value:.{d}f}"
        text = text if self.spread is None else f"{text} ± {self.spread:.{d}f}"
        if self.interval is not None and not any(math.isnan(b) for b in self.interval):
            low, high = self.interval
            text = f"{text} [{low:.{d}f}, {high:.{d}f}]"
        if self.undefined is not None:
            left_out, seeds = self.undefined
            text = f"{text} ({seeds - left_out} of {seeds} seeds)"
        return text

    @property
    def paper(self) -> str | None:
        """``"paper 0.90"``, or None where the paper reports no value for this cell."""
        return None if self.reference is None else f"paper {self.reference:.{self.digits}f}"

    @property
    def text(self) -> str:
        """Ours with the paper's value in brackets: ``"0.87 ± 0.02 (paper 0.90)"``."""
        return self.ours if self.paper is None else f"{self.ours} ({self.paper})"

    @property
    def description(self) -> str:
        """Which number is which, for a tooltip: ``"ours: simulated data; paper: real data"``."""
        ours = "ours" if self.source is None else f"ours: {self.source} data"
        return ours if self.reference is None else f"{ours}; paper: its real data"


@dataclass(frozen=True)
class Row:
    """One table row: its label cells (e.g. the method) and its data cells."""

    labels: tuple[str, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Table:
    """A titled table: header rows (label cells first), data rows and notes below it.

    Equal adjacent cells of every header row but the last form groups, like the paper's
    "Fine-tuning" row over its "Test" row.
    """

    title: str
    header: tuple[tuple[str, ...], ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()

    @property
    def stub(self) -> int:
        """Number of label columns."""
        return len(self.rows[0].labels) if self.rows else 1

    @property
    def width(self) -> int:
        return max(
            [len(row) for row in self.header] + [self.stub + len(r.cells) for r in self.rows]
        )

    def _grid(self) -> list[list[str]]:
        """Header and body as text, padded to the table's width."""
        rows = [list(row) for row in self.header]
        rows += [[*row.labels, *(cell.text for cell in row.cells)] for row in self.rows]
        return [row + [""] * (self.width - len(row)) for row in rows]

    def to_markdown(self) -> str:
        """A pipe table; header rows after the first become bold-labelled body rows."""
        grid = self._grid()

        def line(cells: Sequence[str], bold: bool) -> str:
            out = [
                f"**{_md(c)}**" if bold and i < self.stub and c else _md(c)
                for i, c in enumerate(cells)
            ]
            return "| " + " | ".join(out) + " |"

        lines = [line(grid[0], False), line(["---"] * self.width, False)]
        lines += [line(row, True) for row in grid[1:]]
        parts = [f"*{_md(self.title)}*", "\n".join(lines), *(_md(n) for n in self.notes)]
        return "\n\n".join(parts) + "\n"

    def to_console(self) -> str:
        """Aligned plain text: label columns left-aligned, data right-aligned."""
        grid = self._grid()
        sizes = [max(len(row[i]) for row in grid) for i in range(self.width)]

        def line(row: Sequence[str]) -> str:
            cells = [
                c.ljust(s) if i < self.stub else c.rjust(s)
                for i, (c, s) in enumerate(zip(row, sizes))
            ]
            return "  ".join(cells).rstrip()

        head = len(self.header)
        out = [self.title, ""] + [line(row) for row in grid[:head]]
        out.append("  ".join("-" * s for s in sizes))
        out += [line(row) for row in grid[head:]]
        if self.notes:
            out += ["", *self.notes]
        return "\n".join(out) + "\n"

    def to_html(
        self,
        *,
        table_id: str | None = None,
        css_class: str = "results",
        highlight_max: bool = False,
    ) -> str:
        """A ``<table>`` (grouped header cells merged with ``colspan``) and its notes.

        ``highlight_max`` marks the highest value of each data column (the best method).
        Every text is escaped; our value and the paper's sit in separate, labelled spans.
        """
        id_attr = f' id="{_e(table_id)}"' if table_id else ""
        out = [f'<table class="{_e(css_class)}"{id_attr}>', f"<caption>{_e(self.title)}</caption>"]
        out += ["<thead>", *self._html_header(), "</thead>", "<tbody>"]
        best = self._best() if highlight_max else {}
        for row in self.rows:
            cells = [f'<th scope="row">{_e(label)}</th>' for label in row.labels]
            for col, cell in enumerate(row.cells):
                is_best = cell.value is not None and best.get(col) == round(cell.value, cell.digits)
                css = ' class="best"' if is_best else ""
                cells.append(f'<td{css} title="{_e(cell.description)}">{_cell_html(cell)}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        out += [f'<p class="table-note">{_e(note)}</p>' for note in self.notes]
        return "\n".join(out)

    def _html_header(self) -> list[str]:
        width = self.width
        parents = [(self.stub, width)]
        rows = []
        for index, header in enumerate(self.header):
            row = list(header) + [""] * (width - len(header))
            scope = "row" if len(self.header) > 1 else "col"
            cells = [f'<th scope="{scope}" class="label">{_e(c)}</th>' for c in row[: self.stub]]
            last = index == len(self.header) - 1
            runs = [(i, i + 1) for i in range(self.stub, width)] if last else _runs(row, parents)
            for start, stop in runs:
                span = f' colspan="{stop - start}"' if stop - start > 1 else ""
                cells.append(f'<th scope="col"{span}>{_e(row[start])}</th>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
            parents = runs
        return rows

    def _best(self) -> dict[int, float]:
        """Column → highest value as displayed, for columns with at least two values."""
        best = {}
        for col in range(self.width - self.stub):
            values = [
                round(cell.value, cell.digits)
                for row in self.rows
                if col < len(row.cells) and (cell := row.cells[col]).value is not None
            ]
            if len(values) > 1:
                best[col] = max(values)
        return best


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _cell_html(cell: Cell) -> str:
    if cell.paper is None:
        return _e(cell.ours)
    return (
        f'<span class="value">{_e(cell.ours)}</span> '
        f'<span class="paper" title="published value, measured on the paper\'s real data">'
        f"({_e(cell.paper)})</span>"
    )


def _runs(row: Sequence[str], parents: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of equal adjacent cells, never crossing the runs of the header row above."""
    runs: list[tuple[int, int]] = []
    for start, stop in parents:
        i = start
        while i < stop:
            j = i + 1
            while j < stop and row[j] == row[i]:
                j += 1
            runs.append((i, j))
            i = j
    return runs


# --------------------------------------------------------------------------- from results


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


def _is_full_season(results: pd.DataFrame, timestep: int | None) -> bool:
    """Whether ``timestep`` is every scenario's last one: the paper's tables are of the full
    season, so an earlier timestep must not sit beside its published values."""
    if timestep is None or "timestep" not in results.columns:
        return True
    steps = pd.to_numeric(results["timestep"], errors="coerce")
    return bool((steps.groupby(results["scenario"]).max() == timestep).all())


def method_order(methods: Iterable[str]) -> list[str]:
    """Methods in the canonical order RF, RI, FT, FTE, FTD, then the rest alphabetically; a
    variant (``ftd+dd``) right after its method."""
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}

    def key(method: str) -> tuple[int, str, str]:
        name, _, variant = method.upper().partition("+")
        return rank.get(name, len(rank)), name, variant

    return sorted(dict.fromkeys(str(method) for method in methods), key=key)


def format_cell(values: Sequence[float], digits: int) -> str:
    """``"0.87"`` for one value, ``"0.87 ± 0.02"`` (sample std) for several, ``"–"`` for none."""
    return Cell.of(values, digits=digits).ours


def _display(name: Any) -> str:
    text = str(name)
    if text.lower() == "netherlands":
        return "The Netherlands"  # as the paper names it
    return text.title() if text.islower() else text


def _seeds(data: pd.DataFrame) -> int:
    return int(data["seed"].nunique()) if "seed" in data.columns else 1


def provenance_note(
    sources: Mapping[str, str | None], *, seeds: int, paper_table_number: int | None
) -> str:
    """The legend line that says which number is which and what data each was measured on.

    ``sources`` maps a column's name to the data ours was measured on in that column.
    """
    groups: dict[str | None, list[str]] = {}
    for column, source in sources.items():
        groups.setdefault(source, []).append(column)
    named = [s for s in groups if s is not None]
    if not named:
        data = "this run's data"
    elif len(groups) == 1:
        data = f"{named[0]} data"
    else:
        data = " and ".join(
            f"{s or 'unlabelled'} data ({', '.join(columns)})" for s, columns in groups.items()
        )
    ours = f"mean ± sample std over {seeds} seeds" if seeds > 1 else "one seed"
    note = f"Cells: ours ({ours}), measured on {data}"
    if paper_table_number is None:
        return note + "."
    return (
        f"{note}; in brackets (paper …): the value published in Table {paper_table_number} "
        f"of {CITATION_SHORT}, measured on the paper's real Sentinel-1 data."
    )


def has_paper_values(results: pd.DataFrame) -> bool:
    """Whether the paper reports one of the scenarios of ``results`` (by regions, crop and
    bands), so that a table of them may carry its published values."""
    if not set(SCENARIO_COLUMNS) <= set(results.columns):
        return False
    columns = results.drop_duplicates("scenario")
    return any(
        find_scenario(row.finetune_region, row.test_region, row.crop, row.bands) is not None
        for row in columns.itertuples()
    )


def paper_table(
    results: pd.DataFrame,
    metric: str,
    reference: bool = False,
    *,
    sources: Mapping[str, str | None] | None = None,
    timestep: int | None = None,
    digits: int | None = None,
) -> Table:
    """The paper's Tables 1-4 layout for one ``metric``.

    Three header rows (Fine-tuning / Test / Feature) over one column per scenario, in the
    paper's order where scenarios match it; one row per method. With ``reference=True`` each
    cell that the paper also reports carries the published value, but only for the full
    season, as the paper's are. ``sources`` maps a scenario id to the data ours was measured
    on (``"simulated"`` or ``"real"``). ``timestep=None`` uses the full season (each
    scenario's last timestep).
    """
    _check_results(results, (*SCENARIO_COLUMNS, "method", "metric", "value"))
    selected = _select_metric(results, metric)
    data = _full_season(selected, timestep, "scenario")
    if data.empty:
        raise EvaluationInputError(f"no {metric!r} results at timestep {timestep}")
    digits = _DEFAULT_DIGITS.get(metric.lower(), 3) if digits is None else digits
    sources = sources or {}

    columns = data.drop_duplicates("scenario")[list(SCENARIO_COLUMNS)]
    papers = {
        row.scenario: find_scenario(row.finetune_region, row.test_region, row.crop, row.bands)
        for row in columns.itertuples()
    }
    order = [
        found.number if (found := papers[s]) is not None else 100 + i
        for i, s in enumerate(columns.scenario)
    ]
    columns = columns.assign(_order=order).sort_values("_order", kind="stable")
    reference = (  # a user's own regions, or an earlier timestep: none
        reference and _is_full_season(selected, timestep) and has_paper_values(results)
    )

    features = [str(v) for v in columns.bands]
    if columns.crop.nunique() > 1:
        features = [f"{b} ({c})" for b, c in zip(columns.bands, columns.crop)]
    pretrains = [pretrain_of(s) for s in columns.scenario]
    if len(set(pretrains)) > 1:  # the same regions from two pre-trainings stay apart
        features = [f"{f}, from {p}" if p else f for f, p in zip(features, pretrains)]
    tests = [
        f"{_display(v)} (fields held out, {k} folds)" if (k := folds_of(s)) else _display(v)
        for v, s in zip(columns.test_region, columns.scenario, strict=True)
    ]
    header = (
        ("Fine-tuning", *(_display(v) for v in columns.finetune_region)),
        ("Test", *tests),
        ("Feature", *features),
    )

    groups = data.groupby(["method", "scenario"])["value"].apply(list)
    rows = []
    for method in method_order(data["method"]):
        cells = []
        for scenario in columns.scenario:
            found = papers[scenario]
            published = (
                None if found is None or not reference else paper_value(found, method, metric)
            )
            cells.append(
                Cell.of(
                    groups.get((method, scenario), []),
                    digits=digits,
                    reference=published,
                    source=sources.get(str(scenario)),
                )
            )
        rows.append(Row((method_label(method),), tuple(cells)))

    number = PAPER_TABLE_NUMBER.get(metric.lower())
    season = "full season" if timestep is None else f"t = {timestep}"
    shares = set(pd.to_numeric(data.get("label_fraction", pd.Series(dtype=float))).dropna())
    if len(shares) == 1 and (share := float(shares.pop())) < 1:  # a run without every label
        season += f", {share * 100:g} % of the labelled parcels"
    title = f"{_METRIC_NAMES.get(metric.lower(), metric)} of the positive class ({season})"
    kinds = [k for k in (SIMULATED, REAL) if k in set(sources.get(s) for s in columns.scenario)]
    if reference:
        ours = f"ours on {' and '.join(kinds)} data" if kinds else "ours"
        title += f": {ours} (paper's value on its real data)"
    names = {
        str(c.scenario): scenario_label(
            c.scenario, _display(c.finetune_region), _display(c.test_region), c.bands
        )
        for c in columns.itertuples()
    }
    note = provenance_note(
        {names[s]: sources.get(s) for s in names},
        seeds=_seeds(data),
        paper_table_number=number if reference else None,
    )
    return Table(title, header, tuple(rows), (note,))


def summary_table(
    results: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    sources: Mapping[str, str | None] | None = None,
    timestep: int | None = None,
    digits: int = 3,
) -> Table:
    """Method × metric table (mean ± std over seeds), full season.

    Rows are methods in canonical order; with several scenarios, rows are (scenario, method).
    ``sources`` maps a scenario id to the data ours was measured on.
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
    sources = sources or {}
    scenarios = data["scenario"].astype(str).unique() if "scenario" in data.columns else []
    single = str(scenarios[0]) if len(scenarios) == 1 else None
    grouped = data.assign(_metric=names).groupby([*keys, "_metric"])["value"].apply(list)
    rows = []
    for key in index:
        source = sources.get(str(key[0]) if len(keys) > 1 else single or "")
        cells = tuple(
            Cell.of(grouped.get((*key, m.lower()), []), digits=digits, source=source)
            for m in metrics
        )
        rows.append(Row((*(str(k) for k in key[:-1]), method_label(key[-1])), cells))
    header = ((*(k.title() for k in keys), *(_METRIC_NAMES.get(m.lower(), m) for m in metrics)),)
    season = "full season" if timestep is None else f"t = {timestep}"
    column_sources = {str(s): sources.get(str(s)) for s in scenarios} or {"all": None}
    note = provenance_note(column_sources, seeds=_seeds(data), paper_table_number=None)
    return Table(f"Metrics of the positive class ({season})", header, tuple(rows), (note,))


def fraction_table(
    intervals: pd.DataFrame,
    *,
    sources: Mapping[str, str | None] | None = None,
    names: Mapping[str, str] | None = None,
    digits: int = 2,
) -> Table:
    """Scenario × method rows, one column per label fraction: mean ± std [bootstrap CI].

    ``intervals`` is an experiment's ``intervals.csv`` (scenario, method, label_fraction,
    metric, seeds, mean, std, low, high, n_parcels, level); ``sources`` maps a scenario id to
    the data it was measured on, ``names`` to its display name.
    """
    _check_results(
        intervals, ("scenario", "method", "label_fraction", "mean", "std", "low", "high")
    )
    sources, names = sources or {}, names or {}
    fractions = sorted(float(f) for f in intervals["label_fraction"].unique())
    scenarios = list(dict.fromkeys(intervals["scenario"].astype(str)))
    rows = []
    for scenario in scenarios:
        part = intervals[intervals["scenario"].astype(str) == scenario]
        for method in method_order(part["method"]):
            cells = []
            for fraction in fractions:
                found = part[(part["method"] == method) & (part["label_fraction"] == fraction)]
                if found.empty:
                    cells.append(Cell(None, digits=digits))
                    continue
                row = found.iloc[0]
                cells.append(
                    Cell(
                        float(row["mean"]),
                        None if pd.isna(row["std"]) else float(row["std"]),
                        source=sources.get(scenario),
                        digits=digits,
                        interval=None
                        if pd.isna(row["low"])
                        else (float(row["low"]), float(row["high"])),
                    )
                )
            rows.append(Row((names.get(scenario, scenario), method_label(method)), tuple(cells)))
    header = (("Scenario", "Method", *(f"{100 * f:g} % of parcels" for f in fractions)),)
    seeds = int(intervals["seeds"].max()) if "seeds" in intervals else 1
    level = float(intervals["level"].max()) if "level" in intervals else 0.95
    metric = str(intervals["metric"].iloc[0]) if "metric" in intervals else "iou"
    kinds = sorted({s for s in (sources.get(x) for x in scenarios) if s})
    on = f", ours on {' and '.join(kinds)} data" if kinds else ""
    title = f"{_METRIC_NAMES.get(metric, metric)} by share of labelled parcels (full season){on}"
    parcels = ", ".join(
        f"{names.get(s, s)}: {int(intervals[intervals['scenario'] == s]['n_parcels'].max())}"
        for s in scenarios
        if "n_parcels" in intervals
    )
    notes: tuple[str, ...] = (
        provenance_note(
            {names.get(s, s): sources.get(s) for s in scenarios},
            seeds=seeds,
            paper_table_number=None,
        ),
        f"In brackets: {100 * level:g} % interval of the mean over seeds from a bootstrap over "
        f"the test split's parcels (connected label components), every seed scored on the "
        f"same draws; test parcels: {parcels}.",
    )
    if intervals["low"].isna().any():
        notes += (_NO_BOUNDS,)
    return Table(title, header, tuple(rows), notes)


_NO_BOUNDS = "No interval where the crop lies in one test parcel: every draw holds it or not."


def timestep_table(
    results: pd.DataFrame,
    *,
    intervals: pd.DataFrame | None = None,
    sources: Mapping[str, str | None] | None = None,
    names: Mapping[str, str] | None = None,
    metric: str = "iou",
    digits: int = 2,
) -> Table:
    """Scenario × method × label-fraction rows, one column per number of observed composites
    ``t`` (the later ones zero-padded): mean ± std over seeds. The early-season map of each
    method, where the full-season tables show only ``t = T``.

    ``intervals`` (an experiment's ``timestep_intervals.csv``) adds each mean's parcel-bootstrap
    interval in brackets."""
    _check_results(results, ("scenario", "method", "metric", "timestep", "seed", "value"))
    data = _select_metric(results, metric)
    if "run" in data.columns:
        data = data[data["run"].astype(str) == "main"]
    if data.empty:
        raise EvaluationInputError(f"no {metric} rows to tabulate by time step")
    if "label_fraction" not in data.columns:
        data = data.assign(label_fraction=1.0)
    sources, names = sources or {}, names or {}
    steps = sorted(int(t) for t in data["timestep"].unique())
    values = data.groupby(["scenario", "method", "label_fraction", "timestep"])["value"].apply(list)
    bounds = _timestep_bounds(intervals, metric)
    fractions = sorted(float(f) for f in data["label_fraction"].unique())
    scenarios = list(dict.fromkeys(data["scenario"].astype(str)))
    rows = []
    for scenario in scenarios:
        part = data[data["scenario"].astype(str) == scenario]
        for method in method_order(part["method"]):
            for fraction in fractions:
                cells = tuple(
                    replace(
                        Cell.of(
                            values.get((scenario, method, fraction, t), []),
                            digits=digits,
                            source=sources.get(scenario),
                        ),
                        interval=bounds.get((scenario, method, fraction, t)),
                    )
                    for t in steps
                )
                if all(cell.value is None for cell in cells):
                    continue
                labels = (
                    names.get(scenario, scenario),
                    method_label(method),
                    f"{100 * fraction:g} %",
                )
                rows.append(Row(labels, cells))
    header = (("Scenario", "Method", "Labels", *(f"t = {t}" for t in steps)),)
    name = _METRIC_NAMES.get(metric, metric)
    note = provenance_note(
        {names.get(s, s): sources.get(s) for s in scenarios},
        seeds=_seeds(data),
        paper_table_number=None,
    )
    explain = (
        f"t: the composites observed, from the season's start; the later ones are zero-padded. "
        f"t = {steps[-1]} is the full season. Labels: the share of the fine-tuning region's "
        "labelled parcels."
    )
    if bounds:
        level = float(intervals["level"].max()) if intervals is not None else 0.95
        explain += (
            f" In brackets: {100 * level:g} % interval of the mean over seeds from a bootstrap "
            "over the test split's parcels, every seed scored on the same draws."
        )
    return Table(f"{name} by number of observed composites t", header, tuple(rows), (note, explain))


def _timestep_bounds(
    intervals: pd.DataFrame | None, metric: str
) -> dict[tuple[str, str, float, int], tuple[float, float]]:
    """(scenario, method, fraction, t) → the interval of ``timestep_intervals.csv``."""
    if intervals is None or intervals.empty:
        return {}
    _check_results(intervals, ("scenario", "method", "label_fraction", "timestep", "low", "high"))
    rows = intervals if "metric" not in intervals else intervals[intervals["metric"] == metric]
    return {
        (str(r.scenario), str(r.method), float(r.label_fraction), int(r.timestep)): (
            float(r.low),
            float(r.high),
        )
        for r in rows.itertuples()
        if not pd.isna(r.low)
    }


def paired_timestep_table(
    intervals: pd.DataFrame,
    baseline: str = "rf",
    *,
    sources: Mapping[str, str | None] | None = None,
    names: Mapping[str, str] | None = None,
    digits: int = 2,
) -> Table:
    """Each method minus ``baseline`` at every number of observed composites ``t``, paired on
    the same parcel draws (the ``minus_<baseline>`` columns of ``timestep_intervals.csv``):
    which early-season map beats the baseline's map from the same composites."""
    diff = f"minus_{baseline}"
    _check_results(
        intervals,
        ("scenario", "method", "label_fraction", "timestep", diff, f"{diff}_low", f"{diff}_high"),
    )
    sources, names = sources or {}, names or {}
    paired = intervals[intervals[diff].notna()]
    if paired.empty:
        raise EvaluationInputError(f"no method is paired with {baseline} by time step")
    steps = sorted(int(t) for t in intervals["timestep"].unique())
    rows = []
    for scenario in dict.fromkeys(paired["scenario"].astype(str)):
        part = paired[paired["scenario"].astype(str) == scenario]
        for method in method_order(part["method"]):
            for fraction in sorted(float(f) for f in part["label_fraction"].unique()):
                found = part[(part["method"] == method) & (part["label_fraction"] == fraction)]
                if found.empty:
                    continue
                at = {int(r.timestep): r for r in found.itertuples()}
                cells = tuple(
                    Cell(None, digits=digits)
                    if t not in at
                    else Cell(
                        float(getattr(at[t], diff)),
                        source=sources.get(scenario),
                        digits=digits,
                        interval=(
                            float(getattr(at[t], f"{diff}_low")),
                            float(getattr(at[t], f"{diff}_high")),
                        ),
                    )
                    for t in steps
                )
                labels = (
                    names.get(scenario, scenario),
                    method_label(method),
                    f"{100 * fraction:g} %",
                )
                rows.append(Row(labels, cells))
    other = baseline.upper()
    level = float(intervals["level"].max()) if "level" in intervals else 0.95
    header = (("Scenario", "Method", "Labels", *(f"t = {t}" for t in steps)),)
    title = (
        f"IoU of each method A minus {other} from the same composites t, paired on the same "
        "parcel draws"
    )
    notes = (
        f"A − {other}: difference of the means over seeds at the same t and label share, in "
        f"brackets its {100 * level:g} % interval from a bootstrap over the test split's "
        f"parcels in which both methods are scored on every draw.",
    )
    return Table(title, header, tuple(rows), notes)


def paired_table(
    intervals: pd.DataFrame,
    baseline: str = "ri",
    *,
    sources: Mapping[str, str | None] | None = None,
    names: Mapping[str, str] | None = None,
    digits: int = 2,
) -> Table:
    """Each method minus ``baseline`` per label fraction, paired on the same parcel draws.

    Two columns per fraction: the difference of the means over seeds with its bootstrap
    interval, and the share of draws in which the method scores above the baseline. Reads the
    ``minus_<baseline>``, ``minus_<baseline>_low|high`` and ``p_above_<baseline>`` columns of
    an experiment's ``intervals.csv``.
    """
    diff, p_above = f"minus_{baseline}", f"p_above_{baseline}"
    _check_results(
        intervals,
        ("scenario", "method", "label_fraction", diff, f"{diff}_low", f"{diff}_high", p_above),
    )
    sources, names = sources or {}, names or {}
    fractions = sorted(float(f) for f in intervals["label_fraction"].unique())
    scenarios = list(dict.fromkeys(intervals["scenario"].astype(str)))
    other = baseline.upper()
    rows = []
    for scenario in scenarios:
        part = intervals[intervals["scenario"].astype(str) == scenario]
        for method in method_order(m for m in part["method"] if m != baseline):
            cells: list[Cell] = []
            for fraction in fractions:
                found = part[(part["method"] == method) & (part["label_fraction"] == fraction)]
                row = None if found.empty or pd.isna(found.iloc[0][diff]) else found.iloc[0]
                if row is None:
                    cells += [Cell(None, digits=digits), Cell(None, digits=3)]
                    continue
                interval = (float(row[f"{diff}_low"]), float(row[f"{diff}_high"]))
                source = sources.get(scenario)
                cells += [
                    Cell(float(row[diff]), source=source, digits=digits, interval=interval),
                    Cell(float(row[p_above]), source=source, digits=3),
                ]
            rows.append(Row((names.get(scenario, scenario), method_label(method)), tuple(cells)))
    header = (
        (
            "Scenario",
            "Method",
            *(
                column
                for f in fractions
                for column in (f"{100 * f:g} %: A − {other}", f"{100 * f:g} %: P(A > {other})")
            ),
        ),
    )
    level = float(intervals["level"].max()) if "level" in intervals else 0.95
    metric = str(intervals["metric"].iloc[0]) if "metric" in intervals else "iou"
    kinds = sorted({s for s in (sources.get(x) for x in scenarios) if s})
    on = f", ours on {' and '.join(kinds)} data" if kinds else ""
    title = (
        f"{_METRIC_NAMES.get(metric, metric)} of each method A minus {other}, paired on the "
        f"same parcel draws (full season){on}"
    )
    notes = (
        f"A − {other}: difference of the means over seeds, in brackets its {100 * level:g} % "
        f"interval from a bootstrap over the test split's parcels in which both methods are "
        f"scored on every draw; P(A > {other}): share of draws in which A scores above "
        f"{other}. The interval is that of the test parcels with the trained models fixed: "
        f"the spread over seeds is not in it. On simulated contiguous test areas of 15-54 "
        f"fields such 95 % intervals covered the true difference 78-84 % of the time "
        f"(benchmarks/bootstrap_coverage.py): one location's interval says less than its "
        f"level.",
    )
    return Table(title, header, tuple(rows), notes)
