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
from keras_mulrnn.analysis.recovery import error_recovery, state_cosine
from keras_mulrnn.data import Vocabulary, corpora
from keras_mulrnn.analysis.dynamic_evaluation import dynamic_evaluate, gradient_statistics
from keras_mulrnn.lm.model import CharLanguageModel
from keras_mulrnn.params import stack_params
from keras_mulrnn.saving import load_model
from keras_mulrnn.lm.config import TrainConfig
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


def test_runs_differ_only_in_parametrization_and_the_size_that_sets_the_budget():
    base = tiny_base(units=64, embedding_dim=16, recurrent_dropout=0.1, steps=100)
    runs = study.plan_study(base, ("lstm", "gru"), study.PARAMETRIZATIONS, seeds=3)
    assert len(runs) == 2 * 3 * 3
    for family in ("lstm", "gru"):
        budget = stack_params(family, "shared", 64, 16)
        mine = [r.config for r in runs if r.config.family == family]
        assert {c.seed for c in mine} == {3, 4, 5}
        for config in mine:
            # Everything else is the base's, field by field.
            differing = {k for k, v in dataclasses.asdict(config).items()
                         if v != getattr(base, k)}
            allowed = {"family", "parametrization", "rank", "seed"}
            if config.parametrization == "additive":
                allowed.add("units")
            else:
                assert config.units == 64
            assert differing <= allowed, differing
            # Equal budget: within 2% (rank and units move in whole steps).
            count = stack_params(family, config.parametrization, config.units, 16, config.rank)
            assert abs(count - budget) / budget < 0.02, (config, count, budget)
        ranks = {c.parametrization: c.rank for c in mine}
        assert ranks["shared"] == 64 and ranks["unshared"] < 64 and ranks["additive"] is None


def test_mrnn_has_no_unshared_run_and_an_explicit_budget_is_used():
    runs = study.plan_study(tiny_base(units=32), ("rnn",), seeds=1, budget=2000)
    assert [r.config.parametrization for r in runs] == ["additive", "shared"]
    for run in runs:
        count = stack_params("rnn", run.config.parametrization, run.config.units, 6,
                             run.config.rank)
        assert abs(count - 2000) / 2000 < 0.05


def _corpus():
    return corpora.corpus_from_text("hamlet", TEXT, (0.8, 0.13, 0.07))


def test_same_seed_same_results_and_a_rerun_skips_finished_runs(tmp_path, monkeypatch):
    tf.config.experimental.enable_op_determinism()
    real_train = study.train
    runs = study.plan_study(tiny_base(), ("lstm",), ("shared", "unshared"), seeds=2)
    corpus = _corpus()
    first = study.run_study(corpus, runs, tmp_path / "a", verbose=0)
    second = study.run_study(corpus, runs, tmp_path / "b", verbose=0)

    def without_speed(rows):
        return [{k: v for k, v in row.items() if k != "chars_per_sec"} for row in rows]

    assert without_speed(first) == without_speed(second)
    for run in runs:
        a, b = (json.load(open(tmp_path / d / "runs" / run.name / "results.json"))
                for d in ("a", "b"))
        assert a["test_bpc"] == b["test_bpc"] and a["valid_bpc"] == b["valid_bpc"]
    # Different seeds did give different models.
    bpcs = {json.load(open(tmp_path / "a" / "runs" / r.name / "results.json"))["test_bpc"]
            for r in runs}
    assert len(bpcs) == 4

    # A run interrupted after its last checkpoint (no results yet) is resumed, not restarted.
    interrupted = tmp_path / "a" / "runs" / runs[0].name
    before = json.load(open(interrupted / "results.json"))
    os.remove(interrupted / "results.json")
    resumed = []
    monkeypatch.setattr(study, "train", lambda *a, **k: resumed.append(k["resume"])
                        or real_train(*a, **k))
    study.run_study(corpus, runs, tmp_path / "a", verbose=0)
    assert resumed == [True]
    after = json.load(open(interrupted / "results.json"))
    assert after["test_bpc"] == before["test_bpc"] and after["steps_this_run"] == 0

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(study, "train", no_training)
    assert without_speed(study.run_study(corpus, runs, tmp_path / "a", verbose=0)) == \
        without_speed(first)
    # A finished run made with other settings is not silently mixed in.
    other = study.plan_study(tiny_base(learning_rate=2e-2), ("lstm",), ("shared",), seeds=1)
    with pytest.raises(ValueError, match="learning_rate"):
        study.run_study(corpus, other, tmp_path / "a", verbose=0)


def test_tables_and_the_paired_interval(tmp_path):
    runs = study.plan_study(tiny_base(), ("gru",), ("additive", "shared", "unshared"), seeds=3)
    rows = study.run_study(_corpus(), runs, tmp_path, verbose=0)
    with open(tmp_path / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    assert set(study.RESULT_COLUMNS) <= set(table[0])
    assert [r["parametrization"] for r in table] == ["additive", "shared", "unshared"]
    results = {r.name: json.load(open(tmp_path / "runs" / r.name / "results.json"))
               for r in runs}
    shared = [results[f"gru-shared-seed{s}"]["test_bpc"] for s in (3, 4, 5)]
    unshared = [results[f"gru-unshared-seed{s}"]["test_bpc"] for s in (3, 4, 5)]
    row = next(r for r in rows if r["parametrization"] == "shared")
    assert row["test_bpc_mean"] == pytest.approx(sum(shared) / 3)
    assert row["test_bpc_std"] == pytest.approx(
        math.sqrt(sum((x - sum(shared) / 3) ** 2 for x in shared) / 2))
    # Paired: per seed, then mean ± t(0.975, 2 dof) · s / √3 with t = 4.302653.
    differences = [a - b for a, b in zip(shared, unshared)]
    mean = sum(differences) / 3
    half = 4.302653 * math.sqrt(sum((d - mean) ** 2 for d in differences) / 2) / math.sqrt(3)
    with open(tmp_path / "paired.csv") as handle:
        paired = {(r["comparison"], r["split"]): r for r in csv.DictReader(handle)}
    test = paired[("shared − unshared", "test")]
    assert float(test["mean"]) == pytest.approx(mean)
    assert float(test["ci95_low"]) == pytest.approx(mean - half, rel=1e-5)
    assert float(test["ci95_high"]) == pytest.approx(mean + half, rel=1e-5)
    markdown = open(tmp_path / "results.md").read()
    assert "| gru | shared |" in markdown and "learning_curves.png" in markdown
    assert os.path.getsize(tmp_path / "learning_curves.png") > 1000


def test_compare_sharing_script_end_to_end_and_bad_flags(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(TEXT * 4)  # a test split long enough for the error-recovery windows
    command = [sys.executable, os.path.join(ROOT, "examples", "compare_sharing.py"),
               "--data", str(data), "--family", "lstm", "--parametrizations", "shared,additive",
               "--seeds", "1", "--steps", "4", "--eval-every", "2", "--units", "8",
               "--embedding-dim", "4", "--batch-size", "2", "--seq-len", "10",
               "--valid-symbols", "200", "--test-batch-size", "8", "--jit-compile", "false",
               "--output", str(tmp_path / "out"), "--analysis"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("results.csv", "results.md", "paired.csv", "learning_curves.png",
                 "error_recovery.csv", "error_recovery.png"):
        assert (tmp_path / "out" / name).exists(), name
    bad = subprocess.run(command[:-3] + ["--family", "transformer", "--output",
                                         str(tmp_path / "bad")],
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
