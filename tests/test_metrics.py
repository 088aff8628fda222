"""Confusion-matrix metrics, early-season evaluation, metrics JSON and the paper tables."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from sarcrop.errors import SarcropError
from sarcrop.evaluation.metrics import (
    BinaryConfusion,
    EvaluationInputError,
    early_season_confusions,
    early_season_metrics,
    read_metrics_json,
    write_metrics_json,
    zero_pad_after,
)
from sarcrop.evaluation.paper import SCENARIOS, find_scenario, paper_results, paper_value
from sarcrop.evaluation.tables import (
    Cell,
    method_label,
    metric_records,
    paired_timestep_table,
    paper_table,
    scenario_label,
    summary_table,
    timestep_table,
)
from sarcrop.reports.markdown import timesteps_markdown

PRED = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)
TARGET = np.array([[1, 0, 1, 0], [1, 1, -1, 0]], dtype=np.float32)
VALID = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)
# valid pixels: TP, FP, FN, TN, TP, FN -> TP=2, FP=1, FN=2, TN=1


def test_hand_computed_confusion_ignores_invalid_pixels():
    conf = BinaryConfusion().update(PRED, TARGET, VALID)
    assert (conf.tp, conf.fp, conf.fn, conf.tn) == (2, 1, 2, 1)
    assert conf.iou == pytest.approx(2 / 5)
    assert conf.precision == pytest.approx(2 / 3)
    assert conf.recall == pytest.approx(2 / 4)
    assert conf.f1 == pytest.approx(4 / 7)
    assert conf.as_dict()["tn"] == 1


def test_probabilities_are_thresholded():
    prob = np.where(PRED, 0.7, 0.2).astype(np.float32)
    assert BinaryConfusion().update(prob, TARGET, VALID) == BinaryConfusion(2, 1, 2, 1)
    assert BinaryConfusion().update(prob, TARGET, VALID, threshold=0.8).tp == 0


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(1)
    prob = rng.random((3, 17, 19)).astype(np.float32)
    target = (rng.random((3, 17, 19)) > 0.6).astype(np.float32)
    valid = rng.random((3, 17, 19)) > 0.2
    by_numpy = BinaryConfusion().update(prob, target, valid)
    by_torch = BinaryConfusion().update(
        torch.from_numpy(prob), torch.from_numpy(target), torch.from_numpy(valid)
    )
    assert by_numpy == by_torch
    assert by_numpy.total == valid.sum()
    assert isinstance(by_torch.tp, int)


def test_merge_equals_one_pass():
    rng = np.random.default_rng(2)
    pred = rng.random((4, 8, 8)) > 0.5
    target = rng.random((4, 8, 8)) > 0.5
    whole = BinaryConfusion().update(pred, target)
    first = BinaryConfusion().update(pred[:2], target[:2])
    second = BinaryConfusion().update(pred[2:], target[2:])
    assert first.merge(second) == whole
    assert first + second == whole
    assert first.tp + second.tp == whole.tp  # merge does not modify its operands


def test_undefined_metrics_are_nan():
    conf = BinaryConfusion().update(np.zeros((2, 2), bool), np.zeros((2, 2)))
    assert conf.tn == 4
    assert math.isnan(conf.iou) and math.isnan(conf.precision) and math.isnan(conf.recall)
    assert conf.accuracy == 1.0


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 2)), "does not match"),
        (np.full((2, 2), 1.5), np.zeros((2, 2)), r"\[0, 1\]"),
        (np.zeros((2, 2)), np.full((2, 2), -1.0), "targets must be 0 or 1"),
        (np.full((2, 2), 3), np.zeros((2, 2)), "integer predictions"),
    ],
)
def test_bad_inputs_raise_one_line_errors(pred, target, message):
    with pytest.raises(SarcropError, match=message) as info:
        BinaryConfusion().update(pred, target)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_early_season_uses_zero_padding():
    images = np.ones((2, 5, 1, 3, 3), np.float32)
    assert zero_pad_after(images, 2)[:, 2:].sum() == 0 and images.sum() == images.size
    target = np.ones((2, 3, 3), np.float32)

    def predict(x):  # "positive once at least three steps were observed"
        return (x[:, :, 0].sum(axis=1) >= 3).astype(np.float32)

    batch = {"image": images, "target": target, "valid": np.ones((2, 3, 3), bool)}
    metrics = early_season_metrics(early_season_confusions(predict, [batch, batch]))
    assert list(metrics) == [1, 2, 3, 4, 5]
    assert [metrics[t]["recall"] for t in metrics] == [0, 0, 1, 1, 1]
    assert metrics[5]["tp"] == 36
    with pytest.raises(SarcropError, match="without gaps"):
        early_season_metrics({1: BinaryConfusion(), 3: BinaryConfusion()})


def test_metrics_json_round_trip_with_nan(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    conf = BinaryConfusion(tp=0, fp=0, fn=0, tn=5)
    write_metrics_json(path, {"test": conf, "early": {1: BinaryConfusion(1, 0, 0, 0)}})
    text = path.read_text()
    assert "NaN" not in text and "null" in text
    data = read_metrics_json(path)
    assert math.isnan(data["test"]["iou"]) and data["test"]["tn"] == 5
    assert data["early"]["1"]["iou"] == 1.0
    assert BinaryConfusion.from_dict(data["test"]) == conf
    assert not list(path.parent.glob(".*tmp*"))
    with pytest.raises(SarcropError, match="not found"):
        read_metrics_json(tmp_path / "missing.json")


# --------------------------------------------------------------------------- paper + tables


def test_paper_cells_match_the_text():
    spain_france_vhvv = find_scenario("Spain", "France", "paddy rice", "VH|VV")
    assert spain_france_vhvv.number == 4
    assert paper_value(spain_france_vhvv, "FTE", "iou") == 0.66
    nl_vhvv = find_scenario("The Netherlands", "netherlands", "summer barley", ("VV", "VH"))
    assert paper_value(nl_vhvv, "RI", "iou") == 0.0
    assert paper_value(nl_vhvv, "FTE", "recall") == 0.705
    assert paper_value(7, "FT", "recall") == 0.954
    assert paper_value(3, "RF", "precision") == 0.926
    assert paper_value(1, "FTE", "f1") == 0.947
    assert paper_value(1, "FTD", "iou") is None
    assert [s.number for s in SCENARIOS] == list(range(1, 11))
    frame = paper_results()
    assert len(frame) == 4 * 4 * 10


def test_paper_f1_is_consistent_with_precision_and_recall():
    frame = paper_results().pivot_table(
        index=["scenario", "method"], columns="metric", values="value"
    )
    p, r = frame["precision"], frame["recall"]
    f1 = 2 * p * r / (p + r)
    assert np.allclose(f1, frame["f1"], atol=0.006)  # rounding of the published values


def _results(seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for scenario in (SCENARIOS[2], SCENARIOS[0]):  # out of paper order on purpose
        for method, base in (("FTE", 0.8), ("RF", 0.7), ("FTD", 0.5)):
            for seed in seeds:
                for t in (4, 8):
                    value = base + 0.02 * seed - (0.3 if t == 4 else 0)
                    rows += metric_records(
                        {"iou": value, "f1": value + 0.1},
                        scenario=scenario.id,
                        finetune_region=scenario.finetune_region,
                        test_region=scenario.test_region,
                        crop=scenario.crop,
                        bands=scenario.bands,
                        method=method,
                        timestep=t,
                        seed=seed,
                    )
    return pd.DataFrame(rows)


def _pipe_cells(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_paper_table_shape_and_cells():
    table = paper_table(_results(), "iou")
    assert table.header[1] == ("Test", "Spain", "France")  # paper order: scenario 1 before 3
    assert [row.labels for row in table.rows] == [("RF",), ("FTE",), ("FTD",)]
    rf = table.rows[0].cells[0]
    assert (round(rf.value, 3), round(rf.spread, 4)) == (0.71, 0.0141)  # t=8, 2 seeds
    assert rf.text == "0.71 ± 0.01" and rf.reference is None  # no reference asked for
    cells = _pipe_cells(table.to_markdown())
    assert cells[0] == ["Fine-tuning", "Spain", "Spain"]
    assert cells[2] == ["**Test**", "Spain", "France"]
    assert [row[0] for row in cells[4:]] == ["**RF**", "**FTE**", "**FTD**"]
    assert cells[4][1] == "0.71 ± 0.01"  # full season (t=8), mean ± sample std of 2 seeds
    assert all(len(row) == 3 for row in cells)


def test_paper_table_tells_the_same_regions_from_two_pretrainings_apart():
    """Two columns both read "Flanders2018 / Flanders2019-Test / VH|VV"."""
    results = _results()
    results = results[results["scenario"] == SCENARIOS[0].id]
    twice = pd.concat(
        [
            results.assign(scenario=f"{SCENARIOS[0].id}-from-{name}")
            for name in ("europe", "europe-early")
        ]
    )
    table = paper_table(twice, "iou")
    assert table.header[2] == ("Feature", "VH, from europe", "VH, from europe-early")
    assert paper_table(results, "iou").header[2] == ("Feature", "VH")  # one: as it was


def test_paper_table_reference_and_single_seed():
    table = paper_table(_results(seeds=(0,)), "iou", reference=True)
    markdown = table.to_markdown()
    assert "0.70 (paper 0.87)" in markdown  # RF, scenario 1
    assert "0.80 (paper 0.63)" in markdown  # FTE, scenario 3
    assert "Table 1" in markdown and "±" not in markdown
    assert table.rows[2].cells[0].reference is None  # FTD is not in the paper
    assert "0.40" in paper_table(_results(seeds=(0,)), "iou", timestep=4).to_markdown()
    with pytest.raises(SarcropError, match="no results for metric 'recall'"):
        paper_table(_results(), "recall")
    with pytest.raises(SarcropError, match="lack column"):
        paper_table(_results().drop(columns="bands"), "iou")


def test_paper_table_gives_no_paper_value_beside_an_early_timestep():
    """The paper's tables are of the full season: t = 4 of 8 gets no published value."""
    early = paper_table(_results(seeds=(0,)), "iou", reference=True, timestep=4)
    assert all(cell.reference is None for row in early.rows for cell in row.cells)
    text = early.to_markdown() + early.to_console()
    assert "paper" not in text and "Table 1" not in text
    assert "0.40" in text and early.title == "IoU of the positive class (t = 4)"
    last = paper_table(_results(seeds=(0,)), "iou", reference=True, timestep=8)
    assert "0.70 (paper 0.87)" in last.to_markdown()  # the last timestep is the full season


def test_every_rendering_labels_ours_and_the_papers_provenance():
    sources = {SCENARIOS[0].id: "simulated", SCENARIOS[2].id: "simulated"}
    table = paper_table(_results(), "iou", reference=True, sources=sources)
    assert {cell.source for row in table.rows for cell in row.cells} == {"simulated"}
    legend = (
        "Cells: ours (mean ± sample std over 2 seeds), measured on simulated data; "
        "in brackets (paper …): the value published in Table 1 of Jo et al., "
        "arXiv:2211.04755, measured on the paper's real Sentinel-1 data."
    )
    assert table.notes == (legend,)
    assert table.title.endswith(": ours on simulated data (paper's value on its real data)")
    for text in (table.to_markdown(), table.to_console(), html.unescape(table.to_html())):
        assert "measured on simulated data" in text and "paper's real Sentinel-1 data" in text
    # Mixed provenance names the columns of each kind; unknown provenance claims nothing.
    mixed = paper_table(_results(), "iou", reference=True, sources={SCENARIOS[0].id: "real"})
    assert (
        "measured on real data (Spain → Spain VH) and unlabelled data (Spain → France VH)"
        in (mixed.notes[0])
    )
    unknown = paper_table(_results(), "iou", reference=True)
    assert "measured on this run's data" in unknown.notes[0]
    assert "simulated" not in unknown.to_console()


def test_console_table_is_aligned_and_complete():
    table = paper_table(_results(seeds=(0,)), "iou", reference=True)
    lines = table.to_console().splitlines()
    assert (
        lines[0] == "IoU of the positive class (full season): ours (paper's value on its real data)"
    )
    grid = lines[2 : 2 + 3 + 1 + 3]  # 3 header rows, the rule, 3 methods
    assert grid[0].split() == ["Fine-tuning", "Spain", "Spain"]
    assert set(grid[3]) <= {"-", " "}
    assert grid[4].startswith("RF ") and grid[4].endswith("0.70 (paper 0.87)  0.70 (paper 0.63)")
    widths = {len(line) for line in grid[1:]}  # the rule is as wide as the widest row
    assert max(widths) == len(grid[3])
    assert lines[-1] == table.notes[0]


def test_cell_formats():
    assert Cell.of([0.5]).text == "0.500"
    # Seeds with an undefined metric (NaN, None) are left out, and the cell says so.
    assert Cell.of([0.5, float("nan"), None, 0.7], digits=2).text == "0.60 ± 0.14 (2 of 4 seeds)"
    assert Cell.of([0.5, 0.7], digits=2).text == "0.60 ± 0.14"
    assert Cell.of([], reference=0.9, digits=2).text == "– (paper 0.90)"
    assert Cell.of([0.5], source="real").description == "ours: real data"


def test_summary_tables():
    one = _results()
    one = one[one.scenario == SCENARIOS[0].id]
    summary = summary_table(one, sources={SCENARIOS[0].id: "simulated"})
    assert [row.labels for row in summary.rows] == [("RF",), ("FTE",), ("FTD",)]
    assert summary.header == (("Method", "IoU", "F1-score"),)
    assert summary.rows[1].cells[1].text == "0.910 ± 0.014"
    assert summary.rows[1].cells[1].source == "simulated"
    lines = summary.to_console().splitlines()
    assert lines[2].split() == ["Method", "IoU", "F1-score"]
    assert len({len(line) for line in lines[2:6]}) == 1  # aligned columns
    assert "measured on simulated data" in lines[-1]
    both = summary_table(_results())
    assert both.header[0][:2] == ("Scenario", "Method") and len(both.rows) == 6
    assert both.rows[0].labels == (SCENARIOS[2].id, "RF")  # spain-france sorts first


def test_timestep_table_has_a_column_per_observed_composite_and_a_row_per_fraction():
    data = _results().assign(run="main", label_fraction=1.0)
    fewer = data[data.method == "FTE"].assign(label_fraction=0.25, value=lambda d: d.value - 0.1)
    data = pd.concat([data, fewer, data.assign(run="early-season", value=0.0)])
    table = timestep_table(data, sources={SCENARIOS[0].id: "real"})
    assert table.header == (("Scenario", "Method", "Labels", "t = 4", "t = 8"),)
    first = [row.labels for row in table.rows if row.labels[0] == SCENARIOS[2].id]
    assert first == [
        (SCENARIOS[2].id, "RF", "100 %"),
        (SCENARIOS[2].id, "FTE", "25 %"),
        (SCENARIOS[2].id, "FTE", "100 %"),
        (SCENARIOS[2].id, "FTD", "100 %"),  # no FTD run at 25 %: no empty row
    ]
    fte = table.rows[2].cells
    assert [round(c.value, 3) for c in fte] == [0.51, 0.81]  # t = 4, t = 8; the main run only
    assert fte[0].text == "0.51 ± 0.01" and "t = 8 is the full season" in table.notes[1]
    assert table.rows[-1].cells[0].source == "real"
    with pytest.raises(EvaluationInputError, match="no results for metric 'kappa'"):
        timestep_table(data, metric="kappa")
    # tables.md leaves it out where a run has no IoU of one crop (a crop-type run)
    assert timesteps_markdown(data.iloc[:0]) == ""
    assert timesteps_markdown(data).startswith("## IoU by number of observed composites t")


def test_timestep_tables_carry_the_parcel_intervals_and_the_paired_differences():
    data = _results().assign(run="main", label_fraction=1.0)
    scenario = SCENARIOS[2].id
    by_step = pd.DataFrame(
        {
            "scenario": scenario,
            "method": ["FTE", "FTE", "RF", "RF"],
            "label_fraction": 1.0,
            "timestep": [4, 8, 4, 8],
            "metric": "iou",
            "low": [0.40, 0.70, 0.30, 0.60],
            "high": [0.60, 0.90, 0.50, 0.80],
            "level": 0.95,
            "minus_rf": [0.12, 0.05, None, None],
            "minus_rf_low": [0.02, -0.03, None, None],
            "minus_rf_high": [0.20, 0.11, None, None],
        }
    )
    table = timestep_table(data, intervals=by_step)
    fte = next(r for r in table.rows if r.labels == (scenario, "FTE", "100 %"))
    assert [c.text for c in fte.cells] == ["0.51 ± 0.01 [0.40, 0.60]", "0.81 ± 0.01 [0.70, 0.90]"]
    other = next(r for r in table.rows if r.labels[0] != scenario)
    assert other.cells[0].interval is None  # no interval where the run wrote none
    assert "95 % interval of the mean" in table.notes[1]
    assert "In brackets" not in timestep_table(data).notes[1]
    paired = paired_timestep_table(by_step)
    assert [row.labels for row in paired.rows] == [(scenario, "FTE", "100 %")]  # not RF itself
    assert [c.text for c in paired.rows[0].cells] == ["0.12 [0.02, 0.20]", "0.05 [-0.03, 0.11]"]
    assert paired.header == (("Scenario", "Method", "Labels", "t = 4", "t = 8"),)
    with pytest.raises(EvaluationInputError, match="no method is paired with ri"):
        paired_timestep_table(
            by_step.assign(minus_ri=None, minus_ri_low=None, minus_ri_high=None), "ri"
        )
    sections = timesteps_markdown(data, by_step).split("## ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "IoU by number of observed composites t",
        "IoU of each method A minus RF from the same composites t, paired on the same parcel draws",
    ]


def test_scenario_labels_name_the_pre_training_where_the_scenario_does() -> None:
    named = scenario_label("fl18-fl19-maize-vhvv-from-real-ssl", "fl18", "fl19", "VH|VV")
    assert named == "fl18 → fl19 VH|VV, from real-ssl"
    assert scenario_label("spain-france-rice-vh", "spain", "france", "VH") == "spain → france VH"


def test_method_labels_read_as_the_docs_write_them():
    names = ["rf", "ri", "FT", "fte", "ftd", "ftd-last-2", "probe", "rf-features", "zero-shot", "x"]
    assert [method_label(name) for name in names] == [
        "RF",
        "RI",
        "FT",
        "FTE",
        "FTD",
        "FTD-last-2",
        "probe",
        "RF on features",
        "zero-shot",
        "X",
    ]
    table = summary_table(_results().assign(method="rf-features"), ["iou"])
    assert "RF on features" in table.to_markdown()


def test_a_table_of_scenarios_the_paper_lacks_claims_no_paper_value():
    """A user's own regions: no cell has a published value, so neither the title nor the
    note speaks of one."""
    results = _results().assign(
        scenario="mine", finetune_region="my-fields", test_region="my-fields"
    )
    table = paper_table(results, "iou", reference=True, sources={"mine": "real"})
    assert table.title == "IoU of the positive class (full season)"
    assert all(cell.reference is None for row in table.rows for cell in row.cells)
    assert "Table 1" not in table.notes[0] and "paper" not in table.to_markdown()


def test_a_run_with_fewer_labels_says_so_in_its_headline():
    """A run of a quarter of the labels alone: its headline table is that quarter's."""
    table = paper_table(_results().assign(label_fraction=0.25), "iou")
    assert table.title == "IoU of the positive class (full season, 25 % of the labelled parcels)"
    assert paper_table(_results().assign(label_fraction=1.0), "iou").title.endswith("season)")


def test_tables_of_a_users_own_regions_speak_of_no_paper():
    from sarcrop.reports.markdown import tables_markdown

    mine = _results().assign(scenario="mine", finetune_region="mine", test_region="mine")
    text = tables_markdown("my-fields", mine)
    assert "Paper values" not in text and "paper Table" not in text and "## IoU\n" in text
    paper = tables_markdown("paper", _results())
    assert "Paper values (in brackets)" in paper and "## IoU (paper Table 1)" in paper
