"""``tables.md``: the paper-shaped tables of a run as Markdown, built from the table model."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from sarcrop.evaluation.metrics import EvaluationInputError
from sarcrop.evaluation.paper import CITATION, CITATION_URL
from sarcrop.evaluation.tables import paper_table

TITLES = {
    "iou": "IoU (paper Table 1)",
    "recall": "Recall (paper Table 2)",
    "precision": "Precision (paper Table 3)",
    "f1": "F1 (paper Table 4)",
}


def main_run(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of the main run: early-season reruns (other batch orders) have their figure."""
    if "run" not in results.columns:
        return results
    return results[results["run"].astype(str) == "main"]


def tables_markdown(
    name: str, results: pd.DataFrame, sources: Mapping[str, str | None] | None = None
) -> str:
    """Tables 1-4 of the paper with ours beside the published values, as one Markdown text.

    ``sources`` maps a scenario id to the data ours was measured on (simulated or real).
    """
    main = main_run(results)
    parts = [
        f"# {name}: positive-class metrics on the test split\n",
        f"Paper values (in brackets) from {CITATION} (<{CITATION_URL}>), measured on the "
        "paper's real Sentinel-1 data; ours as the legend under each table says.\n",
    ]
    for metric, title in TITLES.items():
        try:
            table = paper_table(main, metric, reference=True, sources=sources)
        except EvaluationInputError:
            continue
        parts.append(f"## {title}\n\n{table.to_markdown()}")
    return "\n".join(parts)
