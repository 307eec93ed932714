"""One prepared benchmark for a machine with an accelerator: what the main job costs there.

    bash benchmarks/accelerator.sh            # on the GPU machine: smoke, then full sizes
    bash benchmarks/accelerator.sh --smoke    # the same code on a CPU at tiny sizes
    python benchmarks/accelerator.py --smoke  # one size, whatever KERAS_BACKEND says

In one process, on the backend of `KERAS_BACKEND` (JAX on the GPU machines), within a time
budget (compilation included; a part that would start after it is reported as skipped),
the parts that matter most first. Every row is guarded: a failing row prints its error in
the table and the run goes on.

1. The same-run rate of a bfloat16 product of the recurrent step's shape, `(batch, rank) @
   (rank, 4·units)`: the reference for the "% of product" column.
2. Training throughput (chars/s) at the enwik8 model's size (2800 units, batch 128, sequence
   100, the byte embedding of 400): the shared mLSTM in `mixed_bfloat16`, and Keras's
   `keras.layers.LSTM` with the shared mLSTM's parameter count in float32, which on a GPU
   takes cuDNN's path (cuDNN's RNN takes no bfloat16). Each row is 20 steps timed in one
   `fit` call after warm-up steps that compile (no synchronisation per step) and says which
   path it took: for Keras's LSTM, cuDNN or its plain scan (seen from the call Keras makes); for
   ours, the recurrence's layout (`keras_mulrnn.backend.recurrence()`).
3. 100 steps of the enwik8 default model (`examples/train_enwik8.py`'s configuration, ~46M
   parameters, `--precision mixed_bfloat16`) on an enwik8-shaped random byte stream through
   the package's own training loop: time per step, peak device memory, and the projected
   wall time of its 200,000 steps.
4. The other rows: Keras's LSTM in `mixed_bfloat16` through its plain scan
   (`use_cudnn=False`), our additive LSTM and the unshared mLSTM at the matching rank in
   `mixed_bfloat16`, the shared mLSTM in float32.
5. On JAX, the compiled recurrence's loops (forward and backward, the shared mLSTM at its
   training size): how many instructions that launch work each iteration runs, from the
   optimized HLO (on a GPU about one kernel each).
6. On JAX, the shared mLSTM in `mixed_bfloat16` with `lax.scan` unrolled 1, 2 and 4 steps.
7. Generation chars/s at batch 1 and 64.
"""

import argparse
import collections
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    SEQ_LEN,
    VOCABULARY,
    build_model,
    describe_machine,
    flops_per_char,
    matmul_rate,
    sampling_rates,
)

FULL = dict(units=2800, batch=128, embedding=400, steps=20, warmup=2, loop_steps=100,
            length=500, stream=2_000_000)
SMOKE = dict(units=32, batch=8, embedding=16, steps=5, warmup=1, loop_steps=4, length=20,
             stream=40_000)
# Instructions of an optimized HLO loop body that launch no work of their own.
_BOOKKEEPING = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast",
                "after-all", "partition-id", "replica-id"}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes on any machine, in under a minute (what the tests run)")
    p.add_argument("--budget", type=float, default=270.0,
                   help="seconds after which no new part or row starts")
    args = p.parse_args()
    bench = Benchmark(SMOKE if args.smoke else FULL, args.smoke, args.budget)
    bench.run()


class Benchmark:
    """The parts in order; each row and part guarded, each started only within the budget."""

    def __init__(self, sizes, smoke, budget):
        self.sizes, self.smoke, self.budget = sizes, smoke, budget
        self.started = time.perf_counter()
        self.product_rate = None
        self.chars = {}  # (parametrization, policy) → chars/s

    def run(self):
        import keras_mulrnn as km
        from keras_mulrnn import backend

        print(f"# {describe_machine()}; {'smoke sizes' if self.smoke else 'full sizes'}; "
              f"recurrence {backend.recurrence()}", flush=True)
        units, embedding = self.sizes["units"], self.sizes["embedding"]
        budget = km.count_params("lstm", "shared", units, embedding, units)
        self.lstm_units = km.units_for_budget("lstm", "additive", embedding, budget)
        self.unshared_rank = km.rank_for_budget("lstm", "unshared", units, embedding, budget)
        self.part("the bf16 product", self.product)
        print(f"\nTraining, batch {self.sizes['batch']} × {SEQ_LEN}, embedding {embedding}; "
              f"every recurrent layer has {budget:,} weights (±1%); {self.sizes['steps']} "
              f"steps timed in one fit call after {self.sizes['warmup']} compiling\n")
        _table_header()
        self.row("shared", units, units, "mixed_bfloat16")
        self.row("keras", self.lstm_units, None, "float32")
        ours, theirs = (self.chars.get(key) for key in (("shared", "mixed_bfloat16"),
                                                        ("keras", "float32")))
        if ours and theirs:
            print(f"\nshared mLSTM (mixed_bfloat16) / keras.layers.LSTM (float32): "
                  f"{ours / theirs:.2f}× the chars/s", flush=True)
        self.part("the enwik8 default model", self.main_job)
        print()
        _table_header()
        self.row("keras", self.lstm_units, None, "mixed_bfloat16")
        self.row("additive", self.lstm_units, None, "mixed_bfloat16")
        self.row("unshared", units, self.unshared_rank, "mixed_bfloat16")
        self.row("shared", units, units, "float32")
        if backend.name() == "jax":
            self.part("the recurrence's loops", self.loops)
            self.part("scan unrolling", self.unrolling)
        self.part("generation", self.generation)
        print(f"\nwall time {time.perf_counter() - self.started:.0f} s", flush=True)

    # ------------------------------------------------------------------ guards

    def in_budget(self, what):
        if time.perf_counter() - self.started < self.budget:
            return True
        print(f"\n{what}: skipped, the {self.budget:.0f} s budget was spent", flush=True)
        return False

    def part(self, what, function):
        if not self.in_budget(what):
            return
        try:
            function()
        except Exception as error:  # one part's failure must not cost the others
            print(f"\n{what}: failed: {_error(error)}", flush=True)

    def row(self, parametrization, units, rank, policy):
        import keras

        name = "keras.layers.LSTM" if parametrization == "keras" else f"lstm/{parametrization}"
        if not self.in_budget(f"{name}, {policy}"):
            return
        try:
            chars, path = self.measure(parametrization, units, rank, policy)
        except Exception as error:
            print(f"| {name} | {units} | {rank or '-'} | {policy} | | failed: {_error(error)} "
                  f"| | | |", flush=True)
            return
        finally:
            keras.config.set_dtype_policy("float32")
        self.chars[parametrization, policy] = chars
        reference = self.chars.get(("keras", policy))  # Keras's LSTM in the same dtype
        versus = f"{chars / reference:.2f}×" if reference else ""
        flops = 3 * flops_per_char("lstm", parametrization, units, rank,
                                   embedding=self.sizes["embedding"])
        achieved = flops * chars / 1e9
        share = f"{100 * achieved / self.product_rate:.0f}%" if self.product_rate else ""
        print(f"| {name} | {units} | {rank or '-'} | {policy} | {path} | {chars:,.0f} | "
              f"{versus} | {achieved:,.1f} | {share} |", flush=True)

    # ------------------------------------------------------------------- parts

    def product(self):
        units, batch = self.sizes["units"], self.sizes["batch"]
        self.product_rate = matmul_rate(batch, units, 4 * units, dtype="bfloat16")
        print(f"\nbfloat16 product ({batch}, {units}) @ ({units}, {4 * units}), same run: "
              f"{self.product_rate:,.1f} GFLOP/s", flush=True)

    def measure(self, parametrization, units, rank, policy, **recurrence):
        """`(chars/s, path)` of one model."""
        import keras

        from keras_mulrnn import backend

        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(0)
        batch = self.sizes["batch"]
        # cuDNN's RNN takes float32 only: in bfloat16 Keras's LSTM must run its scan.
        cudnn = "auto" if policy == "float32" else False
        model = build_model("lstm", parametrization, units, rank, jit=True, batch=batch,
                            embedding=self.sizes["embedding"], use_cudnn=cudnn)
        with backend.recurrence_for(backend.recurrence().platform, **recurrence) as chosen, \
                KerasLSTMPath() as keras_path:
            chars = time_fit(model, batch, self.sizes["warmup"], self.sizes["steps"])
        if parametrization == "keras":
            path = keras_path.describe(model)
        else:
            cell = model.layers[1].cell
            path = ("fused scan" + (f", {cell.transition_layout()} transition"
                                    if cell.multiplicative else "")
                    + (f", unroll {chosen.scan_unroll}" if chosen.scan_unroll > 1 else ""))
        return chars, path

    def main_job(self):
        """100 steps of `train_enwik8.py`'s configuration through `keras_mulrnn.train`."""
        import keras
        import numpy as np

        from keras_mulrnn.data.corpora import corpus_from_bytes
        from keras_mulrnn.lm.config import TrainConfig
        from keras_mulrnn.lm.training import train

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                        "examples"))
        from train_enwik8 import DEFAULTS

        sizes = self.sizes
        rng = np.random.default_rng(0)
        # enwik8's vocabulary size (205 distinct bytes), uniform: the speed does not depend
        # on what the bytes say.
        corpus = corpus_from_bytes("enwik8-shaped", rng.integers(0, VOCABULARY, sizes["stream"],
                                                                 dtype=np.uint8).tobytes())
        steps = sizes["loop_steps"]
        settings = dict(DEFAULTS, steps=steps, eval_every=steps, checkpoint_every=None,
                        valid_symbols=10_000, test_batch_size=64, sample_length=0,
                        precision="mixed_bfloat16")
        if self.smoke:
            settings.update(units=sizes["units"], embedding_dim=sizes["embedding"],
                            batch_size=sizes["batch"], valid_symbols=1_000, eval_batch_size=8,
                            test_batch_size=8, steps_per_execution=2)
        config = TrainConfig(**settings)
        marks = []

        class Clock(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                float(np.asarray(logs["loss"]).reshape(-1)[0])  # waits for the device
                marks.append(time.perf_counter())

        try:
            with tempfile.TemporaryDirectory() as output:
                results = train(corpus, config, output, verbose=0, extra_callbacks=[Clock()])
        finally:
            keras.config.set_dtype_policy("float32")
        # The first execution compiles; the rest is the steady state.
        per_step = (marks[-1] - marks[0]) / ((len(marks) - 1) * config.steps_per_execution)
        projected = per_step * 200_000
        print(f"\nThe enwik8 default model ({results['params']:,} parameters, "
              f"{config.units} units, batch {config.batch_size} × {config.seq_len}, "
              f"{'smoke sizes, ' if self.smoke else ''}{config.precision}) through "
              f"keras_mulrnn.train: {per_step * 1000:,.1f} ms per step after compilation, "
              f"peak device memory {_peak_memory()}; 200,000 steps would take "
              f"{projected / 3600:,.1f} hours ({projected / 86400:,.2f} days)", flush=True)

    def loops(self):
        """The compiled recurrence's loops: work-launching instructions per iteration."""
        loops = recurrence_loops("lstm", "shared", self.sizes["units"], self.sizes["batch"],
                                 self.sizes["embedding"])
        print("\nThe shared mLSTM's compiled recurrence (forward and backward, "
              "mixed_bfloat16): per loop iteration, the instructions that launch work")
        for trips, counts in loops:
            detail = ", ".join(f"{op} ×{n}" for op, n in counts.most_common())
            print(f"- a loop of {trips or '?'} iterations: {sum(counts.values())} ({detail})")
        sys.stdout.flush()

    def unrolling(self):
        units = self.sizes["units"]
        print("\nThe shared mLSTM, mixed_bfloat16, lax.scan unrolled:")
        for unroll in (1, 2, 4):
            if not self.in_budget(f"unroll {unroll}"):
                return
            try:
                chars, _ = self.measure("shared", units, units, "mixed_bfloat16",
                                        scan_unroll=unroll)
                print(f"- unroll {unroll}: {chars:,.0f} chars/s", flush=True)
            except Exception as error:
                print(f"- unroll {unroll}: failed: {_error(error)}", flush=True)

    def generation(self):
        units = self.sizes["units"]
        rates = sampling_rates("lstm", "shared", units, self.sizes["length"],
                               embedding=self.sizes["embedding"])
        print(f"\nGeneration, shared mLSTM {units} units, float32: batch 1 {rates[1]:,.0f} "
              f"chars/s, batch 64 {rates[64]:,.0f} chars/s ({rates[64] / rates[1]:.1f}×)",
              flush=True)


def time_fit(model, batch, warmup, steps):
    """Characters per second of `steps` training steps run by one `fit` call, after a `fit`
    of `warmup` steps that compiles: nothing reads a step's logs (no synchronisation per
    step); `fit` returning its history is the one synchronisation after the timed span."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.integers(0, VOCABULARY, ((warmup + steps) * batch, SEQ_LEN + 1)).astype("int32")
    head = warmup * batch
    model.fit(data[:head, :-1], data[:head, 1:], batch_size=batch, epochs=1, verbose=0,
              shuffle=False)
    started = time.perf_counter()
    history = model.fit(data[head:, :-1], data[head:, 1:], batch_size=batch, epochs=1,
                        verbose=0, shuffle=False)
    float(history.history["loss"][-1])
    return steps * batch * SEQ_LEN / (time.perf_counter() - started)


class KerasLSTMPath:
    """Which path Keras's LSTM took: on JAX, whether Keras's call of
    `jax.experimental.rnn.lstm` (cuDNN) while tracing returned (Keras falls back to its scan
    when it raises); on TensorFlow, whether the layer gave up XLA for cuDNN."""

    def __enter__(self):
        self.attempts, self.calls, self.module, self.original = 0, 0, None, None
        try:
            import jax.experimental.rnn as module
        except ImportError:  # not JAX
            return self
        self.module, self.original = module, module.lstm

        def recorded(*args, **kwargs):
            self.attempts += 1
            result = self.original(*args, **kwargs)
            self.calls += 1
            return result

        module.lstm = recorded
        return self

    def __exit__(self, *exc):
        if self.module is not None:
            self.module.lstm = self.original

    def describe(self, model):
        from keras_mulrnn import backend

        layer = model.layers[1]
        if backend.name() == "jax":
            return ("cuDNN" if self.calls else "scan (cuDNN declined)" if self.attempts
                    else "scan")
        return "cuDNN" if not layer.supports_jit else "scan (XLA)"


def recurrence_loops(family, parametrization, units, batch, embedding):
    """`[(trip count or None, Counter of opcodes)]`: the while loops of the optimized HLO of
    one layer's forward and backward pass (JAX), and per iteration the instructions of each
    loop's body that launch work."""
    import jax
    import keras
    import numpy as np

    import keras_mulrnn as km

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = km.make_layer(family, parametrization, units=units, return_sequences=True)
        layer.build((batch, SEQ_LEN, embedding))
        values = [v.value for v in layer.trainable_variables]
        x = np.zeros((batch, SEQ_LEN, embedding), "float32")

        def loss(values, x):
            with keras.StatelessScope(state_mapping=list(zip(layer.trainable_variables,
                                                             values))):
                return keras.ops.sum(keras.ops.cast(layer(x), "float32"))

        text = jax.jit(jax.grad(loss)).lower(values, x).compile().as_text()
    finally:
        keras.config.set_dtype_policy("float32")
    return hlo_loops(text)


def hlo_loops(text):
    """The while loops of an optimized HLO module's text (see `recurrence_loops`)."""
    bodies, computations, current = [], {}, None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith("{"):
            current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            computations[current] = []
        elif current is not None and " = " in line:
            opcode = _opcode(line)
            computations[current].append(opcode)
            if opcode == "while":
                body = re.search(r"body=%?([\w.\-]+)", line).group(1)
                trips = re.search(r'known_trip_count[^0-9]*(\d+)', line)
                bodies.append((body, int(trips.group(1)) if trips else None))
    return [(trips, collections.Counter(op for op in computations.get(body, ())
                                        if op not in _BOOKKEEPING))
            for body, trips in bodies]


def _opcode(line):
    """The opcode of an HLO instruction line `%name = SHAPE opcode(operands), ...`."""
    rest = line.split(" = ", 1)[1].strip()
    if rest.startswith("("):  # a tuple shape: skip to its closing parenthesis
        depth = 0
        for index, char in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                rest = rest[index + 1:].strip()
                break
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else rest
    return rest.split("(", 1)[0].strip()


def _table_header():
    print("| model | units | rank | dtype | path | chars/s | vs Keras LSTM | GFLOP/s | "
          "% of bf16 product |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)


def _peak_memory():
    from keras_mulrnn import backend

    peak = backend.peak_memory()
    return "not reported by this device" if peak is None else f"{peak / 2**30:,.1f} GiB"


def _error(error):
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 160 else text[:160] + "…"


if __name__ == "__main__":
    main()
