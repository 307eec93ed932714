"""Exact parameter counts (docs/DESIGN.md, "Parameter counts") and ranks or sizes for an
equal budget.

With `N` gates, `G` groups, input size `d`, `n` units and rank `k`:

    multiplicative:  G·(d·k + n·k) + N·d·n + N·k·n + N·n
    additive:        N·d·n + N·n·n + N·n
    integration:     N·d·n + N·n·n + N·n + 3·N·n       (α, β₁, β₂)

(the `N·n` is the biases). The Mogrifier's `r` rounds add `r·d·n` (full matrices) or
`r·k_m·(d + n)` (factors of rank `k_m`). Weight normalization adds one gain per output column
of every matrix: `2·N·n + 2·G·k` multiplicative, `2·N·n` additive or integration, and for the
Mogrifier's rounds `⌈r/2⌉·d + ⌊r/2⌋·n` (plus `r·k_m` at a rank). The counts follow from the
equations alone; the tests check them against `model.count_params()`.
"""

from keras_mulrnn.cells import resolve_groups
from keras_mulrnn.factory import cell_class, transition_arguments

# How far a size derived from a budget may be from it: beyond this, one step of the units
# or the rank is too coarse for models that differ in their parametrization to count as
# the same size.
BUDGET_TOLERANCE = 0.10


def count_params(
    family, parametrization, units, input_dim, rank=None, use_bias=True, weight_norm=False,
    mogrifier_rounds=0, mogrifier_rank=None,
):
    """The number of weights of one cell, biases and weight-norm gains included."""
    gates = len(cell_class(family).gate_names)
    arguments = transition_arguments(family, parametrization)
    n, d = units, input_dim
    count = gates * d * n + (gates * n if use_bias else 0)
    gains = 2 * gates * n if weight_norm else 0
    count += mogrifier_params(units, input_dim, mogrifier_rounds, mogrifier_rank, weight_norm)
    if arguments["transition"] in ("additive", "integration"):
        count += gates * n * n
        if arguments["transition"] == "integration":
            count += 3 * gates * n
    else:
        k = units if rank is None else rank
        groups = len(resolve_groups(cell_class(family).gate_names, arguments["sharing"]))
        count += groups * (d * k + n * k) + gates * k * n
        gains += 2 * groups * k if weight_norm else 0
    return count + gains


def mogrifier_params(units, input_dim, rounds, rank=None, weight_norm=False):
    """The Mogrifier's weights: one matrix per round (or its two factors at `rank`), odd
    rounds mapping the state to the input's size, even rounds the input to the state's."""
    n, d = units, input_dim
    count = rounds * (d * n if rank is None else rank * (d + n))
    if weight_norm:
        count += (rounds + 1) // 2 * d + rounds // 2 * n + (0 if rank is None else rounds * rank)
    return count


def stack_params(family, parametrization, units, input_dim, rank=None, num_layers=1,
                 use_bias=True, weight_norm=False, mogrifier_rounds=0, mogrifier_rank=None):
    """The parameters of `num_layers` stacked cells (the first reads `input_dim`, the others
    the `units` of the layer below)."""
    return sum(
        count_params(family, parametrization, units, input_dim if index == 0 else units, rank,
                     use_bias, weight_norm, mogrifier_rounds, mogrifier_rank)
        for index in range(num_layers)
    )


def rank_for_budget(
    family, parametrization, units, input_dim, budget, use_bias=True, weight_norm=False,
    num_layers=1, mogrifier_rounds=0, mogrifier_rank=None,
):
    """The rank that brings `num_layers` multiplicative cells closest to `budget` parameters
    (the Mogrifier's weights, if any, counted at their own fixed rank).

    Raises `ValueError` if even rank 1 exceeds the budget, or for an additive or integration
    parametrization (it has no rank: use `units_for_budget`).
    """
    transition = transition_arguments(family, parametrization)["transition"]
    if transition != "multiplicative":
        raise ValueError(
            f"An {transition} cell has no rank to adjust; use `units_for_budget` to size it."
        )

    def count(rank):
        return stack_params(family, parametrization, units, input_dim, rank, num_layers,
                            use_bias, weight_norm, mogrifier_rounds, mogrifier_rank)

    per_rank = count(2) - count(1)  # the count is linear in the rank
    rank = max(1, round((budget - count(1)) / per_rank) + 1)
    if count(rank) > budget and rank == 1:
        raise ValueError(
            f"Invalid value for argument `budget`: received budget={budget}, but a "
            f"{family}/{parametrization} cell with units={units} and input_dim={input_dim} "
            f"has {count(1)} parameters at rank 1. Give a larger budget or fewer units."
        )
    _check_near(budget, count(rank), f"rank {rank}", f"{family}/{parametrization}")
    return rank


def matching_rank(family, parametrization, units, input_dim, like="shared", like_rank=None):
    """The rank at which `parametrization` has the parameter count of `like` at `like_rank`.

    E.g. `matching_rank("lstm", "unshared", 512, 64)` is the rank of an unshared mLSTM as large
    as a shared one of rank 512.
    """
    budget = count_params(family, like, units, input_dim, like_rank)
    return rank_for_budget(family, parametrization, units, input_dim, budget)


def units_for_budget(family, parametrization, input_dim, budget, rank_ratio=1.0,
                     num_layers=1, weight_norm=False, mogrifier_rounds=0, mogrifier_rank=None):
    """The number of units that brings `num_layers` cells closest to `budget` parameters.

    Multiplicative cells keep `rank = max(1, round(rank_ratio · units))`; the Mogrifier's
    rank stays `mogrifier_rank`. Raises `ValueError` if even one unit exceeds the budget (as
    `rank_for_budget` does for rank 1).
    """
    if budget <= 0:
        raise ValueError(
            f"Invalid value for argument `budget`: received budget={budget}. "
            f"Allowed: a positive integer."
        )
    factored = transition_arguments(family, parametrization)["transition"] == "multiplicative"

    def count(units):
        rank = max(1, round(rank_ratio * units)) if factored else None
        return stack_params(family, parametrization, units, input_dim, rank, num_layers,
                            weight_norm=weight_norm, mogrifier_rounds=mogrifier_rounds,
                            mogrifier_rank=mogrifier_rank)

    if count(1) > budget:
        raise ValueError(
            f"Invalid value for argument `budget`: received budget={budget}, but a "
            f"{family}/{parametrization} cell with input_dim={input_dim} has {count(1)} "
            f"parameters at one unit. Give a larger budget.")
    low, high = 1, 1
    while count(high) < budget:
        low, high = high, high * 2
    while high - low > 1:  # the count grows with the units: bisect
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) < budget else (low, middle)
    units = min((low, high), key=lambda units: abs(count(units) - budget))
    _check_near(budget, count(units), f"{units} units", f"{family}/{parametrization}")
    return units


def _check_near(budget, count, size, cell):
    if abs(count - budget) > BUDGET_TOLERANCE * budget:
        raise ValueError(
            f"Invalid value for argument `budget`: received budget={budget}, but the "
            f"{cell} cell nearest to it ({size}) has {count} parameters, "
            f"{abs(count - budget) / budget:.0%} away: at this size one step is too coarse "
            f"for cells of different parametrizations to be the same size (within "
            f"{BUDGET_TOLERANCE:.0%}). Give a larger budget.")
