"""The sharing study: does mLSTM (or mGRU) owe its strength to the shared intermediate state?

A study is a set of *arms* per family, each a copy of one base `TrainConfig` that differs only
in its parametrization, its size knob (the rank of a multiplicative cell, the units of an
additive one), its learning rate and its seed. Two designs:

- `"budget"`: the given parametrizations (additive, shared, unshared by default) at one
  recurrent-weight budget, the shared cell's at the base's units and rank. The unshared cell
  pays for its `G` factorizations with a smaller rank `k_u`, so sharing and "a larger rank per
  intermediate state" are confounded.
- `"factorial"`: separates the two. A 2 × 2 of sharing (shared, unshared) × rank (the shared
  cell's `k_s`, the equal-budget unshared rank `k_u`): `shared@k_s` (the budget),
  `unshared@k_u` (equal budget), `unshared@k_s` (more weights), `shared@k_u` (fewer), plus
  the additive control at the budget. (mRNN has one transform: shared and additive only.)
- `"families"`: the paper's cell beside its relatives at the shared cell's budget: `shared`
  (the multiplicative cell), `additive`, `integration` (multiplicative integration),
  `mogrifier` (the additive cell with the Mogrifier) and `mogrifier-shared` (the
  multiplicative cell with it: the combination). The cells without a rank are sized by
  their units, the multiplicative ones by their rank at the base's units; the Mogrifier has
  the base's rounds and rank, or `FAMILIES_MOGRIFIER_ROUNDS` full-rank rounds.

**Learning rate per arm.** With a grid of rates, every arm trains its first seed at each rate;
the rate with the lowest *validation* BPC is the arm's (the test split is never read for it),
and that run counts as the arm's first seed; the other seeds train at that rate. The chosen
rate must be interior to the rates tried: while the best is at an edge, the grid grows on that
side (`bracket`), so that every arm is tuned as well as the grid allows, not held at a wall.
A rate at which any seed diverges (a NaN, or no better than a uniform guess) is dropped with
every rate above it, and the selection goes on (`rate_search`): arms are compared where all
their seeds train. Rates chosen elsewhere (another study's `selection.json`) can be given
instead.

**Comparisons**, on the test split only, between runs of the same seed (same data order and
initialization scheme): per-seed differences, their mean, 95% t-interval, a paired t-test,
Holm's correction over the family of tests reported for one model family on one corpus, and
the effect size `d_z` (`keras_mulrnn.analysis.statistics`).

`run_study` trains what is not finished: a rerun skips finished runs and resumes interrupted
ones, and several processes given the same command share the work (each run's directory is
held by one process at a time; the others move on). `summarize` writes the tables and plots.
"""

from keras_mulrnn.analysis.study.comparisons import (
    BUDGET_TESTS,
    COMPARISON_COLUMNS,
    FACTORIAL_TESTS,
    FAMILIES_TESTS,
    SIMPLE_EFFECTS,
    comparison_rows,
)
from keras_mulrnn.analysis.study.design import (
    BRACKET_FACTOR,
    BRACKET_LIMIT,
    DESIGNS,
    FAMILIES_MOGRIFIER_ROUNDS,
    FAMILY_ARMS,
    PARAMETRIZATIONS,
    SELECTION_FILE,
    STUDY_FILE,
    Arm,
    StudyRun,
    bracket,
    budget_of,
    plan_arms,
    plan_runs,
    sized_config,
    study_run,
)
from keras_mulrnn.analysis.study.report import ARM_COLUMNS, arm_rows, collect, summarize
from keras_mulrnn.analysis.study.runner import (
    TAKEN,
    analyse_run,
    rate_search,
    remaining_time,
    run_study,
    select_rates,
)
from keras_mulrnn.analysis.study.trend import TREND_COLUMNS, trend_rows, write_trend

__all__ = [
    "TREND_COLUMNS",
    "trend_rows",
    "write_trend",
    "ARM_COLUMNS",
    "arm_rows",
    "collect",
    "summarize",
    "BUDGET_TESTS",
    "COMPARISON_COLUMNS",
    "FACTORIAL_TESTS",
    "FAMILIES_TESTS",
    "SIMPLE_EFFECTS",
    "comparison_rows",
    "BRACKET_FACTOR",
    "BRACKET_LIMIT",
    "DESIGNS",
    "FAMILIES_MOGRIFIER_ROUNDS",
    "FAMILY_ARMS",
    "PARAMETRIZATIONS",
    "SELECTION_FILE",
    "STUDY_FILE",
    "Arm",
    "StudyRun",
    "bracket",
    "budget_of",
    "plan_arms",
    "plan_runs",
    "sized_config",
    "study_run",
    "TAKEN",
    "analyse_run",
    "rate_search",
    "remaining_time",
    "run_study",
    "select_rates",
]
