"""Runs for the distribution tests, each in its own process (a process's devices and its
cluster are fixed when TensorFlow starts).

    python tests/programs/distributed_runs.py mirrored OUTPUT_DIR
        Two logical CPU devices. Trains the same small stateful model on one device and
        under MirroredStrategy; then stops a mirrored run halfway and resumes it on one
        device. Writes OUTPUT_DIR/mirrored.npz (losses and weights of each run).
    python tests/programs/distributed_runs.py mirrored-one-device OUTPUT_DIR
        MirroredStrategy over the machine's one CPU: trains with checkpoints, stops at step 6
        and resumes; writes OUTPUT_DIR/one.npz (the weights of both ends and one device's).
    python tests/programs/distributed_runs.py worker OUTPUT_DIR WEIGHTS.npz
        One worker of the cluster in TF_CONFIG: trains under MultiWorkerMirroredStrategy
        into OUTPUT_DIR and saves the weights it ends with.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The repository root (tests/programs/ is two folders down).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mulrnn.data import corpora  # noqa: E402
from keras_mulrnn.lm.config import TrainConfig
from keras_mulrnn.lm.training import train  # noqa: E402

TEXT = ("Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous "
        "fortune, or to take arms against a sea of troubles.\n") * 20


def small_config(**overrides):
    # clipnorm small enough that clipping acts on every step: the global gradient is clipped.
    values = dict(units=12, rank=6, embedding_dim=6, batch_size=4, seq_len=16, steps=8,
                  eval_every=4, learning_rate=1e-2, clipnorm=0.05, eval_batch_size=2,
                  test_batch_size=4, sample_length=5, seed=3, jit_compile=False)
    values.update(overrides)
    return TrainConfig(**values)


def corpus():
    return corpora.corpus_from_text("hamlet", TEXT, (0.8, 0.13, 0.07))


class Record(keras.callbacks.Callback):
    """Keeps the loss after every step and the weights at the end."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.losses, self.stop_at = [], stop_at

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(np.reshape(logs["loss"], -1)[0]))
        if self.stop_at and int(self.model.optimizer.iterations.numpy()) == self.stop_at:
            raise _Stopped

    def on_train_end(self, logs=None):
        self.weights = self.model.get_weights()


class _Stopped(Exception):
    pass


def stopped_then_resumed(output_dir, strategy, resume_strategy):
    """A run under `strategy` stopped after step 6 (its checkpoint of step 6 written), then
    resumed under `resume_strategy`; returns the resumed run's record."""
    try:
        train(corpus(), small_config(strategy=strategy, checkpoint_every=2), output_dir,
              verbose=0, extra_callbacks=[Record(stop_at=6)])
    except _Stopped:
        pass
    record = Record()
    train(corpus(), small_config(strategy=resume_strategy, checkpoint_every=2), output_dir,
          resume=True, verbose=0, extra_callbacks=[record])
    return record


def mirrored(output_dir):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()
    results = {}
    for strategy in ("default", "mirrored"):
        record = Record()
        # Asking for XLA under MirroredStrategy on CPUs trains without it (it cannot compile
        # their all-reduce), with a message.
        train(corpus(), small_config(strategy=strategy, jit_compile=strategy == "mirrored"),
              os.path.join(output_dir, strategy), verbose=0, extra_callbacks=[record])
        results[strategy] = record
    # A mirrored run resumed on one device: the carried state of both replicas' rows must
    # come back in row order.
    results["resumed"] = stopped_then_resumed(os.path.join(output_dir, "resumed"),
                                              "mirrored", "default")
    arrays = {}
    for name, record in results.items():
        arrays[f"{name}_losses"] = np.array(record.losses)
        arrays.update({f"{name}_weight_{i}": w for i, w in enumerate(record.weights)})
    try:
        train(corpus(), small_config(strategy="mirrored", batch_size=5),
              os.path.join(output_dir, "odd"), verbose=0)
    except ValueError as error:
        arrays["odd_batch_error"] = np.array(str(error))
    np.savez(os.path.join(output_dir, "mirrored.npz"), **arrays)


def mirrored_one_device(output_dir):
    tf.config.experimental.enable_op_determinism()
    arrays = {}
    record = Record()
    train(corpus(), small_config(), os.path.join(output_dir, "default"), verbose=0,
          extra_callbacks=[record])
    arrays.update({f"default_weight_{i}": w for i, w in enumerate(record.weights)})
    record = stopped_then_resumed(os.path.join(output_dir, "mirrored"), "mirrored",
                                  "mirrored")
    arrays.update({f"mirrored_weight_{i}": w for i, w in enumerate(record.weights)})
    np.savez(os.path.join(output_dir, "one.npz"), **arrays)


def worker(output_dir, weights_path):
    from keras_mulrnn import backend

    backend.make_distribution("multiworker")  # joins the cluster before TF runs anything
    record = Record()
    results = train(corpus(), small_config(strategy="multiworker", steps=6, eval_every=3),
                    output_dir, verbose=0, extra_callbacks=[record])
    np.savez(weights_path, *record.weights, losses=np.array(record.losses),
             test_bpc=results["test_bpc"])


if __name__ == "__main__":
    {"mirrored": mirrored, "mirrored-one-device": mirrored_one_device,
     "worker": worker}[sys.argv[1]](*sys.argv[2:])
