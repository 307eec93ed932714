"""The study's design (`analysis/study/design.py`): its arms against an independent count."""

import dataclasses
import os
import subprocess
import sys

import pytest

from keras_mulrnn.analysis import study
from keras_mulrnn.lm.config import recurrent_params
from keras_mulrnn.params import stack_params

from helpers import ROOT, assert_one_clear_line, run_program, small_config, tiny_base


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


@pytest.mark.parametrize("arguments,message", [
    (["--budget", "0"], "--budget must be a positive"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--trend-from", "nowhere"], "--trend-from 'nowhere' is not a finished study's"),
])
def test_study_counts_are_checked(tmp_path, arguments, message):
    done = run_program(tmp_path, "compare_sharing.py", "--output", tmp_path / "s", *arguments)
    assert_one_clear_line(done)
    assert message in done.stderr and not (tmp_path / "s").exists()


def test_study_budget_of_zero_is_refused_in_the_library():
    from keras_mulrnn.analysis.study import plan_arms

    for design in ("budget", "factorial", "families"):
        with pytest.raises(ValueError, match="budget"):
            plan_arms(small_config(), ("lstm",), design=design, budget=0)
