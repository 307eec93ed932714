"""Train a character language model on any text or byte file, or a TFDS text dataset.

    python examples/train_text.py --output runs/embedded    # the corpus in the package
    python examples/train_text.py --data my.txt --output runs/text      # a UTF-8 text file
    python examples/train_text.py --data file.bin --kind byte --output runs/bytes
    python examples/train_text.py --tfds tiny_shakespeare --output runs/tfds

A file is split 90% / 5% / 5% (train / valid / test) in order. Each run writes into its own
`--output` (default `runs/text`); `--resume` continues the run found there.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

from keras_mulrnn.lm import cli, commands

if __name__ == "__main__":
    cli.guarded(lambda: commands.train(
        description="text character language model", prog="train_text.py"))
