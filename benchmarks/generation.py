"""Sampling speed of `keras_mulrnn.generate` (the compiled loop) at batch 1 and batch 64.

    python benchmarks/generation.py [--units 512 --length 2000]

Also the achieved GFLOP/s (analytic matrix products per symbol, as in `throughput.py`) next to
a float32 matrix product of the step's shape measured in the same run: how far batch 64 is
from the arithmetic limit, which caps the batch-64 / batch-1 ratio.
"""

import argparse

from common import (  # benchmarks/ is the script's directory
    GATES,
    choose_backend,
    flops_per_char,
    matmul_rate,
    sampling_rates,
)

choose_backend()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("tensorflow", "jax"), default=None,
                   help="the Keras backend (default: KERAS_BACKEND, else TensorFlow)")
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--length", type=int, default=2000)
    p.add_argument("--family", default="lstm")
    p.add_argument("--parametrization", default="shared")
    args = p.parse_args()
    rates = sampling_rates(args.family, args.parametrization, args.units, args.length)
    for batch, rate in rates.items():
        print(f"{args.family}/{args.parametrization} {args.units} units, batch {batch:3}: "
              f"{rate:,.0f} characters/s", flush=True)
    print(f"batch 64 / batch 1: {rates[64] / rates[1]:.1f}x")
    flops = flops_per_char(args.family, args.parametrization, args.units, args.units)
    width = GATES[args.family] * args.units
    peak = matmul_rate(64, args.units, width)
    achieved = rates[64] * flops / 1e9
    print(f"batch 64: {flops / 1e6:.2f} MFLOP/symbol → {achieved:.1f} GFLOP/s; a "
          f"(64, {args.units}) @ ({args.units}, {width}) product: {peak:.1f} "
          f"GFLOP/s ({100 * achieved / peak:.0f}%). 25× batch 1 would need "
          f"{25 * rates[1] * flops / 1e9:.1f} GFLOP/s.")


if __name__ == "__main__":
    main()
