"""The study's statistics: which comparisons each design tests, and their paired tests over
seeds, Holm-corrected within one family on one corpus (`keras_mulrnn.analysis.statistics`)."""

from keras_mulrnn.analysis.statistics import holm, paired_test
from keras_mulrnn.analysis.study.design import FAMILY_ARMS, family_role


# Each comparison: a name, and the per-seed difference from the test BPC of every arm role
# (sharing, level) of one family; negative favours the first-named side.
FACTORIAL_TESTS = [
    ("sharing, at equal rank (main effect): shared − unshared",
     lambda b: ((b["shared", "k_s"] - b["unshared", "k_s"])
                + (b["shared", "k_u"] - b["unshared", "k_u"])) / 2),
    ("rank, at equal sharing (main effect): k_s − k_u",
     lambda b: ((b["shared", "k_s"] - b["shared", "k_u"])
                + (b["unshared", "k_s"] - b["unshared", "k_u"])) / 2),
    ("sharing × rank interaction: (shared − unshared at k_s) − (at k_u)",
     lambda b: ((b["shared", "k_s"] - b["unshared", "k_s"])
                - (b["shared", "k_u"] - b["unshared", "k_u"]))),
    ("equal budget: shared@k_s − unshared@k_u",
     lambda b: b["shared", "k_s"] - b["unshared", "k_u"]),
    ("equal budget: multiplicative (shared@k_s) − additive",
     lambda b: b["shared", "k_s"] - b["additive", "budget"]),
]
SIMPLE_EFFECTS = [
    ("sharing at k_s: shared − unshared", lambda b: b["shared", "k_s"] - b["unshared", "k_s"]),
    ("sharing at k_u: shared − unshared", lambda b: b["shared", "k_u"] - b["unshared", "k_u"]),
    ("rank in shared: k_s − k_u", lambda b: b["shared", "k_s"] - b["shared", "k_u"]),
    ("rank in unshared: k_s − k_u", lambda b: b["unshared", "k_s"] - b["unshared", "k_u"]),
]
BUDGET_TESTS = [
    ("equal budget: shared − unshared", lambda b: b["shared", "k_s"] - b["unshared", "k_u"]),
    ("equal budget: shared − additive", lambda b: b["shared", "k_s"] - b["additive", "budget"]),
    ("equal budget: unshared − additive",
     lambda b: b["unshared", "k_u"] - b["additive", "budget"]),
    ("equal budget: shared − integration",
     lambda b: b["shared", "k_s"] - b["integration", "budget"]),
]
# Every pair of the families design's arms (the second named first: against the paper's cell,
# then the others), each at the budget.
FAMILIES_TESTS = [
    (f"equal budget: {first} − {second}",
     lambda roles, first=first, second=second: (roles[family_role(first)]
                                                - roles[family_role(second)]))
    for index, second in enumerate(FAMILY_ARMS) for first in FAMILY_ARMS[index + 1:]
]
COMPARISON_COLUMNS = ["family", "comparison", "kind", "seeds", "differences", "mean",
                      "ci95_low", "ci95_high", "t", "p", "p_holm", "effect_size"]


def comparison_rows(runs, plan):
    """Per family: the tests of its design (Holm-corrected together) and, for the factorial
    design, the simple effects (descriptive: uncorrected p). The design is the plan's; each
    comparison pairs the seeds that have every run it needs (`seeds` says how many)."""
    rows = []
    for family in sorted({arm["family"] for arm in plan["arms"]}):
        roles = {(arm["sharing"], arm["level"]) for arm in plan["arms"]
                 if arm["family"] == family}
        by_seed = {}
        for run in runs:
            arm = run["arm"]
            if arm["family"] == family:
                by_seed.setdefault(run["config"]["seed"], {})[arm["sharing"], arm["level"]] = \
                    run["test_bpc"]
        factorial = {("shared", "k_u"), ("unshared", "k_s")} <= roles
        families = ("integration", "budget") in roles
        tests = [(FAMILIES_TESTS if families else FACTORIAL_TESTS if factorial
                  else BUDGET_TESTS, "test"),
                 (SIMPLE_EFFECTS if factorial else [], "descriptive")]
        for group, kind in tests:
            family_rows = []
            for name, difference in group:
                values = []
                for _, by_role in sorted(by_seed.items()):
                    try:
                        values.append(difference(by_role))
                    except KeyError:  # this seed lacks a run the comparison needs
                        continue
                if not values:  # an arm this design does not have
                    continue
                family_rows.append({"family": family, "comparison": name, "kind": kind,
                                    "seeds": len(values),
                                    "differences": " ".join(f"{v:+.4f}" for v in values),
                                    **_renamed(paired_test(values))})
            if kind == "test":
                for row, adjusted in zip(family_rows, holm([r["p"] for r in family_rows])):
                    row["p_holm"] = adjusted
            rows += family_rows
    return rows


def _renamed(test):
    return {key: test[key] for key in ("mean", "ci95_low", "ci95_high", "t", "p",
                                       "effect_size")}
