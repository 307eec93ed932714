"""What a study is: its arms (one design each), its runs and their names, and the rule that
chooses each arm's learning rate (`bracket`). Nothing here reads or writes a file."""

import dataclasses
import math

from keras_mulrnn.factory import UNFACTORED, transition_arguments
from keras_mulrnn.lm.config import TrainConfig, recurrent_params
from keras_mulrnn.params import rank_for_budget, units_for_budget
from keras_mulrnn.validation import check_choice, check_positive_int, check_positive_number


DESIGNS = ("budget", "factorial", "families")
PARAMETRIZATIONS = ("additive", "shared", "unshared")
STUDY_FILE, SELECTION_FILE = "study.json", "selection.json"
# A chosen rate must be interior to the rates tried: the grid grows by this factor on the
# side of its best rate, one first-seed run at a time, at most this many times on a side.
BRACKET_FACTOR, BRACKET_LIMIT = 2.0, 4
# The Mogrifier's rounds in the families design when the base has none: the paper's tuned
# character-level (Penn Treebank) setting. At this package's study sizes a rank-24
# factorization would cost as much as the full matrices, so they are full.
FAMILIES_MOGRIFIER_ROUNDS = 4
# The families design's arms, in the order of its tables: the paper's cell first.
FAMILY_ARMS = ("shared", "additive", "integration", "mogrifier", "mogrifier-shared")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of a study: a family, a parametrization at one size, and its role in the
    design (`sharing`: shared, unshared or additive; `level`: "k_s" for the shared cell's
    rank, "k_u" for the equal-budget unshared rank, "budget" for an additive cell)."""

    family: str
    name: str
    sharing: str
    level: str
    config: TrainConfig

    @property
    def key(self):
        return f"{self.family}/{self.name}"


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One training run: its directory name, its arm and its full configuration."""

    name: str
    arm: Arm
    config: TrainConfig


def budget_of(base, family):
    """The default budget: the recurrent weights of a shared cell at the base's size (its
    Mogrifier, if the base has one, included)."""
    return recurrent_params(dataclasses.replace(base, family=family, parametrization="shared"))


def sized_config(base, family, parametrization, budget=None, rank=None):
    """`base` with this family and parametrization, at `rank`, or else sized to `budget`
    recurrent weights (the rank of a multiplicative cell; the units of a cell without one),
    with the base's Mogrifier, if any, counted."""
    mogrifier = dict(mogrifier_rounds=base.mogrifier_rounds,
                     mogrifier_rank=base.mogrifier_rank)
    if transition_arguments(family, parametrization)["transition"] in UNFACTORED:
        units = units_for_budget(family, parametrization, base.embedding_dim, budget,
                                 num_layers=base.num_layers, weight_norm=base.weight_norm,
                                 **mogrifier)
        return dataclasses.replace(base, family=family, parametrization=parametrization,
                                   units=units, rank=None)
    if rank is None:
        rank = rank_for_budget(family, parametrization, base.units, base.embedding_dim, budget,
                               weight_norm=base.weight_norm, num_layers=base.num_layers,
                               **mogrifier)
    return dataclasses.replace(base, family=family, parametrization=parametrization,
                               rank=rank)


def plan_arms(base, families=("lstm", "gru"), design="budget",
              parametrizations=PARAMETRIZATIONS, budget=None):
    """The arms of a study (see the module docstring). `budget` (recurrent weights) defaults
    to the shared cell's at the base's units and rank; `parametrizations` are the budget
    design's."""
    check_choice("design", design, DESIGNS)
    if budget is not None:
        check_positive_int("budget", budget)
    arms = []
    for family in families:
        if design == "families":  # the budget of the paper's cell, without a Mogrifier
            plain = dataclasses.replace(base, mogrifier_rounds=0, mogrifier_rank=None)
            arms += _family_arms(base, family, budget or budget_of(plain, family))
            continue
        family_budget = budget or budget_of(base, family)
        shared = sized_config(base, family, "shared", family_budget)
        if design == "budget":
            for parametrization in parametrizations:
                if family == "rnn" and parametrization == "unshared":
                    continue  # one transform: the same cell as shared
                config = sized_config(base, family, parametrization, family_budget)
                arguments = transition_arguments(family, parametrization)
                # (Additive and integration cells have no sharing: their role is the
                # transition, at the budget.)
                sharing = arguments.get("sharing", arguments["transition"])
                level = ("budget" if sharing in UNFACTORED
                         else "k_s" if sharing == "shared" else "k_u")
                arms.append(Arm(family, str(parametrization), str(sharing), level, config))
            continue
        k_s = shared.rank
        arms.append(Arm(family, f"shared@{k_s}", "shared", "k_s", shared))
        if family != "rnn":
            k_u = sized_config(base, family, "unshared", family_budget).rank
            arms += [
                Arm(family, f"unshared@{k_u}", "unshared", "k_u",
                    sized_config(base, family, "unshared", rank=k_u)),
                Arm(family, f"unshared@{k_s}", "unshared", "k_s",
                    sized_config(base, family, "unshared", rank=k_s)),
                Arm(family, f"shared@{k_u}", "shared", "k_u",
                    sized_config(base, family, "shared", rank=k_u)),
            ]
        arms.append(Arm(family, "additive", "additive", "budget",
                        sized_config(base, family, "additive", family_budget)))
    keys = [arm.key for arm in arms]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"The study's arms repeat ({', '.join(repeated)}): give each family "
                         f"and parametrization once.")
    for arm in arms:
        arm.config.validate()
    return arms


def family_role(name):
    """An arm's role `(sharing, level)` in the families design: each at the budget, the
    shared cell as the budget's own (`k_s`)."""
    return name, "k_s" if name == "shared" else "budget"


def _family_arms(base, family, budget):
    """The families design's arms of `family` (see the module docstring)."""
    plain = dataclasses.replace(base, mogrifier_rounds=0, mogrifier_rank=None)
    mogrified = dataclasses.replace(
        base, mogrifier_rounds=base.mogrifier_rounds or FAMILIES_MOGRIFIER_ROUNDS,
        mogrifier_rank=base.mogrifier_rank if base.mogrifier_rounds else None)
    configs = {"shared": sized_config(plain, family, "shared", budget),
               "additive": sized_config(plain, family, "additive", budget),
               "integration": sized_config(plain, family, "integration", budget),
               "mogrifier": sized_config(mogrified, family, "additive", budget),
               "mogrifier-shared": sized_config(mogrified, family, "shared", budget)}
    return [Arm(family, name, *family_role(name), configs[name]) for name in FAMILY_ARMS]


def plan_runs(arms, seeds, rates, chosen=None, explored=None):
    """The runs of a study so far: with several `rates`, every arm's first seed at each rate
    (or at each rate of `explored`, arm key → the rates its selection has tried or needs),
    then, for the arms whose rate is in `chosen` (arm key → rate), the other seeds at it; with
    one rate (or every arm in `chosen`), every seed at that rate."""
    check_positive_int("seeds", seeds)
    for rate in rates:
        check_positive_number("learning_rate", rate)
    chosen, explored = chosen or {}, explored or {}
    runs = []
    for arm in arms:
        first = arm.config.seed
        if arm.key in chosen:
            grid, rest = [chosen[arm.key]], chosen[arm.key]
        elif len(rates) == 1:
            grid, rest = list(rates), rates[0]
        else:
            grid, rest = sorted(explored.get(arm.key, rates)), None
        runs += [study_run(arm, rate, first) for rate in grid]
        if rest is not None:
            runs += [study_run(arm, rest, first + index) for index in range(1, seeds)]
    return runs


def study_run(arm, rate, seed):
    config = dataclasses.replace(arm.config, learning_rate=rate, seed=seed)
    return StudyRun(f"{arm.family}-{arm.name}-lr{rate:g}-seed{seed}", arm, config)


def bracket(rates, valid):
    """One step of an arm's rate selection. `rates` is the study's grid; `valid` maps each
    rate whose first-seed run has finished to its validation BPC (`math.inf`: a seed diverged
    at that rate, the first or any other).

    Returns `(needed, chosen, how)`. Until every rate of the grid has a run, `needed` is the
    rates without one. Then the rate with the lowest validation BPC is chosen only if it is
    interior (`how` "interior"): one at the grid's edge is no choice, so the grid grows on
    that side by `BRACKET_FACTOR` (`needed` is the new rate) until the best is interior, or
    the rate beyond the best diverges ("divergence": a diverged run is never chosen), or the
    grid has grown `BRACKET_LIMIT` times on that side ("limit": said so in the report). A
    grid of one rate is the user's fixed rate ("given"), never searched."""
    if len(rates) == 1:
        return [], rates[0], "given"
    missing = [rate for rate in rates if rate not in valid]
    if missing:
        return missing, None, None
    grid = sorted(rates)
    while True:
        finite = [rate for rate in grid if math.isfinite(valid[rate])]
        best = min(finite, key=valid.get) if finite else None
        if best is not None and grid[0] < best < grid[-1]:
            return [], best, "interior"
        upwards = best is not None and best == grid[-1]
        edge = grid[-1] if upwards else grid[0]
        grown = sum(1 for rate in grid if (rate > max(rates) if upwards else rate < min(rates)))
        if grown == BRACKET_LIMIT:
            if best is None:
                raise FloatingPointError(
                    f"Every rate from {grid[0]:g} to {grid[-1]:g} diverged: give a grid of "
                    f"smaller rates.")
            return [], best, "limit"
        beyond = float(f"{edge * BRACKET_FACTOR if upwards else edge / BRACKET_FACTOR:.6g}")
        if beyond not in valid:
            return [beyond], None, None
        if upwards and not math.isfinite(valid[beyond]):
            return [], best, "divergence"
        grid = sorted(grid + [beyond])


def valid_bpc(results):
    return math.inf if stopped_by_nan(results) else results["valid_bpc"]


def stopped_by_nan(results):
    """Whether a run was stopped by a non-finite loss: the study records that as a string
    `diverged` (the error). A finished run's own flag (`true` when it ended no better than a
    uniform guess) is a figure like the others: such a run counts, with its BPC."""
    return isinstance(results.get("diverged"), str)


def diverged(results):
    """Whether a run failed to train: stopped by a non-finite loss, or finished no better than
    a uniform guess (its own flag). Its figures are kept; its rate is never chosen."""
    return stopped_by_nan(results) or results.get("diverged") is True
