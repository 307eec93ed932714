"""Where an effect goes as the models grow: the same design at two budgets, side by side.

Each comparison of a study is a set of per-seed differences (`comparisons.csv`). Across two
studies of the same design at different budgets the seeds do not pair (they are other
models), so the change of an effect from the smaller budget to the larger one is the
difference of two independent means, with Welch's interval
(`keras_mulrnn.analysis.statistics.welch_test`). Only the tests of the design (rows of kind
`test`) are compared, each family with itself.
"""

import csv
import os

from keras_mulrnn.analysis.statistics import welch_test
from keras_mulrnn.analysis.study.design import STUDY_FILE
from keras_mulrnn.analysis.study.report import table
from keras_mulrnn.lm import files

TREND_COLUMNS = ["family", "comparison", "budget_small", "mean_small", "ci95_small",
                 "budget_large", "mean_large", "ci95_large", "change", "change_ci95_low",
                 "change_ci95_high", "change_p"]


def trend_rows(study_a, study_b):
    """The rows of `TREND_COLUMNS` for the comparisons that two finished studies (their
    output directories, either order) both tested: each effect at the smaller and the
    larger budget, and its change (larger − smaller) with Welch's 95% interval and p."""
    tests = {path: _tests(path) for path in (study_a, study_b)}  # (the files' checks first)
    budgets = {path: _budgets(path) for path in (study_a, study_b)}
    rows = []
    for key in tests[study_a]:
        if key not in tests[study_b]:
            continue
        family = key[0]
        (small_budget, small), (large_budget, large) = sorted(
            (budgets[path][family], path) for path in (study_a, study_b))
        small_row, large_row = tests[small][key], tests[large][key]
        change = welch_test(small_row["values"], large_row["values"])
        rows.append({
            "family": key[0], "comparison": key[1],
            "budget_small": small_budget, "mean_small": small_row["mean"],
            "ci95_small": small_row["ci95"],
            "budget_large": large_budget, "mean_large": large_row["mean"],
            "ci95_large": large_row["ci95"],
            "change": change["difference"], "change_ci95_low": change["ci95_low"],
            "change_ci95_high": change["ci95_high"], "change_p": change["p"]})
    if not rows:
        raise ValueError(f"{study_a!r} and {study_b!r} have no comparison in common: give "
                         f"two studies of the same design and families.")
    return rows


def write_trend(study_a, study_b, output_dir):
    """Writes `trend.csv` and `trend.md` into `output_dir`; returns the rows."""
    rows = trend_rows(study_a, study_b)
    files.write_csv(os.path.join(output_dir, "trend.csv"), TREND_COLUMNS,
                    [{c: row.get(c) for c in TREND_COLUMNS} for row in rows])
    files.write_text(os.path.join(output_dir, "trend.md"), "\n".join([
        "# The effects at two budgets",
        "",
        f"Studies: `{study_a}`, `{study_b}`. Each effect's mean per-seed difference (test "
        "BPC; negative favours the first-named side) with its paired 95% interval at each "
        "budget (recurrent weights of the shared cell), and its change from the smaller "
        "budget to the larger with Welch's 95% interval and p (seeds do not pair across "
        "budgets; uncorrected).",
        "",
        table(TREND_COLUMNS, rows),
    ]) + "\n")
    return rows


def _budgets(output_dir):
    """Family → the study's budget for it: the recurrent weights of its shared cell at the
    base's rank (or, without one, of its first arm)."""
    budgets = {}
    for arm in files.read_json(os.path.join(output_dir, STUDY_FILE))["arms"]:
        if (arm["sharing"], arm["level"]) == ("shared", "k_s") or arm["family"] not in budgets:
            budgets[arm["family"]] = arm["recurrent_params"]
    return budgets


def _tests(output_dir):
    """(family, comparison) → the per-seed differences, mean and interval of each test of
    a finished study (its `comparisons.csv`)."""
    path = os.path.join(output_dir, "comparisons.csv")
    if not os.path.exists(path):
        raise ValueError(f"{output_dir!r} has no comparisons.csv: finish that study first "
                         f"(its command writes the tables when its last run is done).")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    tests = {}
    for row in rows:
        if row["kind"] != "test" or not row["differences"]:
            continue
        low, high = row["ci95_low"], row["ci95_high"]
        tests[row["family"], row["comparison"]] = {
            "values": [float(value) for value in row["differences"].split()],
            "mean": float(row["mean"]),
            "ci95": f"{float(low):+.4f} … {float(high):+.4f}" if low and high else None}
    return tests
