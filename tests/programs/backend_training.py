"""A few training steps of a Keras model built from the package's sequence layers, on the
backend of this process (KERAS_BACKEND), for the test that JAX trains as TensorFlow does.

    python tests/programs/backend_training.py INITIAL.npz RESULT.npz

Weights start from INITIAL.npz (written by the first process to run, from a NumPy seed) so
both backends start from the same numbers; RESULT.npz gets the per-step losses and the final
weights.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The repository root (tests/programs/ is two folders down).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mulrnn as km  # noqa: E402

VOCABULARY, STEPS = 11, 12


class Losses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs["loss"]))


def main(initial_path, result_path):
    model = keras.Sequential([
        keras.Input((STEPS,), dtype="int32"),
        keras.layers.Embedding(VOCABULARY, 6),
        km.MLSTM(10, rank=5, sharing="shared", return_sequences=True),
        km.MGRU(8, rank=4, sharing="unshared", weight_norm=True, return_sequences=True),
        km.MRNN(7, transition="additive", return_sequences=True),
        keras.layers.Dense(VOCABULARY),
    ])
    if not os.path.exists(initial_path):
        rng = np.random.default_rng(0)
        np.savez(initial_path, *[0.3 * rng.standard_normal(w.shape).astype("float32")
                                 for w in model.get_weights()])
    with np.load(initial_path) as saved:
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCABULARY, size=(16, STEPS + 1)).astype("int32")
    model.compile(keras.optimizers.Adam(1e-2, global_clipnorm=1.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = Losses()
    model.fit(ids[:, :-1], ids[:, 1:], batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[losses])
    np.savez(result_path, *model.get_weights(), losses=np.array(losses.values),
             backend=np.array(keras.backend.backend()))


if __name__ == "__main__":
    main(*sys.argv[1:])
