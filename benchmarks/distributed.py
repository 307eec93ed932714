"""Training throughput on one device and under MirroredStrategy, side by side.

    python benchmarks/distributed.py --devices 2            # logical CPU devices
    python benchmarks/distributed.py --devices 8 --gpus     # the machine's GPUs

On a CPU the devices are logical slices of the same cores: expect no speed-up (the point
there is that the results are the same). The global batch is the same for both runs.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=2, help="logical CPU devices to create")
    p.add_argument("--gpus", action="store_true", help="use the GPUs instead of logical CPUs")
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--output", default="runs/benchmark-distributed")
    args = p.parse_args()
    if not args.gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices)

    from keras_mulrnn import backend
    from keras_mulrnn.data.corpora import corpus_from_bytes
    from keras_mulrnn.lm.config import TrainConfig
    from keras_mulrnn.lm.training import train

    rng = np.random.default_rng(0)
    corpus = corpus_from_bytes("random", rng.integers(0, 64, 2_000_000, dtype=np.uint8).tobytes())
    rows = []
    # XLA cannot compile several CPU replicas' all-reduce, so on CPUs the one-device run is
    # also measured without it: that is the like-for-like comparison.
    for strategy, jit in (("default", True), ("default", False), ("mirrored", True)):
        config = TrainConfig(units=args.units, embedding_dim=64, batch_size=args.batch_size,
                             seq_len=args.seq_len, steps=args.steps, eval_every=args.steps,
                             valid_symbols=5_000, test_batch_size=64, sample_length=1,
                             strategy=strategy, jit_compile=jit)
        name = f"{strategy}-{'xla' if jit else 'noxla'}"
        results = train(corpus, config, os.path.join(args.output, name), verbose=0)
        distribution = backend.make_distribution(strategy)
        rows.append((strategy, distribution.replicas,
                     jit and distribution.xla_supported(), results["chars_per_sec"]))
    base = rows[1][3]
    print(f"units {args.units}, global batch {args.batch_size} × {args.seq_len}, "
          f"{args.steps} steps\n")
    print("| strategy | replicas | XLA | chars/s | vs one device without XLA |")
    print("|---|---|---|---|---|")
    for strategy, replicas, xla, speed in rows:
        print(f"| {strategy} | {replicas} | {'yes' if xla else 'no'} | {speed:,.0f} | "
              f"{speed / base:.2f}× |")


if __name__ == "__main__":
    sys.exit(main())
