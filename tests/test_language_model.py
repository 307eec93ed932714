"""The language model end to end: BPC, resume, generation, the scripts."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mulrnn.data import TBPTTBatches, Vocabulary, corpora
from keras_mulrnn.lm.evaluation import evaluate_bpc
from keras_mulrnn.lm.generation import generate
from keras_mulrnn.lm.model import CharLanguageModel
from keras_mulrnn.lm.config import TrainConfig
from keras_mulrnn.lm.training import train

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.\n") * 30
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(family="lstm", parametrization="shared", **kwargs):
    keras.utils.set_random_seed(1)
    model = CharLanguageModel(Vocabulary.from_data(TEXT, "char"), family, parametrization,
                              units=12, rank=None if parametrization == "additive" else 7,
                              embedding_dim=5, **kwargs)
    model(np.zeros((1, 1), "int32"))
    rng = np.random.default_rng(2)
    model.set_weights([0.4 * rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


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


def test_generation_is_reproducible_and_checks_its_prompt():
    model = tiny_model()
    first = generate(model, "It is", length=60, seed=5, top_k=10, temperature=0.8)
    assert len(first) == 60 and set(first) <= set(model.vocabulary.symbols)
    assert generate(model, "It is", length=60, seed=5, top_k=10, temperature=0.8) == first
    assert generate(model, "It is", length=60, seed=6, top_k=10, temperature=0.8) != first
    batch = generate(model, "It is", length=30, seed=5, batch_size=4)
    assert len(batch) == 4 and len(set(batch)) > 1
    # top_k=1 is greedy decoding: the argmax continuation, whatever the seed.
    greedy = generate(model, "a", length=20, seed=1, top_k=1)
    assert generate(model, "a", length=20, seed=2, top_k=1) == greedy
    ids = list(model.vocabulary.encode("a"))
    for _ in range(20):
        logits = model.predict(np.array([ids], "int32"), verbose=0)[0, -1]
        ids.append(int(np.argmax(logits)))
    assert model.vocabulary.decode(ids[1:]) == greedy
    with pytest.raises(ValueError, match=r"prompt.*'Z'.*never saw"):
        generate(model, "Zebra", length=5)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, "It", temperature=0)


def test_model_file_round_trip_keeps_vocabulary(tmp_path):
    model = tiny_model("gru", "shared", weight_norm=True, recurrent_dropout=0.1)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert loaded.vocabulary == model.vocabulary
    ids = model.vocabulary.encode(TEXT[:80])[None].astype("int32")
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0))
    assert generate(loaded, "It", 40, seed=3) == generate(model, "It", 40, seed=3)


def small_corpus():
    return corpora.corpus_from_text("austen", TEXT, (0.8, 0.1, 0.1))


def small_config(**overrides):
    values = dict(units=16, rank=8, embedding_dim=8, batch_size=4, seq_len=20, steps=12,
                  eval_every=4, learning_rate=1e-2, eval_batch_size=2, test_batch_size=2,
                  sample_length=20, seed=7, recurrent_dropout=0.1)
    values.update(overrides)
    return TrainConfig(**values)


class AtStep(keras.callbacks.Callback):
    """Calls `action()` after training step `step`, or with `when="fit"` as the `fit` that ran
    it ends (after the interval's validation and checkpoint: `fit`'s teardown)."""

    def __init__(self, step, action, when="step"):
        super().__init__()
        self.step, self.action, self.when = step, action, when

    def _act_at(self, when):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if when == self.when and step == self.step:
            self.action()

    def on_train_batch_end(self, batch, logs=None):
        self._act_at("step")

    def on_train_end(self, logs=None):
        self._act_at("fit")


def interrupt():  # a killed run, as far as the training loop can tell
    raise KeyboardInterrupt


def press_ctrl_c():  # SIGINT to this process, as a user's Ctrl-C
    os.kill(os.getpid(), signal.SIGINT)


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


def test_main_script_quick_end_to_end(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    output = tmp_path / "out"
    command = [sys.executable, os.path.join(ROOT, "examples", "train_enwik8.py"), "--quick",
               "--data", str(data), "--output", str(output), "--steps", "6",
               "--eval-every", "3", "--batch-size", "4", "--seq-len", "20"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not enwik8" in done.stderr
    assert "test BPC" in done.stdout
    results = json.loads((output / "results.json").read_text())
    for key in ("test_bpc", "valid_bpc", "params", "steps", "chars_per_sec"):
        assert key in results
    assert results["steps"] == 6 and results["config"]["units"] == 128  # the quick preset
    generated = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "generate.py"), "--model",
         str(output / "model.keras"), "--prompt", "It is", "--length", "30"],
        capture_output=True, text=True, timeout=300, env=env)
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert generated.stdout.startswith("It is") and len(generated.stdout.strip()) >= 30
    evaluated = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "evaluate.py"), "--model",
         str(output / "model.keras"), "--corpus", "enwik8", "--data", str(data), "--split", "test",
         "--batch-size", str(results["config"]["test_batch_size"]), "--seq-len", "20"],
        capture_output=True, text=True, timeout=300, env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"test: {results['test_bpc']:.4f} bits per character" in evaluated.stdout


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


def test_a_model_file_of_version_0_1_still_loads():
    """A `.keras` file written by keras_mulrnn 0.1.0 (before the carried state moved into the
    model) loads, with the same logits it had then."""
    import keras_mulrnn as km

    fixtures = os.path.join(ROOT, "tests", "fixtures")
    model = km.load_model(os.path.join(fixtures, "lm_v0_1.keras"))
    expected = np.load(os.path.join(fixtures, "lm_v0_1_expected.npz"))
    np.testing.assert_allclose(model(expected["ids"]), expected["logits"], atol=1e-6)
    assert not [v for v in model.weights if "carr" in v.path]


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
