"""Train a character language model on enwik8 (the package's main job).

    python examples/train_enwik8.py --quick                # minutes, offline: the embedded corpus
    python examples/train_enwik8.py                        # enwik8, downloaded on first use
    python examples/train_enwik8.py --data enwik8.zip      # a local copy (or the unzipped file)
    python examples/train_enwik8.py --output runs/enwik8 --resume

The defaults follow the regularized mLSTM of Krause et al. (2016) on enwik8; the README says
what matches the paper and what differs. `--quick` trains a small model for a few minutes on
a CPU; without `--data` it trains on the small corpus embedded in the package (Tiny
Shakespeare), never on enwik8 silently replaced. `--help` lists every flag.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

from keras_mulrnn.lm import cli, commands

DEFAULTS = dict(
    family="lstm", parametrization="shared", units=2800, embedding_dim=400, num_layers=1,
    weight_norm=True, recurrent_dropout=0.2, batch_size=128, seq_len=100,
    learning_rate=1e-3, clipnorm=1.0, steps=200_000, eval_every=2000,
    checkpoint_every=1000, valid_symbols=500_000, eval_batch_size=64, test_batch_size=1,
    steps_per_execution=10,
)

if __name__ == "__main__":
    cli.guarded(lambda: commands.train(
        description="enwik8 character language model (the mLSTM of Krause et al., 2016)",
        defaults=DEFAULTS, corpus="enwik8", prog="train_enwik8.py"))
