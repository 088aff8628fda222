"""The experiment runner: the paper's scenario × method grid in one command.

:func:`run_experiment` reads an :class:`ExperimentConfig` (YAML), prepares one dataset per
region, pre-trains once, fine-tunes and evaluates every scenario × method × seed, caches every
finished unit on disk, and writes ``results.csv``, paper-shaped tables, maps and a report.
"""

from sarcrop.experiments.config import ExperimentConfig, load_experiment_config
from sarcrop.experiments.runner import ExperimentResult, run_experiment

__all__ = ["ExperimentConfig", "ExperimentResult", "load_experiment_config", "run_experiment"]
