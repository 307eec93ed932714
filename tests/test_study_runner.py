"""The study's runner (`analysis/study/runner.py` and the study command): rates bracketed,
runs shared between processes, resumed, recovered and reported."""

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_mulrnn.analysis import study
from keras_mulrnn.analysis.study import report, runner
from keras_mulrnn.lm.lock import LOCK_FILE, DirectoryInUse, hold_directory
from keras_mulrnn.lm.model import CharLanguageModel
from keras_mulrnn.saving import load_model

from helpers import (ROOT, SPEECH, assert_one_clear_line, run_program, small_config, small_corpus,
                     speech_corpus, tiny_base)


def test_the_rate_grid_plans_first_seeds_then_the_rest_at_the_chosen_rate():
    arms = study.plan_arms(tiny_base(units=16), ("lstm",), "budget", ("shared", "additive"))
    first = study.plan_runs(arms, seeds=3, rates=[1e-3, 1e-2])
    assert sorted((r.arm.name, r.config.learning_rate, r.config.seed) for r in first) == [
        ("additive", 1e-3, 3), ("additive", 1e-2, 3), ("shared", 1e-3, 3),
        ("shared", 1e-2, 3)]
    chosen = {"lstm/shared": 1e-2}
    later = study.plan_runs(arms, seeds=3, rates=[1e-3, 1e-2], chosen=chosen)
    shared = sorted((r.config.learning_rate, r.config.seed) for r in later
                    if r.arm.name == "shared")
    assert shared == [(1e-2, 3), (1e-2, 4), (1e-2, 5)]
    assert len([r for r in later if r.arm.name == "additive"]) == 2  # still choosing


def test_the_rate_is_chosen_on_the_valid_split_alone(tmp_path):
    arms = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    runs = study.plan_runs(arms, seeds=1, rates=[1e-3, 1e-2, 3e-2])
    for run, (valid, test) in zip(runs, [(2.0, 1.0), (1.5, 9.0), (1.7, 0.5)]):
        directory = tmp_path / "runs" / run.name
        directory.mkdir(parents=True)
        (directory / "results.json").write_text(json.dumps(
            {"valid_bpc": valid, "test_bpc": test, "config": dataclasses.asdict(run.config)}))
    assert study.select_rates(tmp_path, arms, [1e-3, 1e-2, 3e-2]) == {"lstm/shared": 1e-2}
    # An arm whose grid is not finished has no rate yet.
    os.remove(tmp_path / "runs" / runs[2].name / "results.json")
    assert study.select_rates(tmp_path, arms, [1e-3, 1e-2, 3e-2]) == {}


def _search(rates, objective):
    """Runs `study.bracket` against `objective(rate)` (a stand-in for the validation BPC of
    a first-seed run) until it chooses; returns the choice, how, and the rates tried."""
    valid = {}
    while True:
        needed, chosen, how = study.bracket(rates, valid)
        if chosen is not None:
            assert not needed
            return chosen, how, sorted(valid)
        assert needed and not set(needed) & set(valid)  # never a rate twice
        valid.update({rate: objective(rate) for rate in needed})


def _bowl(optimum):
    return lambda rate: 1.5 + np.log2(rate / optimum) ** 2


GRID = [0.002, 0.005, 0.01]


def test_a_grid_whose_best_rate_is_at_its_top_grows_until_the_best_is_interior():
    chosen, how, tried = _search(GRID, _bowl(0.04))  # the optimum lies above the grid
    assert (chosen, how) == (0.04, "interior")
    assert tried == [0.002, 0.005, 0.01, 0.02, 0.04, 0.08]


def test_a_grid_whose_best_rate_is_at_its_bottom_grows_downwards():
    chosen, how, tried = _search(GRID, _bowl(0.0006))
    assert (chosen, how) == (0.0005, "interior")
    assert tried == [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01]


def test_a_rate_beyond_the_best_that_diverges_brackets_it_and_is_never_chosen():
    objective = _bowl(0.1)
    chosen, how, tried = _search(GRID, lambda r: math.inf if r > 0.015 else objective(r))
    assert (chosen, how) == (0.01, "divergence") and tried == GRID + [0.02]
    # A diverged rate inside the grid is never chosen either.
    chosen, how, _ = _search([0.002, 0.005, 0.01, 0.03], lambda r: math.inf if r == 0.005
                             else abs(r - 0.012))
    assert (chosen, how) == (0.01, "interior")


def test_the_grid_grows_at_most_the_limit_on_a_side_and_says_so():
    chosen, how, tried = _search(GRID, lambda rate: 1 / rate)  # better and better
    assert how == "limit" and chosen == 0.16 and len(tried) == 3 + study.BRACKET_LIMIT
    with pytest.raises(FloatingPointError, match="Every rate from .* diverged"):
        _search(GRID, lambda rate: math.inf)


def test_one_rate_is_given_not_searched():
    assert study.bracket([0.003], {}) == ([], 0.003, "given")


def test_the_study_trains_the_rate_that_brackets_its_best(tmp_path):
    """From finished first-seed runs whose best is the grid's top: no rate is chosen yet,
    the next run is at twice it, and once that run is worse the top is chosen."""
    arms = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    (arm,) = arms
    for rate, valid in zip(GRID, (2.0, 1.8, 1.6)):
        _finish(tmp_path, arm, rate, valid_bpc=valid)
    assert study.select_rates(tmp_path, arms, GRID) == {}
    assert study.rate_search(tmp_path, arm, GRID)[0] == [0.02]
    runs = study.plan_runs(arms, 3, GRID, explored={arm.key: GRID + [0.02]})
    assert sorted(r.config.learning_rate for r in runs) == GRID + [0.02]
    _finish(tmp_path, arm, 0.02, valid_bpc=1.7)
    assert study.select_rates(tmp_path, arms, GRID) == {arm.key: 0.01}


def _finish(tmp_path, arm, rate, seed=None, **results):
    """The `results.json` of the arm's run at `rate` (its first seed unless `seed`)."""
    run = study.study_run(arm, rate, arm.config.seed if seed is None else seed)
    directory = tmp_path / "runs" / run.name
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps(
        {"test_bpc": 1.0, **results, "config": dataclasses.asdict(run.config)}))


def test_a_run_no_better_than_uniform_has_a_figure_and_one_stopped_by_a_nan_has_none(
        tmp_path):
    """Training's own `diverged` flag leaves a figure (the run finished, its BPC is real and
    recorded; its rate is still never chosen); the study's record of a run stopped by a NaN
    (the error, a string) is no figure at all."""
    (arm,) = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    _finish(tmp_path, arm, 0.002, valid_bpc=4.58, diverged=True)
    _finish(tmp_path, arm, 0.005, valid_bpc=2.5, diverged=False)
    _finish(tmp_path, arm, 0.01, valid_bpc=None, test_bpc=None,
            diverged="Non-finite loss at step 3")
    needed, chosen, how, valid, lost = study.rate_search(tmp_path, arm, GRID)
    assert valid == {0.002: 4.58, 0.005: 2.5, 0.01: math.inf}
    assert (needed, chosen, how, lost) == ([], 0.005, "interior", {})


def test_a_rate_at_which_a_later_seed_diverged_is_chosen_no_longer(tmp_path):
    """The first seed chooses; a later seed that diverges at the choice (no better than a
    uniform guess, or stopped by a NaN) makes that rate a diverged one, and the selection
    goes on: here the best rate left is at the grid's bottom, so the grid grows down."""
    (arm,) = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    first = arm.config.seed
    _finish(tmp_path, arm, 0.002, valid_bpc=2.0)
    _finish(tmp_path, arm, 0.005, valid_bpc=1.6)
    _finish(tmp_path, arm, 0.01, valid_bpc=None, test_bpc=None, diverged="NaN at step 9")
    assert study.select_rates(tmp_path, [arm], GRID, seeds=3) == {arm.key: 0.005}
    _finish(tmp_path, arm, 0.005, seed=first + 1, valid_bpc=1.61)
    assert study.select_rates(tmp_path, [arm], GRID, seeds=3) == {arm.key: 0.005}
    _finish(tmp_path, arm, 0.005, seed=first + 2, valid_bpc=6.8, diverged=True)
    needed, chosen, _, valid, lost = study.rate_search(tmp_path, arm, GRID, seeds=3)
    assert (needed, chosen, lost) == ([0.001], None, {0.005: [first + 2]})
    assert valid[0.005] == 1.6  # the first seed's figure is kept, not the rate
    runs = study.plan_runs([arm], 3, GRID, explored={arm.key: [0.001] + GRID})
    assert sorted((r.config.learning_rate, r.config.seed) for r in runs) == [
        (rate, first) for rate in [0.001] + GRID]  # no more seeds at 0.005
    _finish(tmp_path, arm, 0.001, valid_bpc=2.3)
    assert study.rate_search(tmp_path, arm, GRID, seeds=3)[1:3] == (0.002, "interior")
    # Stopped by a NaN counts the same; a seed beyond the study's seeds is none of its own.
    _finish(tmp_path, arm, 0.002, seed=first + 3, valid_bpc=6.9, diverged=True)
    assert study.select_rates(tmp_path, [arm], GRID, seeds=3) == {arm.key: 0.002}
    _finish(tmp_path, arm, 0.002, seed=first + 2, valid_bpc=None, test_bpc=None,
            diverged="NaN at step 3")
    assert study.rate_search(tmp_path, arm, GRID, seeds=3)[4] == {
        0.005: [first + 2], 0.002: [first + 2]}
    # A rate given alone is the user's: never searched, whatever its seeds did.
    assert study.rate_search(tmp_path, arm, [0.005], seeds=3)[1:3] == (0.005, "given")


def test_the_rates_above_one_where_a_seed_diverged_are_not_chosen_either(tmp_path):
    """Past the lowest rate at which a seed diverged lies the same edge of stability: a
    higher rate whose first seed happened to train well is not chosen in its place."""
    (arm,) = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    first = arm.config.seed
    grid = [0.002, 0.005, 0.01, 0.02]
    for rate, valid in zip(grid, (2.2, 2.0, 1.9, 1.95)):
        _finish(tmp_path, arm, rate, valid_bpc=valid)
    assert study.select_rates(tmp_path, [arm], grid, seeds=2) == {arm.key: 0.01}
    _finish(tmp_path, arm, 0.01, seed=first + 1, valid_bpc=6.9, diverged=True)
    # 0.02 (1.95) is the best left, but it lies above 0.01: 0.005 is chosen instead.
    assert study.rate_search(tmp_path, arm, grid, seeds=2)[1:3] == (0.005, "interior")


def test_the_report_without_a_selection_record_skips_rates_where_a_seed_diverged(tmp_path):
    """A study's report without the runner's record (unfinished): the first seed's best rate
    below the lowest rate at which one of the plan's seeds diverged, a NaN included."""
    (arm,) = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    first, record = arm.config.seed, {"family": "lstm", "name": "shared"}
    plan = {"base": {"seed": first}, "seeds": 3}

    def run(rate, seed, valid, flag=False):
        return {"arm": record, "valid_bpc": valid, "diverged": flag,
                "config": {"learning_rate": rate, "seed": seed}}

    runs = [run(0.005, first, 2.2), run(0.01, first, 2.0), run(0.02, first, 1.9),
            run(0.01, first + 1, 2.1)]
    assert report._chosen_rates(plan, runs) == {arm.key: 0.02}
    flagged = run(0.02, first + 2, 6.8, True)
    assert report._chosen_rates(plan, runs + [flagged]) == {arm.key: 0.01}
    beyond = run(0.02, first + 3, 6.8, True)  # not one of the plan's seeds
    assert report._chosen_rates(plan, runs + [beyond]) == {arm.key: 0.02}
    # A seed stopped by a NaN (which the tables leave out) stops its rate and those above.
    _finish(tmp_path, arm, 0.01, seed=first + 2, valid_bpc=None, test_bpc=None,
            diverged="NaN at step 7")
    stopped = report._stopped_by_nan(tmp_path)
    assert stopped == [(arm.key, 0.01, first + 2)]
    assert report._chosen_rates(plan, runs, stopped) == {arm.key: 0.005}


def test_the_remaining_time_is_the_runs_left_per_process_at_the_mean_pace():
    # 7 runs left at 6 minutes each: 42 minutes for one process; two processes take 4 turns.
    assert study.remaining_time(3, 10, 360.0) == (
        "3 of 10 runs done; about 0 h 42 min left (7 runs × 6.0 min, 1 process)")
    assert study.remaining_time(3, 10, 360.0, processes=2, growing=True) == (
        "3 of 10 runs done so far; at least about 0 h 24 min left (7 runs × 6.0 min, "
        "2 processes)")
    assert study.remaining_time(40, 100, 900.0).endswith(
        "about 15 h 00 min left (60 runs × 15.0 min, 1 process)")


@pytest.mark.slow
def test_a_factorial_study_end_to_end_and_its_rerun(tmp_path, capsys):
    """Real training (tiny): the grid, the selection, the seeds at the chosen rate, the
    tables; a rerun trains nothing; the comparisons equal a hand computation."""
    tf.config.experimental.enable_op_determinism()
    base = tiny_base(units=8, embedding_dim=4, steps=4, eval_every=2)
    arms = study.plan_arms(base, ("lstm",), "factorial")
    # (A grid whose top rate is far too high, so that the tiny runs' best is bracketed
    # without growing the grid: the growth itself is tested on a synthetic objective.)
    rates = [1e-2, 3e-2, 3.0]
    rows = study.run_study(speech_corpus(), arms, seeds=2, rates=rates,
                           output_dir=tmp_path, verbose=0, description="a test")
    assert {row["arm"] for row in rows} == {a.name for a in arms}
    selection = json.loads((tmp_path / "selection.json").read_text())
    assert set(selection["chosen"]) == set(selection["paths"]) == {a.key for a in arms}
    tried = 0
    for key, path in selection["paths"].items():
        rates_tried = sorted(float(rate) for rate in path["tried"])
        assert path["bracket"] in ("interior", "divergence")
        assert rates_tried[0] < selection["chosen"][key] < rates_tried[-1]
        tried += len(rates_tried)
    assert len(os.listdir(tmp_path / "runs")) == tried + len(arms)  # + one more seed each
    # After each run, where the study stands: the plan grows while rates are being chosen.
    progress = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("study: ")]
    assert len(progress) == tried + len(arms)  # one a run, diverged or not
    assert "so far; at least about" in progress[0]
    assert progress[-1].startswith(f"study: {tried + len(arms)} of {tried + len(arms)} runs "
                                   f"done; about 0 h 00 min left (0 runs × ")
    assert "| lstm/shared@8 | " in (tmp_path / "results.md").read_text()
    with open(tmp_path / "runs.csv") as handle:  # every run with figures, every rate tried
        listed = {r["run"]: r for r in csv.DictReader(handle)}
    figures = {name: json.loads((tmp_path / "runs" / name / "results.json").read_text())
               for name in os.listdir(tmp_path / "runs")}
    figures = {name: run for name, run in figures.items() if run["test_bpc"] is not None}
    assert set(listed) == set(figures) and len(figures) > len(arms) * 2
    for name, run in figures.items():
        assert float(listed[name]["test_bpc"]) == run["test_bpc"]
        assert float(listed[name]["learning_rate"]) == run["config"]["learning_rate"]
    for row in rows:
        assert row["seeds"] == 2
        assert row["learning_rate"] == selection["chosen"][f"lstm/{row['arm']}"]
    # The comparison table against the per-seed test BPC, by hand.
    results = {}
    for name in os.listdir(tmp_path / "runs"):
        run = json.loads((tmp_path / "runs" / name / "results.json").read_text())
        arm = name.split("-lr")[0].split("-", 1)[1]
        if run["config"]["learning_rate"] == selection["chosen"][f"lstm/{arm}"]:
            results[arm, run["config"]["seed"]] = run["test_bpc"]
    k_s, k_u = (a.name for a in arms[:2])
    differences = [results[k_s, s] - results[k_u, s] for s in (3, 4)]
    with open(tmp_path / "comparisons.csv") as handle:
        table = {r["comparison"]: r for r in csv.DictReader(handle)}
    budget_row = table["equal budget: shared@k_s − unshared@k_u"]
    assert float(budget_row["mean"]) == pytest.approx(np.mean(differences))
    assert budget_row["p_holm"] != ""  # corrected within the family of tests
    markdown = (tmp_path / "results.md").read_text()
    assert "a test" in markdown and "Holm" in markdown and "learning_curves.png" in markdown

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    real_train = runner.train
    runner.train = no_training
    try:
        again = study.run_study(speech_corpus(), arms, seeds=2, rates=rates,
                                output_dir=tmp_path, verbose=0)
    finally:
        runner.train = real_train
    assert [r["test_bpc_mean"] for r in again] == [r["test_bpc_mean"] for r in rows]
    # Other flags are refused, not mixed in.
    with pytest.raises(ValueError, match="other arms or rates"):
        study.run_study(speech_corpus(), arms, seeds=2, rates=[1e-2], output_dir=tmp_path,
                        verbose=0)


@pytest.mark.slow
def test_a_seed_that_diverges_at_the_chosen_rate_sends_the_arm_to_another(tmp_path,
                                                                           monkeypatch):
    """Real training (tiny), but the first later seed trained (it is at the first choice)
    stops on a NaN: that rate's other seeds are not trained, the selection goes on, and the
    arm's seeds all come from a rate at which none diverged; the report says why."""
    tf.config.experimental.enable_op_determinism()
    base = tiny_base(units=8, embedding_dim=4, steps=4, eval_every=2)
    arms = study.plan_arms(base, ("lstm",), "budget", ("shared",))
    (arm,) = arms
    first, real_train, lost = arm.config.seed, runner.train, []

    def train(corpus, config, directory, **kwargs):
        if config.seed != first and not lost:
            lost.append(config.learning_rate)
            os.makedirs(directory, exist_ok=True)  # (as training has, when it stops)
            raise FloatingPointError("The training loss became NaN or infinite at step 3.")
        return real_train(corpus, config, directory, **kwargs)

    monkeypatch.setattr(runner, "train", train)
    rows = study.run_study(speech_corpus(), arms, seeds=3, rates=[1e-2, 3e-2, 3.0],
                           output_dir=tmp_path, verbose=0)
    (dropped,) = lost
    selection = json.loads((tmp_path / "selection.json").read_text())
    path, chosen = selection["paths"][arm.key], selection["chosen"][arm.key]
    assert path["diverged_seeds"] == {f"{dropped:g}": [first + 1]} and chosen != dropped
    assert rows[0]["learning_rate"] == chosen and rows[0]["seeds"] == 3
    names = os.listdir(tmp_path / "runs")
    assert study.study_run(arm, dropped, first + 2).name not in names  # never begun
    assert all(study.study_run(arm, chosen, seed).name in names
               for seed in range(first, first + 3))
    assert f"(seed {first + 1} diverged)" in (tmp_path / "results.md").read_text()


def test_fixed_rates_from_another_study_skip_the_grid(tmp_path):
    base = tiny_base(units=8, embedding_dim=4, steps=2, eval_every=2)
    arms = study.plan_arms(base, ("gru",), "budget", ("shared", "additive"))
    fixed = {"gru/shared": 3e-2, "gru/additive": 1e-2}
    rows = study.run_study(speech_corpus(), arms, seeds=2, rates=[1e-2, 3e-2],
                           output_dir=tmp_path, fixed_rates=fixed, verbose=0)
    assert sorted(os.listdir(tmp_path / "runs")) == [
        "gru-additive-lr0.01-seed3", "gru-additive-lr0.01-seed4",
        "gru-shared-lr0.03-seed3", "gru-shared-lr0.03-seed4"]
    assert {r["arm"]: r["learning_rate"] for r in rows} == {"shared": 3e-2, "additive": 1e-2}
    # The report names the rates used, not a grid that was never tried.
    markdown = (tmp_path / "results.md").read_text()
    assert "Learning rates: fixed for every arm" in markdown and "[0.01, 0.03]" not in markdown


@pytest.mark.slow
def test_two_processes_share_one_study_and_train_every_run_once(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(SPEECH * 4)
    command = [sys.executable, os.path.join(ROOT, "examples", "compare_sharing.py"),
               "--data", str(data), "--family", "gru", "--design", "budget",
               "--parametrizations", "shared,additive", "--learning-rates", "0.01,0.03,3",
               "--seeds", "2", "--steps", "2", "--eval-every", "2", "--units", "8",
               "--embedding-dim", "4", "--batch-size", "2", "--seq-len", "10",
               "--valid-symbols", "200", "--test-batch-size", "8", "--threads", "1",
               "--output", str(tmp_path / "study")]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    # A run is begun by one process; the other may reach it at the same moment, and then
    # says that it was taken (it lost the race for the run's lock) and moves on.
    lines = [line.split(maxsplit=2)[1:] for stdout, _ in outputs
             for line in stdout.splitlines() if line.startswith("[")]
    begun = [name for name, what in lines if what.startswith("training")]
    taken = [name for name, what in lines if what == study.TAKEN]
    for name in taken:
        begun.remove(name)
    runs = sorted(os.listdir(tmp_path / "study" / "runs"))
    selection = json.loads((tmp_path / "study" / "selection.json").read_text())
    tried = sum(len(path["tried"]) for path in selection["paths"].values())
    assert len(runs) == tried + 2 and sorted(begun) == [f"{name}:" for name in runs]
    assert all(output[0].count(": training") > 0 for output in outputs)  # both worked


def test_a_run_another_process_takes_first_is_said_to_be_taken(tmp_path, capsys,
                                                               monkeypatch):
    # The race of the test above, made certain: the run looks free, but its lock is held.
    arms = study.plan_arms(tiny_base(), ("gru",), "budget", ["shared"], None)
    run = study.plan_runs(arms, 1, [1e-2])[0]
    directory = tmp_path / "runs" / run.name
    directory.mkdir(parents=True)
    monkeypatch.setattr(runner, "held_elsewhere", lambda _: False)
    with hold_directory(directory):  # a lock of its own: to `train`, another holder
        with pytest.raises(DirectoryInUse):
            runner._run_one(speech_corpus(), run, "[1/1]", str(tmp_path), False, 0)
    assert capsys.readouterr().out.splitlines()[-1] == f"[1/1] {run.name}: {study.TAKEN}"
    assert os.listdir(directory) == [LOCK_FILE]  # nothing trained, nothing written


def test_compare_sharing_script_end_to_end_and_bad_flags(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(SPEECH * 4)  # a test split long enough for the error-recovery windows
    command = [sys.executable, os.path.join(ROOT, "examples", "compare_sharing.py"),
               "--data", str(data), "--family", "lstm", "--design", "budget",
               "--parametrizations", "shared,additive", "--learning-rates", "0.01",
               "--seeds", "1", "--steps", "4", "--eval-every", "2", "--units", "8",
               "--embedding-dim", "4", "--batch-size", "2", "--seq-len", "10",
               "--valid-symbols", "200", "--test-batch-size", "8", "--jit-compile", "false",
               "--output", str(tmp_path / "out"), "--analysis"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("results.csv", "results.md", "comparisons.csv", "learning_curves.png",
                 "error_recovery.csv", "error_recovery.png", "error_recovery_relative.png",
                 "selection.json", "study.json"):
        assert (tmp_path / "out" / name).exists(), name
    # The same program as `python -m keras_mulrnn study` (what an installed wheel has).
    bad = subprocess.run([sys.executable, "-m", "keras_mulrnn", "study", *command[2:-3],
                          "--family", "transformer", "--output", str(tmp_path / "bad")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "transformer" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_study_that_cannot_progress_says_so_instead_of_spinning(tmp_path, monkeypatch):
    """A pass of the only process that finishes no run can never be followed by one that
    does: the study stops with a message."""
    arms = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    monkeypatch.setattr(runner, "_run_one", lambda *args, **kwargs: None)  # records nothing
    with pytest.raises(RuntimeError, match="cannot finish"):
        study.run_study(speech_corpus(), arms, 2, [0.005], str(tmp_path))


def test_a_study_recovers_every_point_between_a_runs_files(tmp_path):
    """A run killed after its results but before its final model is resumed (the model is
    written from its checkpoints, so that the run can be analysed); a damaged `results.json` is
    written again by resuming the run, not reported as a JSON parser's message; a figure
    that is not a number is named with its file."""
    base = tiny_base(units=8, embedding_dim=4, steps=4, eval_every=2)
    arms = study.plan_arms(base, ("lstm",), "budget", ("shared",))
    study.run_study(speech_corpus(), arms, 1, [1e-2], str(tmp_path), verbose=0)
    (run,) = os.listdir(tmp_path / "runs")
    directory = tmp_path / "runs" / run
    first = json.loads((directory / "results.json").read_text())
    os.remove(directory / "model.keras")
    study.run_study(speech_corpus(), arms, 1, [1e-2], str(tmp_path), verbose=0)
    assert isinstance(load_model(directory / "model.keras"), CharLanguageModel)  # analysable
    (directory / "results.json").write_text('{"valid_bpc": 1.2, "test')  # cut short
    with pytest.warns(UserWarning, match="results.json.*damaged.*resumed"):
        study.run_study(speech_corpus(), arms, 1, [1e-2], str(tmp_path), verbose=0)
    again = json.loads((directory / "results.json").read_text())
    assert again["test_bpc"] == pytest.approx(first["test_bpc"], rel=1e-6)
    (directory / "results.json").write_text(json.dumps({**again, "test_bpc": "1.5"}))
    with pytest.raises(ValueError, match="results.json.*'test_bpc' is '1.5', not a number"):
        study.summarize(str(tmp_path))


def test_a_study_refused_for_its_flags_leaves_nothing(tmp_path):
    for bad in (["--learning-rates", "0.002,nan"], ["--learning-rates", "0.01,-1"],
                ["--budget", "10000000000000"]):
        done = run_program(tmp_path, "compare_sharing.py", "--output", tmp_path / "study",
                           "--steps", "2", *bad)
        assert_one_clear_line(done)
        assert not (tmp_path / "study").exists(), bad


def test_an_interrupted_study_says_how_to_continue_it(tmp_path, monkeypatch):
    from keras_mulrnn.analysis import study
    from keras_mulrnn.analysis.study import runner
    from keras_mulrnn.lm.training import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("Interrupted at step 3 of 8; a checkpoint is in X.")

    monkeypatch.setattr(runner, "train", interrupted)
    arms = study.plan_arms(small_config(), ("lstm",), "budget", ("shared",))
    with pytest.raises(TrainingInterrupted) as stop:
        study.run_study(small_corpus(), arms, 1, [1e-2], tmp_path, verbose=0)
    assert "Run the same command again" in str(stop.value)
    assert "--resume" not in str(stop.value) and "step 3 of 8" in str(stop.value)


def test_rates_from_a_file_that_is_not_a_selection(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text('{"rates": [0.01]}')
    for path, message in ((tmp_path / "list.json", "is not a study's selection.json"),
                          (tmp_path / "other.json", "is not a study's selection.json"),
                          (tmp_path / "none.json", "does not exist")):
        done = run_program(tmp_path, "compare_sharing.py", "--output", tmp_path / "s",
                           "--rates-from", path)
        assert_one_clear_line(done)
        assert message in done.stderr and not (tmp_path / "s").exists()
