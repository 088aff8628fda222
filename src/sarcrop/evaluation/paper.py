"""The published results (Tables 1-4 of the paper) as data, for side-by-side comparisons.

Jo, Koukos, Sitokonstantinou, Lee, Kontoes, "Towards Global Crop Maps with Transfer Learning",
arXiv:2211.04755. Its values were measured on real Sentinel-1 data.

Each table gives one metric of the positive class for the 10 transfer scenarios and the
methods RF (locally trained Random Forest), RI (architecture only, random init), FT (fine-tune
everything) and FTE (fine-tune the encoder, decoder frozen). Values are transcribed verbatim;
Table 1 (IoU) has two decimals, Tables 2-4 three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

CITATION = (
    "Jo, Koukos, Sitokonstantinou, Lee, Kontoes, "
    '"Towards Global Crop Maps with Transfer Learning", arXiv:2211.04755'
)
"""The study whose Tables 1-4 are transcribed here (and whose method sarcrop implements)."""
CITATION_SHORT = "Jo et al., arXiv:2211.04755"
CITATION_URL = "https://arxiv.org/abs/2211.04755"

PAPER_METHODS = ("RF", "RI", "FT", "FTE")
PAPER_METRICS = ("iou", "recall", "precision", "f1")
PAPER_TABLE_NUMBER = {"iou": 1, "recall": 2, "precision": 3, "f1": 4}
PAPER_TIME_STEPS = 8
"""Full season in the paper: 8 composites of 20 days."""


@dataclass(frozen=True)
class Scenario:
    """A transfer scenario r1-r2-c-s: fine-tune in one region, test in another."""

    number: int
    finetune_region: str
    test_region: str
    crop: str
    bands: str  # "VH" or "VH|VV"

    @property
    def id(self) -> str:
        """Stable identifier, e.g. ``spain-france-rice-vhvv``."""
        return _key(self.finetune_region, self.test_region, self.crop, self.bands)

    @property
    def band_list(self) -> tuple[str, ...]:
        return tuple(self.bands.split("|"))


def _norm_region(name: str) -> str:
    name = name.strip().lower().replace("_", " ")
    return name.removeprefix("the ").replace(" ", "")


def _norm_crop(name: str) -> str:
    name = name.strip().lower().replace("_", " ")
    return name.removeprefix("paddy ").removeprefix("summer ").replace(" ", "")


def _norm_bands(bands: str | tuple[str, ...] | list[str]) -> str:
    tokens = re.split(r"[|+,;_\s-]+", bands) if isinstance(bands, str) else list(bands)
    # VH first, then VV, as in the paper; the order of the input does not change the scenario.
    order = {"vh": 0, "vv": 1}
    tokens = [token.strip().lower() for token in tokens if token.strip()]
    return "".join(sorted(tokens, key=lambda band: (order.get(band, 2), band)))


def _key(finetune_region: str, test_region: str, crop: str, bands: str | tuple[str, ...]) -> str:
    return "-".join(
        (
            _norm_region(finetune_region),
            _norm_region(test_region),
            _norm_crop(crop),
            _norm_bands(bands),
        )
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1, "Spain", "Spain", "rice", "VH"),
    Scenario(2, "Spain", "Spain", "rice", "VH|VV"),
    Scenario(3, "Spain", "France", "rice", "VH"),
    Scenario(4, "Spain", "France", "rice", "VH|VV"),
    Scenario(5, "France", "France", "rice", "VH"),
    Scenario(6, "France", "France", "rice", "VH|VV"),
    Scenario(7, "France", "Spain", "rice", "VH"),
    Scenario(8, "France", "Spain", "rice", "VH|VV"),
    Scenario(9, "Netherlands", "Netherlands", "barley", "VH"),
    Scenario(10, "Netherlands", "Netherlands", "barley", "VH|VV"),
)
"""The 10 scenarios of Section 4, in the column order of Tables 1-4."""

# metric -> method -> values for scenarios 1..10
PAPER_TABLES: dict[str, dict[str, tuple[float, ...]]] = {
    "iou": {  # Table 1
        "RF": (0.87, 0.90, 0.63, 0.66, 0.76, 0.84, 0.77, 0.78, 0.26, 0.40),
        "RI": (0.86, 0.69, 0.52, 0.36, 0.76, 0.74, 0.70, 0.73, 0.31, 0.0),
        "FT": (0.89, 0.90, 0.57, 0.63, 0.82, 0.83, 0.82, 0.83, 0.40, 0.45),
        "FTE": (0.90, 0.90, 0.63, 0.66, 0.86, 0.86, 0.79, 0.84, 0.42, 0.54),
    },
    "recall": {  # Table 2
        "RF": (0.957, 0.964, 0.665, 0.698, 0.831, 0.881, 0.878, 0.846, 0.293, 0.446),
        "RI": (0.967, 0.765, 0.584, 0.460, 0.879, 0.841, 0.809, 0.818, 0.400, 0.004),
        "FT": (0.957, 0.962, 0.601, 0.674, 0.896, 0.894, 0.954, 0.950, 0.490, 0.614),
        "FTE": (0.964, 0.962, 0.674, 0.694, 0.915, 0.911, 0.914, 0.964, 0.518, 0.705),
    },
    "precision": {  # Table 3
        "RF": (0.910, 0.926, 0.926, 0.931, 0.901, 0.943, 0.866, 0.906, 0.718, 0.781),
        "RI": (0.891, 0.875, 0.826, 0.638, 0.849, 0.856, 0.838, 0.871, 0.590, 0.477),
        "FT": (0.932, 0.928, 0.919, 0.915, 0.905, 0.920, 0.858, 0.872, 0.686, 0.631),
        "FTE": (0.929, 0.935, 0.903, 0.929, 0.933, 0.939, 0.854, 0.873, 0.683, 0.696),
    },
    "f1": {  # Table 4
        "RF": (0.932, 0.945, 0.774, 0.798, 0.864, 0.911, 0.872, 0.875, 0.416, 0.567),
        "RI": (0.927, 0.816, 0.684, 0.534, 0.864, 0.848, 0.824, 0.844, 0.477, 0.007),
        "FT": (0.944, 0.945, 0.726, 0.776, 0.901, 0.907, 0.903, 0.909, 0.571, 0.622),
        "FTE": (0.947, 0.948, 0.772, 0.794, 0.924, 0.925, 0.883, 0.916, 0.589, 0.700),
    },
}

_BY_KEY = {scenario.id: scenario for scenario in SCENARIOS}


def find_scenario(
    finetune_region: str, test_region: str, crop: str, bands: str | tuple[str, ...]
) -> Scenario | None:
    """The paper scenario matching these names, or None.

    Matching ignores case, "The", "paddy"/"summer" and the band separator, so
    ``("spain", "France", "paddy rice", ("VH", "VV"))`` finds scenario 4.
    """
    return _BY_KEY.get(_key(finetune_region, test_region, crop, bands))


def scenario_by_id(scenario_id: str) -> Scenario | None:
    """The paper scenario with this :attr:`Scenario.id`, or None."""
    return _BY_KEY.get(scenario_id.strip().lower())


def paper_value(scenario: Scenario | int, method: str, metric: str) -> float | None:
    """Published value of ``metric`` for ``method`` in ``scenario`` (None if not published)."""
    number = scenario.number if isinstance(scenario, Scenario) else int(scenario)
    values = PAPER_TABLES.get(metric.lower(), {}).get(method.upper())
    if values is None or not 1 <= number <= len(values):
        return None
    return values[number - 1]


def paper_results() -> pd.DataFrame:
    """All published values in the long results format used by :mod:`sarcrop.evaluation.tables`.

    Columns: scenario, finetune_region, test_region, crop, bands, method, metric, timestep,
    seed (NA: the paper reports one value per cell), value.
    """
    rows = [
        {
            "scenario": scenario.id,
            "finetune_region": scenario.finetune_region,
            "test_region": scenario.test_region,
            "crop": scenario.crop,
            "bands": scenario.bands,
            "method": method,
            "metric": metric,
            "timestep": PAPER_TIME_STEPS,
            "seed": pd.NA,
            "value": values[scenario.number - 1],
        }
        for metric, table in PAPER_TABLES.items()
        for method, values in table.items()
        for scenario in SCENARIOS
    ]
    return pd.DataFrame(rows)
