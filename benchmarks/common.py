"""What the benchmarks share: the choice of backend, the analytic FLOPs of a character model,
the model itself, its training speed, and a matrix product's rate measured in the same process
(the reference the achieved rates are compared with, since machines are shared and noisy)."""

import os
import sys
import time

VOCABULARY, EMBEDDING, SEQ_LEN = 205, 64, 100
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def choose_backend():
    """Sets `KERAS_BACKEND` from a `--backend NAME` argument; call it before Keras loads."""
    if "--backend" in sys.argv:
        os.environ["KERAS_BACKEND"] = sys.argv[sys.argv.index("--backend") + 1]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def variant(name):
    """`(parametrization, cell options)` of a benchmark's cell name: a parametrization, with
    "/mogrifierR" for the Mogrifier's R full-rank rounds (e.g. "additive/mogrifier4")."""
    parametrization, _, rounds = name.partition("/mogrifier")
    return parametrization, ({"mogrifier_rounds": int(rounds)} if rounds else {})


def flops_per_char(family, parametrization, units, rank, embedding=EMBEDDING,
                   vocabulary=VOCABULARY):
    """Forward multiply-adds × 2 per character for the matrix products of the model
    (training costs about 3 ×: the forward pass and two products per product backwards).
    Integration's and the Mogrifier's elementwise products are not counted."""
    import keras_mulrnn as km

    parametrization, options = variant(parametrization)
    gates = GATES[family]
    d, n = embedding, units
    flops = 2 * n * vocabulary  # the output layer
    flops += 2 * options.get("mogrifier_rounds", 0) * n * d
    if parametrization in ("additive", "keras", "integration"):
        return flops + 2 * (d * gates * n + n * gates * n)
    groups = len(km.make_cell(family, parametrization, units=n, rank=rank).groups)
    return flops + 2 * (d * gates * n + d * groups * rank + n * groups * rank + rank * gates * n)


def matmul_rate(batch, inner, width, dtype="float32", seconds=1.0):
    """GFLOP/s of `(batch, inner) @ (inner, width)` in `dtype`, compiled, 50 products per
    call, each depending on the last (so that none can be hoisted out of the loop)."""
    import keras
    from keras import ops

    from keras_mulrnn import backend

    holder = keras.layers.Layer()  # a compiled function belongs to a model; this has no state
    a = keras.random.normal((batch, inner), seed=1, dtype=dtype)
    b = keras.random.normal((inner, width), seed=2, dtype=dtype) * (inner ** -0.5)

    def build():
        def repeat(a, b):
            def body(_, a):
                return a + ops.cast(1e-3, dtype) * ops.tanh(ops.matmul(a, b)[:, :inner])

            return ops.sum(ops.fori_loop(0, 50, body, a))

        return repeat

    repeat = backend.compile_function(holder, ("matmul", batch, inner, width, dtype), build,
                                      jit_compile=True)
    float(repeat(a, b))
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        float(repeat(a, b))
        count += 50
    return 2 * batch * inner * width * count / (time.perf_counter() - started) / 1e9


def build_model(family, parametrization, units, rank, jit, fused=True, batch=None,
                embedding=EMBEDDING, use_cudnn="auto"):
    """A character model (embedding → one recurrent layer → logits), compiled with Adam;
    `parametrization="keras"` is Keras's own LSTM or GRU (with `use_cudnn`)."""
    import keras

    import keras_mulrnn as km

    if parametrization == "keras":
        layer_class = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[family]
        recurrent = layer_class(units, return_sequences=True, use_cudnn=use_cudnn)
    else:
        parametrization, options = variant(parametrization)
        recurrent = km.make_layer(family, parametrization, units=units, rank=rank,
                                  return_sequences=True, fused=fused, **options)
    model = keras.Sequential([
        keras.Input((SEQ_LEN,), dtype="int32", batch_size=batch),
        keras.layers.Embedding(VOCABULARY, embedding),
        recurrent,
        keras.layers.Dense(VOCABULARY, dtype="float32"),
    ])
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    return model


def time_training(model, batch, warmup, steps):
    """Characters per second of `steps` training steps after `warmup` (compilation) ones.

    `train_on_batch` runs the compiled step on ready arrays: no input pipeline whose
    background threads would outlive one configuration and slow the next.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.integers(0, VOCABULARY, (warmup + steps, batch, SEQ_LEN + 1)).astype("int32")
    for x in data[:warmup]:
        model.train_on_batch(x[:, :-1], x[:, 1:])
    started = time.perf_counter()
    for x in data[warmup:]:
        loss = model.train_on_batch(x[:, :-1], x[:, 1:])
    float(np.asarray(loss).reshape(-1)[0])  # waits for an asynchronous device
    return steps * batch * SEQ_LEN / (time.perf_counter() - started)


def sampling_rates(family, parametrization, units, length, embedding=EMBEDDING,
                   batches=(1, 64)):
    """Characters per second of `keras_mulrnn.generate` at each batch size, after a call
    that compiles the sampler."""
    import keras
    import numpy as np

    import keras_mulrnn as km
    from keras_mulrnn.data import Vocabulary

    keras.utils.set_random_seed(0)
    model = km.CharLanguageModel(Vocabulary(list(range(VOCABULARY)), "byte"), family,
                                 parametrization, units=units, embedding_dim=embedding)
    model(np.zeros((1, 1), "int32"))
    rates = {}
    for batch in batches:
        km.generate(model, "ab", length, seed=0, batch_size=batch)  # compiles
        started = time.perf_counter()
        km.generate(model, "ab", length, seed=1, batch_size=batch)
        rates[batch] = batch * length / (time.perf_counter() - started)
    return rates


def describe_machine():
    import platform

    import keras

    from keras_mulrnn import backend

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"Keras {keras.__version__}, backend {backend.name()} ({backend.describe()})")
