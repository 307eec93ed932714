"""The one interface over Keras's backends for what Keras itself does not abstract.

The cells, layers and the language-model toolkit are written in `keras.ops` and Keras's own
training loop; a few things differ by backend and live here, one module per backend
(`backend/tensorflow/`, `backend/jax/`), each implementing the functions below:

- `fused_sequence(cell)`: the whole-sequence recurrence with a hand-written backward pass
  (`keras_mulrnn.backend.fused` says what it computes), or None where there is none;
- `compile_function(model, key, build)`: the function `build()` returns, compiled once per
  model (XLA on TensorFlow when asked, `jax.jit` on JAX), reading and assigning the model's
  variables;
- `value_and_gradients(loss_fn, variables)`: inside a compiled function, the value of
  `loss_fn()` and its gradients with respect to `variables`;
- `categorical(logits, seed, step)`: one sample per row, a pure function of the seed;
- `make_distribution(name, wait_timeout)`: the data-parallel strategy called `name`
  (`DISTRIBUTIONS`), which also serves the batches to `model.fit` and holds the carried
  training state (one that joins other processes waits for them at most `wait_timeout` s);
- `replica_sum(gradients)`: the gradient of the whole global batch where each replica
  holds only its share (`tf.distribute`), for clipping it as one device would;
- `step_logs(logs)`: a training step's logs as the backend's trainer can reduce them;
- `tensorboard_callback(log_dir)`: Keras's TensorBoard writer where the backend has one;
- `sync_model_state(model)`: makes the model's variables current in the middle of `fit`;
- `describe()`, `peak_memory()`, `ALWAYS_COMPILES`: for benchmarks, the framework and its
  device, the device's peak memory in bytes (None where not reported), and whether every
  training step is compiled whatever `jit_compile` says;
- `rows_product(a, b)`: `aᵀ b` contracted over a long leading rows dimension (the fused
  backward pass's weight gradients), accumulated and returned in float32.

How the recurrence's products are laid out depends on the kind of device, not the backend,
and is chosen here once per process (`recurrence()`), for every backend.

Nothing else in the package asks which backend runs. TensorFlow is imported only by the
TensorFlow module, and only when that backend is active.
"""

import contextlib
import dataclasses
import importlib
import sys

import keras

from keras_mulrnn.lm import interruption

# The toolkit's backends, and the data-parallel strategies each of them offers.
DISTRIBUTIONS = {
    "tensorflow": ("default", "mirrored", "multiworker"),
    "jax": ("default", "data-parallel"),
}


def name():
    """The name of the Keras backend of this process."""
    return keras.backend.backend()


def implementation(what="This part of keras_mulrnn"):
    """The module implementing this interface for the active backend.

    Raises a `RuntimeError` naming `what` when the backend has none (the cells and layers
    run on every backend; the language-model toolkit on TensorFlow and JAX).
    """
    backend = name()
    if backend not in DISTRIBUTIONS:
        raise RuntimeError(
            f"{what} runs on the TensorFlow and JAX backends, but Keras runs on {backend!r} "
            f"in this process. Set KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow; on "
            f"{backend} use the cells and layers (e.g. keras_mulrnn.MLSTM) in your own Keras "
            f"model with model.fit."
        )
    path = f"keras_mulrnn.backend.{backend}"
    # (Looked up first: code traced by `tf.function` calls this, and AutoGraph cannot read
    # the source of the import machinery.)
    return sys.modules.get(path) or importlib.import_module(path)


def fused_sequence(cell):
    """The fused whole-sequence function of `cell` on this backend, or None."""
    if name() not in DISTRIBUTIONS:
        return None
    return implementation().fused_sequence(cell)


# Where a model keeps its compiled functions: a plain attribute, set past Keras's attribute
# tracking (saving looks only at Keras objects), so that the functions, which refer to the
# model, go when the model goes.
_COMPILED = "_keras_mulrnn_compiled"


def compile_function(model, key, build, jit_compile=False):
    """The compiled form of the function `build()` returns, made once per `model` and `key`.

    The function may read and assign any variable of `model`; its arguments and results are
    tensors (or nested lists of them). `jit_compile` asks for XLA on TensorFlow; JAX always
    compiles.
    """
    functions = model.__dict__.get(_COMPILED)
    if functions is None:
        functions = {}
        object.__setattr__(model, _COMPILED, functions)
    key = (key, bool(jit_compile))
    if key not in functions:
        functions[key] = implementation().compile_function(build(), model, jit_compile)
    return functions[key]


def value_and_gradients(loss_fn, variables):
    """Inside a compiled function: `(loss, aux), gradients` of `loss, aux = loss_fn()` with
    respect to `variables`."""
    return implementation().value_and_gradients(loss_fn, variables)


def categorical(logits, seed, step):
    """A sample `(batch,)` int32 from every row of `logits`, a pure function of the int
    `seed` and the scalar tensor `step`."""
    return implementation().categorical(logits, seed, step)


def check_distribution_name(strategy):
    """Raises a `ValueError` unless `strategy` names a strategy of the active backend."""
    backend = name()
    allowed = DISTRIBUTIONS.get(backend, ("default",))
    if strategy in allowed:
        return
    owners = [owner for owner, names in DISTRIBUTIONS.items() if strategy in names]
    if owners:
        raise ValueError(
            f"--strategy {strategy} is a {' and '.join(owners)} strategy, but Keras runs on "
            f"{backend!r}. On {backend} use one of {allowed}, or set "
            f"KERAS_BACKEND={owners[0]}."
        )
    raise ValueError(
        f"Invalid value for `strategy`: received {strategy!r}. Allowed on {backend}: one of "
        f"{allowed}."
    )


def make_distribution(strategy="default", wait_timeout=interruption.WAIT_TIMEOUT):
    """The data-parallel `Distribution` called `strategy` (see `DISTRIBUTIONS`). A strategy
    that joins other processes waits for them at most `wait_timeout` seconds (then raises
    `TimeoutError`, naming those that never came); a Ctrl-C stops the wait."""
    check_distribution_name(strategy)
    if not wait_timeout > 0:
        raise ValueError(f"The wait for other processes must be a positive number of "
                         f"seconds, got {wait_timeout}.")
    return implementation(f"--strategy {strategy}").make_distribution(strategy, wait_timeout)


def replica_sum(gradients):
    """`(total, replicas)`: inside a training step, the sum of `gradients` over the replicas
    that each hold a share of the global batch's gradient, and their number (`gradients`
    and 1 where the step already sees the whole batch)."""
    return implementation().replica_sum(gradients)


def step_logs(logs):
    """The logs of a training step in the form this backend's trainer reduces across
    workers (`tf.distribute`'s multi-worker mode needs an axis on every value)."""
    return implementation().step_logs(logs)


def limit_threads(threads):
    """At most `threads` CPU threads per operation from now on; call it before the first
    operation runs."""
    implementation().limit_threads(threads)


def tensorboard_callback(log_dir):
    """A `keras.callbacks.TensorBoard` writing to `log_dir`, or None where the backend has
    no writer (TensorBoard's is TensorFlow's, which must not enter another backend's
    process: on a GPU it would take the device's memory)."""
    return implementation().tensorboard_callback(log_dir)


def enable_determinism():
    """Deterministic kernels for the rest of the process (the same seed, the same run)."""
    implementation().enable_determinism()


def sync_model_state(model):
    """Writes the training state that `model.fit` keeps outside the model (JAX) back into
    its variables, so that a callback can read or save them mid-epoch."""
    implementation().sync_model_state(model)


def describe():
    """The backend's framework, its version and the device it computes on, in words."""
    return implementation().describe()


def peak_memory():
    """The peak memory in bytes of the device computing, or None where it is not reported."""
    return implementation().peak_memory()


def always_compiles():
    """Whether every step is compiled whatever `jit_compile` says (JAX runs op by op
    otherwise, so the toolkit always compiles there)."""
    return implementation().ALWAYS_COMPILES


@dataclasses.dataclass(frozen=True)
class Recurrence:
    """How the recurrent products are laid out on a kind of device.

    - `batched_groups`: the transitions `W_gm m^g` of a cell whose groups are all the same
      size run as one batched product (a GPU runs one well-occupied kernel instead of one
      small product per group); otherwise one product per group (on a CPU as fast on
      TensorFlow, and several times faster on JAX, whose CPU product transposes batched
      operands at every step: BENCHMARKS.md).
    - `materialized_transpose`: JAX's rows products read `aᵀ` materialized behind an
      optimization barrier (XLA's CPU product contracting the leading dimension runs at half
      speed: BENCHMARKS.md); on a GPU the product reads its operand in place.
    - `scan_unroll`: steps per iteration of JAX's `lax.scan` in the fused function.
    """

    platform: str
    batched_groups: bool
    materialized_transpose: bool
    scan_unroll: int = 1


RECURRENCES = {
    "cpu": Recurrence("cpu", batched_groups=False, materialized_transpose=True),
    "gpu": Recurrence("gpu", batched_groups=True, materialized_transpose=False),
}
# A TPU, like a GPU, wants few large products.
_PLATFORM_RECURRENCE = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "gpu"}
_recurrence = None


def recurrence():
    """The `Recurrence` of this process: from the platform of its first device, once (or as
    `recurrence_for` sets it)."""
    global _recurrence
    if _recurrence is None:
        _recurrence = RECURRENCES[_PLATFORM_RECURRENCE.get(_platform(), "cpu")]
    return _recurrence


@contextlib.contextmanager
def recurrence_for(platform, **changes):
    """Within the block, functions traced use the `Recurrence` of `platform` ("cpu" or
    "gpu") with `changes` (e.g. `scan_unroll=2`): to compare the variants on one machine
    (the tests) or to try settings (the accelerator benchmark). A function traced before
    keeps what it was traced with."""
    global _recurrence
    if platform not in RECURRENCES:
        raise ValueError(f"Invalid platform {platform!r}: one of {tuple(RECURRENCES)}.")
    previous = _recurrence
    _recurrence = dataclasses.replace(RECURRENCES[platform], **changes)
    try:
        yield _recurrence
    finally:
        _recurrence = previous


def _platform():
    """The platform of the first device Keras computes on ("cpu", "gpu", "tpu"), or "cpu"
    where the backend does not say."""
    try:
        devices = keras.distribution.list_devices()
    except Exception:  # a backend without Keras's distribution API (PyTorch, NumPy)
        return "cpu"
    return devices[0].split(":")[0].lower() if devices else "cpu"


def rows_product(a, b):
    """`aᵀ b` for `a` `(rows, x)` and `b` `(rows, y)`, or per group for `(rows, groups, x)`
    and `(rows, groups, y)` (giving `(groups, x, y)`), accumulated and returned in float32
    whatever the operands' dtype: gradients summed over thousands of rows keep their
    precision under `mixed_bfloat16`."""
    return implementation().rows_product(a, b)
