"""Sampling speed of `keras_mulrnn.generate` (the compiled loop) at batch 1 and batch 64.

    python benchmarks/generation.py [--units 512 --length 2000]
"""

import argparse
import time

import keras
import numpy as np

import keras_mulrnn as km
from keras_mulrnn.data import Vocabulary


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--length", type=int, default=2000)
    p.add_argument("--family", default="lstm")
    p.add_argument("--parametrization", default="shared")
    args = p.parse_args()
    vocabulary = Vocabulary(list(range(205)), "byte")
    keras.utils.set_random_seed(0)
    model = km.CharLanguageModel(vocabulary, args.family, args.parametrization,
                                 units=args.units, embedding_dim=64)
    model(np.zeros((1, 1), "int32"))
    rates = {}
    for batch in (1, 64):
        km.generate(model, "ab", args.length, seed=0, batch_size=batch)  # compile
        started = time.perf_counter()
        km.generate(model, "ab", args.length, seed=1, batch_size=batch)
        rates[batch] = batch * args.length / (time.perf_counter() - started)
        print(f"{args.family}/{args.parametrization} {args.units} units, batch {batch:3}: "
              f"{rates[batch]:,.0f} characters/s", flush=True)
    print(f"batch 64 / batch 1: {rates[64] / rates[1]:.1f}x")


if __name__ == "__main__":
    main()
