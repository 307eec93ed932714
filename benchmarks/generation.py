"""Sampling speed of `keras_mulrnn.generate` (the compiled loop) at batch 1 and batch 64.

    python benchmarks/generation.py [--units 512 --length 2000]

Also the achieved GFLOP/s (analytic matrix products per symbol, as in `throughput.py`) next to
a float32 matrix product of the step's shape measured in the same run: how far batch 64 is
from the arithmetic limit, which caps the batch-64 / batch-1 ratio.
"""

import argparse
import time

import keras
import numpy as np

import keras_mulrnn as km
from keras_mulrnn.data import Vocabulary

from throughput import flops_per_char, matmul_peak  # benchmarks/ is the script's directory


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
    flops = flops_per_char(args.family, args.parametrization, args.units, args.units)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[args.family]
    peak = matmul_peak(64, args.units, gates * args.units)
    achieved = rates[64] * flops / 1e9
    print(f"batch 64: {flops / 1e6:.2f} MFLOP/symbol → {achieved:.1f} GFLOP/s; a "
          f"(64, {args.units}) @ ({args.units}, {gates * args.units}) product: {peak:.1f} "
          f"GFLOP/s ({100 * achieved / peak:.0f}%). 25× batch 1 would need "
          f"{25 * rates[1] * flops / 1e9:.1f} GFLOP/s.")


if __name__ == "__main__":
    main()
