"""Evaluation: confusion-matrix metrics, the Random Forest baseline and paper-shaped tables.

- :mod:`sarcrop.evaluation.metrics`: :class:`BinaryConfusion` over a whole split, early season.
- :mod:`sarcrop.evaluation.baseline`: :class:`RandomForestBaseline` on per-pixel time series.
- :mod:`sarcrop.evaluation.paper`: the published Tables 1-4 as data.
- :mod:`sarcrop.evaluation.tables`: one table model (Markdown, HTML, console) from results.
"""

from sarcrop.evaluation.baseline import (
    BaselineResult,
    RandomForestBaseline,
    early_season_baseline,
    evaluate_baseline,
    fit_baseline_from_dataset,
    pixels_from_patches,
    predict_patches,
    run_baseline,
)
from sarcrop.evaluation.metrics import (
    METRICS,
    BinaryConfusion,
    EvaluationInputError,
    early_season_confusions,
    early_season_metrics,
    read_metrics_json,
    write_metrics_json,
    zero_pad_after,
)
from sarcrop.evaluation.paper import SCENARIOS, Scenario, find_scenario, paper_results, paper_value
from sarcrop.evaluation.tables import (
    Cell,
    Row,
    Table,
    metric_records,
    paper_table,
    summary_table,
)

__all__ = [
    "METRICS",
    "SCENARIOS",
    "BaselineResult",
    "BinaryConfusion",
    "Cell",
    "EvaluationInputError",
    "RandomForestBaseline",
    "Row",
    "Scenario",
    "Table",
    "early_season_baseline",
    "early_season_confusions",
    "early_season_metrics",
    "evaluate_baseline",
    "find_scenario",
    "fit_baseline_from_dataset",
    "metric_records",
    "paper_results",
    "paper_table",
    "paper_value",
    "pixels_from_patches",
    "predict_patches",
    "read_metrics_json",
    "run_baseline",
    "summary_table",
    "write_metrics_json",
    "zero_pad_after",
]
