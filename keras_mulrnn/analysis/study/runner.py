"""Running a study: training what is not finished (several processes may share the work),
selecting each arm's rate as its first-seed runs finish, and saying how long is left."""

import dataclasses
import logging
import math
import os
import time
import warnings

from keras_mulrnn.analysis.study.design import (
    SELECTION_FILE,
    STUDY_FILE,
    bracket,
    diverged,
    plan_runs,
    stopped_by_nan,
    study_run,
    valid_bpc,
)
from keras_mulrnn.analysis.study.report import summarize
from keras_mulrnn.lm import files
from keras_mulrnn.lm.config import TrainConfig, recurrent_params
from keras_mulrnn.lm.lock import DirectoryInUse, held_elsewhere, hold_directory
from keras_mulrnn.lm.training import (
    FINAL,
    RESULT_FIGURES,
    RESULTS,
    TrainingInterrupted,
    check_run,
    train,
)
from keras_mulrnn.validation import check_positive_int, check_positive_number


# How often a process that waits for another process's runs looks again.
POLL_SECONDS = 10
# Said of a run that another process of the study began first.
TAKEN = "taken by another process of this study"


def rate_search(output_dir, arm, rates, seeds=1):
    """Where the rate selection of `arm` stands, from its runs finished in `output_dir`:
    `bracket`'s `(needed, chosen, how)`, the first seed's validation BPC at each rate tried
    (`valid`) and the seeds that diverged at a rate (`lost`, rate → seeds; of `seeds` seeds).

    A rate at which any seed diverged counts as diverged, so a chosen rate whose later seed
    diverges is chosen no longer: the selection goes on without it (its runs are kept). A rate
    that trains some seeds and not others is past the edge of stability, and arms compared
    there would differ in their luck rather than their parametrization."""
    valid, lost = {}, {}
    while True:
        try:
            needed, chosen, how = bracket(
                rates, {rate: math.inf if rate in lost else bpc for rate, bpc in valid.items()})
        except FloatingPointError as error:
            raise FloatingPointError(f"{arm.key}: {error}") from None
        found = {}
        for rate in needed:
            results = _results(output_dir, study_run(arm, rate, arm.config.seed))
            if results is not None:
                found[rate] = valid_bpc(results)
        if found:
            valid.update(found)
            continue
        failed = [] if chosen is None or how == "given" else _diverged_seeds(
            output_dir, arm, chosen, seeds)
        if not failed:
            return needed, chosen, how, valid, lost
        lost[chosen] = failed


def _diverged_seeds(output_dir, arm, rate, seeds):
    """The seeds of `arm` whose finished run at `rate` diverged."""
    first = arm.config.seed
    return [seed for seed in range(first, first + seeds)
            if (results := _results(output_dir, study_run(arm, rate, seed))) is not None
            and diverged(results)]


def select_rates(output_dir, arms, rates, seeds=1):
    """Arm key → the rate chosen by `rate_search` (the lowest first-seed validation BPC,
    interior to the rates tried, at a rate where no seed diverged), for the arms whose
    selection is over (the others are left out)."""
    chosen = {}
    for arm in arms:
        rate = rate_search(output_dir, arm, rates, seeds)[1]
        if rate is not None:
            chosen[arm.key] = rate
    return chosen


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
            if run not in _plan_so_far(output_dir, arms, seeds, rates, fixed_rates)[0]:
                continue  # a seed diverged at its rate since the pass began: not chosen now
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
        left = [run for run in runs if _results(output_dir, run) is None]
        if len(chosen) == len(arms) and not left:
            break
        if held:  # nothing left for this process but what the others are training
            time.sleep(POLL_SECONDS)
            continue
        done = _finished_runs(output_dir)  # (those of rates no longer in the plan included)
        if finished is not None and done <= finished:
            # A pass of this process alone that finished nothing new: none ever will.
            raise RuntimeError(
                f"The study in {output_dir!r} cannot finish: a pass over its runs finished "
                f"none of the {len(left)} left and no other process holds them. "
                f"This is a defect of the study's plan; please report it with the command.")
        finished = done
    # Every process of the study ends here; one after the other, they write the same files.
    with hold_directory(output_dir, "summary of this study", wait=True):
        files.write_json(os.path.join(output_dir, SELECTION_FILE), {
            "rates": list(rates), "chosen": chosen, "selected_on": "valid_bpc",
            # Every arm's path: the rates its first seed tried, their validation BPC (null:
            # stopped by a NaN), the seeds that diverged at a rate (which is then never
            # chosen) and how the chosen one is bracketed.
            "paths": {key: {"tried": {f"{rate:g}": (bpc if math.isfinite(bpc) else None)
                                      for rate, bpc in sorted(valid.items())},
                            "diverged_seeds": {f"{rate:g}": seeds_lost
                                               for rate, seeds_lost in sorted(lost.items())},
                            "bracket": how}
                      for key, (how, valid, lost) in searches.items()}})
        return summarize(output_dir)


def _progress(output_dir, arms, seeds, rates, fixed_rates, timed):
    """One line on where the study stands and its remaining wall time, estimated from the
    runs this process has trained (their mean time) and the processes at work now."""
    runs, chosen, _ = _plan_so_far(output_dir, arms, seeds, rates, fixed_rates)
    left = [run for run in runs if _results(output_dir, run) is None]
    others = sum(held_elsewhere(os.path.join(output_dir, "runs", run.name)) for run in left)
    done = len(_finished_runs(output_dir))  # every rate tried included
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


def _finished_runs(output_dir):
    """The names of the runs with results in `output_dir`, planned now or not."""
    runs_dir = os.path.join(output_dir, "runs")
    names = os.listdir(runs_dir) if os.path.isdir(runs_dir) else ()
    return {name for name in names if os.path.exists(os.path.join(runs_dir, name, RESULTS))}


def _plan_so_far(output_dir, arms, seeds, rates, fixed_rates):
    """The runs the study needs now, the rates chosen so far (arm key → rate, the fixed
    ones included) and each selecting arm's `(how, valid, lost)` (see `rate_search`)."""
    chosen, explored, searches = dict(fixed_rates or {}), {}, {}
    for arm in arms:
        if arm.key in chosen:
            continue
        needed, rate, how, valid, lost = rate_search(output_dir, arm, rates, seeds)
        explored[arm.key] = sorted(set(valid) | set(needed))
        searches[arm.key] = (how, valid, lost)
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
        if stopped_by_nan(results):
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
