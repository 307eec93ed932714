"""Argument checks shared by every entry point: a `ValueError` that names the argument, the
value received and what is allowed."""


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`: received {name}={value!r}. "
            f"Allowed: a positive integer."
        )


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`: received {name}={value!r}. "
            f"Allowed: a float in [0, 1)."
        )


def require_tensorflow(what):
    """Raises a clear `RuntimeError` when `what` (a TensorFlow-only part of the package: the
    training loop, evaluation, sampling, dynamic evaluation) is used on another backend."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} uses TensorFlow (tf.data, tf.function, tf.GradientTape) and needs the "
            f"TensorFlow backend, but Keras runs on {backend!r} in this process. Set "
            f"KERAS_BACKEND=tensorflow, or on {backend} use the cells and layers (e.g. "
            f"keras_mulrnn.MLSTM) in your own Keras model with model.fit."
        )
