"""The backend interface (`keras_mulrnn.backend`) on JAX.

JAX computes on values, not variables: a compiled function receives the current values of
the model's variables as arguments, runs the package's code in a `keras.StatelessScope` that
maps each variable to its value, and returns the values of the variables it assigned, which
are then written back. So the same code that reads and assigns variables on TensorFlow runs
unchanged here.
"""

import os

import jax
import keras

from keras_mulrnn.backend.jax.distribute import make_distribution
from keras_mulrnn.backend.jax.fused import rows_product
from keras_mulrnn.backend.jax.fused import sequence_function as fused_sequence
from keras_mulrnn.keras_private import get_stateless_scope

__all__ = ["fused_sequence", "compile_function", "value_and_gradients", "categorical",
           "make_distribution", "replica_sum", "step_logs", "sync_model_state",
           "enable_determinism", "limit_threads", "tensorboard_callback", "describe",
           "peak_memory", "rows_product", "ALWAYS_COMPILES"]

# Uncompiled JAX runs op by op, which no training loop wants: every step goes through `jax.jit`.
ALWAYS_COMPILES = True


def compile_function(fn, model, jit_compile):
    """`fn` under `jax.jit` (always: uncompiled JAX runs op by op), over `model.variables`."""
    variables = list(model.variables)
    assigned = []  # which variables `fn` assigns, found when it is traced

    def pure(values, args):
        mapping = list(zip(variables, values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            given = dict(scope.state_mapping)
            result = fn(*args)
        updated = [index for index, variable in enumerate(variables)
                   if scope.state_mapping[id(variable)] is not given[id(variable)]]
        assigned[:] = updated
        return result, [scope.state_mapping[id(variables[index])] for index in updated]

    compiled = jax.jit(pure)

    def call(*args):
        result, values = compiled([variable.value for variable in variables], args)
        for index, value in zip(assigned, values):
            variables[index].assign(value)
        return result

    return call


def value_and_gradients(loss_fn, variables):
    """Differentiates `loss_fn` with respect to the values of `variables` in the stateless
    scope of the compiled function that calls it; every other variable keeps its value."""
    outer = get_stateless_scope()

    def loss(values):
        with keras.StatelessScope() as scope:
            if outer is not None:
                scope.state_mapping.update(outer.state_mapping)
            scope.state_mapping.update(
                {id(variable): value for variable, value in zip(variables, values)})
            return loss_fn()

    values = [variable.value for variable in variables]
    (loss_value, aux), gradients = jax.value_and_grad(loss, has_aux=True)(values)
    return (loss_value, aux), gradients


def categorical(logits, seed, step):
    key = jax.random.fold_in(jax.random.key(seed), step)
    return jax.random.categorical(key, logits, axis=-1).astype("int32")


def replica_sum(gradients):
    """Under `DataParallel` the step is one SPMD program over the global batch: its
    gradients are already the global batch's."""
    return gradients, 1


def step_logs(logs):
    return logs


def limit_threads(threads):
    """One thread: XLA's CPU backend reads `XLA_FLAGS` when JAX starts (at the first
    operation). XLA has no flag for another number of threads."""
    if threads != 1:
        raise ValueError(f"--threads {threads}: on JAX a CPU run takes --threads 1 (one "
                         f"thread) or 0 (all cores); XLA has no setting in between.")
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()


def tensorboard_callback(log_dir):
    """None: TensorBoard's writer is TensorFlow's."""
    return None


def enable_determinism():
    """XLA's deterministic GPU kernels are asked for by `XLA_FLAGS` before JAX starts (see
    `keras_mulrnn.lm.cli.start_backend`); on a CPU its kernels are deterministic."""


def sync_model_state(model):
    model.jax_state_sync()


def describe():
    return f"JAX {jax.__version__}, {jax.devices()[0].platform}"


def peak_memory():
    stats = jax.local_devices()[0].memory_stats()
    return stats.get("peak_bytes_in_use") if stats else None
