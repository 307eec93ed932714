"""Quick start: an mLSTM character model learns a repetitive text in a few seconds.

    python examples/quickstart.py

A plain Keras model (`keras.Sequential`) with the package's `MLSTM` layer, trained with
`model.fit`: the cells are ordinary Keras layers, on any backend.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

import argparse

from keras_mulrnn.lm import cli


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="quickstart.py",
                                allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=15, help="passes over the text")
    p.add_argument("--verbose", action="store_true",
                   help="show the backend's own start-up logs")
    args = p.parse_args()
    if args.epochs < 1:
        p.error(f"--epochs must be at least 1, got {args.epochs}")
    cli.start_backend(args)
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
    history = model.fit(x, y, batch_size=8, epochs=args.epochs, verbose=2)
    bpc = history.history["loss"][-1] / np.log(2)
    print(f"mLSTM parameters: {model.count_params()}, final training loss: {bpc:.3f} "
          f"bits/char")


if __name__ == "__main__":
    cli.guarded(main)
