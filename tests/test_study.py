"""The sharing study, error recovery and dynamic evaluation (issue 6)."""

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mulrnn.analysis import study
from keras_mulrnn.analysis.statistics import holm
from keras_mulrnn.analysis.study import runner
from keras_mulrnn.analysis.recovery import error_recovery, state_cosine
from keras_mulrnn.data import Vocabulary, corpora
from keras_mulrnn.analysis.dynamic_evaluation import dynamic_evaluate, gradient_statistics
from keras_mulrnn.lm.model import CharLanguageModel
from keras_mulrnn.params import stack_params
from keras_mulrnn.saving import load_model
from keras_mulrnn.lm.config import TrainConfig, recurrent_params
from keras_mulrnn.lm.lock import LOCK_FILE, DirectoryInUse, hold_directory
from keras_mulrnn.lm.training import train

from reference import reference_weights, run as reference_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ("Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous "
        "fortune, or to take arms against a sea of troubles.\n") * 20


def tiny_base(**overrides):
    values = dict(units=12, embedding_dim=6, batch_size=4, seq_len=16, steps=6, eval_every=3,
                  learning_rate=1e-2, eval_batch_size=2, test_batch_size=4, sample_length=5,
                  seed=3, jit_compile=False)
    values.update(overrides)
    return TrainConfig(**values)


# ------------------------------------------------------------------------- the study


def _count(family, config):
    return stack_params(family, config.parametrization, config.units, config.embedding_dim,
                        config.rank, config.num_layers)


def test_the_factorial_arms_against_an_independent_computation():
    """mLSTM at 128 units, embedding 32: the shared cell has 102,912 recurrent weights
    (rank 128); the unshared cell of that budget has rank 75; the additive LSTM 145 units;
    the unshared cell at rank 128 has 164,352, the shared at rank 75 fewer."""
    base = tiny_base(units=128, embedding_dim=32, recurrent_dropout=0.1, steps=100)
    arms = {arm.name: arm for arm in study.plan_arms(base, ("lstm",), "factorial")}
    assert list(arms) == ["shared@128", "unshared@75", "unshared@128", "shared@75",
                          "additive"]
    # By hand, from the equations: G·(d·k + n·k) + 4·d·n + 4·k·n + 4·n (d=32, n=128).
    def mlstm(groups, k, n=128, d=32):
        return groups * (d * k + n * k) + 4 * d * n + 4 * k * n + 4 * n

    def lstm(n, d=32):
        return 4 * d * n + 4 * n * n + 4 * n

    budget = mlstm(1, 128)
    assert budget == 102_912 and mlstm(4, 128) == 164_352
    # The equal-budget unshared rank: the k with 4·(32 + 128)·k + 4·128·k + 4·(32·128 +
    # 128) closest to the budget.
    k_u = min(range(1, 129), key=lambda k: abs(mlstm(4, k) - budget))
    n_a = min(range(1, 400), key=lambda n: abs(lstm(n) - budget))
    assert (k_u, n_a) == (75, 145)
    expected = {"shared@128": (128, 128, mlstm(1, 128)), "unshared@75": (128, 75, mlstm(4, 75)),
                "unshared@128": (128, 128, mlstm(4, 128)), "shared@75": (128, 75, mlstm(1, 75)),
                "additive": (145, None, lstm(145))}
    for name, (units, rank, count) in expected.items():
        config = arms[name].config
        assert (config.units, config.rank, _count("lstm", config)) == (units, rank, count)
        # Everything else is the base's, field by field.
        differing = {k for k, v in dataclasses.asdict(config).items() if v != getattr(base, k)}
        assert differing <= {"parametrization", "rank", "units"}, differing
    roles = {(arm.sharing, arm.level) for arm in arms.values()}
    assert roles == {("shared", "k_s"), ("unshared", "k_u"), ("unshared", "k_s"),
                     ("shared", "k_u"), ("additive", "budget")}


def test_the_families_arms_against_an_independent_computation():
    """At the shared mLSTM's 102,912 weights (128 units, embedding 32), by hand: the LSTM
    at 145 units, the MI-LSTM (3 vectors of 4n more) at 143, the Mogrifier LSTM (4 full
    rounds of 128 × 32) at 131, the Mogrifier mLSTM at 128 units and rank 104."""
    base = tiny_base(units=128, embedding_dim=32, steps=100)
    arms = {arm.name: arm for arm in study.plan_arms(base, ("lstm",), "families")}
    assert list(arms) == ["shared", "additive", "integration", "mogrifier", "mogrifier-shared"]

    def mlstm(k, n=128, d=32):
        return (d * k + n * k) + 4 * d * n + 4 * k * n + 4 * n

    def lstm(n, d=32):
        return 4 * d * n + 4 * n * n + 4 * n

    def mogrifier(n, rounds=4, d=32):
        return rounds * n * d

    budget = mlstm(128)
    sizes = {"additive": min(range(1, 400), key=lambda n: abs(lstm(n) - budget)),
             "integration": min(range(1, 400),
                                key=lambda n: abs(lstm(n) + 12 * n - budget)),
             "mogrifier": min(range(1, 400),
                              key=lambda n: abs(lstm(n) + mogrifier(n) - budget)),
             "mogrifier-shared": min(range(1, 129),
                                     key=lambda k: abs(mlstm(k) + mogrifier(128) - budget))}
    assert sizes == {"additive": 145, "integration": 143, "mogrifier": 131,
                     "mogrifier-shared": 104}
    expected = {
        "shared": ("shared", 128, 128, 0, budget),
        "additive": ("additive", 145, None, 0, lstm(145)),
        "integration": ("integration", 143, None, 0, lstm(143) + 12 * 143),
        "mogrifier": ("additive", 131, None, 4, lstm(131) + mogrifier(131)),
        "mogrifier-shared": ("shared", 128, 104, 4, mlstm(104) + mogrifier(128)),
    }
    for name, (parametrization, units, rank, rounds, count) in expected.items():
        config = arms[name].config
        assert (config.parametrization, config.units, config.rank, config.mogrifier_rounds,
                config.mogrifier_rank) == (parametrization, units, rank, rounds, None)
        assert recurrent_params(config) == count
        assert abs(count - budget) / budget < 0.01
    assert {(arm.sharing, arm.level) for arm in arms.values()} == {
        ("shared", "k_s"), ("additive", "budget"), ("integration", "budget"),
        ("mogrifier", "budget"), ("mogrifier-shared", "budget")}


def test_a_families_study_compares_every_pair_holm_corrected(tmp_path):
    """Tiny runs at one given rate: every pair of the five arms is one test of the family,
    Holm-corrected together, and equals a hand computation from the runs' test BPC."""
    base = tiny_base(units=8, embedding_dim=4, steps=2, eval_every=2)
    arms = study.plan_arms(base, ("lstm",), "families")
    rows = study.run_study(_corpus(), arms, seeds=2, rates=[1e-2], output_dir=tmp_path,
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


def test_the_budget_design_names_each_transition_by_its_role():
    """Integration and additive arms have no sharing: each has its own role at the budget
    (they once shared one, and one of them replaced the other in the comparisons)."""
    base = tiny_base(units=64, embedding_dim=16)
    arms = study.plan_arms(base, ("lstm",), "budget", ("additive", "integration", "shared"))
    assert [(a.name, a.sharing, a.level) for a in arms] == [
        ("additive", "additive", "budget"), ("integration", "integration", "budget"),
        ("shared", "shared", "k_s")]
    tests = [name for name, _ in study.BUDGET_TESTS]
    assert "equal budget: shared − integration" in tests


def test_a_base_mogrifier_is_in_the_budget_and_the_shared_arm_keeps_the_base_rank():
    base = tiny_base(units=32, embedding_dim=8, rank=32, mogrifier_rounds=2)
    for design in ("budget", "factorial"):
        arms = {a.name: a for a in study.plan_arms(base, ("lstm",), design)}
        shared = arms["shared"] if design == "budget" else arms["shared@32"]
        assert (shared.config.rank, shared.config.mogrifier_rounds) == (32, 2)
        assert arms["additive"].config.mogrifier_rounds == 2
    # The families design's budget is the plain shared cell's, whatever the base's rounds.
    families = {a.name: a for a in study.plan_arms(base, ("lstm",), "families")}
    assert families["shared"].config.mogrifier_rounds == 0
    assert families["shared"].config.rank == 32
    assert families["mogrifier"].config.mogrifier_rounds == 2


def test_budget_design_and_mrnn_arms():
    base = tiny_base(units=64, embedding_dim=16)
    arms = study.plan_arms(base, ("gru",), "budget")
    budget = stack_params("gru", "shared", 64, 16)
    for arm in arms:
        assert abs(_count("gru", arm.config) - budget) / budget < 0.02
    assert [arm.name for arm in arms] == ["additive", "shared", "unshared"]
    # mRNN has one transform: no unshared arm in either design.
    assert [a.name for a in study.plan_arms(base, ("rnn",), "factorial")] == \
        ["shared@64", "additive"]
    assert [a.name for a in study.plan_arms(base, ("rnn",), "budget", budget=2000)] == \
        ["additive", "shared"]
    with pytest.raises(ValueError, match="design"):
        study.plan_arms(base, ("lstm",), "fractional")


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


def _corpus():
    return corpora.corpus_from_text("hamlet", TEXT, (0.8, 0.13, 0.07))


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


def _finish(tmp_path, arm, rate, **results):
    """The `results.json` of the arm's first-seed run at `rate`."""
    run = study.study_run(arm, rate, arm.config.seed)
    directory = tmp_path / "runs" / run.name
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps(
        {"test_bpc": 1.0, **results, "config": dataclasses.asdict(run.config)}))


def test_a_run_no_better_than_uniform_counts_and_one_stopped_by_a_nan_does_not(tmp_path):
    """Training's own `diverged` flag is a figure (the run finished, its BPC is real); the
    study's record of a run stopped by a NaN (the error, a string) is no figure at all."""
    (arm,) = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    _finish(tmp_path, arm, 0.002, valid_bpc=4.58, diverged=True)
    _finish(tmp_path, arm, 0.005, valid_bpc=2.5, diverged=False)
    _finish(tmp_path, arm, 0.01, valid_bpc=None, test_bpc=None,
            diverged="Non-finite loss at step 3")
    needed, chosen, how, valid, lost = study.rate_search(tmp_path, arm, GRID)
    assert valid == {0.002: 4.58, 0.005: 2.5, 0.01: math.inf}
    assert (needed, chosen, how, lost) == ([], 0.005, "interior", {})


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
    rows = study.run_study(_corpus(), arms, seeds=2, rates=rates,
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
        again = study.run_study(_corpus(), arms, seeds=2, rates=rates,
                                output_dir=tmp_path, verbose=0)
    finally:
        runner.train = real_train
    assert [r["test_bpc_mean"] for r in again] == [r["test_bpc_mean"] for r in rows]
    # Other flags are refused, not mixed in.
    with pytest.raises(ValueError, match="other arms or rates"):
        study.run_study(_corpus(), arms, seeds=2, rates=[1e-2], output_dir=tmp_path,
                        verbose=0)


def test_fixed_rates_from_another_study_skip_the_grid(tmp_path):
    base = tiny_base(units=8, embedding_dim=4, steps=2, eval_every=2)
    arms = study.plan_arms(base, ("gru",), "budget", ("shared", "additive"))
    fixed = {"gru/shared": 3e-2, "gru/additive": 1e-2}
    rows = study.run_study(_corpus(), arms, seeds=2, rates=[1e-2, 3e-2],
                           output_dir=tmp_path, fixed_rates=fixed, verbose=0)
    assert sorted(os.listdir(tmp_path / "runs")) == [
        "gru-additive-lr0.01-seed3", "gru-additive-lr0.01-seed4",
        "gru-shared-lr0.03-seed3", "gru-shared-lr0.03-seed4"]
    assert {r["arm"]: r["learning_rate"] for r in rows} == {"shared": 3e-2, "additive": 1e-2}


@pytest.mark.slow
def test_two_processes_share_one_study_and_train_every_run_once(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(TEXT * 4)
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
            runner._run_one(_corpus(), run, "[1/1]", str(tmp_path), False, 0)
    assert capsys.readouterr().out.splitlines()[-1] == f"[1/1] {run.name}: {study.TAKEN}"
    assert os.listdir(directory) == [LOCK_FILE]  # nothing trained, nothing written


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


def test_compare_sharing_script_end_to_end_and_bad_flags(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(TEXT * 4)  # a test split long enough for the error-recovery windows
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


# ----------------------------------------------------------------------- error recovery


def bigram_model(vocabulary_size, seed=0):
    """A Keras model whose next-symbol distribution depends on the current symbol only:
    logits = log P[current]; its probabilities are known exactly."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.ones(vocabulary_size), size=vocabulary_size)
    model = keras.Sequential([keras.Input((None,), dtype="int32"),
                              keras.layers.Embedding(vocabulary_size, vocabulary_size)])
    model.layers[0].set_weights([np.log(table)])
    return model, table


def test_error_recovery_is_zero_for_an_unchanged_text():
    model, _ = bigram_model(7)
    ids = np.random.default_rng(1).integers(0, 7, 3000)
    unchanged = error_recovery(model, ids, positions=200, horizon=20, context=10, seed=4)
    same = error_recovery(model, ids, positions=unchanged.positions, horizon=20, context=10,
                          replacements=unchanged.originals)
    assert np.all(same.curve == 0.0) and same.area == 0.0 and same.recovery_steps == 1


def test_error_recovery_on_a_model_with_known_probabilities():
    model, table = bigram_model(6, seed=2)
    ids = np.random.default_rng(3).integers(0, 6, 5000)
    result = error_recovery(model, ids, positions=300, horizon=30, context=5, seed=8,
                            batch_size=64)
    p, r = result.positions, result.replacements
    assert len(set(p.tolist())) == 300 and np.all(r != ids[p])
    assert np.all((r >= 0) & (r < 6))
    # A bigram model forgets the wrong symbol after one step: the excess is all in step 1.
    want = np.mean(np.log2(table[ids[p], ids[p + 1]]) - np.log2(table[r, ids[p + 1]]))
    assert result.curve[0] == pytest.approx(want, abs=1e-5)
    np.testing.assert_allclose(result.curve[1:], 0.0, atol=1e-6)
    assert result.area == pytest.approx(want, abs=1e-4)
    assert result.recovery_steps == (2 if want >= 0.05 else 1)
    # Normalised by the model's own clean loss at each offset: −log2 P[x_{p+k−1}, x_{p+k}].
    offsets = np.arange(1, 31)
    clean = np.mean(-np.log2(table[ids[p[:, None] + offsets - 1], ids[p[:, None] + offsets]]),
                    axis=0)
    np.testing.assert_allclose(result.clean, clean, rtol=1e-5)
    assert result.relative[0] == pytest.approx(want / clean[0], rel=1e-4)
    np.testing.assert_allclose(result.relative[1:], 0.0, atol=1e-5)
    assert result.relative_area == pytest.approx(want / clean[0], rel=1e-3)
    assert result.remaining[0] == 1.0
    np.testing.assert_allclose(result.remaining[1:], 0.0, atol=1e-4)


def test_error_recovery_rejects_a_text_too_short():
    model, _ = bigram_model(3)
    with pytest.raises(ValueError, match="at least context"):
        error_recovery(model, np.zeros(50, int), horizon=50, context=10)


def tiny_model(family="lstm", parametrization="shared", units=10, seed=1):
    keras.utils.set_random_seed(seed)
    model = CharLanguageModel(Vocabulary.from_data(TEXT, "char"), family, parametrization,
                              units=units, rank=None if parametrization == "additive" else 6,
                              embedding_dim=5)
    model(np.zeros((1, 1), "int32"))
    rng = np.random.default_rng(seed)
    model.set_weights([0.5 * rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


def test_state_cosine_against_the_reference():
    model = tiny_model()
    ids = model.vocabulary.encode(TEXT[:400])
    cell = model.recurrent_layers[0].cell
    embedded = model.embedding.get_weights()[0][ids[:400].reshape(4, 100)].astype(np.float64)
    h, _ = reference_run("lstm", reference_weights(cell), embedded,
                         [np.zeros((4, 10)), np.zeros((4, 10))])
    cos = np.sum(h[:, 1:] * h[:, :-1], -1) / (
        np.linalg.norm(h[:, 1:], axis=-1) * np.linalg.norm(h[:, :-1], axis=-1))
    assert state_cosine(model, ids, length=100, rows=4) == pytest.approx([cos.mean()],
                                                                         abs=1e-5)


# --------------------------------------------------------------------- dynamic evaluation


def test_dynamic_evaluation_with_rate_zero_is_static_evaluation():
    model = tiny_model("gru", "unshared")
    ids = model.vocabulary.encode(TEXT)
    before = [w.copy() for w in model.get_weights()]
    stats = gradient_statistics(model, ids[:1000], seq_len=20, max_segments=10)
    result = dynamic_evaluate(model, ids[1000:2000], stats, learning_rate=0.0, decay=0.02,
                              seq_len=20)
    assert result.dynamic_bpc == pytest.approx(result.static_bpc, rel=1e-6)
    assert result.symbols == 999
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dynamic_evaluation_lowers_bpc_on_a_repetitive_sequence(tmp_path):
    corpus = _corpus()
    train(corpus, tiny_base(units=32, rank=16, steps=60, eval_every=60, batch_size=8,
                            seq_len=20), tmp_path, verbose=0)
    model = load_model(tmp_path / "model.keras")
    # A phrase the model never saw, over and over: adapting to it must pay off.
    phrase = model.vocabulary.encode(TEXT[60:100][::-1] * 40)
    stats = gradient_statistics(model, corpus.train, seq_len=20, max_segments=50)
    result = dynamic_evaluate(model, phrase, stats, learning_rate=1e-3, decay=1e-3,
                              seq_len=20)
    assert result.dynamic_bpc < result.static_bpc - 0.3, result
    # The same from the command line, on a file of that phrase.
    data = tmp_path / "phrase.txt"
    data.write_text(TEXT[:131] + TEXT[60:100][::-1] * 40)  # all symbols the model knows
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "evaluate.py"), "--model",
         str(tmp_path / "model.keras"), "--data", str(data), "--split", "train", "--dynamic",
         "--seq-len", "20", "--dynamic-lr", "1e-3", "--statistics-segments", "20"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    static, dynamic = (float(done.stdout.split(f"{kind} ")[1].split()[0])
                       for kind in ("static", "dynamic"))
    assert dynamic < static - 0.3, done.stdout


def test_dynamic_evaluation_applies_the_rms_update_after_scoring_each_segment():
    """Three segments: bits(s1; θ0) + bits(s2; θ1) + bits(s3; θ2), with θ_i from the update
    rule of Krause et al. written here in NumPy, and RMS_g from per-segment gradients."""
    model = tiny_model("lstm", "unshared", units=8)
    ids = model.vocabulary.encode(TEXT)
    train_ids, split = ids[:401], ids[1000:1031]  # 30 targets: 3 segments of 10
    variables = model.trainable_variables
    theta0 = [v.numpy().astype(np.float64) for v in variables]

    def segment(inputs, targets, states):
        with tf.GradientTape() as tape:
            logits, states = model.forward(inputs[None], states)
            log_probs = tf.nn.log_softmax(logits[0])
            bits = -tf.gather(log_probs, targets, batch_dims=1) / math.log(2)
            loss = tf.reduce_mean(bits) * math.log(2)
        grads = [np.asarray(tf.convert_to_tensor(g), np.float64)
                 for g in tape.gradient(loss, variables)]
        return float(tf.reduce_sum(bits)), grads, states

    squares, states = [np.zeros_like(t) for t in theta0], model.zero_states(1)
    for j in range(40):  # 400 targets, 40 segments of 10
        chunk = train_ids[10 * j : 10 * j + 11].astype(np.int32)
        _, grads, states = segment(chunk[:-1], chunk[1:], states)
        squares = [s + g**2 for s, g in zip(squares, grads)]
    rms = [np.sqrt(s / 40) for s in squares]
    stats = gradient_statistics(model, train_ids, seq_len=10, max_segments=1000)
    for a, b in zip(stats, rms):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)

    eta, lam, eps = 2e-3, 0.05, 1e-5
    mean_rms = sum(r.sum() for r in rms) / sum(r.size for r in rms)
    rate = [np.minimum(r / mean_rms, 1 / lam) for r in rms]
    total, states = 0.0, model.zero_states(1)
    for j in range(3):
        chunk = split[10 * j : 10 * j + 11].astype(np.int32)
        bits, grads, states = segment(chunk[:-1], chunk[1:], states)
        total += bits
        theta = [v.numpy().astype(np.float64) for v in variables]
        for v, t, g, r, d, t0 in zip(variables, theta, grads, rms, rate, theta0):
            v.assign(t - eta * g / (r + eps) + lam * d * (t0 - t))
    for v, t0 in zip(variables, theta0):
        v.assign(t0)
    result = dynamic_evaluate(model, split, stats, learning_rate=eta, decay=lam, seq_len=10,
                              epsilon=eps)
    assert result.symbols == 30
    assert result.dynamic_bpc == pytest.approx(total / 30, rel=1e-5)
    assert result.dynamic_bpc != pytest.approx(result.static_bpc, rel=1e-4)


def test_dynamic_evaluation_rejects_bad_arguments():
    model = tiny_model()
    ids = model.vocabulary.encode(TEXT)
    stats = gradient_statistics(model, ids[:300], seq_len=20, max_segments=2)
    with pytest.raises(ValueError, match="learning_rate"):
        dynamic_evaluate(model, ids[:300], stats, learning_rate=-1.0)
    with pytest.raises(ValueError, match="statistics"):
        dynamic_evaluate(model, ids[:300], stats[:-1])


def test_a_study_whose_arms_repeat_is_refused(tmp_path):
    """Repeated arms once made the study train its unique runs and then wait forever for
    runs that could never be told apart."""
    with pytest.raises(ValueError, match="arms repeat.*lstm/shared"):
        study.plan_arms(tiny_base(units=8), ("lstm", "lstm"), "factorial")
    with pytest.raises(ValueError, match="arms repeat"):
        study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared", "shared"))
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "compare_sharing.py"), "--family",
         "lstm,lstm", "--output", str(tmp_path / "s")], capture_output=True, text=True,
        timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 2 and "--family 'lstm,lstm' gives 'lstm' twice" in done.stderr
    assert not (tmp_path / "s").exists()


def test_a_study_that_cannot_progress_says_so_instead_of_spinning(tmp_path, monkeypatch):
    """A pass of the only process that finishes no run can never be followed by one that
    does: the study stops with a message."""
    arms = study.plan_arms(tiny_base(units=8), ("lstm",), "budget", ("shared",))
    monkeypatch.setattr(runner, "_run_one", lambda *args, **kwargs: None)  # records nothing
    with pytest.raises(RuntimeError, match="cannot finish"):
        study.run_study(_corpus(), arms, 2, [0.005], str(tmp_path))


def test_a_study_recovers_every_point_between_a_runs_files(tmp_path):
    """A run killed after its results but before its final model is resumed (the model is
    written from its checkpoints, so that the run can be analysed); a damaged `results.json` is
    written again by resuming the run, not reported as a JSON parser's message; a figure
    that is not a number is named with its file."""
    base = tiny_base(units=8, embedding_dim=4, steps=4, eval_every=2)
    arms = study.plan_arms(base, ("lstm",), "budget", ("shared",))
    study.run_study(_corpus(), arms, 1, [1e-2], str(tmp_path), verbose=0)
    (run,) = os.listdir(tmp_path / "runs")
    directory = tmp_path / "runs" / run
    first = json.loads((directory / "results.json").read_text())
    os.remove(directory / "model.keras")
    study.run_study(_corpus(), arms, 1, [1e-2], str(tmp_path), verbose=0)
    assert isinstance(load_model(directory / "model.keras"), CharLanguageModel)  # analysable
    (directory / "results.json").write_text('{"valid_bpc": 1.2, "test')  # cut short
    with pytest.warns(UserWarning, match="results.json.*damaged.*resumed"):
        study.run_study(_corpus(), arms, 1, [1e-2], str(tmp_path), verbose=0)
    again = json.loads((directory / "results.json").read_text())
    assert again["test_bpc"] == pytest.approx(first["test_bpc"], rel=1e-6)
    (directory / "results.json").write_text(json.dumps({**again, "test_bpc": "1.5"}))
    with pytest.raises(ValueError, match="results.json.*'test_bpc' is '1.5', not a number"):
        study.summarize(str(tmp_path))
