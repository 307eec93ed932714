"""Train a character language model on any text or byte file, or a TFDS text dataset.

    python examples/train_text.py --data ../shared/data/tinyshakespeare.txt
    python examples/train_text.py --data file.bin --kind byte
    python examples/train_text.py --tfds tiny_shakespeare

A file is split 90% / 5% / 5% (train / valid / test) in order.
"""

from keras_mulrnn import cli
from keras_mulrnn.data import load_text, load_tfds

DEFAULTS = dict(family="lstm", parametrization="shared", units=512, embedding_dim=64,
                batch_size=32, seq_len=100, steps=5000, eval_every=500, eval_batch_size=16,
                test_batch_size=1)


def main():
    parser = cli.parser("text character language model", DEFAULTS, "a UTF-8 text or byte file")
    parser.add_argument("--kind", choices=("char", "byte"), default="char",
                        help="read --data as UTF-8 characters or as raw bytes")
    parser.add_argument("--tfds", help="a TFDS text dataset name instead of --data")
    args = parser.parse_args()
    if (args.data is None) == (args.tfds is None):
        parser.error("give exactly one of --data FILE or --tfds NAME")
    config = cli.config_from(args, parser)
    corpus = load_text(args.data, args.kind) if args.data else load_tfds(args.tfds, args.kind)
    cli.run(corpus, config, args)


if __name__ == "__main__":
    cli.guarded(main)
