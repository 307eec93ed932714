"""Train a character language model on any text or byte file, or a TFDS text dataset.

    python examples/train_text.py                      # the corpus embedded in the package
    python examples/train_text.py --data any.txt       # a UTF-8 text file
    python examples/train_text.py --data file.bin --kind byte
    python examples/train_text.py --tfds tiny_shakespeare

A file is split 90% / 5% / 5% (train / valid / test) in order.
"""

from keras_mulrnn.lm import cli

DEFAULTS = dict(family="lstm", parametrization="shared", units=512, embedding_dim=64,
                batch_size=32, seq_len=100, steps=5000, eval_every=500, eval_batch_size=16,
                test_batch_size=1)


def main():
    parser = cli.parser("text character language model", DEFAULTS,
                        "a UTF-8 text or byte file (default: the corpus embedded in the "
                        "package)", prog="train_text.py")
    parser.add_argument("--kind", choices=("char", "byte"), default="char",
                        help="read --data as UTF-8 characters or as raw bytes")
    parser.add_argument("--tfds", help="a TFDS text dataset name instead of --data "
                                       "(needs the tfds extra and, once, the network)")
    args, config = cli.start(parser)
    if args.data is not None and args.tfds is not None:
        parser.error("give at most one of --data FILE or --tfds NAME")
    from keras_mulrnn.data import load_embedded, load_text, load_tfds

    if args.tfds:
        corpus = load_tfds(args.tfds, args.kind)
    elif args.data:
        corpus = load_text(args.data, args.kind)
    else:
        corpus = load_embedded()
    cli.run(corpus, config, args)


if __name__ == "__main__":
    cli.guarded(main)
