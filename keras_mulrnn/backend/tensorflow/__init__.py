"""The backend interface (`keras_mulrnn.backend`) on TensorFlow."""

import tensorflow as tf

from keras_mulrnn.backend.tensorflow.distribute import make_distribution, replica_sum, step_logs
from keras_mulrnn.backend.tensorflow.fused import rows_product
from keras_mulrnn.backend.tensorflow.fused import sequence_function as fused_sequence

__all__ = ["fused_sequence", "compile_function", "value_and_gradients", "categorical",
           "make_distribution", "replica_sum", "step_logs", "sync_model_state",
           "enable_determinism", "limit_threads", "tensorboard_callback", "describe",
           "peak_memory", "rows_product", "ALWAYS_COMPILES"]

# `jit_compile=False` runs TensorFlow graphs; `True` compiles them with XLA.
ALWAYS_COMPILES = False


def compile_function(fn, model, jit_compile):
    """A `tf.function` (XLA when `jit_compile`): variables are read and assigned in place.
    The package's loops are `keras.ops` loops, so AutoGraph has nothing to convert."""
    return tf.function(fn, jit_compile=bool(jit_compile), reduce_retracing=True,
                       autograph=False)


def value_and_gradients(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss, aux = loss_fn()
    gradients = tape.gradient(loss, [v.value for v in variables])
    return (loss, aux), [tf.convert_to_tensor(g) for g in gradients]


def categorical(logits, seed, step):
    step_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    return tf.random.stateless_categorical(logits, 1, seed=step_seed, dtype=tf.int32)[:, 0]


def limit_threads(threads):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def tensorboard_callback(log_dir):
    """Keras's TensorBoard writer (None without the `tensorboard` package)."""
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorboard") is None:
        return None
    return keras.callbacks.TensorBoard(log_dir)


def enable_determinism():
    tf.config.experimental.enable_op_determinism()


def sync_model_state(model):
    """TensorFlow's `fit` updates the variables in place: nothing to do."""


def describe():
    devices = tf.config.list_logical_devices()
    return f"TensorFlow {tf.__version__}, {devices[-1].device_type if devices else 'CPU'}"


def peak_memory():
    """The first GPU's peak in bytes; TensorFlow reports none for a CPU."""
    if not tf.config.list_logical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"]
