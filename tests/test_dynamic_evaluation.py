"""Dynamic evaluation (`analysis/dynamic_evaluation.py`, Krause et al., 2018) against its
equations."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_mulrnn.analysis.dynamic_evaluation import dynamic_evaluate, gradient_statistics
from keras_mulrnn.lm.training import train
from keras_mulrnn.saving import load_model

from helpers import ROOT, SPEECH, seeded_model, speech_corpus, tiny_base


def test_dynamic_evaluation_with_rate_zero_is_static_evaluation():
    model = seeded_model("gru", "unshared")
    ids = model.vocabulary.encode(SPEECH)
    before = [w.copy() for w in model.get_weights()]
    stats = gradient_statistics(model, ids[:1000], seq_len=20, max_segments=10)
    result = dynamic_evaluate(model, ids[1000:2000], stats, learning_rate=0.0, decay=0.02,
                              seq_len=20)
    assert result.dynamic_bpc == pytest.approx(result.static_bpc, rel=1e-6)
    assert result.symbols == 999
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dynamic_evaluation_lowers_bpc_on_a_repetitive_sequence(tmp_path):
    corpus = speech_corpus()
    train(corpus, tiny_base(units=32, rank=16, steps=60, eval_every=60, batch_size=8,
                            seq_len=20), tmp_path, verbose=0)
    model = load_model(tmp_path / "model.keras")
    # A phrase the model never saw, over and over: adapting to it must pay off.
    phrase = model.vocabulary.encode(SPEECH[60:100][::-1] * 40)
    stats = gradient_statistics(model, corpus.train, seq_len=20, max_segments=50)
    result = dynamic_evaluate(model, phrase, stats, learning_rate=1e-3, decay=1e-3,
                              seq_len=20)
    assert result.dynamic_bpc < result.static_bpc - 0.3, result
    # The same from the command line, on a file of that phrase. (With statistics from 20
    # segments, this small model's dynamic BPC moves by up to 0.2 bits with the kernels'
    # rounding (oneDNN or not, deterministic ops or not): shorter segments and a higher
    # rate adapt faster: 0.40 to 0.47 bits below static in those three variants.)
    data = tmp_path / "phrase.txt"
    data.write_text(SPEECH[:131] + SPEECH[60:100][::-1] * 80)  # all symbols the model knows
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "evaluate.py"), "--model",
         str(tmp_path / "model.keras"), "--data", str(data), "--split", "train", "--dynamic",
         "--seq-len", "10", "--dynamic-lr", "3e-3", "--statistics-segments", "20"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    static, dynamic = (float(done.stdout.split(f"{kind} ")[1].split()[0])
                       for kind in ("static", "dynamic"))
    assert dynamic < static - 0.3, done.stdout


def test_dynamic_evaluation_applies_the_rms_update_after_scoring_each_segment():
    """Three segments: bits(s1; θ0) + bits(s2; θ1) + bits(s3; θ2), with θ_i from the update
    rule of Krause et al. written here in NumPy, and RMS_g from per-segment gradients."""
    model = seeded_model("lstm", "unshared", units=8)
    ids = model.vocabulary.encode(SPEECH)
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
    model = seeded_model()
    ids = model.vocabulary.encode(SPEECH)
    stats = gradient_statistics(model, ids[:300], seq_len=20, max_segments=2)
    with pytest.raises(ValueError, match="learning_rate"):
        dynamic_evaluate(model, ids[:300], stats, learning_rate=-1.0)
    with pytest.raises(ValueError, match="statistics"):
        dynamic_evaluate(model, ids[:300], stats[:-1])
