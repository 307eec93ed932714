"""Train a character language model on Penn Treebank characters (Mikolov's preparation).

    python examples/train_ptb.py --data DIR   # DIR holds ptb.char.{train,valid,test}.txt
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while loading: stop, quietly

from keras_mulrnn.lm import cli, commands

DEFAULTS = dict(
    family="lstm", parametrization="shared", units=1000, embedding_dim=128,
    recurrent_dropout=0.25, weight_norm=True, batch_size=128, seq_len=100, steps=20_000,
    eval_every=1000, checkpoint_every=1000, eval_batch_size=16, test_batch_size=1,
)

if __name__ == "__main__":
    cli.guarded(lambda: commands.train(
        description="Penn Treebank character language model", defaults=DEFAULTS,
        corpus="ptb", prog="train_ptb.py"))
