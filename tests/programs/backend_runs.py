"""Training runs of the language-model toolkit for the backend tests, each in a process of its
own (a process's Keras backend and its JAX devices are fixed when it starts).

    python tests/programs/backend_runs.py parity INITIAL.npz OUTPUT_DIR [CHECKPOINTS_DIR]
        On the backend of KERAS_BACKEND: 20 steps of a small model, dropout off, from the
        weights in INITIAL.npz (written there by the first run, from a NumPy seed). With
        CHECKPOINTS_DIR (another run's checkpoints), resumes from its newest checkpoint
        instead. Writes OUTPUT_DIR/run.npz: the loss of every step, the final weights, the
        final valid and test BPC.
    python tests/programs/backend_runs.py data-parallel OUTPUT_DIR
        JAX with two CPU devices: the same run on one device and under DataParallel, and a
        DataParallel run stopped at step 6 and resumed; writes OUTPUT_DIR/data_parallel.npz.

Run through `tests/programs/without_tensorflow.py` so that TensorFlow cannot be imported.
"""

import os
import shutil
import sys

# The repository root (tests/programs/ is two folders down).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_mulrnn.data import corpora  # noqa: E402
from keras_mulrnn.lm.config import TrainConfig  # noqa: E402
from keras_mulrnn.lm.training import train  # noqa: E402

TEXT = ("Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous "
        "fortune, or to take arms against a sea of troubles.\n") * 20


def corpus():
    return corpora.corpus_from_text("hamlet", TEXT, (0.8, 0.13, 0.07))


def config(**overrides):
    # clipnorm small enough that clipping acts on every step.
    values = dict(units=12, rank=6, embedding_dim=6, batch_size=4, seq_len=16, steps=20,
                  eval_every=10, checkpoint_every=5, learning_rate=1e-2, clipnorm=0.05,
                  eval_batch_size=2, test_batch_size=4, sample_length=5, seed=3)
    values.update(overrides)
    return TrainConfig(**values)


class Record(keras.callbacks.Callback):
    """The loss of every step and the weights at the end; optionally sets the weights before
    the first step, or stops the run at a step."""

    def __init__(self, initial=None, stop_at=None):
        super().__init__()
        self.losses, self.initial, self.stop_at = [], initial, stop_at

    def on_train_begin(self, logs=None):
        if self.initial is not None:
            self.model.set_weights(self.initial)
            self.initial = None

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(np.reshape(logs["loss"], -1)[0]))
        if self.stop_at and len(self.losses) == self.stop_at:
            raise _Stopped

    def on_train_end(self, logs=None):
        self.weights = [ops.convert_to_numpy(w) for w in self.model.weights]
        carry = self.model.carry.states[0].value
        self.carry_sharding = str(getattr(carry, "sharding", None))


class _Stopped(Exception):
    pass


def parity(initial_path, output_dir, checkpoints=None):
    run_dir = os.path.join(output_dir, "run")
    record = Record()
    if checkpoints:
        shutil.copytree(checkpoints, os.path.join(run_dir, "checkpoints"))
        results = train(corpus(), config(), run_dir, resume=True, verbose=0,
                        extra_callbacks=[record])
    else:
        if not os.path.exists(initial_path):
            from keras_mulrnn.lm.optimization import build_model

            shapes = [w.shape for w in build_model(corpus().vocabulary, config()).weights]
            rng = np.random.default_rng(0)
            np.savez(initial_path, *[0.3 * rng.standard_normal(shape).astype("float32")
                                     for shape in shapes])
        with np.load(initial_path) as saved:
            record.initial = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        results = train(corpus(), config(), run_dir, verbose=0, extra_callbacks=[record])
    np.savez(os.path.join(output_dir, "run.npz"), *record.weights,
             losses=np.array(record.losses), valid_bpc=results["valid_bpc"],
             test_bpc=results["test_bpc"], backend=keras.backend.backend())


def data_parallel(output_dir):
    import jax

    assert jax.device_count() == 2, jax.devices()
    arrays = {}
    settings = dict(recurrent_dropout=0.1, steps=12, eval_every=6, checkpoint_every=3)
    for name, strategy in (("one", "default"), ("parallel", "data-parallel")):
        record = Record()
        train(corpus(), config(strategy=strategy, **settings),
              os.path.join(output_dir, name), verbose=0, extra_callbacks=[record])
        arrays[f"{name}_losses"] = np.array(record.losses)
        arrays[f"{name}_carry_sharding"] = np.array(record.carry_sharding)
        arrays.update({f"{name}_weight_{i}": w for i, w in enumerate(record.weights)})
    resumed_dir = os.path.join(output_dir, "resumed")
    try:
        train(corpus(), config(strategy="data-parallel", **settings), resumed_dir, verbose=0,
              extra_callbacks=[Record(stop_at=7)])
    except _Stopped:
        pass
    record = Record()
    train(corpus(), config(strategy="data-parallel", **settings), resumed_dir, resume=True,
          verbose=0, extra_callbacks=[record])
    arrays.update({f"resumed_weight_{i}": w for i, w in enumerate(record.weights)})
    np.savez(os.path.join(output_dir, "data_parallel.npz"), **arrays)


if __name__ == "__main__":
    {"parity": parity, "data-parallel": data_parallel}[sys.argv[1]](*sys.argv[2:])
