"""Bits per character of a trained model on a split of a corpus.

    python examples/evaluate.py --model runs/quick/model.keras --split test

The split is scored over every symbol after the first, the state carried across it
(`--batch-size 1`, the papers' protocol; larger is faster, each extra row starting from a
zero state). Without `--data` or `--tfds` the corpus is the one embedded in the package.

    python examples/evaluate.py --model runs/quick/model.keras --split valid --dynamic \\
        --seq-len 50 --dynamic-lr 3e-4 --dynamic-decay 1e-3

`--dynamic` also scores the split with dynamic evaluation (Krause et al., 2018): the weights
adapt to each segment of `--seq-len` symbols after it is scored, with RMS-normalized steps
(statistics from the training split) and a decay towards the trained weights. It prints the
static and dynamic BPC side by side; choose `--dynamic-lr` and `--dynamic-decay` on the valid
split, then report the test split.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

from keras_mulrnn.lm import cli, commands

if __name__ == "__main__":
    cli.guarded(lambda: commands.evaluate(prog="evaluate.py"))
