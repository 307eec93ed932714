"""The study's statistics (`analysis/statistics.py`, `analysis/study/comparisons.py`,
`analysis/study/trend.py`) against hand-computed values."""

import csv
import json
import os

import numpy as np
import pytest

from keras_mulrnn.analysis import study
from keras_mulrnn.analysis.statistics import holm

from helpers import speech_corpus, tiny_base


def test_a_families_study_compares_every_pair_holm_corrected(tmp_path):
    """Tiny runs at one given rate: every pair of the five arms is one test of the family,
    Holm-corrected together, and equals a hand computation from the runs' test BPC."""
    base = tiny_base(units=8, embedding_dim=4, steps=2, eval_every=2)
    arms = study.plan_arms(base, ("lstm",), "families")
    rows = study.run_study(speech_corpus(), arms, seeds=2, rates=[1e-2], output_dir=tmp_path,
                           verbose=0)
    assert {row["arm"]: row["mogrifier_rounds"] for row in rows} == {
        "shared": 0, "additive": 0, "integration": 0, "mogrifier": 4, "mogrifier-shared": 4}
    with open(tmp_path / "comparisons.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 10 and {row["kind"] for row in table} == {"test"}
    test_bpc = {}
    for name in os.listdir(tmp_path / "runs"):
        run = json.loads((tmp_path / "runs" / name / "results.json").read_text())
        test_bpc[name.split("-lr")[0].split("-", 1)[1], run["config"]["seed"]] = run["test_bpc"]
    row = next(r for r in table if r["comparison"] == "equal budget: integration − shared")
    want = [test_bpc["integration", s] - test_bpc["shared", s] for s in (3, 4)]
    assert float(row["mean"]) == pytest.approx(np.mean(want))
    p_values = [float(r["p"]) for r in table]
    assert [float(r["p_holm"]) for r in table] == pytest.approx(
        holm(p_values))


def test_paired_t_and_holm_against_hand_computed_values():
    from keras_mulrnn.analysis.statistics import holm, paired_test

    d = [-0.05, -0.03, -0.04, -0.06, -0.02]
    # mean −0.04, sd √(0.001/4) = 0.0158114, se 0.0070711, t = −5.656854 with 4 dof;
    # t(0.975, 4) = 2.776445; two-sided p = 0.0048 (tables: 2·P(T4 > 5.6569) = 0.00480).
    result = paired_test(d)
    assert result["mean"] == pytest.approx(-0.04)
    assert result["t"] == pytest.approx(-5.656854, rel=1e-6)
    assert result["ci95_low"] == pytest.approx(-0.04 - 2.776445 * 0.0070711, rel=1e-5)
    assert result["ci95_high"] == pytest.approx(-0.04 + 2.776445 * 0.0070711, rel=1e-5)
    assert result["p"] == pytest.approx(0.004805, abs=2e-5)
    assert result["effect_size"] == pytest.approx(-0.04 / 0.0158114, rel=1e-5)
    # Holm over four p-values: sorted 0.01, 0.02, 0.03, 0.04 → ×4, ×3, ×2, ×1, made
    # monotone: 0.04, 0.06, 0.06, 0.06; None stays out of the family.
    assert holm([0.03, 0.01, None, 0.04, 0.02]) == pytest.approx(
        [0.06, 0.04, None, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # 0.5 × 2 capped at 1; monotone
    assert paired_test([0.1])["p"] is None and paired_test([0.1, 0.1])["t"] is None


def test_welch_against_hand_computed_values_and_scipy():
    from scipy import stats

    from keras_mulrnn.analysis.statistics import welch_test

    a = [0.02, 0.03, 0.01, 0.04, 0.00]  # mean 0.02, variance 0.00025
    b = [-0.01, 0.01, -0.03, 0.05, -0.02, 0.00]  # mean 0.0, variance 0.00080
    # se = √(0.00025/5 + 0.0008/6) = √(0.00005 + 0.000133333) = 0.0135401;
    # df = 0.000183333² / (0.00005²/4 + 0.000133333²/5) = 3.3611e-8 / 4.1806e-9 = 8.0399.
    result = welch_test(a, b)
    assert result["difference"] == pytest.approx(-0.02)
    assert result["t"] == pytest.approx(-0.02 / 0.0135401, rel=1e-5)
    assert result["df"] == pytest.approx(8.0399, rel=1e-4)
    reference = stats.ttest_ind(b, a, equal_var=False)
    assert result["t"] == pytest.approx(reference.statistic, rel=1e-9)
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-9)
    half = stats.t.ppf(0.975, result["df"]) * 0.0135401
    assert (result["ci95_low"], result["ci95_high"]) == pytest.approx(
        (-0.02 - half, -0.02 + half), rel=1e-4)
    assert welch_test([0.1], b)["p"] is None and welch_test([1, 1], [2, 2])["t"] is None


def test_the_trend_of_an_effect_between_two_budgets_is_welchs_difference(tmp_path):
    """Two finished studies' tables (given in either order): each test at both budgets,
    and its change from the smaller to the larger with Welch's interval (scipy's)."""
    from scipy import stats

    def finished(name, budget, differences):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "study.json").write_text(json.dumps({"arms": [
            {"family": family, "sharing": sharing, "level": level,
             "recurrent_params": budget[family] + extra}
            for family in ("lstm", "gru")
            for sharing, level, extra in (("additive", "budget", 7), ("shared", "k_s", 0))]}))
        rows = [{"family": family, "comparison": name_, "kind": kind, "differences":
                 " ".join(f"{v:+.4f}" for v in values), "mean": np.mean(values),
                 "ci95_low": -1.0, "ci95_high": 1.0}
                for family, name_, kind, values in differences]
        with open(directory / "comparisons.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return directory

    small = finished("small", {"lstm": 102_912, "gru": 82_304},
                     [("lstm", "sharing", "test", [0.02, 0.03, 0.01, 0.04, 0.0]),
                      ("lstm", "rank", "test", [-0.03, -0.04, -0.02]),
                      ("lstm", "simple", "descriptive", [0.1, 0.2]),
                      ("gru", "sharing", "test", [0.01, 0.02])])
    large = finished("large", {"lstm": 287_616, "gru": 230_000},
                     [("lstm", "sharing", "test", [-0.01, 0.01, -0.03, 0.05, -0.02, 0.0]),
                      ("lstm", "simple", "descriptive", [0.3, 0.1]),
                      ("gru", "sharing", "test", [0.0, 0.01])])
    rows = study.write_trend(large, small, tmp_path)
    # The tests both studies have, each family at its own budgets.
    assert [(row["family"], row["comparison"]) for row in rows] == [("lstm", "sharing"),
                                                                    ("gru", "sharing")]
    assert (rows[1]["budget_small"], rows[1]["budget_large"]) == (82_304, 230_000)
    assert rows[1]["change"] == pytest.approx(-0.01)
    row = rows[0]
    assert (row["budget_small"], row["budget_large"]) == (102_912, 287_616)
    assert (row["mean_small"], row["mean_large"]) == pytest.approx((0.02, 0.0))
    assert row["change"] == pytest.approx(-0.02)
    reference = stats.ttest_ind([-0.01, 0.01, -0.03, 0.05, -0.02, 0.0],
                                [0.02, 0.03, 0.01, 0.04, 0.0], equal_var=False)
    assert row["change_p"] == pytest.approx(reference.pvalue, rel=1e-6)
    assert row["change_ci95_low"] < -0.02 < row["change_ci95_high"]
    assert "| lstm | sharing | 102,912 |" in (tmp_path / "trend.md").read_text()
    assert (tmp_path / "trend.csv").exists()
    with pytest.raises(ValueError, match="no comparisons.csv: finish that study"):
        study.trend_rows(small, tmp_path)
