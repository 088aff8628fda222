"""Evaluation: confusion-matrix metrics, the Random Forest baseline and paper-shaped tables.

- :mod:`sarcrop.evaluation.metrics`: :class:`BinaryConfusion` over a whole split, early season.
- :mod:`sarcrop.evaluation.bootstrap`: confidence intervals from resampled parcels.
- :mod:`sarcrop.evaluation.parcel_scores`: an evaluation's intervals and per-parcel scores.
- :mod:`sarcrop.evaluation.baseline`: :class:`RandomForestBaseline` on per-pixel time series.
- :mod:`sarcrop.evaluation.paper`: the published Tables 1-4 as data.
- :mod:`sarcrop.evaluation.tables`: one table model (Markdown, HTML, console) from results.
- :mod:`sarcrop.evaluation.sampling`: stratified random samples of map pixels to label.
- :mod:`sarcrop.evaluation.reference`: their reference classes read from a label raster.
- :mod:`sarcrop.evaluation.rasters`: a map read in strips, and what its classes are.
- :mod:`sarcrop.evaluation.area`: accuracy and area estimators with standard errors.
- :mod:`sarcrop.evaluation.assessment`: ``assess`` a map against labels (JSON, Markdown).
"""

from sarcrop.evaluation.area import (
    Estimate,
    Estimates,
    census_estimates,
    olofsson_estimates,
    stehman_estimates,
)
from sarcrop.evaluation.assessment import Assessment, area_record, assess, write_assessment
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
from sarcrop.evaluation.reference import fill_reference
from sarcrop.evaluation.sampling import (
    Sample,
    allocate,
    draw_sample,
    labels_from_table,
    read_sample,
    sample_size_for_se,
    stratum_size_for_users_se,
    write_points_csv,
    write_sample,
)
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
    "Assessment",
    "BaselineResult",
    "BinaryConfusion",
    "Cell",
    "Estimate",
    "Estimates",
    "EvaluationInputError",
    "RandomForestBaseline",
    "Row",
    "Sample",
    "Scenario",
    "Table",
    "allocate",
    "area_record",
    "assess",
    "census_estimates",
    "draw_sample",
    "early_season_baseline",
    "early_season_confusions",
    "early_season_metrics",
    "evaluate_baseline",
    "fill_reference",
    "find_scenario",
    "fit_baseline_from_dataset",
    "labels_from_table",
    "metric_records",
    "olofsson_estimates",
    "paper_results",
    "paper_table",
    "paper_value",
    "pixels_from_patches",
    "predict_patches",
    "read_metrics_json",
    "read_sample",
    "run_baseline",
    "sample_size_for_se",
    "stehman_estimates",
    "stratum_size_for_users_se",
    "summary_table",
    "write_assessment",
    "write_metrics_json",
    "write_points_csv",
    "write_sample",
    "zero_pad_after",
]
