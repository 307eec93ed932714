"""The character language model (`lm/model.py`): BPC by hand, its file, its memory."""

import os

import keras
import numpy as np
import pytest

from keras_mulrnn.lm.evaluation import evaluate_bpc
from keras_mulrnn.lm.generation import generate

from helpers import ROOT, TEXT, tiny_model


def log2_softmax(logits):
    logits = logits - logits.max(axis=-1, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))) / np.log(2)


@pytest.mark.parametrize("family,parametrization", [("lstm", "shared"), ("gru", "unshared"),
                                                    ("rnn", "additive")])
def test_bpc_equals_hand_computation(family, parametrization):
    model = tiny_model(family, parametrization, num_layers=2)
    ids = model.vocabulary.encode(TEXT[:523])
    # By hand: the model's own probabilities over the whole text in one pass from a zero
    # state, every symbol after the first scored once.
    logits = model.predict(ids[None, :-1].astype("int32"), verbose=0)[0]
    log_probs = log2_softmax(logits.astype(np.float64))
    want = -np.mean(log_probs[np.arange(len(ids) - 1), ids[1:]])
    # One row, the state carried across windows of any length, a partial last window.
    for seq_len in (50, 100, 522, 600):
        bpc, scored = evaluate_bpc(model, ids, batch_size=1, seq_len=seq_len)
        assert scored == len(ids) - 1
        assert bpc == pytest.approx(want, abs=1e-5)
    # Several rows: each row starts from a zero state; still every symbol once.
    rows = 3
    length = -(-(len(ids) - 1) // rows)
    bits = []
    for r in range(rows):
        row = ids[r * length : r * length + length + 1]
        row_logits = model.predict(row[None, :-1].astype("int32"), verbose=0)[0]
        row_log_probs = log2_softmax(row_logits.astype(np.float64))
        bits.extend(-row_log_probs[np.arange(len(row) - 1), row[1:]])
    bpc, scored = evaluate_bpc(model, ids, batch_size=rows, seq_len=40)
    assert scored == len(ids) - 1 == len(bits)
    assert bpc == pytest.approx(np.mean(bits), abs=1e-5)


def test_model_file_round_trip_keeps_vocabulary(tmp_path):
    model = tiny_model("gru", "shared", weight_norm=True, recurrent_dropout=0.1)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert loaded.vocabulary == model.vocabulary
    ids = model.vocabulary.encode(TEXT[:80])[None].astype("int32")
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0))
    assert generate(loaded, "It", 40, seed=3) == generate(model, "It", 40, seed=3)


def test_a_model_file_of_version_0_1_still_loads():
    """A `.keras` file written by keras_mulrnn 0.1.0 (before the carried state moved into the
    model) loads, with the same logits it had then."""
    import keras_mulrnn as km

    fixtures = os.path.join(ROOT, "tests", "fixtures")
    model = km.load_model(os.path.join(fixtures, "lm_v0_1.keras"))
    expected = np.load(os.path.join(fixtures, "lm_v0_1_expected.npz"))
    np.testing.assert_allclose(model(expected["ids"]), expected["logits"], atol=1e-6)
    assert not [v for v in model.weights if "carr" in v.path]


def test_a_model_is_freed_after_its_compiled_functions_ran():
    """Evaluation and sampling compile functions per model; they must not keep the model
    (and its weights) alive once nothing else refers to it: a study trains many."""
    import gc
    import weakref

    def used_and_dropped():
        model = tiny_model()
        ids = model.vocabulary.encode(TEXT[:200])
        evaluate_bpc(model, ids, batch_size=2, seq_len=20)
        generate(model, "It", length=5)
        return weakref.ref(model)

    reference = used_and_dropped()
    gc.collect()
    assert reference() is None
