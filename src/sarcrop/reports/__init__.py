"""Report building blocks: figures over arrays, `tables.md` and the self-contained HTML report."""

from sarcrop.reports.figures import (
    COLORS,
    PanelRow,
    confusion_map,
    early_season_plot,
    figure_to_base64_png,
    learning_curves,
    method_training_curves,
    prediction_panels,
    rgb_composite,
    save_figure,
    scenario_figure,
    signature_plot,
    training_curves,
)

__all__ = [
    "COLORS",
    "PanelRow",
    "confusion_map",
    "early_season_plot",
    "figure_to_base64_png",
    "learning_curves",
    "method_training_curves",
    "prediction_panels",
    "rgb_composite",
    "save_figure",
    "scenario_figure",
    "signature_plot",
    "training_curves",
]
