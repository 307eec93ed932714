"""Train a character language model on enwik8 (the package's main job).

    python examples/train_enwik8.py                       # downloads enwik8 on first use
    python examples/train_enwik8.py --data enwik8.zip     # a local copy (or the unzipped file)
    python examples/train_enwik8.py --quick --data ../shared/data/tinyshakespeare.txt
    python examples/train_enwik8.py --output runs/enwik8 --resume

The defaults follow the regularized mLSTM of Krause et al. on enwik8; see the README for what
matches and what differs. `--quick` trains a small model for a few minutes on a CPU.
"""

from keras_mulrnn import cli
from keras_mulrnn.data import load_enwik8

DEFAULTS = dict(
    family="lstm", parametrization="shared", units=2800, embedding_dim=400, num_layers=1,
    weight_norm=True, recurrent_dropout=0.2, batch_size=128, seq_len=100,
    learning_rate=1e-3, clipnorm=1.0, steps=200_000, eval_every=2000,
    checkpoint_every=1000, valid_symbols=500_000, eval_batch_size=64, test_batch_size=1,
    steps_per_execution=10,
)


def main():
    parser = cli.parser("enwik8 character language model", DEFAULTS,
                        "enwik8, enwik8.zip, or any byte file (split 90/5/5); "
                        "default: download enwik8 into the Keras cache")
    args = parser.parse_args()
    config = cli.config_from(args, parser)
    cli.run(load_enwik8(args.data), config, args)


if __name__ == "__main__":
    cli.guarded(main)
