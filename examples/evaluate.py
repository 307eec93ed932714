"""Bits per character of a trained model on a split of a corpus.

    python examples/evaluate.py --model runs/quick/model.keras --split test

The split is scored over every symbol after the first, the state carried across it
(`--batch-size 1`, the papers' protocol; larger is faster, each extra row starting from a
zero state). Without `--data` or `--tfds` the corpus is the one embedded in the package.

    python examples/evaluate.py --model runs/quick/model.keras --split test --dynamic \\
        --seq-len 50

`--dynamic` also scores the split with dynamic evaluation (Krause et al., 2018): the weights
adapt to each segment of `--seq-len` symbols after it is scored, with RMS-normalized steps
(statistics from the training split) and a decay towards the trained weights. It prints the
static and dynamic BPC side by side; choose `--dynamic-lr` and `--dynamic-decay` on the valid
split, then report the test split.
"""

import argparse

from keras_mulrnn.data import CORPORA
from keras_mulrnn.lm import cli


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="evaluate.py",
                                allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="a model.keras or best.keras file")
    p.add_argument("--corpus", choices=("auto",) + CORPORA, default="auto",
                   help="how to read the data: auto is text with --data, tfds with --tfds, "
                        "else the embedded corpus; enwik8 splits 90M/5M/5M; ptb reads a "
                        "directory of ptb.char.*.txt")
    p.add_argument("--data", help="the file (or PTB directory) the model was trained on")
    p.add_argument("--tfds", help="a TFDS text dataset name")
    p.add_argument("--kind", choices=("char", "byte"), default="char",
                   help="read a text file as characters or as raw bytes")
    p.add_argument("--split", choices=("train", "valid", "test"), default="test",
                   help="the split to score")
    p.add_argument("--batch-size", type=int, default=1,
                   help="rows scored in parallel (1: the papers' protocol)")
    p.add_argument("--seq-len", type=int, default=100,
                   help="symbols per window (per adapted segment with --dynamic)")
    p.add_argument("--dynamic", action="store_true", help="also run dynamic evaluation")
    p.add_argument("--dynamic-lr", type=float, default=3e-4, help="η of the update")
    p.add_argument("--dynamic-decay", type=float, default=1e-3,
                   help="λ, the decay towards the trained weights")
    p.add_argument("--statistics-segments", type=int, default=2000,
                   help="training segments whose gradients give the RMS statistics")
    p.add_argument("--verbose", action="store_true",
                   help="show the backend's own start-up logs")
    args = p.parse_args()
    corpus_name = args.corpus
    if corpus_name == "auto":
        corpus_name = "tfds" if args.tfds else "text" if args.data else "embedded"
    cli.start_backend(args)
    from keras_mulrnn.analysis.dynamic_evaluation import dynamic_evaluate, gradient_statistics
    from keras_mulrnn.data import load_corpus
    from keras_mulrnn.lm.evaluation import evaluate_bpc
    from keras_mulrnn.saving import load_language_model

    model = load_language_model(args.model)
    corpus = load_corpus(corpus_name, args.data, args.tfds, args.kind)
    if corpus.vocabulary != model.vocabulary:
        raise ValueError(
            f"The model's vocabulary ({len(model.vocabulary)} {model.vocabulary.kind} symbols) "
            f"is not this data's ({len(corpus.vocabulary)} {corpus.vocabulary.kind} symbols): "
            f"evaluate on the data the model was trained on (and the same --kind)."
        )
    split = corpus.split(args.split)
    if not args.dynamic:
        bpc, symbols = evaluate_bpc(model, split, args.batch_size, args.seq_len)
        print(f"{corpus.name} {args.split}: {bpc:.4f} bits per character over {symbols:,} "
              f"symbols")
        return
    statistics = gradient_statistics(model, corpus.train, args.batch_size, args.seq_len,
                                     args.statistics_segments)
    result = dynamic_evaluate(model, split, statistics, args.dynamic_lr, args.dynamic_decay,
                              args.seq_len, args.batch_size)
    print(f"{corpus.name} {args.split} over {result.symbols:,} symbols: static "
          f"{result.static_bpc:.4f} BPC, dynamic {result.dynamic_bpc:.4f} BPC "
          f"(lr {args.dynamic_lr:g}, decay {args.dynamic_decay:g}, segments of "
          f"{args.seq_len})")


if __name__ == "__main__":
    cli.guarded(main)
