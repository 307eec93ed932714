"""Quick start: an mLSTM character model learns a repetitive text in a few seconds.

    python examples/quickstart.py
"""

import keras
import numpy as np

import keras_mulrnn as km

text = "the multiplicative lstm shares its intermediate state between all gates. " * 40
vocab = sorted(set(text))
ids = np.array([vocab.index(ch) for ch in text])
steps = 50
rows = (len(ids) - 1) // steps
x = ids[: rows * steps].reshape(rows, steps)
y = ids[1 : rows * steps + 1].reshape(rows, steps)

keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((steps,), dtype="int32"),
    keras.layers.Embedding(len(vocab), 16),
    km.MLSTM(64, sharing="shared", return_sequences=True),
    keras.layers.Dense(len(vocab)),
])
model.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(x, y, batch_size=8, epochs=15, verbose=2)
bpc = history.history["loss"][-1] / np.log(2)
print(f"mLSTM parameters: {model.count_params()}, final training loss: {bpc:.3f} bits/char")
