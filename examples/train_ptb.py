"""Train a character language model on Penn Treebank characters (Mikolov's preparation).

    python examples/train_ptb.py --data DIR   # DIR holds ptb.char.{train,valid,test}.txt
"""

from keras_mulrnn.lm import cli

DEFAULTS = dict(
    family="lstm", parametrization="shared", units=1000, embedding_dim=128,
    recurrent_dropout=0.25, weight_norm=True, batch_size=128, seq_len=100, steps=20_000,
    eval_every=1000, checkpoint_every=1000, eval_batch_size=16, test_batch_size=1,
)


def main():
    parser = cli.parser("ptb character language model", DEFAULTS,
                        "directory holding ptb.char.{train,valid,test}.txt (required)",
                        prog="train_ptb.py")
    args = parser.parse_args()
    if args.data is None:
        parser.error("--data DIR is required: the directory with the ptb.char.*.txt files")
    args, config = cli.start(parser)
    from keras_mulrnn.data import load_ptb

    cli.run(load_ptb(args.data), config, args)


if __name__ == "__main__":
    cli.guarded(main)
