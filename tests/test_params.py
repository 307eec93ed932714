"""Parameter counts against DESIGN.md's formulas and `count_params()`; budget matching."""

import keras
import pytest

import keras_mulrnn as km


def design_formula(family, groups, d, n, k):
    """DESIGN.md section 2, verbatim."""
    if family == "lstm":
        return groups * (d * k + n * k) + 4 * d * n + 4 * k * n + 4 * n
    if family == "gru":
        return groups * (d * k + n * k) + 3 * d * n + 3 * k * n + 3 * n
    return d * k + n * k + d * n + k * n + n


CASES = [
    ("lstm", "shared", 1), ("lstm", "unshared", 4), ("lstm", (("i", "f", "o"), ("u",)), 2),
    ("gru", "shared", 1), ("gru", "unshared", 3), ("gru", (("z", "r"), ("h",)), 2),
    ("rnn", "shared", 1),
]


@pytest.mark.parametrize("family,sharing,groups", CASES)
@pytest.mark.parametrize("d,n,k", [(64, 512, 512), (7, 10, 3), (5, 6, 11)])
def test_count_equals_formula_and_keras(family, sharing, groups, d, n, k):
    want = design_formula(family, groups, d, n, k)
    assert km.count_params(family, sharing, n, d, k) == want
    layer = km.make_layer(family, sharing, units=n, rank=k)
    model = keras.Sequential([keras.Input((3, d)), layer])
    assert model.count_params() == want


@pytest.mark.parametrize("family,gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_additive_and_weight_norm_and_no_bias_counts(family, gates):
    d, n, k = 9, 12, 7
    additive = gates * (d * n + n * n + n)
    assert km.count_params(family, "additive", n, d) == additive
    assert km.count_params(family, "additive", n, d, weight_norm=True) == additive + 2 * gates * n
    shared = design_formula(family, 1, d, n, k)
    assert km.count_params(family, "shared", n, d, k, weight_norm=True) == (
        shared + 2 * gates * n + 2 * k)
    assert km.count_params(family, "shared", n, d, k, use_bias=False) == shared - gates * n
    for options in ({"weight_norm": True}, {"use_bias": False}, {}):
        for sharing, rank in (("additive", None), ("shared", k)):
            layer = km.make_layer(family, sharing, units=n, rank=rank, **options)
            model = keras.Sequential([keras.Input((3, d)), layer])
            assert model.count_params() == km.count_params(family, sharing, n, d, rank, **options)


def test_mlstm_table_of_the_note():
    """mLSTM at n=512, d=64, k=512: shared vs unshared (the closing note's table)."""
    assert km.count_params("lstm", "shared", 512, 64, 512) == 1 * (64 * 512 + 512 * 512) + (
        4 * 64 * 512 + 4 * 512 * 512 + 4 * 512) == 1_476_608
    assert km.count_params("lstm", "unshared", 512, 64, 512) == 2_361_344
    assert km.count_params("lstm", "additive", 512, 64) == 1_181_696


@pytest.mark.parametrize("family,sharing", [
    ("lstm", "unshared"), ("lstm", (("i", "f", "o"), ("u",))), ("gru", "unshared"),
])
@pytest.mark.parametrize("n,d", [(512, 64), (128, 50), (40, 205)])
def test_matching_rank_equalizes_budgets(family, sharing, n, d):
    target = km.count_params(family, "shared", n, d)
    rank = km.matching_rank(family, sharing, n, d, like="shared")
    assert rank < n
    got = km.count_params(family, sharing, n, d, rank)
    assert abs(got - target) / target < 0.01


@pytest.mark.parametrize("family,sharing", [
    ("lstm", "additive"), ("lstm", "shared"), ("lstm", "unshared"), ("gru", "additive"),
    ("rnn", "shared"),
])
def test_units_for_budget(family, sharing):
    budget = 300_000
    units = km.units_for_budget(family, sharing, 64, budget)
    rank = None if sharing == "additive" else units
    assert abs(km.count_params(family, sharing, units, 64, rank) - budget) / budget < 0.01


def test_budget_errors_are_clear():
    with pytest.raises(ValueError, match="budget=10"):
        km.rank_for_budget("lstm", "shared", 512, 64, 10)
    with pytest.raises(ValueError, match="units_for_budget"):
        km.rank_for_budget("lstm", "additive", 512, 64, 10**6)
    with pytest.raises(ValueError, match="family='transformer'"):
        km.count_params("transformer", "shared", 8, 8)


@pytest.mark.parametrize("family,sharing", [("lstm", "shared"), ("gru", "additive")])
def test_a_budget_below_one_unit_is_refused(family, sharing):
    """As a rank below 1 is (the tuner once trained one-unit models from such a budget)."""
    smallest = km.count_params(family, sharing, 1, 64, None if sharing == "additive" else 1)
    assert km.units_for_budget(family, sharing, 64, smallest) == 1
    with pytest.raises(ValueError, match="at one unit. Give a larger budget"):
        km.units_for_budget(family, sharing, 64, smallest - 1)


@pytest.mark.parametrize("family,sharing", [("lstm", "shared"), ("lstm", "additive"),
                                            ("gru", "unshared")])
def test_a_budget_whose_nearest_size_is_far_from_it_is_refused(family, sharing):
    """Where one more unit (or rank) changes the count by much more than 10%, cells of
    different parametrizations cannot be made the same size: refused, not trained."""
    def count(units):
        return km.count_params(family, sharing, units, 8,
                               None if sharing == "additive" else max(1, round(units / 4)))

    units = next(n for n in range(1, 100) if count(n + 1) > 1.25 * count(n))
    budget = (count(units) + count(units + 1)) // 2  # more than 10% from either
    with pytest.raises(ValueError, match=r"nearest to it .* away: at this size one step is too "
                                         r"coarse.*Give a larger budget"):
        km.units_for_budget(family, sharing, 8, budget, rank_ratio=0.25)
    exact = count(40)
    assert km.units_for_budget(family, sharing, 8, exact, rank_ratio=0.25) == 40


def test_a_rank_far_from_the_budget_is_refused():
    def count(rank):
        return km.count_params("lstm", "shared", 1, 8, rank)

    budget = count(1) + (count(2) - count(1)) // 2  # a rank step is ~25% at one unit
    assert (count(2) - count(1)) / count(1) > 0.2
    with pytest.raises(ValueError, match="rank [12]\\) has .* away"):
        km.rank_for_budget("lstm", "shared", 1, 8, budget)
    assert km.rank_for_budget("lstm", "shared", 64, 8,
                              km.count_params("lstm", "shared", 64, 8, 30)) == 30


def mogrifier_formula(d, n, rounds, rank):
    """DESIGN.md, "The Mogrifier": odd rounds map h (n) to x (d), even ones x to h; a rank-k
    round is two factors. Gains (weight normalization): one per output column."""
    weights = gains = 0
    for i in range(1, rounds + 1):
        rows, columns = (n, d) if i % 2 else (d, n)
        if rank is None:
            weights, gains = weights + rows * columns, gains + columns
        else:
            weights += rows * rank + rank * columns
            gains += rank + columns
    return weights, gains


@pytest.mark.parametrize("family,gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("rounds,mogrifier_rank", [(0, None), (1, None), (4, None), (5, 3),
                                                   (6, 20)])
@pytest.mark.parametrize("sharing", ["integration", "additive", "unshared"])
def test_integration_and_mogrifier_counts(family, gates, rounds, mogrifier_rank, sharing):
    """Integration: the additive cell plus `α, β₁, β₂` (3 per pre-activation); the
    Mogrifier: its rounds' matrices; against Keras's count of the built layers."""
    d, n, k = 9, 12, 7
    rank = k if sharing == "unshared" else None
    if sharing == "unshared":
        groups = gates
        base = groups * (d * k + n * k) + gates * (d * n + k * n + n)
        base_gains = 2 * gates * n + 2 * groups * k
    else:
        base = gates * (d * n + n * n + n) + (3 * gates * n if sharing == "integration" else 0)
        base_gains = 2 * gates * n
    weights, gains = mogrifier_formula(d, n, rounds, mogrifier_rank)
    options = dict(mogrifier_rounds=rounds, mogrifier_rank=mogrifier_rank if rounds else None)
    assert km.count_params(family, sharing, n, d, rank, **options) == base + weights
    assert km.count_params(family, sharing, n, d, rank, weight_norm=True, **options) == (
        base + weights + base_gains + gains)
    for weight_norm in (False, True):
        layer = km.make_layer(family, sharing, units=n, rank=rank, weight_norm=weight_norm,
                              **options)
        model = keras.Sequential([keras.Input((3, d)), layer])
        assert model.count_params() == km.count_params(family, sharing, n, d, rank,
                                                       weight_norm=weight_norm, **options)


def test_budgets_for_integration_and_the_mogrifier():
    budget = 300_000
    units = km.units_for_budget("lstm", "integration", 64, budget)
    assert abs(km.count_params("lstm", "integration", units, 64) - budget) / budget < 0.01
    units = km.units_for_budget("lstm", "additive", 64, budget, mogrifier_rounds=5,
                                mogrifier_rank=24)
    count = km.count_params("lstm", "additive", units, 64, mogrifier_rounds=5,
                            mogrifier_rank=24)
    assert abs(count - budget) / budget < 0.01
    rank = km.rank_for_budget("lstm", "shared", 128, 32, budget, mogrifier_rounds=4)
    count = km.count_params("lstm", "shared", 128, 32, rank, mogrifier_rounds=4)
    assert abs(count - budget) / budget < 0.01
    with pytest.raises(ValueError, match="integration cell has no rank"):
        km.rank_for_budget("lstm", "integration", 128, 32, budget)
