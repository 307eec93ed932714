"""Peak resident memory of a training step against the analytic footprint.

    python benchmarks/memory.py [--units 1024 --batch 128 --seq-len 200]

Analytic footprint = parameters × 4 copies (weights, gradients, Adam's two slots) + the
activations the fused loop keeps for the backward pass (per step and row: the output `h`,
the recurrent products `r`, the other states, `m` and `W_mh h` for a multiplicative cell), the
projected inputs and the logits, all float32. Measured = the peak of TensorFlow's CPU
allocator (every tensor alive at once: weights, Adam's slots, activations, gradients) during a
training step, after a first step that traced it (`tf.config.experimental.get_memory_info`).
Also reported: the growth of the process's peak resident memory over that first step, which
adds what tracing and the runtime's memory pools cost once.
"""

import argparse
import resource

import keras
import numpy as np
import tensorflow as tf

import keras_mulrnn as km
from keras_mulrnn.data import Vocabulary

VOCABULARY, EMBEDDING = 205, 64


def rss_mib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def analytic_mib(model, family, parametrization, units, rank, batch, seq_len):
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[family]
    states = 2 if family == "lstm" else 1
    rows = batch * seq_len
    per_row = units * (1 + gates + states - 1)  # h, r, other states
    projected = gates * units
    cell = model.recurrent_layers[0].cell
    if cell.multiplicative:
        groups = len(cell.groups)
        per_row += 2 * groups * rank
        projected += groups * rank
    elif cell.integration:  # the coefficient of U h, and U h kept per step
        per_row += gates * units
        projected += gates * units
    activations = rows * (per_row + projected + 2 * VOCABULARY + EMBEDDING)
    return (4 * model.count_params() + activations) * 4 / 2**20


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=1024)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=200)
    p.add_argument("--family", default="lstm")
    p.add_argument("--parametrization", default="shared")
    args = p.parse_args()
    rank = None if args.parametrization in ("additive", "integration") else args.units
    keras.utils.set_random_seed(0)
    model = km.CharLanguageModel(Vocabulary(list(range(VOCABULARY)), "byte"),
                                 args.family, args.parametrization, units=args.units,
                                 rank=rank, embedding_dim=EMBEDDING)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model(np.zeros((1, 1), "int32"))
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    data = rng.integers(0, VOCABULARY, (args.batch, args.seq_len + 1)).astype("int32")
    before = max(rss_mib(), peak_mib())
    model.fit(data[:, :-1], data[:, 1:], batch_size=args.batch, epochs=1, verbose=0)
    first = peak_mib() - before  # the first step traces the step too
    tf.config.experimental.reset_memory_stats("CPU:0")
    model.fit(data[:, :-1], data[:, 1:], batch_size=args.batch, epochs=1, verbose=0)
    measured = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    analytic = analytic_mib(model, args.family, args.parametrization, args.units, rank,
                            args.batch, args.seq_len)
    print(f"{args.family}/{args.parametrization} units {args.units}, batch {args.batch}, "
          f"sequence {args.seq_len}: peak tensor memory of a training step {measured:,.0f} "
          f"MiB, analytic footprint {analytic:,.0f} MiB, ratio {measured / analytic:.2f} "
          f"(resident memory grew {first:,.0f} MiB over the first step, tracing included)")


if __name__ == "__main__":
    main()
