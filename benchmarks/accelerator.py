"""One prepared benchmark for a machine with an accelerator: what the main job costs there.

    bash benchmarks/accelerator.sh            # on the GPU machine (JAX, no TensorFlow)
    bash benchmarks/accelerator.sh --smoke    # the same code on a CPU at tiny sizes

In one process, on the backend of `KERAS_BACKEND` (JAX on the GPU machines), within a time
budget (4 minutes by default, compilation included; a row that would start after it is
reported as skipped), it prints:

1. training throughput (chars/s) at the enwik8 model's size (2800 units, batch 128, sequence
   100, the byte embedding of 400), in `mixed_bfloat16` and for two rows in float32:
   Keras's `keras.layers.LSTM` (cuDNN on a GPU) with the parameter count of the shared
   mLSTM, our additive LSTM of the same size, the shared mLSTM, and the unshared one at the
   matching rank;
2. the same-run rate of a bfloat16 product of the recurrent step's shape, `(batch, rank) @
   (rank, 4·units)`, and what share of it each row achieves;
3. generation chars/s at batch 1 and 64;
4. 100 steps of the enwik8 default model (`examples/train_enwik8.py`'s configuration, ~46M
   parameters, with `--precision mixed_bfloat16`) on an enwik8-shaped random byte stream
   through the package's own training loop: time per step, peak device memory, and the
   projected wall time of its 200,000 steps.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    SEQ_LEN,
    build_model,
    describe_machine,
    flops_per_char,
    matmul_rate,
    sampling_rates,
    time_training,
)

FULL = dict(units=2800, batch=128, embedding=400, steps=4, warmup=2, loop_steps=100,
            length=500, stream=2_000_000)
SMOKE = dict(units=32, batch=8, embedding=16, steps=2, warmup=1, loop_steps=6, length=40,
             stream=40_000)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes on any machine, in under a minute (what the tests run)")
    p.add_argument("--budget", type=float, default=230.0,
                   help="seconds after which no new row starts")
    args = p.parse_args()
    sizes = SMOKE if args.smoke else FULL
    started = time.perf_counter()

    def in_budget(what):
        if time.perf_counter() - started < args.budget:
            return True
        print(f"| {what} | skipped: the {args.budget:.0f} s budget was spent | | | |",
              flush=True)
        return False

    import keras

    import keras_mulrnn as km

    print(f"# {describe_machine()}; {'smoke sizes' if args.smoke else 'full sizes'}")
    units, batch, embedding = sizes["units"], sizes["batch"], sizes["embedding"]
    budget = km.count_params("lstm", "shared", units, embedding, units)
    lstm_units = km.units_for_budget("lstm", "additive", embedding, budget)
    unshared_rank = km.rank_for_budget("lstm", "unshared", units, embedding, budget)
    print(f"\nTraining, batch {batch} × {SEQ_LEN}, embedding {embedding}; every recurrent "
          f"layer has {budget:,} weights (±1%)\n")
    print("| model | units | rank | dtype | chars/s | vs Keras LSTM | GFLOP/s | "
          "% of bf16 product |")
    print("|---|---|---|---|---|---|---|---|")
    rate = matmul_rate(batch, units, 4 * units, dtype="bfloat16")
    rows = [("keras", lstm_units, None, "mixed_bfloat16"),
            ("additive", lstm_units, None, "mixed_bfloat16"),
            ("shared", units, units, "mixed_bfloat16"),
            ("unshared", units, unshared_rank, "mixed_bfloat16"),
            ("keras", lstm_units, None, "float32"),
            ("shared", units, units, "float32")]
    reference = {}
    for parametrization, row_units, rank, policy in rows:
        name = "keras.layers.LSTM" if parametrization == "keras" else f"lstm/{parametrization}"
        if not in_budget(f"{name}, {policy}"):
            continue
        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(0)
        model = build_model("lstm", parametrization, row_units, rank, jit=True, batch=batch,
                            embedding=embedding)
        chars = time_training(model, batch, sizes["warmup"], sizes["steps"])
        keras.config.set_dtype_policy("float32")
        flops = 3 * flops_per_char("lstm", parametrization, row_units, rank,
                                   embedding=embedding)
        reference.setdefault(policy, chars if parametrization == "keras" else None)
        versus = (f"{chars / reference[policy]:.2f}×" if reference.get(policy)
                  and parametrization != "keras" else "1.00×" if parametrization == "keras"
                  else "")
        print(f"| {name} | {row_units} | {rank or '-'} | {policy} | {chars:,.0f} | {versus} | "
              f"{flops * chars / 1e9:,.1f} | {100 * flops * chars / 1e9 / rate:.0f}% |",
              flush=True)
    print(f"\nbfloat16 product ({batch}, {units}) @ ({units}, {4 * units}), same run: "
          f"{rate:,.1f} GFLOP/s")

    if in_budget("generation"):
        rates = sampling_rates("lstm", "shared", units, sizes["length"], embedding=embedding)
        print(f"\nGeneration, shared mLSTM {units} units, float32: batch 1 {rates[1]:,.0f} "
              f"chars/s, batch 64 {rates[64]:,.0f} chars/s ({rates[64] / rates[1]:.1f}×)")
    if in_budget("the enwik8 default model"):
        _main_job(sizes, args.smoke)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


def _main_job(sizes, smoke):
    """100 steps of `train_enwik8.py`'s configuration through `keras_mulrnn.train`."""
    import keras
    import numpy as np

    from keras_mulrnn.data.corpora import corpus_from_bytes
    from keras_mulrnn.lm.config import TrainConfig
    from keras_mulrnn.lm.training import train

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "examples"))
    from train_enwik8 import DEFAULTS

    rng = np.random.default_rng(0)
    # enwik8's vocabulary size (205 distinct bytes), uniform: the speed does not depend on
    # what the bytes say.
    corpus = corpus_from_bytes("enwik8-shaped", rng.integers(0, 205, sizes["stream"],
                                                             dtype=np.uint8).tobytes())
    steps = sizes["loop_steps"]
    settings = dict(DEFAULTS, steps=steps, eval_every=steps, checkpoint_every=None,
                    valid_symbols=10_000, test_batch_size=64, sample_length=0,
                    precision="mixed_bfloat16")
    if smoke:
        settings.update(units=sizes["units"], embedding_dim=sizes["embedding"],
                        batch_size=sizes["batch"], valid_symbols=1_000, eval_batch_size=8,
                        test_batch_size=8, steps_per_execution=2)
    config = TrainConfig(**settings)

    class Clock(keras.callbacks.Callback):
        marks = []

        def on_train_batch_end(self, batch, logs=None):
            float(np.asarray(logs["loss"]).reshape(-1)[0])  # waits for the device
            Clock.marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as output:
        results = train(corpus, config, output, verbose=0, extra_callbacks=[Clock()])
    # The first execution compiles; the rest is the steady state.
    marks = Clock.marks
    per_step = (marks[-1] - marks[0]) / ((len(marks) - 1) * config.steps_per_execution)
    projected = per_step * 200_000
    print(f"\nThe enwik8 default model ({results['params']:,} parameters, "
          f"{config.units} units, batch {config.batch_size} × {config.seq_len}, "
          f"{'smoke sizes, ' if smoke else ''}{config.precision}) through "
          f"keras_mulrnn.train: "
          f"{per_step * 1000:,.1f} ms per step after compilation, peak device memory "
          f"{_peak_memory()}; 200,000 steps would take {projected / 3600:,.1f} hours "
          f"({projected / 86400:,.2f} days)")


def _peak_memory():
    from keras_mulrnn import backend

    peak = backend.peak_memory()
    return "not reported by this device" if peak is None else f"{peak / 2**30:,.1f} GiB"


if __name__ == "__main__":
    main()
