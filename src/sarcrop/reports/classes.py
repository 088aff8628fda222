"""The report's crop-type section: per-class tables and the best method's confusion matrix.

Renders the ``crop_types`` entries of ``experiment.json`` (written by
:mod:`sarcrop.experiments.classes`): one table per scenario and label fraction (rows methods,
columns the IoU of each class, mIoU, overall accuracy and kappa, mean ± std over seeds).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any, Protocol

from sarcrop.evaluation.tables import method_label


class _Figures(Protocol):
    def figure(self, relative: Any, caption: str, *, css_class: str = "figure") -> str: ...


def _table(columns: Mapping[str, list[Any]], caption: str) -> str:
    names = list(columns)
    if not names:
        return ""
    head = "".join(f'<th scope="col">{escape(str(n))}</th>' for n in names)
    rows = []
    for i in range(len(columns[names[0]])):
        cells = [columns[n][i] for n in names]
        row = f'<th scope="row">{escape(str(cells[0]))}</th>'
        row += "".join(f"<td>{escape(str(c))}</td>" for c in cells[1:])
        rows.append(f"<tr>{row}</tr>")
    return (
        '<div class="table-wrap"><table class="results compact">'
        f"<caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def crop_types_html(ctx: _Figures, value: Any) -> str:
    """The section body, or ``""`` for a run without crop-type scenarios."""
    entries = [e for e in value or () if isinstance(e, Mapping)]
    if not entries:
        return ""
    out = [
        "<p>Several classes mapped at once. Mean ± std over seeds at the full season: IoU of "
        "each class, mIoU, overall accuracy (OA) and Cohen's kappa, each from one confusion "
        "matrix over the test split.</p>"
    ]
    for entry in entries:
        title = str(entry.get("title", entry.get("scenario", "")))
        out.append(f"<h3>{escape(title)}</h3>")
        for table in entry.get("tables") or ():
            fraction = table.get("fraction", 1.0)
            caption = f"{100 * float(fraction):g} % of the labelled parcels"
            out.append(_table(table.get("table") or {}, caption))
        best = entry.get("best")
        if best:
            out.append(
                ctx.figure(
                    entry.get("figure"),
                    f"Confusion matrix of {method_label(best)} (best mean mIoU), summed over "
                    "seeds; each row is the share of a reference class",
                )
            )
    return "\n".join(out)
