"""A training run (`lm/training.py`): it learns, resumes exactly, stops at its steps and
writes its results before its sample."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mulrnn.data import corpora
from keras_mulrnn.data import TBPTTBatches
from keras_mulrnn.lm import training
from keras_mulrnn.lm.checkpoints import CheckpointManager
from keras_mulrnn.lm.training import train

from helpers import AtStep, interrupt, small_config, small_corpus


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    tf.config.experimental.enable_op_determinism()
    corpus = small_corpus()
    config = small_config(checkpoint_every=3)
    whole = train(corpus, config, tmp_path / "whole", verbose=0)
    whole_weights = keras.saving.load_model(tmp_path / "whole" / "model.keras").get_weights()

    with pytest.raises(KeyboardInterrupt):
        train(corpus, config, tmp_path / "split", verbose=0,
              extra_callbacks=[AtStep(7, interrupt)])
    # Step 7 is between checkpoints (6 and 8): the resumed run repeats step 7 from step 6.
    resumed = train(corpus, config, tmp_path / "split", resume=True, verbose=0)
    split_weights = keras.saving.load_model(tmp_path / "split" / "model.keras").get_weights()
    assert resumed["steps"] == whole["steps"] == 12 and resumed["steps_this_run"] == 6
    for a, b in zip(whole_weights, split_weights):
        np.testing.assert_array_equal(a, b)
    assert resumed["test_bpc"] == whole["test_bpc"]


def test_resume_refuses_other_settings(tmp_path):
    corpus = small_corpus()
    train(corpus, small_config(steps=4), tmp_path / "run", verbose=0)
    with pytest.raises(ValueError, match=r"units: checkpoint 16, now 24"):
        train(corpus, small_config(steps=4, units=24), tmp_path / "run", resume=True, verbose=0)
    with pytest.raises(FileExistsError, match="--resume"):
        train(corpus, small_config(steps=4), tmp_path / "run", verbose=0)


def test_training_lowers_bpc_and_logs(tmp_path):
    corpus = small_corpus()
    results = train(corpus, small_config(steps=40, eval_every=20, jit_compile=True,
                                         steps_per_execution=2), tmp_path, verbose=0)
    with open(tmp_path / "log.csv") as handle:
        rows = handle.read().splitlines()
    assert rows[0].split(",")[:1] == ["epoch"] and "val_bpc" in rows[0] and len(rows) == 3
    assert results["test_bpc"] < np.log2(len(corpus.vocabulary))  # better than uniform
    assert os.path.exists(tmp_path / "best.keras")
    assert os.listdir(tmp_path / "tensorboard")


def test_validation_and_sampling_do_not_change_training(tmp_path):
    """Evaluation draws no dropout masks from the training stream: how often a run validates
    (and so where a resumed run's checkpoint sits relative to a validation) changes nothing."""
    corpus = small_corpus()
    often = train(corpus, small_config(eval_every=3), tmp_path / "often", verbose=0)
    rarely = train(corpus, small_config(eval_every=12), tmp_path / "rarely", verbose=0)
    for a, b in zip(keras.saving.load_model(tmp_path / "often" / "model.keras").get_weights(),
                    keras.saving.load_model(tmp_path / "rarely" / "model.keras").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert often["test_bpc"] == rarely["test_bpc"]


def test_under_mixed_bfloat16_the_carried_state_stays_float32(tmp_path):
    """`--precision mixed_bfloat16`: the products run in bfloat16, but the state carried from
    batch to batch is float32 (never rounded to bfloat16 between batches), and so are the
    logits and the loss; the saved model keeps its policy."""

    class CarryProbe(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.carry = [keras.ops.convert_to_numpy(v.value) for v in
                          self.model.carry.states]
            self.dtypes = [v.dtype for v in self.model.carry.states]
            self.autocast = [v._autocast for v in self.model.carry.states]

    probe = CarryProbe()
    results = train(small_corpus(), small_config(steps=3, precision="mixed_bfloat16"),
                    tmp_path, verbose=0, extra_callbacks=[probe])
    assert np.isfinite(results["test_bpc"])
    assert probe.dtypes == ["float32"] * 2 and probe.autocast == [False, False]
    import ml_dtypes

    rounded = [c.astype(ml_dtypes.bfloat16).astype(np.float32) for c in probe.carry]
    assert any(np.any(c != r) for c, r in zip(probe.carry, rounded))  # not bf16 values
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.recurrent_layers[0].dtype_policy.name == "mixed_bfloat16"
    # The layer hands its states back in float32 too.
    _, h, c = model.recurrent_layers[0](np.zeros((2, 5, 8), "float32"))
    assert keras.backend.standardize_dtype(h.dtype) == "float32"
    assert keras.backend.standardize_dtype(c.dtype) == "float32"


def test_the_learning_rate_scale_reaches_the_compiled_step():
    """A roll-back halves the learning rate between two `fit` calls; the compiled step must
    use the new value (JAX compiles what it does not track as a constant). With Adam, the
    first update of a weight is about `lr · sign(gradient)`: it halves with the scale.
    (Also run on JAX: test_backends.py.)"""
    from keras_mulrnn import backend
    from keras_mulrnn.lm.optimization import build_model

    corpus = small_corpus()
    config = small_config(steps=10, learning_rate=1e-2, recurrent_dropout=0.0)
    batches = TBPTTBatches(corpus.train, config.batch_size, config.seq_len)
    deltas = []
    for scale in (1.0, 0.5):
        keras.utils.set_random_seed(0)
        model = build_model(corpus.vocabulary, config)
        model.start_carry(config.batch_size, backend.make_distribution())
        source = backend.make_distribution().serve(batches, 0, 1)
        model.fit(source, epochs=1, steps_per_epoch=1, verbose=0)  # compiles the step
        before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        model.optimizer.learning_rate_scale.assign(scale)
        model.fit(backend.make_distribution().serve(batches, 1, 1), epochs=1,
                  steps_per_epoch=1, verbose=0)
        after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        deltas.append(np.concatenate([(a - b).ravel() for a, b in zip(after, before)]))
    assert np.abs(deltas[0]).max() > 0
    np.testing.assert_allclose(deltas[1], 0.5 * deltas[0], rtol=1e-3, atol=1e-7)


def test_the_results_are_written_before_the_sample_and_resume_finishes_a_run(tmp_path,
                                                                             monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("sampling failed")

    monkeypatch.setattr(training, "sample", broken)
    with pytest.raises(RuntimeError, match="sampling failed"):
        train(small_corpus(), small_config(steps=4), tmp_path, verbose=0)
    results = json.loads((tmp_path / "results.json").read_text())
    assert np.isfinite(results["test_bpc"]) and "sample" not in results
    monkeypatch.undo()
    # --resume on a run whose training is done evaluates and writes what is missing.
    again = train(small_corpus(), small_config(steps=4), tmp_path, resume=True, verbose=0)
    assert again["test_bpc"] == results["test_bpc"] and again["steps_this_run"] == 0
    # The training's speed is the earlier process's, kept (this one trained no step).
    assert again["chars_per_sec"] == results["chars_per_sec"] and "sample" in again
    # And on a finished run it says so and returns the results as they are.
    assert train(small_corpus(), small_config(steps=4), tmp_path, resume=True,
                 verbose=0) == json.loads((tmp_path / "results.json").read_text())


def test_the_run_stops_at_exactly_its_steps_whatever_the_steps_per_execution(tmp_path):
    results = train(small_corpus(), small_config(steps=25, eval_every=10,
                                                 steps_per_execution=4), tmp_path, verbose=0)
    assert results["steps"] == 25
    assert CheckpointManager(tmp_path / "checkpoints").steps() == [20, 25]


def test_a_byte_corpus_cut_inside_a_character_still_samples_at_the_end(tmp_path):
    """The closing sample starts from the test split's first symbols, as ids: a byte split
    that begins inside a UTF-8 character (as enwik8's may) is no reason to fail."""
    data = "déjà vu, à la carte; ".encode("utf-8") * 200
    vocabulary = corpora.Vocabulary.from_data(data, "byte")
    ids = vocabulary.encode(data)
    cut = data.index("é".encode("utf-8")) + 1  # inside é
    corpus = corpora.Corpus("cut", vocabulary, ids[cut + 800:], ids[cut + 400 : cut + 800],
                            ids[cut : cut + 400])
    results = train(corpus, small_config(steps=2), tmp_path, verbose=0)
    assert "\ufffd" in results["sample_prompt"] and len(results["sample"]) > 0
