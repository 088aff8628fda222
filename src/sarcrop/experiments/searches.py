"""What the network runs of an experiment chose on held-out parcels (``finetune:`` with
``epoch_search`` or ``interpolation_search``).

Each checkpoint records its choice (``training.search``). ``searches.csv`` gathers them, one
row per run (per fold of a ``folds`` scenario), and ``tables.md`` and the report count them
(:func:`sarcrop.reports.markdown.search_counts`), so that a table says which budgets and
weights its numbers come from without opening a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sarcrop.training.config import MODEL_FILE

FOLD_PREFIX = "fold-"
"""A held-out unit trains fold i in ``FOLD_PREFIX + str(i)`` of its folder."""
SEARCH_COLUMNS = (
    "scenario",
    "method",
    "seed",
    "label_fraction",
    "fold",
    "epochs",
    "interpolation",
    "held_out_iou",
    "folds",
    "parcels",
    "reason",
)


def run_checkpoints(record: Mapping[str, Any]) -> list[tuple[int | None, Path]]:
    """The checkpoints behind one method unit: one per fold of a ``folds`` scenario (in
    ``FOLD_PREFIX`` folders), else the unit's own run; none for a forest."""
    folder = Path(record["probabilities"]).parent
    numbered = [
        (int(path.parent.name.removeprefix(FOLD_PREFIX)), path)
        for path in folder.glob(f"{FOLD_PREFIX}*/{MODEL_FILE}")
    ]
    if numbered:
        return sorted(numbered)
    checkpoint = record.get("checkpoint")
    return [] if checkpoint is None else [(None, Path(checkpoint))]


def search_rows(records: Mapping[tuple[str, str, int, float], Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run that searched: what it chose, its held-out IoU, or why it could not."""
    from sarcrop.training.checkpoint import read_metadata
    from sarcrop.training.search import SearchChoice

    rows = []
    for (scenario, method, seed, fraction), record in records.items():
        for fold, checkpoint in run_checkpoints(record):
            recorded = read_metadata(checkpoint).training.get("search")
            if recorded is None:  # a run without a search (RI with interpolation_search only)
                continue
            choice = SearchChoice.from_dict(recorded)
            rows.append(
                {
                    "scenario": scenario,
                    "method": method,
                    "seed": seed,
                    "label_fraction": fraction,
                    "fold": fold,
                    "epochs": choice.epochs,
                    "interpolation": choice.interpolation,
                    "held_out_iou": choice.iou.get((choice.epochs, choice.interpolation)),
                    "folds": choice.folds,
                    "parcels": choice.parcels,
                    "reason": choice.reason,
                }
            )
    return pd.DataFrame(rows, columns=list(SEARCH_COLUMNS))
