"""What the test modules share: small corpora, configurations and models, the programs
run as a user runs them, and signals sent as a user sends them."""

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np

from keras_mulrnn.data import Vocabulary, corpora
from keras_mulrnn.lm.config import TrainConfig
from keras_mulrnn.lm.model import CharLanguageModel


TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.\n") * 30


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


EXAMPLES = os.path.join(ROOT, "examples")


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


# A long text, so that validation and the final evaluation take seconds.
LONG = TEXT * 12


def tiny_model(family="lstm", parametrization="shared", **kwargs):
    keras.utils.set_random_seed(1)
    model = CharLanguageModel(Vocabulary.from_data(TEXT, "char"), family, parametrization,
                              units=12, rank=None if parametrization == "additive" else 7,
                              embedding_dim=5, **kwargs)
    model(np.zeros((1, 1), "int32"))
    rng = np.random.default_rng(2)
    model.set_weights([0.4 * rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


def small_corpus():
    return corpora.corpus_from_text("austen", TEXT, (0.8, 0.1, 0.1))


def small_config(**overrides):
    values = dict(units=16, rank=8, embedding_dim=8, batch_size=4, seq_len=20, steps=12,
                  eval_every=4, learning_rate=1e-2, eval_batch_size=2, test_batch_size=2,
                  sample_length=20, seed=7, recurrent_dropout=0.1)
    values.update(overrides)
    return TrainConfig(**values)


SPEECH = ("Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous "
          "fortune, or to take arms against a sea of troubles.\n") * 20


def tiny_base(**overrides):
    values = dict(units=12, embedding_dim=6, batch_size=4, seq_len=16, steps=6, eval_every=3,
                  learning_rate=1e-2, eval_batch_size=2, test_batch_size=4, sample_length=5,
                  seed=3, jit_compile=False)
    values.update(overrides)
    return TrainConfig(**values)


def speech_corpus():
    return corpora.corpus_from_text("hamlet", SPEECH, (0.8, 0.13, 0.07))


def seeded_model(family="lstm", parametrization="shared", units=10, seed=1):
    keras.utils.set_random_seed(seed)
    model = CharLanguageModel(Vocabulary.from_data(SPEECH, "char"), family, parametrization,
                              units=units, rank=None if parametrization == "additive" else 6,
                              embedding_dim=5)
    model(np.zeros((1, 1), "int32"))
    rng = np.random.default_rng(seed)
    model.set_weights([0.5 * rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


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


def data_file(tmp_path, text=TEXT, name="austen.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def program(script, *arguments):
    return [sys.executable, os.path.join(EXAMPLES, script), *map(str, arguments)]


def small_flags(data, output, *extra):
    return ["--data", data, "--output", output, "--units", "16", "--rank", "8",
            "--embedding-dim", "8", "--batch-size", "4", "--seq-len", "20", "--steps", "12",
            "--eval-every", "4", "--valid-symbols", "300", "--eval-batch-size", "2",
            "--test-batch-size", "4", "--sample-length", "10", *extra]


def run_program(tmp_path, script, *arguments, timeout=300):
    return subprocess.run(program(script, *arguments), env=ENV, capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path)


def assert_one_clear_line(done):
    assert done.returncode not in (0, None), done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().startswith("error:") or "usage:" in done.stderr, done.stderr


def start_training_program(tmp_path, data, output, *extra):
    return subprocess.Popen(program("train_text.py", *small_flags(data, output, *extra)),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)


def wait_for_line(process, text, timeout=300):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} in {lines}")
