"""Bits per character of a trained model on a split of a corpus.

    python examples/evaluate.py --model runs/quick/model.keras \\
        --data ../shared/data/tinyshakespeare.txt --split test

The split is scored over every symbol after the first, the state carried across it
(`--batch-size 1`, the papers' protocol; larger is faster, each extra row starting from a
zero state).
"""

import argparse

from keras_mulrnn.cli import guarded
from keras_mulrnn.data import CORPORA, load_corpus
from keras_mulrnn.evaluation import evaluate_bpc
from keras_mulrnn.saving import load_model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model.keras or best.keras file")
    p.add_argument("--corpus", choices=CORPORA, default="text")
    p.add_argument("--data", help="the file (or PTB directory) the model was trained on")
    p.add_argument("--tfds", help="a TFDS text dataset name (with --corpus tfds)")
    p.add_argument("--kind", choices=("char", "byte"), default="char")
    p.add_argument("--split", choices=("train", "valid", "test"), default="test")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=100)
    args = p.parse_args()
    model = load_model(args.model)
    corpus = load_corpus(args.corpus, args.data, args.tfds, args.kind)
    if corpus.vocabulary != model.vocabulary:
        raise ValueError(
            f"The model's vocabulary ({len(model.vocabulary)} {model.vocabulary.kind} symbols) "
            f"is not this data's ({len(corpus.vocabulary)} {corpus.vocabulary.kind} symbols): "
            f"evaluate on the data the model was trained on (and the same --kind)."
        )
    bpc, symbols = evaluate_bpc(model, corpus.split(args.split), args.batch_size, args.seq_len)
    print(f"{corpus.name} {args.split}: {bpc:.4f} bits per character over {symbols:,} symbols")


if __name__ == "__main__":
    guarded(main)
