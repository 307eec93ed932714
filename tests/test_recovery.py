"""Error recovery and state similarity (`analysis/recovery.py`) against models whose
probabilities are known."""

import keras
import numpy as np
import pytest

from keras_mulrnn.analysis.recovery import error_recovery, state_cosine

from reference import reference_weights, run as reference_run

from helpers import SPEECH, seeded_model


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


def test_state_cosine_against_the_reference():
    model = seeded_model()
    ids = model.vocabulary.encode(SPEECH[:400])
    cell = model.recurrent_layers[0].cell
    embedded = model.embedding.get_weights()[0][ids[:400].reshape(4, 100)].astype(np.float64)
    h, _ = reference_run("lstm", reference_weights(cell), embedded,
                         [np.zeros((4, 10)), np.zeros((4, 10))])
    cos = np.sum(h[:, 1:] * h[:, :-1], -1) / (
        np.linalg.norm(h[:, 1:], axis=-1) * np.linalg.norm(h[:, :-1], axis=-1))
    assert state_cosine(model, ids, length=100, rows=4) == pytest.approx([cos.mean()],
                                                                         abs=1e-5)
