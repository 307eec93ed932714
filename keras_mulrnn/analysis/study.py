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
Rates chosen elsewhere (another study's `selection.json`) can be given instead.

**Comparisons**, on the test split only, between runs of the same seed (same data order and
initialization scheme): per-seed differences, their mean, 95% t-interval, a paired t-test,
Holm's correction over the family of tests reported for one model family on one corpus, and
the effect size `d_z` (`keras_mulrnn.analysis.statistics`).

`run_study` trains what is not finished: a rerun skips finished runs and resumes interrupted
ones, and several processes given the same command share the work (each run's directory is
held by one process at a time; the others move on). `summarize` writes the tables and plots.
"""

import dataclasses
import logging
import math
import os
import time
import warnings

import numpy as np

from keras_mulrnn.analysis.statistics import holm, paired_test
from keras_mulrnn.factory import UNFACTORED, transition_arguments
from keras_mulrnn.lm import files
from keras_mulrnn.lm.config import TrainConfig, recurrent_params
from keras_mulrnn.lm.lock import DirectoryInUse, held_elsewhere, hold_directory
from keras_mulrnn.lm.training import (
    FINAL,
    RESULT_FIGURES,
    RESULTS,
    TrainingInterrupted,
    ValidationLog,
    check_run,
    train,
)
from keras_mulrnn.params import rank_for_budget, stack_params, units_for_budget
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
# How often a process that waits for another process's runs looks again.
POLL_SECONDS = 10
# Said of a run that another process of the study began first.
TAKEN = "taken by another process of this study"


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
    """The default budget: the recurrent weights of a shared cell at the base's size."""
    return stack_params(family, "shared", base.units, base.embedding_dim, base.rank,
                        base.num_layers, weight_norm=base.weight_norm)


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
        family_budget = budget or budget_of(base, family)
        if design == "families":
            arms += _family_arms(base, family, family_budget)
            continue
        shared = sized_config(base, family, "shared", family_budget)
        if design == "budget":
            for parametrization in parametrizations:
                if family == "rnn" and parametrization == "unshared":
                    continue  # one transform: the same cell as shared
                config = sized_config(base, family, parametrization, family_budget)
                sharing = transition_arguments(family, parametrization).get("sharing",
                                                                             "additive")
                level = {"shared": "k_s", "additive": "budget"}.get(str(sharing), "k_u")
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


def _family_role(name):
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
    return [Arm(family, name, *_family_role(name), configs[name]) for name in FAMILY_ARMS]


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
        runs += [_run(arm, rate, first) for rate in grid]
        if rest is not None:
            runs += [_run(arm, rest, first + index) for index in range(1, seeds)]
    return runs


def _run(arm, rate, seed):
    config = dataclasses.replace(arm.config, learning_rate=rate, seed=seed)
    return StudyRun(f"{arm.family}-{arm.name}-lr{rate:g}-seed{seed}", arm, config)


def bracket(rates, valid):
    """One step of an arm's rate selection. `rates` is the study's grid; `valid` maps each
    rate whose first-seed run has finished to its validation BPC (`math.inf`: diverged).

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


def rate_search(output_dir, arm, rates):
    """Where the rate selection of `arm` stands, from its first-seed runs finished in
    `output_dir`: `bracket`'s `(needed, chosen, how)` and the `valid` figures it read."""
    valid = {}
    while True:
        try:
            needed, chosen, how = bracket(rates, valid)
        except FloatingPointError as error:
            raise FloatingPointError(f"{arm.key}: {error}") from None
        found = {}
        for rate in needed:
            results = _results(output_dir, _run(arm, rate, arm.config.seed))
            if results is not None:
                found[rate] = _valid_bpc(results)
        if not found:
            return needed, chosen, how, valid
        valid.update(found)


def select_rates(output_dir, arms, rates):
    """Arm key → the rate chosen by `bracket` from the arm's first-seed runs (the lowest
    validation BPC, interior to the rates tried; a diverged run is never chosen), for the
    arms whose selection is over (the others are left out)."""
    chosen = {}
    for arm in arms:
        rate = rate_search(output_dir, arm, rates)[1]
        if rate is not None:
            chosen[arm.key] = rate
    return chosen


def _valid_bpc(results):
    return math.inf if _stopped_by_nan(results) else results["valid_bpc"]


def _stopped_by_nan(results):
    """Whether a run was stopped by a non-finite loss: the study records that as a string
    `diverged` (the error). A finished run's own flag (`true` when it ended no better than a
    uniform guess) is a figure like the others: such a run counts, with its BPC."""
    return isinstance(results.get("diverged"), str)


def run_study(corpus, arms, seeds, rates, output_dir, fixed_rates=None, analysis=False,
              verbose=2, description=None):
    """Trains every run of the study not finished yet under `output_dir/runs/NAME/`, then
    summarizes. `fixed_rates` (arm key → rate) replaces the selection for those arms.

    A finished run (its `results.json` exists) is skipped, after checking its settings; an
    interrupted one resumes; one that another process holds is left to it (this process
    waits for it only when nothing else is left). `description` (e.g. the command line) is
    recorded in `study.json` with the plan.
    """
    check_positive_int("seeds", seeds)
    for rate in list(rates) + list((fixed_rates or {}).values()):
        check_positive_number("learning_rate", rate)
    for index, run in enumerate(plan_runs(arms, seeds, rates[:1])):  # before any writing
        check_run(corpus, run.config, splits=index == 0)  # (the splits are the same for all)
    os.makedirs(output_dir, exist_ok=True)
    # Each run builds a new model whose functions TensorFlow traces anew, as it must: its
    # warning about retraced functions says nothing here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with hold_directory(output_dir, "plan of this study", wait=True):
        _record_plan(output_dir, arms, seeds, rates, fixed_rates, description)
    finished = None  # the runs with results after the last pass
    timed = []  # the wall seconds of each run this process trained from its start
    while True:
        runs, chosen, _ = _plan_so_far(output_dir, arms, seeds, rates, fixed_rates)
        held = False
        for position, run in enumerate(runs, 1):
            started = time.perf_counter()
            try:
                trained = _run_one(corpus, run, f"[{position}/{len(runs)}]", output_dir,
                                   analysis, verbose)
            except DirectoryInUse:
                held = True  # another process of this study has it
                continue
            if trained == "from the start":
                timed.append(time.perf_counter() - started)
            if trained and timed:
                print(_progress(output_dir, arms, seeds, rates, fixed_rates, timed),
                      flush=True)
        runs, chosen, searches = _plan_so_far(output_dir, arms, seeds, rates, fixed_rates)
        done = {run.name for run in runs if _results(output_dir, run) is not None}
        if len(chosen) == len(arms) and len(done) == len(runs):
            break
        if held:  # nothing left for this process but what the others are training
            time.sleep(POLL_SECONDS)
            continue
        if finished is not None and done <= finished:
            # A pass of this process alone that finished nothing new: none ever will.
            raise RuntimeError(
                f"The study in {output_dir!r} cannot finish: a pass over its runs finished "
                f"none of the {len(runs) - len(done)} left and no other process holds them. "
                f"This is a defect of the study's plan; please report it with the command.")
        finished = done
    # Every process of the study ends here; one after the other, they write the same files.
    with hold_directory(output_dir, "summary of this study", wait=True):
        files.write_json(os.path.join(output_dir, SELECTION_FILE), {
            "rates": list(rates), "chosen": chosen, "selected_on": "valid_bpc",
            # Every arm's path: the rates its first seed tried, their validation BPC (null:
            # diverged) and how the chosen one is bracketed.
            "paths": {key: {"tried": {f"{rate:g}": (bpc if math.isfinite(bpc) else None)
                                      for rate, bpc in sorted(valid.items())},
                            "bracket": how}
                      for key, (how, valid) in searches.items()}})
        return summarize(output_dir)


def _progress(output_dir, arms, seeds, rates, fixed_rates, timed):
    """One line on where the study stands and its remaining wall time, estimated from the
    runs this process has trained (their mean time) and the processes at work now."""
    runs, chosen, _ = _plan_so_far(output_dir, arms, seeds, rates, fixed_rates)
    left = [run for run in runs if _results(output_dir, run) is None]
    others = sum(held_elsewhere(os.path.join(output_dir, "runs", run.name)) for run in left)
    runs_dir = os.path.join(output_dir, "runs")
    done = sum(os.path.exists(os.path.join(runs_dir, name, RESULTS))
               for name in os.listdir(runs_dir))  # every rate tried included
    return "study: " + remaining_time(done, done + len(left), sum(timed) / len(timed),
                                      processes=1 + others,
                                      growing=len(chosen) < len(arms))


def remaining_time(done, planned, seconds_per_run, processes=1, growing=False):
    """`done` of `planned` runs, and the wall time the rest take at `seconds_per_run` each,
    shared by `processes` (a run at a time each). `growing`: some arm's rate is not chosen
    yet, so the plan may grow (its other seeds, a bracket's next rate) and the time is a
    lower bound."""
    left = planned - done
    seconds = math.ceil(left / processes) * seconds_per_run
    hours, minutes = divmod(round(seconds / 60), 60)
    return (f"{done} of {planned} runs done{' so far' if growing else ''}; "
            f"{'at least ' if growing else ''}about {hours} h {minutes:02d} min left "
            f"({left} runs × {seconds_per_run / 60:.1f} min, {processes} "
            f"process{'es' if processes > 1 else ''})")


def _plan_so_far(output_dir, arms, seeds, rates, fixed_rates):
    """The runs the study needs now, the rates chosen so far (arm key → rate, the fixed
    ones included) and each selecting arm's `(how, valid)` (see `bracket`)."""
    chosen, explored, searches = dict(fixed_rates or {}), {}, {}
    for arm in arms:
        if arm.key in chosen:
            continue
        needed, rate, how, valid = rate_search(output_dir, arm, rates)
        explored[arm.key] = sorted(set(valid) | set(needed))
        searches[arm.key] = (how, valid)
        if rate is not None:
            chosen[arm.key] = rate
    return plan_runs(arms, seeds, rates, chosen, explored), chosen, searches


def _record_plan(output_dir, arms, seeds, rates, fixed_rates, description):
    from keras_mulrnn.lm.training import code_version

    plan = {"arms": [{"family": arm.family, "name": arm.name, "sharing": arm.sharing,
                      "level": arm.level, "units": arm.config.units, "rank": arm.config.rank,
                      "recurrent_params": recurrent_params(arm.config)} for arm in arms],
            "seeds": seeds, "rates": list(rates), "fixed_rates": fixed_rates or {},
            "base": dataclasses.asdict(arms[0].config), "description": description,
            "code": code_version()}
    path = os.path.join(output_dir, STUDY_FILE)
    runs_dir = os.path.join(output_dir, "runs")
    # A plan whose runs have not started (a first attempt refused for its data, say) may be
    # replaced; once runs exist, the same flags are required.
    if os.path.exists(path) and os.path.isdir(runs_dir) and os.listdir(runs_dir):
        saved = files.read_json(path)
        if [a["name"] for a in saved["arms"]] != [a["name"] for a in plan["arms"]] or (
                saved["rates"] != plan["rates"]):
            raise ValueError(
                f"{output_dir!r} holds a study with other arms or rates "
                f"({[a['name'] for a in saved['arms']]}, rates {saved['rates']}). Use the "
                f"same flags to continue it, or another --output directory.")
        return
    files.write_json(path, plan)


def _results(output_dir, run):
    """The results of a finished run, or None: not finished, or its `results.json` is
    damaged (then the run is resumed, which evaluates it again and rewrites the file)."""
    path = os.path.join(output_dir, "runs", run.name, RESULTS)
    if not os.path.exists(path):
        return None
    try:
        return files.read_json(path, RESULT_FIGURES)
    except files.DamagedFile as error:
        warnings.warn(f"{error} The run is resumed to write it again.", stacklevel=2)
        return None


def _run_one(corpus, run, position, output_dir, analysis, verbose):
    """Trains (or resumes, or skips) one run of a study, then analyses it if asked.
    Returns how it trained: "from the start", "resumed", "diverged" or None (not at
    all)."""
    directory = os.path.join(output_dir, "runs", run.name)
    results = _results(output_dir, run)
    if results is not None:
        _check_same_config(results, directory, run)
        if _stopped_by_nan(results):
            return None  # nothing to analyse
    # A run killed between its results and its final model is resumed too: a finished run's
    # `--resume` writes what is missing from its checkpoints.
    trained = None
    if results is None or not os.path.exists(os.path.join(directory, FINAL)):
        if held_elsewhere(directory):
            raise DirectoryInUse(directory)
        trained = _train_one(corpus, run, position, directory, verbose,
                             resume=results is not None)
        if trained == "diverged":
            return trained
    if analysis:
        with hold_directory(directory, "analysis"):
            analyse_run(corpus, directory)
    return trained


def _train_one(corpus, run, position, directory, verbose, resume=False):
    """Trains or resumes one run (`resume`: it has results already, or checkpoints);
    returns "from the start" or "resumed" when it finished, or "diverged"."""
    checkpoints = os.path.join(directory, "checkpoints")
    resume = resume or (os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)))
    print(f"{position} {run.name}: {'resuming' if resume else 'training'} "
          f"(units {run.config.units}, rank {run.config.rank})", flush=True)
    try:
        train(corpus, run.config, directory, resume=resume, verbose=verbose)
    except DirectoryInUse:
        # Another process of the study took the run between the look and the lock.
        print(f"{position} {run.name}: {TAKEN}", flush=True)
        raise
    except TrainingInterrupted as stop:
        raise TrainingInterrupted(
            f"{run.name}: {stop.what}", "Run the same command again to continue the "
            "study: finished runs are kept, this one resumes.") from None
    except FloatingPointError as error:
        # A rate of the grid may be too high: the run is recorded as diverged (that rate is
        # never chosen; a seed that diverges is left out of the comparisons) rather than
        # stopping the study.
        print(f"{position} {run.name}: diverged ({error})", flush=True)
        files.write_json(os.path.join(directory, RESULTS),
                         {"diverged": str(error), "valid_bpc": None, "test_bpc": None,
                          "config": dataclasses.asdict(run.config)})
        return "diverged"
    return "resumed" if resume else "from the start"


def analyse_run(corpus, directory, positions=1000, horizon=50):
    """Error recovery (raw and normalised) and successive-state cosine of a finished run, on
    the test split; written to `analysis.json` (computed once)."""
    from keras_mulrnn.analysis.recovery import error_recovery, state_cosine
    from keras_mulrnn.saving import load_model

    path = os.path.join(directory, "analysis.json")
    if os.path.exists(path):
        return files.read_json(path)
    model = load_model(os.path.join(directory, FINAL))
    recovery = error_recovery(model, corpus.test, positions=positions, horizon=horizon)
    result = {**recovery.summary(), "state_cosine": state_cosine(model, corpus.test)}
    files.write_json(path, result)
    return result


# ------------------------------------------------------------------------ summaries


def collect(output_dir):
    """The finished runs of a study: one dict per run (results, learning curve, analysis,
    and its arm from `study.json`)."""
    plan = files.read_json(os.path.join(output_dir, STUDY_FILE))
    arms = {(a["family"], a["name"]): a for a in plan["arms"]}
    runs_dir = os.path.join(output_dir, "runs")
    finished = []
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else ():
        directory = os.path.join(runs_dir, name)
        if not os.path.exists(os.path.join(directory, RESULTS)):
            continue
        run = files.read_json(os.path.join(directory, RESULTS), RESULT_FIGURES)
        if _stopped_by_nan(run):
            continue  # left out of every table (its rate was not chosen, or it is a lost seed)
        family, arm_name = run["config"]["family"], name.split("-lr")[0].split("-", 1)[1]
        run.update(name=name, arm=arms.get((family, arm_name)),
                   curve=_validation_curve(os.path.join(directory, "log.csv")))
        analysis = os.path.join(directory, "analysis.json")
        run["analysis"] = files.read_json(analysis) if os.path.exists(analysis) else None
        if run["arm"] is not None:
            finished.append(run)
    if not finished:
        raise ValueError(f"No finished runs in {runs_dir!r}: run the study first.")
    return plan, finished


def summarize(output_dir):
    """Writes `results.csv`, `comparisons.csv`, `results.md`, `learning_curves.png` (and,
    when analysed, `error_recovery.csv`, `error_recovery.png`); returns the arm rows."""
    plan, runs = collect(output_dir)
    chosen = {**_chosen_rates(runs), **plan["fixed_rates"]}
    counted = _counted(runs, chosen)
    rows = arm_rows(counted)
    comparisons = comparison_rows(counted, plan)
    recovery = recovery_rows(counted)
    _write_csv(os.path.join(output_dir, "results.csv"), ARM_COLUMNS, rows)
    _write_csv(os.path.join(output_dir, "comparisons.csv"), COMPARISON_COLUMNS, comparisons)
    if recovery:
        _write_csv(os.path.join(output_dir, "error_recovery.csv"), RECOVERY_COLUMNS, recovery)
    plots = _plot(counted, output_dir)
    selection_path = os.path.join(output_dir, SELECTION_FILE)
    selection = files.read_json(selection_path) if os.path.exists(selection_path) else None
    files.write_text(os.path.join(output_dir, "results.md"),
                     results_markdown(plan, counted, rows, comparisons, recovery, plots, runs,
                                      selection))
    return rows


def _chosen_rates(runs):
    """Arm key → the rate of its first-seed run with the lowest validation BPC (the rule of
    `select_rates`, applied to the finished runs at hand)."""
    first, best = {}, {}
    for run in runs:
        key = f"{run['arm']['family']}/{run['arm']['name']}"
        first[key] = min(first.get(key, run["config"]["seed"]), run["config"]["seed"])
    for run in runs:
        key = f"{run['arm']['family']}/{run['arm']['name']}"
        if run["config"]["seed"] == first[key] and (
                key not in best or run["valid_bpc"] < best[key][1]):
            best[key] = (run["config"]["learning_rate"], run["valid_bpc"])
    return {key: rate for key, (rate, _) in best.items()}


def _counted(runs, chosen):
    """The runs that count as seeds of their arm: all of them at the arm's chosen rate (the
    other rates' first-seed runs served the selection only)."""
    counted = []
    for run in runs:
        arm = run["arm"]
        rate = chosen.get(f"{arm['family']}/{arm['name']}")
        if rate is None or run["config"]["learning_rate"] == rate:
            counted.append(run)
    return counted


def _by_arm(runs):
    arms = {}
    for run in runs:
        arms.setdefault((run["arm"]["family"], run["arm"]["name"]), []).append(run)
    return arms


def _mean(values):
    return float(np.mean(values)) if values else None


def _mean_std(values):
    """Mean and sample standard deviation (None for one value: it is undefined)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


ARM_COLUMNS = ["family", "arm", "sharing", "rank_level", "units", "rank", "mogrifier_rounds",
               "recurrent_params",
               "params", "learning_rate", "seeds", "valid_bpc_mean", "valid_bpc_std",
               "test_bpc_mean", "test_bpc_std", "chars_per_sec"]


def arm_rows(runs):
    rows = []
    for (family, name), group in _by_arm(runs).items():
        arm, config = group[0]["arm"], group[0]["config"]
        valid = _mean_std([r["valid_bpc"] for r in group])
        test = _mean_std([r["test_bpc"] for r in group])
        rows.append({
            "family": family, "arm": name, "sharing": arm["sharing"],
            "rank_level": arm["level"], "units": config["units"], "rank": config["rank"],
            "mogrifier_rounds": config.get("mogrifier_rounds", 0),
            "recurrent_params": group[0]["recurrent_params"], "params": group[0]["params"],
            "learning_rate": config["learning_rate"], "seeds": len(group),
            "valid_bpc_mean": valid[0], "valid_bpc_std": valid[1],
            "test_bpc_mean": test[0], "test_bpc_std": test[1],
            # (None for a run finished by a resume that had no steps left to time.)
            "chars_per_sec": _mean([r["chars_per_sec"] for r in group
                                    if r.get("chars_per_sec")]),
        })
    return rows


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
]
# Every pair of the families design's arms (the second named first: against the paper's cell,
# then the others), each at the budget.
FAMILIES_TESTS = [
    (f"equal budget: {first} − {second}",
     lambda roles, first=first, second=second: (roles[_family_role(first)]
                                                - roles[_family_role(second)]))
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


RECOVERY_COLUMNS = ["family", "arm", "seeds", "clean_bits", "first_step_excess",
                    "area_mean", "relative_area_mean", "remaining_after_5",
                    "remaining_after_20", "recovery_steps_mean", "state_cosine"]


def recovery_rows(runs):
    rows = []
    for (family, name), group in _by_arm(runs).items():
        analysed = [r["analysis"] for r in group if r["analysis"]]
        if not analysed:
            continue
        steps = [a["recovery_steps"] for a in analysed]
        rows.append({
            "family": family, "arm": name, "seeds": len(analysed),
            "clean_bits": _mean([np.mean(a["clean"]) for a in analysed if "clean" in a]),
            "first_step_excess": _mean([a["curve"][0] for a in analysed]),
            "area_mean": _mean([a["area"] for a in analysed]),
            "relative_area_mean": _mean([a["relative_area"] for a in analysed
                                         if "relative_area" in a]),
            "remaining_after_5": _mean([a["remaining"][4] for a in analysed
                                        if "remaining" in a]),
            "remaining_after_20": _mean([a["remaining"][19] for a in analysed
                                         if "remaining" in a]),
            # A model that never recovers within the horizon counts as the horizon + 1.
            "recovery_steps_mean": _mean([s if s is not None else a["horizon"] + 1
                                          for s, a in zip(steps, analysed)]),
            "state_cosine": _mean([a["state_cosine"][-1] for a in analysed]),
        })
    return rows


def _bracket_lines(selection):
    """The report's table of each arm's rate search (from `selection.json`), if any."""
    paths = (selection or {}).get("paths") or {}
    if not paths:
        return []
    lines = ["| arm | chosen | bracket | validation BPC of the first seed at each rate tried |",
             "|---|---|---|---|"]
    for key, path in sorted(paths.items()):
        tried = ", ".join(f"{rate}: {'diverged' if bpc is None else f'{bpc:.4f}'}"
                          for rate, bpc in path["tried"].items())
        lines.append(f"| {key} | {selection['chosen'].get(key, '')} | {path['bracket']} | "
                     f"{tried} |")
    return lines + [""]


def results_markdown(plan, runs, rows, comparisons, recovery, plots, all_runs,
                     selection=None):
    config = runs[0]["config"]
    commits = sorted({str((r.get("code") or {}).get("commit")) for r in all_runs})
    lines = [
        "# Sharing study",
        "",
        f"Corpus `{runs[0]['corpus']}`; {config['steps']} steps of batch {config['batch_size']}"
        f" × {config['seq_len']} symbols, Adam decayed linearly to 0 (rate per arm, below), "
        f"embedding {config['embedding_dim']}, {config['num_layers']} layer(s). BPC over the "
        f"whole valid and test splits (rows of {config['test_batch_size']}). Mean ± standard "
        "deviation over seeds (none for one seed).",
        "",
        f"Command: `{plan.get('description') or 'keras_mulrnn.analysis.study.run_study'}`; "
        f"code: {', '.join(commits)} (every run's `results.json` records its own); seeds "
        f"{sorted({r['config']['seed'] for r in runs})}.",
        "",
        f"Learning rates: {plan['rates']}; each arm's is the one with the lowest validation "
        "BPC of its first seed, interior to the rates tried (a best rate at the grid's edge "
        f"grows the grid ×{BRACKET_FACTOR:g} on that side)" + (
            f"; fixed: {plan['fixed_rates']}" if plan['fixed_rates'] else "") + ".",
        "",
        *_bracket_lines(selection),
        _table(ARM_COLUMNS, rows),
        "",
        "## Comparisons (test split; runs paired by seed)",
        "",
        "`a − b` in BPC per seed; negative favours `a`. Mean, 95% t-interval, paired t-test, "
        "Holm-adjusted p over the tests of one family (the rows of kind `test` of that "
        "family), effect size d_z = mean / sd of the differences. Rows of kind "
        "`descriptive` are the simple effects behind the main effects; their p is not "
        "corrected.",
        "",
        _table(COMPARISON_COLUMNS, comparisons),
    ]
    if recovery:
        lines += [
            "",
            "## Error recovery (test split)",
            "",
            "After one wrong input symbol: `first_step_excess` (bits) on the next symbol, "
            "`area_mean` the raw excess summed over 50 steps, `relative_area_mean` the excess "
            "in units of the model's own clean loss summed likewise, `remaining_after_k` the "
            "share of the first step's excess left after k steps, `clean_bits` the mean clean "
            "loss at those positions, `state_cosine` of successive hidden states.",
            "",
            _table(RECOVERY_COLUMNS, recovery),
        ]
    for title, name in plots:
        lines += ["", f"![{title}]({name})"]
    return "\n".join(lines) + "\n"


def _table(columns, rows):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value):
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _validation_curve(log_path):
    """`[(step, train_bpc, val_bpc)]` from a run's CSV log (one line per validation)."""
    points = {}
    for row in ValidationLog(log_path).rows():
        step = int(row["step"])
        points[step] = (step, float(row["bpc"] or "nan"), float(row["val_bpc"]))
    return [points[step] for step in sorted(points)]


def _plot(runs, output_dir):
    """The learning curves (and recovery curves) as PNGs; [] without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plots (pip install -e '.[plot]').")
        return []
    matplotlib.use("Agg")
    from matplotlib import pyplot

    arms = _by_arm(runs)
    families = sorted({family for family, _ in arms})

    def learning_curves(axis, family, name, group):
        curves = [r["curve"] for r in group if r["curve"]]
        if not curves:
            return
        length = min(len(c) for c in curves)
        steps = [p[0] for p in curves[0][:length]]
        values = np.array([[p[2] for p in c[:length]] for c in curves])
        mean, std = values.mean(axis=0), values.std(axis=0)
        axis.plot(steps, mean, label=f"{name} ({len(curves)} seeds)")
        axis.fill_between(steps, mean - std, mean + std, alpha=0.15)
        axis.set(title=f"{family}: validation BPC", xlabel="step", ylabel="BPC")

    def curve_plot(key, ylabel, symlog):
        def draw(axis, family, name, group):
            analysed = [r["analysis"][key] for r in group
                        if r["analysis"] and key in r["analysis"]]
            if not analysed:
                return
            curve = np.mean(analysed, axis=0)
            axis.plot(np.arange(1, len(curve) + 1), curve, label=name)
            axis.set(title=f"{family}: after one wrong symbol", xlabel="steps after",
                     ylabel=ylabel)
            if symlog:
                # Logarithmic above 0.01, linear around 0 (late values are noise of either
                # sign).
                axis.set_yscale("symlog", linthresh=1e-2)

        return draw

    plots = [("validation BPC during training, mean ± std over seeds", "learning_curves.png",
              learning_curves)]
    if any(r["analysis"] for r in runs):
        plots += [("excess loss after one wrong symbol (bits), mean over seeds",
                   "error_recovery.png", curve_plot("curve", "excess bits", True)),
                  ("excess loss in units of the clean loss, mean over seeds",
                   "error_recovery_relative.png",
                   curve_plot("relative", "excess / clean loss", True))]
    for _, file_name, draw in plots:
        figure, axes = pyplot.subplots(1, len(families), figsize=(6.5 * len(families), 4.2),
                                       squeeze=False)
        for axis, family in zip(axes[0], families):
            for (arm_family, name), group in sorted(arms.items()):
                if arm_family == family:
                    draw(axis, family, name, group)
            axis.legend(fontsize=8)
        figure.tight_layout()
        with files.replacing(os.path.join(output_dir, file_name), ".png") as temporary:
            figure.savefig(temporary, dpi=100)
        pyplot.close(figure)
    return [(title, name) for title, name, _ in plots]


def _check_same_config(results, directory, run):
    # A setting that the saved run predates had its default value then.
    saved = {**dataclasses.asdict(TrainConfig()), **(results.get("config") or {})}
    wanted = dataclasses.asdict(run.config)
    differing = sorted(key for key in wanted if saved.get(key) != wanted[key])
    if differing:
        raise ValueError(
            f"{directory!r} holds a finished run with other settings "
            f"({', '.join(f'{k}: {saved.get(k)!r} vs {wanted[k]!r}' for k in differing)}). "
            f"Use the same flags to continue this study, or another --output directory."
        )


def _write_csv(path, columns, rows):
    files.write_csv(path, columns, [{c: row.get(c) for c in columns} for row in rows])
